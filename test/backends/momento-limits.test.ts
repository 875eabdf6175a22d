/**
 * Momento through the bundled handler on the in-process server: a cache
 * whose setup has not run answers 503 with a log line that says so (issue
 * 19), and Momento's rate limits answer 429 THROTTLED with Retry-After,
 * nothing applied (issue 21).
 */
import * as vm from 'vm';
import { runMomentoSetup } from '../../local/backends/momento';
import { MomentoLocalServer } from '../../local/engines/momento-server';
import { loadBundledHandler, proxyEvent, ProxyHandler } from '../../local/lambda-container';
import { MOMENTO_BUNDLES, MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { call } from '../kit/conformance';

let server: MomentoLocalServer;
let endpoint: string;
beforeAll(async () => {
  server = await MomentoLocalServer.start();
  endpoint = `${server.host}:${server.port}`;
});
afterAll(async () => {
  await server?.stop();
});

function container(cacheName: string, conditional: boolean): ProxyHandler {
  return loadBundledHandler(MOMENTO_BUNDLES.counter, {
    [MOMENTO_ENV.LOCAL_ENDPOINT]: endpoint,
    [MOMENTO_ENV.CACHE_NAME]: cacheName,
    [MOMENTO_ENV.CLIENT_TIMEOUT_MS]: '15000',
    [MOMENTO_ENV.CONNECT_TIMEOUT_MS]: '15000',
    USE_CONDITIONAL_WRITES: String(conditional),
    MAX_COUNTER_VALUE: '1000',
  });
}

/** The handler's log lines written while `run` runs (the bundle writes to the real process's stdout). */
async function logLinesOf<T>(run: () => Promise<T>): Promise<{ result: T; lines: Array<Record<string, unknown>> }> {
  const stdout = (vm.runInThisContext('process') as NodeJS.Process).stdout;
  const original = stdout.write;
  const written: string[] = [];
  stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    written.push(String(chunk));
    return (original as (...args: unknown[]) => boolean).call(stdout, chunk, ...rest);
  }) as typeof stdout.write;
  try {
    const result = await run();
    const lines = written.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    return { result, lines };
  } finally {
    stdout.write = original;
  }
}

describe('a cache whose setup has not run', () => {
  test.each([false, true])('conditional=%p: plain, keyed and read requests answer 503 with Retry-After, and the log line says the cache is missing and why', async (conditional) => {
    const handler = container(`never-set-up-${conditional}`, conditional);
    const { result, lines } = await logLinesOf(async () => [
      await call(handler, 'POST', 'momento', 'c'),
      await call(handler, 'POST', 'momento', 'c', { key: 'k-1' }),
      await call(handler, 'GET', 'momento', 'c'),
    ]);
    for (const answer of result) {
      expect(answer).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
      expect(Number(answer.headers['Retry-After'])).toBeGreaterThan(0);
    }
    const requestLines = lines.filter((l) => l.statusCode === 503);
    expect(requestLines).toHaveLength(3);
    for (const line of requestLines) {
      expect(line).toMatchObject({ level: 'WARN', backend: 'momento', code: 'BACKEND_UNAVAILABLE' });
      expect(line.error).toMatch(/Momento cache "never-set-up-(true|false)" does not exist: the setup resource \(Custom::MomentoSetup\) that creates it has not run/);
    }
  });
});

describe('Momento\'s rate limits', () => {
  test.each([false, true])('conditional=%p: a throttled call answers 429 THROTTLED with Retry-After, for plain and keyed changes and reads; nothing is applied, and the key is free afterwards', async (conditional) => {
    const cacheName = `throttled-${conditional}`;
    await runMomentoSetup({ [MOMENTO_ENV.LOCAL_ENDPOINT]: endpoint }, cacheName);
    const handler = container(cacheName, conditional);
    expect(await call(handler, 'POST', 'momento', 'hot')).toMatchObject({ status: 200, body: { counter: 1 } });
    server.faults = { rateLimited: true };
    try {
      // Straight to the handler: docs/openapi.json documents only API
      // Gateway's own 429 so far (issue 21 adds THROTTLED to it).
      const raw = async (method: string, headers: Record<string, string> = {}, query: Record<string, string> = {}) => {
        const res = await handler(proxyEvent(method, 'momento', 'hot', headers, query));
        return { status: res.statusCode, body: JSON.parse(res.body), headers: res.headers ?? {} };
      };
      for (const answer of [
        await raw('POST'),
        await raw('POST', {}, { by: '5' }),
        await raw('POST', { 'Idempotency-Key': `k-${conditional}` }),
        await raw('GET'),
      ]) {
        expect(answer).toMatchObject({ status: 429, body: { code: 'THROTTLED', backend: 'momento' } });
        expect(Number(answer.headers['Retry-After'])).toBeGreaterThan(0);
      }
    } finally {
      server.faults = {};
    }
    expect(await call(handler, 'GET', 'momento', 'hot')).toMatchObject({ status: 200, body: { counter: 1 } });
    expect(await call(handler, 'POST', 'momento', 'other', { key: `k-${conditional}`, by: 2 })).toMatchObject({ status: 200, body: { counter: 2 } });
  });
});
