/**
 * DynamoDB-specific checks of steps (`?by=N`) and exactly-once changes
 * (`Idempotency-Key`) on DynamoDB Local: what a keyed change leaves in the
 * table (the counter item with its marker, the key record), how markers are
 * folded into their records later, requests that died right after their
 * transaction (the marker leak), an expired key record (replaced, and never
 * replayed at the maximum), transaction conflicts (which DynamoDB Local never
 * produces: injected, or played by a proxy in front of it), the rejection's
 * key check, the safe-integer edges, keyed and unkeyed changes mixed on one
 * hot id, the calls a keyed change sends (counted at the engine side) and
 * the flags DynamoDB Local ignores (checked on the requests). The shared
 * contracts (test/kit/steps-contract.ts, test/kit/exactly-once-contract.ts)
 * cover what every backend shares.
 */
import {
  AttributeValue,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  ProvisionedThroughputExceededException,
  PutItemCommand,
  ScanCommand,
  TransactionCanceledException,
  TransactionConflictException,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { uniqueNamespace } from '../../local/backends/fixture';
import { chainProblem, Transition } from '../../local/compare-verdicts';
import { LOCAL_AWS_ENV } from '../../local/engines/dynamodb-local';
import { startDynamoProxy } from '../../local/engines/dynamodb-proxy';
import { runWorkload } from '../../local/workload';
import { DYNAMO_ATTRIBUTES as A, DYNAMO_DEFAULTS, DYNAMO_ENV, DYNAMO_KEYS, dynamoBudgetMs, dynamoWorstCase } from '../../src/backends/dynamo/dynamo-env';
import { readDynamoConfig } from '../../src/backends/dynamo/runtime/dynamo-config';
import { DynamoCounterStore } from '../../src/backends/dynamo/runtime/dynamo-counter-store';
import { markerName, markersOn, markerWeight } from '../../src/backends/dynamo/runtime/dynamo-keyed-change';
import { BackendUnavailableError, IdempotencyKeyReusedError, InvalidStepError, LimitReachedError, ThrottledError } from '../../src/runtime/errors';
import { CounterChange } from '../../src/runtime/store';
import { call, useBackend } from '../kit/conformance';
import { FAULT_SLACK_MS } from '../kit/fault-contract';

type Item = Record<string, AttributeValue>;
type Send = (command: any) => Promise<any>;

const ctx = useBackend('dynamo');
/** A retention no test outlives on a loaded machine. */
const HOUR = 3600;
const RECORD = (key: string) => DYNAMO_KEYS.RECORD_PREFIX + key;
const keyed = (by: number, key: string, retentionSeconds = 60, maximum?: number): CounterChange =>
  ({ by, idempotency: { key, retentionSeconds }, ...(maximum === undefined ? {} : { maximum }) });

/** A request that dies right after its transaction returned (a killed container): nothing after it is sent. */
class Killed extends Error {}
const killAfterTransaction = (command: any, send: Send) =>
  (command instanceof TransactWriteItemsCommand ? send(command).then(() => { throw new Killed('killed after the transaction'); }) : send(command));

/** A fresh table, a raw client on it, and stores (optionally with their calls intercepted). */
async function table(options: { requestTimeoutMs?: number; endpoint?: string } = {}) {
  const env = await ctx().prepare(uniqueNamespace('t_dynamo_keys'));
  const config = readDynamoConfig({
    ...env,
    ...(options.requestTimeoutMs ? { [DYNAMO_ENV.REQUEST_TIMEOUT_MS]: String(options.requestTimeoutMs) } : {}),
    ...(options.endpoint ? { [DYNAMO_ENV.ENDPOINT]: options.endpoint } : {}),
  });
  const raw = new DynamoDBClient({
    endpoint: env[DYNAMO_ENV.ENDPOINT],
    region: LOCAL_AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: LOCAL_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: LOCAL_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
  const stores: DynamoCounterStore[] = [];
  const TableName = config.tableName;
  return {
    TableName,
    env,
    raw,
    /** A store as the handler builds it; `intercept` sees every command first and may answer it itself. */
    async store(intercept?: (command: any, send: Send) => Promise<any>): Promise<DynamoCounterStore> {
      const store = await DynamoCounterStore.create(config);
      stores.push(store);
      if (intercept) {
        const client = (store as unknown as { client: DynamoDBClient }).client;
        const send: Send = client.send.bind(client) as Send;
        (client as unknown as { send: Send }).send = (command: any) => intercept(command, send);
      }
      return store;
    },
    async get(id: string): Promise<Item | undefined> {
      return (await raw.send(new GetItemCommand({ TableName, Key: { [A.ID]: { S: id } }, ConsistentRead: true }))).Item;
    },
    async put(item: Item): Promise<void> {
      await raw.send(new PutItemCommand({ TableName, Item: item }));
    },
    async ids(): Promise<string[]> {
      return ((await raw.send(new ScanCommand({ TableName }))).Items ?? []).map((item) => item[A.ID].S!).sort();
    },
    async close() {
      await Promise.all(stores.map((s) => s.close()));
      raw.destroy();
    },
  };
}
type Table = Awaited<ReturnType<typeof table>>;

/** The attribute names of an item that are markers of keyed changes. */
function markersOf(item: Item | undefined): string[] {
  return markersOn(item).map((m) => m.name).sort();
}

/**
 * An item's size as DynamoDB counts it (developer guide, "Item sizes"):
 * attribute names and values, a number taking about one byte per two
 * significant digits plus one.
 */
function itemBytes(item: Item | undefined): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item ?? {})) {
    bytes += Buffer.byteLength(name);
    if (value.S !== undefined) bytes += Buffer.byteLength(value.S);
    if (value.N !== undefined) bytes += Math.ceil(value.N.replace(/^-|\.|^0+/g, '').length / 2) + 1;
  }
  return bytes;
}

/** `markerBytes` agrees with the markers on the item, and stays within the cap. */
function expectMarkerBytesConsistent(item: Item | undefined): void {
  const counted = markersOn(item).reduce((sum, m) => sum + markerWeight(m), 0);
  expect(Number(item?.[A.MARKER_BYTES]?.N ?? 0)).toBe(counted);
  expect(counted).toBeLessThanOrEqual(DYNAMO_DEFAULTS.markerBytesCap);
}

/**
 * What an earlier release's transaction left when its request died after
 * it: the change applied, the key recorded, the value only in a marker
 * named with the record's expiry.
 */
async function legacyTransactionOnly(t: Table, id: string, by: number, key: string, expiresAtMs: number): Promise<string> {
  const legacy = DYNAMO_KEYS.MARKER_PREFIX + key + DYNAMO_KEYS.MARKER_SEPARATOR + expiresAtMs.toString(36);
  await t.raw.send(new TransactWriteItemsCommand({
    TransactItems: [
      {
        Update: {
          TableName: t.TableName,
          Key: { [A.ID]: { S: id } },
          UpdateExpression: 'SET #c = if_not_exists(#c, :zero) + :by, #m = if_not_exists(#c, :zero) + :by',
          ExpressionAttributeNames: { '#c': A.COUNTER, '#m': legacy },
          ExpressionAttributeValues: { ':zero': { N: '0' }, ':by': { N: String(by) } },
        },
      },
      {
        Put: {
          TableName: t.TableName,
          Item: {
            [A.ID]: { S: RECORD(key) },
            [A.BOUND_ID]: { S: id },
            [A.BY]: { N: String(by) },
            [A.EXPIRES_AT]: { N: String(Math.ceil(expiresAtMs / 1000)) },
            [A.EXPIRES_AT_MS]: { N: String(expiresAtMs) },
          },
        },
      },
    ],
  }));
  return legacy;
}

/**
 * Makes a key record look as if its change happened longer ago than any
 * request's budget (its retention window moved earlier, still live), as
 * waiting would, without the wait.
 */
async function ageRecord(t: Table, key: string): Promise<void> {
  const record = (await t.get(RECORD(key)))!;
  const expiresAtMs = Number(record[A.EXPIRES_AT_MS].N) - dynamoBudgetMs(readDynamoConfig(t.env).requestTimeoutMs) - 1000;
  await t.put({ ...record, [A.EXPIRES_AT]: { N: String(Math.ceil(expiresAtMs / 1000)) }, [A.EXPIRES_AT_MS]: { N: String(expiresAtMs) } });
}

function cancelled(codes: Array<{ Code: string; Item?: Item }>): TransactionCanceledException {
  return new TransactionCanceledException({ message: `Transaction cancelled [${codes.map((c) => c.Code).join(', ')}]`, $metadata: {}, CancellationReasons: codes });
}

describe('dynamo: what a keyed change leaves in the table', () => {
  test('the change leaves its value in a marker on the counter item and the key record {boundId, by, expiresAt, expiresAtMs}; the next keyed change folds the value into the record as result', async () => {
    const t = await table();
    try {
      const store = await t.store();
      const before = Date.now();
      expect(await store.apply('shape', keyed(3, 'k-shape', 60))).toEqual({ counter: 3, replayed: false });
      const after = Date.now();
      const own = markerName('k-shape');
      expect(await t.get('shape')).toEqual({
        [A.ID]: { S: 'shape' },
        [A.COUNTER]: { N: '3' },
        [own]: { N: '3' },
        [A.MARKER_BYTES]: { N: String(markerWeight({ name: own })) },
      });
      const record = (await t.get(RECORD('k-shape')))!;
      expect(Object.keys(record).sort()).toEqual([A.BOUND_ID, A.BY, A.EXPIRES_AT, A.EXPIRES_AT_MS, A.ID].sort());
      expect(record[A.BOUND_ID]).toEqual({ S: 'shape' });
      expect(record[A.BY]).toEqual({ N: '3' });
      const expiresAtMs = Number(record[A.EXPIRES_AT_MS].N);
      expect(expiresAtMs).toBeGreaterThanOrEqual(before + 60_000);
      expect(expiresAtMs).toBeLessThanOrEqual(after + 60_000);
      // The TTL attribute is whole seconds, rounded up: DynamoDB never deletes a record early.
      expect(Number(record[A.EXPIRES_AT].N)).toBe(Math.ceil(expiresAtMs / 1000));

      // The container's next keyed change on the id folds the first one's marker in its own transaction.
      expect(await store.apply('shape', keyed(2, 'k-next', 60))).toEqual({ counter: 5, replayed: false });
      expect((await t.get(RECORD('k-shape')))![A.RESULT]).toEqual({ N: '3' });
      expect(markersOf(await t.get('shape'))).toEqual([markerName('k-next')]);
      expectMarkerBytesConsistent(await t.get('shape'));
      expect(await store.apply('shape', keyed(3, 'k-shape', 60))).toEqual({ counter: 3, replayed: true });
      expect(await ctx().fixture.keys(ctx().engine, t.TableName)).toEqual(['shape']);
      expect(await t.ids()).toEqual([RECORD('k-next'), RECORD('k-shape'), 'shape'].sort());

      // The counter item deleted (a counter reset by hand) while the container still means to fold
      // k-next's marker: the fold finds no marker, and nothing is folded or counted off.
      await t.raw.send(new DeleteItemCommand({ TableName: t.TableName, Key: { [A.ID]: { S: 'shape' } } }));
      expect(await store.apply('shape', keyed(1, 'k-reset', 60))).toEqual({ counter: 1, replayed: false });
      expectMarkerBytesConsistent(await t.get('shape'));
      expect(markersOf(await t.get('shape'))).toEqual([markerName('k-reset')]);
      expect((await t.get(RECORD('k-next')))![A.RESULT]).toBeUndefined();
    } finally {
      await t.close();
    }
  });
});

describe('dynamo: a keyed change interrupted after its transaction', () => {
  test('a request that died after the transaction (marker on the counter, no result): the key replays the value it produced, in one call; once the dead request\'s budget is over, the replaying container adopts the marker and folds it', async () => {
    const t = await table();
    try {
      const store = await t.store();
      expect((await store.apply('died', { by: 10 })).counter).toBe(10);
      await expect((await t.store(killAfterTransaction)).apply('died', keyed(5, 'k-died'))).rejects.toBeInstanceOf(Killed);
      // Others change the counter meanwhile: the replay must answer 15, not the current value.
      expect((await store.apply('died', { by: 1 })).counter).toBe(16);
      expect(markersOf(await t.get('died'))).toEqual([markerName('k-died')]);

      let calls = 0;
      const counted = await t.store((command, send) => {
        calls++;
        return send(command);
      });
      await ageRecord(t, 'k-died');
      expect(await counted.apply('died', keyed(5, 'k-died'))).toEqual({ counter: 15, replayed: true });
      // The cancelled transaction returned both the record and the counter item with the marker.
      expect(calls).toBe(1);
      // The binding holds for an interrupted change too.
      await expect(store.apply('elsewhere', keyed(5, 'k-died'))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
      await expect(store.apply('died', keyed(4, 'k-died'))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
      await expect(store.apply('died', keyed(-5, 'k-died'))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
      expect(await store.read('elsewhere')).toBe(0);
      expect(await store.read('died')).toBe(16);

      // The replaying container adopted the marker: its next keyed change on the id folds it.
      expect(await counted.apply('died', keyed(1, 'k-after'))).toEqual({ counter: 17, replayed: false });
      expect((await t.get(RECORD('k-died')))![A.RESULT]).toEqual({ N: '15' });
      expect(markersOf(await t.get('died'))).toEqual([markerName('k-after')]);
      expect(await store.apply('died', keyed(5, 'k-died'))).toEqual({ counter: 15, replayed: true });
    } finally {
      await t.close();
    }
  });

  test('the marker read fails after the transaction: 503 although applied; the retry replays the value and counts nothing twice', async () => {
    const t = await table();
    try {
      let failRead = true;
      const flaky = await t.store(async (command, send) => {
        if (failRead && command instanceof GetItemCommand) {
          failRead = false;
          throw Object.assign(new Error('injected: the call timed out'), { name: 'TimeoutError' });
        }
        return send(command);
      });
      await expect(flaky.apply('ordered', keyed(7, 'k-ordered'))).rejects.toBeInstanceOf(BackendUnavailableError);
      // Applied and recorded; the value is in the marker, nowhere else.
      const item = await t.get('ordered');
      expect(item?.[A.COUNTER]).toEqual({ N: '7' });
      expect(markersOf(item)).toEqual([markerName('k-ordered')]);
      expect((await t.get(RECORD('k-ordered')))?.[A.RESULT]).toBeUndefined();

      const store = await t.store();
      expect(await store.apply('ordered', keyed(7, 'k-ordered'))).toEqual({ counter: 7, replayed: true });
      expect(await store.read('ordered')).toBe(7);
    } finally {
      await t.close();
    }
  });

  test('2,000 keyed requests killed right after their transaction on one id: the item stays under 3 KB, keyed and unkeyed changes keep answering 200, and every killed key replays the value its change produced', async () => {
    const t = await table();
    try {
      let transactions = 0;
      const dying = await t.store((command, send) => {
        if (command instanceof TransactWriteItemsCommand) transactions++;
        return killAfterTransaction(command, send);
      });
      let largest = 0;
      const killed = await runWorkload({
        total: 2000,
        concurrency: 8,
        call: async (i) => {
          await dying.apply('leaky', keyed(1, `leak-${i}`, HOUR)).catch((err) => {
            if (!(err instanceof Killed)) throw err;
          });
          if (i % 100 === 99) largest = Math.max(largest, itemBytes(await t.get('leaky')));
          return { status: 200 };
        },
      });
      expect(killed.statuses).toEqual({ 200: 2000 });
      const item = await t.get('leaky');
      largest = Math.max(largest, itemBytes(item));
      console.log(`dynamo marker leak: 2,000 requests killed after their transaction: ${transactions} transactions, largest counter item ${largest} bytes, ${markersOf(item).length} markers left`);
      expect(item?.[A.COUNTER]).toEqual({ N: '2000' });
      expect(largest).toBeLessThan(3 * 1024);
      expectMarkerBytesConsistent(item);

      // The id keeps working, keyed and not.
      const store = await t.store();
      for (let i = 0; i < 20; i++) {
        expect(await store.apply('leaky', keyed(1, `alive-${i}`))).toMatchObject({ replayed: false });
        expect(await store.apply('leaky', { by: 1 })).toMatchObject({ replayed: false });
      }
      expect(await store.read('leaky')).toBe(2040);
      // Folded or not yet, no killed change's value is lost: they were 1 … 2000.
      const replayed = await runWorkload({
        total: 2000,
        concurrency: 8,
        call: async (i) => {
          const answer = await store.apply('leaky', keyed(1, `leak-${i}`, HOUR));
          return { status: answer.replayed ? 200 : 500, counter: answer.counter };
        },
      });
      expect(replayed.statuses).toEqual({ 200: 2000 });
      expect([...replayed.counters].sort((a, b) => a - b)).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
      expect(await store.read('leaky')).toBe(2040);
      expect(itemBytes(await t.get('leaky'))).toBeLessThan(3 * 1024);
    } finally {
      await t.close();
    }
  }, 300_000);

  test('a marker whose key record is gone (expired and reused elsewhere) is removed without writing a value into the record', async () => {
    const t = await table();
    try {
      await expect((await t.store(killAfterTransaction)).apply('old', keyed(4, 'k-moved'))).rejects.toBeInstanceOf(Killed);
      const store = await t.store();
      // Adopt the marker: a replay within the retention, once the dead request's budget is over.
      await ageRecord(t, 'k-moved');
      expect(await store.apply('old', keyed(4, 'k-moved'))).toEqual({ counter: 4, replayed: true });
      // The retention ends (the record rewritten as expired, without the TTL attribute) …
      const { [A.EXPIRES_AT]: _ttl, ...live } = (await t.get(RECORD('k-moved')))!;
      await t.put({ ...live, [A.EXPIRES_AT_MS]: { N: String(Date.now() - 1) } });
      // … and the key is used anew on another id.
      expect(await store.apply('new', keyed(2, 'k-moved', 60))).toEqual({ counter: 2, replayed: false });
      // The next keyed change on 'old' folds the adopted marker: the record is not the marker's any more.
      expect(await store.apply('old', keyed(1, 'k-other'))).toEqual({ counter: 5, replayed: false });
      expect(markersOf(await t.get('old'))).toEqual([markerName('k-other')]);
      expectMarkerBytesConsistent(await t.get('old'));
      const record = (await t.get(RECORD('k-moved')))!;
      expect(record[A.BOUND_ID]).toEqual({ S: 'new' });
      expect(record[A.RESULT]).toBeUndefined();
      expect(await store.apply('new', keyed(2, 'k-moved', 60))).toEqual({ counter: 2, replayed: true });
    } finally {
      await t.close();
    }
  });

  test('a marker of an earlier release (named with its record\'s expiry) replays its value, and a later keyed change folds it', async () => {
    const t = await table();
    try {
      const store = await t.store();
      expect((await store.apply('legacy', { by: 10 })).counter).toBe(10);
      const legacy = await legacyTransactionOnly(t, 'legacy', 5, 'k-legacy', Date.now() + 60_000);
      expect((await store.apply('legacy', { by: 1 })).counter).toBe(16);
      expect(await store.apply('legacy', keyed(5, 'k-legacy'))).toEqual({ counter: 15, replayed: true });
      expect(await store.apply('legacy', keyed(1, 'k-new'))).toEqual({ counter: 17, replayed: false });
      expect((await t.get(RECORD('k-legacy')))![A.RESULT]).toEqual({ N: '15' });
      expect(Object.keys((await t.get('legacy'))!)).not.toContain(legacy);
      expect(await store.apply('legacy', keyed(5, 'k-legacy'))).toEqual({ counter: 15, replayed: true });
    } finally {
      await t.close();
    }
  });
});

describe('dynamo: an item an earlier release filled with leaked markers', () => {
  test('a counter item at DynamoDB\'s 400 KB limit (markers of requests that died long ago, their records gone): a keyed change folds some away and applies, the item shrinks', async () => {
    const t = await table();
    try {
      const longAgo = Date.now() - 86_400_000;
      const itemOf = (markers: number): Item => {
        const item: Item = { [A.ID]: { S: 'full-item' }, [A.COUNTER]: { N: '5' } };
        for (let i = 0; i < markers; i++) {
          item[DYNAMO_KEYS.MARKER_PREFIX + `leaked-key-${String(i).padStart(8, '0')}-${'x'.repeat(20)}` + DYNAMO_KEYS.MARKER_SEPARATOR + (longAgo + i).toString(36)] = { N: String(i) };
        }
        return item;
      };
      // As full as DynamoDB takes it: the most markers a PutItem accepts.
      let [fits, tooMany] = [1000, 20_000];
      while (tooMany - fits > 1) {
        const n = Math.floor((fits + tooMany) / 2);
        try {
          await t.put(itemOf(n));
          fits = n;
        } catch (err) {
          if ((err as Error).name !== 'ValidationException') throw err;
          tooMany = n;
        }
      }
      await t.put(itemOf(fits));
      const before = itemBytes(await t.get('full-item'));
      console.log(`dynamo: counter item filled to ${before} bytes (as counted here) with ${fits} leaked markers`);
      const codes: string[] = [];
      const store = await t.store(async (command, send) => send(command).catch((err: Error) => {
        if (err instanceof TransactionCanceledException) codes.push(err.CancellationReasons?.[0]?.Code ?? '');
        throw err;
      }));
      // A long key: its marker alone would take the item past the limit.
      const long = 'k-'.padEnd(200, 'y');
      expect(await store.apply('full-item', keyed(1, long))).toEqual({ counter: 6, replayed: false });
      expect(codes[0]).toBe('ValidationError');
      expect(await store.apply('full-item', { by: 1 })).toEqual({ counter: 7, replayed: false });
      expect(await store.apply('full-item', keyed(1, `${long}-2`))).toEqual({ counter: 8, replayed: false });
      expect(await store.apply('full-item', keyed(1, long))).toEqual({ counter: 6, replayed: true });
      expect(itemBytes(await t.get('full-item'))).toBeLessThan(before);
    } finally {
      await t.close();
    }
  }, 120_000);
});

describe('dynamo: key records and their retention', () => {
  test('an expired key record is replaced: the key applies afresh, bound to its new id and step', async () => {
    const t = await table();
    try {
      const store = await t.store();
      const expiredMs = Date.now() - 1;
      // Without the TTL attribute: DynamoDB Local's TTL deletes an expired
      // record within about a second, DynamoDB's may take days. The store
      // must not wait for either: the record stays, and the key is new.
      await t.put({
        [A.ID]: { S: RECORD('k-expired') },
        [A.BOUND_ID]: { S: 'somewhere-else' },
        [A.BY]: { N: '9' },
        [A.RESULT]: { N: '9' },
        [A.EXPIRES_AT_MS]: { N: String(expiredMs) },
      });
      expect(await store.apply('renewed', keyed(2, 'k-expired'))).toEqual({ counter: 2, replayed: false });
      const record = (await t.get(RECORD('k-expired')))!;
      expect([record[A.BOUND_ID].S, record[A.BY].N, record[A.RESULT]]).toEqual(['renewed', '2', undefined]);
      expect(await store.apply('renewed', keyed(2, 'k-expired'))).toEqual({ counter: 2, replayed: true });
      expect(await store.read('somewhere-else')).toBe(0);
    } finally {
      await t.close();
    }
  });

  test('an expired key record at the maximum is not replayed: the key is new, and the change is rejected (409), with or without its marker still on the counter', async () => {
    const t = await table();
    try {
      const store = await t.store();
      for (let i = 1; i <= 3; i++) expect((await store.apply('capped', keyed(1, `k-cap-${i}`, 60, 3))).counter).toBe(i);
      // A record of this id and step, completed, but past its retention (no TTL attribute, as on DynamoDB until its TTL deletion).
      await t.put({
        [A.ID]: { S: RECORD('k-stale') },
        [A.BOUND_ID]: { S: 'capped' },
        [A.BY]: { N: '1' },
        [A.RESULT]: { N: '2' },
        [A.EXPIRES_AT_MS]: { N: String(Date.now() - 1) },
      });
      await expect(store.apply('capped', keyed(1, 'k-stale', 60, 3))).rejects.toMatchObject({ code: 'LIMIT_REACHED', counter: 3 });
      // Its marker too, never folded: still not a replay.
      await t.raw.send(new UpdateItemCommand({
        TableName: t.TableName,
        Key: { [A.ID]: { S: 'capped' } },
        UpdateExpression: 'SET #m = :v',
        ExpressionAttributeNames: { '#m': markerName('k-stale') },
        ExpressionAttributeValues: { ':v': { N: '2' } },
      }));
      await t.put({
        [A.ID]: { S: RECORD('k-stale') },
        [A.BOUND_ID]: { S: 'capped' },
        [A.BY]: { N: '1' },
        [A.EXPIRES_AT_MS]: { N: String(Date.now() - 1) },
      });
      await expect(store.apply('capped', keyed(1, 'k-stale', 60, 3))).rejects.toMatchObject({ code: 'LIMIT_REACHED', counter: 3 });
      expect(Number((await t.get(RECORD('k-stale')))![A.EXPIRES_AT_MS].N)).toBeLessThan(Date.now());
      // Below the maximum the expired key applies afresh, taking over its stale marker.
      expect((await store.apply('capped', { by: -1, maximum: 3 })).counter).toBe(2);
      expect(await store.apply('capped', keyed(1, 'k-stale', 60, 3))).toEqual({ counter: 3, replayed: false });
      expect(await store.apply('capped', keyed(1, 'k-stale', 60, 3))).toEqual({ counter: 3, replayed: true });
    } finally {
      await t.close();
    }
  });

  test('the key is checked before the bound, and a rejection does not rest on the cancellation reasons alone', async () => {
    const t = await table();
    try {
      const store = await t.store();
      expect(await store.apply('full', keyed(2, 'k-first', 60, 3))).toEqual({ counter: 2, replayed: false });
      expect(await store.apply('full', keyed(1, 'k-second', 60, 3))).toEqual({ counter: 3, replayed: false });
      // At the maximum: a recorded key replays (its value folded, or still in its marker), a new one is rejected with the current value.
      expect(await store.apply('full', keyed(2, 'k-first', 60, 3))).toEqual({ counter: 2, replayed: true });
      expect(await store.apply('full', keyed(1, 'k-second', 60, 3))).toEqual({ counter: 3, replayed: true });
      await expect(store.apply('full', keyed(1, 'k-third', 60, 3))).rejects.toMatchObject({ code: 'LIMIT_REACHED', counter: 3 });
      expect(await t.get(RECORD('k-third'))).toBeUndefined();

      // Were a cancellation to report the key's condition as passed although
      // the key is recorded, the store's own look at the key still replays it.
      const misreported = await t.store(async (command, send) => {
        if (command instanceof TransactWriteItemsCommand) {
          throw cancelled([{ Code: 'ConditionalCheckFailed', Item: { [A.ID]: { S: 'full' }, [A.COUNTER]: { N: '3' } } }, { Code: 'None' }]);
        }
        return send(command);
      });
      expect(await misreported.apply('full', keyed(2, 'k-first', 60, 3))).toEqual({ counter: 2, replayed: true });
      expect(await misreported.apply('full', keyed(1, 'k-second', 60, 3))).toEqual({ counter: 3, replayed: true });
      await expect(misreported.apply('full', keyed(1, 'k-fourth', 60, 3))).rejects.toBeInstanceOf(LimitReachedError);
    } finally {
      await t.close();
    }
  });
});

describe('dynamo: conflicts (injected: DynamoDB Local serialises every call and never reports one)', () => {
  test('a transaction cancelled for a conflict applied nothing and is sent again: the change is applied once', async () => {
    const t = await table();
    try {
      let transactions = 0;
      const store = await t.store(async (command, send) => {
        if (command instanceof TransactWriteItemsCommand && ++transactions <= 3) throw cancelled([{ Code: 'TransactionConflict' }, { Code: 'None' }]);
        return send(command);
      });
      expect(await store.apply('conflicted', keyed(4, 'k-conflicted'))).toEqual({ counter: 4, replayed: false });
      expect(transactions).toBe(4);
      expect(await store.read('conflicted')).toBe(4);
    } finally {
      await t.close();
    }
  });

  test('a conflict that never ends → 503 once the budget is spent, nothing applied, no key recorded; the same for an unkeyed write refused throughout', async () => {
    const requestTimeoutMs = 200;
    const t = await table({ requestTimeoutMs });
    try {
      let transactions = 0;
      let refused = 0;
      const store = await t.store(async (command, send) => {
        if (command instanceof TransactWriteItemsCommand) {
          transactions++;
          throw cancelled([{ Code: 'None' }, { Code: 'TransactionConflict' }]);
        }
        if (command instanceof UpdateItemCommand) {
          refused++;
          throw new TransactionConflictException({ message: 'injected: transaction in progress', $metadata: {} });
        }
        return send(command);
      });
      const budget = dynamoBudgetMs(requestTimeoutMs);
      for (const change of [keyed(1, 'k-never'), { by: 1 }]) {
        const t0 = performance.now();
        await expect(store.apply('never', change)).rejects.toBeInstanceOf(BackendUnavailableError);
        const ms = performance.now() - t0;
        expect(ms).toBeLessThan(budget + FAULT_SLACK_MS);
        expect(ms).toBeGreaterThan(budget - 100);
      }
      expect(transactions).toBeGreaterThan(5);
      expect(refused).toBeGreaterThan(5);
      expect(await t.ids()).toEqual([]);
    } finally {
      await t.close();
    }
  });

  test('an unkeyed write refused because a transaction holds the item (TransactionConflictException) is retried', async () => {
    const t = await table();
    try {
      let refused = 0;
      const store = await t.store(async (command, send) => {
        if (command instanceof UpdateItemCommand && refused++ < 5) throw new TransactionConflictException({ message: 'injected: transaction in progress', $metadata: {} });
        return send(command);
      });
      expect(await store.apply('busy', { by: 1 })).toEqual({ counter: 1, replayed: false });
      expect(refused).toBe(6);
    } finally {
      await t.close();
    }
  });

  test('a throttled call applied nothing: retried up to 3 attempts, then 429 THROTTLED with nothing applied (DynamoDB Local never throttles: injected)', async () => {
    const t = await table();
    try {
      let throttled = 0;
      let throttle = 2;
      const store = await t.store(async (command, send) => {
        if ((command instanceof UpdateItemCommand || command instanceof TransactWriteItemsCommand) && throttled < throttle) {
          throttled++;
          throw new ProvisionedThroughputExceededException({ message: 'injected: throttled', $metadata: {} });
        }
        return send(command);
      });
      expect(await store.apply('throttled', { by: 1 })).toEqual({ counter: 1, replayed: false });
      expect(throttled).toBe(2);
      throttled = 0;
      expect(await store.apply('throttled', keyed(1, 'k-throttled'))).toEqual({ counter: 2, replayed: false });
      expect(throttled).toBe(2);
      throttled = 0;
      throttle = 3;
      await expect(store.apply('throttled', { by: 1 })).rejects.toBeInstanceOf(ThrottledError);
      throttled = 0;
      await expect(store.apply('throttled', keyed(1, 'k-throttled-2'))).rejects.toBeInstanceOf(ThrottledError);
      expect(await store.read('throttled')).toBe(2);
      expect(await t.get(RECORD('k-throttled-2'))).toBeUndefined();
    } finally {
      await t.close();
    }
  });

  test('the budget leaves room for one more call: every request\'s worst case is the unkeyed worst case', () => {
    for (const requestTimeoutMs of [2000, 1000, 350]) {
      const worst = dynamoWorstCase({ [DYNAMO_ENV.REQUEST_TIMEOUT_MS]: String(requestTimeoutMs) })!;
      expect(dynamoBudgetMs(requestTimeoutMs) + requestTimeoutMs).toBe(worst.totalMs);
    }
  });
});

describe('dynamo: safe integers without a maximum', () => {
  test('a result outside ±(2^53 − 1) → INVALID_STEP, nothing written, no key recorded; up to the edge is fine', async () => {
    const t = await table();
    try {
      const store = await t.store();
      await t.put({ [A.ID]: { S: 'top' }, [A.COUNTER]: { N: String(Number.MAX_SAFE_INTEGER - 1) } });
      await expect(store.apply('top', { by: 2 })).rejects.toBeInstanceOf(InvalidStepError);
      await expect(store.apply('top', keyed(2, 'k-top'))).rejects.toBeInstanceOf(InvalidStepError);
      expect(await t.get(RECORD('k-top'))).toBeUndefined();
      expect(await store.apply('top', { by: 1 })).toEqual({ counter: Number.MAX_SAFE_INTEGER, replayed: false });

      await t.put({ [A.ID]: { S: 'bottom' }, [A.COUNTER]: { N: String(Number.MIN_SAFE_INTEGER + 1) } });
      await expect(store.apply('bottom', keyed(-2, 'k-bottom'))).rejects.toBeInstanceOf(InvalidStepError);
      expect(await store.apply('bottom', keyed(-1, 'k-bottom'))).toEqual({ counter: Number.MIN_SAFE_INTEGER, replayed: false });

      // A value someone else wrote past the safe range is never changed (DynamoDB numbers hold 38 digits).
      await t.put({ [A.ID]: { S: 'beyond' }, [A.COUNTER]: { N: '18014398509481984' } });
      await expect(store.apply('beyond', { by: 1 })).rejects.toBeInstanceOf(InvalidStepError);
      await expect(store.apply('beyond', keyed(-1, 'k-beyond'))).rejects.toBeInstanceOf(InvalidStepError);
      expect((await t.get('beyond'))![A.COUNTER]).toEqual({ N: '18014398509481984' });
    } finally {
      await t.close();
    }
  });
});

describe('dynamo: calls sent, counted and inspected at a proxy in front of DynamoDB Local', () => {
  test('round trips: unkeyed 1, keyed fresh 2 (the transaction, the marker read), replay 1 (settled or pending), rejection 2; every read strongly consistent, every condition returning the item', async () => {
    const proxy = await startDynamoProxy(ctx().engine.url);
    const t = await table({ endpoint: proxy.url });
    try {
      const store = await t.store();
      const calls = async (work: () => Promise<unknown>) => {
        proxy.reset();
        await work();
        return proxy.calls.map((c) => c.operation).join(' + ');
      };
      expect(await calls(() => store.apply('trips', { by: 1 }))).toBe('UpdateItem');
      expect(await calls(() => store.apply('trips', keyed(1, 'k-1', 60, 100)))).toBe('TransactWriteItems + GetItem');
      // Pending: its value still in the marker.
      expect(await calls(() => store.apply('trips', keyed(1, 'k-1', 60, 100)))).toBe('TransactWriteItems');
      // The next keyed change folds k-1 in its own transaction: still two calls.
      expect(await calls(() => store.apply('trips', keyed(1, 'k-2', 60, 100)))).toBe('TransactWriteItems + GetItem');
      // Settled: its value in the record.
      expect(await calls(() => store.apply('trips', keyed(1, 'k-1', 60, 100)))).toBe('TransactWriteItems');
      // The key reused with the step's sign flipped: 422 from the same one call.
      expect(await calls(() => expect(store.apply('trips', keyed(-1, 'k-1', 60, 100))).rejects.toBeInstanceOf(IdempotencyKeyReusedError))).toBe('TransactWriteItems');
      await store.apply('trips', { by: 97, maximum: 100 });
      // The bound: the key is looked at once more before the 409.
      expect(await calls(() => store.apply('trips', keyed(1, 'k-3', 60, 100)).catch(() => undefined))).toBe('TransactWriteItems + GetItem');
      expect(await calls(() => store.read('trips'))).toBe('GetItem');

      // The flags DynamoDB Local ignores are on the requests.
      proxy.reset();
      await store.apply('flags', keyed(1, 'k-f1'));
      await expect((await t.store(killAfterTransaction)).apply('flags', keyed(1, 'k-f2'))).rejects.toBeInstanceOf(Killed);
      await store.apply('flags', keyed(1, 'k-f2'));
      await store.apply('flags', keyed(1, 'k-f3', 60, 2)).catch(() => undefined);
      await store.read('flags');
      const reads = proxy.calls.filter((c) => c.operation === 'GetItem');
      expect(reads.length).toBeGreaterThanOrEqual(3);
      for (const read of reads) {
        expect({ read: read.input.Key, ConsistentRead: read.input.ConsistentRead }).toEqual({ read: read.input.Key, ConsistentRead: true });
      }
      for (const tx of proxy.calls.filter((c) => c.operation === 'TransactWriteItems')) {
        const [counter, record] = tx.input.TransactItems;
        expect([counter.Update.ReturnValuesOnConditionCheckFailure, record.Put.ReturnValuesOnConditionCheckFailure]).toEqual(['ALL_OLD', 'ALL_OLD']);
      }

      // Contended (measured, printed): 16 callers on one id, 100 keys each sent twice at once, on
      // DynamoDB Local as it is and with DynamoDB's transaction conflicts played. Past its budget a
      // request answers 503 (nothing to assert on a loaded machine but that it applied at most once).
      for (const holdMs of [undefined, 10]) {
        proxy.emulateConflicts(holdMs === undefined ? undefined : { holdMs });
        proxy.reset();
        const stores = await Promise.all(Array.from({ length: 4 }, () => t.store()));
        const tag = `pairs-${holdMs ?? 0}`;
        const result = await runWorkload({
          total: 200,
          concurrency: 16,
          call: async (i, caller) => stores[caller % 4].apply(tag, keyed(1, `${tag}-${Math.floor(i / 2)}`, HOUR)).then(
            (answer) => ({ status: 200, counter: answer.counter }),
            (err) => ({ status: err instanceof BackendUnavailableError ? 503 : 500 }),
          ),
        });
        const sent = proxy.count();
        console.log(`dynamo keyed, contended (${holdMs === undefined ? 'DynamoDB Local as it is' : `conflicts played, hold ${holdMs} ms`}): 200 requests, 100 keys, `
          + `${JSON.stringify(result.statuses)}: ${(proxy.count('TransactWriteItems') / 200).toFixed(2)} transactions and ${(proxy.count('GetItem') / 200).toFixed(2)} reads per request, `
          + `${(sent / 100).toFixed(2)} calls per key; p50 ${result.p50.toFixed(0)} ms, p99 ${result.p99.toFixed(0)} ms`);
        expect(Object.keys(result.statuses).filter((status) => status !== '200' && status !== '503')).toEqual([]);
        // Every key, retried once the conflicts stop, answers one value: each applied exactly once.
        proxy.emulateConflicts(undefined);
        const values = await Promise.all(Array.from({ length: 100 }, async (_, k) => (await store.apply(tag, keyed(1, `${tag}-${k}`, HOUR))).counter!));
        expect([...values].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, k) => k + 1));
        expect(await store.read(tag)).toBe(100);
      }
    } finally {
      await t.close();
      await proxy.close();
    }
  });
});

describe('dynamo: keyed and unkeyed changes together on one hot id (bundled handler)', () => {
  test('300 unkeyed +1 and 300 keyed +2 from 32 callers: nothing lost, one serial path, markers within their cap, only the counter listed', async () => {
    const { fixture, engine } = ctx();
    const namespace = uniqueNamespace('t_dynamo_mixed');
    const handlers = await ctx().containers({ conditional: false }, 8, namespace);
    const transitions: Transition[] = [];
    const result = await runWorkload({
      total: 600,
      concurrency: 32,
      call: async (i, caller) => {
        const withKey = i % 2 === 1;
        const answer = await call(handlers[caller % handlers.length], 'POST', 'dynamo', 'together', withKey ? { by: 2, key: `together-${i}` } : { by: 1 });
        if (answer.status === 200) transitions.push({ by: withKey ? 2 : 1, counter: answer.body.counter });
        return { status: answer.status, counter: answer.body.counter };
      },
    });
    expect(result.statuses).toEqual({ 200: 600 });
    const final = (await call(handlers[0], 'GET', 'dynamo', 'together')).body.counter;
    expect(final).toBe(300 + 2 * 300);
    expect(chainProblem(0, final, transitions)).toBeUndefined();
    expect(await fixture.keys(engine, namespace)).toEqual(['together']);
    const raw = new DynamoDBClient({ endpoint: engine.url, region: LOCAL_AWS_ENV.AWS_REGION, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    try {
      const item = (await raw.send(new GetItemCommand({ TableName: namespace, Key: { [A.ID]: { S: 'together' } }, ConsistentRead: true }))).Item;
      expectMarkerBytesConsistent(item);
    } finally {
      raw.destroy();
    }
  });

  for (const conditional of [false, true]) {
    test(`${conditional ? 'conditional' : 'unconditional'}: with DynamoDB's transaction conflicts played by a proxy, half keyed and half unkeyed from 16 callers → only 200${conditional ? ' and 409' : ''}, one serial path`, async () => {
      const proxy = await startDynamoProxy(ctx().engine.url);
      proxy.emulateConflicts({ holdMs: 10 });
      try {
        const namespace = uniqueNamespace('t_dynamo_conflicts');
        const maximum = conditional ? 500 : undefined;
        const handlers = await ctx().containers(
          { conditional, ...(maximum ? { maximum } : {}), env: { [DYNAMO_ENV.ENDPOINT]: proxy.url } },
          8,
          namespace,
        );
        const transitions: Transition[] = [];
        const sides = { keyed: [] as number[], unkeyed: [] as number[] };
        const result = await runWorkload({
          total: 600,
          concurrency: 16,
          call: async (i, caller) => {
            const withKey = i % 2 === 1;
            const t0 = performance.now();
            const answer = await call(handlers[caller % handlers.length], 'POST', 'dynamo', 'contended', withKey ? { by: 2, key: `contended-${i}` } : { by: 1 });
            (withKey ? sides.keyed : sides.unkeyed).push(performance.now() - t0);
            if (answer.status === 200) transitions.push({ by: withKey ? 2 : 1, counter: answer.body.counter });
            return { status: answer.status, counter: answer.body.counter };
          },
        });
        const refused = proxy.calls.filter((c) => c.refused);
        const p = (v: number[], q: number) => [...v].sort((a, b) => a - b)[Math.floor(v.length * q)].toFixed(0);
        console.log(`dynamo conflicts played (hold 10 ms), ${conditional ? 'conditional' : 'unconditional'}: statuses ${JSON.stringify(result.statuses)}; `
          + `unkeyed: ${proxy.count('UpdateItem')} UpdateItem calls for 300 changes (${refused.filter((c) => c.operation === 'UpdateItem').length} refused), p50 ${p(sides.unkeyed, 0.5)} ms, p99 ${p(sides.unkeyed, 0.99)} ms; `
          + `keyed: ${proxy.count('TransactWriteItems')} transactions (${refused.filter((c) => c.operation === 'TransactWriteItems').length} cancelled for a conflict) and ${proxy.count('GetItem')} reads for 300 changes, p50 ${p(sides.keyed, 0.5)} ms, p99 ${p(sides.keyed, 0.99)} ms`);
        expect(Object.keys(result.statuses).filter((s) => s !== '200' && s !== '409')).toEqual([]);
        if (!conditional) expect(result.statuses).toEqual({ 200: 600 });
        // The conflicts were played: otherwise this proves nothing.
        expect(refused.length).toBeGreaterThan(0);
        const final = (await call(handlers[0], 'GET', 'dynamo', 'contended')).body.counter;
        expect(chainProblem(0, final, transitions)).toBeUndefined();
        if (maximum) expect(final).toBeLessThanOrEqual(maximum);
      } finally {
        await proxy.close();
      }
    }, 180_000);
  }
});
