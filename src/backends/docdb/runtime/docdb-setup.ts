import { MongoClient, MongoServerError } from 'mongodb';
import { SetupHandlerOptions } from '../../../runtime/custom-resource';
import { readJsonSecret } from '../../../runtime/secrets';
import { DOCDB_FIELDS, DOCDB_KEY_EXPIRY_INDEX, DOCDB_KEY_FIELDS, DOCDB_SETUP_PROPERTIES, docdbKeysCollection } from '../docdb-env';
import { createDocDbClient, DocDbCredentials, readCredentials } from './docdb-client';
import { DocDbConfig, DocDbTimeouts } from './docdb-config';

/**
 * The setup function's timeouts: it runs once per deployment, right after
 * the cluster became available, so it may wait longer for a primary than a
 * counter request.
 */
export const SETUP_TIMEOUTS: DocDbTimeouts = {
  serverSelectionTimeoutMs: 30_000, connectTimeoutMs: 10_000, socketTimeoutMs: 30_000, operationTimeoutMs: 120_000,
};

const NAMESPACE_EXISTS = 48;

/** What the setup step reports (custom resource `Data`). */
export interface CounterCollectionInfo {
  [key: string]: string;
  readonly database: string;
  readonly collection: string;
  /** Name of the unique index on the counter id. */
  readonly idIndex: string;
  /** The collection of key records (exactly-once changes). */
  readonly keysCollection: string;
  /** Name of the TTL index that deletes expired key records. */
  readonly keyExpiryIndex: string;
}

/** Creates a collection unless it exists (DocumentDB creates a database with its first collection). */
async function ensureCollection(client: MongoClient, database: string, collection: string): Promise<void> {
  try {
    await client.db(database).createCollection(collection);
  } catch (err) {
    if (!(err instanceof MongoServerError && err.code === NAMESPACE_EXISTS)) throw err;
  }
}

/**
 * Creates the database, the counters collection and the keys collection,
 * checks the unique index on the counter id and creates the TTL index on
 * the key records' expiry. Idempotent: existing collections are kept, with
 * their documents, and an identical index is left as it is.
 *
 * The counter id is the `_id`, whose unique index MongoDB and DocumentDB
 * create with every collection and never let anyone drop, so the counters
 * need no further index: the setup verifies it is there. The same holds for
 * the key records (the key is their `_id`). Both collections are created
 * here, once: the counter path never performs DDL, and DocumentDB cannot
 * create a collection inside a transaction (nor use a missing one), which
 * the keyed path runs in.
 *
 * The TTL index (`expireAfterSeconds: 0` on `expiresAt`) only reclaims
 * storage, some time after a record expired: DocumentDB does not promise
 * when. The store itself treats a record past `expiresAt` as absent.
 */
export async function ensureCounterCollection(client: MongoClient, database: string, collection: string): Promise<CounterCollectionInfo> {
  const db = client.db(database);
  const keysCollection = docdbKeysCollection(collection);
  await ensureCollection(client, database, collection);
  await ensureCollection(client, database, keysCollection);
  const indexes = await db.collection(collection).listIndexes().toArray();
  const idIndex = indexes.find((i) => Object.keys(i.key ?? {}).length === 1 && i.key?.[DOCDB_FIELDS.ID] === 1);
  if (!idIndex) throw new Error(`${database}.${collection} has no index on ${DOCDB_FIELDS.ID}`);
  const keyExpiryIndex = await db.collection(keysCollection).createIndex(
    { [DOCDB_KEY_FIELDS.EXPIRES_AT]: 1 },
    { name: DOCDB_KEY_EXPIRY_INDEX, expireAfterSeconds: 0 },
  );
  return { database, collection, idIndex: String(idIndex.name), keysCollection, keyExpiryIndex };
}

/** DocumentDB and MongoDB keep users in `admin`. */
const USER_DATABASE = 'admin';
/** "User already exists" (MongoDB 4.4+: 51003; older servers: DuplicateKey). */
const USER_EXISTS = new Set([51003, 11000]);

/**
 * Creates the application user the counter function logs in as, with
 * `readWrite` on the counter database only, or, if it exists, sets its
 * password and roles to these. Idempotent: run on every Create and Update,
 * so a changed secret or database name reaches the cluster. The password is
 * sent only inside the command, over the cluster's TLS connection.
 */
export async function ensureAppUser(adminClient: MongoClient, user: DocDbCredentials, database: string): Promise<'created' | 'updated'> {
  const admin = adminClient.db(USER_DATABASE);
  const roles = [{ role: 'readWrite', db: database }];
  const existing = await admin.command({ usersInfo: { user: user.username, db: USER_DATABASE } });
  if (!(existing.users as unknown[] | undefined)?.length) {
    try {
      await admin.command({ createUser: user.username, pwd: user.password, roles });
      return 'created';
    } catch (err) {
      // Created in between (a concurrent deployment): fall through to the update.
      if (!(err instanceof MongoServerError && USER_EXISTS.has(Number(err.code)))) throw err;
    }
  }
  await admin.command({ updateUser: user.username, pwd: user.password, roles });
  return 'updated';
}

/** The database and collection a setup event names, else the configuration's. */
function target(config: DocDbConfig, properties: Record<string, unknown>): { database: string; collection: string } {
  const pick = (name: string, fallback: string) => (typeof properties[name] === 'string' && properties[name] !== '' ? properties[name] as string : fallback);
  return {
    database: pick(DOCDB_SETUP_PROPERTIES.DATABASE, config.database),
    collection: pick(DOCDB_SETUP_PROPERTIES.COLLECTION, config.collection),
  };
}

/**
 * The setup custom resource: creates the counters and keys collections
 * (checks the `_id` index, creates the keys' TTL index), then, when the
 * construct created an application user's secret, that user. Logs in as the master user (`DOCDB_SECRET_ARN`): only
 * this function may read that secret.
 */
export function docdbSetup(config: DocDbConfig): SetupHandlerOptions {
  return {
    physicalId: (properties) => {
      const { database, collection } = target(config, properties);
      return `docdb:${database}/${collection}`;
    },
    setup: async (properties) => {
      const { database, collection } = target(config, properties);
      const client = await createDocDbClient(config);
      try {
        const info = await ensureCounterCollection(client, database, collection);
        if (!config.appSecretArn) return info;
        // The counter function's own user: readWrite on this database, nothing else.
        const app = readCredentials(await readJsonSecret(config.appSecretArn));
        await ensureAppUser(client, app, database);
        return { ...info, appUser: app.username };
      } catch (err) {
        // The Provider fails the deployment with this message: keep the driver's words.
        throw new Error(`DocumentDB setup of ${database}.${collection} failed: ${(err as Error).name}: ${(err as Error).message}`, { cause: err });
      } finally {
        await client.close();
      }
    },
  };
}
