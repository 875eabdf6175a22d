/**
 * Redis with `maxmemory-policy noeviction` (what a created replication group
 * runs, docs/redis.md) when memory is full: on a private `redis-server`
 * (the machine's shared one is never filled), through the bundled handler.
 * A full node refuses every write that needs memory (`-OOM`): the handler
 * answers 503 with nothing applied, a replay still answers its original,
 * and once memory is freed every key applies exactly once. Nothing is
 * evicted.
 */
import Redis from 'ioredis';
import { redisFixture } from '../../local/backends/redis';
import { RedisServer, startRedisServer } from '../../local/engines/redis';
import { closeContainers, loadCounterContainers } from '../../local/lambda-container';
import { call } from '../kit/conformance';

let server: RedisServer;
let admin: Redis;

beforeAll(async () => {
  server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'] });
  admin = new Redis(server.url, { maxRetriesPerRequest: 0, enableReadyCheck: false });
}, 60_000);

afterAll(async () => {
  await closeContainers();
  admin?.disconnect();
  await server?.stop();
});

async function usedMemory(): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
}

test('memory full under noeviction: keyed and unkeyed changes answer 503 with nothing applied, replays still answer; after memory is freed every key applies once, nothing evicted', async () => {
  const env = await redisFixture.prepare(server, 'oom');
  const handlers = loadCounterContainers(redisFixture.entry, env, { conditional: false }, 4);
  // Every container connected (and its script loaded) before memory fills.
  for (const [i, h] of handlers.entries()) {
    expect((await call(h, 'POST', 'redis', 'full', { key: `before-${i}` })).body.counter).toBe(i + 1);
  }

  // Fill: a limit just above what is used now, then values outside the namespace until Redis refuses one.
  await admin.config('SET', 'maxmemory', String((await usedMemory()) + 512 * 1024));
  const filler = 'x'.repeat(32 * 1024);
  let refused = false;
  for (let i = 0; i < 10_000 && !refused; i++) {
    await admin.set(`filler:${i}`, filler).catch((err: Error) => {
      if (!/^OOM/.test(err.message)) throw err;
      refused = true;
    });
  }
  expect(refused).toBe(true);
  // Then the limit goes 256 KiB under what is used: the refused write's
  // query buffer is freed after it, so used memory can fall back under a
  // limit it only just passed, and a small change would then be accepted (a
  // CI run saw one 200). A node this far over its limit refuses every write
  // that needs memory, as a full one does.
  await admin.config('SET', 'maxmemory', String((await usedMemory()) - 256 * 1024));
  await expect(admin.set('filler:after', 'x')).rejects.toThrow(/^OOM/);

  // Full: 20 keyed and 20 unkeyed changes from four containers.
  const keys = Array.from({ length: 20 }, (_, i) => `during-${i}`);
  const full = await Promise.all([
    ...keys.map((key, i) => call(handlers[i % 4], 'POST', 'redis', 'full', { key })),
    ...keys.map((_, i) => call(handlers[i % 4], 'POST', 'redis', 'full', { by: 2 })),
  ]);
  for (const answer of full) {
    expect({ status: answer.status, code: answer.body.code, retryAfter: answer.headers['Retry-After'] !== undefined })
      .toEqual({ status: 503, code: 'BACKEND_UNAVAILABLE', retryAfter: true });
  }
  // A replay needs no memory: it still answers its original.
  expect(await call(handlers[1], 'POST', 'redis', 'full', { key: 'before-0' }))
    .toMatchObject({ status: 200, body: { counter: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
  expect((await call(handlers[0], 'GET', 'redis', 'full')).body.counter).toBe(4);

  // Memory freed: the clients retry the same keys, each twice, on other containers.
  await admin.config('SET', 'maxmemory', '0');
  const retried = new Map<string, number[]>();
  for (const [i, key] of keys.entries()) {
    for (const attempt of [0, 1]) {
      const answer = await call(handlers[(i + 1 + attempt) % 4], 'POST', 'redis', 'full', { key });
      expect({ key, status: answer.status, replayed: answer.headers['Idempotent-Replayed'] })
        .toEqual({ key, status: 200, replayed: attempt === 0 ? 'false' : 'true' });
      retried.set(key, [...retried.get(key) ?? [], answer.body.counter]);
    }
  }
  // Each key applied once: both answers one value, the values 5..24, the counter 24.
  for (const [key, values] of retried) expect({ key, distinct: new Set(values).size }).toEqual({ key, distinct: 1 });
  expect([...retried.values()].map((v) => v[0]).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 5));
  expect((await call(handlers[0], 'GET', 'redis', 'full')).body.counter).toBe(24);
  expect(Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))![1])).toBe(0);
}, 120_000);
