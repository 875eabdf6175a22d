/**
 * The scale model's load (issue 21): one hot DynamoDB id offered a paced,
 * open-loop stream of +1s at some multiple of a scaled-down per-key write
 * limit, through the bundled handler with `COUNTER_SHARDS`, DynamoDB Local
 * behind the throttling proxy (`engines/dynamodb-proxy.ts` `throttleWrites`,
 * `engines/dynamodb-throttle.ts`). Shared by the scale-model test
 * (test/backends/dynamo-shards-scale.test.ts) and the "hot id past one
 * item" scenario of `npm run compare` (compare-hot-id.ts).
 *
 * Open loop: each request is sent a fixed interval after the one before
 * (less the time the send itself took), whatever the answers, so a stalled
 * machine offers less, never a catch-up burst; the offered rate measured is
 * requests ÷ elapsed. Only DynamoDB has a per-key write limit to model.
 */
import { startDynamoProxy } from './engines/dynamodb-proxy';
import { loadCounterContainers, ProxyHandler, proxyEvent } from './lambda-container';
import { checkAnswer } from './openapi';
import { DYNAMO_BUNDLES, DYNAMO_ENV } from '../src/backends/dynamo/dynamo-env';
import { sleep } from '../src/runtime/retry';

/**
 * Write units per second per key of the scale model: DynamoDB's 1,000
 * scaled down 250×, so that this 2-core machine (about 30 paced requests
 * per second through the handler and the proxy when shared) can offer 7× it.
 */
export const HOT_ID_LIMIT_PER_KEY = 4;

export interface HotIdOffer {
  /** `COUNTER_SHARDS` of the containers. */
  readonly shards: number;
  /** Requests per second to pace at (at most: a slow machine sends slower). */
  readonly offeredPerSecond: number;
  /** +1 requests sent, all on one id. */
  readonly requests: number;
  /** Write units per second per partition key at the proxy. @default HOT_ID_LIMIT_PER_KEY */
  readonly limitPerKey?: number;
  /** Containers the requests go round-robin over. @default 4 */
  readonly containers?: number;
  /** Prefix of the namespace prepared for the run. @default 'hot_dynamo' */
  readonly namespacePrefix?: string;
}

/** What one offer produced. */
export interface HotIdOutcome {
  readonly shards: number;
  readonly requests: number;
  /** The pace asked for. */
  readonly pacedPerSecond: number;
  /** From the first send to the last answer. */
  readonly seconds: number;
  /** Answers by status. */
  readonly statuses: Record<number, number>;
  /** The 429 answers without a `Retry-After` header. */
  readonly throttledWithoutRetryAfter: number;
  /** The distinct `Retry-After` values of the 429s. */
  readonly retryAfter: string[];
  /** Calls the proxy throttled (DynamoDB's throttling errors; a sharded change may meet some and still be accepted on another slot). */
  readonly throttledCalls: number;
  /** The total read back with GET once every answer was in (throttling off). */
  readonly total: number;
  /** Why calls threw (counted under status 0), e.g. an answer off docs/openapi.json: the first few. */
  readonly failures: string[];
}

/** A request through one container, its answer held to docs/openapi.json. */
async function send(handler: ProxyHandler, method: string, id: string): Promise<{ status: number; body: any; headers: Record<string, string> }> {
  const res = await handler(proxyEvent(method, 'dynamo', id));
  const answer = { status: res.statusCode, body: JSON.parse(res.body), headers: res.headers ?? {} };
  const problems = checkAnswer(method, answer);
  if (problems.length > 0) throw new Error(`${method} /dynamo/${id}: answer does not match docs/openapi.json: ${problems.join('; ')}\n${res.body}`);
  return answer;
}

/**
 * Offers `requests` +1s of one hot id at `offeredPerSecond` through fresh
 * containers configured with `shards`, on a fresh namespace that `prepare`
 * sets up (a `BackendSession`'s or the test kit's), behind a throttling
 * proxy enforcing `limitPerKey`. The containers are warmed (and, sharded,
 * learn the id's width) before the clock starts, on another id.
 */
export async function offerHotId(
  prepare: (namespace: string) => Promise<Record<string, string>>, offer: HotIdOffer, namespace: string,
): Promise<HotIdOutcome> {
  const limit = offer.limitPerKey ?? HOT_ID_LIMIT_PER_KEY;
  const env = await prepare(namespace);
  const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
  let handlers: ProxyHandler[] = [];
  try {
    handlers = loadCounterContainers(DYNAMO_BUNDLES.counter, { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url }, {
      conditional: false,
      shards: offer.shards,
    }, offer.containers ?? 4);
    for (const h of handlers) {
      const warm = await send(h, 'GET', 'warm');
      if (warm.status !== 200) throw new Error(`hot id: warm-up GET answered ${warm.status}`);
    }
    proxy.throttleWrites({ unitsPerSecond: limit, burstSeconds: 1 });
    const statuses: Record<number, number> = {};
    const retryAfter = new Set<string>();
    let throttledWithoutRetryAfter = 0;
    const failures: string[] = [];
    const pending: Promise<void>[] = [];
    const started = performance.now();
    for (let i = 0; i < offer.requests; i++) {
      const sentAt = performance.now();
      pending.push(send(handlers[i % handlers.length], 'POST', 'hot').then((answer) => {
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        if (answer.status !== 429) return;
        const value = answer.headers['Retry-After'];
        if (value === undefined) throttledWithoutRetryAfter++;
        else retryAfter.add(value);
      }, (err) => {
        statuses[0] = (statuses[0] ?? 0) + 1;
        if (failures.length < 3) failures.push(err instanceof Error ? err.message : String(err));
      }));
      await sleep(Math.max(0, 1000 / offer.offeredPerSecond - (performance.now() - sentAt)));
    }
    await Promise.all(pending);
    const seconds = (performance.now() - started) / 1000;
    proxy.throttleWrites(undefined);
    const read = await send(handlers[0], 'GET', 'hot');
    if (read.status !== 200) throw new Error(`hot id: GET answered ${read.status}`);
    return {
      shards: offer.shards,
      requests: offer.requests,
      pacedPerSecond: offer.offeredPerSecond,
      seconds,
      statuses,
      throttledWithoutRetryAfter,
      retryAfter: [...retryAfter].sort(),
      throttledCalls: proxy.calls.filter((c) => c.throttled).length,
      total: read.body.counter,
      failures,
    };
  } finally {
    await Promise.all(handlers.map((h) => h.close?.().catch(() => undefined)));
    await proxy.close();
  }
}
