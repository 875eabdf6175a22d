import { COMMON_ENV } from '../../counter-env';
import { envMs, secretReadWorstCaseMs, WorstCase, worstCaseOf } from '../../timeouts';

/**
 * Environment contract between `RedisCounter` and its handler (docs/architecture.md, "The contracts").
 * Plain constants only: imported by both the construct and the bundled handler.
 */
export const REDIS_ENV = {
  /** Primary endpoint host name (writes and reads both go to the primary). Required unless `REDIS_URL` is set. */
  HOST: 'REDIS_HOST',
  /** Primary endpoint port (default 6379). */
  PORT: 'REDIS_PORT',
  /** "true" (default) for TLS with certificate and host name verification; "false" for plaintext. */
  TLS: 'REDIS_TLS',
  /**
   * ARN of a Secrets Manager secret holding JSON `{"authToken": "…"}` (plus an
   * optional `"username"` for ElastiCache RBAC users). Read once per
   * container; the token itself never travels through the environment.
   */
  AUTH_SECRET_ARN: 'REDIS_AUTH_SECRET_ARN',
  /**
   * A direct `redis://` or `rediss://` URL, credentials included: local runs
   * and tests only. Takes precedence over HOST/PORT/TLS. Never set by the construct.
   */
  URL: 'REDIS_URL',
  /**
   * Prepended verbatim to every counter id to form its key (default
   * "counter:"); an Idempotency-Key record is the prefix, `\u0001k\u0001`, then the key.
   */
  KEY_PREFIX: 'REDIS_KEY_PREFIX',
  /**
   * Replicas that must acknowledge each increment (Redis `WAIT`) before the
   * answer; 0 (default) answers as soon as the primary applied it.
   */
  WAIT_REPLICAS: 'REDIS_WAIT_REPLICAS',
  /** Milliseconds `WAIT` may block (default 100). */
  WAIT_TIMEOUT_MS: 'REDIS_WAIT_TIMEOUT_MS',
  /** Milliseconds to establish a connection (TCP + TLS) before a 503 (default 1000). */
  CONNECT_TIMEOUT_MS: 'REDIS_CONNECT_TIMEOUT_MS',
  /** Milliseconds one command may take before a 503 (default 1000). */
  COMMAND_TIMEOUT_MS: 'REDIS_COMMAND_TIMEOUT_MS',
  /**
   * Milliseconds a connection may sit idle before it is pinged ahead of the
   * next command (default 20000; 0 = before every command). A frozen
   * container's flow may be gone without a FIN (NAT idle timeout 350 s).
   */
  IDLE_CHECK_MS: 'REDIS_IDLE_CHECK_MS',
} as const;

/** Defaults of the handler's configuration, shared by construct and handler. */
export const REDIS_DEFAULTS = {
  port: 6379,
  keyPrefix: 'counter:',
  connectTimeoutMs: 1000,
  commandTimeoutMs: 1000,
  waitTimeoutMs: 100,
  idleCheckMs: 20_000,
} as const;

/**
 * The eviction policy a server must run with: a created replication group's
 * parameter group sets it, an existing endpoint must (docs/operations.md).
 * Any evicting policy can drop an `Idempotency-Key` record (it carries a
 * TTL) and a retry after that counts twice; `noeviction` refuses writes
 * when memory is full instead (OOM, answered 503 with nothing applied).
 */
export const REDIS_MAXMEMORY_POLICY = { parameter: 'maxmemory-policy', value: 'noeviction' } as const;

/** Field names of the auth secret's JSON. */
export const REDIS_SECRET_FIELDS = { AUTH_TOKEN: 'authToken', USERNAME: 'username' } as const;

/**
 * Worst case of one request: the AUTH secret read (first request of a
 * container), a PING on an idle connection that never answers (command
 * timeout), a fresh connect, then the command and ioredis' NOSCRIPT
 * fallback (EVALSHA, then EVAL: two command timeouts), and `WAIT` when
 * replica acknowledgements are asked for. A change with an Idempotency-Key
 * is the same single script (its key record is written by it), so it adds
 * nothing. A sharded counter (`COUNTER_SHARDS` > 1) may send a second
 * script after the first (a counter found wider than the container knew:
 * docs/redis.md, "Sharded counters"), each with its fallback and its WAIT.
 */
export function redisWorstCase(env: Readonly<Record<string, string | undefined>>): WorstCase | undefined {
  const commandMs = envMs(env, REDIS_ENV.COMMAND_TIMEOUT_MS, REDIS_DEFAULTS.commandTimeoutMs);
  const waitReplicas = envMs(env, REDIS_ENV.WAIT_REPLICAS, 0);
  const waitMs = waitReplicas === undefined ? undefined : waitReplicas > 0 ? envMs(env, REDIS_ENV.WAIT_TIMEOUT_MS, REDIS_DEFAULTS.waitTimeoutMs) : 0;
  const sharded = Number(env[COMMON_ENV.SHARDS] ?? '1') > 1;
  const times = (n: number | undefined, k: number) => (n === undefined ? undefined : n * k);
  return worstCaseOf({
    'secret read': env[REDIS_ENV.AUTH_SECRET_ARN] ? secretReadWorstCaseMs() : 0,
    'idle-connection PING': commandMs,
    'connect': envMs(env, REDIS_ENV.CONNECT_TIMEOUT_MS, REDIS_DEFAULTS.connectTimeoutMs),
    [sharded ? '2 commands (sharded) + NOSCRIPT fallback' : 'command + NOSCRIPT fallback']: times(commandMs, sharded ? 4 : 2),
    'WAIT': times(waitMs, sharded ? 2 : 1),
  });
}


/**
 * Bundle entries of this backend's handlers: the path below `src/` (and below
 * `assets/`, where projen's esbuild step writes `index.js`), without `.ts`.
 * The constructs, the local fixtures and the tests name bundles only through
 * these; `test/project/bundle-entries.test.ts` checks them against the entries on disk.
 */
export const REDIS_BUNDLES = {
  /** The counter function's handler: `src/backends/redis/runtime/redis-counter.lambda.ts`. */
  counter: 'backends/redis/runtime/redis-counter.lambda',
} as const;
