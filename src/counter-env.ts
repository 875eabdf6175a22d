/**
 * The environment contract every counter function shares (docs/architecture.md),
 * with its defaults. Plain constants only: imported by the constructs
 * (`counter-base.ts`) and by the bundled handlers (`runtime/config.ts`).
 */
export const COMMON_ENV = {
  /** "true" for conditional writes (increment only while below the maximum). */
  USE_CONDITIONAL_WRITES: 'USE_CONDITIONAL_WRITES',
  /** Integer ≥ 1: the maximum in conditional mode. */
  MAX_COUNTER_VALUE: 'MAX_COUNTER_VALUE',
  /**
   * Which deployment the function belongs to (`<stack name>/<construct path>`):
   * written into every request's log line as `deployment`, the `Deployment`
   * dimension of the counter metric.
   */
  DEPLOYMENT: 'COUNTER_DEPLOYMENT',
  /** Integer ≥ 1: seconds an `Idempotency-Key` is remembered after its change was applied. */
  IDEMPOTENCY_RETENTION_SECONDS: 'IDEMPOTENCY_RETENTION_SECONDS',
  /**
   * Integer in [1, 64]: how many slots a change may go to (a sharded counter
   * when > 1). Absent: 1, an unsharded counter, today's behaviour.
   */
  SHARDS: 'COUNTER_SHARDS',
} as const;

/** Default write mode and maximum, for the constructs and the handlers alike. */
export const MODE_DEFAULTS = { conditionalWrites: false, maxCounterValue: 10 } as const;

/** How long an `Idempotency-Key` is remembered by default: 24 hours. */
export const IDEMPOTENCY_DEFAULTS = { retentionSeconds: 24 * 60 * 60 } as const;

/**
 * Shard counts a counter may be configured with. 64 keeps the widest atomic
 * operation a sharded store needs (every slot plus a key record in one
 * DynamoDB transaction, at most 100 items) and a total's batched read
 * (BatchGetItem: 100 keys) within one call.
 */
export const SHARD_LIMITS = { min: 1, max: 64, default: 1 } as const;
