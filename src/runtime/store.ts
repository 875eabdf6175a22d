/**
 * The one abstraction every backend implements. A store owns its client,
 * creates it once per container (in the init phase, see `connect`) and
 * replaces it when it breaks.
 *
 * Each method is one atomic operation on the datastore: the value returned by
 * an increment is the value *this* increment produced, never a re-read.
 */
export interface CounterStore {
  /** Adds one and returns the new value. A counter never written starts at 0. */
  increment(id: string, options?: WriteOptions): Promise<number>;

  /**
   * Adds one only while the stored value is below `maximum`; returns the new
   * value. Throws `LimitReachedError` (nothing written) once it holds `maximum`.
   * Contention between writers must never surface as a rejection.
   */
  incrementBelow(id: string, maximum: number, options?: WriteOptions): Promise<number>;

  /** The stored value, 0 for a counter never written. */
  read(id: string): Promise<number>;

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

/**
 * Per-request options. Open for what is planned next: an
 * idempotency key for exactly-once increments under client retries.
 */
export interface WriteOptions {
  /** Reserved: the request's `Idempotency-Key`. Stores ignore it today. */
  readonly requestKey?: string;
}

/** The five backends, as they appear in routes (`/{backend}/{id}`). */
export const BACKENDS = ['dynamo', 'redis', 'momento', 'docdb', 'tidb'] as const;
export type BackendName = (typeof BACKENDS)[number];
