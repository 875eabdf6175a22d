/**
 * DynamoDB throttling (issue 21): what a throttled call answers. DynamoDB
 * Local never throttles, so the exceptions are injected here on the store's
 * client; the scale model (a throttling proxy in front of DynamoDB Local,
 * test/backends/dynamo-shards-scale.test.ts) plays them on the wire.
 */
import {
  DynamoDBClient,
  ProvisionedThroughputExceededException,
  RequestLimitExceeded,
  ThrottlingException,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { uniqueNamespace } from '../../local/backends/fixture';
import { startDynamoProxy } from '../../local/engines/dynamodb-proxy';
import { KEY_RANGE_WRITE_REASON, TokenBucket, WriteRateLimit, writesOf } from '../../local/engines/dynamodb-throttle';
import { loadCounterContainers } from '../../local/lambda-container';
import { DYNAMO_BUNDLES, DYNAMO_DEFAULTS, DYNAMO_ENV } from '../../src/backends/dynamo/dynamo-env';
import { readDynamoConfig } from '../../src/backends/dynamo/runtime/dynamo-config';
import { DynamoCounterStore } from '../../src/backends/dynamo/runtime/dynamo-counter-store';
import { ThrottledError } from '../../src/runtime/errors';
import { errorResponse } from '../../src/runtime/http';
import { call, useBackend } from '../kit/conformance';

type Send = (command: any) => Promise<any>;
const ctx = useBackend('dynamo');

/** A store on a fresh table whose every command goes through `intercept` first. */
async function storeWith(intercept: (command: any, send: Send) => Promise<any>): Promise<DynamoCounterStore> {
  const env = await ctx().prepare(uniqueNamespace('t_dynamo_throttle'));
  const store = await DynamoCounterStore.create(readDynamoConfig(env));
  const client = (store as unknown as { client: DynamoDBClient }).client;
  const send: Send = client.send.bind(client) as Send;
  (client as unknown as { send: Send }).send = (command: any) => intercept(command, send);
  return store;
}

const keyed = (key: string) => ({ by: 1, idempotency: { key, retentionSeconds: 3600 } });
const meta = { $metadata: {} };

describe('dynamo: throttling → 429 THROTTLED with Retry-After', () => {
  test.each([
    ['ProvisionedThroughputExceededException', () => new ProvisionedThroughputExceededException({ message: 'injected', ...meta })],
    ['ThrottlingException', () => new ThrottlingException({ message: 'injected', ...meta })],
    ['RequestLimitExceeded', () => new RequestLimitExceeded({ message: 'injected', ...meta })],
  ])('%s on every attempt: 3 attempts within the budget, then ThrottledError (nothing applied)', async (_name, error) => {
    let throttled = 0;
    let throttling = true;
    const store = await storeWith(async (command, send) => {
      if (throttling && (command instanceof UpdateItemCommand || command instanceof TransactWriteItemsCommand)) {
        throttled++;
        throw error();
      }
      return send(command);
    });
    try {
      const err = await store.apply('hot', { by: 1 }).catch((e) => e);
      expect(err).toBeInstanceOf(ThrottledError);
      expect(err.retryAfterSeconds).toBe(1);
      expect(throttled).toBe(DYNAMO_DEFAULTS.retryAttempts);
      throttled = 0;
      await expect(store.apply('hot', keyed('k1'))).rejects.toBeInstanceOf(ThrottledError);
      expect(throttled).toBe(DYNAMO_DEFAULTS.retryAttempts);
      throttling = false;
      expect(await store.read('hot')).toBe(0);
      // The key was not recorded: the same key is a first use now.
      expect(await store.apply('hot', keyed('k1'))).toEqual({ counter: 1, replayed: false });
      // What reaches the client: 429, THROTTLED, Retry-After, a fixed body.
      const answer = errorResponse(err, { id: 'hot', by: 1, backend: 'dynamo', useConditionalWrites: false });
      expect(answer.statusCode).toBe(429);
      expect(answer.headers?.['Retry-After']).toBe('1');
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'THROTTLED', backend: 'dynamo' });
    } finally {
      await store.close();
    }
  });

  test('a keyed change\'s transaction cancelled with a ThrottlingError reason: retried, then ThrottledError; once the throttle lifts, applied once', async () => {
    let cancelled = 0;
    let limit = Infinity;
    const store = await storeWith(async (command, send) => {
      if (command instanceof TransactWriteItemsCommand && cancelled < limit) {
        cancelled++;
        throw new TransactionCanceledException({
          message: 'Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError, None]',
          CancellationReasons: [{ Code: 'ThrottlingError', Message: 'Throughput exceeds the current capacity for one or more global secondary indexes.' }, { Code: 'None' }],
          ...meta,
        });
      }
      return send(command);
    });
    try {
      await expect(store.apply('tx', keyed('k-tx'))).rejects.toBeInstanceOf(ThrottledError);
      expect(cancelled).toBe(DYNAMO_DEFAULTS.retryAttempts);
      cancelled = 0;
      limit = 1;
      expect(await store.apply('tx', keyed('k-tx'))).toEqual({ counter: 1, replayed: false });
      expect(cancelled).toBe(1);
      expect(await store.apply('tx', keyed('k-tx'))).toEqual({ counter: 1, replayed: true });
      expect(await store.read('tx')).toBe(1);
    } finally {
      await store.close();
    }
  });

  test('a throttle that lifts within the retries is no answer at all: the change is applied once', async () => {
    let throttled = 0;
    const store = await storeWith(async (command, send) => {
      if (command instanceof UpdateItemCommand && throttled < DYNAMO_DEFAULTS.retryAttempts - 1) {
        throttled++;
        throw new ThrottlingException({ message: 'injected', ...meta });
      }
      return send(command);
    });
    try {
      expect(await store.apply('lifts', { by: 1 })).toEqual({ counter: 1, replayed: false });
      expect(await store.read('lifts')).toBe(1);
    } finally {
      await store.close();
    }
  });
});

describe('the scale model: a token bucket per partition key (injected clock, no wall time)', () => {
  test('a bucket starts full, pays only what it holds, refills at its rate up to its capacity', () => {
    let now = 0;
    const bucket = new TokenBucket(100, 100, () => now);
    // A burst of one second's units, then nothing.
    for (let i = 0; i < 100; i++) expect(bucket.take(1)).toBe(true);
    expect(bucket.take(1)).toBe(false);
    expect(bucket.waitMs(1)).toBe(10);
    now += 10;
    expect(bucket.take(1)).toBe(true);
    expect(bucket.take(1)).toBe(false);
    // A transactional write (2 units) waits for two.
    now += 15;
    expect(bucket.take(2)).toBe(false);
    now += 5;
    expect(bucket.take(2)).toBe(true);
    // An idle minute refills no more than the capacity.
    now += 60_000;
    expect(bucket.available()).toBe(100);
    // Sustained: over 10 s of 1 ms steps, the full bucket (100) plus 9.999 s of refill (999 whole units).
    let accepted = 0;
    for (let t = 0; t < 10_000; t++) {
      now += 1;
      while (bucket.take(1)) accepted++;
    }
    expect(accepted).toBe(100 + 999);
  });

  test('units: 1 per single-item write, 2 per transactional item, none for reads; all or nothing per call; keys are separate', () => {
    let now = 0;
    const limit = new WriteRateLimit({ unitsPerSecond: 4, clock: () => now });
    const update = (id: string) => writesOf('UpdateItem', { TableName: 't', Key: { id: { S: id } } });
    const tx = writesOf('TransactWriteItems', {
      TransactItems: [{ Update: { TableName: 't', Key: { id: { S: 'a' } } } }, { Put: { TableName: 't', Item: { id: { S: 'b' }, n: { N: '1' } } } }],
    });
    expect(update('a')).toEqual([{ key: expect.any(String), units: 1 }]);
    expect(tx.map((w) => w.units)).toEqual([2, 2]);
    expect(writesOf('GetItem', { TableName: 't', Key: { id: { S: 'a' } } })).toEqual([]);
    expect(writesOf('BatchGetItem', { RequestItems: { t: { Keys: [{ id: { S: 'a' } }] } } })).toEqual([]);
    expect(limit.admit(update('a')).size).toBe(0); // a: 3 left
    expect(limit.admit(tx).size).toBe(0); // a: 1, b: 2
    const short = limit.admit(tx); // a is short: nothing is taken from b either
    expect([...short]).toEqual([tx[0].key]);
    expect(limit.admit(update('b')).size).toBe(0); // b: 1
    expect(limit.admit(update('b')).size).toBe(0); // b: 0
    expect(limit.admit(update('b')).size).toBe(1);
    expect(limit.admit(update('c')).size).toBe(0); // another key, its own bucket
    now += 250; // one unit back on every key
    expect(limit.admit(update('b')).size).toBe(0);
  });
});

describe('dynamo: a throttled hot id through the bundled handler (the scale model on the wire)', () => {
  test('past its key\'s rate a change answers 429 THROTTLED with Retry-After (keyed or not), nothing applied; GET is not limited', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_dynamo_throttle'));
    const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
    try {
      // One unit now, the next in 100 s: no slow machine refills it during the test.
      proxy.throttleWrites({ unitsPerSecond: 0.01, burstSeconds: 100 });
      const [handler] = loadCounterContainers(DYNAMO_BUNDLES.counter, { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url }, { conditional: false });
      expect((await call(handler, 'POST', 'dynamo', 'hot')).body.counter).toBe(1);
      const throttled = await call(handler, 'POST', 'dynamo', 'hot');
      expect(throttled.status).toBe(429);
      expect(throttled.headers['Retry-After']).toBe('1');
      expect(throttled.body).toMatchObject({ code: 'THROTTLED', backend: 'dynamo' });
      const keyedAnswer = await call(handler, 'POST', 'dynamo', 'hot', { key: 'k-hot' });
      expect(keyedAnswer).toMatchObject({ status: 429, body: { code: 'THROTTLED' } });
      expect((await call(handler, 'GET', 'dynamo', 'hot')).body.counter).toBe(1);
      // Each refused request was tried 3 times, each answered by the proxy with DynamoDB's error.
      const refused = proxy.calls.filter((c) => c.throttled);
      expect(refused.length).toBe(2 * DYNAMO_DEFAULTS.retryAttempts);
      // Another id has its own partition's rate.
      expect((await call(handler, 'POST', 'dynamo', 'cold')).status).toBe(200);
      expect(KEY_RANGE_WRITE_REASON).toBe('TableWriteKeyRangeThroughputExceeded');
    } finally {
      await proxy.close();
    }
  });
});
