/**
 * DocumentDB: engine-side round trips per change, through the bundled
 * handler, counted by a proxy in front of the engine (the fixture's
 * `callCounter`: every command except `hello`/`isMaster`/`ping`
 * heartbeats). Uncontended, one container, warm.
 */
import { docdbFixture } from '../../local/backends/docdb';
import { CallCounter, uniqueNamespace } from '../../local/backends/fixture';
import { Engine } from '../../local/engines/engine';
import { loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { DOCDB_DEFAULTS } from '../../src/backends/docdb/docdb-env';
import { call } from '../kit/conformance';

const COLLECTION = DOCDB_DEFAULTS.collection;
const KEYS = `${COLLECTION}_keys`;

let engine: Engine;
let namespace: string;
let counter: CallCounter & { commands?(): string[] };
let handler: ProxyHandler;

beforeAll(async () => {
  engine = await docdbFixture.acquire();
  namespace = uniqueNamespace('rt');
  const env = await docdbFixture.prepare(engine, namespace);
  counter = await docdbFixture.callCounter!(engine, env);
  [handler] = loadCounterContainers(docdbFixture.entry, counter.env, { conditional: false });
  // Warm: the container connects (init-phase ping) and every later request reuses its pool.
  expect((await call(handler, 'POST', 'docdb', 'warm-up')).status).toBe(200);
}, 60_000);
afterAll(async () => {
  await counter?.close();
  await Promise.resolve(docdbFixture.dispose?.(engine, namespace)).catch(() => undefined);
  await engine?.stop();
});

/** Runs one request and returns the commands it cost on the engine. */
async function cost(send: () => Promise<{ status: number }>, status = 200): Promise<string[]> {
  counter.reset();
  const answer = await send();
  expect(answer.status).toBe(status);
  return counter.commands!();
}

test('round trips per change: unkeyed 1; keyed fresh 3 (change, key record, commit); keyed replay 3 (change, key found, abort)', async () => {
  const unkeyed = await cost(() => call(handler, 'POST', 'docdb', 'hot'));
  const fresh = await cost(() => call(handler, 'POST', 'docdb', 'hot', { key: 'rt-1' }));
  const replay = await cost(() => call(handler, 'POST', 'docdb', 'hot', { key: 'rt-1' }));
  const firstOfNewId = await cost(() => call(handler, 'POST', 'docdb', 'brand-new', { key: 'rt-2' }));
  console.log(`docdb round trips (engine-side commands): unkeyed ${unkeyed.length} [${unkeyed}], keyed fresh ${fresh.length} [${fresh}], `
    + `keyed replay ${replay.length} [${replay}], keyed first change of a new id ${firstOfNewId.length} [${firstOfNewId}]`);
  expect(unkeyed).toEqual([`findAndModify:${COLLECTION}`]);
  expect(fresh).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'commitTransaction']);
  expect(replay).toEqual([`findAndModify:${COLLECTION}`, `findAndModify:${KEYS}`, 'abortTransaction']);
  expect(counter.count()).toBe(firstOfNewId.length);
  // The first change of an id tells a missing counter from an out-of-range one: one more.
  expect(firstOfNewId).toHaveLength(4);
});
