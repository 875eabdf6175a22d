import { dynamoFixture } from '../local/backends/dynamo';
import { startDynamoDbLocal } from '../local/engines/dynamodb-local';
import { Engine } from '../local/engines/engine';
import { loadBundledHandler } from '../local/lambda-container';
import { call } from './kit/conformance';

/**
 * DynamoDB unreachable → 503 BACKEND_UNAVAILABLE with Retry-After, answered
 * well inside the function timeout (10 s), never a hang or a 500.
 */
describe('dynamo: engine down or hung', () => {
  let engine: Engine & { pid?: number };
  let handler: ReturnType<typeof loadBundledHandler>;

  beforeAll(async () => {
    engine = await startDynamoDbLocal();
    const env = await dynamoFixture.prepare(engine, 'faults');
    handler = loadBundledHandler(dynamoFixture.entry, { ...env, ATOMIC_COUNTER_LOG: 'off', DYNAMO_REQUEST_TIMEOUT_MS: '1500' });
  }, 120_000);
  afterAll(async () => {
    await engine?.stop();
  });

  test('a hung engine (SIGSTOP) → 503 after the request timeout; the engine back → 200 again', async () => {
    expect((await call(handler, 'POST', 'dynamo', 'k')).body.counter).toBe(1);
    const pid = engine.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = performance.now();
      const res = await call(handler, 'POST', 'dynamo', 'k');
      const ms = performance.now() - t0;
      console.log(`dynamo hung: answered ${res.status} after ${ms.toFixed(0)} ms (request timeout 1500 ms)`);
      expect(res).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', backend: 'dynamo' }, headers: { 'Retry-After': '1' } });
      expect(ms).toBeLessThan(10_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // A timed-out write is ambiguous (it may still be applied): the store
    // does not retry it, so it counts at most once.
    const after = await call(handler, 'POST', 'dynamo', 'k');
    expect(after.status).toBe(200);
    expect([2, 3]).toContain(after.body.counter);
  });

  test('a stopped engine → 503 quickly (connection refused), for writes and reads', async () => {
    await engine.stop();
    for (const method of ['POST', 'GET']) {
      const t0 = performance.now();
      const res = await call(handler, method, 'dynamo', 'k');
      const ms = performance.now() - t0;
      console.log(`dynamo stopped: ${method} answered ${res.status} after ${ms.toFixed(0)} ms`);
      expect(res).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
      expect(res.body.error).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
      expect(ms).toBeLessThan(10_000);
    }
  });
});
