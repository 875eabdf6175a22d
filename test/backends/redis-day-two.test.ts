/**
 * Redis, day two, through the bundled handler on redis-servers this file
 * starts: the AUTH token rotated mid-run (engine and secret), the Secrets
 * Manager endpoint hung or refusing, and an idle connection dropped
 * silently (a frozen container behind a NAT). Times are printed and
 * asserted against the configured bounds, with slack.
 */
import * as net from 'net';
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

/** The server's first reply line to `AUTH default <token>` on a fresh connection. */
async function authReply(port: number, token: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(`AUTH default ${token}\r\n`));
    let data = '';
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve(data.split('\r\n')[0]);
      }
    });
    socket.on('error', reject);
  });
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

describe('redis: the documented rotation (ElastiCache ROTATE, then the secret, then SET)', () => {
  /**
   * docs/operations.md, "Redis: rotating the AUTH token", played on a local
   * redis-server: ROTATE makes both tokens valid (ACL: two passwords on the
   * default user), the secret then takes the new one, SET leaves only the new
   * token. ElastiCache keeps connections authenticated with the old token
   * after SET; this test closes them while idle at SET (the harsher case: a
   * container's next connection must present a token it has to re-read).
   * The containers check an idle connection after 50 ms (as they do after
   * 20 s by default), so they find the closed connection with a PING rather
   * than by sending a change on it (that would be an ambiguous 503 by
   * design, see the fault tests, and is not what SET does). Four
   * containers keep sending changes through every step: every answer must
   * be a 200 and the total exact.
   */
  test('four warm containers under load through every step: only 200s, the total exact, one secret re-read per container', async () => {
    const oldToken = 'old0token0' + 'a'.repeat(22);
    const newToken = 'new0token0' + 'b'.repeat(22);
    const s = await server(oldToken);
    const a = admin(s);
    secrets = await startSecretsStandIn(ARN, { authToken: oldToken });
    // A command budget for a busy machine: this test is about credentials, not time.
    const handlers = Array.from({ length: 4 }, () => secretContainer(s, {
      [REDIS_ENV.COMMAND_TIMEOUT_MS]: '5000', [REDIS_ENV.CONNECT_TIMEOUT_MS]: '5000', [REDIS_ENV.IDLE_CHECK_MS]: '50',
    }));
    const statuses: number[] = [];
    let stop = false;
    let paused: Promise<void> | undefined;
    let inFlight = 0;
    const load = handlers.map(async (h) => {
      while (!stop) {
        if (paused) await paused;
        inFlight++;
        statuses.push((await call(h, 'POST', 'redis', 'dual')).status);
        inFlight--;
      }
    });
    const settle = async (count: number) => {
      while (statuses.length < count) await new Promise((r) => setTimeout(r, 5));
    };
    const step = async (what: () => Promise<unknown> | void) => {
      await what();
      // Every container sends a few changes in this phase before the next step.
      await settle(statuses.length + 40);
    };
    await step(() => undefined);
    // 2. ROTATE: the old and the new token are both valid.
    await step(() => a.call('ACL', 'SETUSER', 'default', 'on', `>${oldToken}`, `>${newToken}`));
    // 3. The secret takes the new token.
    await step(() => secrets!.setValue({ authToken: newToken }));
    // 4. SET: only the new token; the old connections are closed between requests.
    await step(async () => {
      let resume!: () => void;
      paused = new Promise((r) => { resume = r; });
      while (inFlight > 0) await new Promise((r) => setTimeout(r, 1));
      await a.call('ACL', 'SETUSER', 'default', 'resetpass', `>${newToken}`);
      await a.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      // Idle past the containers' check interval: each PINGs before its next change.
      await new Promise((r) => setTimeout(r, 200));
      paused = undefined;
      resume();
    });
    stop = true;
    await Promise.all(load);
    const others = statuses.filter((status) => status !== 200);
    expect(others).toEqual([]);
    expect(await a.get('d2:dual')).toBe(String(statuses.length));
    // Each container read the secret at its start and once more when its reconnect was refused.
    expect(secrets.reads).toBe(2 * handlers.length);
    // The old token no longer opens a connection.
    expect(await authReply(s.port, oldToken)).toMatch(/^-WRONGPASS/);
    expect(await authReply(s.port, newToken)).toBe('+OK');
    // A cold container after the last step reads the new token and answers 200.
    expect(await call(secretContainer(s), 'POST', 'redis', 'dual')).toMatchObject({ status: 200, body: { counter: statuses.length + 1 } });
  }, 120_000);
});
