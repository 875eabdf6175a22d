import Redis from 'ioredis';
import { BackendFixture, urlPort } from './fixture';
import { REDIS_BUNDLES, REDIS_ENV } from '../../src/backends/redis/redis-env';
import { KEY_RECORD_INFIX } from '../../src/backends/redis/runtime/redis-counter-store';
import { counterIdOf } from '../../src/runtime/shards';
import { Engine } from '../engines/engine';
import { acquireRedis, startRedisCommandProxy } from '../engines/redis';

/**
 * Redis on a real `redis-server`: one key prefix per namespace, so tests and
 * bench runs share one server without seeing each other's counters. Redis
 * needs no setup step: a key springs into existence on its first INCR.
 * Idempotency-Key records live under the same prefix, behind a
 * control-character infix no counter id can contain: `dispose` removes them
 * with the counters, `keys` leaves them out.
 */
export const redisFixture: BackendFixture = {
  backend: 'redis',
  entry: REDIS_BUNDLES.counter,
  acquire: acquireRedis,
  async prepare(engine: Engine, namespace: string) {
    return {
      [REDIS_ENV.URL]: engine.url,
      [REDIS_ENV.KEY_PREFIX]: `${namespace}:`,
      // The command timeout (1 s on Lambda) is sized for Redis's sub-millisecond
      // answers. Here the server shares two cores with the tests, their
      // containers and other work: on a loaded machine a conformance test got
      // twelve 503s it cannot tell from a failure (issue 19, item 11). Tests
      // of the timeout itself set their own.
      [REDIS_ENV.COMMAND_TIMEOUT_MS]: process.env[REDIS_ENV.COMMAND_TIMEOUT_MS] ?? '5000',
    };
  },
  async dispose(engine: Engine, namespace: string) {
    const client = new Redis(engine.url, { maxRetriesPerRequest: 0, enableReadyCheck: false });
    try {
      // Namespaces are letters, digits and underscores: no glob characters to
      // escape. The pattern covers counters and key records alike.
      for await (const keys of client.scanStream({ match: `${namespace}:*`, count: 500 })) {
        if ((keys as string[]).length) await client.del(...(keys as string[]));
      }
    } finally {
      client.disconnect();
    }
  },
  async keys(engine: Engine, namespace: string) {
    const client = new Redis(engine.url, { maxRetriesPerRequest: 0, enableReadyCheck: false });
    try {
      const found: string[] = [];
      for await (const keys of client.scanStream({ match: `${namespace}:*`, count: 500 })) found.push(...(keys as string[]));
      // A sharded counter's slot and width keys are `<id>\u001f…`: listed as their id, once.
      const ids = found.map((k) => k.slice(namespace.length + 1)).filter((rest) => !rest.startsWith(KEY_RECORD_INFIX));
      return [...new Set(ids.map(counterIdOf))];
    } finally {
      client.disconnect();
    }
  },
  async bareClient(engine, env) {
    const client = new Redis(engine.url, { maxRetriesPerRequest: 0, enableReadyCheck: false });
    const prefix = env[REDIS_ENV.KEY_PREFIX];
    return {
      increment: (id: string) => client.incr(prefix + id),
      async close() {
        client.disconnect();
      },
    };
  },
  serverPort: (engine) => urlPort(engine.url, 6379),
  /** Top-level commands at a RESP-reading proxy (a script's inner commands are not calls). */
  async callCounter(engine, env) {
    const proxy = await startRedisCommandProxy(env[REDIS_ENV.URL] ?? engine.url);
    return {
      env: { ...env, [REDIS_ENV.URL]: proxy.url },
      count: () => proxy.commands.length,
      reset: () => proxy.reset(),
      close: () => proxy.close(),
    };
  },
};
