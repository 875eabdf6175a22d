/**
 * Redis-specific checks of steps (`?by=N`) and exactly-once increments
 * (`Idempotency-Key`) through the bundled handler on a real `redis-server`:
 * what the scripts write (the key record's name, content and expiry), the
 * Lua-number edges, the binding check, a failure injected between the bound
 * check and the write, expiry without the background sweeper, the NOSCRIPT
 * fallback, and WAIT covering the key record. The shared contracts
 * (test/kit/steps-contract.ts, test/kit/exactly-once-contract.ts) cover the
 * behaviour every backend shares.
 */
import Redis from 'ioredis';
import { redisContainer, useOwnRedisServers } from './redis-harness';
import { uniqueNamespace } from '../../local/backends/fixture';
import { redisFixture } from '../../local/backends/redis';
import { Engine, waitUntil } from '../../local/engines/engine';
import { acquireRedis } from '../../local/engines/redis';
import { closeContainers, ProxyHandler } from '../../local/lambda-container';
import { REDIS_ENV } from '../../src/backends/redis/redis-env';
import { KEY_RECORD_INFIX } from '../../src/backends/redis/runtime/redis-counter-store';
import { COMMON_ENV } from '../../src/counter-env';
import { call } from '../kit/conformance';

const MAX = Number.MAX_SAFE_INTEGER;

/** Conditional exactly when a maximum is given. */
function container(url: string, prefix: string, mode: { maximum?: number }, extra: Record<string, string> = {}): ProxyHandler {
  return redisContainer(url, prefix, { conditional: mode.maximum !== undefined, maximum: mode.maximum }, extra);
}

afterAll(async () => {
  await closeContainers();
});

describe('redis steps and keys (shared server, own prefix)', () => {
  let engine: Engine;
  let bare: Redis;
  const namespaces: string[] = [];
  /** A fresh prefix `<namespace>:` on the shared server, removed afterwards by the fixture's dispose. */
  const newNamespace = (name: string) => {
    const namespace = uniqueNamespace(name);
    namespaces.push(namespace);
    return namespace;
  };
  beforeAll(async () => {
    engine = await acquireRedis();
    bare = new Redis(engine.url);
  });
  afterAll(async () => {
    for (const namespace of namespaces) await redisFixture.dispose!(engine, namespace);
    if (bare) {
      // dispose removed counters and key records alike.
      for (const namespace of namespaces) expect(await bare.keys(`${namespace}:*`)).toEqual([]);
      bare.disconnect();
    }
    await engine?.stop();
  });

  test('a keyed change writes the counter and one key record <prefix>\\u0001k\\u0001<key> = "<by>:<value>:<id>" with the retention as its TTL; the fixture lists only the counter', async () => {
    const ns = newNamespace('t_redis_record');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, {}, { [COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]: '600' });
    expect(await call(handler, 'POST', 'redis', 'orders', { by: 5, key: 'k-1' })).toMatchObject({ status: 200, body: { counter: 5 } });
    const recordKey = prefix + KEY_RECORD_INFIX + 'k-1';
    expect((await bare.keys(`${prefix}*`)).sort()).toEqual([prefix + 'orders', recordKey].sort());
    expect(await bare.get(recordKey)).toBe('5:5:orders');
    const ttl = await bare.pttl(recordKey);
    expect(ttl).toBeGreaterThan(595_000);
    expect(ttl).toBeLessThanOrEqual(600_000);
    // Unkeyed changes write no record.
    expect(await call(handler, 'POST', 'redis', 'orders', { by: -2 })).toMatchObject({ status: 200, body: { counter: 3 } });
    expect(await call(handler, 'POST', 'redis', 'orders')).toMatchObject({ status: 200, body: { counter: 4 } });
    expect(await bare.keys(`${prefix}*`)).toHaveLength(2);
    expect(await redisFixture.keys(engine, ns)).toEqual(['orders']);
  });

  test('keys and ids full of Redis/Lua/record-format characters are stored verbatim; a key is bound to the whole id (colons included) and the step', async () => {
    const ns = newNamespace('t_redis_verbatim');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, {});
    const keys = ['*', '{tag}k', '1:2:x', ':', '"]] redis.call("FLUSHALL") --', 'KEYS[2]', ' spaced key ', '%s%d', '~'.repeat(255)];
    const ids = ['a', '1:2', 'a:1', '5:5:a', '{tag}x'];
    let expected = 0;
    for (const [i, key] of keys.entries()) {
      const id = ids[i % ids.length];
      const first = await call(handler, 'POST', 'redis', id, { by: 3, key });
      expect(first).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'false' } });
      expect(await call(handler, 'POST', 'redis', id, { by: 3, key })).toMatchObject({
        status: 200, body: { counter: first.body.counter }, headers: { 'Idempotent-Replayed': 'true' },
      });
      expect(await bare.get(prefix + KEY_RECORD_INFIX + key)).toBe(`3:${first.body.counter}:${id}`);
      // Another id that shares a prefix or a suffix with this one, or the same id with another step: 422.
      for (const other of [`${id}:`, `x${id}`, id.slice(0, -1) || 'z']) {
        expect(await call(handler, 'POST', 'redis', other, { by: 3, key })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      }
      expect(await call(handler, 'POST', 'redis', id, { by: -3, key })).toMatchObject({ status: 422 });
      expect(await call(handler, 'POST', 'redis', id, { by: 4, key })).toMatchObject({ status: 422 });
      expected += 3;
    }
    const counters = await redisFixture.keys(engine, ns);
    expect(counters.sort()).toEqual([...new Set(ids)].sort());
    let total = 0;
    for (const id of counters) total += Number(await bare.get(prefix + id));
    expect(total).toBe(expected);
  });

  test('concurrent requests with one key, half on id A and half on id B: one applies, the winner\'s id replays, the other gets 422; one increment in all', async () => {
    const ns = newNamespace('t_redis_race');
    const prefix = `${ns}:`;
    const handlers = Array.from({ length: 4 }, () => container(engine.url, prefix, {}));
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      call(handlers[i % 4], 'POST', 'redis', i % 2 === 0 ? 'A' : 'B', { by: 7, key: 'contested' })));
    const applied = answers.filter((a) => a.status === 200 && a.headers['Idempotent-Replayed'] === 'false');
    expect(applied).toHaveLength(1);
    const winner = applied[0].body.id as string;
    for (const a of answers) {
      if (a.body.id === winner) expect(a).toMatchObject({ status: 200, body: { counter: 7 } });
      else expect(a).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    }
    expect(await bare.get(prefix + winner)).toBe('7');
    expect(await bare.get(prefix + (winner === 'A' ? 'B' : 'A'))).toBeNull();
  });

  test('Lua numbers at the safe-integer edges: the last safe value is reached and recorded exactly; one past it is 400 INVALID_STEP with nothing written and no key recorded', async () => {
    const ns = newNamespace('t_redis_edges');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, {});
    await bare.set(prefix + 'top', String(MAX - 10));
    expect(await call(handler, 'POST', 'redis', 'top', { by: 11, key: 'over' })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await call(handler, 'POST', 'redis', 'top', { by: 11 })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await bare.get(prefix + 'top')).toBe(String(MAX - 10));
    expect(await bare.exists(prefix + KEY_RECORD_INFIX + 'over')).toBe(0);
    expect(await call(handler, 'POST', 'redis', 'top', { by: 10, key: 'edge' })).toMatchObject({ status: 200, body: { counter: MAX } });
    // %.0f, not Lua's tostring (which would store 9.007199254741e+15).
    expect(await bare.get(prefix + KEY_RECORD_INFIX + 'edge')).toBe(`10:${MAX}:top`);
    expect(await call(handler, 'POST', 'redis', 'top', { by: 10, key: 'edge' })).toMatchObject({ status: 200, body: { counter: MAX }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(handler, 'POST', 'redis', 'top', { by: -1 })).toMatchObject({ status: 200, body: { counter: MAX - 1 } });

    await bare.set(prefix + 'bottom', String(-MAX + 10));
    expect(await call(handler, 'POST', 'redis', 'bottom', { by: -11 })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await call(handler, 'POST', 'redis', 'bottom', { by: -10, key: 'low' })).toMatchObject({ status: 200, body: { counter: -MAX } });
    expect(await bare.get(prefix + KEY_RECORD_INFIX + 'low')).toBe(`-10:${-MAX}:bottom`);
    expect(await bare.get(prefix + 'bottom')).toBe(String(-MAX));

    // Conditional mode with the largest maximum: the bound is exact there too.
    const conditional = container(engine.url, prefix, { maximum: MAX });
    await bare.set(prefix + 'cmax', String(MAX - 3));
    expect(await call(conditional, 'POST', 'redis', 'cmax', { by: 4 })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: MAX - 3 } });
    expect(await call(conditional, 'POST', 'redis', 'cmax', { by: 3 })).toMatchObject({ status: 200, body: { counter: MAX } });
  });

  test('the plain +1 is checked like every change: from the last safe value it answers 400 and writes nothing', async () => {
    const ns = newNamespace('t_redis_incr_edge');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, {});
    await bare.set(prefix + 'edge', String(MAX - 1));
    expect(await call(handler, 'POST', 'redis', 'edge')).toMatchObject({ status: 200, body: { counter: MAX } });
    // Checked: the plain +1, a step, a keyed +1.
    expect(await call(handler, 'POST', 'redis', 'edge')).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await call(handler, 'POST', 'redis', 'edge', { by: 2 })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await call(handler, 'POST', 'redis', 'edge', { key: 'plus-one' })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await bare.get(prefix + 'edge')).toBe(String(MAX));
  });

  test('conditional: a rejected keyed change records no key, so its retry is evaluated afresh once there is room', async () => {
    const ns = newNamespace('t_redis_reject');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, { maximum: 10 });
    await bare.set(prefix + 'full', '8');
    expect(await call(handler, 'POST', 'redis', 'full', { by: 3, key: 'retry-me' })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 8 } });
    expect(await bare.exists(prefix + KEY_RECORD_INFIX + 'retry-me')).toBe(0);
    expect(await call(handler, 'POST', 'redis', 'full', { by: -9, key: 'floor' })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED', counter: 8 } });
    expect(await bare.exists(prefix + KEY_RECORD_INFIX + 'floor')).toBe(0);
    expect(await bare.get(prefix + 'full')).toBe('8');
    await bare.set(prefix + 'full', '7');
    expect(await call(handler, 'POST', 'redis', 'full', { by: 3, key: 'retry-me' })).toMatchObject({ status: 200, body: { counter: 10 } });
    // At the maximum now: the accepted key still replays its 200 (lookup before the bound check).
    expect(await call(handler, 'POST', 'redis', 'full', { by: 3, key: 'retry-me' })).toMatchObject({ status: 200, body: { counter: 10 }, headers: { 'Idempotent-Replayed': 'true' } });
  });

  test('a failure after the bound check (INCRBY refuses "1.5") writes neither the counter nor the key record: 500, and the key stays new', async () => {
    const ns = newNamespace('t_redis_midfail');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, {});
    // tonumber("1.5") passes the bound check; INCRBY then raises inside the script.
    await bare.set(prefix + 'odd', '1.5');
    expect(await call(handler, 'POST', 'redis', 'odd', { by: 2, key: 'half' })).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    expect(await bare.get(prefix + 'odd')).toBe('1.5');
    expect(await bare.exists(prefix + KEY_RECORD_INFIX + 'half')).toBe(0);
    await bare.set(prefix + 'odd', 'not a number');
    expect(await call(handler, 'POST', 'redis', 'odd', { by: 2, key: 'half' })).toMatchObject({ status: 500 });
    expect(await bare.exists(prefix + KEY_RECORD_INFIX + 'half')).toBe(0);
    await bare.set(prefix + 'odd', '1');
    expect(await call(handler, 'POST', 'redis', 'odd', { by: 2, key: 'half' })).toMatchObject({ status: 200, body: { counter: 3 }, headers: { 'Idempotent-Replayed': 'false' } });
  });

  test('an unreadable key record is a 500, never a replay or an increment', async () => {
    const ns = newNamespace('t_redis_badrecord');
    const prefix = `${ns}:`;
    const handler = container(engine.url, prefix, {});
    await bare.set(prefix + KEY_RECORD_INFIX + 'garbled', 'no colons here');
    expect(await call(handler, 'POST', 'redis', 'x', { key: 'garbled' })).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    expect(await bare.exists(prefix + 'x')).toBe(0);
  });

  test('key records are per prefix: the same key in two namespaces is two keys', async () => {
    const one = `${newNamespace('t_redis_ns1')}:`;
    const two = `${newNamespace('t_redis_ns2')}:`;
    expect(await call(container(engine.url, one, {}), 'POST', 'redis', 'a', { key: 'shared' })).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await call(container(engine.url, two, {}), 'POST', 'redis', 'b', { key: 'shared' })).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'false' } });
  });
});

describe('redis steps and keys (own servers)', () => {
  const { server, client } = useOwnRedisServers();

  test('expiry is checked on access, not by the background sweeper: with active expiry off, a key past its retention is new again and its record is replaced', async () => {
    const s = await server({ args: ['--enable-debug-command', 'yes'] });
    const admin = client(s.url);
    await admin.call('DEBUG', 'SET-ACTIVE-EXPIRE', '0');
    // 2 s: the fresh record's TTL must still be running when it is read back, on a busy machine too.
    const handler = container(s.url, 'e:', {}, { [COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]: '2' });
    expect(await call(handler, 'POST', 'redis', 'x', { by: 2, key: 'short' })).toMatchObject({ status: 200, body: { counter: 2 } });
    expect(await call(handler, 'POST', 'redis', 'x', { by: 2, key: 'short' })).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'true' } });
    await new Promise((resolve) => setTimeout(resolve, 2200));
    // The sweeper is off: the expired record is still in the keyspace's count...
    expect(await admin.dbsize()).toBe(2);
    // ...but a lookup finds it expired: the key applies again and gets a fresh record.
    expect(await call(handler, 'POST', 'redis', 'x', { by: 2, key: 'short' })).toMatchObject({ status: 200, body: { counter: 4 }, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await admin.get('e:' + KEY_RECORD_INFIX + 'short')).toBe('2:4:x');
    // A fresh retention (not the old record's, nor none: -1), in milliseconds of the 2 s asked for.
    const ttl = await admin.pttl('e:' + KEY_RECORD_INFIX + 'short');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2000);
  });

  test('script cache flushed mid-run: keyed changes and steps carry on through the NOSCRIPT fallback, replays included', async () => {
    const s = await server();
    const handler = container(s.url, 'f:', { maximum: 100 });
    expect(await call(handler, 'POST', 'redis', 'x', { by: 5, key: 'a' })).toMatchObject({ status: 200, body: { counter: 5 } });
    expect(await call(handler, 'POST', 'redis', 'x', { by: 5 })).toMatchObject({ status: 200, body: { counter: 10 } });
    await client(s.url).script('FLUSH');
    expect(await call(handler, 'POST', 'redis', 'x', { by: 5, key: 'a' })).toMatchObject({ status: 200, body: { counter: 5 }, headers: { 'Idempotent-Replayed': 'true' } });
    await client(s.url).script('FLUSH');
    expect(await call(handler, 'POST', 'redis', 'x', { by: 5, key: 'b' })).toMatchObject({ status: 200, body: { counter: 15 } });
    await client(s.url).script('FLUSH');
    expect(await call(handler, 'POST', 'redis', 'x', { by: -20 })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED' } });
  });

  test('WAIT covers the keyed script: after each 200 the replica holds the counter and the key record (same value, same deadline)', async () => {
    const primary = await server();
    const replica = await server({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const onReplica = client(replica.url);
    await waitUntil('replica link', async () => /master_link_status:up/.test(await onReplica.info('replication')), 15_000);
    const onPrimary = client(primary.url);
    const handler = container(primary.url, 'w:', {}, { [REDIS_ENV.WAIT_REPLICAS]: '1', [REDIS_ENV.WAIT_TIMEOUT_MS]: '1000' });
    for (let i = 1; i <= 50; i++) {
      const key = `wait-${i}`;
      expect(await call(handler, 'POST', 'redis', 'acked', { by: 3, key })).toMatchObject({ status: 200, body: { counter: 3 * i } });
      expect(await onReplica.get('w:acked')).toBe(String(3 * i));
      expect(await onReplica.get('w:' + KEY_RECORD_INFIX + key)).toBe(`3:${3 * i}:acked`);
    }
    // The replica got an absolute deadline (PXAT), not a fresh relative TTL.
    const record = 'w:' + KEY_RECORD_INFIX + 'wait-1';
    const [onP, onR] = await Promise.all([onPrimary.call('PEXPIRETIME', record), onReplica.call('PEXPIRETIME', record)]);
    expect(onR).toBe(onP);
    // A replay applies nothing and still answers after its WAIT.
    expect(await call(handler, 'POST', 'redis', 'acked', { by: 3, key: 'wait-1' })).toMatchObject({ status: 200, body: { counter: 3 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await onPrimary.get('w:acked')).toBe('150');
  }, 60_000);
});
