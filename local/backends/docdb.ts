import { MongoClient } from 'mongodb';
import { BackendFixture } from './fixture';
import { DOCDB_BUNDLES, DOCDB_DEFAULTS, DOCDB_ENV } from '../../src/backends/docdb/docdb-env';
import { createDocDbClient } from '../../src/backends/docdb/runtime/docdb-client';
import { readDocDbConfig } from '../../src/backends/docdb/runtime/docdb-config';
import { ensureCounterCollection } from '../../src/backends/docdb/runtime/docdb-setup';
import { counterIdOf } from '../../src/backends/docdb/runtime/docdb-shards';
import { Engine } from '../engines/engine';
import { engineAddress, throughProxy } from '../engines/fault-proxy';
import { acquireMongo } from '../engines/mongo';
import { startMongoCommandProxy } from '../engines/mongo-command-proxy';

/**
 * The fixture's own connections (preparing a namespace, listing its keys)
 * wait as long as the setup function would: they run while other engines
 * start (DynamoDB Local's JVM) on a busy machine, and the in-process wire
 * server shares their event loop. The counter's 2 s bounds are for requests.
 */
const FIXTURE_TIMEOUTS = { serverSelectionTimeoutMs: 20_000, connectTimeoutMs: 10_000, socketTimeoutMs: 20_000, operationTimeoutMs: 60_000 };

/**
 * The handler environment for a namespace (one database per namespace),
 * without running the setup step: tests use it to show what a counter does
 * before setup. The connection string governs TLS and topology locally.
 */
export function docdbEnv(engine: Engine, namespace: string): Record<string, string> {
  return {
    [DOCDB_ENV.URI]: engine.url,
    [DOCDB_ENV.DATABASE]: namespace,
    [DOCDB_ENV.COLLECTION]: DOCDB_DEFAULTS.collection,
  };
}

/**
 * DocumentDB on a MongoDB-wire engine: a database per namespace, prepared by
 * the real setup logic (the counters collection, the keys collection and its
 * TTL index). Key records live in their own collection, so `keys` lists
 * counter ids only (a sharded counter's slots as its id); `dispose` drops the database, key records included.
 */
export const docdbFixture: BackendFixture = {
  backend: 'docdb',
  entry: DOCDB_BUNDLES.counter,
  acquire: acquireMongo,
  async prepare(engine, namespace) {
    const env = docdbEnv(engine, namespace);
    const config = readDocDbConfig(env, FIXTURE_TIMEOUTS);
    const client = await createDocDbClient(config);
    try {
      await ensureCounterCollection(client, config.database, config.collection);
    } finally {
      await client.close();
    }
    return env;
  },
  async dispose(engine, namespace) {
    const client = await createDocDbClient(readDocDbConfig(docdbEnv(engine, namespace), FIXTURE_TIMEOUTS));
    try {
      await client.db(namespace).dropDatabase();
    } finally {
      await client.close();
    }
  },
  async keys(engine, namespace) {
    const env = docdbEnv(engine, namespace);
    const client = await createDocDbClient(readDocDbConfig(env, FIXTURE_TIMEOUTS));
    try {
      const docs = await client.db(namespace).collection<{ _id: string }>(env[DOCDB_ENV.COLLECTION]).find({}, { projection: { _id: 1 } }).toArray();
      // A sharded counter's slot documents (`<id>\u001f<slot>`) are listed as their id, once.
      return [...new Set(docs.map((d) => counterIdOf(String(d._id))))];
    } finally {
      await client.close();
    }
  },
  async bareClient(_engine, env) {
    // The same driver options as the handler (majority, primary, no retryable writes).
    const client: MongoClient = await createDocDbClient(readDocDbConfig(env));
    const counters = client.db(env[DOCDB_ENV.DATABASE]).collection<{ _id: string; counter: number }>(env[DOCDB_ENV.COLLECTION]);
    return {
      async increment(id: string) {
        const doc = await counters.findOneAndUpdate({ _id: id }, { $inc: { counter: 1 } }, { upsert: true, returnDocument: 'after' });
        return Number(doc?.counter);
      },
      close: () => client.close(),
    };
  },
  /**
   * Commands counted at a proxy in front of the engine (`mongo-command-proxy.ts`):
   * every command a change sends, transaction commands included; `hello`,
   * `isMaster` and `ping` (monitoring heartbeats, the init-phase ping) are
   * not counted.
   */
  async callCounter(engine, env) {
    const address = engineAddress(engine.url);
    if (!address) throw new Error(`docdb: no single host:port in ${engine.url} to put a counting proxy in front of`);
    const proxy = await startMongoCommandProxy(address);
    return {
      env: throughProxy(env, address.address, proxy.address),
      count: () => proxy.commands().length,
      commands: () => proxy.commands(),
      reset: () => proxy.reset(),
      close: () => proxy.close(),
    };
  },
  serverPort(engine) {
    try {
      const port = new URL(engine.url).port;
      return port ? Number(port) : undefined;
    } catch {
      return undefined; // several hosts in one string: no single port to count
    }
  },
};
