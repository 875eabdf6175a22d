import { MongoClient } from 'mongodb';
import { Engine } from './engine';
import { MongoWireServer } from './mongo-wire-server';

const DEFAULT_URI = 'mongodb://127.0.0.1:27017/?directConnection=true';

/** A MongoDB-wire engine; `server` is set when it is our in-process test server. */
export interface MongoEngine extends Engine {
  readonly server?: MongoWireServer;
}

/** True when a MongoDB-wire server answers `ping` at `uri` within about a second. */
export async function answersMongoPing(uri: string): Promise<boolean> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 700, connectTimeoutMS: 500, socketTimeoutMS: 1000, monitorCommands: false });
  try {
    await client.db('admin').command({ ping: 1 });
    return true;
  } catch {
    return false;
  } finally {
    await client.close().catch(() => undefined);
  }
}

/**
 * A session transaction left open by a client that can no longer reach the
 * server (its replies lost, its container killed) holds its locks until the
 * server ends it: DocumentDB after one minute. The local engine ends it
 * after this long, so a test that cuts a transaction mid-flight and retries
 * its key or counter finishes in seconds. Longer than any store call.
 */
export const LOCAL_TRANSACTION_LIFETIME_MS = 8_000;

/** Starts our in-process MongoDB-wire test server (bson + mingo, unique indexes and transactions). */
export async function startMongoWireServer(
  options: { username?: string; password?: string; transactionLifetimeMs?: number } = {},
): Promise<MongoEngine> {
  const server = await MongoWireServer.start({ host: '127.0.0.1', transactionLifetimeMs: LOCAL_TRANSACTION_LIFETIME_MS, ...options });
  return { name: 'MongoDB-wire test server', origin: 'started', url: server.uri, server, stop: () => server.stop() };
}

/**
 * `MONGODB_URI` (a real `mongod`, a DocumentDB cluster through a tunnel, …)
 * → a server already answering on 127.0.0.1:27017 → our in-process server.
 * The last step always works: it needs nothing installed.
 */
export async function acquireMongo(): Promise<MongoEngine> {
  const fromEnv = process.env.MONGODB_URI;
  if (fromEnv) return { name: 'MongoDB', origin: 'env', url: fromEnv, stop: async () => undefined };
  if (await answersMongoPing(DEFAULT_URI)) return { name: 'MongoDB', origin: 'default-port', url: DEFAULT_URI, stop: async () => undefined };
  return startMongoWireServer();
}
