import { dynamoFixture } from '../../local/backends/dynamo';
import { startDynamoDbLocal } from '../../local/engines/dynamodb-local';
import { Engine } from '../../local/engines/engine';
import { startUnansweredConnects } from '../../local/engines/fault-proxy';
import { loadBundledHandler } from '../../local/lambda-container';
import { DYNAMO_DEFAULTS } from '../../src/backends/dynamo/dynamo-env';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import { call } from '../kit/conformance';

const REQUEST_TIMEOUT_MS = 1500;
/** The store's connect bound (dynamo-counter-store.ts): a share of the request timeout. */
const CONNECT_TIMEOUT_MS = REQUEST_TIMEOUT_MS * DYNAMO_DEFAULTS.connectTimeoutShare;
/** Scheduling slack on a shared machine: bounds are asserted as bound + SLACK. */
const SLACK_MS = 1500;
const UNAVAILABLE_BODY = { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'dynamo' };

/**
 * DynamoDB unreachable → 503 BACKEND_UNAVAILABLE with Retry-After, answered
 * well inside the function timeout (10 s), never a hang or a 500. A refused
 * connection and an endpoint that never answers are the kit's fault contract
 * (test/kit/fault-contract.ts); this file keeps DynamoDB Local hung mid-run
 * and SYNs never answered.
 */
describe('dynamo: engine down or hung', () => {
  let engine: Engine & { pid?: number };
  let handler: ReturnType<typeof loadBundledHandler>;

  beforeAll(async () => {
    engine = await startDynamoDbLocal();
    const env = await dynamoFixture.prepare(engine, 'faults');
    handler = loadBundledHandler(dynamoFixture.entry, { ...env, ATOMIC_COUNTER_LOG: 'off', DYNAMO_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) });
  }, 120_000);
  afterAll(async () => {
    await engine?.stop();
  });

  /**
   * The first change of an id, sent again while it answers 503: on a loaded
   * machine a freshly started DynamoDB Local can take longer than the short
   * request timeout these tests use, which is not what they test. Returns
   * how many times it was applied (a timed-out attempt may be applied too).
   */
  async function warm(id: string): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      const res = await call(handler, 'POST', 'dynamo', id);
      if (res.status === 200 || attempt >= 10) return res.body.counter;
    }
  }

  test('a hung engine (SIGSTOP) → 503 after the request timeout; the engine back → 200 again', async () => {
    const warmed = await warm('k');
    expect(warmed).toBeGreaterThanOrEqual(1);
    const pid = engine.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = performance.now();
      const res = await call(handler, 'POST', 'dynamo', 'k');
      const ms = performance.now() - t0;
      console.log(`dynamo hung: answered ${res.status} after ${ms.toFixed(0)} ms (request timeout 1500 ms)`);
      expect(res).toMatchObject({ status: 503, body: UNAVAILABLE_BODY, headers: { 'Retry-After': '1' } });
      expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // A timed-out write is ambiguous (it may still be applied): the store
    // does not retry it, so it counts at most once.
    const after = await call(handler, 'POST', 'dynamo', 'k');
    expect(after.status).toBe(200);
    expect([warmed + 1, warmed + 2]).toContain(after.body.counter);
  });

  test('a keyed change on a hung engine → 503 after one request timeout; the same key afterwards counts it exactly once', async () => {
    const warmed = await warm('keyed');
    expect(warmed).toBeGreaterThanOrEqual(1);
    const pid = engine.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = performance.now();
      const res = await call(handler, 'POST', 'dynamo', 'keyed', { key: 'hung-1', by: 5 });
      const ms = performance.now() - t0;
      console.log(`dynamo hung, keyed: answered ${res.status} after ${ms.toFixed(0)} ms (request timeout 1500 ms)`);
      expect(res).toMatchObject({ status: 503, body: UNAVAILABLE_BODY, headers: { 'Retry-After': '1' } });
      expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // The transaction may or may not have been applied when the engine
    // stopped; either way the retry with the key answers 6 and counts it once.
    const retry = await call(handler, 'POST', 'dynamo', 'keyed', { key: 'hung-1', by: 5 });
    expect(retry).toMatchObject({ status: 200, body: { counter: warmed + 5 } });
    expect((await call(handler, 'POST', 'dynamo', 'keyed', { key: 'hung-1', by: 5 })).headers['Idempotent-Replayed']).toBe('true');
    expect((await call(handler, 'GET', 'dynamo', 'keyed')).body.counter).toBe(warmed + 5);
  });
});

describe('dynamo: endpoint that never completes a connection (SYNs unanswered)', () => {
  test('a connect timeout (the SDK\'s TimeoutError, no socket code) → 503 within the connect bound, for writes and reads', async () => {
    const port = await startUnansweredConnects();
    try {
      const handler = loadBundledHandler(dynamoFixture.entry, {
        COUNTER_TABLE_NAME: 'unreachable',
        AWS_ENDPOINT_URL_DYNAMODB: `http://${port.host}:${port.port}`,
        AWS_REGION: 'us-east-1',
        DYNAMO_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        ATOMIC_COUNTER_LOG: 'off',
      });
      for (const method of ['POST', 'GET']) {
        const t0 = performance.now();
        const res = await call(handler, method, 'dynamo', 'k');
        const ms = performance.now() - t0;
        console.log(`dynamo connect timeout: ${method} answered ${res.status} after ${ms.toFixed(0)} ms (connect bound ${CONNECT_TIMEOUT_MS} ms)`);
        expect(res).toMatchObject({ status: 503, headers: { 'Retry-After': '1' } });
        expect(res.body).toEqual(UNAVAILABLE_BODY);
        expect(ms).toBeLessThan(CONNECT_TIMEOUT_MS + SLACK_MS);
      }
    } finally {
      await port.close();
    }
  }, 30_000);
});
