/**
 * Redis, day two, through the bundled handler on redis-servers this file
 * starts: the AUTH token rotated mid-run (engine and secret), the Secrets
 * Manager endpoint hung or refusing, and an idle connection dropped
 * silently (a frozen container behind a NAT). Times are printed and
 * asserted against the configured bounds, with slack.
 */
import Redis from 'ioredis';
import { startFaultProxy } from '../../local/engines/fault-proxy';
import { RedisServer, startRedisServer } from '../../local/engines/redis';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { REDIS_BUNDLES, REDIS_ENV } from '../../src/backends/redis/redis-env';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import { SECRET_READ_BOUNDS } from '../../src/timeouts';
import { call } from '../kit/conformance';
import { SecretsStandIn, startSecretsStandIn } from '../kit/secrets-stand-in';

const ENTRY = REDIS_BUNDLES.counter;
const TIMEOUT_MS = 500;
/** Scheduling slack on a shared machine: bounds are asserted as bound + SLACK. */
const SLACK_MS = 1500;
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-auth-AbCdEf';

const servers: RedisServer[] = [];
const admins: Redis[] = [];
let secrets: SecretsStandIn | undefined;
afterEach(async () => {
  await secrets?.close();
  secrets = undefined;
});
afterAll(async () => {
  admins.forEach((a) => a.disconnect());
  await Promise.all(servers.map((s) => s.stop()));
});

async function server(password?: string): Promise<RedisServer> {
  const s = await startRedisServer({ password });
  servers.push(s);
  return s;
}

function admin(s: RedisServer): Redis {
  const a = new Redis(s.url);
  admins.push(a);
  return a;
}

function secretContainer(s: RedisServer, extra: Record<string, string> = {}): ProxyHandler {
  return loadBundledHandler(ENTRY, {
    [REDIS_ENV.HOST]: '127.0.0.1',
    [REDIS_ENV.PORT]: String(s.port),
    [REDIS_ENV.TLS]: 'false',
    [REDIS_ENV.AUTH_SECRET_ARN]: ARN,
    [REDIS_ENV.KEY_PREFIX]: 'd2:',
    [REDIS_ENV.CONNECT_TIMEOUT_MS]: String(TIMEOUT_MS),
    [REDIS_ENV.COMMAND_TIMEOUT_MS]: String(TIMEOUT_MS),
    USE_CONDITIONAL_WRITES: 'false',
    ATOMIC_COUNTER_LOG: 'off',
    ...extra,
  });
}

async function timed(handler: ProxyHandler, method: string, id: string) {
  const t0 = performance.now();
  const answer = await call(handler, method, 'redis', id);
  return { ...answer, ms: performance.now() - t0 };
}

/** The password change as a rotation does it: the engine takes the new token, then the secret. */
async function rotate(a: Redis, token: string): Promise<void> {
  await a.config('SET', 'requirepass', token);
  // requirepass leaves authenticated connections alone; a rotation that
  // retires the old token closes them (and a container's next connection
  // must present the new one). Keep the admin connection.
  await a.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
  await a.auth(token);
  secrets!.setValue({ authToken: token });
}

describe('redis: credential rotation (token from the stand-in secret)', () => {
  test('engine and secret rotated mid-run: the same warm container answers 200 on its next request (one re-read), nothing lost; a second rotation within the re-read interval answers 500 without reading again', async () => {
    const first = 'first0token0' + 'a'.repeat(20);
    const s = await server(first);
    const a = admin(s);
    secrets = await startSecretsStandIn(ARN, { authToken: first });
    const handler = secretContainer(s);
    let ok = 0;
    for (let i = 0; i < 10; i++) {
      expect(await call(handler, 'POST', 'redis', 'rot')).toMatchObject({ status: 200, body: { counter: ++ok } });
    }
    expect(secrets.reads).toBe(1);

    await rotate(a, 'second0token0' + 'b'.repeat(20));
    const recovered = await timed(handler, 'POST', 'rot');
    console.log(`redis rotation: first request after the rotation answered ${recovered.status} in ${recovered.ms.toFixed(1)} ms (secret re-read + reconnect)`);
    expect(recovered).toMatchObject({ status: 200, body: { counter: ++ok } });
    expect(secrets.reads).toBe(2);
    expect(recovered.ms).toBeLessThan(SECRET_READ_BOUNDS.requestTimeoutMs + 2 * TIMEOUT_MS + SLACK_MS);
    for (let i = 0; i < 10; i++) {
      expect(await call(handler, 'POST', 'redis', 'rot')).toMatchObject({ status: 200, body: { counter: ++ok } });
    }
    expect(secrets.reads).toBe(2);

    // Rotated again at once: the container may not re-read yet (bounded re-reads), so 500 — and nothing written.
    await rotate(a, 'third0token0' + 'c'.repeat(20));
    expect(await call(handler, 'POST', 'redis', 'rot')).toMatchObject({ status: 500, body: { code: 'INTERNAL', error: 'Internal error' } });
    expect(secrets.reads).toBe(2);
    expect(await a.get('d2:rot')).toBe(String(ok));
  }, 60_000);
});

describe('redis: Secrets Manager unreachable', () => {
  test('endpoint accepts and never answers: 503 (fixed body, Retry-After) within the secret read bound, never a hang; answering again → 200', async () => {
    const token = 'sm0token0' + 'd'.repeat(20);
    const s = await server(token);
    secrets = await startSecretsStandIn(ARN, { authToken: token });
    await secrets.setMode('hang');
    const handler = secretContainer(s);
    const hung = await timed(handler, 'POST', 'sm');
    console.log(`redis, Secrets Manager hung: answered ${hung.status} in ${hung.ms.toFixed(0)} ms (bound ${SECRET_READ_BOUNDS.requestTimeoutMs} ms)`);
    expect(hung).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'redis' }, headers: { 'Retry-After': '1' } });
    expect(hung.ms).toBeLessThan(SECRET_READ_BOUNDS.requestTimeoutMs + SLACK_MS);

    await secrets.setMode('refuse');
    const refused = await timed(handler, 'POST', 'sm');
    console.log(`redis, Secrets Manager refusing: answered ${refused.status} in ${refused.ms.toFixed(0)} ms`);
    expect(refused).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE }, headers: { 'Retry-After': '1' } });
    expect(refused.ms).toBeLessThan(SECRET_READ_BOUNDS.requestTimeoutMs + SLACK_MS);

    await secrets.setMode('answer');
    expect(await call(handler, 'POST', 'redis', 'sm')).toMatchObject({ status: 200, body: { counter: 1 } });
  }, 60_000);
});

describe('redis: idle connection dropped silently (frozen container behind a NAT)', () => {
  test('blackholed while idle: the next request answers 200 within one command timeout + connect, nothing lost or counted twice', async () => {
    const s = await server();
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: s.port });
    const a = admin(s);
    try {
      const handler = loadBundledHandler(ENTRY, {
        [REDIS_ENV.URL]: `redis://${proxy.address}`,
        [REDIS_ENV.KEY_PREFIX]: 'idle:',
        [REDIS_ENV.CONNECT_TIMEOUT_MS]: String(TIMEOUT_MS),
        [REDIS_ENV.COMMAND_TIMEOUT_MS]: String(TIMEOUT_MS),
        [REDIS_ENV.IDLE_CHECK_MS]: '300',
        USE_CONDITIONAL_WRITES: 'false',
        ATOMIC_COUNTER_LOG: 'off',
      });
      for (let i = 1; i <= 5; i++) expect((await call(handler, 'POST', 'redis', 'x')).body.counter).toBe(i);
      expect(proxy.blackholeExisting()).toBe(1);
      await new Promise((r) => setTimeout(r, 400)); // idle longer than the idle check
      const first = await timed(handler, 'POST', 'x');
      console.log(`redis after a silent drop: answered ${first.status} in ${first.ms.toFixed(0)} ms (command timeout ${TIMEOUT_MS} ms)`);
      expect(first).toMatchObject({ status: 200, body: { counter: 6 } });
      expect(first.ms).toBeLessThan(2 * TIMEOUT_MS + SLACK_MS);
      for (let i = 7; i <= 10; i++) expect((await call(handler, 'POST', 'redis', 'x')).body.counter).toBe(i);
      expect(await a.get('idle:x')).toBe('10');
      expect(proxy.accepted).toBe(2);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});
