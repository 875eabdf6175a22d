import { ConfigError, Env, readInteger, readOptionalString, readString } from '../../../runtime/config';
import { MOMENTO_DEFAULTS, MOMENTO_ENV } from '../momento-env';

/**
 * Where the Momento client connects: the real service, with a key read from
 * Secrets Manager, or a local protocol server (tests and local runs).
 */
export type MomentoConnection =
  | { readonly kind: 'secret'; readonly secretArn: string }
  | { readonly kind: 'local'; readonly hostname: string; readonly port: number; readonly secretArn?: string };

/** Where to connect (the setup handler reads only this). */
export function readMomentoConnection(env: Env): MomentoConnection {
  const local = readOptionalString(env, MOMENTO_ENV.LOCAL_ENDPOINT);
  if (local) {
    const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(local);
    const port = match ? Number(match[2]) : NaN;
    // Port 0 would silently mean 8080 to the SDK: refuse it.
    if (!match || !(port >= 1 && port <= 65535)) {
      throw new ConfigError(`${MOMENTO_ENV.LOCAL_ENDPOINT} must be host:port with a port 1–65535 (got "${local}")`);
    }
    // A secret ARN next to a local endpoint: its apiKey is sent as the token
    // the local server checks (rotation tests). Otherwise no key at all.
    return { kind: 'local', hostname: match[1], port, secretArn: readOptionalString(env, MOMENTO_ENV.API_KEY_SECRET_ARN) };
  }
  const secretArn = readOptionalString(env, MOMENTO_ENV.API_KEY_SECRET_ARN);
  if (!secretArn) {
    throw new ConfigError(`${MOMENTO_ENV.API_KEY_SECRET_ARN} must be set (or ${MOMENTO_ENV.LOCAL_ENDPOINT} for a local server)`);
  }
  return { kind: 'secret', secretArn };
}

/** The counter function's configuration, read and validated once per container. */
export interface MomentoConfig {
  readonly connection: MomentoConnection;
  readonly cacheName: string;
  /** TTL set by every write: a counter expires this long after its last increment. */
  readonly ttlSeconds: number;
  /** Compare-and-swap attempts per request before a 503 (conditional mode, keyed changes). */
  readonly casMaxAttempts: number;
  /** Time one request may spend on a compare-and-swap before a 503 (conditional mode, keyed changes). */
  readonly casBudgetMs: number;
  /** The SDK's per-call deadline; undefined = the Lambda configuration's. */
  readonly clientTimeoutMs?: number;
  /** The init-phase channel connect's bound. */
  readonly connectTimeoutMs: number;
}

/** Every environment variable the Momento counter handler reads (names from `momento-env.ts`). */
export function readMomentoConfig(env: Env): MomentoConfig {
  const cacheName = readString(env, MOMENTO_ENV.CACHE_NAME, MOMENTO_DEFAULTS.cacheName);
  if (cacheName.trim() === '') throw new ConfigError(`${MOMENTO_ENV.CACHE_NAME} must not be blank`);
  return {
    connection: readMomentoConnection(env),
    cacheName,
    ttlSeconds: readInteger(env, MOMENTO_ENV.TTL_SECONDS, MOMENTO_DEFAULTS.ttlSeconds, 1),
    casMaxAttempts: readInteger(env, MOMENTO_ENV.CAS_MAX_ATTEMPTS, MOMENTO_DEFAULTS.casMaxAttempts, 1),
    casBudgetMs: readInteger(env, MOMENTO_ENV.CAS_BUDGET_MS, MOMENTO_DEFAULTS.casBudgetMs, 1),
    clientTimeoutMs: env[MOMENTO_ENV.CLIENT_TIMEOUT_MS] ? readInteger(env, MOMENTO_ENV.CLIENT_TIMEOUT_MS, 0, 100) : undefined,
    connectTimeoutMs: readInteger(env, MOMENTO_ENV.CONNECT_TIMEOUT_MS, MOMENTO_DEFAULTS.eagerConnectTimeoutMs, 1),
  };
}
