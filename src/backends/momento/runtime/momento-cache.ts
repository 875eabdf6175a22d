import { CacheClient, CacheGet, CacheGetBatch, CacheSetIfAbsent, CacheSetIfEqual } from '@gomomento/sdk';
import { MomentoConfig } from './momento-config';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { MomentoErrorResponse, toMomentoCounterError } from './momento-errors';
import { CounterItem, Entry, KEY_RECORD_PREFIX, keyRecordText, KeyRecord, MISSING, parseItem, settledId, tryParseKeyRecord } from './momento-item';
import { BackendUnavailableError } from '../../../runtime/errors';
import { Backoff } from '../../../runtime/retry';
import { sameBinding } from '../../../runtime/store';

/**
 * Back-off between compare-and-swap attempts: full jitter, exponential from
 * 2 ms, capped at 16 ms. The cap is low on purpose: with a high cap, a request
 * that has lost a few times sleeps long while fresh requests (attempt 1, no
 * sleep) keep winning, and the old one starves into a 503. Measured on the
 * local server, 20 callers × 1000 requests, maximum 300: cap 64 ms → 3–4
 * requests out of budget; cap 16 ms → none, at about the same RPC count.
 */
export const CAS_BACKOFF: Backoff = { baseMs: 1, capMs: MOMENTO_DEFAULTS.casBackoffCapMs };

/**
 * The calls both the plain change and the keyed protocol make to one cache,
 * each tracked while under way so `close` can cancel it, and each failure
 * turned into the pipeline's error in one place (`momento-errors.ts`).
 */
export class MomentoCache {
  readonly name: string;
  /** SDK calls under way, each with its own AbortController (see `call` and `close`). */
  private readonly inflight = new Map<Promise<unknown>, AbortController>();
  private closed = false;

  constructor(readonly client: CacheClient, private readonly config: MomentoConfig) {
    this.name = config.cacheName;
  }

  /**
   * Closes the client once no call is under way. Calls still under way are
   * cancelled first: the SDK retries a cancelled Get, and a retry scheduled
   * after the channel closed would throw from a timer ("Channel has been
   * shut down"), outside any request. On Lambda nothing is under way when
   * the pipeline closes a store; locally a container may be closed mid-request.
   */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inflight.size > 0) {
      for (const aborter of this.inflight.values()) aborter.abort();
      await Promise.allSettled([...this.inflight.keys()]);
    }
    this.client.close();
  }

  /**
   * Every SDK call goes through here: tracked while under way, cancelled by
   * `close`, refused after it. One AbortController per call: the SDK adds a
   * listener to the signal of every call and never removes it.
   */
  call<T>(send: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new BackendUnavailableError('This container\'s Momento client is closed'));
    const aborter = new AbortController();
    const pending = send(aborter.signal);
    this.inflight.set(pending, aborter);
    const done = () => this.inflight.delete(pending);
    pending.then(done, done);
    return pending;
  }

  /** The 503 of a request whose compare-and-swap attempts or budget ran out (nothing of it was written). */
  giveUp(attempts: number): BackendUnavailableError {
    return new BackendUnavailableError(
      `Momento compare-and-swap on a contended counter gave up after ${attempts} attempts (${this.config.casBudgetMs} ms budget); retry`,
      { retryAfterSeconds: 1 },
    );
  }

  error(operation: string, response: MomentoErrorResponse): Error {
    return toMomentoCounterError(operation, response, this.config.connection.secretArn, this.name);
  }

  /** The counter's item (value 0 and no entries when missing or expired). */
  async getItem(id: string): Promise<CounterItem> {
    // Get is idempotent: the SDK itself retries it on UNAVAILABLE / INTERNAL.
    const resp = await this.call((abortSignal) => this.client.get(this.name, id, { abortSignal }));
    if (resp instanceof CacheGet.Miss) return MISSING;
    if (!(resp instanceof CacheGet.Hit)) throw this.error('get', resp as CacheGet.Error);
    return parseItem(id, resp.valueString());
  }

  /**
   * Several items in one `getBatch` (the slots of a sharded id), in the
   * order named; a missing item reads as value 0 with no entries.
   */
  async getItems(names: readonly string[]): Promise<CounterItem[]> {
    const resp = await this.call((abortSignal) => this.client.getBatch(this.name, [...names], { abortSignal }));
    if (!(resp instanceof CacheGetBatch.Success)) throw this.error('getBatch', resp as CacheGetBatch.Error);
    return resp.results().map((r, i) => {
      if (r instanceof CacheGet.Hit) return parseItem(names[i], r.valueString());
      if (r instanceof CacheGet.Miss) return MISSING;
      throw this.error('getBatch', r as CacheGet.Error);
    });
  }

  /** `setIfAbsent`: true when stored, false when the item exists; a failed call throws. */
  async setIfAbsent(key: string, text: string, ttl: number, what: string): Promise<boolean> {
    const resp = await this.call((abortSignal) => this.client.setIfAbsent(this.name, key, text, { ttl, abortSignal }));
    if (resp instanceof CacheSetIfAbsent.Stored) return true;
    if (resp instanceof CacheSetIfAbsent.NotStored) return false;
    throw this.error(`setIfAbsent (${what})`, resp as CacheSetIfAbsent.Error);
  }

  /** `setIfEqual`: true when stored, false when the item is missing or holds other text; a failed call throws. */
  async setIfEqual(key: string, text: string, expected: string, ttl: number, what: string): Promise<boolean> {
    const resp = await this.call((abortSignal) => this.client.setIfEqual(this.name, key, text, expected, { ttl, abortSignal }));
    if (resp instanceof CacheSetIfEqual.Stored) return true;
    if (resp instanceof CacheSetIfEqual.NotStored) return false;
    throw this.error(`setIfEqual (${what})`, resp as CacheSetIfEqual.Error);
  }

  /** A key record's text, undefined when missing. */
  async getRecordText(key: string): Promise<string | undefined> {
    const got = await this.call((abortSignal) => this.client.get(this.name, KEY_RECORD_PREFIX + key, { abortSignal }));
    if (got instanceof CacheGet.Miss) return undefined;
    if (!(got instanceof CacheGet.Hit)) throw this.error('get (key record)', got as CacheGet.Error);
    return got.valueString();
  }

  /**
   * `setIfEqual(record, record + counter)`: true when stored, false when the
   * record changed (another request copied the outcome first, or joined it)
   * or its retention has ended; a failed call throws.
   */
  async copyOutcome(key: string, record: KeyRecord, counter: number, sharded: boolean): Promise<boolean> {
    const now = Date.now();
    if (record.exp <= now) return false;
    const text = keyRecordText({ ...record, counter, ...(sharded ? { sharded } : {}) });
    // The record keeps its expiry: the TTL left, in whole seconds (the SDK's
    // unit), rounded up; `exp` inside is the exact bound.
    const ttl = Math.ceil((record.exp - now) / 1000);
    return this.setIfEqual(KEY_RECORD_PREFIX + key, text, record.raw, ttl, 'key record outcome');
  }

  /**
   * Which entries may be dropped: those whose outcome is in their key record
   * (the record of the same use of the key: same expiry), asked with one
   * `getBatch`. A record of the same use still without its outcome (the
   * request that applied the change died before copying it, or is about to
   * copy it) gets it from the entry here, as that request would have
   * written it; the entry may then be dropped too. An entry whose record is
   * missing stays: the record may have been evicted, and the entry is then
   * the only trace that the change was applied. Returns `settledId`s.
   * `sharded`: the entries are in slots of a sharded id (their counter is
   * a slot's value, and the record says so).
   */
  async settledEntries(id: string, entries: ReadonlyMap<string, Entry>, deadline: number, sharded: boolean): Promise<Set<string>> {
    const keys = [...entries.keys()];
    const names = keys.map((k) => KEY_RECORD_PREFIX + k);
    const resp = await this.call((abortSignal) => this.client.getBatch(this.name, names, { abortSignal }));
    if (!(resp instanceof CacheGetBatch.Success)) throw this.error('getBatch (key records)', resp as CacheGetBatch.Error);
    const results = resp.results();
    const settled = new Set<string>();
    const copies: Array<Promise<void>> = [];
    keys.forEach((key, i) => {
      const r = results[i];
      if (!(r instanceof CacheGet.Hit)) return;
      const raw = r.valueString();
      const recorded = tryParseKeyRecord(raw);
      const [by, counter, exp] = entries.get(key)!;
      if (!recorded || recorded.exp !== exp) return;
      if (recorded.counter !== undefined) {
        settled.add(settledId(key, exp));
      } else if (sameBinding(recorded, id, by) && Date.now() < deadline) {
        copies.push(this.copyOutcome(key, { raw, ...recorded }, counter, sharded).then(
          (stored) => {
            if (stored) settled.add(settledId(key, exp));
          },
          () => undefined, // best effort: the entry stays
        ));
      }
    });
    await Promise.all(copies);
    return settled;
  }
}
