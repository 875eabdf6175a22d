import { randomBytes } from 'crypto';
import { CacheClient, CacheGet, CacheGetBatch, CacheIncrement, CacheSetIfAbsent, CacheSetIfEqual, MomentoErrorCode } from '@gomomento/sdk';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, IdempotencyOptions, sameBinding } from '../../../runtime/store';
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
 * A key record's item name: this prefix, then the Idempotency-Key verbatim.
 * Counter ids never contain control characters (the request parser rejects
 * them), so no counter id can name a key record.
 */
export const KEY_RECORD_PREFIX = '\u0001k\u0001';

/**
 * A keyed change kept in its counter's item until its key record holds the
 * outcome: [by, the counter it produced, the key record's expiry (epoch ms)].
 */
type Entry = [by: number, counter: number, expiresAt: number];

/** A counter item as read: its exact text (what a conditional write compares with), value and pending keyed changes. */
interface CounterItem {
  /** The stored text; undefined for a missing item. */
  readonly raw?: string;
  readonly value: number;
  /** Idempotency-Key → entry, oldest first. */
  readonly entries: ReadonlyMap<string, Entry>;
  /**
   * Drop history, held while the item is structured: a random `epoch` set
   * when it becomes structured, and `drops`, the number of writes since then
   * that dropped settled entries. Equal epoch and drops in two reads prove
   * no entry was dropped between them (see `compareAndSwap`).
   */
  readonly epoch?: string;
  readonly drops: number;
}

/** A key record as read or written: what the key is bound to, until when, and (once known) the counter its change produced. */
interface KeyRecord {
  /** The stored text, compared by `setIfEqual` when the outcome is added. */
  readonly raw: string;
  readonly id: string;
  readonly by: number;
  /** Epoch ms after which the key is new again (checked here, not only by the item's TTL). */
  readonly exp: number;
  readonly counter?: number;
}

/** A keyed change under way: the key, and its record as last read or written. */
interface Keyed {
  readonly idempotency: IdempotencyOptions;
  record: KeyRecord;
}

const DECIMAL = /^-?\d+$/;
const NO_ENTRIES: ReadonlyMap<string, Entry> = new Map();
const MISSING: CounterItem = { value: 0, entries: NO_ENTRIES, drops: 0 };

/**
 * Momento.
 *
 * A counter is one cache item. Without keyed changes it holds the decimal
 * string Momento's `increment` reads and writes ("42"); while keyed changes
 * are pending it holds `{"v":42,"k":[[key, by, counter, expiresAt], …]}`.
 * An Idempotency-Key also has an item of its own, its key record
 * (`KEY_RECORD_PREFIX` + key): `{"id","by","exp"}`, plus `"counter"` once
 * the outcome is copied there.
 *
 * - Unconditional, no key: `increment(id, by)`, atomic on the server, one
 *   round trip. A result past the safe integers is undone at once and the
 *   change re-evaluated by the compare-and-swap path (see `incrementOnce`);
 *   an item holding pending keyed changes is not a decimal, `increment`
 *   refuses it (FAILED_PRECONDITION) and the change takes that path too.
 * - Conditional, or with a key: a compare-and-swap loop on the counter's
 *   item (get → check → `setIfEqual` on the exact text read, or
 *   `setIfAbsent` for a new id). A write is stored only if nobody wrote in
 *   between, so the value checked is the value changed: no lost update, no
 *   overshoot. A lost race is not an answer: re-read and retry after a
 *   jittered back-off, 503 only when the budget is spent.
 * - With a key (`applyKeyed`): the key record binds the key to (id, by)
 *   (`setIfAbsent`); the change and the key's entry are then written to the
 *   counter's item by ONE conditional write, so a change is never stored
 *   without the trace that it was applied; the outcome is then copied to
 *   the key record, and only after that may a later write drop the entry.
 *
 * Every counter write sets the TTL: a counter is a cache item that resets
 * to 0 when it expires (or is evicted).
 */
export class MomentoCounterStore implements CounterStore {
  /** Reads the secret (once per container) and creates the client. */
  static async create(config: MomentoConfig): Promise<MomentoCounterStore> {
    const credentials = await credentialProviderFor(config.connection);
    return new MomentoCounterStore(createCacheClient(credentials, config.ttlSeconds, config.clientTimeoutMs), config);
  }

  private readonly writeOptions: { ttl: number };
  private readonly secretArn?: string;
  /** SDK calls under way, each with its own AbortController (see `call` and `close`). */
  private readonly inflight = new Map<Promise<unknown>, AbortController>();
  private closed = false;

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

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    const { by, maximum, idempotency } = change;
    // The budget starts with the request: every call below starts before it
    // ends (the worst case is the budget plus one call, momento-env.ts).
    const deadline = Date.now() + this.config.casBudgetMs;
    if (idempotency) return this.applyKeyed(id, by, maximum, idempotency, deadline);
    if (maximum === undefined) {
      const value = await this.incrementOnce(id, by);
      if (value !== undefined) return { counter: value, replayed: false };
    }
    // Conditional, or an unconditional change `increment` could not take: an
    // unconditional one also drops entries whose outcome is in their key
    // records, so the item becomes a decimal again and the next one is one
    // round trip.
    return this.compareAndSwap(id, by, maximum, deadline, { dropAll: maximum === undefined });
  }

  async read(id: string): Promise<number> {
    return (await this.getItem(id)).value;
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
  private call<T>(send: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new BackendUnavailableError('This container\'s Momento client is closed'));
    const aborter = new AbortController();
    const pending = send(aborter.signal);
    this.inflight.set(pending, aborter);
    const done = () => this.inflight.delete(pending);
    pending.then(done, done);
    return pending;
  }

  /**
   * Unconditional, no key: Momento's `increment` (atomic on the item, a
   * missing item counts as 0; the service refuses an item that is not a
   * decimal integer with FAILED_PRECONDITION). Returns the new value, or
   * undefined when the change must go through the compare-and-swap path:
   *
   * - the item holds pending keyed changes (not a decimal): FAILED_PRECONDITION;
   * - the result left the safe integers. `increment` works on 64-bit integers
   *   and has no bound, so the check can only follow the write: the step is
   *   undone at once (`increment(-by)`), and the compare-and-swap path then
   *   evaluates it on a stable value, where it is rejected (400) or, if the
   *   counter moved meanwhile, applied. Between the two calls the item holds
   *   the out-of-range value (docs/momento.md, "Steps and decrements").
   *
   * Not retried on error: Increment is not idempotent, and after a timeout it
   * may have been applied. The 503 leaves the decision to the client.
   */
  private async incrementOnce(id: string, by: number): Promise<number | undefined> {
    const resp = await this.call((abortSignal) => this.client.increment(this.config.cacheName, id, by, { ...this.writeOptions, abortSignal }));
    if (resp instanceof CacheIncrement.Success) {
      const value = resp.value();
      if (Number.isSafeInteger(value)) return value;
      const undo = await this.call((abortSignal) => this.client.increment(this.config.cacheName, id, -by, { ...this.writeOptions, abortSignal }));
      if (!(undo instanceof CacheIncrement.Success)) throw this.error('increment (undoing a step past the safe integers)', undo as CacheIncrement.Error);
      return undefined;
    }
    const err = resp as CacheIncrement.Error;
    if (err.errorCode() === MomentoErrorCode.FAILED_PRECONDITION_ERROR) return undefined;
    throw this.error('increment', err);
  }

  /**
   * A change with an Idempotency-Key.
   *
   * 1. Read the counter's item, THEN bind the key (`claim`): its record says
   *    (id, by). A record for another id or step is a reuse (422); a record
   *    holding an outcome is a replay.
   * 2. Compare-and-swap on the counter's item: an entry for the key there
   *    means the change was applied (by a request whose answer was lost, or
   *    a concurrent one with the same key): replay its counter. Otherwise
   *    the bound check, then ONE conditional write of the new value together
   *    with the key's entry.
   * 3. Copy the outcome into the key record (`settle`); from then on a later
   *    write of the counter may drop the entry (`settledEntries`).
   *
   * Why the order of the reads matters: an entry is dropped only after its
   * outcome is in the record, so a record read that FOLLOWS an item read and
   * still shows no outcome proves that no entry of the key had been dropped
   * by that item read: if the key has no entry there, its change was not
   * applied. The first attempt has that order (item, then record). A later
   * attempt reads the item again; unless the item's drop history proves
   * nothing was dropped since the reference read, it reads the record again
   * (and that item read becomes the reference).
   */
  private async applyKeyed(
    id: string, by: number, maximum: number | undefined, idempotency: IdempotencyOptions, deadline: number,
  ): Promise<ChangeResult> {
    const first = await this.getItem(id);
    // Which pending entries may be dropped is asked alongside the claim, not
    // between the read and the write, where it would widen the race window.
    const pending = liveEntries(first);
    const [record, settled] = await Promise.all([
      this.claim(idempotency, id, by, deadline),
      pending.size >= MOMENTO_DEFAULTS.pendingEntriesPruneAt ? this.settledEntries(id, pending, deadline) : Promise.resolve(new Set<string>()),
    ]);
    if (record.counter !== undefined) return { counter: record.counter, replayed: true };
    return this.compareAndSwap(id, by, maximum, deadline, { first, keyed: { idempotency, record }, settled });
  }

  /**
   * Binds the key to (id, by) in its record, or reads the record that binds
   * it already. `setIfAbsent` first: a new key (the usual case) costs one
   * call. A record whose retention has passed (`exp`, checked here and not
   * only by the item's TTL) is replaced as if absent.
   */
  private async claim({ key, retentionSeconds }: IdempotencyOptions, id: string, by: number, deadline: number): Promise<KeyRecord> {
    const { cacheName } = this.config;
    const name = KEY_RECORD_PREFIX + key;
    const options = { ttl: retentionSeconds };
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1 && Date.now() >= deadline) throw this.giveUp(attempt - 1);
      const exp = Date.now() + retentionSeconds * 1000;
      const raw = JSON.stringify({ id, by, exp });
      const set = await this.call((abortSignal) => this.client.setIfAbsent(cacheName, name, raw, { ...options, abortSignal }));
      if (set instanceof CacheSetIfAbsent.Stored) return { raw, id, by, exp };
      if (!(set instanceof CacheSetIfAbsent.NotStored)) throw this.error('setIfAbsent (key record)', set as CacheSetIfAbsent.Error);

      const got = await this.call((abortSignal) => this.client.get(cacheName, name, { abortSignal }));
      if (got instanceof CacheGet.Miss) continue; // expired between the two calls
      if (!(got instanceof CacheGet.Hit)) throw this.error('get (key record)', got as CacheGet.Error);
      const text = got.valueString();
      const recorded = parseKeyRecord(text, key);
      if (recorded.exp <= Date.now()) {
        const replaced = await this.call((abortSignal) => this.client.setIfEqual(cacheName, name, raw, text, { ...options, abortSignal }));
        if (replaced instanceof CacheSetIfEqual.Stored) return { raw, id, by, exp };
        if (!(replaced instanceof CacheSetIfEqual.NotStored)) throw this.error('setIfEqual (key record)', replaced as CacheSetIfEqual.Error);
        continue;
      }
      if (!sameBinding(recorded, id, by)) throw new IdempotencyKeyReusedError();
      return recorded;
    }
  }

  /**
   * The compare-and-swap loop. Without `keyed` it is the plain conditional
   * change (and the unconditional one on an item `increment` refused); with
   * it, the replay check and the key's entry ride on the same write.
   */
  private async compareAndSwap(
    id: string,
    by: number,
    maximum: number | undefined,
    deadline: number,
    options: { first?: CounterItem; keyed?: Keyed; settled?: Set<string>; dropAll?: boolean },
  ): Promise<ChangeResult> {
    const { cacheName, casMaxAttempts } = this.config;
    const keyed = options.keyed && { ...options.keyed };
    const { lowest, highest } = allowedPrevious(by, maximum);
    let first = options.first;
    /** Keyed: the last item read known to precede a record read that showed no outcome. */
    let reference = first;
    /** Entries known to be settled (`settledEntries`): once settled, always settled. */
    let settled = options.settled;
    for (let attempt = 1; ; attempt++) {
      // The budget is checked before each attempt (the first one included)…
      if (attempt > 1 && Date.now() >= deadline) throw this.giveUp(attempt - 1);
      const item = first ?? await this.getItem(id);
      first = undefined;
      const live = liveEntries(item);

      if (keyed) {
        const key = keyed.idempotency.key;
        const applied = live.get(key);
        if (applied) {
          // Applied before (its answer lost, or a concurrent request with
          // the key won): nothing more is written but the outcome.
          if (applied[0] !== by) throw new IdempotencyKeyReusedError();
          await this.settle(key, keyed.record, applied[1], deadline);
          return { counter: applied[1], replayed: true };
        }
        if (attempt > 1 && !(reference?.epoch !== undefined && item.epoch === reference.epoch && item.drops === reference.drops)) {
          // Entries may have been dropped since the reference read: the
          // record as it is now, after this item read (see applyKeyed).
          keyed.record = await this.reread(keyed, id, by);
          if (keyed.record.counter !== undefined) return { counter: keyed.record.counter, replayed: true };
          reference = item;
        }
      }
      if (item.value < lowest || item.value > highest) {
        throw rejectionOf(by, maximum, item.value);
      }
      // Unkeyed: asked here, once per request, when the item holds enough
      // pending entries (or any, for an unconditional change: dropping them
      // all makes the item a decimal again, one round trip for the next one).
      if (!settled && live.size > 0 && (options.dropAll || live.size >= MOMENTO_DEFAULTS.pendingEntriesPruneAt)) {
        settled = await this.settledEntries(id, live, deadline);
      }
      const entries = new Map([...live].filter(([key, [, , exp]]) => !settled?.has(settledId(key, exp))));
      const drops = entries.size < live.size ? item.drops + 1 : item.drops;
      // …and again before the write: a read that came back past the deadline
      // sends nothing, so a slow Momento cannot stretch the request by
      // another call (nothing was written: the 503 is safe to retry).
      if (Date.now() >= deadline) throw this.giveUp(attempt);

      const next = item.value + by;
      if (keyed) entries.set(keyed.idempotency.key, [by, next, keyed.record.exp]);
      // A plain decimal needs no epoch: draw one only for a structured item.
      const text = entries.size === 0 ? String(next) : itemText(next, entries, item.epoch ?? newEpoch(), drops);
      // A write error is not retried: a SetIf that timed out may have been
      // stored, and a retry after re-reading would count it twice.
      if (item.raw === undefined) {
        const resp = await this.call((abortSignal) => this.client.setIfAbsent(cacheName, id, text, { ...this.writeOptions, abortSignal }));
        if (!(resp instanceof CacheSetIfAbsent.Stored || resp instanceof CacheSetIfAbsent.NotStored)) throw this.error('setIfAbsent', resp as CacheSetIfAbsent.Error);
        if (resp instanceof CacheSetIfAbsent.Stored) return this.applied(next, keyed, deadline);
      } else {
        const raw = item.raw;
        const resp = await this.call((abortSignal) => this.client.setIfEqual(cacheName, id, text, raw, { ...this.writeOptions, abortSignal }));
        if (!(resp instanceof CacheSetIfEqual.Stored || resp instanceof CacheSetIfEqual.NotStored)) throw this.error('setIfEqual', resp as CacheSetIfEqual.Error);
        if (resp instanceof CacheSetIfEqual.Stored) return this.applied(next, keyed, deadline);
      }

      // Lost the race: someone else's write landed first (progress was
      // made). Back off for a random time so the losers spread out instead of
      // colliding again on the next round.
      const delay = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
      if (attempt >= casMaxAttempts || Date.now() + delay >= deadline) throw this.giveUp(attempt);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private async applied(counter: number, keyed: Keyed | undefined, deadline: number): Promise<ChangeResult> {
    if (keyed) await this.settle(keyed.idempotency.key, keyed.record, counter, deadline);
    return { counter, replayed: false };
  }

  /**
   * The key record again. Missing: its retention ended (or it was evicted)
   * during this request; the change goes on as the first use it now is.
   * Replaced by a later use of the key (another expiry): that use's binding
   * applies.
   */
  private async reread(keyed: Keyed, id: string, by: number): Promise<KeyRecord> {
    const { key } = keyed.idempotency;
    const got = await this.call((abortSignal) => this.client.get(this.config.cacheName, KEY_RECORD_PREFIX + key, { abortSignal }));
    if (got instanceof CacheGet.Miss) return keyed.record;
    if (!(got instanceof CacheGet.Hit)) throw this.error('get (key record)', got as CacheGet.Error);
    const recorded = parseKeyRecord(got.valueString(), key);
    if (!sameBinding(recorded, id, by)) throw new IdempotencyKeyReusedError();
    return recorded;
  }

  /**
   * Copies a keyed change's outcome into its key record, conditionally on
   * the record being the one this request read or wrote (NotStored: another
   * request with the key copied it first). A failed call answers 503 like
   * any other: the change is applied, and the client's retry finds its
   * entry in the counter's item (it stays there while the record lacks the
   * outcome) and replays it. Skipped past the deadline, so the worst case
   * stays the budget plus one call; the entry then stays until a retry or
   * the retention's end.
   */
  private async settle(key: string, record: KeyRecord, counter: number, deadline: number): Promise<void> {
    if (record.counter !== undefined || Date.now() >= deadline) return;
    await this.copyOutcome(key, record, counter);
  }

  /**
   * `setIfEqual(record, record + counter)`: true when stored, false when the
   * record changed (another request copied the outcome first) or its
   * retention has ended; a failed call throws.
   */
  private async copyOutcome(key: string, record: KeyRecord, counter: number): Promise<boolean> {
    const now = Date.now();
    if (record.exp <= now) return false;
    const text = JSON.stringify({ id: record.id, by: record.by, exp: record.exp, counter });
    // The record keeps its expiry: the TTL left, in whole seconds (the SDK's
    // unit), rounded up; `exp` inside is the exact bound.
    const ttl = Math.ceil((record.exp - now) / 1000);
    const name = KEY_RECORD_PREFIX + key;
    const resp = await this.call((abortSignal) => this.client.setIfEqual(this.config.cacheName, name, text, record.raw, { ttl, abortSignal }));
    if (!(resp instanceof CacheSetIfEqual.Stored || resp instanceof CacheSetIfEqual.NotStored)) throw this.error('setIfEqual (key record outcome)', resp as CacheSetIfEqual.Error);
    return resp instanceof CacheSetIfEqual.Stored;
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
   */
  private async settledEntries(id: string, entries: ReadonlyMap<string, Entry>, deadline: number): Promise<Set<string>> {
    const keys = [...entries.keys()];
    const names = keys.map((k) => KEY_RECORD_PREFIX + k);
    const resp = await this.call((abortSignal) => this.client.getBatch(this.config.cacheName, names, { abortSignal }));
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
        copies.push(this.copyOutcome(key, { raw, ...recorded }, counter).then(
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

  private giveUp(attempts: number): BackendUnavailableError {
    return new BackendUnavailableError(
      `Momento compare-and-swap on a contended counter gave up after ${attempts} attempts (${this.config.casBudgetMs} ms budget); retry`,
      { retryAfterSeconds: 1 },
    );
  }

  private error(operation: string, response: MomentoErrorResponse): Error {
    return toMomentoCounterError(operation, response, this.secretArn);
  }

  /** The counter's item (value 0 and no entries when missing or expired). */
  private async getItem(id: string): Promise<CounterItem> {
    // Get is idempotent: the SDK itself retries it on UNAVAILABLE / INTERNAL.
    const resp = await this.call((abortSignal) => this.client.get(this.config.cacheName, id, { abortSignal }));
    if (resp instanceof CacheGet.Miss) return MISSING;
    if (!(resp instanceof CacheGet.Hit)) throw this.error('get', resp as CacheGet.Error);
    return parseItem(id, resp.valueString());
  }
}

/** The entries of an item whose retention has not ended. */
function liveEntries(item: CounterItem): Map<string, Entry> {
  const now = Date.now();
  return new Map([...item.entries].filter(([, [, , exp]]) => exp > now));
}

/** One use of a key: the key and its record's expiry. */
function settledId(key: string, exp: number): string {
  return `${exp}:${key}`;
}

/**
 * The item's text: the decimal alone when no keyed change is pending, so
 * `increment` works on it again (its drop history goes with it: a later
 * structured item has a new epoch).
 */
function itemText(value: number, entries: ReadonlyMap<string, Entry>, epoch: string, drops: number): string {
  if (entries.size === 0) return String(value);
  return JSON.stringify({ v: value, k: [...entries].map(([key, [by, counter, exp]]) => [key, by, counter, exp]), e: epoch, d: drops });
}

/** 72 random bits: two epochs of one item never collide in practice. */
function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

function parseItem(id: string, text: string): CounterItem {
  if (DECIMAL.test(text)) {
    const value = Number(text);
    if (Number.isSafeInteger(value)) return { raw: text, value, entries: NO_ENTRIES, drops: 0 };
    // Only a step past the safe integers puts this here, and `incrementOnce`
    // undoes it at once: retry.
    throw new BackendUnavailableError(`Momento item "${id}" holds ${text}, outside the safe integers (a step past them being undone); retry`);
  }
  const parsed = text.startsWith('{') ? tryParseJson(text) : undefined;
  const { v, k, e, d } = parsed ?? {};
  if (Number.isSafeInteger(v) && Array.isArray(k) && k.every(isEntryRow) && typeof e === 'string' && Number.isSafeInteger(d)) {
    const entries = new Map<string, Entry>();
    for (const [key, by, counter, exp] of k as Array<[string, number, number, number]>) entries.set(key, [by, counter, exp]);
    return { raw: text, value: v as number, entries, epoch: e, drops: d as number };
  }
  // Not ours: something else wrote this key. Never overwrite it.
  throw new Error(`Momento item "${id}" does not hold a counter`);
}

function isEntryRow(row: unknown): boolean {
  return Array.isArray(row) && row.length === 4 && typeof row[0] === 'string'
    && Number.isSafeInteger(row[1]) && Number.isSafeInteger(row[2]) && Number.isSafeInteger(row[3]);
}

function tryParseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

function tryParseKeyRecord(text: string): Omit<KeyRecord, 'raw'> | undefined {
  const r = tryParseJson(text);
  if (!r || typeof r.id !== 'string' || !Number.isSafeInteger(r.by) || !Number.isSafeInteger(r.exp)) return undefined;
  if (r.counter !== undefined && !Number.isSafeInteger(r.counter)) return undefined;
  return { id: r.id, by: r.by as number, exp: r.exp as number, ...(r.counter !== undefined ? { counter: r.counter as number } : {}) };
}

function parseKeyRecord(text: string, key: string): KeyRecord {
  const recorded = tryParseKeyRecord(text);
  if (!recorded) throw new Error(`Momento key record of Idempotency-Key "${key}" is not one this store wrote`);
  return { raw: text, ...recorded };
}
