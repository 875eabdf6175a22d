/**
 * What the Redis test files share: a container of the bundled handler on a
 * URL and key prefix, and redis-servers (and clients) of a file's own,
 * stopped when the file ends.
 */
import Redis from 'ioredis';
import { RedisServer, startRedisServer } from '../../local/engines/redis';
import { loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { REDIS_BUNDLES, REDIS_ENV } from '../../src/backends/redis/redis-env';
import { CONFORMANCE_BUDGETS } from '../kit/conformance';

/** One container of the Redis counter bundle on `url` under `prefix`; `extra` overrides anything. */
export function redisContainer(
  url: string, prefix: string, mode: { conditional: boolean; maximum?: number }, extra: Record<string, string> = {},
): ProxyHandler {
  // Counting tests get the kit's roomy budgets (a slow machine must not turn
  // a 200 into a 503); a test about a bound passes its own in `extra`.
  const env = { ...CONFORMANCE_BUDGETS.redis, ...extra };
  return loadCounterContainers(REDIS_BUNDLES.counter, { [REDIS_ENV.URL]: url, [REDIS_ENV.KEY_PREFIX]: prefix }, { ...mode, env })[0];
}

/** Registers an afterAll that stops the servers and disconnects the clients this returns. */
export function useOwnRedisServers() {
  const servers: RedisServer[] = [];
  const clients: Redis[] = [];
  afterAll(async () => {
    clients.forEach((c) => c.disconnect());
    await Promise.all(servers.map((s) => s.stop()));
  });
  return {
    async server(options: Parameters<typeof startRedisServer>[0] = {}): Promise<RedisServer> {
      const s = await startRedisServer(options);
      servers.push(s);
      return s;
    },
    /** A server the test stopped itself: not stopped again at the end. */
    forget(s: RedisServer): void {
      servers.splice(servers.indexOf(s), 1);
    },
    client(url: string): Redis {
      const c = new Redis(url);
      clients.push(c);
      return c;
    },
  };
}
