import { Collection, MongoClient } from 'mongodb';
import { BackendUnavailableError, LimitReachedError } from '../../../runtime/errors';
import { CounterStore } from '../../../runtime/store';
import { DOCDB_DEFAULTS, DOCDB_FIELDS } from '../docdb-env';
import { createDocDbClient } from './docdb-client';
import { DocDbConfig } from './docdb-config';
import { isDuplicateKeyError, isWriteConflict, toDocDbCounterError } from './docdb-errors';

/** A counter document: the counter id is the `_id`. */
interface CounterDocument {
  _id: string;
  counter: number;
}

/** Where a store keeps its counters. */
export interface DocDbTarget {
  readonly database: string;
  readonly collection: string;
  /** The secret the client's credentials came from: named in a `CredentialsRejectedError` so the pipeline can re-read it. */
  readonly secretArn?: string;
  /**
   * Bound on one whole store call (see `DOCDB_ENV.OPERATION_TIMEOUT_MS`).
   * @default - no bound beyond the driver's own timeouts
   */
  readonly operationTimeoutMs?: number;
}

/**
 * Answers 503 once `ms` have passed, whatever the driver is still waiting
 * for: its timeouts bound each step (selection, connect, one reply) but not
 * the sum of a call that retries. The work is not cancelled — the driver's
 * socket timeout ends it — so, as after any timeout, a write may still land.
 */
export async function withinDeadline<T>(ms: number | undefined, work: Promise<T>): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BackendUnavailableError(`DocumentDB did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    // A late failure of the abandoned call has nobody to report to.
    work.catch(() => undefined);
  }
}

/**
 * The duplicate-key decision of an upserting increment, kept apart so it can
 * be tested on its own (an engine that runs each command in one step never
 * produces the race it handles).
 *
 * An upsert of `{_id: id, …}` fails with E11000 only when a document with
 * that `_id` exists by the time the insert happens. Two causes:
 *
 * 1. *First-increment race*: two upserts of a new id both found nothing and
 *    both inserted; the `_id` index admitted one. The document now exists.
 * 2. *At the maximum* (conditional mode): the filter `counter < maximum`
 *    matched nothing because the document holds the maximum, so the upsert
 *    tried to insert a second document with the same `_id`.
 *
 * One retry tells them apart, because counter documents are never deleted
 * and a counter never decreases: on the retry the document exists, so the
 * filter either matches it (the increment is applied) or fails because the
 * value is at the maximum, which is then final, and the retry's own E11000
 * is the 409. Unconditional increments always match an existing document,
 * so their retry succeeds. A second E11000 in unconditional mode (someone
 * deleted and re-created the document in between) is left as an error.
 */
export async function retryDuplicateKeyOnce<T>(attempt: () => Promise<T>, maximum?: number): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!isDuplicateKeyError(err)) throw err;
  }
  try {
    return await attempt();
  } catch (err) {
    if (maximum !== undefined && isDuplicateKeyError(err)) throw new LimitReachedError(maximum);
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
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.floor(Math.random() * 20)));
    }
  }
}

/**
 * DocumentDB (MongoDB API): one `findAndModify` per increment.
 *
 * `findOneAndUpdate({_id: id}, {$inc: {counter: 1}}, {upsert: true,
 * returnDocument: 'after'})` matches and updates one document atomically and
 * returns the document as *this* update left it: concurrent increments are
 * serialised on the document, and each caller gets its own value (never a
 * re-read that another caller's increment may already have moved).
 *
 * Conditional mode adds `counter: {$lt: maximum}` to the filter, checked in
 * the same atomic step. At the maximum nothing matches, the upsert's insert
 * collides with the `_id` index (E11000) and nothing is written: the 409.
 * See `retryDuplicateKeyOnce` for why a first-increment race is not a 409.
 *
 * A 200 costs one round trip; a 409 costs two (the retry that proves it).
 */
export class DocDbCounterStore implements CounterStore {
  /**
   * Reads the credentials secret (once per container) and builds the client
   * with its pool; the client connects in `connect` (init phase) or on the
   * first operation.
   */
  static async create(config: DocDbConfig): Promise<DocDbCounterStore> {
    return new DocDbCounterStore(await createDocDbClient(config), config);
  }

  private readonly counters: Collection<CounterDocument>;
  private readonly secretArn?: string;
  private readonly operationTimeoutMs?: number;

  /** A store on a client built elsewhere (`create` builds the container's own). */
  constructor(private readonly client: MongoClient, target: DocDbTarget) {
    this.counters = client.db(target.database).collection<CounterDocument>(target.collection);
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

  async increment(id: string): Promise<number> {
    return this.upsertIncrement(id);
  }

  async incrementBelow(id: string, maximum: number): Promise<number> {
    return this.upsertIncrement(id, maximum);
  }

  async read(id: string): Promise<number> {
    try {
      // The client's read preference is primary: the read sees every acknowledged increment.
      const doc = await withinDeadline(this.operationTimeoutMs, this.counters.findOne({ _id: id }, { projection: { [DOCDB_FIELDS.COUNTER]: 1 } }));
      return doc ? Number(doc.counter) : 0;
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async upsertIncrement(id: string, maximum?: number): Promise<number> {
    const filter = maximum === undefined ? { _id: id } : { _id: id, counter: { $lt: maximum } };
    try {
      return await withinDeadline(this.operationTimeoutMs, retryDuplicateKeyOnce(() => retryWriteConflict(async () => {
        const doc = await this.counters.findOneAndUpdate(filter, { $inc: { counter: 1 } }, { upsert: true, returnDocument: 'after' });
        if (!doc) throw new Error('findOneAndUpdate with upsert returned no document');
        return Number(doc.counter);
      }), maximum));
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }
}
