import { MongoClient, MongoServerError } from 'mongodb';
import { DOCDB_FIELDS } from '../docdb-env';

const NAMESPACE_EXISTS = 48;

/** What the setup step reports (custom resource `Data`). */
export interface CounterCollectionInfo {
  [key: string]: string;
  readonly database: string;
  readonly collection: string;
  /** Name of the unique index on the counter id. */
  readonly idIndex: string;
}

/**
 * Creates the database and the counters collection, and checks the unique
 * index on the counter id. Idempotent: an existing collection is kept, with
 * its counters.
 *
 * The counter id is the `_id`, whose unique index MongoDB and DocumentDB
 * create with every collection and never let anyone drop, so there is no
 * further index to create: the setup verifies it is there. The collection is
 * created here, once, so that the counter path never performs DDL: the first
 * increment of a fresh deployment would otherwise create it implicitly.
 * (DocumentDB creates a database with its first collection.)
 */
export async function ensureCounterCollection(client: MongoClient, database: string, collection: string): Promise<CounterCollectionInfo> {
  const db = client.db(database);
  try {
    await db.createCollection(collection);
  } catch (err) {
    if (!(err instanceof MongoServerError && err.code === NAMESPACE_EXISTS)) throw err;
  }
  const indexes = await db.collection(collection).listIndexes().toArray();
  const idIndex = indexes.find((i) => Object.keys(i.key ?? {}).length === 1 && i.key?.[DOCDB_FIELDS.ID] === 1);
  if (!idIndex) throw new Error(`${database}.${collection} has no index on ${DOCDB_FIELDS.ID}`);
  return { database, collection, idIndex: String(idIndex.name) };
}
