/**
 * Redis-specific behaviour through the bundled handler: ids as opaque keys,
 * the script's distinct rejection result, the NOSCRIPT fallback, AUTH, and
 * WAIT against a real replica. Servers this file changes (SCRIPT FLUSH, a
 * replica, a password) are its own; the shared server only gets keys under
 * a unique prefix.
 */
import * as http from 'http';
import * as vm from 'vm';
import Redis from 'ioredis';
import { redisContainer, useOwnRedisServers } from './redis-harness';
import { uniqueNamespace } from '../../local/backends/fixture';
import { redisFixture } from '../../local/backends/redis';
import { waitUntil } from '../../local/engines/engine';
import { acquireRedis } from '../../local/engines/redis';
import { loadBundledHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { REDIS_BUNDLES, REDIS_ENV } from '../../src/backends/redis/redis-env';
import { call } from '../kit/conformance';

const ENTRY = REDIS_BUNDLES.counter;

const container = redisContainer;

async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  // MATCH takes a glob: escape the prefix's glob characters so it matches literally.
  const pattern = prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys.sort();
}

// Characters that mean something to Redis (glob, hash tags, RESP, spaces) or to Lua.
const SIGNIFICANT_IDS = [
  '*', '?', '[a-z]', 'a b', '{tag}x', '{}', 'counter:*', '\\', '"', "'", ']]', '--[[', '"]] redis.call("FLUSHALL") --',
  "redis.call('SET', KEYS[1], 999)", '$3\\r\\nGET', 'KEYS[1]', 'ARGV[1]', '%s%d', '計数器',
];

describe('redis: ids are opaque keys (shared server, own prefix)', () => {
  let url: string;
  let stop: () => Promise<void>;
  let bare: Redis;
  /** Prefixes this block wrote under on the shared server, removed afterwards. */
  const prefixes: string[] = [];
  const newPrefix = (name: string) => {
    const namespace = uniqueNamespace(name);
    prefixes.push(namespace);
    return `${namespace}:`;
  };
  let shared: Awaited<ReturnType<typeof acquireRedis>>;
  beforeAll(async () => {
    const engine = (shared = await acquireRedis());
    url = engine.url;
    stop = () => engine.stop();
    bare = new Redis(url);
  });
  afterAll(async () => {
    for (const namespace of prefixes) await redisFixture.dispose!(shared, namespace);
    bare?.disconnect();
    await stop?.();
  });

  test.each([false, true])('conditional=%p: ids with Redis/Lua-significant characters become exactly prefix + id, nothing else is created', async (conditional) => {
    const prefix = newPrefix('t_redis_ids');
    const handler = container(url, prefix, { conditional, maximum: 5 });
    for (const id of SIGNIFICANT_IDS) {
      expect(await call(handler, 'POST', 'redis', id)).toMatchObject({ status: 200, body: { id, counter: 1 } });
      expect(await call(handler, 'POST', 'redis', id)).toMatchObject({ status: 200, body: { id, counter: 2 } });
    }
    expect(await keysUnder(bare, prefix)).toEqual(SIGNIFICANT_IDS.map((id) => prefix + id).sort());
    for (const id of SIGNIFICANT_IDS) {
      expect(await bare.get(prefix + id)).toBe('2');
      expect((await call(handler, 'GET', 'redis', id)).body).toMatchObject({ id, counter: 2 });
    }
  });

  test('ids with newlines or other control characters are rejected (400) and create no key', async () => {
    const prefix = newPrefix('t_redis_ctl');
    const handler = container(url, prefix, { conditional: false });
    for (const id of ['a\nb', 'a\r\nSET x 1', '\u0000', 'tab\t']) {
      expect(await call(handler, 'POST', 'redis', id)).toMatchObject({ status: 400, body: { code: 'INVALID_ID' } });
    }
    expect(await keysUnder(bare, prefix)).toEqual([]);
  });

  test('a counter already at the maximum is rejected by the script\'s result (409 with the current value); a non-integer value is a 500, not a 409', async () => {
    const prefix = newPrefix('t_redis_rej');
    const handler = container(url, prefix, { conditional: true, maximum: 7 });
    await bare.set(prefix + 'full', '7');
    expect(await call(handler, 'POST', 'redis', 'full')).toMatchObject({
      status: 409, body: { code: 'LIMIT_REACHED', counter: 7, maxCounterValue: 7 },
    });
    expect(await bare.get(prefix + 'full')).toBe('7');
    await bare.set(prefix + 'garbage', 'not a number');
    expect(await call(handler, 'POST', 'redis', 'garbage')).toMatchObject({ status: 500, body: { code: 'INTERNAL', error: 'Internal error' } });
    expect(await bare.get(prefix + 'garbage')).toBe('not a number');
  });
});

describe('redis: own servers (script cache, AUTH, replica)', () => {
  const { server, client, forget } = useOwnRedisServers();

  test('script cache flushed mid-run (as on a promoted replica): conditional increments carry on through the NOSCRIPT fallback', async () => {
    const s = await server();
    const handler = container(s.url, 'c:', { conditional: true, maximum: 6 });
    for (let i = 1; i <= 3; i++) expect((await call(handler, 'POST', 'redis', 'x')).body.counter).toBe(i);
    await client(s.url).script('FLUSH');
    for (let i = 4; i <= 6; i++) expect((await call(handler, 'POST', 'redis', 'x')).body.counter).toBe(i);
    expect((await call(handler, 'POST', 'redis', 'x')).status).toBe(409);
  });

  test('AUTH: the right password works; a wrong one answers 500 (misconfiguration, not a retryable 503) and writes nothing', async () => {
    const s = await server({ password: 'letters0and0digits0only' });
    const good = container(s.url, 'a:', { conditional: false });
    expect(await call(good, 'POST', 'redis', 'x')).toMatchObject({ status: 200, body: { counter: 1 } });
    const wrong = container(s.url.replace('letters0and0digits0only', 'wrong'), 'a:', { conditional: false });
    expect(await call(wrong, 'POST', 'redis', 'x')).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    expect(await client(s.url).get('a:x')).toBe('1');
  });

  test('AUTH token from a Secrets Manager secret (the AWS path: host, port, secret ARN): read once per container, never from the environment', async () => {
    const token = 'Abc123' + 'x'.repeat(58);
    const s = await server({ password: token });
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-auth-AbCdEf';
    // A stand-in for Secrets Manager's JSON API, so the real SDK call path runs.
    const targets: string[] = [];
    const api = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        targets.push(`${req.headers['x-amz-target']} ${JSON.parse(body).SecretId}`);
        res.setHeader('Content-Type', 'application/x-amz-json-1.1');
        res.end(JSON.stringify({ ARN: arn, Name: 'redis-auth', SecretString: JSON.stringify({ authToken: token }) }));
      });
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()));
    // The SDK client is created at the first request, after the container's
    // init: its variables must be in the real process environment then.
    const realEnv: NodeJS.ProcessEnv = vm.runInThisContext('process').env;
    const sdkEnv: Record<string, string> = {
      AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://127.0.0.1:${(api.address() as { port: number }).port}`,
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    };
    const saved = Object.fromEntries(Object.keys(sdkEnv).map((k) => [k, realEnv[k]]));
    Object.assign(realEnv, sdkEnv);
    try {
      const handler = loadBundledHandler(ENTRY, {
        [REDIS_ENV.HOST]: '127.0.0.1',
        [REDIS_ENV.PORT]: String(s.port),
        [REDIS_ENV.TLS]: 'false',
        [REDIS_ENV.AUTH_SECRET_ARN]: arn,
        [REDIS_ENV.KEY_PREFIX]: 's:',
        USE_CONDITIONAL_WRITES: 'false',
        ATOMIC_COUNTER_LOG: 'off',
      });
      for (let i = 1; i <= 20; i++) expect(await call(handler, 'POST', 'redis', 'x')).toMatchObject({ status: 200, body: { counter: i } });
      expect(targets).toEqual([`secretsmanager.GetSecretValue ${arn}`]);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete realEnv[k];
        else realEnv[k] = v;
      }
      api.close();
    }
  });

  test('WAIT for one replica: after every 200 the replica already holds that value; a missing replica still answers 200 after the WAIT timeout', async () => {
    const primary = await server();
    const replica = await server({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const onReplica = client(replica.url);
    await waitUntil('replica link', async () => /master_link_status:up/.test(await onReplica.info('replication')), 15_000);

    // WAIT 5 s (under the 10 s command budget): a replica starved past a shorter
    // WAIT would leave the read below stale, the 200 being answered anyway.
    const waiting = container(primary.url, 'w:', { conditional: true, maximum: 1_000_000 }, { [REDIS_ENV.WAIT_REPLICAS]: '1', [REDIS_ENV.WAIT_TIMEOUT_MS]: '5000' });
    for (let i = 1; i <= 200; i++) {
      const answer = await call(waiting, 'POST', 'redis', 'acked');
      expect(answer).toMatchObject({ status: 200, body: { counter: i } });
      // Read on the replica right after the answer: WAIT returned only once it had applied the write.
      expect(await onReplica.get('w:acked')).toBe(String(i));
    }

    // Latency cost of WAIT, same engine, same concurrency (a figure, not an assertion).
    const plain = container(primary.url, 'w:', { conditional: false });
    const unconditionalWaiting = container(primary.url, 'w:', { conditional: false }, { [REDIS_ENV.WAIT_REPLICAS]: '1', [REDIS_ENV.WAIT_TIMEOUT_MS]: '1000' });
    const figures: string[] = [];
    for (const [label, h] of [['no WAIT', plain], ['WAIT 1 replica', unconditionalWaiting]] as const) {
      for (const concurrency of [1, 16]) {
        const r = await runWorkload({
          total: 2000,
          concurrency,
          call: async () => {
            const a = await call(h, 'POST', 'redis', 'cost');
            return { status: a.status, counter: a.body.counter };
          },
        });
        expect(r.statuses).toEqual({ 200: 2000 });
        figures.push(`${label.padEnd(15)} concurrency ${String(concurrency).padStart(2)}: ${r.opsPerSecond.toFixed(0)} ops/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`);
      }
    }

    // Replica gone: WAIT times out with 0 acknowledgements; the increment is applied and answered 200.
    await replica.stop();
    forget(replica);
    const shortTimeout = container(primary.url, 'w:', { conditional: false }, { [REDIS_ENV.WAIT_REPLICAS]: '1', [REDIS_ENV.WAIT_TIMEOUT_MS]: '50' });
    const before = Number(await client(primary.url).get('w:alone') ?? 0);
    const t0 = performance.now();
    expect(await call(shortTimeout, 'POST', 'redis', 'alone')).toMatchObject({ status: 200, body: { counter: before + 1 } });
    figures.push(`WAIT with no replica (timeout 50 ms): answered 200 in ${(performance.now() - t0).toFixed(1)} ms`);
    console.log(figures.join('\n'));
  }, 120_000);
});
