/**
 * Calls per change on the Momento backend, counted on the engine side (the
 * in-process Momento server's own count of the calls naming the
 * namespace's cache, `momentoFixture.callCounter`), through the bundled
 * handler; and how many of a keyed change's calls run one after another
 * (sequential depth), read off the server's call log while every call is
 * held a while at the server so calls sent together overlap there.
 */
import { CallCounter, uniqueNamespace } from '../../local/backends/fixture';
import { momentoFixture } from '../../local/backends/momento';
import { MomentoEngine } from '../../local/engines/momento';
import { sequentialDepth, ServedCall } from '../../local/engines/momento-server';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { call, CallOptions } from '../kit/conformance';

/** Held this long at the server, calls sent together overlap there (they arrive within the same read). */
const HOLD_MS = 200;

let engine: MomentoEngine;
let counter: CallCounter;
const handlers: Record<string, ProxyHandler> = {};
let idSeq = 0;

beforeAll(async () => {
  engine = await momentoFixture.acquire() as MomentoEngine;
  const env = await momentoFixture.prepare(engine, uniqueNamespace('calls'));
  counter = await momentoFixture.callCounter!(engine, env);
  for (const conditional of [false, true]) {
    handlers[String(conditional)] = loadBundledHandler(momentoFixture.entry, {
      ...counter.env, USE_CONDITIONAL_WRITES: String(conditional), MAX_COUNTER_VALUE: '1000', ATOMIC_COUNTER_LOG: 'off',
    });
  }
});
afterAll(async () => {
  await counter?.close();
  await engine?.stop();
});

/** One request: its status, the calls the engine received for it, and their sequential depth. */
async function measured(conditional: boolean, id: string, options: CallOptions = {}): Promise<{ status: number; calls: number; depth: number }> {
  const server = engine.server!;
  const log: ServedCall[] = [];
  counter.reset();
  server.callLog = log;
  server.faults = { delayMs: HOLD_MS };
  try {
    const answer = await call(handlers[String(conditional)], 'POST', 'momento', id, options);
    return { status: answer.status, calls: counter.count(), depth: sequentialDepth(log) };
  } finally {
    server.faults = {};
    server.callLog = undefined;
  }
}

describe.each([false, true])('conditional=%p', (conditional) => {
  const fresh = () => `calls-${conditional}-${++idSeq}`;

  beforeAll(async () => {
    // Warm: the container's client and channel exist before anything is counted.
    expect(await call(handlers[String(conditional)], 'POST', 'momento', `warm-${conditional}`)).toMatchObject({ status: 200 });
  });

  test('unkeyed: as before (unconditional one increment; conditional a read and one conditional write)', async () => {
    const id = fresh();
    expect(await measured(conditional, id)).toEqual({ status: 200, calls: conditional ? 2 : 1, depth: conditional ? 2 : 1 });
  });

  test('keyed, new key, no contention: 4 calls, 3 one after another (item read and claim together, write, outcome copy)', async () => {
    const id = fresh();
    // A brand-new id.
    expect(await measured(conditional, id, { key: `fresh-${id}-1` })).toEqual({ status: 200, calls: 4, depth: 3 });
    // A counter that holds keyed changes (a document with a drop watermark).
    expect(await measured(conditional, id, { key: `fresh-${id}-2` })).toEqual({ status: 200, calls: 4, depth: 3 });
  });

  test('keyed, new key, on a counter last written by an unkeyed change (a decimal: its drop history is unknown): one more call, after the item read', async () => {
    const id = fresh();
    await call(handlers[String(conditional)], 'POST', 'momento', id);
    expect(await measured(conditional, id, { key: `decimal-${id}` })).toEqual({ status: 200, calls: 5, depth: 4 });
  });

  test('keyed replay: 3 calls, 2 one after another (item read and claim together, then the record)', async () => {
    const id = fresh();
    await call(handlers[String(conditional)], 'POST', 'momento', id, { key: `replay-${id}` });
    expect(await measured(conditional, id, { key: `replay-${id}` })).toEqual({ status: 200, calls: 3, depth: 2 });
  });
});
