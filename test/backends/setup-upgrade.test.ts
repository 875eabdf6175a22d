/**
 * Issue 19, item 2, as an upgrade on the real local engines: a store set up
 * by the previous schema (built here, as the earlier release left it: the
 * counters alone, no Idempotency-Key records) keeps serving unkeyed changes,
 * answers a keyed change 503 (never 500) until the setup has run, and is
 * migrated by the new setup, run as CloudFormation runs it on a library
 * upgrade (an `Update` whose `Schema` property changed), with its counters
 * intact; keyed changes then apply once and replay.
 */
import { MongoClient } from 'mongodb';
import { createConnection, RowDataPacket } from 'mysql2/promise';
import { docdbEnv } from '../../local/backends/docdb';
import { uniqueNamespace } from '../../local/backends/fixture';
import { tidbEnv } from '../../local/backends/tidb';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { DOCDB_BUNDLES, DOCDB_DEFAULTS, DOCDB_SCHEMA_VERSION, DOCDB_SETUP_PROPERTIES } from '../../src/backends/docdb/docdb-env';
import { TIDB_BUNDLES, TIDB_DEFAULTS, TIDB_SCHEMA_VERSION, TIDB_SETUP_PROPERTIES } from '../../src/backends/tidb/tidb-env';
import { call, CONFORMANCE_BUDGETS, useBackend } from '../kit/conformance';
import { shardsEnv } from '../kit/shards-contract';

type SetupHandler = (event: unknown) => Promise<{ PhysicalResourceId: string; Data?: Record<string, string> }>;

/** The upgrade's Update event: same resource, the schema revision moved on from the previous one. */
function upgradeEvent(physicalId: string, properties: Record<string, string>, schemaKey: string, schema: string) {
  const previous = String(Number(schema) - 1);
  return {
    RequestType: 'Update',
    PhysicalResourceId: physicalId,
    ResourceProperties: { ...properties, [schemaKey]: schema },
    OldResourceProperties: { ...properties, [schemaKey]: previous },
  };
}

/** What every upgrade must show, once the previous schema's store exists with counter `kept` at 7. */
async function provesUpgrade(backend: 'docdb' | 'tidb', counter: ProxyHandler, upgrade: () => Promise<unknown>): Promise<void> {
  // Before: unkeyed changes work on the old store; a keyed one is a 503, nothing applied.
  expect(await call(counter, 'POST', backend, 'kept')).toMatchObject({ status: 200, body: { counter: 8 } });
  const early = await call(counter, 'POST', backend, 'kept', { key: 'upgrade-1' });
  expect(early).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
  expect(early.headers['Retry-After']).toBeDefined();
  expect(await call(counter, 'GET', backend, 'kept')).toMatchObject({ status: 200, body: { counter: 8 } });

  await upgrade();

  // After: the counter is intact, the same key now applies once, then replays.
  expect(await call(counter, 'GET', backend, 'kept')).toMatchObject({ status: 200, body: { counter: 8 } });
  expect(await call(counter, 'POST', backend, 'kept', { key: 'upgrade-1' })).toMatchObject({ status: 200, body: { counter: 9 }, headers: { 'Idempotent-Replayed': 'false' } });
  expect(await call(counter, 'POST', backend, 'kept', { key: 'upgrade-1' })).toMatchObject({ status: 200, body: { counter: 9 }, headers: { 'Idempotent-Replayed': 'true' } });
  expect(await call(counter, 'POST', backend, 'kept', { by: 2 })).toMatchObject({ status: 200, body: { counter: 11 } });
}

describe('docdb: a store of the previous schema (no key records collection) upgraded by the setup', () => {
  const ctx = useBackend('docdb');
  const namespace = uniqueNamespace('t_docdb_upgrade');
  let client: MongoClient | undefined;
  afterAll(async () => {
    await client?.db(namespace).dropDatabase().catch(() => undefined);
    await client?.close();
  });

  test('keyed 503 before, counters intact after, keyed changes apply once', async () => {
    const env = { ...docdbEnv(ctx().engine, namespace), ...CONFORMANCE_BUDGETS.docdb };
    client = new MongoClient(ctx().engine.url);
    await client.db(namespace).createCollection(DOCDB_DEFAULTS.collection);
    await client.db(namespace).collection<{ _id: string; counter: number }>(DOCDB_DEFAULTS.collection).insertOne({ _id: 'kept', counter: 7 });
    const counter = loadBundledHandler(DOCDB_BUNDLES.counter, { ...env, USE_CONDITIONAL_WRITES: 'false', ATOMIC_COUNTER_LOG: 'off' });
    const setup = loadBundledHandler(DOCDB_BUNDLES.setup!, env) as unknown as SetupHandler;
    await provesUpgrade('docdb', counter, async () => {
      const properties = { [DOCDB_SETUP_PROPERTIES.DATABASE]: namespace, [DOCDB_SETUP_PROPERTIES.COLLECTION]: DOCDB_DEFAULTS.collection };
      const out = await setup(upgradeEvent(`docdb:${namespace}/${DOCDB_DEFAULTS.collection}`, properties, DOCDB_SETUP_PROPERTIES.SCHEMA, DOCDB_SCHEMA_VERSION));
      expect(out.PhysicalResourceId).toBe(`docdb:${namespace}/${DOCDB_DEFAULTS.collection}`);
    });
    const collections = await client.db(namespace).listCollections({}, { nameOnly: true }).toArray();
    expect(collections.map((c) => c.name).sort()).toEqual([DOCDB_DEFAULTS.collection, `${DOCDB_DEFAULTS.collection}_keys`]);
  });
});

describe('tidb: a store of the previous schema (counters table only, value UNSIGNED) upgraded by the setup', () => {
  const ctx = useBackend('tidb');
  const database = uniqueNamespace('t_tidb_upgrade');
  afterAll(async () => {
    const c = await createConnection(mysqlConnectionOptions(ctx().engine.url)).catch(() => undefined);
    await c?.query(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => undefined);
    await c?.end();
  });

  test('keyed 503 before, counters intact after, keyed changes apply once', async () => {
    const env = { ...tidbEnv(ctx().engine, database), ...CONFORMANCE_BUDGETS.tidb };
    const c = await createConnection(mysqlConnectionOptions(ctx().engine.url));
    try {
      await c.query(`CREATE DATABASE \`${database}\``);
      await c.query(`CREATE TABLE \`${database}\`.\`${TIDB_DEFAULTS.table}\` (id VARBINARY(255) PRIMARY KEY, value BIGINT UNSIGNED NOT NULL)`);
      await c.query(`INSERT INTO \`${database}\`.\`${TIDB_DEFAULTS.table}\` (id, value) VALUES ('kept', 7)`);
    } finally {
      await c.end();
    }
    const counter = loadBundledHandler(TIDB_BUNDLES.counter, { ...env, USE_CONDITIONAL_WRITES: 'false', ATOMIC_COUNTER_LOG: 'off' });
    const setup = loadBundledHandler(TIDB_BUNDLES.setup!, env) as unknown as SetupHandler;
    await provesUpgrade('tidb', counter, async () => {
      const properties = { [TIDB_SETUP_PROPERTIES.DATABASE]: database, [TIDB_SETUP_PROPERTIES.TABLE]: TIDB_DEFAULTS.table };
      const out = await setup(upgradeEvent(`tidb:${database}/${TIDB_DEFAULTS.table}`, properties, TIDB_SETUP_PROPERTIES.SCHEMA, TIDB_SCHEMA_VERSION));
      expect(out.Data).toMatchObject({ Database: database, Table: TIDB_DEFAULTS.table, KeysTable: `${TIDB_DEFAULTS.table}_keys` });
    });
    // The migrated value column takes what an unsigned one could not.
    expect(await call(counter, 'POST', 'tidb', 'kept', { by: -20 })).toMatchObject({ status: 200, body: { counter: -9 } });
  });
});

describe('tidb: a store of schema 2 (no sharding columns, id VARBINARY(255)) upgraded to schema 3 by the setup', () => {
  const ctx = useBackend('tidb');
  const database = uniqueNamespace('t_tidb_upgrade3');
  afterAll(async () => {
    const c = await createConnection(mysqlConnectionOptions(ctx().engine.url)).catch(() => undefined);
    await c?.query(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => undefined);
    await c?.end();
  });

  test('unsharded changes and reads keep working before, a sharded change is a 503; after: counters and key records intact, today\'s answers, sharding works', async () => {
    const env = { ...tidbEnv(ctx().engine, database), ...CONFORMANCE_BUDGETS.tidb };
    const t = `\`${database}\`.\`${TIDB_DEFAULTS.table}\``;
    const k = `\`${database}\`.\`${TIDB_DEFAULTS.table}_keys\``;
    const c = await createConnection(mysqlConnectionOptions(ctx().engine.url));
    try {
      // The tables exactly as the schema-2 setup created them, with a counter and a key record.
      await c.query(`CREATE DATABASE \`${database}\``);
      await c.query(`CREATE TABLE ${t} (id VARBINARY(255) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (id))`);
      await c.query(`CREATE TABLE ${k} (idempotency_key VARBINARY(255) NOT NULL, counter_id VARBINARY(255) NOT NULL, step BIGINT NOT NULL, ` +
        'value BIGINT NOT NULL, expires_at DATETIME(6) NOT NULL, PRIMARY KEY (idempotency_key))');
      await c.query(`INSERT INTO ${t} (id, value) VALUES ('kept', 7)`);
      await c.query(`INSERT INTO ${k} VALUES ('old-key', 'kept', 1, 7, UTC_TIMESTAMP(6) + INTERVAL 1 HOUR)`);
    } finally {
      await c.end();
    }
    const counter = loadBundledHandler(TIDB_BUNDLES.counter, { ...env, USE_CONDITIONAL_WRITES: 'false', ATOMIC_COUNTER_LOG: 'off' });
    // Conditional: every sharded change of a container that does not know the id starts with the rebalance, which reads the new columns.
    const sharded = loadBundledHandler(TIDB_BUNDLES.counter, { ...env, ...shardsEnv(4), USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '1000', ATOMIC_COUNTER_LOG: 'off' });
    const setup = loadBundledHandler(TIDB_BUNDLES.setup!, env) as unknown as SetupHandler;

    // Before: the unsharded paths answer as they did (the unkeyed change and the read without the width check).
    expect(await call(counter, 'POST', 'tidb', 'kept')).toMatchObject({ status: 200, body: { counter: 8 } });
    expect(await call(counter, 'GET', 'tidb', 'kept')).toMatchObject({ status: 200, body: { counter: 8 } });
    expect(await call(counter, 'POST', 'tidb', 'fresh', { by: 3 })).toMatchObject({ status: 200, body: { counter: 3 } });
    // A keyed or sharded change needs the new columns: 503, nothing applied.
    expect(await call(counter, 'POST', 'tidb', 'kept', { key: 'new-key' })).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    expect(await call(sharded, 'POST', 'tidb', 'kept')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });

    const properties = { [TIDB_SETUP_PROPERTIES.DATABASE]: database, [TIDB_SETUP_PROPERTIES.TABLE]: TIDB_DEFAULTS.table };
    const event = upgradeEvent(`tidb:${database}/${TIDB_DEFAULTS.table}`, properties, TIDB_SETUP_PROPERTIES.SCHEMA, TIDB_SCHEMA_VERSION);
    expect(TIDB_SCHEMA_VERSION).toBe('3');
    await setup(event);
    // Idempotent: a second run (a retried deployment) changes nothing.
    await setup(event);

    const c2 = await createConnection(mysqlConnectionOptions(ctx().engine.url));
    try {
      const [rows] = await c2.query<RowDataPacket[]>(`SELECT id, value, headroom, width FROM ${t} ORDER BY id`);
      expect(rows.map((r) => [Buffer.from(r.id).toString('utf8'), Number(r.value), r.headroom, r.width])).toEqual([['fresh', 3, null, null], ['kept', 8, null, null]]);
      const [records] = await c2.query<RowDataPacket[]>(`SELECT value, shard FROM ${k}`);
      expect(records.map((r) => [Number(r.value), r.shard])).toEqual([[7, null]]);
      const [cols] = await c2.query<RowDataPacket[]>(
        'SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?', [database, TIDB_DEFAULTS.table, 'id']);
      expect(cols[0].COLUMN_TYPE).toBe('varbinary(258)');
    } finally {
      await c2.end();
    }
    // After: today's answers, the old key replays its value, a new key applies once.
    expect(await call(counter, 'GET', 'tidb', 'kept')).toMatchObject({ status: 200, body: { counter: 8 } });
    expect(await call(counter, 'POST', 'tidb', 'kept', { key: 'old-key' })).toMatchObject({ status: 200, body: { counter: 7 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(counter, 'POST', 'tidb', 'kept', { key: 'new-key' })).toMatchObject({ status: 200, body: { counter: 9 }, headers: { 'Idempotent-Replayed': 'false' } });
    // And the id can be sharded: 4 shards take 20 more, the unsharded container reads them all.
    for (let i = 0; i < 20; i++) expect(await call(sharded, 'POST', 'tidb', 'kept')).toMatchObject({ status: 200, body: { shards: 4 } });
    expect(await call(counter, 'GET', 'tidb', 'kept')).toMatchObject({ status: 200, body: { counter: 29 } });
    // The longest id (255 bytes) has slot rows too.
    const longest = 'l'.repeat(255);
    for (let i = 0; i < 12; i++) expect((await call(sharded, 'POST', 'tidb', longest)).status).toBe(200);
    expect(await call(sharded, 'GET', 'tidb', longest)).toMatchObject({ status: 200, body: { counter: 12 } });
  });
});
