import { randomBytes } from 'crypto';
import { ClientSession, Collection, MongoClient, MongoServerError } from 'mongodb';
import { boundFilter, CounterDocument, KeyRecord } from './docdb-collections';
import { isDuplicateKeyError, isTransactionRetryable, isTransientError } from './docdb-errors';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { ChangeResult, CounterChange, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';

/** One keyed attempt's outcome: an answer, a rejection, or "run the whole transaction again". */
type Done = { readonly kind: 'done'; readonly result: ChangeResult };
type KeyedOutcome =
  | Done
  | { readonly kind: 'rejected'; readonly counter?: number }
  | { readonly kind: 'retry' };

const RETRY: KeyedOutcome = { kind: 'retry' };

/** One request's keyed change: the change, its key, and the request's own token. */
interface Attempt extends IdempotencyOptions {
  readonly id: string;
  readonly by: number;
  readonly maximum?: number;
  readonly request: string;
}

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
    try {
      return await this.oneAtATime(id, () => this.applyKeyed(id, change, idempotency, deadline));
    } catch (err) {
      throw await this.explainMissingSetup(err);
    }
  }

  /**
   * A store whose setup has not run (or ran before the keys collection
   * existed) cannot run the keyed transaction: DocumentDB can neither create
   * nor use a missing collection inside one. That is the deployment's state,
   * not the request's fault: a 503 whose log line names what is missing,
   * instead of a 500. Any other server error is returned unchanged; the
   * check costs one `listCollections`, on this failure path only.
   */
  private async explainMissingSetup(err: unknown): Promise<unknown> {
    if (!(err instanceof MongoServerError) || isTransientError(err)) return err;
    let present: Set<string>;
    try {
      const names = [this.counters.collectionName, this.keys.collectionName];
      const found = await this.client.db(this.keys.dbName).listCollections({ name: { $in: names } }, { nameOnly: true }).toArray();
      present = new Set(found.map((c) => c.name));
    } catch {
      return err;
    }
    const missing = [this.counters, this.keys].filter((c) => !present.has(c.collectionName)).map((c) => `${c.dbName}.${c.collectionName}`);
    if (!missing.length) return err;
    return new BackendUnavailableError(
      `DocumentDB setup has not run: collection ${missing.join(' and ')} missing (keyed changes need both; run the setup custom resource, Custom::DocDbSetup)`,
      { cause: err });
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

  private async applyKeyed(id: string, { by, maximum }: CounterChange, idempotency: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult> {
    // Every attempt of this request writes the same token: a record carrying it is this request's own change.
    const request = randomBytes(12).toString('base64url');
    const attempt: Attempt = { id, by, maximum, ...idempotency, request };
    const outcome = await retry(async (n) => {
      deadline.check(abandoned);
      if (n > 1) {
        // After a conflict or a failed commit, the key is often recorded by now (by a duplicate
        // of this request, or by this request's own commit): one plain read answers it without
        // contending for the counter again.
        const recorded = this.fromRecord(await this.keys.findOne({ _id: idempotency.key }), attempt, Date.now());
        if (recorded) return recorded;
        deadline.check(abandoned);
      }
      const answer = await this.keyedAttempt(attempt, deadline);
      return answer.kind === 'retry' ? AGAIN : answer;
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

  /**
   * One transaction (docs/docdb.md, "The transaction"): the bounded change
   * first, then the key record with the value it produced, then the commit.
   * A live record found in place of the insert is a replay (or a 422, or
   * this request's own earlier commit): abort.
   */
  private async keyedAttempt(attempt: Attempt, deadline: Deadline): Promise<KeyedOutcome> {
    const { id, by, maximum, key, retentionSeconds, request } = attempt;
    // DocumentDB has no causal consistency: a session must not ask for it.
    const session = this.client.startSession({ causalConsistency: false });
    // Cut off at the deadline: abort at once, not after the command in flight returns (an open
    // transaction holds its locks until DocumentDB ends it, one minute; a container may be frozen).
    const unhook = deadline.onExpire(() => void abort(session));
    try {
      // Snapshot isolation (DocumentDB's only level); the client's write concern (majority) applies to the commit.
      session.startTransaction();
      const now = Date.now();

      // 1. The change, bounded.
      const changed = await this.changeCounter(id, by, maximum, session);
      if (changed.kind === 'retry') return RETRY;
      deadline.check(abandoned);
      if (changed.kind === 'rejected') {
        // A key applied before still answers its 200 at the bound: look for it in the same snapshot.
        const found = await this.readKey(key, session);
        await abort(session);
        return found === 'retry' ? RETRY : this.fromRecord(found, attempt, now) ?? { kind: 'rejected', counter: changed.counter };
      }

      // 2. The key record with the value the change produced: inserted unless the key is taken.
      const record: Omit<KeyRecord, '_id'> = { id, by, counter: changed.counter, expiresAt: new Date(now + retentionSeconds * 1000), request };
      let previous: KeyRecord | null;
      try {
        previous = await this.keys.findOneAndUpdate({ _id: key }, { $setOnInsert: record }, { upsert: true, returnDocument: 'before', session });
      } catch (err) {
        // A record committed after this transaction's snapshot (E11000), or one another open transaction holds.
        if (isDuplicateKeyError(err) || isTransactionRetryable(err)) return RETRY;
        throw err;
      }
      const live = this.fromRecord(previous, attempt, now);
      if (live) {
        await abort(session);
        return live;
      }
      deadline.check(abandoned);
      if (previous) {
        // An expired record the TTL monitor has not deleted yet: this transaction takes the key over.
        try {
          const replaced = await this.keys.updateOne({ _id: key }, { $set: record }, { session });
          if (replaced.matchedCount !== 1) throw new Error(`key record ${key} vanished inside its transaction`);
        } catch (err) {
          if (isTransactionRetryable(err)) return RETRY;
          throw err;
        }
        deadline.check(abandoned);
      }

      // 3. Both at once.
      try {
        await session.commitTransaction();
      } catch {
        // Committed or not, the next attempt finds out from the key (its own token if it did). A
        // commit that never arrived leaves the transaction open, holding its locks: end it
        // (harmless after a commit that did happen, which an abort cannot undo).
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

  /** The key record as the transaction's snapshot has it, or "run again" when it cannot be read now. */
  private async readKey(key: string, session: ClientSession): Promise<KeyRecord | null | 'retry'> {
    try {
      return await this.keys.findOne({ _id: key }, { session });
    } catch (err) {
      if (isTransactionRetryable(err)) return 'retry';
      throw err;
    }
  }

  /**
   * What a key record found by an attempt answers: nothing when there is
   * none or it expired (the key is free); this request's own change when it
   * carries this request's token (its commit happened, the answer was
   * lost); else a replay of the recorded value, or a 422 for another id or
   * step.
   */
  private fromRecord(record: KeyRecord | null, attempt: Attempt, now: number): Done | undefined {
    if (!record || record.expiresAt.getTime() <= now) return undefined;
    if (!sameBinding({ id: record.id, by: Number(record.by) }, attempt.id, attempt.by)) throw new IdempotencyKeyReusedError();
    if (record.counter === undefined || record.counter === null) throw new Error(`key record ${attempt.key} holds no counter value`);
    return { kind: 'done', result: { counter: Number(record.counter), replayed: record.request !== attempt.request } };
  }

  /**
   * The bounded change inside the transaction, where an E11000 would end
   * the transaction: nothing is inserted unless the counter is missing.
   * The bounded `$inc` (no upsert) matched: applied. Nothing matched and a
   * missing counter may not take the change either: rejected. Otherwise
   * `$setOnInsert: {counter: by}` with upsert tells, in the same snapshot,
   * an out-of-range counter (returned: rejected, with its value) from a
   * missing one (inserted at `0 + by`). A collision (a counter another
   * transaction created after the snapshot) runs the transaction again.
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
