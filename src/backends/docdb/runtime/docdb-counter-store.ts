import { MongoClient, Collection } from 'mongodb';
import { BackendUnavailableError, rejectionOf } from '../../../runtime/errors';
import { Deadline, retry, withinDeadline } from '../../../runtime/retry';
import { ChangeResult, CounterChange, CounterStore, zeroAllowed } from '../../../runtime/store';
import { docdbCallBudgetMs, DOCDB_DEFAULTS, DOCDB_FIELDS, docdbKeysCollection } from '../docdb-env';
import { createDocDbClient } from './docdb-client';
import { boundFilter, CounterDocument, KeyRecord } from './docdb-collections';
import { DocDbConfig } from './docdb-config';
import { isDuplicateKeyError, isWriteConflict, toDocDbCounterError } from './docdb-errors';
import { DocDbKeyedChange } from './docdb-keyed-change';

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
 * The duplicate-key decision of an unkeyed upserting change: one retry
 * after an E11000, whose own E11000 proves the rejection. Why one retry
 * tells a first-increment race from an out-of-range value: docs/docdb.md,
 * "Why it is atomic".
 */
export async function retryDuplicateKeyOnce<T>(attempt: () => Promise<T>, rejected: () => Error): Promise<T> {
  return retry(attempt, {
    backoff: { baseMs: 0, capMs: 0 },
    maxAttempts: 2,
    retryable: isDuplicateKeyError,
    exhausted: () => rejected(),
  });
}

/** Pause between retries of a write the server refused with WriteConflict. */
export const WRITE_CONFLICT_BACKOFF = { baseMs: 5, capMs: 25 } as const;

/**
 * Retries an attempt that failed with WriteConflict (112): the server
 * aborted that write, so nothing was applied. A timeout or a network error
 * after the command was sent is ambiguous and goes back as a 503.
 */
export async function retryWriteConflict<T>(attempt: () => Promise<T>, retries: number = DOCDB_DEFAULTS.writeConflictRetries): Promise<T> {
  let last: unknown;
  return retry(attempt, {
    backoff: WRITE_CONFLICT_BACKOFF,
    maxAttempts: retries + 1,
    retryable: (err) => {
      last = err;
      return isWriteConflict(err);
    },
    // The last WriteConflict itself: toDocDbCounterError makes it a 503.
    exhausted: () => last as Error,
  });
}

/**
 * DocumentDB (MongoDB API). A change without a key is one bounded
 * `findAndModify` (below); a keyed one is `DocDbKeyedChange`. How and why:
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
  private readonly keyed: DocDbKeyedChange;
  private readonly secretArn?: string;
  private readonly operationTimeoutMs?: number;

  /** A store on a client built elsewhere (`create` builds the container's own). */
  constructor(private readonly client: MongoClient, target: DocDbTarget) {
    const db = client.db(target.database);
    this.counters = db.collection<CounterDocument>(target.collection);
    this.keyed = new DocDbKeyedChange(client, this.counters, db.collection<KeyRecord>(docdbKeysCollection(target.collection)));
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

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    const timedOut = docdbTimedOut(this.operationTimeoutMs);
    const deadline = Deadline.after(this.operationTimeoutMs);
    try {
      if (change.idempotency) {
        const idempotency = change.idempotency;
        return await withinDeadline(deadline, (d) => this.keyed.apply(id, change, idempotency, d), timedOut);
      }
      return { counter: await withinDeadline(deadline, this.applyUnkeyed(id, change), timedOut), replayed: false };
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  async read(id: string): Promise<number> {
    try {
      // The client's read preference is primary: the read sees every acknowledged change.
      const doc = await withinDeadline(Deadline.after(this.operationTimeoutMs),
        this.counters.findOne({ _id: id }, { projection: { [DOCDB_FIELDS.COUNTER]: 1 } }), docdbTimedOut(this.operationTimeoutMs));
      return doc ? Number(doc.counter) : 0;
    } catch (err) {
      throw toDocDbCounterError(err, this.secretArn);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /**
   * One bounded `findAndModify`, upserting only when a missing counter (0)
   * may take the change: one round trip for a 200, one or two for a 409.
   */
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
}
