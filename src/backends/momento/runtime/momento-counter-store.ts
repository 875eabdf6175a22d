import { CacheIncrement, MomentoErrorCode } from '@gomomento/sdk';
import { rejectionOf } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore } from '../../../runtime/store';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { CAS_BACKOFF, MomentoCache } from './momento-cache';
import { createCacheClient, credentialProviderFor } from './momento-client';
import { MomentoConfig } from './momento-config';
import { toMomentoConnectError } from './momento-errors';
import { CounterItem, Entry, liveEntries, nextItemText } from './momento-item';
import { KeyedTarget, MomentoKeyedChange } from './momento-keyed-change';
import { MomentoShards, WidenedId } from './momento-shards';

export { KEY_RECORD_PREFIX } from './momento-item';

/**
 * What a keyed change adds to one round of the compare-and-swap loop
 * (`MomentoKeyedChange`): the replay check on each item read, the key's
 * entry in the write, and the settle after it.
 */
export interface KeyedWrite {
  /** On each item read, before the bound check: a replay's answer, or undefined to go on. */
  check(item: CounterItem, live: ReadonlyMap<string, Entry>, attempt: number): Promise<ChangeResult | undefined>;
  /** The key's entry, written with the change that produces `next`. */
  entry(next: number): [string, Entry];
  /** The write was stored. */
  applied(counter: number): Promise<ChangeResult>;
  /**
   * A drop watermark for an item whose history is unknown (a decimal, or a
   * document without one): above the expiry of every entry that can have
   * been dropped before now, i.e. of every key claimed before now.
   */
  unknownDropMark(): number;
  /**
   * A sharded id: the slot this use of the key is bound to (its record's
   * `slot`; 0 for a record without one). Every request with the key writes
   * there, so two of them race on one item, as on an unsharded counter.
   */
  slot(): number;
  /**
   * Binds this use of the key to another slot (its bound one cannot take
   * the change): only the request that created the record, and only while
   * no other request has joined it (a compare-and-swap on the record's
   * text), so no request can still write the old slot. False when it
   * cannot.
   */
  rebind(slot: number): Promise<boolean>;
}

/** Options of one compare-and-swap run. */
export interface CasOptions {
  /** An item read already made for this request (used by the first attempt). */
  readonly first?: CounterItem;
  readonly keyed?: KeyedWrite;
  /** Entries already known to be settled (`MomentoCache.settledEntries`). */
  readonly settled?: Set<string>;
  /** Drop every settled entry (an unconditional change: the item may become a decimal again). */
  readonly dropAll?: boolean;
  /** Called with true just before a write is sent, and with false once it is known not stored. */
  readonly writing?: (onWire: boolean) => void;
}

/**
 * Momento: a counter is one cache item, changed by `increment` when it can
 * be and by a compare-and-swap loop on the item otherwise; a keyed change is
 * `MomentoKeyedChange`. How and why: docs/momento.md.
 */
export class MomentoCounterStore implements CounterStore {
  /** Reads the secret (once per container) and creates the client. */
  static async create(config: MomentoConfig): Promise<MomentoCounterStore> {
    const credentials = await credentialProviderFor(config.connection);
    return new MomentoCounterStore(createCacheClient(credentials, config.ttlSeconds, config.clientTimeoutMs), config);
  }

  readonly sharded = true;
  private readonly cache: MomentoCache;
  private readonly keyed: MomentoKeyedChange;
  private readonly shards: MomentoShards;

  constructor(client: ConstructorParameters<typeof MomentoCache>[0], private readonly config: MomentoConfig) {
    this.cache = new MomentoCache(client, config);
    this.keyed = new MomentoKeyedChange(this.cache);
    this.shards = new MomentoShards(this.cache, config, this.keyed, (name, by) => this.incrementOnce(name, by));
  }

  /**
   * Opens the client's gRPC channel now (init phase), what the SDK's own
   * `CacheClient.create({ eagerConnectTimeout })` does; a request meanwhile
   * rides the same channel, and after a failure the channel connects again
   * on the next call.
   */
  async connect(): Promise<void> {
    const { dataClients } = this.cache.client as unknown as { dataClients?: Array<{ connect(timeoutSeconds?: number): Promise<void> }> };
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
    // The budget starts with the request: every call below starts before it
    // ends (the worst case is the budget plus one call, momento-env.ts).
    const deadline = Deadline.after(this.config.casBudgetMs);
    if (this.shards.isSharded(id, change.shards)) return this.shards.apply(id, change, deadline);
    try {
      return await this.applyUnsharded(id, change, deadline);
    } catch (err) {
      // Down to 1: the id was widened by a sharded writer; slot 0 is not its
      // total. Found on the item read this change sends anyway.
      if (!(err instanceof WidenedId)) throw err;
      this.shards.remember(id, err.width);
      return this.shards.apply(id, change, deadline);
    }
  }

  async read(id: string, shards?: number): Promise<number> {
    if (this.shards.isSharded(id, shards)) return this.shards.read(id, shards ?? 1);
    const item = await this.cache.getItem(id);
    if (!item.shard) return item.value;
    this.shards.remember(id, item.shard.width);
    return this.shards.read(id, 1);
  }

  /** An id never sharded: exactly what it costs without sharding (a widened id throws `WidenedId` from its item read). */
  private applyUnsharded(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult> {
    const { by, maximum, idempotency } = change;
    if (idempotency) {
      const target: KeyedTarget = {
        read: () => this.cache.getItem(id),
        change: (options) => this.compareAndSwap(id, by, maximum, deadline, options),
        sharded: false,
      };
      return this.keyed.apply(id, by, idempotency, deadline, target);
    }
    return this.applyUnkeyed(id, by, maximum, deadline);
  }

  private async applyUnkeyed(id: string, by: number, maximum: number | undefined, deadline: Deadline): Promise<ChangeResult> {
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

  close(): Promise<void> {
    return this.cache.close();
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
   *
   * `item`: the counter's item, or a slot i > 0 of a sharded id.
   */
  private async incrementOnce(item: string, by: number): Promise<number | undefined> {
    const { client, name } = this.cache;
    const options = { ttl: this.config.ttlSeconds };
    const resp = await this.cache.call((abortSignal) => client.increment(name, item, by, { ...options, abortSignal }));
    if (resp instanceof CacheIncrement.Success) {
      const value = resp.value();
      if (Number.isSafeInteger(value)) return value;
      const undo = await this.cache.call((abortSignal) => client.increment(name, item, -by, { ...options, abortSignal }));
      if (!(undo instanceof CacheIncrement.Success)) throw this.cache.error('increment (undoing a step past the safe integers)', undo as CacheIncrement.Error);
      return undefined;
    }
    const err = resp as CacheIncrement.Error;
    if (err.errorCode() === MomentoErrorCode.FAILED_PRECONDITION_ERROR) return undefined;
    throw this.cache.error('increment', err);
  }

  /**
   * The compare-and-swap loop: get → bound check → `setIfEqual` on the exact
   * text read (`setIfAbsent` for a new id). Without `keyed` it is the plain
   * conditional change (and the unconditional one on an item `increment`
   * refused); with it, the replay check and the key's entry ride on the same
   * write. A lost race is retried after a jittered back-off (runtime/retry.ts)
   * until the attempts or the budget run out (503).
   */
  private compareAndSwap(id: string, by: number, maximum: number | undefined, deadline: Deadline, options: CasOptions): Promise<ChangeResult> {
    const { keyed, dropAll, writing } = options;
    const { lowest, highest } = allowedPrevious(by, maximum);
    let first = options.first;
    /** Entries known to be settled: once settled, always settled. */
    let settled = options.settled;
    return retry(async (attempt) => {
      const item = first ?? await this.cache.getItem(id);
      first = undefined;
      if (item.shard) throw new WidenedId(item.shard.width);
      const live = liveEntries(item);
      if (keyed) {
        const replay = await keyed.check(item, live, attempt);
        if (replay) return replay;
      }
      if (item.value < lowest || item.value > highest) throw rejectionOf(by, maximum, item.value);
      // Unkeyed: asked here, once per request, when the item holds enough
      // pending entries (or any, for an unconditional change: dropping them
      // all makes the item a decimal again, one round trip for the next one).
      if (!settled && live.size > 0 && (dropAll || live.size >= MOMENTO_DEFAULTS.pendingEntriesPruneAt)) {
        settled = await this.cache.settledEntries(id, live, deadline.at, false);
      }
      // A read that came back past the deadline sends nothing, so a slow
      // Momento cannot stretch the request by another call (nothing was
      // written: the 503 is safe to retry).
      deadline.check(() => this.cache.giveUp(attempt));

      const next = item.value + by;
      const text = nextItemText(item, live, settled, next, keyed);
      // A write error is not retried: a SetIf that timed out may have been
      // stored, and a retry after re-reading would count it twice.
      const ttl = this.config.ttlSeconds;
      writing?.(true);
      const stored = item.raw === undefined
        ? await this.cache.setIfAbsent(id, text, ttl, 'counter')
        : await this.cache.setIfEqual(id, text, item.raw, ttl, 'counter');
      if (!stored) {
        writing?.(false); // not stored, certainly
        return AGAIN; // lost the race: someone else's write landed first
      }
      return keyed ? keyed.applied(next) : { counter: next, replayed: false };
    }, {
      backoff: CAS_BACKOFF,
      maxAttempts: this.config.casMaxAttempts,
      deadline,
      retryable: () => false,
      exhausted: (attempts) => this.cache.giveUp(attempts),
    });
  }
}
