import { randomBytes } from 'crypto';
import { ClientSession, Collection, MongoClient, MongoServerError } from 'mongodb';
import { changeInTransaction, CounterDocument, KeyRecord } from './docdb-collections';
import { isDuplicateKeyError, isTransactionRetryable, isTransientError } from './docdb-errors';
import type { DocDbShardedCounter } from './docdb-shards';
import { abortTransaction as abort, releaseAfterFailedCommit } from './docdb-writes';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { isSharded } from '../../../runtime/shards';
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
  readonly change: CounterChange;
  readonly request: string;
}

/**
 * The change inside the transaction: applied (an unsharded counter's value,
 * or a sharded counter's slot), rejected, or "run the transaction again".
 */
type Changed =
  | { readonly kind: 'applied'; readonly counter?: number; readonly shard?: number }
  | { readonly kind: 'rejected'; readonly counter?: number }
  | { readonly kind: 'retry' };

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
    private readonly sharded: DocDbShardedCounter,
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

  private async applyKeyed(id: string, change: CounterChange, idempotency: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult> {
    const { by, maximum } = change;
    // Outside the transaction: the width is then raised for good, whatever the transaction does.
    if (maximum === undefined) await this.sharded.raiseWidth(id, change.shards ?? 1);
    // Every attempt of this request writes the same token: a record carrying it is this request's own change.
    const request = randomBytes(12).toString('base64url');
    const attempt: Attempt = { id, change, ...idempotency, request };
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
    const { id, change, key, retentionSeconds, request } = attempt;
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
      const changed = await this.changeCounter(id, change, session);
      if (changed.kind === 'retry') return RETRY;
      deadline.check(abandoned);
      if (changed.kind === 'rejected') {
        // A key applied before still answers its 200 at the bound: look for it in the same snapshot.
        const found = await this.readKey(key, session);
        await abort(session);
        return found === 'retry' ? RETRY : this.fromRecord(found, attempt, now) ?? { kind: 'rejected', counter: changed.counter };
      }

      // 2. The key record with the value the change produced: inserted unless the key is taken.
      // A sharded change knows its slot, not the total: the record keeps what its answer and a replay carry.
      const result = changed.shard === undefined ? { counter: changed.counter } : { shard: changed.shard };
      const record: Omit<KeyRecord, '_id'> = { id, by: change.by, ...result, expiresAt: new Date(now + retentionSeconds * 1000), request };
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
        // Committed or not, the next attempt finds out from the key (its own token if it did).
        await releaseAfterFailedCommit(this.client, session);
        return RETRY;
      }
      return { kind: 'done', result: { ...result, replayed: false } };
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
   * lost); else a replay of the recorded value (a sharded change's: no
   * value, the answer is a sharded one), or a 422 for another id or step.
   */
  private fromRecord(record: KeyRecord | null, attempt: Attempt, now: number): Done | undefined {
    if (!record || record.expiresAt.getTime() <= now) return undefined;
    if (!sameBinding({ id: record.id, by: Number(record.by) }, attempt.id, attempt.change.by)) throw new IdempotencyKeyReusedError();
    const own = record.request === attempt.request;
    if (record.shard !== undefined && record.shard !== null) {
      // The slot is this request's own to log; a replay applied nothing now.
      return { kind: 'done', result: { ...(own ? { shard: Number(record.shard) } : {}), replayed: !own } };
    }
    if (record.counter === undefined || record.counter === null) throw new Error(`key record ${attempt.key} holds no counter value`);
    return { kind: 'done', result: { counter: Number(record.counter), replayed: !own } };
  }

  /**
   * The bounded change inside the transaction (`changeInTransaction`). An id
   * this container knows to be sharded (configured, or found widened) goes
   * to the sharded change (`DocDbShardedCounter.changeIn`), in this same
   * transaction. An unsharded change of a document that carries a width
   * (the id was sharded by another container: `shards` lowered to 1) wrote
   * nothing, and the document it read says so: the sharded change with the
   * configured count then runs in the same transaction. A collision (a
   * document another transaction created or changed after the snapshot)
   * runs the transaction again.
   */
  private async changeCounter(id: string, change: CounterChange, session: ClientSession): Promise<Changed> {
    const { by, maximum } = change;
    try {
      if (!isSharded(change.shards, this.sharded.knownWidth(id))) {
        const changed = await changeInTransaction(this.counters, id, by, maximum, session, true);
        if (changed.applied) return { kind: 'applied', counter: changed.counter };
        const width = changed.found?.width;
        if (width === undefined) {
          // Today's answer: a refused step that may not create the counter carries no value.
          return { kind: 'rejected', counter: changed.found && zeroAllowed(by, maximum) ? Number(changed.found.counter) : undefined };
        }
        this.sharded.remember(id, width);
      }
      return await this.sharded.changeIn(id, change, session);
    } catch (err) {
      if (isDuplicateKeyError(err) || isTransactionRetryable(err)) return { kind: 'retry' };
      throw err;
    }
  }
}
