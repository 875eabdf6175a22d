/**
 * DocumentDB, steps (`?by=N`) and exactly-once changes (`Idempotency-Key`),
 * beyond the shared contracts: the store against the in-process MongoDB-wire
 * server (real `mongodb` driver, transactions as DocumentDB runs them), with
 * the commands each change sends, the key records it leaves, the contention
 * path across containers, and the races and failures the engine cannot
 * produce on its own injected with the `failCommand` fail point.
 */
import { CommandFailedEvent, CommandStartedEvent, MongoClient } from 'mongodb';
import { MongoWireServer } from '../../local/engines/mongo-wire-server';
import { docdbCallBudgetMs, docdbKeysCollection } from '../../src/backends/docdb/docdb-env';
import { createDocDbClient } from '../../src/backends/docdb/runtime/docdb-client';
import { readDocDbConfig } from '../../src/backends/docdb/runtime/docdb-config';
import { DocDbCounterStore } from '../../src/backends/docdb/runtime/docdb-counter-store';
import { KEYED_MAX_ATTEMPTS } from '../../src/backends/docdb/runtime/docdb-keyed-change';
import { ensureCounterCollection } from '../../src/backends/docdb/runtime/docdb-setup';
import { BackendUnavailableError, FloorReachedError, IdempotencyKeyReusedError, InvalidStepError, LimitReachedError } from '../../src/runtime/errors';
import { ChangeResult, CounterChange } from '../../src/runtime/store';
import { FAULT_SLACK_MS } from '../kit/fault-contract';

const COLLECTION = 'counters';
const KEYS = docdbKeysCollection(COLLECTION);
const DAY = 86_400;

let server: MongoWireServer;
let admin: MongoClient;
let dbCount = 0;
const open: Array<{ close(): Promise<void> }> = [];

beforeAll(async () => {
  server = await MongoWireServer.start();
  admin = new MongoClient(server.uri);
});
afterEach(() => server.failCommand(undefined));
afterAll(async () => {
  await Promise.all(open.map((s) => s.close().catch(() => undefined)));
  await admin?.close();
  await server?.stop();
});

interface Harness {
  readonly store: DocDbCounterStore;
  /** Commands this store sent, in order (`name` or `name:collection`). */
  readonly sent: string[];
  /** The full command documents. */
  readonly commands: Array<Record<string, any>>;
  /** Server error codes this store's commands got. */
  readonly failures: number[];
}

/** A prepared database (the setup's collections and TTL index). */
async function database(): Promise<string> {
  const name = `sk_${++dbCount}`;
  await ensureCounterCollection(admin, name, COLLECTION);
  return name;
}

/** A store as the handler builds it (its own client and pool: one "container"), watching its commands. */
async function container(db: string, env: Record<string, string> = {}): Promise<Harness> {
  const config = readDocDbConfig({ DOCDB_URI: server.uri, DOCDB_DATABASE: db, ...env });
  const client = await createDocDbClient(config, { monitorCommands: true });
  const sent: string[] = [];
  const commands: Array<Record<string, any>> = [];
  const failures: number[] = [];
  client.on('commandStarted', (e: CommandStartedEvent) => {
    const target = e.command[e.commandName];
    sent.push(typeof target === 'string' ? `${e.commandName}:${target}` : e.commandName);
    commands.push(e.command);
  });
  client.on('commandFailed', (e: CommandFailedEvent) => failures.push(Number((e.failure as { code?: number }).code)));
  const store = new DocDbCounterStore(client, { database: db, collection: COLLECTION, operationTimeoutMs: docdbCallBudgetMs(config) });
  open.push(store);
  await store.connect();
  return { store, sent, commands, failures };
}

const keyed = (key: string, by = 1, maximum?: number, retentionSeconds = DAY): CounterChange =>
  ({ by, maximum, idempotency: { key, retentionSeconds } });
const counters = (db: string) => admin.db(db).collection<{ _id: string; counter: number }>(COLLECTION);
const keyRecords = (db: string) => admin.db(db).collection<{ _id: string; id: string; by: number; counter?: number; expiresAt: Date }>(KEYS);
const stored = async (db: string, id: string) => (await counters(db).findOne({ _id: id }))?.counter;

describe('steps without a key: one findAndModify, the bound in its filter', () => {
  test('unconditional: a step that would leave the safe integers is a 400 INVALID_STEP with nothing written; one that lands exactly on the edge applies', async () => {
    const db = await database();
    const { store } = await container(db);
    await counters(db).insertMany([{ _id: 'top', counter: Number.MAX_SAFE_INTEGER - 10 }, { _id: 'bottom', counter: Number.MIN_SAFE_INTEGER + 3 }]);
    expect(await store.apply('top', { by: 10 })).toEqual({ counter: Number.MAX_SAFE_INTEGER, replayed: false });
    await expect(store.apply('top', { by: 1 })).rejects.toBeInstanceOf(InvalidStepError);
    expect(await store.apply('bottom', { by: -3 })).toEqual({ counter: Number.MIN_SAFE_INTEGER, replayed: false });
    await expect(store.apply('bottom', { by: -1_000_000_000 })).rejects.toBeInstanceOf(InvalidStepError);
    expect([await stored(db, 'top'), await stored(db, 'bottom')]).toEqual([Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]);
    // A counter never written takes a decrement (unconditional mode): the upsert inserts 0 + by.
    expect(await store.apply('fresh', { by: -1_000_000_000 })).toEqual({ counter: -1_000_000_000, replayed: false });
  });

  test('conditional: a step above the maximum can never apply, so nothing may be inserted: no upsert, one round trip, 409, no document', async () => {
    const db = await database();
    const h = await container(db);
    h.sent.length = 0;
    h.commands.length = 0;
    await expect(h.store.apply('never', { by: 11, maximum: 10 })).rejects.toBeInstanceOf(LimitReachedError);
    expect(h.sent).toEqual([`findAndModify:${COLLECTION}`]);
    expect(h.commands[0]).toMatchObject({ query: { _id: 'never', counter: { $gte: Number.MIN_SAFE_INTEGER, $lte: -1 } }, update: { $inc: { counter: 11 } } });
    expect(h.commands[0].upsert).toBeFalsy();
    expect(await counters(db).countDocuments({})).toBe(0);
  });
});

describe('Idempotency-Key: one transaction records the key with the change', () => {
  test('a new key on an existing counter: change, key record, commit (3 round trips, one transaction, no causal consistency); the record holds id, by, value and expiry', async () => {
    const db = await database();
    const h = await container(db);
    await counters(db).insertOne({ _id: 'c', counter: 41 });
    h.sent.length = 0;
    h.commands.length = 0;
    const before = Date.now();
    expect(await h.store.apply('c', keyed('order-1', 2, undefined, 3600))).toEqual({ counter: 43, replayed: false });
    expect(h.sent).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'commitTransaction']);
    const [first, ...rest] = h.commands;
    expect(first).toMatchObject({ startTransaction: true, autocommit: false, query: { _id: 'c' }, update: { $inc: { counter: 2 } } });
    expect(first.upsert).toBeFalsy();
    // The key record is inserted with the value the change produced; a taken key is returned instead.
    expect(rest[0]).toMatchObject({ query: { _id: 'order-1' }, upsert: true, new: false, update: { $setOnInsert: { id: 'c', by: 2, counter: 43 } } });
    for (const c of h.commands) {
      expect(c).toMatchObject({ autocommit: false, txnNumber: first.txnNumber, lsid: first.lsid });
      expect(c.readConcern?.afterClusterTime).toBeUndefined();
    }
    expect(rest[rest.length - 1]).toMatchObject({ commitTransaction: 1, writeConcern: { w: 'majority' } });
    const record = await keyRecords(db).findOne({ _id: 'order-1' });
    expect(record).toMatchObject({ _id: 'order-1', id: 'c', by: 2, counter: 43 });
    expect(record!.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 3600_000);
    expect(record!.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 3600_000);
    // The counters collection holds counters only.
    expect(await counters(db).find({}).toArray()).toEqual([{ _id: 'c', counter: 43 }]);
  });

  test('a replay is three round trips (the change, the key found, abort), leaves the counter untouched, and answers the recorded value even after the counter moved', async () => {
    const db = await database();
    const h = await container(db);
    expect(await h.store.apply('c', keyed('k'))).toEqual({ counter: 1, replayed: false });
    expect(await h.store.apply('c', { by: 5 })).toEqual({ counter: 6, replayed: false });
    h.sent.length = 0;
    expect(await h.store.apply('c', keyed('k'))).toEqual({ counter: 1, replayed: true });
    expect(h.sent).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'abortTransaction']);
    expect(await stored(db, 'c')).toBe(6);
  });

  test('a brand-new counter: the missing document is told from an out-of-range one in the same snapshot (no E11000 inside the transaction)', async () => {
    const db = await database();
    const h = await container(db);
    h.sent.length = 0;
    expect(await h.store.apply('new', keyed('n1', 7))).toEqual({ counter: 7, replayed: false });
    expect(h.sent).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'commitTransaction']);
    expect(h.failures).toEqual([]);
    expect(await stored(db, 'new')).toBe(7);
  });

  test('rejections record no key and say the current value when the transaction read it; the retry of a rejected key is evaluated afresh', async () => {
    const db = await database();
    const h = await container(db);
    await counters(db).insertOne({ _id: 'full', counter: 10 });
    h.sent.length = 0;
    const limit = h.store.apply('full', keyed('up', 1, 10));
    await expect(limit).rejects.toBeInstanceOf(LimitReachedError);
    await expect(limit).rejects.toMatchObject({ counter: 10, maxCounterValue: 10 });
    // The key is still looked up, in the same snapshot: a key applied before answers its 200 at the bound.
    expect(h.sent).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${COLLECTION}`, `find:${KEYS}`, 'abortTransaction']);
    h.sent.length = 0;
    // A decrement of a counter never written: 0 is not an allowed start; one read tells a missing
    // counter from one widened by a sharded writer (docs/docdb.md, "Sharded counters").
    await expect(h.store.apply('empty', keyed('down', -1, 10))).rejects.toBeInstanceOf(FloorReachedError);
    expect(h.sent).toEqual([`findAndModify:${COLLECTION}`, `find:${COLLECTION}`, `find:${KEYS}`, 'abortTransaction']);
    expect(await keyRecords(db).countDocuments({})).toBe(0);
    expect(await counters(db).find({}).toArray()).toEqual([{ _id: 'full', counter: 10 }]);
    // After a decrement the rejected key applies.
    await h.store.apply('full', { by: -1, maximum: 10 });
    expect(await h.store.apply('full', keyed('up', 1, 10))).toEqual({ counter: 10, replayed: false });
  });

  test('the key is looked up before the bound: at the maximum, an accepted key still replays its original 200', async () => {
    const db = await database();
    const { store } = await container(db);
    expect(await store.apply('m', keyed('last', 3, 3))).toEqual({ counter: 3, replayed: false });
    await expect(store.apply('m', keyed('other', 1, 3))).rejects.toBeInstanceOf(LimitReachedError);
    expect(await store.apply('m', keyed('last', 3, 3))).toEqual({ counter: 3, replayed: true });
  });

  test('the binding is the id and the step: another id or another step → 422, nothing written, the original still replays', async () => {
    const db = await database();
    const { store } = await container(db);
    expect(await store.apply('a', keyed('bound', 2))).toEqual({ counter: 2, replayed: false });
    await expect(store.apply('a', keyed('bound', 3))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    // The same id, the step's sign flipped: another change, so 422 too.
    await expect(store.apply('a', keyed('bound', -2))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(store.apply('b', keyed('bound', 2))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(store.apply('b', keyed('bound', -2))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await counters(db).find({}).toArray()).toEqual([{ _id: 'a', counter: 2 }]);
    expect(await keyRecords(db).findOne({ _id: 'bound' })).toMatchObject({ id: 'a', by: 2, counter: 2 });
    expect(await store.apply('a', keyed('bound', 2))).toEqual({ counter: 2, replayed: true });
  });

  test('expiry is the store\'s own check: an expired record the TTL monitor has not deleted yet is replaced in the transaction, whatever it was bound to', async () => {
    const db = await database();
    const { store } = await container(db);
    await keyRecords(db).insertOne({ _id: 'old', id: 'elsewhere', by: 9, counter: 99, expiresAt: new Date(Date.now() - 1000) });
    expect(await store.apply('x', keyed('old', 1))).toEqual({ counter: 1, replayed: false });
    const record = await keyRecords(db).findOne({ _id: 'old' });
    expect(record).toMatchObject({ id: 'x', by: 1, counter: 1 });
    expect(record!.expiresAt.getTime()).toBeGreaterThan(Date.now() + (DAY - 60) * 1000);
    expect(await store.apply('x', keyed('old', 1))).toEqual({ counter: 1, replayed: true });

    // A short retention, no sweep in between: the key counts again once its time is up.
    expect(await store.apply('y', keyed('short-lived', 1, undefined, 1))).toEqual({ counter: 1, replayed: false });
    expect(await store.apply('y', keyed('short-lived', 1, undefined, 1))).toEqual({ counter: 1, replayed: true });
    await new Promise((r) => setTimeout(r, 1100));
    expect(await keyRecords(db).countDocuments({ _id: 'short-lived' })).toBe(1);
    expect(await store.apply('y', keyed('short-lived', 1, undefined, 1))).toEqual({ counter: 2, replayed: false });
  });

  test('contention across containers: one key sent by 24 requests over 4 containers applies once (the others conflict, retry, replay); 120 keys on one hot id over 4 containers count 120', async () => {
    const db = await database();
    // A minute of budget: keyed changes queue one at a time per container, so
    // the last of 30 waits for the others; the deployed 6 s would turn a slow
    // machine into 503s, and this test is about conflicts, not budgets.
    const harnesses = await Promise.all(Array.from({ length: 4 }, () => container(db, { DOCDB_OPERATION_TIMEOUT_MS: '60000' })));
    const same = await Promise.all(Array.from({ length: 24 }, (_, i) => harnesses[i % 4].store.apply('one', keyed('dup'))));
    expect(same.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(same.map((r) => r.counter))).toEqual(new Set([1]));
    expect(await stored(db, 'one')).toBe(1);

    const results: ChangeResult[] = await Promise.all(Array.from({ length: 120 }, (_, i) => harnesses[i % 4].store.apply('hot', keyed(`h${i}`, 1))));
    expect(results.every((r) => !r.replayed)).toBe(true);
    expect([...results.map((r) => r.counter!)].sort((a, b) => a - b)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
    expect(await stored(db, 'hot')).toBe(120);
    // The contention path was taken: transactions conflicted (112) and were retried.
    const conflicts = harnesses.flatMap((h) => h.failures).filter((c) => c === 112).length;
    console.log(`docdb keyed contention: ${conflicts} write conflicts retried over 144 keyed changes on 4 containers`);
    expect(conflicts).toBeGreaterThan(0);
    expect(server.transactions.open.size).toBe(0);
  });
});

describe('Idempotency-Key: races and failures the engine does not produce on its own (failCommand)', () => {
  test('an E11000 on the key (a record committed after the transaction\'s snapshot) or a WriteConflict on the record: the transaction runs again, the change counts once', async () => {
    const db = await database();
    const { store } = await container(db);
    server.failCommand({ failCommands: ['findAndModify'], collections: [KEYS], errorCode: 11000, times: 1 });
    expect(await store.apply('r', keyed('dupkey'))).toEqual({ counter: 1, replayed: false });
    expect(server.failPoint.hits).toBe(1);
    server.failCommand({ failCommands: ['findAndModify'], collections: [KEYS], errorCode: 112, errorLabels: ['TransientTransactionError'], times: 2 });
    expect(await store.apply('r', keyed('conflict', 5))).toEqual({ counter: 6, replayed: false });
    expect(server.failPoint.hits).toBe(2);
    expect(await stored(db, 'r')).toBe(6);
    expect(await keyRecords(db).countDocuments({})).toBe(2);
  });

  test('conflicts without end and no time budget: the keyed change gives up after KEYED_MAX_ATTEMPTS transactions with a 503, nothing applied', async () => {
    const db = await database();
    const config = readDocDbConfig({ DOCDB_URI: server.uri, DOCDB_DATABASE: db });
    const client = await createDocDbClient(config);
    const store = new DocDbCounterStore(client, { database: db, collection: COLLECTION });
    open.push(store);
    server.failCommand({ failCommands: ['findAndModify'], collections: [KEYS], errorCode: 112, errorLabels: ['TransientTransactionError'], times: 10_000 });
    await expect(store.apply('endless', keyed('endless'))).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(server.failPoint.hits).toBe(KEYED_MAX_ATTEMPTS);
    server.failCommand(undefined);
    expect(await stored(db, 'endless')).toBeUndefined();
    expect(await keyRecords(db).countDocuments({})).toBe(0);
  }, 60_000);

  test('a commit answered with 251 (which DocumentDB also answers after a restart to a commit that happened): the transaction is ended and run again; the key decides, the change counts once', async () => {
    const db = await database();
    const h = await container(db);
    server.failCommand({ failCommands: ['commitTransaction'], errorCode: 251, times: 1 });
    h.sent.length = 0;
    expect(await h.store.apply('amb', keyed('k251', 4))).toEqual({ counter: 4, replayed: false });
    // The failed commit's transaction was aborted (its locks freed) before the next attempt.
    expect(h.sent.slice(0, 5)).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'commitTransaction', 'abortTransaction']);
    expect(await stored(db, 'amb')).toBe(4);
    expect(await h.store.apply('amb', keyed('k251', 4))).toEqual({ counter: 4, replayed: true });
  });

  test.each([
    ['its reply carries a writeConcernError (64)', { writeConcernError: { code: 64 } }],
    ['its reply is lost (the connection closes after the commit ran)', { closeConnection: true, afterRun: true }],
  ])('own commit recognised: the commit is applied but %s; the request retries and answers its own change, not a replay', async (_label, fault) => {
    const db = await database();
    const h = await container(db);
    await counters(db).insertOne({ _id: 'own', counter: 10 });
    server.failCommand({ failCommands: ['commitTransaction'], times: 1, ...fault });
    const answer = await h.store.apply('own', keyed('mine', 1));
    expect(server.failPoint.hits).toBe(1);
    // The commit did happen: counted once, and this request's answer is its own change.
    expect(answer).toEqual({ counter: 11, replayed: false });
    expect(await stored(db, 'own')).toBe(11);
    expect(await keyRecords(db).findOne({ _id: 'mine' })).toMatchObject({ id: 'own', by: 1, counter: 11 });
    // Another request with the same key is a replay.
    expect(await h.store.apply('own', keyed('mine', 1))).toEqual({ counter: 11, replayed: true });
    expect(await stored(db, 'own')).toBe(11);
  });

  test('cut off at the budget: 503 at once, and the transaction is aborted then (its locks freed), not a minute later', async () => {
    const db = await database();
    const { store } = await container(db, { DOCDB_OPERATION_TIMEOUT_MS: '400' });
    await counters(db).insertOne({ _id: 'slow', counter: 0 });
    // The held command blocks 4 s: an answer within the budget plus the
    // suite's slack (1.9 s) is the cut-off, not the command coming back.
    const blockMs = 4000;
    server.failCommand({ failCommands: ['findAndModify'], collections: [KEYS], blockConnection: true, blockTimeMS: blockMs, times: 1 });
    const started = Date.now();
    await expect(store.apply('slow', keyed('cut'))).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(Date.now() - started).toBeLessThan(400 + FAULT_SLACK_MS);
    await waitFor(() => server.transactions.open.size === 0, 2000);
    expect(Date.now() - started).toBeLessThan(blockMs);
    // The key and the counter are free: another container applies the same key at once.
    const other = await container(db);
    expect(await other.store.apply('slow', keyed('cut'))).toEqual({ counter: 1, replayed: false });
    await new Promise((r) => setTimeout(r, Math.max(0, started + blockMs + 300 - Date.now()))); // the held command runs, on a transaction that is gone
    expect(await stored(db, 'slow')).toBe(1);
  });

  test('before the setup has run: a keyed change answers 503 (not 500) naming the missing collections, and writes nothing; a store set up before keys existed names the keys collection only', async () => {
    const db = `sk_nosetup_${++dbCount}`;
    const { store } = await container(db);
    const err = await store.apply('c', keyed('k')).catch((e) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(err.message).toBe(`DocumentDB setup has not run: collection ${db}.${COLLECTION} and ${db}.${KEYS} missing (keyed changes need both; run the setup custom resource, Custom::DocDbSetup)`);
    expect(await admin.db(db).listCollections().toArray()).toEqual([]);

    // The previous schema: counters only (an unkeyed change creates its collection). Unkeyed changes work; keyed ones name the keys collection.
    expect(await store.apply('c', { by: 1 })).toEqual({ counter: 1, replayed: false });
    const keyedErr = await store.apply('c', keyed('k')).catch((e) => e);
    expect(keyedErr).toBeInstanceOf(BackendUnavailableError);
    expect(keyedErr.message).toMatch(new RegExp(`collection ${db}\\.${KEYS} missing`));
    expect(keyedErr.message).not.toMatch(new RegExp(`${db}\\.${COLLECTION} `));
    expect(await stored(db, 'c')).toBe(1);
    // Once the setup has run, the same key applies.
    await ensureCounterCollection(admin, db, COLLECTION);
    expect(await store.apply('c', keyed('k'))).toEqual({ counter: 2, replayed: false });
  });
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
