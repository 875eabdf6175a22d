/**
 * Sharded counters on Momento (docs/momento.md, "Sharded counters") through
 * the bundled handler on the local Momento server: the shared contract
 * (test/kit/shards-contract.ts) with shards 1 and 8, both modes; then what
 * the cache holds (slot items, slot 0's width and grant ledger, the escrow
 * invariant), resharding down to 1, and the calls a change and a read send.
 */
import { CacheGet } from '@gomomento/sdk';
import { uniqueNamespace } from '../../local/backends/fixture';
import { localCacheClient, momentoFixture } from '../../local/backends/momento';
import { MomentoEngine } from '../../local/engines/momento';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { call, CallOptions, COUNTING_TEST_TIMEOUT_MS, useBackend } from '../kit/conformance';
import { describeShardsContract, shardsEnv } from '../kit/shards-contract';

// Every test here counts compare-and-swap loads on the in-process server: on
// a machine busy with other work they run past the suite's 120 s (the
// layout test's 4 containers did, with four CPU-bound processes beside it).
jest.setTimeout(COUNTING_TEST_TIMEOUT_MS);

const ctx = useBackend('momento');
describeShardsContract('momento', ctx);

/** The raw text of a cache's items, read and written beside the handlers (the SDK on the same server). */
interface RawCache {
  get(key: string): Promise<string | undefined>;
  set(key: string, text: string): Promise<void>;
  close(): void;
}

async function rawCache(env: Record<string, string>): Promise<RawCache> {
  const client = localCacheClient(ctx().engine);
  const cacheName = env[MOMENTO_ENV.CACHE_NAME];
  return {
    async get(key) {
      const got = await client.get(cacheName, key);
      return got instanceof CacheGet.Hit ? got.valueString() : undefined;
    },
    async set(key, text) {
      await client.set(cacheName, key, text);
    },
    close: () => client.close(),
  };
}

const slot = (id: string, i: number) => (i === 0 ? id : `${id}\u001f${i}`);

/** Slot 0's document on a sharded id. */
interface SlotZeroDoc {
  c: number;
  w: number;
  g: number[];
  k: unknown[];
}

describe('momento sharded counters: what the cache holds', () => {
  test('shards 1: the items are today\'s (a decimal per id), no slot item, no width', async () => {
    const namespace = uniqueNamespace('t_momento_layout');
    const env = await ctx().prepare(namespace);
    const [unconditional] = await ctx().containers({ conditional: false, env: shardsEnv(1) }, 1, namespace);
    const [conditional] = await ctx().containers({ conditional: true, maximum: 5, env: shardsEnv(1) }, 1, namespace);
    for (let i = 0; i < 3; i++) expect((await call(unconditional, 'POST', 'momento', 'u')).body.counter).toBe(i + 1);
    for (let i = 0; i < 6; i++) await call(conditional, 'POST', 'momento', 'c');
    expect((await ctx().fixture.keys!(ctx().engine, namespace)).sort()).toEqual(['c', 'u']);
    expect((ctx().engine as MomentoEngine).server!.keys(namespace)!.sort()).toEqual(['c', 'u']);
    const raw = await rawCache(env);
    try {
      expect(await raw.get('u')).toBe('3');
      expect(await raw.get('c')).toBe('5');
    } finally {
      raw.close();
    }
  });

  test('shards 8, conditional (maximum 100): slot 0 {c, w: 8, g: 7 grants, drop history}, slots id␟1…id␟7 decimals; c_i ≤ g_i, c0 + Σg ≤ 100; the total is what was accepted; keys() lists the id once', async () => {
    const namespace = uniqueNamespace('t_momento_layout');
    const env = await ctx().prepare(namespace);
    const handlers = await ctx().containers({ conditional: true, maximum: 100, env: shardsEnv(8) }, 4, namespace);
    const mixed = await Promise.all(Array.from({ length: 160 }, (_, i) => call(handlers[i % 4], 'POST', 'momento', 'x', { by: i % 5 === 4 ? -1 : 1 })));
    // Then 40 increments with nothing decrementing: the maximum is certainly
    // reached (a unit step's 409 is then a proof), whatever order the mixed ones took.
    const topUp = await Promise.all(Array.from({ length: 40 }, (_, i) => call(handlers[i % 4], 'POST', 'momento', 'x')));
    const answers = [...mixed, ...topUp];
    const accepted = answers.filter((a) => a.status === 200).reduce((sum, a) => sum + a.body.by, 0);
    expect(answers.filter((a) => a.status !== 200 && a.body.code !== 'LIMIT_REACHED' && a.body.code !== 'FLOOR_REACHED').map((a) => a.body)).toEqual([]);
    const raw = await rawCache(env);
    try {
      const zero = JSON.parse((await raw.get('x'))!) as SlotZeroDoc;
      // Its drop history (k, e, d) is kept though no keyed change is pending.
      expect(Object.keys(zero).sort()).toEqual(['c', 'd', 'e', 'g', 'k', 'w']);
      expect(zero.w).toBe(8);
      expect(zero.g).toHaveLength(7);
      expect(zero.k).toEqual([]);
      const values = [zero.c];
      for (let i = 1; i < 8; i++) {
        const text = await raw.get(slot('x', i));
        const value = text === undefined ? 0 : Number(text);
        if (text !== undefined) expect(text).toMatch(/^\d+$/);
        expect(value).toBeGreaterThanOrEqual(0);
        expect(value).toBeLessThanOrEqual(zero.g[i - 1]);
        values.push(value);
      }
      expect(zero.c + zero.g.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(100);
      expect(values.reduce((a, b) => a + b, 0)).toBe(accepted);
      expect(accepted).toBe(100); // 168 increments offered, the last 40 alone: it is reached
      expect((await call(handlers[0], 'GET', 'momento', 'x')).body.counter).toBe(accepted);
      expect(await ctx().fixture.keys!(ctx().engine, namespace)).toEqual(['x']);
    } finally {
      raw.close();
    }
  });

  test('width: raised to 8 by an 8-wide writer, never lowered by a 2-wide one, whose GET reads all 8 slots', async () => {
    const namespace = uniqueNamespace('t_momento_width');
    const env = await ctx().prepare(namespace);
    const [wide] = await ctx().containers({ conditional: false, env: shardsEnv(8) }, 1, namespace);
    const [narrow] = await ctx().containers({ conditional: false, env: shardsEnv(2) }, 1, namespace);
    for (let i = 0; i < 40; i++) expect((await call(wide, 'POST', 'momento', 'w')).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await call(narrow, 'POST', 'momento', 'w')).status).toBe(200);
    const raw = await rawCache(env);
    try {
      expect((JSON.parse((await raw.get('w'))!) as SlotZeroDoc).w).toBe(8);
    } finally {
      raw.close();
    }
    expect((await call(narrow, 'GET', 'momento', 'w')).body).toMatchObject({ counter: 50, shards: 2 });
    expect((await call(wide, 'GET', 'momento', 'w')).body).toMatchObject({ counter: 50, shards: 8 });
  });

  test('larger steps, exactly as documented: +k is refused when the pool and every slot have less than k room although the sum has more; −k when no slot holds k', async () => {
    const namespace = uniqueNamespace('t_momento_steps');
    const env = await ctx().prepare(namespace);
    const raw = await rawCache(env);
    try {
      // Total 6 of 10: pool 10 − 0 − 9 = 1, each slot's room 3 − 2 = 1.
      await raw.set('s', JSON.stringify({ c: 0, w: 4, g: [3, 3, 3] }));
      for (let i = 1; i < 4; i++) await raw.set(slot('s', i), '2');
    } finally {
      raw.close();
    }
    const [h] = await ctx().containers({ conditional: true, maximum: 10, env: shardsEnv(4) }, 1, namespace);
    expect((await call(h, 'POST', 'momento', 's', { by: 2 })).body.code).toBe('LIMIT_REACHED');
    expect((await call(h, 'POST', 'momento', 's', { by: -3 })).body.code).toBe('FLOOR_REACHED');
    expect((await call(h, 'GET', 'momento', 's')).body.counter).toBe(6);
    expect((await call(h, 'POST', 'momento', 's', { by: -2 })).status).toBe(200);
    expect((await call(h, 'POST', 'momento', 's', { by: 1 })).status).toBe(200);
    expect((await call(h, 'GET', 'momento', 's')).body.counter).toBe(5);
  });
});

describe('momento sharded counters: resharding down to 1', () => {
  test('8 → 1: unsharded containers see the width on the calls they send anyway; the bound, the total, replays and the sharded answer hold', async () => {
    const namespace = uniqueNamespace('t_momento_down');
    const wide = await ctx().containers({ conditional: true, maximum: 50, env: shardsEnv(8) }, 2, namespace);
    for (let i = 0; i < 25; i++) expect((await call(wide[i % 2], 'POST', 'momento', 'd')).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await call(wide[i % 2], 'POST', 'momento', 'd', { key: `down-${i}` })).status).toBe(200);
    const narrow = await ctx().containers({ conditional: true, maximum: 50, env: shardsEnv(1) }, 3, namespace);
    const [plain] = await ctx().containers({ conditional: false, env: shardsEnv(1) }, 1, namespace);
    // A GET first: it reads slot 0, sees the width, and reads every slot.
    expect((await call(narrow[0], 'GET', 'momento', 'd')).body.counter).toBe(30);
    // A key a sharded change recorded replays its sharded answer.
    const replay = await call(narrow[1], 'POST', 'momento', 'd', { key: 'down-3' });
    expect(replay.status).toBe(200);
    expect(replay.headers['Idempotent-Replayed']).toBe('true');
    expect(replay.body).toMatchObject({ shards: 1 });
    expect(replay.body.counter).toBeUndefined();
    // A new key on a container that has not seen the width: its claim is
    // released when the item read shows the width, and the change goes sharded.
    const fresh = await call(narrow[2], 'POST', 'momento', 'd', { key: 'down-fresh' });
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ shards: 1 });
    expect(fresh.headers['Idempotent-Replayed']).toBe('false');
    expect((await call(narrow[0], 'POST', 'momento', 'd', { key: 'down-fresh' })).headers['Idempotent-Replayed']).toBe('true');
    // Unit increments from unsharded containers: exactly the 19 left, answered as sharded (shards 1, no counter).
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => call(narrow[i % 3], 'POST', 'momento', 'd')));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(19);
    for (const a of answers.filter((x) => x.status === 200)) {
      expect(a.body.shards).toBe(1);
      expect(a.body.counter).toBeUndefined();
    }
    expect(answers.filter((a) => a.status === 409).every((a) => a.body.code === 'LIMIT_REACHED')).toBe(true);
    expect((await call(narrow[2], 'GET', 'momento', 'd')).body.counter).toBe(50);
    expect((await call(wide[0], 'GET', 'momento', 'd')).body.counter).toBe(50);
    // An unconditional unsharded container: its `increment` is refused by slot 0 (a document), and it goes sharded.
    for (let i = 0; i < 3; i++) expect((await call(plain, 'POST', 'momento', 'd', { by: -1 })).body).toMatchObject({ shards: 1 });
    expect((await call(narrow[0], 'GET', 'momento', 'd')).body.counter).toBe(47);
  });
});

describe('momento sharded counters: calls per change and per read (engine-side count)', () => {
  test('shards 8: unconditional 1 (increment), conditional 2 (getBatch, setIfEqual), keyed 4, GET 1 (getBatch); the width raise once per container and id', async () => {
    const engine = ctx().engine as MomentoEngine;
    const env = await ctx().prepare(uniqueNamespace('t_momento_calls'));
    const counter = await momentoFixture.callCounter!(engine, env);
    const handler = (conditional: boolean) => loadBundledHandler(momentoFixture.entry, {
      ...env, ...shardsEnv(8), USE_CONDITIONAL_WRITES: String(conditional), MAX_COUNTER_VALUE: '1000000', ATOMIC_COUNTER_LOG: 'off',
    });
    const [u, c] = [handler(false), handler(true)];
    const calls = async (h: ProxyHandler, method: string, id: string, options: CallOptions = {}) => {
      counter.reset();
      const answer = await call(h, method, 'momento', id, options);
      expect(answer.status).toBe(200);
      return counter.count();
    };
    try {
      // First change of a fresh id: the width raise (get, setIfAbsent) before it.
      expect(await calls(u, 'POST', 'u')).toBe(3);
      expect(await calls(u, 'POST', 'u')).toBe(1);
      expect(await calls(u, 'GET', 'u')).toBe(1);
      // Keyed: 4 (the item reads and the claim together, the write, the
      // outcome copy), as unsharded, and one more (the record read again)
      // when a slot was last written by an unkeyed change (a decimal: its
      // drop history is unknown), as unsharded.
      expect(await calls(u, 'POST', 'u', { key: 'k-u1' })).toBe(5);
      expect(await calls(u, 'POST', 'k', { key: 'k-k1' })).toBe(6); // + the width raise
      expect(await calls(u, 'POST', 'k', { key: 'k-k2' })).toBe(4);
      // Conditional: the first change also takes a grant from the pool.
      expect(await calls(c, 'POST', 'c')).toBe(5);
      expect(await calls(c, 'POST', 'c')).toBe(2);
      expect(await calls(c, 'GET', 'c')).toBe(1);
      // Keyed, conditional: 4, plus a grant (1) or a rebind of the key (1)
      // when its slot has no room.
      await calls(c, 'POST', 'ck', { key: 'k-ck1' });
      for (let i = 2; i < 6; i++) expect([4, 5]).toContain(await calls(c, 'POST', 'ck', { key: `k-ck${i}` }));
    } finally {
      await u.close?.();
      await c.close?.();
      await counter.close();
    }
  });
});

describe('momento sharded counters: keyed changes race on the slot their key is bound to', () => {
  test.each([false, true])('shards 8, conditional %s: 100 keys each sent 4 times at once → each applied once, 3 replays', async (conditional) => {
    const handlers = await ctx().containers({ conditional, maximum: 1000, env: shardsEnv(8) }, 4);
    const answers = await Promise.all(Array.from({ length: 400 }, (_, i) => call(handlers[i % 4], 'POST', 'momento', 'dup', { key: `dup-${i % 100}` })));
    expect(answers.filter((a) => a.status !== 200).map((a) => a.body)).toEqual([]);
    expect(answers.filter((a) => a.headers['Idempotent-Replayed'] === 'false')).toHaveLength(100);
    expect((await call(handlers[0], 'GET', 'momento', 'dup')).body.counter).toBe(100);
  });

  test('shards 8, conditional (maximum 30), 60 distinct keys, unit steps: exactly 30 accepted (a key whose slot has no room is rebound), no 200 sent after a 409', async () => {
    const handlers = await ctx().containers({ conditional: true, maximum: 30, env: shardsEnv(8) }, 4);
    let firstRejection = Infinity;
    let clock = 0;
    const late: number[] = [];
    const statuses: Record<number, number> = {};
    await runWorkload({
      total: 60,
      concurrency: 12,
      call: async (i, caller) => {
        const sent = clock++;
        const answer = await call(handlers[caller % 4], 'POST', 'momento', 'near', { key: `near-${i}` });
        const answered = clock++;
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        if (answer.status === 200 && sent > firstRejection) late.push(sent);
        if (answer.status === 409) firstRejection = Math.min(firstRejection, answered);
        return { status: answer.status };
      },
    });
    expect(statuses).toEqual({ 200: 30, 409: 30 });
    expect(late).toEqual([]);
    expect((await call(handlers[0], 'GET', 'momento', 'near')).body.counter).toBe(30);
  });
});

test('momento sharded keyed changes: the pool spent and the only room on slot 7, keyed unit increments bound elsewhere are rebound there: 4 accepted, then 409', async () => {
  const namespace = uniqueNamespace('t_momento_rebind');
  const env = await ctx().prepare(namespace);
  const raw = await rawCache(env);
  try {
    // Maximum 10: pool 10 − 0 − 10 = 0; slots 1…6 full (1 of 1), slot 7 holds 0 of 4.
    await raw.set('r', JSON.stringify({ c: 0, w: 8, g: [1, 1, 1, 1, 1, 1, 4] }));
    for (let i = 1; i < 7; i++) await raw.set(slot('r', i), '1');
  } finally {
    raw.close();
  }
  const [h] = await ctx().containers({ conditional: true, maximum: 10, env: shardsEnv(8) }, 1, namespace);
  const statuses = [];
  for (let i = 0; i < 6; i++) statuses.push((await call(h, 'POST', 'momento', 'r', { key: `rebind-${i}` })).status);
  expect(statuses).toEqual([200, 200, 200, 200, 409, 409]);
  expect((await call(h, 'GET', 'momento', 'r')).body.counter).toBe(10);
});

test('momento sharded counters: a slot the service throttles is skipped for another (unconditional, conditional, keyed): every change 200, that slot unchanged', async () => {
  const server = (ctx().engine as MomentoEngine).server!;
  const namespace = uniqueNamespace('t_momento_throttle');
  const raw = await rawCache(await ctx().prepare(namespace));
  const modes = [{ conditional: false }, { conditional: true, maximum: 1000 }];
  const [u, c] = await Promise.all(modes.map(async (mode) => (await ctx().containers({ ...mode, env: shardsEnv(8) }, 1, namespace))[0]));
  // Width raised first, so the throttled slot is only ever a slot write.
  expect((await call(u, 'POST', 'momento', 't')).status).toBe(200);
  const before = await raw.get(slot('t', 3)); // that first change may have gone there
  server.faults = { rateLimitedKeys: new Set([slot('t', 3)]) };
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      statuses.push((await call(u, 'POST', 'momento', 't')).status);
      statuses.push((await call(c, 'POST', 'momento', 't')).status);
      statuses.push((await call(c, 'POST', 'momento', 't', { key: `thr-${i}` })).status);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  } finally {
    server.faults = {};
  }
  expect((await call(c, 'GET', 'momento', 't')).body.counter).toBe(61);
  try {
    expect(await raw.get(slot('t', 3))).toBe(before);
  } finally {
    raw.close();
  }
});
