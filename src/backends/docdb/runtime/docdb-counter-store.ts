import { ClientSession, Collection, MongoClient } from 'mongodb';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';
import { docdbCallBudgetMs, DOCDB_DEFAULTS, DOCDB_FIELDS, docdbKeysCollection } from '../docdb-env';
import { createDocDbClient } from './docdb-client';
import { DocDbConfig } from './docdb-config';
import { isDuplicateKeyError, isTransactionRetryable, isWriteConflict, toDocDbCounterError } from './docdb-errors';

/** A counter document: the counter id is the `_id`. */
interface CounterDocument {
  _id: string;
  counter: number;
}

/** A key record (see `DOCDB_KEY_FIELDS`): the key is the `_id`. */
interface KeyRecord {
  _id: string;
  id: string;
  by: number;
  /** Set in the same transaction that records the key; absent only inside that transaction. */
  counter?: number;
  expiresAt: Date;
}

/** Where a store keeps its counters. */
export interface DocDbTarget {
  readonly database: string;
  readonly collection: string;
  /** The secret the client's credentials came from: named in a `CredentialsRejectedError` so the pipeline can re-read it. */
  readonly secretArn?: string;
  /**
   * Bound on one whole store call (see `docdbCallBudgetMs`).
   * @default - no bound beyond the driver's own timeouts
   */
  readonly operationTimeoutMs?: number;
}

/** Lets a call cut off by `withinDeadline` notice it and stop (abort its transaction) instead of carrying on. */
export class Deadline {
  private passed = false;
  private readonly hooks = new Set<() => void>();
  get expired(): boolean { return this.passed; }
  /** @internal */
  expire(): void {
    this.passed = true;
    for (const hook of this.hooks) hook();
    this.hooks.clear();
  }
  /** Runs `hook` when the deadline passes (at once if it has); returns a function that unregisters it. */
  onExpire(hook: () => void): () => void {
    if (this.passed) {
      hook();
      return () => undefined;
    }
    this.hooks.add(hook);
    return () => this.hooks.delete(hook);
  }
  /** Throws once the deadline has passed: nobody is waiting for the answer any more. */
  check(): void {
    if (this.passed) throw new BackendUnavailableError('DocumentDB call abandoned at its deadline');
  }
}

/**
 * Answers 503 once `ms` have passed, whatever the driver is still waiting
 * for: its timeouts bound each step (selection, connect, one reply) but not
 * the sum of a call that retries. The work is not cancelled — the driver's
 * socket timeout ends it — so, as after any timeout, a write may still land.
 * Work given as a function gets a `Deadline` it can check between steps.
 */
export async function withinDeadline<T>(ms: number | undefined, work: Promise<T> | ((deadline: Deadline) => Promise<T>)): Promise<T> {
  const deadline = new Deadline();
  const running = typeof work === 'function' ? work(deadline) : work;
  if (ms === undefined) return running;
  let timer: NodeJS.Timeout | undefined;
  const cutOff = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      deadline.expire();
      reject(new BackendUnavailableError(`DocumentDB did not answer within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([running, cutOff]);
  } finally {
    clearTimeout(timer);
    // A late failure of the abandoned call has nobody to report to.
    running.catch(() => undefined);
  }
}

/**
 * The duplicate-key decision of an unkeyed upserting change, kept apart so
 * it can be tested on its own (an engine that runs each command in one step
 * never produces the race it handles).
 *
 * The store upserts only when 0 is an allowed previous value (a missing
 * counter reads 0), so an upsert that inserts is always a correct change.
 * An upsert of `{_id: id, counter in range}` fails with E11000 only when a
 * document with that `_id` exists by the time the insert happens. Two causes:
 *
 * 1. *First-increment race*: two upserts of a new id both found nothing and
 *    both inserted; the `_id` index admitted one. The document now exists.
 * 2. *Out of range*: the filter matched nothing because the document holds
 *    a value the change may not start from (at the maximum, say), so the
 *    upsert tried to insert a second document with the same `_id`.
 *
 * One retry tells them apart, because counter documents are never deleted:
 * on the retry the document exists before the command starts, so its filter
 * either matches it (the change is applied) or does not because the value
 * is out of range *at that moment* — the retry's own E11000 then proves a
 * rejection that was true when the retry read the document (`rejected()`).
 * Decrements do not change the argument: it needs only that the document
 * exists, never that its value grew.
 */
export async function retryDuplicateKeyOnce<T>(attempt: () => Promise<T>, rejected: () => Error): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!isDuplicateKeyError(err)) throw err;
  }
  try {
    return await attempt();
  } catch (err) {
    if (isDuplicateKeyError(err)) throw rejected();
    throw err;
  }
}

/**
 * Retries an attempt that failed with WriteConflict (112). The server
 * aborted that write, so nothing was applied and a retry cannot count one
 * request twice. Only answers are retried: a timeout or a network error after
 * the command was sent is ambiguous and goes back to the client as a 503.
 */
export async function retryWriteConflict<T>(attempt: () => Promise<T>, retries: number = DOCDB_DEFAULTS.writeConflictRetries): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isWriteConflict(err) || i >= retries) throw err;
      // A short jittered pause lets the conflicting writer finish first.
      await pause(5 + Math.floor(Math.random() * 20));
    }
  }
}

/** What a change may start from, as a filter on the counter field: `lowest ≤ value ≤ highest`. */
export function boundFilter(by: number, maximum?: number): { counter: { $gte: number; $lte: number } } {
  const { lowest, highest } = allowedPrevious(by, maximum);
  return { counter: { $gte: lowest, $lte: highest } };
}

/** One keyed attempt's outcome: an answer, a rejection, or "run the whole transaction again". */
type KeyedOutcome =
  | { readonly kind: 'done'; readonly result: ChangeResult }
  | { readonly kind: 'rejected'; readonly counter?: number }
  | { readonly kind: 'retry' };

const RETRY: KeyedOutcome = { kind: 'retry' };

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
 * DocumentDB (MongoDB API).
 *
 * **Unkeyed change: one `findAndModify`.**
 * `findOneAndUpdate({_id: id, counter: {$gte: lo, $lte: hi}}, {$inc:
 * {counter: by}}, {returnDocument: 'after', upsert})` matches and updates
 * one document atomically and returns the document as *this* update left
 * it: concurrent changes are serialised on the document, and each caller
 * gets its own value. `[lo, hi]` is `allowedPrevious(by, max)`: the bound is
 * checked in the same atomic step as the write. `upsert` is on exactly when
 * a missing counter (0) may take the change; then a rejection is an E11000
 * (see `retryDuplicateKeyOnce`). Otherwise (a decrement in conditional mode,
 * a step above the maximum) nothing may be inserted: the upsert is off, and
 * "no document matched" is the rejection — true when the command ran,
 * because a missing counter reads 0 and 0 is not allowed. A 200 costs one
 * round trip; a 409 one (no upsert) or two (the retry that proves it).
 *
 * **Keyed change (`Idempotency-Key`): one transaction** (`applyKeyed`).
 */
export class DocDbCounterStore implements CounterStore {
  /**
   * Reads the credentials secret (once per container) and builds the client
   * with its pool; the client connects in `connect` (init phase) or on the
   * first operation.
   */
  static async create(config: DocDbConfig): Promise<DocDbCounterStore> {
    return new DocDbCounterStore(await createDocDbClient(config), { ...config, operationTimeoutMs: docdbCallBudgetMs(config) });
  }

  private readonly counters: Collection<CounterDocument>;
  private readonly keys: Collection<KeyRecord>;
  /** The tail of each id's queue of keyed changes in this container (see `oneAtATime`). */
  private readonly keyedTails = new Map<string, Promise<unknown>>();
  private readonly secretArn?: string;
  private readonly operationTimeoutMs?: number;

  /** A store on a client built elsewhere (`create` builds the container's own). */
  constructor(private readonly client: MongoClient, target: DocDbTarget) {
    const db = client.db(target.database);
    this.counters = db.collection<CounterDocument>(target.collection);
    this.keys = db.collection<KeyRecord>(docdbKeysCollection(target.collection));
    this.secretArn = target.secretArn;
    this.operationTimeoutMs = target.operationTimeoutMs;
  }

  /**
   * Connects the client now (init phase): server selection, then a `ping`
   * that checks out, opens and authenticates the pool's first connection
   * (the driver opens pool connections lazily). An operation meanwhile waits
   * for the same connect; after a failure the driver connects again on the
   * next operation.
   */
  async connect(): Promise<void> {
    await this.client.db('admin').command({ ping: 1 });
  }

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    try {
      if (change.idempotency) {
        const idempotency = change.idempotency;
        return await withinDeadline(this.operationTimeoutMs,
          (deadline) => this.oneAtATime(id, () => this.applyKeyed(id, change, idempotency, deadline)));
      }
      return { counter: await withinDeadline(this.operationTimeoutMs, this.applyUnkeyed(id, change)), replayed: false };
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  async read(id: string): Promise<number> {
    try {
      // The client's read preference is primary: the read sees every acknowledged change.
      const doc = await withinDeadline(this.operationTimeoutMs, this.counters.findOne({ _id: id }, { projection: { [DOCDB_FIELDS.COUNTER]: 1 } }));
      return doc ? Number(doc.counter) : 0;
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /**
   * Runs the keyed changes of one id in this container one after the other.
   * Two transactions on one counter can only conflict, so running them
   * together would just make one of them retry. A Lambda container serves
   * one request at a time, so there this never waits; a process serving
   * requests concurrently (the local server, the tests' containers) would
   * otherwise conflict with itself. Containers still conflict with each
   * other, and retry.
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

  private async applyUnkeyed(id: string, { by, maximum }: CounterChange): Promise<number> {
    const filter = { _id: id, ...boundFilter(by, maximum) };
    const upsert = zeroAllowed(by, maximum);
    const value = await retryDuplicateKeyOnce(() => retryWriteConflict(async () => {
      const doc = await this.counters.findOneAndUpdate(filter, { $inc: { counter: by } }, { upsert, returnDocument: 'after' });
      if (doc) return Number(doc.counter);
      if (upsert) throw new Error('findOneAndUpdate with upsert returned no document');
      return undefined; // missing (0, not allowed) or out of range: nothing written
    }), () => rejectionOf(by, maximum));
    if (value === undefined) throw rejectionOf(by, maximum);
    return value;
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
    for (let attempt = 0; ; attempt++) {
      deadline.check();
      const outcome = await this.keyedAttempt(id, by, maximum, idempotency, deadline);
      if (outcome.kind === 'done') return outcome.result;
      if (outcome.kind === 'rejected') throw rejectionOf(by, maximum, outcome.counter);
      if (attempt + 1 >= KEYED_MAX_ATTEMPTS) {
        throw new BackendUnavailableError(`DocumentDB: the keyed change conflicted ${KEYED_MAX_ATTEMPTS} times in a row; retry with the same Idempotency-Key`);
      }
      // A conflict lasts as long as another transaction's few round trips:
      // back off exponentially with full jitter, so that contenders spread out.
      await pause(Math.random() * Math.min(KEYED_BACKOFF.capMs, KEYED_BACKOFF.baseMs * 2 ** attempt));
    }
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
      deadline.check();

      // 2. The change, bounded.
      const changed = await this.changeCounter(id, by, maximum, session);
      if (changed.kind !== 'applied') {
        await abort(session);
        return changed.kind === 'rejected' ? { kind: 'rejected', counter: changed.counter } : RETRY;
      }
      deadline.check();

      // 3. The key records the value.
      try {
        const result = await this.keys.updateOne({ _id: key }, { $set: { id, by, counter: changed.counter, expiresAt } }, { session });
        if (result.matchedCount !== 1) throw new Error(`key record ${key} vanished inside its transaction`);
      } catch (err) {
        if (isTransactionRetryable(err)) return RETRY;
        throw err;
      }
      deadline.check();

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

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
