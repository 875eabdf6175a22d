/**
 * Sharded Redis counters (issue 21, docs/redis.md "Sharded counters") through
 * the bundled handler on the local redis-server, with COUNTER_SHARDS in the
 * handler's environment and every answer held to docs/openapi.json.
 *
 * `describeShardsGuarantees` is written for any backend (it takes the kit's
 * `Counters` and a backend name): it can move to the test kit as it is. The
 * Redis-specific part below it checks the stored layout (slot keys, width
 * key, key records) and counters sharded by one container and read or
 * changed by a container with another shard count.
 */
import Redis from 'ioredis';
import { redisContainer, useOwnRedisServers } from './redis-harness';
import { uniqueNamespace } from '../../local/backends/fixture';
import { redisFixture } from '../../local/backends/redis';
import { MIXED_STEPS, mixedStep } from '../../local/compare-verdicts';
import { waitUntil } from '../../local/engines/engine';
import { ContainerMode, ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { REDIS_ENV, redisWorstCase } from '../../src/backends/redis/redis-env';
import { KEY_RECORD_INFIX } from '../../src/backends/redis/runtime/redis-counter-store';
import { COMMON_ENV } from '../../src/counter-env';
import type { BackendName } from '../../src/runtime/store';
import { Answer, call, Counters, useBackend } from '../kit/conformance';
import { describeShardsContract } from '../kit/shards-contract';


/** A container mode with COUNTER_SHARDS set. */
export function shardedMode(shards: number, mode: ContainerMode): ContainerMode {
  return { ...mode, env: { ...mode.env, [COMMON_ENV.SHARDS]: String(shards) } };
}

/** What every load of a sharded counter records: the accepted steps, the rejections by code, and a 200 that started after a 409 had been answered. */
export interface ShardedLoad {
  accepted: number[];
  statuses: Record<number, number>;
  codes: Record<string, number>;
  /** 200s to increments sent after a LIMIT_REACHED had been received. */
  acceptedAfterLimit: number;
  /** Totals read (GET) while the load ran. */
  totalsSeen: number[];
}

export interface ShardedLoadOptions {
  readonly callers: number;
  readonly total: number;
  /** Request i's step. @default 1 */
  readonly step?: (i: number) => number;
  /** Request i's Idempotency-Key. @default none */
  readonly key?: (i: number) => string;
}

/**
 * `total` POSTs on `id` with steps `step(i)` over `callers` callers and the
 * handlers, while one more caller keeps reading the total with GET. Every
 * 200 is checked for the sharded shape (shards, no counter).
 */
export async function shardedLoad(
  backend: string, handlers: ProxyHandler[], id: string, options: ShardedLoadOptions,
): Promise<ShardedLoad> {
  const load: ShardedLoad = { accepted: [], statuses: {}, codes: {}, acceptedAfterLimit: 0, totalsSeen: [] };
  let limitSeen = false;
  let running = true;
  const reader = (async () => {
    while (running) {
      const read = await call(handlers[load.totalsSeen.length % handlers.length], 'GET', backend, id);
      load.totalsSeen.push(read.body.counter);
    }
  })();
  try {
    await runWorkload({
      total: options.total,
      concurrency: options.callers,
      call: async (i, caller) => {
        const by = options.step?.(i) ?? 1;
        const afterLimit = limitSeen;
        const answer: Answer = await call(handlers[caller % handlers.length], 'POST', backend, id, { by, key: options.key?.(i) });
        load.statuses[answer.status] = (load.statuses[answer.status] ?? 0) + 1;
        if (answer.status === 200) {
          if (answer.body.counter !== undefined || !(answer.body.shards >= 1)) {
            throw new Error(`a sharded 200 carries shards and no counter: ${JSON.stringify(answer.body)}`);
          }
          if (answer.headers['Idempotent-Replayed'] !== 'true') load.accepted.push(by);
          if (afterLimit && by > 0) load.acceptedAfterLimit++;
        } else {
          load.codes[answer.body.code] = (load.codes[answer.body.code] ?? 0) + 1;
          if (answer.body.code === 'LIMIT_REACHED') limitSeen = true;
        }
        return { status: answer.status };
      },
    });
  } finally {
    running = false;
    await reader;
  }
  return load;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The guarantees of a sharded counter (issue 21), for one backend and one shard count, in both modes. */
export interface ShardsGuaranteesOptions {
  /** @default 24 */
  readonly callers?: number;
  /** @default 8 */
  readonly containers?: number;
  /**
   * More handler environment: client timeouts sized for a busy machine, so a
   * slow engine answer is not a 503 (which would make the totals ambiguous).
   */
  readonly env?: Record<string, string>;
}

export function describeShardsGuarantees(backend: BackendName, ctx: () => Counters, shards: number, options: ShardsGuaranteesOptions = {}): void {
  const callers = options.callers ?? 24;
  const nContainers = options.containers ?? 8;
  const env = options.env ?? {};
  const unconditional = shardedMode(shards, { conditional: false, env });
  const conditional = (maximum: number) => shardedMode(shards, { conditional: true, maximum, env });

  describe(`${backend}: sharded counters (COUNTER_SHARDS=${shards})`, () => {
    test(`unconditional: ${callers} callers × 2000 increments lose nothing; GET answers the exact total and shards`, async () => {
      const handlers = await ctx().containers(unconditional, nContainers);
      const load = await shardedLoad(backend, handlers, 'hot', { callers, total: 2000 });
      expect(load.statuses).toEqual({ 200: 2000 });
      // Increment-only: every total read under load lies between 0 and the end total, and never decreases.
      expect(load.totalsSeen.every((t, i) => t >= 0 && t <= 2000 && (i === 0 || t >= load.totalsSeen[i - 1]))).toBe(true);
      for (const handler of handlers) {
        expect((await call(handler, 'GET', backend, 'hot')).body).toEqual({ id: 'hot', counter: 2000, backend, shards });
      }
    });

    test(`conditional, maximum 100: 600 unit increments from ${callers} callers → exactly 100 accepted, no 200 after a 409, total never above 100`, async () => {
      const handlers = await ctx().containers(conditional(100), nContainers);
      const load = await shardedLoad(backend, handlers, 'capped', { callers, total: 600 });
      expect(load.acceptedAfterLimit).toBe(0);
      expect(load.statuses).toEqual({ 200: 100, 409: 500 });
      expect(load.codes).toEqual({ LIMIT_REACHED: 500 });
      expect(Math.max(...load.totalsSeen)).toBeLessThanOrEqual(100);
      expect((await call(handlers[0], 'GET', backend, 'capped')).body.counter).toBe(100);
      expect(await call(handlers[1], 'POST', backend, 'capped')).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', maxCounterValue: 100 } });
    });

    test('conditional: 120 concurrent by=−3 on a total of 100 spread over the slots → exactly 33 accepted, ends at 1, never below 0', async () => {
      const handlers = await ctx().containers(conditional(1000), nContainers);
      const fill = await shardedLoad(backend, handlers, 'drain', { callers, total: 100 });
      expect(fill.statuses).toEqual({ 200: 100 });
      const load = await shardedLoad(backend, handlers, 'drain', { callers, total: 120, step: () => -3 });
      expect(load.statuses).toEqual({ 200: 33, 409: 87 });
      expect(load.codes).toEqual({ FLOOR_REACHED: 87 });
      expect(Math.min(...load.totalsSeen)).toBeGreaterThanOrEqual(1);
      expect((await call(handlers[0], 'GET', backend, 'drain')).body.counter).toBe(1);
    });

    for (const [label, mode] of [['unconditional', unconditional], ['conditional (maximum 100000)', conditional(100_000)]] as const) {
      test(`${label}: 500 Idempotency-Keys each sent twice at once → exactly 500 applied, 500 replays without a counter`, async () => {
        const handlers = await ctx().containers(mode, nContainers);
        const load = await shardedLoad(backend, handlers, 'keyed', { callers, total: 1000, key: (i) => `k-${Math.floor(i / 2)}` });
        expect(load.statuses).toEqual({ 200: 1000 });
        expect(load.accepted.length).toBe(500);
        expect((await call(handlers[0], 'GET', backend, 'keyed')).body.counter).toBe(500);
        const replay = await call(handlers[3], 'POST', backend, 'keyed', { key: 'k-7' });
        expect(replay).toMatchObject({ status: 200, body: { shards }, headers: { 'Idempotent-Replayed': 'true' } });
        expect(replay.body.counter).toBeUndefined();
        expect(await call(handlers[4], 'POST', backend, 'keyed', { key: 'k-7', by: 2 })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
        expect((await call(handlers[0], 'GET', backend, 'keyed')).body.counter).toBe(500);
      });
    }

    test(`unconditional: 1500 mixed steps {${MIXED_STEPS.join(', ')}} → the total is the sum of every accepted step`, async () => {
      const handlers = await ctx().containers(unconditional, nContainers);
      const load = await shardedLoad(backend, handlers, 'mixed', { callers, total: 1500, step: mixedStep });
      expect(load.statuses).toEqual({ 200: 1500 });
      expect((await call(handlers[0], 'GET', backend, 'mixed')).body.counter).toBe(sum(load.accepted));
    });

    test(`conditional, maximum 300: 1500 mixed steps {${MIXED_STEPS.join(', ')}} → every accepted step accounted for, every total read within [0, 300]`, async () => {
      const handlers = await ctx().containers(conditional(300), nContainers);
      const mixed = await shardedLoad(backend, handlers, 'mixed-capped', { callers, total: 1500, step: mixedStep });
      // Then 20 concurrent −50s (−1,000 offered on at most 300): the floor is
      // certainly met under concurrency, whatever order the mixed steps arrived in.
      const drain = await shardedLoad(backend, handlers, 'mixed-capped', { callers, total: 20, step: () => -50 });
      const final = (await call(handlers[0], 'GET', backend, 'mixed-capped')).body.counter;
      expect(final).toBe(sum(mixed.accepted) + sum(drain.accepted));
      expect(final).toBeGreaterThanOrEqual(0);
      expect(final).toBeLessThanOrEqual(300);
      const totalsSeen = [...mixed.totalsSeen, ...drain.totalsSeen];
      expect(totalsSeen.length).toBeGreaterThan(0);
      expect(totalsSeen.filter((t) => t < 0 || t > 300)).toEqual([]);
      // Both bounds were met under load, so the check was exercised both ways.
      expect(mixed.codes.LIMIT_REACHED).toBeGreaterThan(0);
      expect(drain.codes.FLOOR_REACHED).toBeGreaterThanOrEqual(14);
      expect(Object.keys({ ...mixed.codes, ...drain.codes }).sort()).toEqual(['FLOOR_REACHED', 'LIMIT_REACHED']);
      expect(Object.keys(drain.codes)).toEqual(['FLOOR_REACHED']);
    });
  });
}

/**
 * Reshard 2 → 8 → 4 under load: containers with different COUNTER_SHARDS on
 * one id at once. Phase 1: shards 2 alone; phase 2: 2 and 8 together;
 * phase 3: 8 and 4 together. Every container type (and one with shards 1)
 * then reads the same total, including slots above its own shard count.
 */
export function describeReshard(backend: BackendName, ctx: () => Counters, options: ShardsGuaranteesOptions = {}): void {
  const callers = options.callers ?? 24;
  const env = options.env ?? {};
  describe(`${backend}: reshard 2 → 8 → 4 under load`, () => {
    const phases = async (mode: (shards: number) => ContainerMode, step?: (i: number) => number) => {
      const namespace = uniqueNamespace(`t_${backend}_reshard`);
      const groups = new Map<number, ProxyHandler[]>();
      for (const shards of [1, 2, 4, 8]) groups.set(shards, await ctx().containers(mode(shards), 3, namespace));
      const g = (s: number) => groups.get(s)!;
      const loads = [
        await shardedLoad(backend, g(2), 'reshard', { callers, total: 300, step }),
        await shardedLoad(backend, [...g(2), ...g(8)], 'reshard', { callers, total: 600, step }),
        await shardedLoad(backend, [...g(8), ...g(4)], 'reshard', { callers, total: 600, step }),
      ];
      const accepted = loads.flatMap((l) => l.accepted);
      const reads = [];
      for (const shards of [1, 2, 4, 8]) reads.push((await call(g(shards)[0], 'GET', backend, 'reshard')).body.counter);
      return { loads, accepted, reads };
    };

    test('unconditional: 1500 increments over three shard counts → every GET (shards 1, 2, 4, 8) reads exactly 1500', async () => {
      const { loads, reads } = await phases((shards) => shardedMode(shards, { conditional: false, env }));
      for (const load of loads) expect(Object.keys(load.statuses)).toEqual(['200']);
      expect(reads).toEqual([1500, 1500, 1500, 1500]);
    });

    test('conditional, maximum 700: 1500 increments over three shard counts → exactly 700 accepted, no overshoot at any read', async () => {
      const { loads, accepted, reads } = await phases((shards) => shardedMode(shards, { conditional: true, maximum: 700, env }));
      expect(accepted.length).toBe(700);
      for (const load of loads) {
        expect(load.acceptedAfterLimit).toBe(0);
        expect(Math.max(0, ...load.totalsSeen)).toBeLessThanOrEqual(700);
      }
      expect(reads).toEqual([700, 700, 700, 700]);
    });

    test('conditional, maximum 400: 1500 mixed steps over three shard counts → the total is the sum of the accepted steps, always within [0, 400]', async () => {
      const { loads, accepted, reads } = await phases((shards) => shardedMode(shards, { conditional: true, maximum: 400, env }), mixedStep);
      const expected = sum(accepted);
      expect(reads).toEqual([expected, expected, expected, expected]);
      for (const load of loads) expect(load.totalsSeen.filter((t) => t < 0 || t > 400)).toEqual([]);
    });
  });
}

describe('redis sharded counters (bundled handler, shared redis-server)', () => {
  const ctx = useBackend('redis');
  // A 1 s command timeout can pass on a machine this busy; the loads here test counting, not timeouts.
  const env = { [REDIS_ENV.COMMAND_TIMEOUT_MS]: '20000', [REDIS_ENV.CONNECT_TIMEOUT_MS]: '20000' };
  describeShardsGuarantees('redis', ctx, 8, { callers: 24, env });
  describeReshard('redis', ctx, { callers: 24, env });
  // The shared sharding contract DynamoDB runs too (shards 1 and 8, both modes).
  describeShardsContract('redis', ctx);

  describe('layout and cross-width changes', () => {
    let bare: Redis;
    beforeAll(() => {
      bare = new Redis(ctx().engine.url);
    });
    afterAll(() => bare?.disconnect());

    /** Containers on one fresh namespace, and its key prefix. */
    const onNamespace = async () => {
      const namespace = uniqueNamespace('t_redis_layout');
      const prepared = await ctx().prepare(namespace);
      return { namespace, prefix: prepared[REDIS_ENV.KEY_PREFIX] };
    };

    test('slot 0 is the unsharded key, slot i is <id>\\u001f<i>, the width <id>\\u001fw; a keyed change records "<by>:s<slot>:<id>"; the fixture lists ids only', async () => {
      const { namespace, prefix } = await onNamespace();
      const [handler] = await ctx().containers(shardedMode(4, { conditional: false, env }), 1, namespace);
      for (let i = 0; i < 40; i++) expect((await call(handler, 'POST', 'redis', 'laid out')).status).toBe(200);
      const keyed = await call(handler, 'POST', 'redis', 'laid out', { by: 5, key: 'rec' });
      expect(keyed).toMatchObject({ status: 200, body: { shards: 4, by: 5 }, headers: { 'Idempotent-Replayed': 'false' } });
      expect(await bare.get(`${prefix}laid out\u001fw`)).toBe('4');
      const slots = await bare.mget(prefix + 'laid out', ...[1, 2, 3].map((i) => `${prefix}laid out\u001f${i}`));
      expect(slots.every((v) => v !== null)).toBe(true);
      expect(sum(slots.map(Number))).toBe(45);
      expect(await bare.exists(`${prefix}laid out\u001f4`)).toBe(0);
      expect(await bare.get(prefix + KEY_RECORD_INFIX + 'rec')).toMatch(/^5:s[0-3]:laid out$/);
      expect(await redisFixture.keys(ctx().engine, namespace)).toEqual(['laid out']);
    });

    test('shards 1 on a counter widened by another container: GET and a conditional change see the total; the plain +1 answers shards, not a slot value', async () => {
      const { namespace, prefix } = await onNamespace();
      const [wide] = await ctx().containers(shardedMode(8, { conditional: false, env }), 1, namespace);
      const [narrow] = await ctx().containers({ conditional: false, env }, 1, namespace);
      const [narrowCapped] = await ctx().containers({ conditional: true, maximum: 30, env }, 1, namespace);
      expect((await call(narrow, 'POST', 'redis', 'grown')).body).toMatchObject({ counter: 1 });
      for (let i = 0; i < 27; i++) await call(wide, 'POST', 'redis', 'grown');
      expect(await call(narrow, 'GET', 'redis', 'grown')).toMatchObject({ body: { counter: 28 } });
      expect(Number(await bare.get(prefix + 'grown'))).toBeLessThan(28);
      const plain = await call(narrow, 'POST', 'redis', 'grown');
      expect(plain.body).toEqual({ id: 'grown', shards: 1, by: 1, backend: 'redis', useConditionalWrites: false });
      // 29 now: +1 fits, +2 more does not (the bound is on the total, not on slot 0).
      expect(await call(narrowCapped, 'POST', 'redis', 'grown')).toMatchObject({ status: 200, body: { shards: 1 } });
      expect(await call(narrowCapped, 'POST', 'redis', 'grown', { by: 2 })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 30 } });
      expect(await call(narrowCapped, 'POST', 'redis', 'grown', { by: -31 })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED', counter: 30 } });
      expect(await call(wide, 'GET', 'redis', 'grown')).toMatchObject({ body: { counter: 30, shards: 8 } });
    });

    test('an unsharded key record still replays its value on a sharded container; a sharded record replays its slot on an unsharded one', async () => {
      const { namespace } = await onNamespace();
      const [narrow] = await ctx().containers({ conditional: false, env }, 1, namespace);
      const [wide] = await ctx().containers(shardedMode(8, { conditional: false, env }), 1, namespace);
      expect((await call(narrow, 'POST', 'redis', 'r', { by: 3, key: 'old' })).body).toMatchObject({ counter: 3 });
      expect(await call(wide, 'POST', 'redis', 'r', { by: 3, key: 'old' })).toMatchObject({ status: 200, body: { counter: 3 }, headers: { 'Idempotent-Replayed': 'true' } });
      expect((await call(wide, 'POST', 'redis', 'r', { by: 4, key: 'new' })).body).toMatchObject({ shards: 8 });
      const replay = await call(narrow, 'POST', 'redis', 'r', { by: 4, key: 'new' });
      expect(replay).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
      expect(await call(narrow, 'GET', 'redis', 'r')).toMatchObject({ body: { counter: 7 } });
    });

    test('a slot holding no integer fails the change and the read (500) and writes nothing', async () => {
      const { namespace, prefix } = await onNamespace();
      const [handler] = await ctx().containers(shardedMode(4, { conditional: true, maximum: 100, env }), 1, namespace);
      await bare.set(`${prefix}odd\u001f2`, 'x');
      expect(await call(handler, 'POST', 'redis', 'odd', { key: 'k' })).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
      expect(await call(handler, 'GET', 'redis', 'odd')).toMatchObject({ status: 500 });
      expect(await bare.exists(prefix + 'odd', `${prefix}odd\u001fw`, prefix + KEY_RECORD_INFIX + 'k')).toBe(0);
    });
  });
});

describe('redis sharded counters: script cache and WAIT (own redis-servers)', () => {
  const own = useOwnRedisServers();
  const sharded = (url: string, prefix: string, shards: number, maximum?: number, extra: Record<string, string> = {}) =>
    redisContainer(url, prefix, { conditional: maximum !== undefined, maximum }, { [COMMON_ENV.SHARDS]: String(shards), ...extra });

  test('script cache flushed mid-run: sharded changes, keyed replays, the wider-than-known retry and reads carry on (NOSCRIPT → EVAL)', async () => {
    const s = await own.server();
    const bare = own.client(s.url);
    const wide = sharded(s.url, 'f:', 8, 100);
    const narrow = sharded(s.url, 'f:', 2, 100);
    for (let i = 0; i < 20; i++) expect((await call(wide, 'POST', 'redis', 'x', { by: 2 })).status).toBe(200);
    await bare.script('FLUSH');
    expect(await call(narrow, 'POST', 'redis', 'x', { by: 50, key: 'a' })).toMatchObject({ status: 200, body: { shards: 2 } });
    await bare.script('FLUSH');
    expect(await call(narrow, 'POST', 'redis', 'x', { by: 50, key: 'a' })).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(narrow, 'POST', 'redis', 'x', { by: 11 })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 90 } });
    await bare.script('FLUSH');
    expect(await call(narrow, 'GET', 'redis', 'x')).toMatchObject({ body: { counter: 90, shards: 2 } });
    expect(await call(wide, 'GET', 'redis', 'x')).toMatchObject({ body: { counter: 90, shards: 8 } });
  });

  test('WAIT covers the sharded scripts: after each 200 the replica holds the same total, width and key record', async () => {
    const primary = await own.server();
    const replica = await own.server({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const onReplica = own.client(replica.url);
    await waitUntil('replica link', async () => /master_link_status:up/.test(await onReplica.info('replication')), 15_000);
    // WAIT 5 s, under the 10 s command budget: a starved replica must not make the reads below stale.
    const handler = sharded(primary.url, 'w:', 4, 1000, { [REDIS_ENV.WAIT_REPLICAS]: '1', [REDIS_ENV.WAIT_TIMEOUT_MS]: '5000' });
    const slots = ['w:acked', 'w:acked\u001f1', 'w:acked\u001f2', 'w:acked\u001f3'];
    for (let i = 1; i <= 30; i++) {
      expect(await call(handler, 'POST', 'redis', 'acked', { by: 3, key: `wait-${i}` })).toMatchObject({ status: 200, body: { shards: 4 } });
      expect(sum((await onReplica.mget(...slots)).map(Number))).toBe(3 * i);
      expect(await onReplica.get('w:' + KEY_RECORD_INFIX + `wait-${i}`)).toMatch(/^3:s[0-3]:acked$/);
    }
    expect(await onReplica.get('w:acked\u001fw')).toBe('4');
    expect(await call(handler, 'GET', 'redis', 'acked')).toMatchObject({ body: { counter: 90 } });
  }, 60_000);
});

describe('redis sharded counters: worst-case answer time', () => {
  test('a sharded counter counts two scripts (each with its NOSCRIPT fallback and WAIT); an unsharded one is unchanged', () => {
    const base = { REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '100' };
    expect(redisWorstCase(base)?.parts).toEqual({ 'idle-connection PING': 1000, 'connect': 1000, 'command + NOSCRIPT fallback': 2000, 'WAIT': 100 });
    expect(redisWorstCase({ ...base, [COMMON_ENV.SHARDS]: '8' })?.parts)
      .toEqual({ 'idle-connection PING': 1000, 'connect': 1000, '2 commands (sharded) + NOSCRIPT fallback': 4000, 'WAIT': 200 });
  });
});
