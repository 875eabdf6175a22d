import { MongoClient, Collection } from 'mongodb';
import { BackendUnavailableError, rejectionOf } from '../../../runtime/errors';
import { Deadline, withinDeadline } from '../../../runtime/retry';
import { isSharded } from '../../../runtime/shards';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, zeroAllowed } from '../../../runtime/store';
import { docdbCallBudgetMs, DOCDB_FIELDS, docdbKeysCollection } from '../docdb-env';
import { createDocDbClient } from './docdb-client';
import { boundFilter, CounterDocument, KeyRecord, NOT_WIDENED } from './docdb-collections';
import { DocDbConfig } from './docdb-config';
import { isDuplicateKeyError, toDocDbCounterError } from './docdb-errors';
import { DocDbKeyedChange } from './docdb-keyed-change';
import { DocDbShardedCounter, Widened } from './docdb-shards';
import { retryWriteConflict } from './docdb-writes';

export { retryDuplicateKeyOnce, retryWriteConflict, WRITE_CONFLICT_BACKOFF } from './docdb-writes';

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

/** The 503 of a call cut off by its budget. */
export function docdbTimedOut(ms: number | undefined): () => Error {
  return () => new BackendUnavailableError(`DocumentDB did not answer within ${ms} ms`);
}

/**
 * DocumentDB (MongoDB API). A change without a key is one bounded
 * `findAndModify` (below); a keyed one is `DocDbKeyedChange`; a sharded
 * counter's (`shards` > 1) is `DocDbShardedCounter`. How and why:
 * docs/docdb.md.
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
  /** Sharded counters are implemented (`DocDbShardedCounter`). */
  readonly sharded = true;
  private readonly keyed: DocDbKeyedChange;
  private readonly shardedCounter: DocDbShardedCounter;
  private readonly secretArn?: string;
  private readonly operationTimeoutMs?: number;

  /** A store on a client built elsewhere (`create` builds the container's own). */
  constructor(private readonly client: MongoClient, target: DocDbTarget) {
    const db = client.db(target.database);
    this.counters = db.collection<CounterDocument>(target.collection);
    this.shardedCounter = new DocDbShardedCounter(client, this.counters);
    this.keyed = new DocDbKeyedChange(client, this.counters, db.collection<KeyRecord>(docdbKeysCollection(target.collection)), this.shardedCounter);
    this.secretArn = target.secretArn;
    this.operationTimeoutMs = target.operationTimeoutMs;
  }

  /**
   * Connects the client now (init phase): server selection, then a `ping`
   * that checks out, opens and authenticates the pool's first connection
   * (the driver opens pool connections lazily).
   */
  async connect(): Promise<void> {
    await this.client.db('admin').command({ ping: 1 });
  }

  /**
   * An id this container knows to be sharded (configured, or found widened
   * by another container's sharded writes) goes to the sharded change. An
   * unsharded change learns that its id was widened from the write itself
   * (`NOT_WIDENED` in its filter, and the read that follows a write that
   * wrote nothing): no extra command for an id never sharded. A keyed
   * change decides inside its transaction (`DocDbKeyedChange`).
   */
  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    const timedOut = docdbTimedOut(this.operationTimeoutMs);
    const deadline = Deadline.after(this.operationTimeoutMs);
    try {
      if (change.idempotency) {
        const idempotency = change.idempotency;
        return await withinDeadline(deadline, (d) => this.keyed.apply(id, change, idempotency, d), timedOut);
      }
      if (!isSharded(change.shards, this.shardedCounter.knownWidth(id))) {
        const counter = await withinDeadline(deadline, this.applyUnkeyed(id, change), timedOut);
        if (!(counter instanceof Widened)) return { counter, replayed: false };
        // Lowered to one shard: slot 0 takes the changes, every slot is still counted (docs/docdb.md, "Resharding").
        this.shardedCounter.remember(id, counter.width);
      }
      return await withinDeadline(deadline, (d) => this.shardedCounter.apply(id, change, d), timedOut);
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  /**
   * The counter's document, `width` projected too; an id found widened is
   * then read as a sharded one (one `find` more, once per container and id:
   * later reads go to the sharded read directly).
   */
  async read(id: string, shards = 1): Promise<number> {
    const timedOut = docdbTimedOut(this.operationTimeoutMs);
    const deadline = Deadline.after(this.operationTimeoutMs);
    try {
      if (isSharded(shards, this.shardedCounter.knownWidth(id))) {
        return await withinDeadline(deadline, this.shardedCounter.read(id, shards), timedOut);
      }
      // The client's read preference is primary: the read sees every acknowledged change.
      const doc = await withinDeadline(deadline,
        this.counters.findOne({ _id: id }, { projection: { [DOCDB_FIELDS.COUNTER]: 1, [DOCDB_FIELDS.WIDTH]: 1 } }), timedOut);
      if (doc?.width === undefined) return doc ? Number(doc.counter) : 0;
      this.shardedCounter.remember(id, doc.width);
      return await withinDeadline(deadline, this.shardedCounter.read(id, shards), timedOut);
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /**
   * One bounded `findAndModify` of a counter never written sharded,
   * upserting only when a missing counter (0) may take the change: one
   * round trip for a 200. A write that wrote nothing (no match; with
   * upsert, an E11000) is followed by one `find` of the document: a width
   * there means the id was sharded by another container (`Widened`);
   * otherwise the value tells the rejection (two round trips for a 409, one
   * when the step can never apply) from the one race the E11000 cannot
   * tell apart, two first writes of one id, which gets one more write: its
   * own E11000 then proves the rejection (docs/docdb.md, "Why it is
   * atomic").
   */
  private async applyUnkeyed(id: string, { by, maximum }: CounterChange): Promise<number | Widened> {
    const filter = { _id: id, ...boundFilter(by, maximum), ...NOT_WIDENED };
    const upsert = zeroAllowed(by, maximum);
    const { lowest, highest } = allowedPrevious(by, maximum);
    for (let attempt = 1; ; attempt++) {
      let doc: CounterDocument | null = null;
      try {
        doc = await retryWriteConflict(() => this.counters.findOneAndUpdate(filter, { $inc: { counter: by } }, { upsert, returnDocument: 'after' }));
        if (doc) return Number(doc.counter);
        if (upsert) throw new Error('findOneAndUpdate with upsert returned no document');
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err;
      }
      // A step above the maximum: no counter, sharded or not, can take it.
      if (!upsert && by > 0) throw rejectionOf(by, maximum);
      const found = await this.counters.findOne({ _id: id }, { projection: { [DOCDB_FIELDS.COUNTER]: 1, [DOCDB_FIELDS.WIDTH]: 1 } });
      if (found?.width !== undefined) return new Widened(found.width);
      const inRange = found !== null && lowest <= Number(found.counter) && Number(found.counter) <= highest;
      if (!upsert || attempt >= 2 || (found && !inRange)) throw rejectionOf(by, maximum);
    }
  }
}
