/**
 * The scale model (issue 21): DynamoDB's per-partition write limit, scaled
 * down, enforced by a throttling proxy in front of DynamoDB Local
 * (local/engines/dynamodb-throttle.ts), and one hot id offered 5× that
 * limit through the bundled handler, unsharded and with 8 shards.
 *
 * Nothing here asserts a rate. Requests are paced open-loop at 5× (or 7×)
 * the limit (each sent a fixed interval after the one before, so a stalled
 * machine sends slower, never in a catch-up burst); then:
 * - unsharded, the proxy lets through at most burst + limit × elapsed, so
 *   as long as the run takes less than (requests − burst) / limit seconds
 *   (49 s here, against 10 s nominal) some requests must answer 429, each
 *   with Retry-After;
 * - with 8 shards the offered rate (≤ 7× the limit however slow the
 *   machine) is under the id's capacity (8× the limit), and a throttled
 *   slot sends the change to the next one, so none answers 429.
 * The figures are printed.
 */
import { uniqueNamespace } from '../../local/backends/fixture';
import { startDynamoProxy } from '../../local/engines/dynamodb-proxy';
import { loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { DYNAMO_BUNDLES, DYNAMO_ENV } from '../../src/backends/dynamo/dynamo-env';
import { sleep } from '../../src/runtime/retry';
import { call, useBackend } from '../kit/conformance';
import { shardsEnv } from '../kit/shards-contract';

const ctx = useBackend('dynamo');

/**
 * Write units per second per key: DynamoDB's 1,000 scaled down 250×, so
 * that this machine (about 30 paced requests per second through the
 * handler and the proxy when shared) can offer 7× it.
 */
const LIMIT = 4;
const REQUESTS = 200;

interface Run {
  shards: number;
  offered: number;
  seconds: number;
  statuses: Record<number, number>;
  retryAfter: Set<string>;
  throttledCalls: number;
  total: number;
}

/** Offers REQUESTS changes of one hot id at `offered` per second (at most), through 4 containers configured with `shards`. */
async function offer(shards: number, offered: number): Promise<Run> {
  const env = await ctx().prepare(uniqueNamespace('t_dynamo_scale'));
  const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
  try {
    const handlers: ProxyHandler[] = loadCounterContainers(DYNAMO_BUNDLES.counter, { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url }, {
      conditional: false,
      env: shardsEnv(shards),
    }, 4);
    // Warm the containers (and, sharded, learn the width) before the clock starts: not counted.
    for (const h of handlers) expect((await call(h, 'GET', 'dynamo', 'warm')).status).toBe(200);
    proxy.throttleWrites({ unitsPerSecond: LIMIT, burstSeconds: 1 });
    const statuses: Record<number, number> = {};
    const retryAfter = new Set<string>();
    const pending: Promise<void>[] = [];
    const started = performance.now();
    for (let i = 0; i < REQUESTS; i++) {
      const sentAt = performance.now();
      pending.push(call(handlers[i % handlers.length], 'POST', 'dynamo', 'hot').then((answer) => {
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        if (answer.status === 429) retryAfter.add(answer.headers['Retry-After']);
      }));
      await sleep(Math.max(0, 1000 / offered - (performance.now() - sentAt)));
    }
    await Promise.all(pending);
    const seconds = (performance.now() - started) / 1000;
    proxy.throttleWrites(undefined);
    const total = (await call(handlers[0], 'GET', 'dynamo', 'hot')).body.counter;
    const throttledCalls = proxy.calls.filter((c) => c.throttled).length;
    return { shards, offered, seconds, statuses, retryAfter, throttledCalls, total };
  } finally {
    await proxy.close();
  }
}

function print(run: Run): void {
  const accepted = run.statuses[200] ?? 0;
  // eslint-disable-next-line no-console
  console.log(`scale model, limit ${LIMIT} units/s per key, paced at ${run.offered}/s (${REQUESTS} requests): shards ${run.shards}: `
    + `${run.seconds.toFixed(1)} s, offered ${(REQUESTS / run.seconds).toFixed(1)}/s, accepted ${accepted} (${(accepted / run.seconds).toFixed(1)}/s = `
    + `${(accepted / run.seconds / LIMIT).toFixed(1)}× the limit), 429: ${run.statuses[429] ?? 0}, throttled calls at the proxy: ${run.throttledCalls}`);
}

describe('dynamo scale model: a hot id offered past its per-key write limit', () => {
  test('unsharded, offered 5× the limit: accepted writes stay within it (burst + limit × elapsed), the rest answer 429 THROTTLED with Retry-After', async () => {
    const run = await offer(1, 5 * LIMIT);
    print(run);
    const accepted = run.statuses[200] ?? 0;
    expect(accepted + (run.statuses[429] ?? 0)).toBe(REQUESTS);
    expect(accepted).toBeLessThanOrEqual(LIMIT + Math.ceil(LIMIT * run.seconds));
    expect(run.statuses[429] ?? 0).toBeGreaterThan(0);
    expect([...run.retryAfter]).toEqual(['1']);
    expect(run.total).toBe(accepted);
  });

  test.each([2, 4])('%i shards, offered 5× the limit (figures for the curve): every accepted change counted, every refusal a 429 with Retry-After', async (shards) => {
    const run = await offer(shards, 5 * LIMIT);
    print(run);
    const accepted = run.statuses[200] ?? 0;
    expect(accepted + (run.statuses[429] ?? 0)).toBe(REQUESTS);
    expect(accepted).toBeLessThanOrEqual(shards * (LIMIT + Math.ceil(LIMIT * run.seconds)));
    expect([...run.retryAfter].filter((v) => v !== '1')).toEqual([]);
    expect(run.total).toBe(accepted);
  });

  test.each([5, 7])('8 shards, offered %i× the limit (under the 8× the id now takes): every change accepted (no 429), the total exact', async (times) => {
    const run = await offer(8, times * LIMIT);
    print(run);
    expect(run.statuses).toEqual({ 200: REQUESTS });
    expect(run.total).toBe(REQUESTS);
  });
});
