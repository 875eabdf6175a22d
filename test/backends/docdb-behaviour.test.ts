/**
 * DocumentDB-specific behaviour beyond the shared conformance suite: what a
 * counter does before setup, the setup custom resource, credentials, the
 * duplicate-key retry, round trips and the 503 path. Steps and keys:
 * docdb-steps-keys.test.ts. Real `mongodb` driver
 * over the wire against MONGODB_URI or our in-process MongoDB-wire server.
 */
import { CommandStartedEvent, MongoClient, MongoServerError } from 'mongodb';
import { docdbEnv } from '../../local/backends/docdb';
import { uniqueNamespace } from '../../local/backends/fixture';
import { freePort } from '../../local/engines/engine';
import { startMongoWireServer } from '../../local/engines/mongo';
import { loadBundledHandler } from '../../local/lambda-container';
import { DOCDB_BUNDLES, DOCDB_DEFAULTS, DOCDB_ENV } from '../../src/backends/docdb/docdb-env';
import { connectionFor, createDocDbClient } from '../../src/backends/docdb/runtime/docdb-client';
import { readDocDbConfig } from '../../src/backends/docdb/runtime/docdb-config';
import { DocDbCounterStore, retryDuplicateKeyOnce } from '../../src/backends/docdb/runtime/docdb-counter-store';
import { CredentialsRejectedError, FloorReachedError, LimitReachedError } from '../../src/runtime/errors';
import { call, CONFORMANCE_BUDGETS, hammer, useBackend } from '../kit/conformance';

const SETUP_ENTRY = DOCDB_BUNDLES.setup;
type SetupHandler = (event: unknown) => Promise<{ PhysicalResourceId: string; Data?: Record<string, string> }>;

// Containers loaded here are closed after the file by test/kit/setup.ts.
// They count, so they get the kit's roomy budgets (a slow machine must not turn a 200 into a 503).
function counterContainer(env: Record<string, string>) {
  return loadBundledHandler(DOCDB_BUNDLES.counter, { ...CONFORMANCE_BUDGETS.docdb, ...env });
}

function setupHandler(env: Record<string, string>): SetupHandler {
  return loadBundledHandler(SETUP_ENTRY, env) as unknown as SetupHandler;
}

const duplicateKey = () => new MongoServerError({ ok: 0, code: 11000, errmsg: 'E11000 duplicate key error collection: db.counters index: _id_ dup key' });

describe('docdb against a MongoDB-wire engine', () => {
  const ctx = useBackend('docdb');
  const clients: MongoClient[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  async function rawCollection(namespace: string) {
    const client = new MongoClient(ctx().engine.url);
    clients.push(client);
    return client.db(namespace).collection<{ _id: string; counter: number }>(DOCDB_DEFAULTS.collection);
  }

  test('before setup has run, a conditional counter still never overshoots: 200 up to the maximum, then 409 (the _id index exists from the first write)', async () => {
    const namespace = uniqueNamespace('t_docdb_nosetup');
    const env = { ...docdbEnv(ctx().engine, namespace), USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '20', ATOMIC_COUNTER_LOG: 'off' };
    const handlers = Array.from({ length: 8 }, () => counterContainer(env));
    const result = await hammer(handlers, 'docdb', 'early', 32, 100);
    expect(result.statuses).toEqual({ 200: 20, 409: 80 });
    expect([...result.counters].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect((await call(handlers[0], 'GET', 'docdb', 'early')).body.counter).toBe(20);

    // Setup afterwards finds the implicitly created collection and keeps its counters.
    const out = await setupHandler(docdbEnv(ctx().engine, namespace))({ RequestType: 'Create', ResourceProperties: {} });
    expect(out.Data).toEqual({
      database: namespace, collection: DOCDB_DEFAULTS.collection, idIndex: '_id_', keysCollection: `${DOCDB_DEFAULTS.collection}_keys`, keyExpiryIndex: 'expiresAt_ttl',
    });
    expect((await call(handlers[0], 'GET', 'docdb', 'early')).body.counter).toBe(20);
  });

  test('the setup handler creates the collection with its unique _id index, the keys collection with its TTL index, and is idempotent on Create, Update and Delete', async () => {
    const namespace = uniqueNamespace('t_docdb_setup');
    const setup = setupHandler(docdbEnv(ctx().engine, namespace));
    const properties = { Database: namespace, Collection: 'tallies' };

    const created = await setup({ RequestType: 'Create', ResourceProperties: properties });
    expect(created).toEqual({
      PhysicalResourceId: `docdb:${namespace}/tallies`,
      Data: { database: namespace, collection: 'tallies', idIndex: '_id_', keysCollection: 'tallies_keys', keyExpiryIndex: 'expiresAt_ttl' },
    });
    const client = new MongoClient(ctx().engine.url);
    clients.push(client);
    const collections = await client.db(namespace).listCollections({}, { nameOnly: true }).toArray();
    expect(collections.map((c) => c.name).sort()).toEqual(['tallies', 'tallies_keys']);
    const indexes = await client.db(namespace).collection('tallies').listIndexes().toArray();
    expect(indexes).toEqual(expect.arrayContaining([expect.objectContaining({ name: '_id_', key: { _id: 1 } })]));
    const keyIndexes = await client.db(namespace).collection('tallies_keys').listIndexes().toArray();
    expect(keyIndexes).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'expiresAt_ttl', key: { expiresAt: 1 }, expireAfterSeconds: 0 })]));
    // The index is unique: a second document with the same id is refused.
    await client.db(namespace).collection('tallies').insertOne({ _id: 'x' as any, counter: 5 });
    await expect(client.db(namespace).collection('tallies').insertOne({ _id: 'x' as any, counter: 1 })).rejects.toMatchObject({ code: 11000 });

    // Create again (a replaced resource), Update, Delete: same id, data kept.
    expect(await setup({ RequestType: 'Create', ResourceProperties: properties })).toEqual(created);
    expect(await setup({ RequestType: 'Update', ResourceProperties: properties, OldResourceProperties: properties, PhysicalResourceId: created.PhysicalResourceId })).toEqual(created);
    expect(await setup({ RequestType: 'Delete', ResourceProperties: properties, PhysicalResourceId: created.PhysicalResourceId })).toEqual({ PhysicalResourceId: created.PhysicalResourceId });
    expect(await client.db(namespace).collection('tallies').findOne({ _id: 'x' as any })).toEqual({ _id: 'x', counter: 5 });
  });

  test('round trips: a 200 is one findAndModify; a 409 at the maximum or a refused decrement (no upsert) is two (the write, then a read: out of range, not widened by a sharded writer); nothing written', async () => {
    const namespace = uniqueNamespace('t_docdb_trips');
    const counters = await rawCollection(namespace);
    await counters.insertMany([{ _id: 'full', counter: 7 }, { _id: 'room', counter: 3 }]);
    const sent: string[] = [];
    const client = await createDocDbClient(readDocDbConfig(docdbEnv(ctx().engine, namespace)), { monitorCommands: true });
    client.on('commandStarted', (e: CommandStartedEvent) => sent.push(e.commandName));
    const store = new DocDbCounterStore(client, { database: namespace, collection: DOCDB_DEFAULTS.collection });
    try {
      await store.read('room'); // connect and authenticate before counting
      sent.length = 0;
      await expect(store.apply('room', { by: 1, maximum: 7 })).resolves.toEqual({ counter: 4, replayed: false });
      expect(sent).toEqual(['findAndModify']);
      sent.length = 0;
      const rejection = store.apply('full', { by: 1, maximum: 7 });
      await expect(rejection).rejects.toBeInstanceOf(LimitReachedError);
      await expect(rejection).rejects.toMatchObject({ maxCounterValue: 7 });
      expect(sent).toEqual(['findAndModify', 'find']);
      sent.length = 0;
      // A decrement may never insert: no upsert; "nothing matched" is the 409 once the read shows no width (docs/docdb.md, "Sharded counters").
      await expect(store.apply('room', { by: -5, maximum: 7 })).rejects.toBeInstanceOf(FloorReachedError);
      await expect(store.apply('never', { by: -1, maximum: 7 })).rejects.toBeInstanceOf(FloorReachedError);
      expect(sent).toEqual(['findAndModify', 'find', 'findAndModify', 'find']);
      expect(await counters.findOne({ _id: 'full' })).toEqual({ _id: 'full', counter: 7 });
      expect(await counters.findOne({ _id: 'room' })).toEqual({ _id: 'room', counter: 4 });
      expect(await counters.countDocuments({})).toBe(2);
    } finally {
      await store.close();
    }
  });

  test('the write carries majority write concern and no transaction number (retryWrites=false), and reads go to the primary', async () => {
    const namespace = uniqueNamespace('t_docdb_opts');
    const commands: Record<string, any>[] = [];
    const client = await createDocDbClient(readDocDbConfig(docdbEnv(ctx().engine, namespace)), { monitorCommands: true });
    client.on('commandStarted', (e: CommandStartedEvent) => commands.push(e.command));
    const store = new DocDbCounterStore(client, { database: namespace, collection: DOCDB_DEFAULTS.collection });
    try {
      await store.apply('opts', { by: 3 });
      const write = commands.find((c) => c.findAndModify);
      expect(write).toMatchObject({ upsert: true, new: true, update: { $inc: { counter: 3 } }, writeConcern: { w: 'majority' } });
      expect(write?.txnNumber).toBeUndefined();
      expect(client.readPreference.mode).toBe('primary');
    } finally {
      await store.close();
    }
  });
});

describe('docdb credentials', () => {
  // Characters a generated password may hold that would corrupt a connection string.
  const password = 'p:ss?w#rd%41[x]&y=z';
  let engine: Awaited<ReturnType<typeof startMongoWireServer>>;
  beforeAll(async () => {
    engine = await startMongoWireServer({ username: 'counteradmin', password });
  });
  afterAll(async () => engine?.stop());

  test('go through the driver\'s auth option, never into the URI, and authenticate with a password full of URI-significant characters', async () => {
    const port = Number(new URL(engine.url).port);
    const config = readDocDbConfig({ [DOCDB_ENV.HOST]: '127.0.0.1', [DOCDB_ENV.PORT]: String(port), [DOCDB_ENV.TLS]: 'false', [DOCDB_ENV.DATABASE]: 'auth_db' });
    const { url, options } = connectionFor(config, { username: 'counteradmin', password });
    expect(url).toBe(`mongodb://127.0.0.1:${port}/`);
    expect(options).toMatchObject({ tls: false, directConnection: true, retryWrites: false, authSource: 'admin' });
    const store = new DocDbCounterStore(new MongoClient(url, options), config);
    try {
      expect(await store.apply('auth', { by: 1 })).toEqual({ counter: 1, replayed: false });
      expect(await store.apply('auth', { by: 1 })).toEqual({ counter: 2, replayed: false });
    } finally {
      await store.close();
    }
    const wrong = new DocDbCounterStore(new MongoClient(url, connectionFor(config, { username: 'counteradmin', password: password + 'x' }).options), config);
    try {
      // Code 18 becomes the typed error the pipeline answers by re-reading the secret (rotation).
      const rejected = wrong.apply('auth', { by: 1 });
      await expect(rejected).rejects.toBeInstanceOf(CredentialsRejectedError);
      await expect(rejected).rejects.toMatchObject({ cause: { code: 18 } });
    } finally {
      await wrong.close();
    }
  });
});

// A counter request to a server that is down: the kit's fault contract (test/kit/fault-contract.ts).
describe('docdb when the server is down', () => {
  test('the setup handler fails (so the deployment fails) with the driver\'s message', async () => {
    const port = await freePort();
    const setup = setupHandler({ [DOCDB_ENV.URI]: `mongodb://127.0.0.1:${port}/?directConnection=true`, [DOCDB_ENV.SERVER_SELECTION_TIMEOUT_MS]: '300' });
    await expect(setup({ RequestType: 'Create', ResourceProperties: { Database: 'x', Collection: 'y' } }))
      .rejects.toThrow(/DocumentDB setup of x\.y failed: MongoServerSelectionError: .*ECONNREFUSED/);
  });
});

describe('the duplicate-key decision (the race an engine running each command in one step never produces)', () => {
  const limit = () => new LimitReachedError(10);

  test('a first-increment collision is retried once and its value returned (no 409)', async () => {
    let attempts = 0;
    const value = await retryDuplicateKeyOnce(async () => {
      attempts++;
      if (attempts === 1) throw duplicateKey();
      return 2;
    }, limit);
    expect({ value, attempts }).toEqual({ value: 2, attempts: 2 });
  });

  test('a collision on the retry as well is the rejection the caller names (409, or 400 outside the safe integers)', async () => {
    let attempts = 0;
    const outcome = retryDuplicateKeyOnce(async () => {
      attempts++;
      throw duplicateKey();
    }, limit);
    await expect(outcome).rejects.toBeInstanceOf(LimitReachedError);
    expect(attempts).toBe(2);
  });

  test('other errors are not retried', async () => {
    let attempts = 0;
    await expect(retryDuplicateKeyOnce(async () => {
      attempts++;
      throw new MongoServerError({ ok: 0, code: 2, errmsg: 'BadValue' });
    }, limit)).rejects.toMatchObject({ code: 2 });
    expect(attempts).toBe(1);
  });
});
