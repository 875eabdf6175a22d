import { ConfigError, Env, readBoolean, readInteger, readOptionalString, readString } from '../../../runtime/config';
import { REDIS_DEFAULTS, REDIS_ENV } from '../redis-env';

/** The counter function's configuration, read and validated once per container. */
export interface RedisConfig {
  /** Direct URL (local runs and tests). Wins over host/port/tls. */
  readonly url?: string;
  readonly host?: string;
  readonly port: number;
  readonly tls: boolean;
  /** Secret holding `{"authToken", "username"?}`; read once per container. */
  readonly authSecretArn?: string;
  /** Prepended verbatim to each id to form the key. */
  readonly keyPrefix: string;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  /** Replicas that must acknowledge each increment (`WAIT`); 0 = none. */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  /** A connection idle longer than this is pinged before use (it may have been dropped silently while the container was frozen). */
  readonly idleCheckMs: number;
}

/** Every environment variable the Redis handler reads (names from `redis-env.ts`). */
export function readRedisConfig(env: Env): RedisConfig {
  const url = readOptionalString(env, REDIS_ENV.URL);
  const host = url ? readOptionalString(env, REDIS_ENV.HOST) : readString(env, REDIS_ENV.HOST);
  if (url && !/^rediss?:\/\//.test(url)) throw new ConfigError(`${REDIS_ENV.URL} must start with redis:// or rediss://`);
  return {
    url,
    host,
    port: readInteger(env, REDIS_ENV.PORT, REDIS_DEFAULTS.port, 1),
    tls: readBoolean(env, REDIS_ENV.TLS, true),
    authSecretArn: readOptionalString(env, REDIS_ENV.AUTH_SECRET_ARN),
    // An empty prefix is allowed ("" keeps the raw id), so no fallback on "".
    keyPrefix: env[REDIS_ENV.KEY_PREFIX] ?? REDIS_DEFAULTS.keyPrefix,
    connectTimeoutMs: readInteger(env, REDIS_ENV.CONNECT_TIMEOUT_MS, REDIS_DEFAULTS.connectTimeoutMs, 50),
    commandTimeoutMs: readInteger(env, REDIS_ENV.COMMAND_TIMEOUT_MS, REDIS_DEFAULTS.commandTimeoutMs, 50),
    waitReplicas: readInteger(env, REDIS_ENV.WAIT_REPLICAS, 0, 0),
    waitTimeoutMs: readInteger(env, REDIS_ENV.WAIT_TIMEOUT_MS, REDIS_DEFAULTS.waitTimeoutMs, 1),
    idleCheckMs: readInteger(env, REDIS_ENV.IDLE_CHECK_MS, REDIS_DEFAULTS.idleCheckMs, 0),
  };
}
