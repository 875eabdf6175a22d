/**
 * Sharded counters on DocumentDB (docs/docdb.md, "Sharded counters") through
 * the bundled handler on the local MongoDB-wire server: the shared contract
 * (test/kit/shards-contract.ts) with shards 1 and 8, both modes; then what
 * the counters collection holds (slot documents, the escrow invariant, the
 * width, key records), `shards` lowered to 1 on a live counter, and the
 * commands a sharded change and read send (counted by the fixture's proxy).
 */
import { MongoClient } from 'mongodb';
import { docdbEnv } from '../../local/backends/docdb';
import { CallCounter, uniqueNamespace } from '../../local/backends/fixture';
import { MongoWireServer } from '../../local/engines/mongo-wire-server';
import { loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { DOCDB_DEFAULTS, docdbKeysCollection } from '../../src/backends/docdb/docdb-env';
import { createDocDbClient } from '../../src/backends/docdb/runtime/docdb-client';
import { readDocDbConfig } from '../../src/backends/docdb/runtime/docdb-config';
import { ensureCounterCollection } from '../../src/backends/docdb/runtime/docdb-setup';
import { call, useBackend } from '../kit/conformance';
import { describeShardsContract, shardsEnv } from '../kit/shards-contract';

const ctx = useBackend('docdb');
describeShardsContract('docdb', ctx);

const COLLECTION = DOCDB_DEFAULTS.collection;
const KEYS = docdbKeysCollection(COLLECTION);
const slot = (id: string, i: number) => (i === 0 ? id : `${id}\u001f${i}`);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** A stored document as the tests inspect it: string ids, any fields. */
type SlotDocument = { _id: string } & Record<string, any>;

let raw: MongoClient | undefined;
afterAll(async () => {
  await raw?.close();
});

/** A fresh namespace, and a plain client on its database (the fixture's driver options). */
async function namespaceWithClient(prefix: string) {
  const namespace = uniqueNamespace(prefix);
  const env = await ctx().prepare(namespace);
  raw ??= await createDocDbClient(readDocDbConfig(docdbEnv(ctx().engine, namespace)));
  const db = raw.db(namespace);
  return { namespace, env, counters: db.collection<SlotDocument>(COLLECTION), keys: db.collection<SlotDocument>(KEYS) };
}

/** Containers loaded through the fixture's command-counting proxy. */
type Counted = { counter: CallCounter & { commands(): string[] }; handlers: ProxyHandler[] };
async function counted(env: Record<string, string>, mode: Parameters<typeof loadCounterContainers>[2], n = 1): Promise<Counted> {
  const counter = await ctx().fixture.callCounter!(ctx().engine, env) as CallCounter & { commands(): string[] };
  return { counter, handlers: loadCounterContainers(ctx().fixture.entry, counter.env, mode, n) };
}

describe('docdb sharded counters: what the collection holds', () => {
  test('shards 1: the documents are today\'s {_id, counter}, nothing else (no slot, no headroom, no width)', async () => {
    const { namespace, counters } = await namespaceWithClient('t_docdb_layout');
    const [unconditional] = await ctx().containers({ conditional: false, env: shardsEnv(1) }, 1, namespace);
    const [conditional] = await ctx().containers({ conditional: true, maximum: 5, env: shardsEnv(1) }, 1, namespace);
    for (let i = 0; i < 3; i++) expect((await call(unconditional, 'POST', 'docdb', 'u')).body.counter).toBe(i + 1);
    for (let i = 0; i < 6; i++) await call(conditional, 'POST', 'docdb', 'c');
    expect(await call(conditional, 'POST', 'docdb', 'c', { by: -6 })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED' } });
    expect(await counters.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'c', counter: 5 }, { _id: 'u', counter: 3 }]);
  });

  test('shards 8, conditional (maximum 100): slots id, id␟1…id␟7; every slot counter ≥ 0, headroom ≥ 0; Σ(counter + headroom) ≤ 100; width 8; keys() lists the id once', async () => {
    const { namespace, counters } = await namespaceWithClient('t_docdb_layout');
    const handlers = await ctx().containers({ conditional: true, maximum: 100, env: shardsEnv(8) }, 4, namespace);
    const answers = await Promise.all(Array.from({ length: 160 }, (_, i) => call(handlers[i % 4], 'POST', 'docdb', 'x', { by: i % 5 === 4 ? -1 : 1 })));
    const accepted = sum(answers.filter((a) => a.status === 200).map((a) => a.body.by));
    const docs = new Map((await counters.find({}).toArray()).map((d) => [d._id, d]));
    expect([...docs.keys()].sort()).toEqual(Array.from({ length: 8 }, (_, i) => slot('x', i)).sort());
    let total = 0;
    let shares = 0;
    for (let i = 0; i < 8; i++) {
      const doc = docs.get(slot('x', i))!;
      expect(doc.counter).toBeGreaterThanOrEqual(0);
      expect(doc.headroom).toBeGreaterThanOrEqual(0);
      if (i > 0) expect(doc.width).toBeUndefined();
      total += doc.counter;
      shares += doc.counter + doc.headroom;
    }
    expect(shares).toBeLessThanOrEqual(100);
    expect(total).toBe(accepted);
    expect(docs.get('x')!.width).toBe(8);
    expect((await call(handlers[0], 'GET', 'docdb', 'x')).body).toEqual({ id: 'x', counter: total, backend: 'docdb', shards: 8 });
    expect(await ctx().fixture.keys(ctx().engine, namespace)).toEqual(['x']);
  });

  test('shards 4, unconditional: slot documents carry only counter (no headroom), width 4 on slot 0; a keyed change records its slot, not a total, and replays it; 422 on reuse', async () => {
    const { namespace, counters, keys } = await namespaceWithClient('t_docdb_layout');
    const [handler] = await ctx().containers({ conditional: false, env: shardsEnv(4) }, 1, namespace);
    for (let i = 0; i < 40; i++) expect((await call(handler, 'POST', 'docdb', 'laid out')).status).toBe(200);
    const keyed = await call(handler, 'POST', 'docdb', 'laid out', { by: 5, key: 'rec' });
    expect(keyed).toMatchObject({ status: 200, body: { shards: 4, by: 5 }, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await call(handler, 'POST', 'docdb', 'laid out', { by: 5, key: 'rec' })).toMatchObject({ status: 200, body: { shards: 4 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(handler, 'POST', 'docdb', 'laid out', { by: 6, key: 'rec' })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    const docs = await counters.find({}).toArray();
    expect(docs.map((d) => d._id).sort()).toEqual([0, 1, 2, 3].map((i) => slot('laid out', i)).sort());
    expect(docs.every((d) => d.headroom === undefined)).toBe(true);
    expect(sum(docs.map((d) => d.counter))).toBe(45);
    expect(docs.find((d) => d._id === 'laid out')!.width).toBe(4);
    const record = await keys.findOne({ _id: 'rec' });
    expect(record).toMatchObject({ id: 'laid out', by: 5, shard: expect.any(Number) });
    expect(record!.counter).toBeUndefined();
    expect((await call(handler, 'GET', 'docdb', 'laid out')).body.counter).toBe(45);
  });
});

describe('docdb sharded counters: shards lowered to 1 on a live counter', () => {
  test('unsharded containers on an id widened by another: GET and changes count every slot; answers are sharded ones (shards 1, no counter); the bound is on the total', async () => {
    const { namespace, counters } = await namespaceWithClient('t_docdb_down');
    const [wide] = await ctx().containers({ conditional: false, env: shardsEnv(8) }, 1, namespace);
    const [narrow] = await ctx().containers({ conditional: false }, 1, namespace);
    const [narrowReader] = await ctx().containers({ conditional: false }, 1, namespace);
    const [narrowCapped] = await ctx().containers({ conditional: true, maximum: 30 }, 1, namespace);
    const [narrowKeyed] = await ctx().containers({ conditional: false }, 1, namespace);
    expect((await call(narrow, 'POST', 'docdb', 'grown')).body).toMatchObject({ counter: 1 });
    for (let i = 0; i < 27; i++) await call(wide, 'POST', 'docdb', 'grown');
    expect(await call(narrowReader, 'GET', 'docdb', 'grown')).toMatchObject({ body: { counter: 28 } });
    expect((await counters.findOne({ _id: 'grown' }))!.counter).toBeLessThan(28);
    const plain = await call(narrow, 'POST', 'docdb', 'grown');
    expect(plain.body).toEqual({ id: 'grown', shards: 1, by: 1, backend: 'docdb', useConditionalWrites: false });
    const keyed = await call(narrowKeyed, 'POST', 'docdb', 'grown', { key: 'after-down' });
    expect(keyed).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await call(narrowKeyed, 'POST', 'docdb', 'grown', { key: 'after-down' })).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
    // 30 now: the total is at the bound, whatever slot 0 holds.
    expect(await call(narrowCapped, 'POST', 'docdb', 'grown')).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 30 } });
    expect(await call(narrowCapped, 'POST', 'docdb', 'grown', { by: -31 })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED', counter: 30 } });
    // A decrement larger than slot 0 holds takes it from the other slots (the rebalance).
    expect(await call(narrowCapped, 'POST', 'docdb', 'grown', { by: -29 })).toMatchObject({ status: 200, body: { shards: 1 } });
    expect(await call(wide, 'GET', 'docdb', 'grown')).toMatchObject({ body: { counter: 1, shards: 8 } });
    expect(await call(narrowReader, 'GET', 'docdb', 'grown')).toMatchObject({ body: { counter: 1 } });
    expect(await ctx().fixture.keys(ctx().engine, namespace)).toEqual(['grown']);
  });

  test('8 → 2, conditional (maximum 100): a rebalance by a 2-shard container leaves slots 2…7 their values and no headroom; slots 0 and 1 hold all of it', async () => {
    const { namespace, counters } = await namespaceWithClient('t_docdb_down');
    const [wide] = await ctx().containers({ conditional: true, maximum: 100, env: shardsEnv(8) }, 1, namespace);
    const [narrow] = await ctx().containers({ conditional: true, maximum: 100, env: shardsEnv(2) }, 1, namespace);
    for (let i = 0; i < 40; i++) expect((await call(wide, 'POST', 'docdb', 'narrowed')).status).toBe(200);
    // No slot holds 30 on its own: the fast path refuses it, and the rebalance takes it from the slots holding most.
    expect(await call(narrow, 'POST', 'docdb', 'narrowed', { by: -30 })).toMatchObject({ status: 200, body: { shards: 2 } });
    const docs = new Map((await counters.find({}).toArray()).map((d) => [d._id, d]));
    const slots = Array.from({ length: 8 }, (_, i) => docs.get(slot('narrowed', i)) ?? { counter: 0, headroom: 0 });
    expect(sum(slots.map((d) => d.counter))).toBe(10);
    expect(slots.slice(2).map((d) => d.headroom ?? 0)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(slots[0].headroom + slots[1].headroom).toBe(90);
    expect(docs.get('narrowed')!.width).toBe(8);
    expect((await call(wide, 'GET', 'docdb', 'narrowed')).body.counter).toBe(10);
  });

  test('conditional (maximum 300) under load: 8-shard then 1-shard containers, keyed and not → exactly 300 accepted, each key once, every width reads 300', async () => {
    const { namespace } = await namespaceWithClient('t_docdb_down');
    const wide = await ctx().containers({ conditional: true, maximum: 300, env: shardsEnv(8) }, 3, namespace);
    const narrow = await ctx().containers({ conditional: true, maximum: 300 }, 3, namespace);
    let applied = 0;
    const statuses: Record<number, number> = {};
    const load = (handlers: ProxyHandler[], total: number, from: number) => runWorkload({
      total,
      concurrency: 8,
      call: async (i, caller) => {
        // Every other request keyed; each key sent twice, by two different containers.
        const n = from + i;
        const key = n % 2 === 0 ? `k-${Math.floor(n / 4)}` : undefined;
        const answer = await call(handlers[(caller + i) % handlers.length], 'POST', 'docdb', 'down', { key });
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        if (answer.status === 200) {
          expect(answer.body.counter).toBeUndefined();
          if (answer.headers['Idempotent-Replayed'] !== 'true') applied++;
        }
        return { status: answer.status };
      },
    });
    await load(wide, 200, 0);
    await Promise.all([load(wide, 100, 200), load(narrow, 200, 300)]);
    await load(narrow, 100, 500);
    expect(Object.keys(statuses).sort()).toEqual(['200', '409']);
    expect(applied).toBe(300);
    expect((await call(wide[0], 'GET', 'docdb', 'down')).body.counter).toBe(300);
    expect((await call(narrow[0], 'GET', 'docdb', 'down')).body.counter).toBe(300);
  });
});

describe('docdb sharded counters: the commands sent', () => {
  test('unconditional, 8 shards: a change is one update (plus one width raise, once per container); a GET one find of the 8 slot ids; a keyed change one transaction (change, key record, commit)', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_docdb_calls'));
    const { counter, handlers: [handler] } = await counted(env, { conditional: false, env: shardsEnv(8) });
    try {
      expect((await call(handler, 'POST', 'docdb', 'warm')).status).toBe(200);
      counter.reset();
      expect((await call(handler, 'POST', 'docdb', 'n')).status).toBe(200);
      expect(counter.commands()).toEqual([`update:${COLLECTION}`, `update:${COLLECTION}`]);
      counter.reset();
      // Enough that every slot exists (a keyed change's first change of a slot takes one more command, as a new id's does).
      for (let i = 0; i < 99; i++) expect((await call(handler, 'POST', 'docdb', 'n')).status).toBe(200);
      expect(counter.commands()).toEqual(Array(99).fill(`update:${COLLECTION}`));
      counter.reset();
      expect((await call(handler, 'GET', 'docdb', 'n')).body.counter).toBe(100);
      expect(counter.commands()).toEqual([`find:${COLLECTION}`]);
      counter.reset();
      expect((await call(handler, 'POST', 'docdb', 'n', { key: 'k1' })).status).toBe(200);
      expect(counter.commands()).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'commitTransaction']);
      counter.reset();
      expect((await call(handler, 'POST', 'docdb', 'n', { key: 'k1' })).headers['Idempotent-Replayed']).toBe('true');
      expect(counter.commands()).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'abortTransaction']);
    } finally {
      await counter.close();
    }
  });

  test('conditional, 8 shards: a new id takes two refused slot updates, then the rebalance (one transaction: find every slot, one update of 8 statements, commit); a 409 reads every slot and writes nothing', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_docdb_calls'));
    const { counter, handlers: [handler] } = await counted(env, { conditional: true, maximum: 3, env: shardsEnv(8) });
    try {
      expect((await call(handler, 'POST', 'docdb', 'warm')).status).toBe(200);
      counter.reset();
      expect((await call(handler, 'POST', 'docdb', 'm')).status).toBe(200);
      expect(counter.commands()).toEqual([`update:${COLLECTION}`, `update:${COLLECTION}`, `find:${COLLECTION}`, `update:${COLLECTION}`, 'commitTransaction']);
      for (let i = 0; i < 2; i++) expect((await call(handler, 'POST', 'docdb', 'm')).status).toBe(200);
      counter.reset();
      expect(await call(handler, 'POST', 'docdb', 'm')).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 3 } });
      expect(counter.commands()).toEqual([`update:${COLLECTION}`, `update:${COLLECTION}`, `find:${COLLECTION}`, 'abortTransaction']);
      expect((await call(handler, 'GET', 'docdb', 'm')).body.counter).toBe(3);
    } finally {
      await counter.close();
    }
  });

  test('figures: commands per request, conditional (maximum 1000), 8 shards, 1,200 unit increments from 8 callers on 4 containers', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_docdb_calls'));
    const { counter, handlers } = await counted(env, { conditional: true, maximum: 1000, env: shardsEnv(8) }, 4);
    try {
      const statuses: Record<number, number> = {};
      await runWorkload({
        total: 1200,
        concurrency: 8,
        call: async (_i, caller) => {
          const answer = await call(handlers[caller % 4], 'POST', 'docdb', 'f');
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
          return { status: answer.status };
        },
      });
      expect(statuses).toEqual({ 200: 1000, 409: 200 });
      const byCommand: Record<string, number> = {};
      for (const c of counter.commands()) byCommand[c] = (byCommand[c] ?? 0) + 1;
      // eslint-disable-next-line no-console
      console.log(`docdb commands for 1,000 accepted + 200 rejected conditional unit increments at 8 shards: ${JSON.stringify(byCommand)}, `
        + `${(counter.count() / 1200).toFixed(2)} per request`);
      // Rebalances are rounds, not one per change.
      expect(byCommand.commitTransaction ?? 0).toBeLessThan(200);
    } finally {
      await counter.close();
    }
  });
});

describe('docdb sharded counters: engine faults (own MongoWire server with the failCommand fail point)', () => {
  let server: MongoWireServer;
  let admin: MongoClient;
  let dbCount = 0;
  beforeAll(async () => {
    server = await MongoWireServer.start();
    admin = new MongoClient(server.uri);
  });
  afterEach(() => server.failCommand(undefined));
  afterAll(async () => {
    await admin?.close();
    await server?.stop();
  });

  /** A container on a fresh prepared database, and the sum of every slot of an id as stored. */
  const fresh = async (mode: Parameters<typeof loadCounterContainers>[2]) => {
    const database = `sf_${++dbCount}`;
    await ensureCounterCollection(admin, database, COLLECTION);
    const [handler] = loadCounterContainers(ctx().fixture.entry, { DOCDB_URI: server.uri, DOCDB_DATABASE: database }, mode);
    const stored = async (id: string) => sum((await admin.db(database).collection<SlotDocument>(COLLECTION)
      .find({ _id: { $in: Array.from({ length: 8 }, (_, i) => slot(id, i)) } }).toArray()).map((d) => Number(d.counter ?? 0)));
    return { handler, stored };
  };

  test('rebalance: a commit refused with WriteConflict runs the transaction again (200, counted once); a commit whose reply is lost is a 503, never sent twice, applied once', async () => {
    const { handler, stored } = await fresh({ conditional: true, maximum: 10, env: shardsEnv(4) });
    server.failCommand({ failCommands: ['commitTransaction'], errorCode: 112, errorLabels: ['TransientTransactionError'], times: 1 });
    expect(await call(handler, 'POST', 'docdb', 'wc')).toMatchObject({ status: 200, body: { shards: 4 } });
    expect(server.failPoint.hits).toBe(1);
    expect(await stored('wc')).toBe(1);

    // The driver sends the commit once more after the lost reply; DocumentDB (and this server) answer that one 251,
    // which must not be taken for a refusal either.
    server.failCommand({ failCommands: ['commitTransaction'], closeConnection: true, afterRun: true, times: 1 });
    expect(await call(handler, 'POST', 'docdb', 'lost')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    expect(server.failPoint.hits).toBe(1);
    expect(await stored('lost')).toBe(1);
    server.failCommand(undefined);
    expect((await call(handler, 'GET', 'docdb', 'lost')).body.counter).toBe(1);
  });

  test('a transient error on a slot\'s update is a 503 with nothing applied; a refused command is a 500; the next change counts', async () => {
    const { handler, stored } = await fresh({ conditional: false, env: shardsEnv(4) });
    expect((await call(handler, 'POST', 'docdb', 't')).status).toBe(200);
    server.failCommand({ failCommands: ['update'], errorCode: 91, times: 1 });
    expect(await call(handler, 'POST', 'docdb', 't')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    server.failCommand({ failCommands: ['find'], errorCode: 50, times: 1 });
    expect(await call(handler, 'GET', 'docdb', 't')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    server.failCommand({ failCommands: ['update'], errorCode: 2, times: 1 });
    expect(await call(handler, 'POST', 'docdb', 't')).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    expect(await stored('t')).toBe(1);
    expect((await call(handler, 'POST', 'docdb', 't')).status).toBe(200);
    expect((await call(handler, 'GET', 'docdb', 't')).body.counter).toBe(2);
  });
});
