/**
 * The RESP-reading proxy that counts Redis calls for `npm run compare`:
 * a script counts once (its inner `redis.call`s are not calls), commands
 * split over TCP chunks or sent together in one chunk count once each.
 */
import Redis from 'ioredis';
import { Engine } from '../../local/engines/engine';
import { acquireRedis, nextRedisCommand, startRedisCommandProxy } from '../../local/engines/redis';

let engine: Engine;
beforeAll(async () => {
  engine = await acquireRedis();
}, 60_000);
afterAll(() => engine?.stop());

test('the parser waits for a whole command and reads its name', () => {
  const set = Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n*1\r\n$4\r\nPING\r\nPING\r\n');
  const first = nextRedisCommand(set)!;
  expect(first.name).toBe('set');
  const second = nextRedisCommand(set, first.length)!;
  expect(second.name).toBe('ping');
  expect(nextRedisCommand(set, first.length + second.length)).toEqual({ length: 6, name: 'ping' });
  // A bulk string holding "\r\n" is not the end of the command; a cut anywhere inside waits.
  for (let cut = 1; cut < first.length; cut++) expect(nextRedisCommand(set.subarray(0, cut))).toBeUndefined();
});

test('a Lua script is one call however many commands it runs; a pipeline is one call per command', async () => {
  const proxy = await startRedisCommandProxy(engine.url);
  const client = new Redis(proxy.url, { maxRetriesPerRequest: 0, enableReadyCheck: false });
  const key = `cmdproxy:${Date.now().toString(36)}`;
  try {
    await client.ping();
    proxy.reset();
    await client.eval("redis.call('INCR', KEYS[1]); redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])", 1, key);
    expect(proxy.commands).toEqual(['eval']);
    proxy.reset();
    await client.pipeline().incr(key).incr(key).get(key).exec();
    expect(proxy.commands).toEqual(['incr', 'incr', 'get']);
  } finally {
    await client.del(key);
    client.disconnect();
    await proxy.close();
  }
});
