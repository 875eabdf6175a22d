import { ClientSession, Collection, MongoClient } from 'mongodb';
import { boundFilter, CounterDocument, KeyRecord } from './docdb-collections';
import { isDuplicateKeyError, isTransactionRetryable } from './docdb-errors';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { ChangeResult, CounterChange, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';

/** One keyed attempt's outcome: an answer, a rejection, or "run the whole transaction again". */
type KeyedOutcome =
  | { readonly kind: 'done'; readonly result: ChangeResult }
  | { readonly kind: 'rejected'; readonly counter?: number }
  | { readonly kind: 'retry' };

const RETRY: KeyedOutcome = { kind: 'retry' };

/** The 503 of a keyed change whose client has had its answer (the deadline passed). */
const abandoned = () => new BackendUnavailableError('DocumentDB call abandoned at its deadline');

/** Back-off between attempts of a keyed change's transaction. */
export const KEYED_BACKOFF = { baseMs: 10, capMs: 200 } as const;
/**
 * Transactions a keyed change runs at most: the time budget normally ends a
 * run of conflicts first; this bounds it for a store built without one.
 * Every attempt before the last ended with nothing applied (or a commit
 * whose outcome the next attempt's key lookup settles), so giving up is a 503.
 */
export const KEYED_MAX_ATTEMPTS = 50;

/**
 * A change with an `Idempotency-Key` on DocumentDB: one transaction that
 * records the key with the change, run again when it certainly applied
 * nothing. The protocol and why it counts once: docs/docdb.md,
 * "Exactly-once increments".
 */
export class DocDbKeyedChange {
  /** The tail of each id's queue of keyed changes in this container (see `oneAtATime`). */
  private readonly keyedTails = new Map<string, Promise<unknown>>();

  constructor(
    private readonly client: MongoClient,
    private readonly counters: Collection<CounterDocument>,
    private readonly keys: Collection<KeyRecord>,
  ) {}

  /** Applies the change once per key; `deadline` is the store call's budget. */
  async apply(id: string, change: CounterChange, idempotency: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult> {
    return this.oneAtATime(id, () => this.applyKeyed(id, change, idempotency, deadline));
  }

  /**
   * Runs the keyed changes of one id in this container one after the other:
   * two transactions on one counter can only conflict. A Lambda container
   * serves one request at a time, so there this never waits.
   */
  private async oneAtATime<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.keyedTails.get(id);
    const run = (previous ? previous.catch(() => undefined) : Promise.resolve()).then(work);
    const tail = run.catch(() => undefined);
    this.keyedTails.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.keyedTails.get(id) === tail) this.keyedTails.delete(id);
    }
  }

  /**
   * **Keyed change: one transaction on one session**, run again from the
   * start whenever it fails before its commit with an error that says
   * nothing of it was applied (a write conflict, a transient transaction
   * error) — and also after a failed commit, because the key makes that safe:
   *
   * 1. `findOneAndUpdate({_id: key}, {$setOnInsert: {id, by, expiresAt}},
   *    {upsert, returnDocument: 'before'})` on the keys collection. A live
   *    record comes back: the change was applied before, so abort and
   *    answer its value (`replayed`), or 422 if it was bound to another id
   *    or step. Nothing (we inserted it) or an expired record: the key is
   *    this transaction's.
   * 2. The bounded `$inc` on the counter (`changeCounter`).
   *    Rejected: abort (no key recorded) and 409 / 400.
   * 3. `updateOne({_id: key}, {$set: {id, by, counter, expiresAt}})`: the
   *    record carries the value the change produced (and replaces an
   *    expired record).
   * 4. `commitTransaction`: the key and the change become visible together.
   *
   * Why exactly once: the record and the change commit or vanish together
   * (a transaction), and two transactions cannot both record one key — the
   * second one's write of the record conflicts with the first's (both
   * write it: an insert or step 3) and only one commits (snapshot
   * isolation, first writer wins). A commit whose answer is lost (a
   * network error, DocumentDB's 251 after an instance restart, which it
   * documents can follow a successful commit) is retried as a new
   * transaction: its step 1 finds the record if the commit happened (a
   * replay of the value this very request produced) and applies the change
   * if it did not. A transaction left open (a frozen container) holds its
   * locks until DocumentDB aborts it (one minute); meanwhile requests for
   * its key or its counter conflict, retry and, past the budget, answer 503.
   */
  private async applyKeyed(id: string, { by, maximum }: CounterChange, idempotency: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult> {
    const outcome = await retry(async () => {
      deadline.check(abandoned);
      const attempt = await this.keyedAttempt(id, by, maximum, idempotency, deadline);
      return attempt.kind === 'retry' ? AGAIN : attempt;
    }, {
      // A conflict lasts as long as another transaction's few round trips: contenders spread out.
      backoff: KEYED_BACKOFF,
      maxAttempts: KEYED_MAX_ATTEMPTS,
      deadline,
      retryable: () => false,
      exhausted: (attempts) => deadline.expired ? abandoned()
        : new BackendUnavailableError(`DocumentDB: the keyed change conflicted ${attempts} times in a row; retry with the same Idempotency-Key`),
    });
    if (outcome.kind === 'rejected') throw rejectionOf(by, maximum, outcome.counter);
    return outcome.result;
  }

  private async keyedAttempt(
    id: string, by: number, maximum: number | undefined, { key, retentionSeconds }: IdempotencyOptions, deadline: Deadline,
  ): Promise<KeyedOutcome> {
    // DocumentDB has no causal consistency: a session must not ask for it.
    const session = this.client.startSession({ causalConsistency: false });
    // Cut off at the deadline (the client gets its 503 now): abort at once rather than after the
    // command in flight returns. An open transaction holds its locks until DocumentDB ends it
    // (one minute), and a Lambda container may be frozen as soon as it has answered.
    const unhook = deadline.onExpire(() => void abort(session));
    try {
      // DocumentDB runs every transaction at snapshot isolation; the client's write concern (majority) applies to the commit.
      session.startTransaction();
      const now = Date.now();
      const expiresAt = new Date(now + retentionSeconds * 1000);

      // 1. The key first: a replay answers before any bound is checked.
      let recorded: KeyRecord | null;
      try {
        recorded = await this.keys.findOneAndUpdate({ _id: key }, { $setOnInsert: { id, by, expiresAt } }, { upsert: true, returnDocument: 'before', session });
      } catch (err) {
        // A record committed after this transaction's snapshot (an E11000 here), or one another open transaction holds.
        if (isDuplicateKeyError(err) || isTransactionRetryable(err)) return RETRY;
        throw err;
      }
      if (recorded && recorded.expiresAt.getTime() > now) {
        await abort(session);
        if (!sameBinding({ id: recorded.id, by: Number(recorded.by) }, id, by)) throw new IdempotencyKeyReusedError();
        if (recorded.counter === undefined || recorded.counter === null) throw new Error(`key record ${key} holds no counter value`);
        return { kind: 'done', result: { counter: Number(recorded.counter), replayed: true } };
      }
      deadline.check(abandoned);

      // 2. The change, bounded.
      const changed = await this.changeCounter(id, by, maximum, session);
      if (changed.kind !== 'applied') {
        await abort(session);
        return changed.kind === 'rejected' ? { kind: 'rejected', counter: changed.counter } : RETRY;
      }
      deadline.check(abandoned);

      // 3. The key records the value.
      try {
        const result = await this.keys.updateOne({ _id: key }, { $set: { id, by, counter: changed.counter, expiresAt } }, { session });
        if (result.matchedCount !== 1) throw new Error(`key record ${key} vanished inside its transaction`);
      } catch (err) {
        if (isTransactionRetryable(err)) return RETRY;
        throw err;
      }
      deadline.check(abandoned);

      // 4. Both at once.
      try {
        await session.commitTransaction();
      } catch {
        // Committed or not, the next attempt finds out from the key (see above). A commit that
        // never arrived leaves the transaction open, holding its locks: end it (harmless after a
        // commit that did happen, which an abort cannot undo).
        await this.client.db('admin').command({ abortTransaction: 1 }, { session }).catch(() => undefined);
        return RETRY;
      }
      return { kind: 'done', result: { counter: changed.counter, replayed: false } };
    } finally {
      unhook();
      await abort(session);
      await session.endSession().catch(() => undefined);
    }
  }

  /**
   * Step 2 of a keyed change, inside its transaction, where an E11000 would
   * end the transaction and a first-increment race could not be told from a
   * bound: nothing is inserted unless the counter is missing.
   *
   * a. The bounded `$inc`, no upsert: it matched, the change is applied.
   * b. Nothing matched: the counter is out of range, or missing. If a
   *    missing counter (0) may not take the change either, that is the
   *    rejection. Otherwise `$setOnInsert: {counter: by}` with upsert on
   *    `{_id: id}` tells which, in the same snapshot: it returns the
   *    document (out of range: a rejection, true at the snapshot, with the
   *    value), or inserts the counter at `0 + by`.
   * A collision in (b) — a document another transaction created after the
   * snapshot — means "run the transaction again".
   */
  private async changeCounter(id: string, by: number, maximum: number | undefined, session: ClientSession):
  Promise<{ kind: 'applied'; counter: number } | { kind: 'rejected'; counter?: number } | { kind: 'retry' }> {
    try {
      const doc = await this.counters.findOneAndUpdate({ _id: id, ...boundFilter(by, maximum) }, { $inc: { counter: by } }, { returnDocument: 'after', session });
      if (doc) return { kind: 'applied', counter: Number(doc.counter) };
      if (!zeroAllowed(by, maximum)) return { kind: 'rejected' };
      const existing = await this.counters.findOneAndUpdate({ _id: id }, { $setOnInsert: { counter: by } }, { upsert: true, returnDocument: 'before', session });
      return existing ? { kind: 'rejected', counter: Number(existing.counter) } : { kind: 'applied', counter: by };
    } catch (err) {
      if (isDuplicateKeyError(err) || isTransactionRetryable(err)) return { kind: 'retry' };
      throw err;
    }
  }
}

/** Aborts the session's transaction if one is still open; the driver ignores a server that already ended it. */
async function abort(session: ClientSession): Promise<void> {
  if (session.inTransaction()) await session.abortTransaction().catch(() => undefined);
}
