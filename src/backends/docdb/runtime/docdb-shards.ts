import { ClientSession, Collection, MongoClient } from 'mongodb';
import { BackendUnavailableError, rejectionOf } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { ChangeResult, CounterChange } from '../../../runtime/store';
import { DOCDB_FIELDS } from '../docdb-env';
import { boundFilter, changeInTransaction, CounterDocument } from './docdb-collections';
import { isCommitRefused, isDuplicateKeyError, isTransactionRetryable } from './docdb-errors';
import { KEYED_BACKOFF } from './docdb-keyed-change';
import { abortTransaction, releaseAfterFailedCommit, retryDuplicateKeyOnce, retryWriteConflict } from './docdb-writes';
import { KnownWidths, rebalance, slotOrder, counterIdOf, slotName as slotIdOf } from '../../../runtime/shards';

const F = DOCDB_FIELDS;

/** Slots a conditional change tries on its own (one `update` each) before the rebalance. */
export const FAST_SLOTS = 2;

/** Slots' `_id`s, and back (slot 0 is the counter's own document). */
export { slotIdOf, counterIdOf };

/** What an unsharded change answers instead of applying itself when the counter's document carries a width. */
export class Widened {
  constructor(readonly width: number) {}
}

/** What a sharded change did inside a transaction (the caller commits it, or aborts it). */
export type SlotChange =
  | { readonly kind: 'applied'; readonly shard: number }
  | { readonly kind: 'rejected'; readonly counter?: number };

const valueOf = (doc: CounterDocument | undefined) => Number(doc?.counter ?? 0);

/** The 503 of a sharded change whose client has had its answer (the deadline passed). */
const abandoned = () => new BackendUnavailableError('DocumentDB call abandoned at its deadline');

/**
 * A sharded counter on DocumentDB (docs/docdb.md, "Sharded counters"): the
 * id's value is spread over slot documents 0…W−1 in the counters
 * collection (slot 0 is the id's own document, so an unsharded counter is a
 * one-slot counter already; it keeps W in `width`).
 *
 * - Unconditional: one bounded `update` (`$inc`) of one random slot of the
 *   N configured, after raising the width once per container and id.
 * - Conditional (escrow): each slot holds `counter` c and `headroom` h,
 *   c ≥ 0, h ≥ 0, Σ(c + h) ≤ maximum. Fast path: one `update` of one slot,
 *   `$inc` c by, h −by, filtered on `h ≥ by` (increment) or `c ≥ −by`
 *   (decrement); up to `FAST_SLOTS` slots are tried. Slow path: one
 *   transaction that reads every slot (one `find`, a snapshot), applies
 *   `rebalance` and writes every slot back (one `update` of W statements).
 *   A slot it changes that anyone wrote after the snapshot makes the
 *   write a WriteConflict (first writer wins), so a committed rebalance
 *   changed only slots no one changed in between (a slot it leaves as read
 *   may be a no-op that takes no lock: a fast-path write there kept that
 *   slot's share, all the rebalance relied on), and a 409 was decided on
 *   a total that existed at one instant (the snapshot).
 * - Keyed changes run `changeIn` inside the keyed change's own transaction
 *   (`DocDbKeyedChange`), with the key record.
 */
export class DocDbShardedCounter {
  private readonly widths = new KnownWidths();

  constructor(private readonly client: MongoClient, private readonly counters: Collection<CounterDocument>) {}

  /** The width this container knows `id` to have at least (1 for an id it never saw sharded). */
  knownWidth(id: string): number {
    return this.widths.get(id);
  }

  /** Remembers that `id` is at least `width` wide (found by an unsharded change or read). */
  remember(id: string, width: number): void {
    this.widths.remember(id, width);
  }

  /** A change without a key. */
  async apply(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult> {
    const shards = change.shards ?? 1;
    const { by, maximum } = change;
    if (maximum === undefined) {
      await this.raiseWidth(id, shards);
      const slot = slotOrder(shards)[0];
      await this.addTo(id, slot, by);
      return { shard: slot, replayed: false };
    }
    // A rebalance that lost to another one starts again from the fast path: the winner has
    // usually refilled the slots, and one `update` then takes the change without a transaction.
    return retry(async () => {
      for (const slot of slotOrder(shards).slice(0, FAST_SLOTS)) {
        deadline.check(abandoned);
        const [filter, update] = this.fastPath(id, slot, by);
        const taken = await retryWriteConflict(() => this.counters.updateOne(filter, update));
        if (taken.matchedCount === 1) return { shard: slot, replayed: false };
      }
      return this.rebalanceAlone(id, change, deadline);
    }, {
      // Contenders spread out as keyed transactions do.
      backoff: KEYED_BACKOFF,
      deadline,
      retryable: () => false,
      exhausted: (attempts) => deadline.expired ? abandoned() : new BackendUnavailableError(
        `DocumentDB: a sharded change's rebalance conflicted ${attempts} time(s) within its budget; nothing was applied`),
    });
  }

  /**
   * The change inside a transaction the caller owns (a keyed change, which
   * records its key in it): the fast path's slots, then the rebalance, all
   * on the transaction's session. Conflicts throw (the caller runs the
   * transaction again). An unconditional change expects the width raised
   * already (`raiseWidth`, outside the transaction).
   */
  async changeIn(id: string, change: CounterChange, session: ClientSession): Promise<SlotChange> {
    const shards = change.shards ?? 1;
    const { by, maximum } = change;
    if (maximum === undefined) {
      const slot = slotOrder(shards)[0];
      const changed = await changeInTransaction(this.counters, slotIdOf(id, slot), by, undefined, session, false);
      return changed.applied ? { kind: 'applied', shard: slot } : { kind: 'rejected' };
    }
    for (const slot of slotOrder(shards).slice(0, FAST_SLOTS)) {
      const [filter, update] = this.fastPath(id, slot, by);
      if ((await this.counters.updateOne(filter, update, { session })).matchedCount === 1) return { kind: 'applied', shard: slot };
    }
    return this.rebalanceIn(id, change, session);
  }

  /**
   * Raises the width on slot 0 to `shards` unless this container knows it
   * is that wide already: one `update` (`$max`, so it only ever goes up),
   * once per container and id, before an unconditional change may write a
   * slot past the stored width, so that readers and rebalances configured
   * with fewer slots still count that slot. Slot 0 is created (at 0) if it
   * is missing. Conditional changes need none: their fast path only writes
   * slots a rebalance gave headroom, and the rebalance writes the width.
   */
  async raiseWidth(id: string, shards: number): Promise<void> {
    if (this.widths.get(id) >= shards) return;
    await retry(() => this.counters.updateOne({ _id: id }, { $max: { [F.WIDTH]: shards }, $setOnInsert: { [F.COUNTER]: 0 } }, { upsert: true }), {
      backoff: { baseMs: 0, capMs: 0 },
      // Two first writes of one id: the loser's upsert collides with the winner's insert, and its retry matches it.
      maxAttempts: 2,
      retryable: isDuplicateKeyError,
      exhausted: (_n, last) => last as Error,
    });
    this.widths.remember(id, shards);
  }

  /** The total over every slot the id has: one `find` (two when a wider writer raised the width unseen). */
  async read(id: string, shards: number): Promise<number> {
    return (await this.readSlots(id, shards)).reduce((sum, doc) => sum + valueOf(doc), 0);
  }

  /**
   * An unconditional change of one slot: one bounded `update` (the safe
   * integers), upserting the slot; the same E11000 rule as an unsharded
   * change (`retryDuplicateKeyOnce`: a second collision proves the bound).
   */
  private async addTo(id: string, slot: number, by: number): Promise<void> {
    const filter = { _id: slotIdOf(id, slot), ...boundFilter(by) };
    await retryDuplicateKeyOnce(() => retryWriteConflict(() => this.counters.updateOne(filter, { $inc: { [F.COUNTER]: by } }, { upsert: true })),
      () => rejectionOf(by, undefined));
  }

  /**
   * The fast path's `update` of one slot: its headroom takes an increment,
   * its value a decrement; either way c + h (the slot's share) is unchanged.
   * A slot that does not exist matches neither: it has no share.
   */
  private fastPath(id: string, slot: number, by: number): [filter: object, update: object] {
    const filter = by > 0 ? { [F.HEADROOM]: { $gte: by } } : { [F.COUNTER]: { $gte: -by } };
    return [{ _id: slotIdOf(id, slot), ...filter }, { $inc: { [F.COUNTER]: by, [F.HEADROOM]: -by } }];
  }

  /**
   * The rebalance on its own: one transaction (find, update, commit). AGAIN
   * when it conflicted with another writer of the slots (nothing applied).
   * A commit whose outcome is unknown (the connection broke) is a 503:
   * nothing records whether it happened.
   */
  private async rebalanceAlone(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult | typeof AGAIN> {
    const { by, maximum } = change;
    deadline.check(abandoned);
    // DocumentDB has no causal consistency: a session must not ask for it.
    const session = this.client.startSession({ causalConsistency: false });
    // An open transaction holds its slots until DocumentDB ends it: abort it at the deadline.
    const unhook = deadline.onExpire(() => void abortTransaction(session));
    try {
      session.startTransaction();
      let outcome: SlotChange;
      try {
        outcome = await this.rebalanceIn(id, change, session);
      } catch (err) {
        if (isDuplicateKeyError(err) || isTransactionRetryable(err)) return AGAIN;
        throw err;
      }
      if (outcome.kind === 'rejected') throw rejectionOf(by, maximum, outcome.counter);
      deadline.check(abandoned);
      try {
        await session.commitTransaction();
      } catch (err) {
        await releaseAfterFailedCommit(this.client, session);
        if (isCommitRefused(err)) return AGAIN;
        throw err;
      }
      return { shard: outcome.shard, replayed: false };
    } finally {
      unhook();
      await abortTransaction(session);
      await session.endSession().catch(() => undefined);
    }
  }

  /**
   * Every slot read in the transaction's snapshot, `rebalance`, and every
   * slot written back in one `update` command (upserting the slots that do
   * not exist yet; slot 0 also gets the width). A rejection writes nothing.
   */
  private async rebalanceIn(id: string, change: CounterChange, session: ClientSession): Promise<SlotChange> {
    const shards = change.shards ?? 1;
    const slots = await this.readSlots(id, shards, session);
    const values = slots.map(valueOf);
    const next = rebalance(values, shards, change.maximum!, change.by);
    if (!next) return { kind: 'rejected', counter: values.reduce((a, b) => a + b, 0) };
    const width = Math.max(slots.length, shards);
    await this.counters.bulkWrite(next.map((slot, i) => ({
      updateOne: {
        filter: { _id: slotIdOf(id, i) },
        update: {
          $set: { [F.COUNTER]: slot.value, [F.HEADROOM]: slot.share - slot.value },
          // Only ever raised; a one-slot id (shards lowered to 1, the width read) keeps the width it has.
          ...(i === 0 && width > 1 ? { $max: { [F.WIDTH]: width } } : {}),
        },
        upsert: true,
      },
    })), { session, ordered: true });
    return { kind: 'applied', shard: next.findIndex((slot, i) => slot.value !== values[i]) };
  }

  /**
   * Slots 0…max(N, known width)−1 in one `find` by `_id`; if slot 0 says the
   * id is wider, the rest in a second one (in the same snapshot when in a
   * transaction). Missing slots are `undefined` (value 0, no share).
   */
  private async readSlots(id: string, shards: number, session?: ClientSession): Promise<(CounterDocument | undefined)[]> {
    const count = Math.max(shards, this.widths.get(id));
    let slots = await this.findSlots(id, 0, count, session);
    const width = Number(slots[0]?.width ?? 1);
    if (width > count) slots = [...slots, ...await this.findSlots(id, count, width, session)];
    if (width > 1) this.widths.remember(id, width);
    return slots;
  }

  private async findSlots(id: string, from: number, to: number, session?: ClientSession): Promise<(CounterDocument | undefined)[]> {
    const ids = Array.from({ length: to - from }, (_, i) => slotIdOf(id, from + i));
    const found = await this.counters.find({ _id: { $in: ids } }, {
      projection: { [F.COUNTER]: 1, [F.WIDTH]: 1 },
      // Every slot in the first batch: no getMore, no cursor left open.
      batchSize: ids.length,
      ...(session ? { session } : {}),
    }).toArray();
    const byId = new Map(found.map((doc) => [doc._id, doc]));
    return ids.map((slotId) => byId.get(slotId));
  }
}
