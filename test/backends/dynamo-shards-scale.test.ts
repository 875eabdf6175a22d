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
import { HOT_ID_LIMIT_PER_KEY as LIMIT, HotIdOutcome as Run, offerHotId } from '../../local/hot-id';
import { useBackend } from '../kit/conformance';

const ctx = useBackend('dynamo');

const REQUESTS = 200;

/** Offers REQUESTS changes of one hot id at `offered` per second (at most), through 4 containers configured with `shards` (local/hot-id.ts). */
function offer(shards: number, offered: number): Promise<Run> {
  return offerHotId(ctx().prepare, { shards, offeredPerSecond: offered, requests: REQUESTS, limitPerKey: LIMIT }, uniqueNamespace('t_dynamo_scale'));
}

function print(run: Run): void {
  const accepted = run.statuses[200] ?? 0;
  // eslint-disable-next-line no-console
  console.log(`scale model, limit ${LIMIT} units/s per key, paced at ${run.pacedPerSecond}/s (${REQUESTS} requests): shards ${run.shards}: `
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
    expect(run.retryAfter).toEqual(['1']);
    expect(run.throttledWithoutRetryAfter).toBe(0);
    expect(run.total).toBe(accepted);
  });

  test.each([2, 4])('%i shards, offered 5× the limit (figures for the curve): every accepted change counted, every refusal a 429 with Retry-After', async (shards) => {
    const run = await offer(shards, 5 * LIMIT);
    print(run);
    const accepted = run.statuses[200] ?? 0;
    expect(accepted + (run.statuses[429] ?? 0)).toBe(REQUESTS);
    expect(accepted).toBeLessThanOrEqual(shards * (LIMIT + Math.ceil(LIMIT * run.seconds)));
    expect(run.retryAfter.filter((v) => v !== '1')).toEqual([]);
    expect(run.throttledWithoutRetryAfter).toBe(0);
    expect(run.total).toBe(accepted);
  });

  test.each([5, 7])('8 shards, offered %i× the limit (under the 8× the id now takes): every change accepted (no 429), the total exact', async (times) => {
    const run = await offer(8, times * LIMIT);
    print(run);
    expect(run.statuses).toEqual({ 200: REQUESTS });
    expect(run.total).toBe(REQUESTS);
  });
});
