import { ConfigError, Env, readBoolean, readInteger, readOptionalString } from '../../../runtime/config';
import { TIDB_DEFAULTS, TIDB_ENV, TIDB_IDENTIFIER, TIDB_MAX_TABLE_LENGTH } from '../tidb-env';

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

/** Every environment variable the TiDB handlers read (names from `tidb-env.ts`). */
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
    table: tableName(TIDB_ENV.TABLE, table),
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
 * A counters table name: an identifier short enough that its records table
 * (`<table>_keys`) is one too.
 */
export function tableName(what: string, name: string): string {
  identifier(what, name);
  if (name.length > TIDB_MAX_TABLE_LENGTH) {
    throw new ConfigError(`${what} must be at most ${TIDB_MAX_TABLE_LENGTH} characters: the setup also creates ${name}_keys (got "${name}")`);
  }
  return name;
}
