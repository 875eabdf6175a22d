import { createDocDbClient, readCredentials, readDocDbConfig } from './docdb-client';
import { ensureCounterCollection } from './docdb-schema';
import { ensureAppUser } from './docdb-users';
import { createSetupHandler } from '../../../runtime/custom-resource';
import { readJsonSecret } from '../../../runtime/secrets';

/** Custom resource properties set by `DocDbCounter` (they also make a rename an Update). */
export const SETUP_PROPERTIES = { DATABASE: 'Database', COLLECTION: 'Collection' } as const;

// The setup runs once per deployment, right after the cluster became
// available: it may wait longer for a primary than a counter request.
const config = readDocDbConfig(process.env, {
  serverSelectionTimeoutMs: 30_000, connectTimeoutMs: 10_000, socketTimeoutMs: 30_000, operationTimeoutMs: 120_000,
});

function target(properties: Record<string, unknown>): { database: string; collection: string } {
  const pick = (name: string, fallback: string) => (typeof properties[name] === 'string' && properties[name] !== '' ? properties[name] as string : fallback);
  return { database: pick(SETUP_PROPERTIES.DATABASE, config.database), collection: pick(SETUP_PROPERTIES.COLLECTION, config.collection) };
}

export const handler = createSetupHandler({
  physicalId: (properties) => {
    const { database, collection } = target(properties);
    return `docdb:${database}/${collection}`;
  },
  setup: async (properties) => {
    const { database, collection } = target(properties);
    // Logs in as the master user (DOCDB_SECRET_ARN): only this function may read that secret.
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
});
