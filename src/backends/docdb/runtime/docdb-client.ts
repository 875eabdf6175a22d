import {
  MongoClient, MongoClientOptions, MongoError, MongoNetworkError, MongoNotConnectedError, MongoOperationTimeoutError, MongoServerError,
  MongoServerSelectionError, MongoTopologyClosedError,
} from 'mongodb';
import { ConfigError, Env, readBoolean, readInteger, readOptionalString, readString } from '../../../runtime/config';
import { BackendUnavailableError, CredentialsRejectedError, isNetworkError } from '../../../runtime/errors';
import { readJsonSecret, secretField } from '../../../runtime/secrets';
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

export interface DocDbCredentials {
  readonly username: string;
  readonly password: string;
}

/**
 * The connection string and driver options for a configuration. Credentials
 * travel in the driver's `auth` option: generated passwords may contain
 * `:`, `?`, `#` or `%`, which would corrupt (or silently change) a URI they
 * were spliced into.
 */
export function connectionFor(
  config: DocDbConfig,
  credentials?: DocDbCredentials,
  secretEndpoint?: { host?: string; port?: number },
): { url: string; options: MongoClientOptions } {
  const host = config.host ?? secretEndpoint?.host;
  const port = config.port ?? secretEndpoint?.port ?? DOCDB_DEFAULTS.port;
  if (!config.uri && !host) throw new ConfigError(`No DocumentDB host: set ${DOCDB_ENV.HOST} or use a secret with a "host" field`);
  const url = config.uri ?? `mongodb://${host!.includes(':') ? `[${host}]` : host}:${port}/`;
  const options: MongoClientOptions = {
    // With DOCDB_URI the string governs TLS and topology; otherwise we do.
    ...(config.uri ? {} : {
      tls: config.tls,
      // DocumentDB is always replica set `rs0`: naming it lets the driver
      // follow the primary across a failover instead of writing to a demoted one.
      ...(config.replicaSet ? { replicaSet: config.replicaSet } : { directConnection: true }),
    }),
    ...(credentials ? { auth: { username: credentials.username, password: credentials.password }, authSource: 'admin' } : {}),
    // DocumentDB supports retryable writes only from engine 8.0.2; before
    // that a write carrying a transaction number is refused. Our increments
    // are not idempotent either: a blind driver retry after a lost reply
    // could count one request twice.
    retryWrites: false,
    // Reads and writes go to the primary: a GET sees every acknowledged increment.
    readPreference: 'primary',
    // An acknowledged increment is on a majority of instances: a failover
    // cannot roll it back after the client was told its value.
    writeConcern: { w: 'majority' },
    serverSelectionTimeoutMS: config.serverSelectionTimeoutMs,
    connectTimeoutMS: config.connectTimeoutMs,
    socketTimeoutMS: config.socketTimeoutMs,
    // A connection idle this long may have been dropped silently by a NAT
    // while the container was frozen: open a new one instead of waiting for
    // the socket timeout on it.
    maxIdleTimeMS: config.maxIdleTimeMs,
    appName: 'cdk-atomic-counter',
  };
  return { url, options };
}

/**
 * Creates the driver client for a configuration: reads the credentials
 * secret (cached once per container) when one is configured. The client
 * connects lazily on its first operation and keeps a pool across invocations.
 */
export async function createDocDbClient(config: DocDbConfig, extra: MongoClientOptions = {}): Promise<MongoClient> {
  let credentials: DocDbCredentials | undefined;
  let endpoint: { host?: string; port?: number } | undefined;
  if (config.secretArn) {
    const secret = await readJsonSecret(config.secretArn);
    credentials = readCredentials(secret);
    endpoint = {
      host: typeof secret.host === 'string' ? secret.host : undefined,
      port: secret.port === undefined ? undefined : Number(secret.port),
    };
  }
  const { url, options } = connectionFor(config, credentials, endpoint);
  return new MongoClient(url, { ...options, ...extra });
}

/** `{username, password}` of a secret (errors name the field, never its value). */
export function readCredentials(secret: Record<string, unknown>): DocDbCredentials {
  return { username: secretField(secret, 'username'), password: secretField(secret, 'password') };
}

const AUTHENTICATION_FAILED = 18;
const WRITE_CONFLICT = 112;

/**
 * Server error codes that mean "not now": no usable primary (failover,
 * shutdown, replication lag past the write concern's bound), or the server
 * gave up on the operation (a time limit, a write conflict). The client may
 * retry; none of them is a fault of the request.
 */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  64, // WriteConcernFailed
  89, // NetworkTimeout
  91, // ShutdownInProgress
  112, // WriteConflict (after the store's own retry)
  134, // ReadConcernMajorityNotAvailableYet
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** Labels the driver or the server put on errors worth retrying later. */
const TRANSIENT_LABELS = ['TransientTransactionError', 'RetryableWriteError', 'ResetPool', 'PoolRequstedRetry', 'SystemOverloadedError', 'RetryableError'];

/** True for a MongoDB error (or one in its cause chain) with code 18 AuthenticationFailed. */
export function isAuthenticationFailure(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  if (err instanceof MongoError && (err.code === AUTHENTICATION_FAILED || (err as MongoServerError).codeName === 'AuthenticationFailed')) return true;
  return isAuthenticationFailure((err as { cause?: unknown }).cause, depth + 1);
}

/** A WriteConflict: the server aborted the write, nothing was applied; safe to retry. */
export function isWriteConflict(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === WRITE_CONFLICT;
}

/** Transient: worth a 503 (the client may retry), never a 500. */
export function isTransientError(err: unknown): boolean {
  if (
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNetworkError || // includes MongoNetworkTimeoutError and MongoPoolClearedError
    err instanceof MongoTopologyClosedError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoOperationTimeoutError
  ) return true;
  if (err instanceof MongoError) {
    if (err.name === 'MongoWaitQueueTimeoutError') return true;
    if (TRANSIENT_LABELS.some((label) => err.hasErrorLabel(label))) return true;
    if (typeof err.code === 'number' && UNAVAILABLE_CODES.has(err.code)) return true;
  }
  return isNetworkError(err);
}

/**
 * The HTTP decision for a driver error:
 *
 * - the cluster rejected the credentials (code 18, during the connection's
 *   handshake, so before any command ran) → `CredentialsRejectedError`: the
 *   pipeline drops the cached secret and the client, re-reads the secret and
 *   retries once (rotation);
 * - a cluster that cannot be selected or reached, a socket that timed out or
 *   broke, a primary in the middle of a failover, a time limit or a write
 *   conflict, anything the driver labels transient → `BackendUnavailableError`
 *   (503, the client may retry);
 * - anything else is returned unchanged (a 500).
 *
 * A timed-out increment may have been applied: the 503 hands that decision
 * to the client, as with every backend.
 */
export function toCounterError(err: unknown, secretArn?: string): unknown {
  if (isAuthenticationFailure(err)) return new CredentialsRejectedError('DocumentDB rejected the credentials', { cause: err, secretArn });
  if (isTransientError(err)) return new BackendUnavailableError('DocumentDB is unavailable', { cause: err });
  return err;
}
