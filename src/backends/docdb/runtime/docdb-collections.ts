import { ClientSession, Collection } from 'mongodb';
import { allowedPrevious, zeroAllowed } from '../../../runtime/store';

/**
 * A counter document: the counter id is the `_id`. A sharded counter's slot
 * documents have the same shape (`_id` `<id>\u001f<slot>`); `headroom` is a
 * conditional slot's unused share, `width` (slot 0 only) the most slots the
 * id was ever written with (docs/docdb.md, "Sharded counters").
 */
export interface CounterDocument {
  _id: string;
  counter: number;
  headroom?: number;
  width?: number;
}

/** A key record (see `DOCDB_KEY_FIELDS`): the key is the `_id`. */
export interface KeyRecord {
  _id: string;
  id: string;
  by: number;
  /** The value the keyed change produced (an unsharded change). */
  counter?: number;
  /** The slot a sharded change went to (it knows no total). */
  shard?: number;
  expiresAt: Date;
  /** The token of the request that recorded the key (records of earlier releases have none). */
  request?: string;
}

/**
 * The condition every unsharded write of a counter document carries besides
 * its bound: the document was never written sharded (docs/docdb.md,
 * "Sharded counters"). It costs no command; a write it stops is followed by
 * a read only when nothing was written, to tell a widened id from a
 * rejection.
 */
export const NOT_WIDENED = { width: { $exists: false } } as const;

/** What a change may start from, as a filter on the counter field: `lowest ≤ value ≤ highest`. */
export function boundFilter(by: number, maximum?: number): { counter: { $gte: number; $lte: number } } {
  const { lowest, highest } = allowedPrevious(by, maximum);
  return { counter: { $gte: lowest, $lte: highest } };
}

/**
 * The bounded change of one counter (or slot) document inside a
 * transaction, where an E11000 would end the transaction: nothing is
 * inserted unless the document is missing. The bounded `$inc` (no upsert)
 * matched: applied. Nothing matched and a missing document may not take the
 * change either: not applied (`found`: the document, read only when
 * `unshardedOnly` needs to tell a widened one from a rejection). Otherwise
 * `$setOnInsert: {counter: by}` with upsert tells, in the same snapshot, an
 * out-of-range (or widened) document (returned: not applied) from a missing
 * one (inserted at `0 + by`). A collision (a document another transaction
 * created after the snapshot) throws E11000 or WriteConflict: the caller
 * runs the transaction again.
 *
 * `unshardedOnly`: the change of an unsharded counter, which must not touch
 * a document written sharded (`width` set, docs/docdb.md "Sharded counters").
 */
export async function changeInTransaction(
  counters: Collection<CounterDocument>, documentId: string, by: number, maximum: number | undefined, session: ClientSession, unshardedOnly: boolean,
): Promise<{ applied: true; counter: number } | { applied: false; found: CounterDocument | null }> {
  const filter = { _id: documentId, ...boundFilter(by, maximum), ...(unshardedOnly ? NOT_WIDENED : {}) };
  const doc = await counters.findOneAndUpdate(filter, { $inc: { counter: by } }, { returnDocument: 'after', session });
  if (doc) return { applied: true, counter: Number(doc.counter) };
  if (!zeroAllowed(by, maximum)) {
    // A step above the maximum can never apply; a refused decrement of an unsharded counter reads the document to know.
    const needed = unshardedOnly && by < 0;
    return { applied: false, found: needed ? await counters.findOne({ _id: documentId }, { session }) : null };
  }
  const existing = await counters.findOneAndUpdate({ _id: documentId }, { $setOnInsert: { counter: by } }, { upsert: true, returnDocument: 'before', session });
  return existing ? { applied: false, found: existing } : { applied: true, counter: by };
}
