import type { ConnectionOptions, PoolOptions } from 'mysql2';
import { ConfigError, Env, readBoolean, readInteger, readOptionalString } from '../../../runtime/config';
import { BackendUnavailableError, CredentialsRejectedError, isNetworkError } from '../../../runtime/errors';
import { readJsonSecret } from '../../../runtime/secrets';
import { TIDB_DEFAULTS, TIDB_ENV, TIDB_IDENTIFIER } from '../tidb-env';

/** What the environment says (read once, at module load). */
export interface TiDbConfig {
  readonly secretArn?: string;
  readonly url?: string;
  readonly database?: string;
  readonly table: string;
  readonly tls: boolean;
  readonly tlsCa?: string;
  readonly connectTimeoutMs: number;
  readonly queryTimeoutMs: number;
  readonly poolSize: number;
}

/** Where to connect, once the secret (or URL) is resolved. */
export interface TiDbEndpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

export function readTiDbConfig(env: Env): TiDbConfig {
  const secretArn = readOptionalString(env, TIDB_ENV.SECRET_ARN);
  const url = readOptionalString(env, TIDB_ENV.URL);
  if (!secretArn && !url) throw new ConfigError(`${TIDB_ENV.SECRET_ARN} (or ${TIDB_ENV.URL} for local runs) must be set`);
  const database = readOptionalString(env, TIDB_ENV.DATABASE);
  const table = readOptionalString(env, TIDB_ENV.TABLE) ?? TIDB_DEFAULTS.table;
  return {
    secretArn,
    url,
    database: database === undefined ? undefined : identifier(TIDB_ENV.DATABASE, database),
    table: identifier(TIDB_ENV.TABLE, table),
    tls: readBoolean(env, TIDB_ENV.TLS, true),
    tlsCa: readOptionalString(env, TIDB_ENV.TLS_CA),
    connectTimeoutMs: readInteger(env, TIDB_ENV.CONNECT_TIMEOUT_MS, TIDB_DEFAULTS.connectTimeoutMs, 100),
    queryTimeoutMs: readInteger(env, TIDB_ENV.QUERY_TIMEOUT_MS, TIDB_DEFAULTS.queryTimeoutMs, 100),
    poolSize: readInteger(env, TIDB_ENV.POOL_SIZE, TIDB_DEFAULTS.poolSize, 1),
  };
}

/** Database and table names are spliced into SQL: only `[A-Za-z0-9_]{1,64}`. */
export function identifier(what: string, name: string): string {
  if (!TIDB_IDENTIFIER.test(name)) throw new ConfigError(`${what} must match ${TIDB_IDENTIFIER} (got "${name}")`);
  return name;
}

/**
 * Resolves the endpoint: the secret on AWS (read once per container), the
 * URL locally. The secret uses `{host, port, user, password, database}`; the
 * names of TiDB Cloud's `tidb_info.json` (`pwd`, `db`) are accepted as well,
 * so that file can be stored as the secret unchanged.
 */
export async function resolveEndpoint(config: TiDbConfig): Promise<TiDbEndpoint> {
  let fields: Record<string, unknown>;
  if (config.secretArn) {
    fields = await readJsonSecret(config.secretArn);
  } else {
    const url = new URL(config.url!);
    if (url.protocol !== 'mysql:') throw new ConfigError(`${TIDB_ENV.URL} must be a mysql:// URL`);
    fields = {
      host: url.hostname,
      port: url.port || '4000',
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: url.pathname.replace(/^\//, ''),
    };
  }
  const text = (names: string[], fallback?: string): string | undefined => {
    for (const name of names) {
      const value = fields[name];
      if (typeof value === 'string' && value !== '') return value;
      if (typeof value === 'number') return String(value);
    }
    return fallback;
  };
  const host = text(['host']);
  const user = text(['user', 'username']);
  if (!host) throw new ConfigError('The TiDB connection has no "host"');
  if (!user) throw new ConfigError('The TiDB connection has no "user"');
  const port = Number(text(['port'], '4000'));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError('The TiDB connection has an invalid "port"');
  const database = config.database ?? text(['database', 'db', 'dbname'], TIDB_DEFAULTS.database)!;
  return { host, port, user, password: text(['password', 'pwd'], '')!, database: identifier('database', database) };
}

/**
 * Connection options shared by the counter pool and the setup connection.
 *
 * - `-FOUND_ROWS`: mysql2 sets CLIENT_FOUND_ROWS by default, which makes the
 *   server report *matched* rather than *changed* rows. The conditional
 *   increment tells "rejected at the maximum" (row unchanged: 0) from "new row"
 *   (1) by the changed count; with the flag both report 1 (docs/tidb.md).
 * - No `multipleStatements`: one statement per round trip, nothing spliced.
 * - TLS 1.2+ with verification by default (TiDB Cloud requires it; its public
 *   endpoints chain to Let's Encrypt, which Node's default roots trust).
 *   mysql2 checks the certificate's host name only with `verifyIdentity`.
 */
export function connectionOptions(config: TiDbConfig, endpoint: TiDbEndpoint, withDatabase = true): ConnectionOptions {
  return {
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user,
    password: endpoint.password,
    database: withDatabase ? endpoint.database : undefined,
    charset: 'utf8mb4_bin',
    connectTimeout: config.connectTimeoutMs,
    flags: ['-FOUND_ROWS'],
    multipleStatements: false,
    supportBigNumbers: true,
    bigNumberStrings: false,
    ssl: config.tls
      ? { minVersion: 'TLSv1.2', rejectUnauthorized: true, verifyIdentity: true, ...(config.tlsCa ? { ca: config.tlsCa } : {}) }
      : undefined,
  };
}

/** Pool options: a small pool per container, idle connections kept alive and retired before the server drops them. */
export function poolOptions(config: TiDbConfig, endpoint: TiDbEndpoint): PoolOptions {
  return {
    ...connectionOptions(config, endpoint),
    connectionLimit: config.poolSize,
    maxIdle: config.poolSize,
    idleTimeout: 60_000,
    waitForConnections: true,
    queueLimit: 0,
    enableKeepAlive: true,
    keepAliveInitialDelay: 10_000,
  };
}

/**
 * Server errors after which the statement certainly was rolled back, so it
 * can be sent again: deadlock (1213), lock wait timeout (1205), and TiDB's
 * write conflict (9007) and transaction-retry errors (8002, 8022, 8028).
 */
export const RETRYABLE_SERVER_ERRORS = new Set([1205, 1213, 8002, 8022, 8028, 9007]);

/**
 * Server errors meaning "not available right now": too many connections
 * (1040), shutdown in progress (1053), connection killed (1927, MariaDB),
 * query interrupted (1317), TiDB's PD/TiKV timeouts and busy errors
 * (9001–9006), and server-side memory/quota limits (8175, 8252).
 */
const UNAVAILABLE_SERVER_ERRORS = new Set([1040, 1053, 1317, 1927, 9001, 9002, 9003, 9004, 9005, 9006, 8175, 8252]);

/** mysql2's own codes for a connection that is gone or a statement that timed out. */
const CLIENT_UNAVAILABLE_CODES = new Set(['PROTOCOL_SEQUENCE_TIMEOUT', 'PROTOCOL_CONNECTION_LOST', 'ETIMEDOUT', 'ER_CON_COUNT_ERROR']);

export function errno(err: unknown): number | undefined {
  const n = (err as { errno?: unknown })?.errno;
  return typeof n === 'number' ? n : undefined;
}

/**
 * True when the error means the datastore cannot answer right now (503):
 * socket failures, timeouts, a connection mysql2 already marked closed, or
 * one of the server errors above.
 */
export function isUnavailable(err: unknown): boolean {
  if (isNetworkError(err)) return true;
  const e = err as { code?: unknown; fatal?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && CLIENT_UNAVAILABLE_CODES.has(e.code)) return true;
  const n = errno(err);
  if (n !== undefined && (UNAVAILABLE_SERVER_ERRORS.has(n) || RETRYABLE_SERVER_ERRORS.has(n))) return true;
  // A fatal error without a server errno is a dead connection ("Can't add new
  // command when connection is in closed state", handshake cut short, …).
  return e?.fatal === true && n === undefined;
}

/**
 * Server errors of a rejected login: access denied (1045) and an expired
 * password (1862). The handshake failed, so no statement ran.
 */
const AUTH_SERVER_ERRORS = new Set([1045, 1862]);

/**
 * Sorts a failure: rejected credentials → `CredentialsRejectedError` (the
 * pipeline re-reads the secret, `secretArn`, and retries on a fresh pool);
 * "unavailable" → 503; anything else unchanged.
 */
export function unavailable(err: unknown, secretArn?: string): unknown {
  if (err instanceof BackendUnavailableError || err instanceof CredentialsRejectedError) return err;
  const n = errno(err);
  if (n !== undefined && AUTH_SERVER_ERRORS.has(n)) {
    return new CredentialsRejectedError(`TiDB rejected the credentials (${n})`, { cause: err, secretArn });
  }
  return isUnavailable(err) ? new BackendUnavailableError('TiDB is unavailable', { cause: err }) : err;
}
