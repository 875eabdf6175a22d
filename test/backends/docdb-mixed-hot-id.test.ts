/**
 * DocumentDB: keyed and unkeyed changes on one hot id at once (issue 20):
 * 16 callers, half sending an `Idempotency-Key`, half not, through the
 * bundled handler on 4 + 4 containers. Keyed transactions hold the
 * counter's document lock from their first command to their commit;
 * unkeyed writes wait for it (they never fail for it), and a keyed change
 * that meets an unkeyed write holding the document conflicts and runs
 * again. Every answer must be a 200 or a 409, and the count exact. The
 * cost of each side is measured (commands per change at two counting
 * proxies, one per side; latency) and printed; docs/docdb.md quotes it.
 *
 * Budgets are sized for a loaded machine (the behaviour under test is
 * "no failure from mixing", not speed): 20 s per call.
 */
import { docdbFixture } from '../../local/backends/docdb';
import { CallCounter, uniqueNamespace } from '../../local/backends/fixture';
import { MongoEngine } from '../../local/engines/mongo';
import { loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { DOCDB_ENV } from '../../src/backends/docdb/docdb-env';
import { call } from '../kit/conformance';

const CALLERS = 16;
const PER_CALLER = 25;
const TOTAL = CALLERS * PER_CALLER;
const BUDGET = {
  [DOCDB_ENV.OPERATION_TIMEOUT_MS]: '20000',
  [DOCDB_ENV.SOCKET_TIMEOUT_MS]: '10000',
  [DOCDB_ENV.SERVER_SELECTION_TIMEOUT_MS]: '5000',
  [DOCDB_ENV.CONNECT_TIMEOUT_MS]: '5000',
};

let engine: MongoEngine;
const namespaces: string[] = [];
const counters: CallCounter[] = [];

beforeAll(async () => {
  engine = await docdbFixture.acquire() as MongoEngine;
}, 60_000);
afterAll(async () => {
  for (const c of counters) await c.close();
  for (const ns of namespaces) await Promise.resolve(docdbFixture.dispose?.(engine, ns)).catch(() => undefined);
  await engine?.stop();
});

interface Side {
  statuses: Record<number, number>;
  counters: number[];
  ms: number[];
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

test.each([
  ['unconditional', undefined],
  ['conditional, maximum 300', 300],
])('%s: 16 callers on one hot id, half keyed, half unkeyed → only 200/409, the count exact; the cost of each side printed', async (label, maximum) => {
  const ns = uniqueNamespace('mix');
  namespaces.push(ns);
  const env = await docdbFixture.prepare(engine, ns);
  const keyedCounter = await docdbFixture.callCounter!(engine, env);
  const unkeyedCounter = await docdbFixture.callCounter!(engine, env);
  counters.push(keyedCounter, unkeyedCounter);
  const mode = { conditional: maximum !== undefined, maximum, env: BUDGET };
  const keyedContainers = loadCounterContainers(docdbFixture.entry, keyedCounter.env, mode, 4);
  const unkeyedContainers = loadCounterContainers(docdbFixture.entry, unkeyedCounter.env, mode, 4);
  for (const h of [...keyedContainers, ...unkeyedContainers]) expect((await call(h, 'GET', 'docdb', 'hot')).status).toBe(200);
  keyedCounter.reset();
  unkeyedCounter.reset();
  const lockWaitsBefore = engine.server?.lockWaits ?? 0;

  const sides: Record<'keyed' | 'unkeyed', Side> = {
    keyed: { statuses: {}, counters: [], ms: [] },
    unkeyed: { statuses: {}, counters: [], ms: [] },
  };
  await Promise.all(Array.from({ length: CALLERS }, async (_, caller) => {
    const isKeyed = caller % 2 === 0;
    const side = sides[isKeyed ? 'keyed' : 'unkeyed'];
    const handler: ProxyHandler = (isKeyed ? keyedContainers : unkeyedContainers)[Math.floor(caller / 2) % 4];
    for (let i = 0; i < PER_CALLER; i++) {
      const started = performance.now();
      const answer = await call(handler, 'POST', 'docdb', 'hot', isKeyed ? { key: `mix-${caller}-${i}` } : {});
      side.ms.push(performance.now() - started);
      side.statuses[answer.status] = (side.statuses[answer.status] ?? 0) + 1;
      if (answer.status === 200) side.counters.push(answer.body.counter);
    }
  }));

  const accepted = [...sides.keyed.counters, ...sides.unkeyed.counters];
  const half = TOTAL / 2;
  const cost = (name: 'keyed' | 'unkeyed', counter: CallCounter) => {
    const s = sides[name];
    return `${name}: ${JSON.stringify(s.statuses)}, ${(counter.count() / half).toFixed(2)} commands/change, `
      + `p50 ${percentile(s.ms, 50).toFixed(1)} ms, p99 ${percentile(s.ms, 99).toFixed(1)} ms`;
  };
  console.log(`docdb mixed hot id (${label}, ${CALLERS} callers, ${TOTAL} requests): ${cost('keyed', keyedCounter)}; ${cost('unkeyed', unkeyedCounter)}; `
    + `unkeyed writes that waited for a keyed transaction's lock: ${(engine.server?.lockWaits ?? 0) - lockWaitsBefore}`);

  // Only 200 and 409, on both sides.
  for (const side of Object.values(sides)) {
    expect(Object.keys(side.statuses).filter((s) => s !== '200' && s !== '409')).toEqual([]);
  }
  const expected = maximum ?? TOTAL;
  expect(accepted).toHaveLength(expected);
  expect([...accepted].sort((a, b) => a - b)).toEqual(Array.from({ length: expected }, (_, i) => i + 1));
  expect((await call(keyedContainers[0], 'GET', 'docdb', 'hot')).body.counter).toBe(expected);
  // Both sides were served while the other ran.
  expect(sides.keyed.counters.length).toBeGreaterThan(0);
  expect(sides.unkeyed.counters.length).toBeGreaterThan(0);
}, 300_000);
