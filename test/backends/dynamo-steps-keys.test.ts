/**
 * DynamoDB-specific checks of steps (`?by=N`) and exactly-once changes
 * (`Idempotency-Key`) on DynamoDB Local: what a keyed change leaves in the
 * table (the counter item, the key record, no marker), a request that died
 * between the transaction and the end of its bookkeeping, the order of that
 * bookkeeping, the sweep of left-over markers, an expired key record being
 * replaced, transaction conflicts (which DynamoDB Local never produces,
 * injected), the rejection's key check, the safe-integer edges, and keyed and
 * unkeyed changes mixed on one hot id. The shared contracts
 * (test/kit/steps-contract.ts, test/kit/exactly-once-contract.ts) cover what
 * every backend shares.
 */
import {
  AttributeValue,
  DynamoDBClient,
  GetItemCommand,
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
import { runWorkload } from '../../local/workload';
import { DYNAMO_ATTRIBUTES as A, DYNAMO_DEFAULTS, DYNAMO_ENV, DYNAMO_KEYS, dynamoKeyedBudgetMs, dynamoWorstCase } from '../../src/backends/dynamo/dynamo-env';
import { readDynamoConfig } from '../../src/backends/dynamo/runtime/dynamo-config';
import { DynamoCounterStore, markerExpiry, markerName } from '../../src/backends/dynamo/runtime/dynamo-counter-store';
import { BackendUnavailableError, IdempotencyKeyReusedError, InvalidStepError, LimitReachedError } from '../../src/runtime/errors';
import { CounterChange } from '../../src/runtime/store';
import { call, useBackend } from '../kit/conformance';

type Item = Record<string, AttributeValue>;
type Send = (command: any) => Promise<any>;

const ctx = useBackend('dynamo');
const RECORD = (key: string) => DYNAMO_KEYS.RECORD_PREFIX + key;
const keyed = (by: number, key: string, retentionSeconds = 60, maximum?: number): CounterChange =>
  ({ by, idempotency: { key, retentionSeconds }, ...(maximum === undefined ? {} : { maximum }) });

/** A fresh table, a raw client on it, and stores (optionally with their calls intercepted). */
async function table(requestTimeoutMs?: number) {
  const env = await ctx().prepare(uniqueNamespace('t_dynamo_keys'));
  const config = readDynamoConfig({ ...env, ...(requestTimeoutMs ? { [DYNAMO_ENV.REQUEST_TIMEOUT_MS]: String(requestTimeoutMs) } : {}) });
  const raw = new DynamoDBClient({
    endpoint: env[DYNAMO_ENV.ENDPOINT],
    region: LOCAL_AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: LOCAL_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: LOCAL_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
  const stores: DynamoCounterStore[] = [];
  const TableName = config.tableName;
  return {
    TableName,
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

/** The attribute names of an item that are markers of keyed changes. */
function markersOf(item: Item | undefined): string[] {
  return Object.keys(item ?? {}).filter((name) => markerExpiry(name) !== undefined);
}

/** What the store's transaction does, done by hand: the change applied, the key recorded, the value only in the marker. */
async function transactionOnly(t: Awaited<ReturnType<typeof table>>, id: string, by: number, key: string, expiresAtMs: number): Promise<void> {
  await t.raw.send(new TransactWriteItemsCommand({
    TransactItems: [
      {
        Update: {
          TableName: t.TableName,
          Key: { [A.ID]: { S: id } },
          UpdateExpression: 'SET #c = if_not_exists(#c, :zero) + :by, #m = if_not_exists(#c, :zero) + :by',
          ExpressionAttributeNames: { '#c': A.COUNTER, '#m': markerName(key, expiresAtMs) },
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
}

function cancelled(codes: Array<{ Code: string; Item?: Item }>): TransactionCanceledException {
  return new TransactionCanceledException({ message: `Transaction cancelled [${codes.map((c) => c.Code).join(', ')}]`, $metadata: {}, CancellationReasons: codes });
}

describe('dynamo: what a keyed change leaves in the table', () => {
  test('the counter item is {id, counter} again, the key record is {boundId, by, result, expiresAt, expiresAtMs}; keys() lists the counter only', async () => {
    const t = await table();
    try {
      const store = await t.store();
      const before = Date.now();
      expect(await store.apply('shape', keyed(3, 'k-shape', 60))).toEqual({ counter: 3, replayed: false });
      const after = Date.now();
      expect(await t.get('shape')).toEqual({ [A.ID]: { S: 'shape' }, [A.COUNTER]: { N: '3' } });
      const record = (await t.get(RECORD('k-shape')))!;
      expect(Object.keys(record).sort()).toEqual([A.BOUND_ID, A.BY, A.EXPIRES_AT, A.EXPIRES_AT_MS, A.ID, A.RESULT].sort());
      expect(record[A.BOUND_ID]).toEqual({ S: 'shape' });
      expect(record[A.BY]).toEqual({ N: '3' });
      expect(record[A.RESULT]).toEqual({ N: '3' });
      const expiresAtMs = Number(record[A.EXPIRES_AT_MS].N);
      expect(expiresAtMs).toBeGreaterThanOrEqual(before + 60_000);
      expect(expiresAtMs).toBeLessThanOrEqual(after + 60_000);
      // The TTL attribute is whole seconds, rounded up: DynamoDB never deletes a record early.
      expect(Number(record[A.EXPIRES_AT].N)).toBe(Math.ceil(expiresAtMs / 1000));
      expect(await ctx().fixture.keys(ctx().engine, t.TableName)).toEqual(['shape']);
      expect(await t.ids()).toEqual([RECORD('k-shape'), 'shape'].sort());
    } finally {
      await t.close();
    }
  });
});

describe('dynamo: a keyed change interrupted after its transaction', () => {
  test('a request that died after the transaction (marker on the counter, no result): the key replays the value it produced, completes the record, removes the marker', async () => {
    const t = await table();
    try {
      const store = await t.store();
      expect((await store.apply('died', { by: 10 })).counter).toBe(10);
      const expiresAtMs = Date.now() + 60_000;
      await transactionOnly(t, 'died', 5, 'k-died', expiresAtMs);
      // Others change the counter meanwhile: the replay must answer 15, not the current value.
      expect((await store.apply('died', { by: 1 })).counter).toBe(16);
      expect(markersOf(await t.get('died'))).toEqual([markerName('k-died', expiresAtMs)]);

      expect(await store.apply('died', keyed(5, 'k-died'))).toEqual({ counter: 15, replayed: true });
      expect((await t.get(RECORD('k-died')))![A.RESULT]).toEqual({ N: '15' });
      expect(await t.get('died')).toEqual({ [A.ID]: { S: 'died' }, [A.COUNTER]: { N: '16' } });
      // The binding holds for an interrupted change too.
      await expect(store.apply('elsewhere', keyed(5, 'k-died'))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
      await expect(store.apply('died', keyed(4, 'k-died'))).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
      expect(await store.read('elsewhere')).toBe(0);
      expect(await store.read('died')).toBe(16);
    } finally {
      await t.close();
    }
  });

  test('the result is written before the marker is removed: when writing it fails the request answers 503, and the retry replays the value', async () => {
    const t = await table();
    try {
      let failResultWrite = true;
      const flaky = await t.store(async (command, send) => {
        if (failResultWrite && command instanceof UpdateItemCommand && command.input.UpdateExpression?.startsWith('SET #r')) {
          failResultWrite = false;
          throw Object.assign(new Error('injected: the call timed out'), { name: 'TimeoutError' });
        }
        return send(command);
      });
      await expect(flaky.apply('ordered', keyed(7, 'k-ordered'))).rejects.toBeInstanceOf(BackendUnavailableError);
      // Applied and recorded; the value is still in the marker, nowhere else.
      const item = await t.get('ordered');
      expect(item?.[A.COUNTER]).toEqual({ N: '7' });
      expect(markersOf(item)).toHaveLength(1);
      expect((await t.get(RECORD('k-ordered')))?.[A.RESULT]).toBeUndefined();

      const store = await t.store();
      expect(await store.apply('ordered', keyed(7, 'k-ordered'))).toEqual({ counter: 7, replayed: true });
      expect(markersOf(await t.get('ordered'))).toEqual([]);
      expect((await t.get(RECORD('k-ordered')))?.[A.RESULT]).toEqual({ N: '7' });
      expect(await store.read('ordered')).toBe(7);
    } finally {
      await t.close();
    }
  });

  test('a marker whose key expired more than the grace ago is swept by the next keyed change on the counter; a recent one stays', async () => {
    const t = await table();
    try {
      const store = await t.store();
      const stale = markerName('left-behind', Date.now() - DYNAMO_DEFAULTS.markerSweepGraceMs - 1000);
      const recent = markerName('in-grace', Date.now() - 1000);
      await t.put({ [A.ID]: { S: 'swept' }, [A.COUNTER]: { N: '4' }, [stale]: { N: '3' }, [recent]: { N: '4' } });
      expect(await store.apply('swept', keyed(1, 'k-sweeper'))).toEqual({ counter: 5, replayed: false });
      expect(markersOf(await t.get('swept'))).toEqual([recent]);
      // Unkeyed changes leave markers alone.
      expect((await store.apply('swept', { by: 1 })).counter).toBe(6);
      expect(markersOf(await t.get('swept'))).toEqual([recent]);
    } finally {
      await t.close();
    }
  });
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
      expect([record[A.BOUND_ID].S, record[A.BY].N, record[A.RESULT].N]).toEqual(['renewed', '2', '2']);
      expect(await store.apply('renewed', keyed(2, 'k-expired'))).toEqual({ counter: 2, replayed: true });
      expect(await store.read('somewhere-else')).toBe(0);
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
      // At the maximum: a recorded key replays, a new one is rejected with the current value.
      expect(await store.apply('full', keyed(2, 'k-first', 60, 3))).toEqual({ counter: 2, replayed: true });
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

  test('a conflict that never ends → 503 once the keyed budget is spent, nothing applied, no key recorded', async () => {
    const requestTimeoutMs = 200;
    const t = await table(requestTimeoutMs);
    try {
      let transactions = 0;
      const store = await t.store(async (command, send) => {
        if (command instanceof TransactWriteItemsCommand) {
          transactions++;
          throw cancelled([{ Code: 'None' }, { Code: 'TransactionConflict' }]);
        }
        return send(command);
      });
      const t0 = performance.now();
      await expect(store.apply('never', keyed(1, 'k-never'))).rejects.toBeInstanceOf(BackendUnavailableError);
      const ms = performance.now() - t0;
      const budget = dynamoKeyedBudgetMs(requestTimeoutMs);
      expect(ms).toBeLessThan(budget + 500);
      expect(ms).toBeGreaterThan(budget - 100);
      expect(transactions).toBeGreaterThan(5);
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
        if (command instanceof UpdateItemCommand && refused++ < 2) throw new TransactionConflictException({ message: 'injected: transaction in progress', $metadata: {} });
        return send(command);
      });
      expect(await store.apply('busy', { by: 1 })).toEqual({ counter: 1, replayed: false });
      expect(refused).toBe(3);
    } finally {
      await t.close();
    }
  });

  test('the keyed budget leaves room for one more call: its worst case is the unkeyed worst case', () => {
    for (const requestTimeoutMs of [2000, 1000, 350]) {
      const worst = dynamoWorstCase({ [DYNAMO_ENV.REQUEST_TIMEOUT_MS]: String(requestTimeoutMs) })!;
      expect(dynamoKeyedBudgetMs(requestTimeoutMs) + requestTimeoutMs).toBe(worst.totalMs);
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

describe('dynamo: keyed and unkeyed changes together on one hot id (bundled handler)', () => {
  test('300 unkeyed +1 and 300 keyed +2 from 32 callers: nothing lost, one serial path, every marker removed, only the counter listed', async () => {
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
    const t = { raw: new DynamoDBClient({ endpoint: engine.url, region: LOCAL_AWS_ENV.AWS_REGION, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }) };
    try {
      const item = (await t.raw.send(new GetItemCommand({ TableName: namespace, Key: { [A.ID]: { S: 'together' } }, ConsistentRead: true }))).Item;
      expect(markersOf(item)).toEqual([]);
    } finally {
      t.raw.destroy();
    }
  });
});
