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
import { DYNAMO_DEFAULTS } from '../../src/backends/dynamo/dynamo-env';
import { readDynamoConfig } from '../../src/backends/dynamo/runtime/dynamo-config';
import { DynamoCounterStore } from '../../src/backends/dynamo/runtime/dynamo-counter-store';
import { ThrottledError } from '../../src/runtime/errors';
import { errorResponse } from '../../src/runtime/http';
import { useBackend } from '../kit/conformance';

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
