/**
 * The one abstraction every backend implements. A store owns its client,
 * creates it once per container (in the init phase, see `connect`) and
 * replaces it when it breaks.
 *
 * `apply` is one atomic operation on the datastore (a single conditional
 * update, a script, or one transaction): the value it returns is the value
 * *this* change produced, never a re-read.
 */
export interface CounterStore {
  /**
   * True when the store implements sharded counters (`change.shards` > 1,
   * `read(id, shards)`). The pipeline refuses a shard count above 1 for a
   * store without it rather than answer as if the counter were sharded.
   */
  readonly sharded?: boolean;

  /**
   * Applies one change and returns the value it produced. A counter never
   * written starts at 0.
   *
   * - `change.by` is added (a non-zero safe integer; negative decrements).
   * - With `change.maximum` (conditional mode) an upward change is applied
   *   only when `value + by ≤ maximum` (else `LimitReachedError`), a downward
   *   one only when `value + by ≥ 0` (else `FloorReachedError`); the check is
   *   evaluated by the datastore atomically with the write, and a rejected
   *   change writes nothing. Contention between writers is never a rejection.
   * - Without a maximum every change is applied, except one whose result
   *   would leave JavaScript's safe integers (`InvalidStepError`, nothing
   *   written).
   * - With `change.idempotency` the key is checked and recorded in the same
   *   atomic operation as the change: a key already recorded (and not
   *   expired) for the same id and step applies nothing and returns its
   *   recorded value with `replayed: true`; recorded for another id or step,
   *   it throws `IdempotencyKeyReusedError`. A rejected change records no
   *   key, so a retry with the same id and step is evaluated afresh. (One
   *   store binds earlier: Momento claims the key before its compare-and-swap
   *   and keeps the claim after a rejection, so within the retention that key
   *   answers 422 for another id or step; docs/momento.md.)
   */
  apply(id: string, change: CounterChange): Promise<ChangeResult>;

  /**
   * The stored value, 0 for a counter never written. For a sharded counter
   * the total over its slots, in one batched read where the datastore has one
   * (see `src/runtime/shards.ts`); `shards` is the configured slot count.
   */
  read(id: string, shards?: number): Promise<number>;

  /**
   * Opens the client's connection ahead of the first request: the pipeline
   * calls it in Lambda's init phase, right after creating the store. May
   * reject (the engine is down, say): the pipeline then closes the store and
   * the first request creates a new one. An operation that starts while this
   * is under way awaits the same connection rather than opening another.
   */
  connect?(): Promise<void>;

  /**
   * Releases the client: the pipeline drops a store whose init-phase connect
   * failed or whose credentials were rejected; local runs and tests close
   * the handler when they are done.
   */
  close?(): Promise<void>;
}

/** One change of one counter, as the pipeline hands it to a store. */
export interface CounterChange {
  /** The step: a non-zero safe integer with |by| ≤ `MAX_STEP`; 1 for a plain increment. */
  readonly by: number;
  /** Conditional mode: the value stays within [0, maximum]. Absent: unconditional. */
  readonly maximum?: number;
  /** Exactly-once: the request's `Idempotency-Key` and how long it is remembered. */
  readonly idempotency?: IdempotencyOptions;
  /**
   * Slots the change may go to (the configured `COUNTER_SHARDS`). Absent or
   * 1: an unsharded counter, stored and answered as always. More: a sharded
   * counter (`src/runtime/shards.ts`): the change goes to one slot, and the
   * result carries no `counter`.
   */
  readonly shards?: number;
}

export interface IdempotencyOptions {
  /** 1–255 printable ASCII characters (validated by the request parser). */
  readonly key: string;
  /** How long a recorded key is remembered, in seconds (≥ 1). */
  readonly retentionSeconds: number;
}

export interface ChangeResult {
  /**
   * The value the change produced (for a replay: the value the original
   * produced). Absent for a sharded counter: no single write knows the total.
   */
  readonly counter?: number;
  /** A sharded counter: the slot that took the change (for a replay: absent). */
  readonly shard?: number;
  /** True when the key had already been applied: nothing was written now. */
  readonly replayed: boolean;
}

/** Largest |by| a request may carry. */
export const MAX_STEP = 1_000_000_000;

/**
 * The range of *previous* values from which a change may be applied: the
 * condition a store writes as `lowest ≤ value ≤ highest` (inclusive).
 * Conditional: upward `value ≤ maximum − by`, downward `value ≥ −by`.
 * Unconditional: the result stays a safe integer.
 */
export function allowedPrevious(by: number, maximum?: number): { lowest: number; highest: number } {
  if (maximum === undefined) {
    return by > 0
      ? { lowest: Number.MIN_SAFE_INTEGER, highest: Number.MAX_SAFE_INTEGER - by }
      : { lowest: Number.MIN_SAFE_INTEGER - by, highest: Number.MAX_SAFE_INTEGER };
  }
  return by > 0
    ? { lowest: Number.MIN_SAFE_INTEGER, highest: maximum - by }
    : { lowest: -by, highest: Number.MAX_SAFE_INTEGER };
}

/**
 * Whether a counter that does not exist yet (value 0) may take the change:
 * decides whether a store's write may create the counter.
 */
export function zeroAllowed(by: number, maximum?: number): boolean {
  const { lowest, highest } = allowedPrevious(by, maximum);
  return lowest <= 0 && 0 <= highest;
}

/**
 * What a recorded key is bound to: the id and the step. A later request with
 * the key replays only when both are equal; otherwise it is a reuse (422).
 */
export function sameBinding(recorded: { id: string; by: number }, id: string, by: number): boolean {
  return recorded.id === id && recorded.by === by;
}

/** The five backends, as they appear in routes (`/{backend}/{id}`). */
export const BACKENDS = ['dynamo', 'redis', 'momento', 'docdb', 'tidb'] as const;
export type BackendName = (typeof BACKENDS)[number];
