import { ConfigError, Env, readBoolean, readInteger, readOptionalString, readString } from '../../../runtime/config';
import { DOCDB_COUNTER_TIMEOUT_DEFAULTS, DOCDB_DEFAULTS, DOCDB_ENV } from '../docdb-env';

/** Where the counters live and how to reach them; read once per container. */
export interface DocDbConfig {
  /** Local runs and tests only: a complete connection string. */
  readonly uri?: string;
  readonly secretArn?: string;
  /** Setup only: the application user's secret. */
  readonly appSecretArn?: string;
  readonly host?: string;
  readonly port?: number;
  readonly tls: boolean;
  readonly replicaSet?: string;
  readonly database: string;
  readonly collection: string;
  readonly serverSelectionTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly socketTimeoutMs: number;
  /** Bound on one whole store call (selection, connect, attempts). */
  readonly operationTimeoutMs: number;
  readonly maxIdleTimeMs: number;
}

/** Timeout defaults; the setup function passes longer ones (it runs once, during a deployment). */
export interface DocDbTimeouts {
  readonly serverSelectionTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly socketTimeoutMs: number;
  readonly operationTimeoutMs: number;
}

/**
 * Counter function defaults: a down or unreachable cluster answers 503 within
 * about 2 s (server selection), and no store call outlasts the operation
 * timeout (6 s), well inside the function timeout and API Gateway's 29 s.
 * The same values are the synth-time worst case (`docdbWorstCase`).
 */
export const COUNTER_TIMEOUTS: DocDbTimeouts = DOCDB_COUNTER_TIMEOUT_DEFAULTS;

/** Every environment variable the DocumentDB handlers read (names from `docdb-env.ts`). */
export function readDocDbConfig(env: Env, timeouts: DocDbTimeouts = COUNTER_TIMEOUTS): DocDbConfig {
  const uri = readOptionalString(env, DOCDB_ENV.URI);
  const secretArn = readOptionalString(env, DOCDB_ENV.SECRET_ARN);
  const host = readOptionalString(env, DOCDB_ENV.HOST);
  if (!uri && !secretArn && !host) {
    throw new ConfigError(`Set ${DOCDB_ENV.SECRET_ARN} (with ${DOCDB_ENV.HOST}) or, for local runs, ${DOCDB_ENV.URI}`);
  }
  if (uri && !/^mongodb(\+srv)?:\/\//.test(uri)) throw new ConfigError(`${DOCDB_ENV.URI} must start with mongodb:// or mongodb+srv://`);
  const port = readOptionalString(env, DOCDB_ENV.PORT) === undefined ? undefined : readInteger(env, DOCDB_ENV.PORT, DOCDB_DEFAULTS.port, 1);
  return {
    uri,
    secretArn,
    appSecretArn: readOptionalString(env, DOCDB_ENV.APP_SECRET_ARN),
    host,
    port,
    tls: readBoolean(env, DOCDB_ENV.TLS, true),
    replicaSet: readOptionalString(env, DOCDB_ENV.REPLICA_SET),
    database: readString(env, DOCDB_ENV.DATABASE, DOCDB_DEFAULTS.database),
    collection: readString(env, DOCDB_ENV.COLLECTION, DOCDB_DEFAULTS.collection),
    serverSelectionTimeoutMs: readInteger(env, DOCDB_ENV.SERVER_SELECTION_TIMEOUT_MS, timeouts.serverSelectionTimeoutMs, 100),
    connectTimeoutMs: readInteger(env, DOCDB_ENV.CONNECT_TIMEOUT_MS, timeouts.connectTimeoutMs, 100),
    socketTimeoutMs: readInteger(env, DOCDB_ENV.SOCKET_TIMEOUT_MS, timeouts.socketTimeoutMs, 100),
    operationTimeoutMs: readInteger(env, DOCDB_ENV.OPERATION_TIMEOUT_MS, timeouts.operationTimeoutMs, 100),
    maxIdleTimeMs: readInteger(env, DOCDB_ENV.MAX_IDLE_TIME_MS, DOCDB_DEFAULTS.maxIdleTimeMs, 100),
  };
}
