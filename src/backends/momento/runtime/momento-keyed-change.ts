import { IdempotencyKeyReusedError } from '../../../runtime/errors';
import { Deadline } from '../../../runtime/retry';
import { ChangeResult, IdempotencyOptions, sameBinding } from '../../../runtime/store';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { MomentoCache } from './momento-cache';
import type { CasOptions } from './momento-counter-store';
import { CounterItem, KEY_RECORD_PREFIX, KeyRecord, keyRecordText, liveEntries, parseKeyRecord } from './momento-item';

/** The store's compare-and-swap loop, as the keyed protocol drives it. */
export type CompareAndSwap = (id: string, by: number, maximum: number | undefined, deadline: Deadline, options: CasOptions) => Promise<ChangeResult>;

/**
 * A change with an Idempotency-Key on Momento, which has no write across
 * two items: the key record binds the key to (id, by), the change and the
 * key's entry are ONE conditional write of the counter's item, and the
 * outcome is then copied to the record. Protocol, atomicity argument, round
 * trips and what stays weaker: docs/momento.md, "Exactly-once increments".
 */
export class MomentoKeyedChange {
  constructor(private readonly cache: MomentoCache, private readonly compareAndSwap: CompareAndSwap) {}

  /**
   * 1. Read the counter's item and bind the key (`claim`), in parallel.
   * 2. Compare-and-swap on the counter's item (an entry for the key there is
   *    a replay; otherwise the bound check, then ONE conditional write of the
   *    new value together with the key's entry).
   * 3. Copy the outcome into the key record (`settle`).
   *
   * "Not applied yet" is decided only on an item read that provably
   * missed no dropped entry of this use of the key (docs/momento.md, "Why
   * it is exactly once"): an item read followed by a record read without
   * the outcome, or an item whose drop watermark is below this use's expiry.
   */
  async apply(id: string, by: number, maximum: number | undefined, idempotency: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult> {
    const itemRead = this.cache.getItem(id);
    // Which pending entries may be dropped is asked as soon as the item is
    // read, alongside the claim, not between the read and the write, where
    // it would widen the race window.
    const settledRead = itemRead.then((item) => {
      const pending = liveEntries(item);
      return pending.size >= MOMENTO_DEFAULTS.pendingEntriesPruneAt ? this.cache.settledEntries(id, pending, deadline.at) : new Set<string>();
    });
    const [first, claimed, settled] = await Promise.all([itemRead, this.claim(idempotency, id, by, deadline, itemRead), settledRead]);
    let record = claimed.record;
    if (record.counter !== undefined) return { counter: record.counter, replayed: true };
    const { key } = idempotency;
    /** The last item read known to have missed no dropped entry of this use. */
    let reference: CounterItem = first;
    if (claimed.created && !noneDropped(first, record)) {
      // The claim may have been served before the item read, and the item
      // cannot prove it missed nothing: the record as it is after the read.
      record = await this.reread(key, record, id, by);
      if (record.counter !== undefined) return { counter: record.counter, replayed: true };
    }
    return this.compareAndSwap(id, by, maximum, deadline, {
      first,
      settled,
      keyed: {
        check: async (item, live, attempt) => {
          const applied = live.get(key);
          if (applied) {
            // Applied before (its answer lost, or a concurrent request with
            // the key won): nothing more is written but the outcome.
            if (applied[0] !== by) throw new IdempotencyKeyReusedError();
            await this.settle(key, record, applied[1], deadline);
            return { counter: applied[1], replayed: true };
          }
          if (attempt > 1 && !noneDropped(item, record) && !sameDropHistory(reference, item)) {
            // Entries may have been dropped since the reference read: the
            // record as it is now, after this item read.
            record = await this.reread(key, record, id, by);
            if (record.counter !== undefined) return { counter: record.counter, replayed: true };
            reference = item;
          }
          return undefined;
        },
        entry: (next) => [key, [by, next, record.exp]],
        applied: async (counter) => {
          await this.settle(key, record, counter, deadline);
          return { counter, replayed: false };
        },
        unknownDropMark: () => Date.now() + idempotency.retentionSeconds * 1000 + CLOCK_SKEW_MARGIN_MS,
      },
    });
  }

  /**
   * Binds the key to (id, by) in its record, or reads the record that binds
   * it already. `setIfAbsent` first: a new key (the usual case) costs one
   * call. A record whose retention has passed (`exp`, checked here and not
   * only by the item's TTL) is replaced as if absent.
   */
  private async claim(
    { key, retentionSeconds }: IdempotencyOptions, id: string, by: number, deadline: Deadline, itemRead: Promise<unknown>,
  ): Promise<{ record: KeyRecord; created: boolean }> {
    const name = KEY_RECORD_PREFIX + key;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) deadline.check(() => this.cache.giveUp(attempt - 1));
      const exp = Date.now() + retentionSeconds * 1000;
      const raw = keyRecordText({ id, by, exp });
      if (await this.cache.setIfAbsent(name, raw, retentionSeconds, 'key record')) return { record: { raw, id, by, exp }, created: true };
      // The record is read only once the item read is answered: this read
      // follows it, which is what lets that item read decide "not applied".
      await itemRead.catch(() => undefined);
      const text = await this.cache.getRecordText(key);
      if (text === undefined) continue; // expired between the two calls
      const recorded = parseKeyRecord(text, key);
      if (recorded.exp <= Date.now()) {
        if (await this.cache.setIfEqual(name, raw, text, retentionSeconds, 'key record')) return { record: { raw, id, by, exp }, created: true };
        continue;
      }
      if (!sameBinding(recorded, id, by)) throw new IdempotencyKeyReusedError();
      return { record: recorded, created: false };
    }
  }

  /**
   * The key record again. Missing: its retention ended (or it was evicted)
   * during this request; the change goes on as the first use it now is.
   * Replaced by a later use of the key (another expiry): that use's binding
   * applies.
   */
  private async reread(key: string, record: KeyRecord, id: string, by: number): Promise<KeyRecord> {
    const text = await this.cache.getRecordText(key);
    if (text === undefined) return record;
    const recorded = parseKeyRecord(text, key);
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
  private async settle(key: string, record: KeyRecord, counter: number, deadline: Deadline): Promise<void> {
    if (record.counter !== undefined || deadline.expired) return;
    await this.cache.copyOutcome(key, record, counter);
  }
}

/**
 * Clock skew allowed between two containers when a drop watermark is
 * derived from a clock (`unknownDropMark`); Lambda clocks are kept within
 * milliseconds of each other.
 */
const CLOCK_SKEW_MARGIN_MS = 1_000;

/**
 * True when `item` proves that no entry of the record's use was dropped
 * before it was read: every entry ever dropped from it expired no later
 * than its watermark, and the record's use expires after it.
 */
function noneDropped(item: CounterItem, record: KeyRecord): boolean {
  return item.dropMark !== undefined && item.dropMark < record.exp;
}

/** Equal epoch and drop count: no entry was dropped between the two reads. */
function sameDropHistory(earlier: CounterItem, later: CounterItem): boolean {
  return earlier.epoch !== undefined && later.epoch === earlier.epoch && later.drops === earlier.drops;
}
