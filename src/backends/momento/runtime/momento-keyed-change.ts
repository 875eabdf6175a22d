import { randomBytes } from 'crypto';
import { IdempotencyKeyReusedError } from '../../../runtime/errors';
import { Deadline } from '../../../runtime/retry';
import { ChangeResult, IdempotencyOptions, sameBinding } from '../../../runtime/store';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { MomentoCache } from './momento-cache';
import type { CasOptions } from './momento-counter-store';
import { CounterItem, KEY_RECORD_PREFIX, KeyRecord, keyRecordText, liveEntries, parseKeyRecord } from './momento-item';

/**
 * What a keyed change is applied to: the counter's item (unsharded), or
 * every slot of a sharded id read as one (`momento-shards.ts`).
 */
export interface KeyedTarget {
  /**
   * A sharded id: the written counter is one slot's value, so answers carry
   * no counter and the outcome copied to the key record says so.
   */
  readonly sharded: boolean;
  /** A sharded id: the slot a record this request creates binds the key to. */
  readonly slot?: number;
  /** The item read that starts the request (what the replay check and the first attempt use). */
  read(): Promise<CounterItem>;
  /** The store's compare-and-swap loop on the target, with the keyed hooks riding on it. */
  change(options: CasOptions): Promise<ChangeResult>;
}

/**
 * A change with an Idempotency-Key on Momento, which has no write across
 * two items: the key record binds the key to (id, by), the change and the
 * key's entry are ONE conditional write of the counter's item, and the
 * outcome is then copied to the record. Protocol, atomicity argument, round
 * trips and what stays weaker: docs/momento.md, "Exactly-once increments".
 */
export class MomentoKeyedChange {
  constructor(private readonly cache: MomentoCache) {}

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
  async apply(id: string, by: number, idempotency: IdempotencyOptions, deadline: Deadline, target: KeyedTarget): Promise<ChangeResult> {
    const { key } = idempotency;
    const { sharded } = target;
    const itemRead = target.read();
    // Which pending entries may be dropped is asked as soon as the item is
    // read, alongside the claim, not between the read and the write, where
    // it would widen the race window.
    const settledRead = itemRead.then((item) => {
      const pending = liveEntries(item);
      if (pending.size < MOMENTO_DEFAULTS.pendingEntriesPruneAt) return new Set<string>();
      return this.cache.settledEntries(id, pending, deadline.at, sharded);
    });
    const claiming = this.claim(idempotency, id, by, deadline, itemRead, target.slot);
    let held: Claim | undefined;
    /** True from the moment a write of the change may have been stored, or the change was found applied. */
    let mayBeApplied = false;
    try {
      const [first, claimed, settled] = await Promise.all([itemRead, claiming, settledRead]);
      held = claimed;
      if (held.record.counter !== undefined) return replayOf(held.record);
      /** The last item read known to have missed no dropped entry of this use. */
      let reference: CounterItem = first;
      if (held.ownRaw !== undefined && !noneDropped(first, held.record)) {
        // The claim may have been served before the item read, and the item
        // cannot prove it missed nothing: the record as it is after the read.
        held = { ...held, record: await this.reread(key, held.record, id, by) };
        if (held.record.counter !== undefined) return replayOf(held.record);
      }
      let joined = false;
      return await target.change({
        first,
        settled,
        writing: (onWire) => {
          mayBeApplied = onWire;
        },
        keyed: {
          check: async (item, live, attempt) => {
            const current = held!;
            const applied = live.get(key);
            if (applied) {
              // Applied before (its answer lost, or a concurrent request with
              // the key won): nothing more is written but the outcome.
              if (applied[0] !== by) throw new IdempotencyKeyReusedError();
              mayBeApplied = true;
              await this.settle(key, current.record, applied[1], deadline, sharded);
              return sharded ? { replayed: true } : { counter: applied[1], replayed: true };
            }
            if (attempt > 1 && !noneDropped(item, current.record) && !sameDropHistory(reference, item)) {
              // Entries may have been dropped since the reference read: the
              // record as it is now, after this item read.
              held = { ...current, record: await this.reread(key, current.record, id, by) };
              reference = item;
            }
            if (!joined && held!.ownRaw === undefined && held!.record.counter === undefined) {
              // About to apply under a record another request created: join
              // it first, so that request can no longer release it.
              held = await this.join(idempotency, held!.record, id, by, deadline, target.slot);
              joined = true;
            }
            const record = held!.record;
            if (record.counter !== undefined) {
              mayBeApplied = true;
              return replayOf(record);
            }
            return undefined;
          },
          entry: (next) => [key, [by, next, held!.record.exp]],
          applied: async (counter) => {
            mayBeApplied = true;
            await this.settle(key, held!.record, counter, deadline, sharded);
            return sharded ? { replayed: false } : { counter, replayed: false };
          },
          unknownDropMark: () => Date.now() + idempotency.retentionSeconds * 1000 + CLOCK_SKEW_MARGIN_MS,
          slot: () => held!.record.slot ?? 0,
          rebind: async (slot) => {
            const { record, ownRaw } = held!;
            // Created here and still as created: nobody joined, so nobody
            // else applies under it (a joiner's compare-and-swap on this
            // text fails after the rebind, and it re-reads the new slot).
            if (ownRaw === undefined || record.raw !== ownRaw || record.counter !== undefined) return false;
            const ttl = Math.ceil((record.exp - Date.now()) / 1000);
            if (ttl <= 0) return false;
            const text = keyRecordText({ ...record, slot });
            if (!await this.cache.setIfEqual(KEY_RECORD_PREFIX + key, text, ownRaw, ttl, 'key record rebind')) return false;
            held = { record: { ...record, slot, raw: text }, ownRaw: text };
            return true;
          },
        },
      });
    } catch (err) {
      // A claim may have been stored while the item read failed.
      held ??= await claiming.catch(() => undefined);
      if (held?.ownRaw !== undefined && !mayBeApplied && !(err instanceof IdempotencyKeyReusedError) && !deadline.expired) {
        await this.release(key, held.ownRaw, held.record);
      }
      throw err;
    }
  }

  /**
   * Makes a record another request created safe to apply under: once it
   * no longer holds the creator's text, the creator's release (conditional
   * on that text) fails. A record someone already joined, or one holding
   * the outcome, is returned as it is; a released or expired one is claimed
   * anew. One `setIfEqual` when uncontended.
   */
  private async join(idempotency: IdempotencyOptions, seen: KeyRecord, id: string, by: number, deadline: Deadline, slot?: number): Promise<Claim> {
    const { key } = idempotency;
    let record = seen;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) deadline.check(() => this.cache.giveUp(attempt - 1));
      if (record.counter !== undefined || record.joined !== undefined) return { record };
      const ttl = Math.ceil((record.exp - Date.now()) / 1000);
      if (ttl > 0) {
        const joined = { ...record, joined: newNonce() };
        const text = keyRecordText(joined);
        if (await this.cache.setIfEqual(KEY_RECORD_PREFIX + key, text, record.raw, ttl, 'key record join')) return { record: { ...joined, raw: text } };
      }
      const text = ttl > 0 ? await this.cache.getRecordText(key) : undefined;
      const recorded = text === undefined ? undefined : parseKeyRecord(text, key);
      if (!recorded || recorded.exp <= Date.now()) {
        // Released (its creator was rejected) or expired: the key is new.
        const claimed = await this.claim(idempotency, id, by, deadline, Promise.resolve(), slot);
        if (claimed.ownRaw !== undefined) return claimed;
        record = claimed.record;
        continue;
      }
      if (!sameBinding(recorded, id, by)) throw new IdempotencyKeyReusedError();
      record = recorded;
    }
  }

  /**
   * Gives the key back after a rejection, a 503 or a failure before the
   * change could have been stored: the record becomes one whose retention
   * has ended (a conditional delete: `setIfEqual` on the text this request
   * created, so a record another request joined, or one holding an
   * outcome, is left alone). Best effort: a failed call leaves the key
   * bound until its retention ends.
   */
  private async release(key: string, ownRaw: string, record: KeyRecord): Promise<void> {
    const text = keyRecordText({ id: record.id, by: record.by, exp: Date.now() });
    await this.cache.setIfEqual(KEY_RECORD_PREFIX + key, text, ownRaw, 1, 'key record release').catch(() => false);
  }

  /**
   * Binds the key to (id, by) in its record, or reads the record that binds
   * it already. `setIfAbsent` first: a new key (the usual case) costs one
   * call. A record whose retention has passed (`exp`, checked here and not
   * only by the item's TTL) is replaced as if absent.
   */
  private async claim(
    { key, retentionSeconds }: IdempotencyOptions, id: string, by: number, deadline: Deadline, itemRead: Promise<unknown>, slot?: number,
  ): Promise<Claim> {
    const name = KEY_RECORD_PREFIX + key;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) deadline.check(() => this.cache.giveUp(attempt - 1));
      const exp = Date.now() + retentionSeconds * 1000;
      const created = { id, by, exp, ...(slot !== undefined ? { slot } : {}) };
      const raw = keyRecordText(created);
      if (await this.cache.setIfAbsent(name, raw, retentionSeconds, 'key record')) return { record: { raw, ...created }, ownRaw: raw };
      // The record is read only once the item read is answered: this read
      // follows it, which is what lets that item read decide "not applied".
      await itemRead.catch(() => undefined);
      const text = await this.cache.getRecordText(key);
      if (text === undefined) continue; // expired between the two calls
      const recorded = parseKeyRecord(text, key);
      if (recorded.exp <= Date.now()) {
        if (await this.cache.setIfEqual(name, raw, text, retentionSeconds, 'key record')) return { record: { raw, ...created }, ownRaw: raw };
        continue;
      }
      if (!sameBinding(recorded, id, by)) throw new IdempotencyKeyReusedError();
      return { record: recorded };
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
  private async settle(key: string, record: KeyRecord, counter: number, deadline: Deadline, sharded: boolean): Promise<void> {
    if (record.counter !== undefined || deadline.expired) return;
    await this.cache.copyOutcome(key, record, counter, sharded);
  }
}

/** What a request holds of its key: the record as last read or written, and the text it created, if it did. */
interface Claim {
  readonly record: KeyRecord;
  /** Set when this request created the record: only its creator may release it, and only while it holds this text. */
  readonly ownRaw?: string;
}

/**
 * The answer a settled record replays: the counter its change produced, or,
 * for a change that went to a slot of a sharded id, none (the slot's value
 * is not the total; the answer is a sharded one, docs/sharding.md).
 */
function replayOf(record: KeyRecord): ChangeResult {
  return record.sharded ? { replayed: true } : { counter: record.counter, replayed: true };
}

/** 48 random bits: marks a join. */
function newNonce(): string {
  return randomBytes(6).toString('base64url');
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
