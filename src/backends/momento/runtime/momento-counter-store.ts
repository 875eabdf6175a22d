import { CacheClient, CacheGet, CacheIncrement, CacheSetIfAbsent, CacheSetIfEqual } from '@gomomento/sdk';
import { BackendUnavailableError, LimitReachedError } from '../../../runtime/errors';
import { CounterStore } from '../../../runtime/store';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { createCacheClient, credentialProviderFor } from './momento-client';
import { MomentoConfig } from './momento-config';
import { MomentoErrorResponse, toMomentoConnectError, toMomentoCounterError } from './momento-errors';

/**
 * Back-off between compare-and-swap attempts: full jitter, exponential from
 * 2 ms, capped at 16 ms. The cap is low on purpose: with a high cap, a request
 * that has lost a few times sleeps long while fresh requests (attempt 1, no
 * sleep) keep winning, and the old one starves into a 503. Measured on the
 * local server, 20 callers × 1000 requests, maximum 300: cap 64 ms → 3–4
 * requests out of budget; cap 16 ms → none, at about the same RPC count.
 */
const BACKOFF_BASE_MS = 1;
const BACKOFF_CAP_MS = MOMENTO_DEFAULTS.casBackoffCapMs;

/**
 * Momento.
 *
 * Unconditional: Momento's server-side `increment` is atomic on the item and
 * treats a missing key as 0: one round trip, no race, even on a brand-new id.
 *
 * Conditional: Momento has no "increment if below" primitive, so this is a
 * compare-and-swap loop on the decimal string `increment` also uses:
 *
 *   read v → v ≥ max: 409 (nothing written; the value never goes down, so
 *            the read is a point at which the counter was at the maximum)
 *          → missing: `setIfAbsent("1")`
 *          → else:    `setIfEqual(v+1, expected v)`
 *
 * A write is stored only if nobody wrote in between, so each accepted
 * increment moves the value by exactly one from a value below the maximum:
 * no lost update, no overshoot. A lost race is not an answer: the request
 * re-reads and tries again after a jittered back-off, and only when its
 * budget (attempts and time) runs out does it answer 503, which the client
 * may retry. It never answers 409 because of a race.
 *
 * Every write sets the TTL: a Momento counter is a cache item that resets to
 * 0 when it expires (or is evicted).
 */
export class MomentoCounterStore implements CounterStore {
  /** Reads the secret (once per container) and creates the client. */
  static async create(config: MomentoConfig): Promise<MomentoCounterStore> {
    const credentials = await credentialProviderFor(config.connection);
    return new MomentoCounterStore(createCacheClient(credentials, config.ttlSeconds, config.clientTimeoutMs), config);
  }

  private readonly writeOptions: { ttl: number };
  private readonly secretArn?: string;

  constructor(private readonly client: CacheClient, private readonly config: MomentoConfig) {
    this.writeOptions = { ttl: config.ttlSeconds };
    // The ARN the key came from, if any: what a rotation re-reads.
    this.secretArn = config.connection.secretArn;
  }

  /**
   * Opens the client's gRPC channel now (init phase), what the SDK's own
   * `CacheClient.create({ eagerConnectTimeout })` does; a request meanwhile
   * rides the same channel, and after a failure the channel connects again
   * on the next call.
   */
  async connect(): Promise<void> {
    const { dataClients } = this.client as unknown as { dataClients?: Array<{ connect(timeoutSeconds?: number): Promise<void> }> };
    try {
      // The SDK's eager-connect unit is seconds. A first request may wait for
      // this connect, so it is a term of the worst case (momento-env.ts).
      const seconds = Math.ceil(this.config.connectTimeoutMs / 1000);
      await Promise.all((dataClients ?? []).map((c) => c.connect(seconds)));
    } catch (err) {
      throw toMomentoConnectError(err);
    }
  }

  async increment(id: string): Promise<number> {
    // Not retried on error: Increment is not idempotent, and after a timeout
    // it may have been applied. The 503 leaves the decision to the client.
    const resp = await this.client.increment(this.config.cacheName, id, 1, this.writeOptions);
    if (resp instanceof CacheIncrement.Success) return resp.value();
    throw this.error('increment', resp as CacheIncrement.Error);
  }

  async incrementBelow(id: string, maximum: number): Promise<number> {
    const { cacheName, casMaxAttempts, casBudgetMs } = this.config;
    const deadline = Date.now() + casBudgetMs;
    const giveUp = (attempts: number) => new BackendUnavailableError(
      `Momento compare-and-swap on a contended counter gave up after ${attempts} attempts (${casBudgetMs} ms budget); retry`,
      { retryAfterSeconds: 1 },
    );
    for (let attempt = 1; ; attempt++) {
      // The budget is checked before each attempt (the first one included)…
      if (attempt > 1 && Date.now() >= deadline) throw giveUp(attempt - 1);
      const current = await this.get(id);
      if (current !== undefined && current >= maximum) throw new LimitReachedError(maximum, current);
      // …and again before the write: a read that came back past the deadline
      // sends nothing, so a slow Momento cannot stretch the request by
      // another call (nothing was written: the 503 is safe to retry).
      if (Date.now() >= deadline) throw giveUp(attempt);

      // A write error is not retried: a SetIf that timed out may have been
      // stored, and a retry after re-reading would count it twice.
      const next = (current ?? 0) + 1;
      if (current === undefined) {
        const resp = await this.client.setIfAbsent(cacheName, id, String(next), this.writeOptions);
        if (resp instanceof CacheSetIfAbsent.Stored) return next;
        if (!(resp instanceof CacheSetIfAbsent.NotStored)) throw this.error('setIfAbsent', resp as CacheSetIfAbsent.Error);
      } else {
        const resp = await this.client.setIfEqual(cacheName, id, String(next), String(current), this.writeOptions);
        if (resp instanceof CacheSetIfEqual.Stored) return next;
        if (!(resp instanceof CacheSetIfEqual.NotStored)) throw this.error('setIfEqual', resp as CacheSetIfEqual.Error);
      }

      // Lost the race: someone else's increment landed first (progress was
      // made). Back off for a random time so the losers spread out instead of
      // colliding again on the next round.
      const delay = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
      if (attempt >= casMaxAttempts || Date.now() + delay >= deadline) throw giveUp(attempt);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  async read(id: string): Promise<number> {
    return (await this.get(id)) ?? 0;
  }

  async close(): Promise<void> {
    this.client.close();
  }

  private error(operation: string, response: MomentoErrorResponse): Error {
    return toMomentoCounterError(operation, response, this.secretArn);
  }

  /** The stored integer, or undefined when the item is missing (or expired). */
  private async get(id: string): Promise<number | undefined> {
    // Get is idempotent: the SDK itself retries it on UNAVAILABLE / INTERNAL.
    const resp = await this.client.get(this.config.cacheName, id);
    if (resp instanceof CacheGet.Miss) return undefined;
    if (!(resp instanceof CacheGet.Hit)) throw this.error('get', resp as CacheGet.Error);
    const text = resp.valueString();
    const value = Number(text);
    if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value)) {
      // Not ours: something else wrote this key. Never overwrite it.
      throw new Error(`Momento item "${id}" does not hold an integer counter`);
    }
    return value;
  }
}
