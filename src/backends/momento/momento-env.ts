import { envMs, secretReadWorstCaseMs, WorstCase, worstCaseOf } from '../../timeouts';

/**
 * Environment contract between `MomentoCounter` and its handlers (docs/architecture.md, "The contracts").
 * Plain constants only: imported by both the construct and the bundled handlers.
 */
export const MOMENTO_ENV = {
  /**
   * ARN of the Secrets Manager secret holding the Momento API key (AWS).
   * The secret is JSON: a v2 key `{"apiKey", "endpoint"}`, or the legacy
   * `momento_key_info.json` shape `{"apiKey", "refreshToken", "validUntil",
   * "restEndpoint"}`. Read once per container, never put in the environment.
   */
  API_KEY_SECRET_ARN: 'MOMENTO_API_KEY_SECRET_ARN',
  /**
   * `host:port` of a local Momento protocol server (tests and local runs
   * only; plaintext). Never set by the construct. With it alone no key is
   * sent; with `API_KEY_SECRET_ARN` as well, the secret's `apiKey` is sent as
   * the token the local server checks (rotation tests).
   */
  LOCAL_ENDPOINT: 'MOMENTO_LOCAL_ENDPOINT',
  /** Name of the cache holding the counters. Default `atomic-counter`. */
  CACHE_NAME: 'MOMENTO_CACHE_NAME',
  /** TTL in seconds every write sets on a counter item. Default 86400 (24 h). */
  TTL_SECONDS: 'MOMENTO_TTL_SECONDS',
  /** Compare-and-swap attempts per request before a 503 (conditional mode, keyed changes). Default 200. */
  CAS_MAX_ATTEMPTS: 'MOMENTO_CAS_MAX_ATTEMPTS',
  /** Milliseconds one request may spend on a compare-and-swap before a 503 (conditional mode, keyed changes). Default 5000. */
  CAS_BUDGET_MS: 'MOMENTO_CAS_BUDGET_MS',
  /**
   * Optional: the SDK's per-call deadline in milliseconds. Default: the SDK's
   * Lambda configuration (1.1 s). Local runs on a loaded machine raise it.
   */
  CLIENT_TIMEOUT_MS: 'MOMENTO_CLIENT_TIMEOUT_MS',
  /**
   * Optional: how long the init-phase channel connect waits, in milliseconds
   * (rounded up to whole seconds, the SDK's unit). A request arriving while
   * it runs waits for it, and a failed connect answers that request 503.
   * Default 1000. Local runs on a loaded machine raise it.
   */
  CONNECT_TIMEOUT_MS: 'MOMENTO_CONNECT_TIMEOUT_MS',
} as const;

/**
 * Properties of the setup custom resource (`Custom::MomentoSetup`),
 * written by `MomentoCounter` and read by the setup handler; a change re-runs
 * the setup.
 */
export const MOMENTO_SETUP_PROPERTIES = {
  /** The cache to create. Default `MOMENTO_DEFAULTS.cacheName`. */
  CACHE_NAME: 'CacheName',
  /**
   * The revision of what the setup creates (`MOMENTO_SCHEMA_VERSION`): a
   * new revision changes the property, so an existing stack's next
   * deployment runs the (idempotent) setup again.
   */
  SCHEMA: 'Schema',
} as const;

/**
 * Revision of what the setup creates (docs/architecture.md, "Setup
 * versions": bump it in the change that changes the setup). 1: the cache.
 */
export const MOMENTO_SCHEMA_VERSION = '1';

/** Defaults shared by the construct and the handlers, in one place. */
export const MOMENTO_DEFAULTS = {
  cacheName: 'atomic-counter',
  /**
   * Momento's default per-cache limit on an item's TTL is 24 hours; a longer
   * TTL needs a limit increase from Momento.
   */
  ttlSeconds: 86_400,
  casMaxAttempts: 200,
  casBudgetMs: 5_000,
  /** The SDK's per-call deadline in its Lambda configuration (retries of a Get included). */
  clientTimeoutMs: 1_100,
  /** Longest back-off between two compare-and-swap attempts. */
  casBackoffCapMs: 16,
  /**
   * A keyed write drops the settled entries of earlier keyed changes from
   * the counter's item (one `getBatch` of their key records) once this many
   * are pending, which keeps the item a few kilobytes at most.
   */
  pendingEntriesPruneAt: 16,
  /** The init-phase channel connect (whole seconds: the SDK's unit); a first request may wait for it. */
  eagerConnectTimeoutMs: 1_000,
} as const;

/**
 * Worst case of one request: the key secret read and the init-phase channel
 * connect (a first request may wait for both), then the compare-and-swap
 * budget plus one call that started just before the deadline (every call of
 * a request starts before its deadline: the loop checks it before each
 * attempt and before each write) and one back-off. In both modes: a change
 * with an Idempotency-Key, and an unconditional one on a counter holding
 * pending keyed changes, run the compare-and-swap loop; a plain
 * unconditional change is one call.
 */
export function momentoWorstCase(env: Readonly<Record<string, string | undefined>>): WorstCase | undefined {
  const callMs = envMs(env, MOMENTO_ENV.CLIENT_TIMEOUT_MS, MOMENTO_DEFAULTS.clientTimeoutMs);
  const connectMs = envMs(env, MOMENTO_ENV.CONNECT_TIMEOUT_MS, MOMENTO_DEFAULTS.eagerConnectTimeoutMs);
  return worstCaseOf({
    'secret read': env[MOMENTO_ENV.API_KEY_SECRET_ARN] ? secretReadWorstCaseMs() : 0,
    'init-phase channel connect': connectMs === undefined ? undefined : Math.ceil(connectMs / 1000) * 1000,
    'compare-and-swap budget': envMs(env, MOMENTO_ENV.CAS_BUDGET_MS, MOMENTO_DEFAULTS.casBudgetMs),
    'one SDK call (client deadline)': callMs,
    'back-off': MOMENTO_DEFAULTS.casBackoffCapMs,
  });
}

/**
 * Bundle entries of this backend's handlers: the path below `src/` (and below
 * `assets/`, where projen's esbuild step writes `index.js`), without `.ts`.
 * The constructs, the local fixtures and the tests name bundles only through
 * these; `test/project/bundle-entries.test.ts` checks them against the entries on disk.
 */
export const MOMENTO_BUNDLES = {
  /** The counter function's handler: `src/backends/momento/runtime/momento-counter.lambda.ts`. */
  counter: 'backends/momento/runtime/momento-counter.lambda',
  /** The setup custom resource's handler: `src/backends/momento/runtime/momento-setup.lambda.ts`. */
  setup: 'backends/momento/runtime/momento-setup.lambda',
} as const;
