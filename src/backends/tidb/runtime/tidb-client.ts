import type { ConnectionOptions, PoolOptions } from 'mysql2';
import { ConfigError } from '../../../runtime/config';
import { readJsonSecret } from '../../../runtime/secrets';
import { TIDB_DEFAULTS, TIDB_ENV } from '../tidb-env';
import { identifier, TiDbConfig } from './tidb-config';

/** Where to connect, once the secret (or URL) is resolved. */
export interface TiDbEndpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
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
