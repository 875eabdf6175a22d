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
   * 1. Read the counter's item, THEN bind the key (`claim`).
   * 2. Compare-and-swap on the counter's item (an entry for the key there is
   *    a replay; otherwise the bound check, then ONE conditional write of the
   *    new value together with the key's entry).
   * 3. Copy the outcome into the key record (`settle`).
   */
  async apply(id: string, by: number, maximum: number | undefined, idempotency: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult> {
    const first = await this.cache.getItem(id);
    // Which pending entries may be dropped is asked alongside the claim, not
    // between the read and the write, where it would widen the race window.
    const pending = liveEntries(first);
    const [claimed, settled] = await Promise.all([
      this.claim(idempotency, id, by, deadline),
      pending.size >= MOMENTO_DEFAULTS.pendingEntriesPruneAt
        ? this.cache.settledEntries(id, pending, deadline.at)
        : Promise.resolve(new Set<string>()),
    ]);
    if (claimed.counter !== undefined) return { counter: claimed.counter, replayed: true };
    const { key } = idempotency;
    let record = claimed;
    /** The last item read known to precede a record read that showed no outcome. */
    let reference: CounterItem | undefined = first;
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
          if (attempt > 1 && !(reference?.epoch !== undefined && item.epoch === reference.epoch && item.drops === reference.drops)) {
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
      },
    });
  }

  /**
   * Binds the key to (id, by) in its record, or reads the record that binds
   * it already. `setIfAbsent` first: a new key (the usual case) costs one
   * call. A record whose retention has passed (`exp`, checked here and not
   * only by the item's TTL) is replaced as if absent.
   */
  private async claim({ key, retentionSeconds }: IdempotencyOptions, id: string, by: number, deadline: Deadline): Promise<KeyRecord> {
    const name = KEY_RECORD_PREFIX + key;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) deadline.check(() => this.cache.giveUp(attempt - 1));
      const exp = Date.now() + retentionSeconds * 1000;
      const raw = keyRecordText({ id, by, exp });
      if (await this.cache.setIfAbsent(name, raw, retentionSeconds, 'key record')) return { raw, id, by, exp };
      const text = await this.cache.getRecordText(key);
      if (text === undefined) continue; // expired between the two calls
      const recorded = parseKeyRecord(text, key);
      if (recorded.exp <= Date.now()) {
        if (await this.cache.setIfEqual(name, raw, text, retentionSeconds, 'key record')) return { raw, id, by, exp };
        continue;
      }
      if (!sameBinding(recorded, id, by)) throw new IdempotencyKeyReusedError();
      return recorded;
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
