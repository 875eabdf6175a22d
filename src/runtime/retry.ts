/**
 * Retries, back-off and deadlines: written once for every store.
 *
 * A store retries only what certainly applied nothing (a refused
 * connection, a write conflict, a cancelled transaction); everything else
 * goes back to the client. What is retryable, and what the client hears
 * when the attempts or the time run out, is the store's to say; how long to
 * wait and when to stop is said here.
 */

/**
 * Exponential back-off with full jitter: the wait after the n-th failed
 * attempt is uniform in `[0, min(capMs, baseMs · 2^n))`. Full jitter spreads
 * contenders apart; the cap keeps a request that lost a few times from
 * sleeping while fresh ones keep winning.
 */
export interface Backoff {
  readonly baseMs: number;
  readonly capMs: number;
}

/** The wait after the `attempt`-th failed attempt (1-based), full jitter. */
export function jitteredDelay(attempt: number, backoff: Backoff): number {
  return Math.random() * Math.min(backoff.capMs, backoff.baseMs * 2 ** attempt);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The moment after which nobody waits for an answer: the client has had
 * (or is about to have) its 503. Checked between steps; a step already on
 * the wire can be cut off with `onExpire` (aborting a transaction, say).
 */
export class Deadline {
  /** A deadline `ms` from now; `undefined` never expires. */
  static after(ms: number | undefined): Deadline {
    return new Deadline(ms === undefined ? Infinity : Date.now() + ms);
  }

  private cut = false;
  private readonly hooks = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  /** @param at epoch milliseconds; `Infinity` never expires */
  constructor(public readonly at: number) {}

  /** True once the moment has passed (or `expire` was called). */
  get expired(): boolean {
    return this.cut || Date.now() >= this.at;
  }

  /** Milliseconds left (0 once expired; `Infinity` for a deadline that never expires). */
  remainingMs(): number {
    return this.cut ? 0 : Math.max(0, this.at - Date.now());
  }

  /** Expires the deadline now and runs every hook. */
  expire(): void {
    if (this.cut) return;
    this.cut = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const hooks = [...this.hooks];
    this.hooks.clear();
    for (const hook of hooks) hook();
  }

  /**
   * Runs `hook` once the deadline passes (at once if it has). Returns a
   * function that unregisters it; the timer is released with the last hook.
   */
  onExpire(hook: () => void): () => void {
    if (this.expired) {
      hook();
      return () => undefined;
    }
    this.hooks.add(hook);
    if (!this.timer && Number.isFinite(this.at)) {
      this.timer = setTimeout(() => this.expire(), this.remainingMs());
      this.timer.unref?.();
    }
    return () => {
      this.hooks.delete(hook);
      if (this.hooks.size === 0 && this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Throws `error()` once the deadline has passed. */
  check(error: () => Error): void {
    if (this.expired) throw error();
  }
}

/**
 * Settles with `work`, or rejects with `onTimeout()` as soon as `deadline`
 * passes, whatever the work is still waiting for (and expires the deadline,
 * so work that checks it stops). The work is not cancelled unless it hooked
 * itself to the deadline; a late failure of abandoned work is swallowed.
 */
export async function withinDeadline<T>(
  deadline: Deadline,
  work: Promise<T> | ((deadline: Deadline) => Promise<T>),
  onTimeout: () => Error,
): Promise<T> {
  const running = typeof work === 'function' ? work(deadline) : work;
  if (!Number.isFinite(deadline.at)) return running;
  let unhook: () => void = () => undefined;
  const cutOff = new Promise<never>((_, reject) => {
    unhook = deadline.onExpire(() => reject(onTimeout()));
  });
  try {
    return await Promise.race([running, cutOff]);
  } finally {
    unhook();
    // The abandoned work has nobody to report a late failure to.
    running.catch(() => undefined);
    cutOff.catch(() => undefined);
  }
}

/** Returned by an attempt to ask for another one (the failure was not an exception). */
export const AGAIN: unique symbol = Symbol('retry.again');

export interface RetryOptions {
  /** The wait between attempts. */
  readonly backoff: Backoff;
  /**
   * Attempts at most, the first one included.
   * @default Infinity: the deadline bounds the attempts
   */
  readonly maxAttempts?: number;
  /** No back-off sleeps past it, and no attempt starts after it. */
  readonly deadline?: Deadline;
  /**
   * Whether a thrown error may be retried: only when the failed attempt
   * certainly applied nothing. Not retryable: thrown as it is.
   */
  readonly retryable: (err: unknown, attempt: number) => boolean;
  /**
   * The error to throw when a retryable failure has no attempt left (the
   * count is spent, or the next wait would pass the deadline): usually a 503
   * saying nothing was applied. `last` is the last failure (`AGAIN` when the
   * attempt returned it).
   */
  readonly exhausted: (attempts: number, last: unknown) => Error;
}

/**
 * Runs `attempt` (1-based) until it returns a value, throws a non-retryable
 * error, or runs out of attempts or time. An attempt returns `AGAIN` to be
 * retried without throwing.
 */
export async function retry<T>(attempt: (n: number) => Promise<T | typeof AGAIN>, options: RetryOptions): Promise<T> {
  const maxAttempts = options.maxAttempts ?? Infinity;
  for (let n = 1; ; n++) {
    let last: unknown = AGAIN;
    try {
      const result = await attempt(n);
      if (result !== AGAIN) return result;
    } catch (err) {
      if (!options.retryable(err, n)) throw err;
      last = err;
    }
    if (n >= maxAttempts) throw options.exhausted(n, last);
    const delay = jitteredDelay(n, options.backoff);
    if (options.deadline && options.deadline.remainingMs() <= delay) throw options.exhausted(n, last);
    await sleep(delay);
  }
}
