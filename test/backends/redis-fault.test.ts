/**
 * Redis faults through the bundled handler, on a redis-server this file
 * starts itself (never the machine's shared one): stopped mid-run, hung, and
 * unroutable. Latencies are printed as figures, never asserted.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort } from '../../local/engines/engine';
import { startUnansweredConnects } from '../../local/engines/fault-proxy';
import { RedisServer, startRedisServer } from '../../local/engines/redis';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { REDIS_BUNDLES, REDIS_ENV } from '../../src/backends/redis/redis-env';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import { Answer, call } from '../kit/conformance';

const ENTRY = REDIS_BUNDLES.counter;
const TIMEOUT_MS = 500;
/**
 * The connect and command timeouts of the stop tests: their 503s come from a
 * refused or closed connection, never from a timeout (a refused connect
 * answers at once, whatever the bound), and the server fsyncs every write
 * (appendfsync always), so a slow disk or a busy machine (a cold connect
 * past 500 ms with four CPU-bound processes beside the suite) must not turn
 * a healthy 200 into a 503. The hung and unroutable tests keep TIMEOUT_MS: a
 * timeout is what they are about.
 */
const PATIENT_TIMEOUT_MS = 5000;
const PATIENT = { [REDIS_ENV.CONNECT_TIMEOUT_MS]: String(PATIENT_TIMEOUT_MS), [REDIS_ENV.COMMAND_TIMEOUT_MS]: String(PATIENT_TIMEOUT_MS) };
/** Scheduling slack on a shared machine: bounds are asserted as bound + SLACK. */
const SLACK_MS = 1500;

function containers(n: number, env: Record<string, string>): ProxyHandler[] {
  return Array.from({ length: n }, () => loadBundledHandler(ENTRY, {
    [REDIS_ENV.KEY_PREFIX]: 'fault:',
    [REDIS_ENV.CONNECT_TIMEOUT_MS]: String(TIMEOUT_MS),
    [REDIS_ENV.COMMAND_TIMEOUT_MS]: String(TIMEOUT_MS),
    USE_CONDITIONAL_WRITES: 'false',
    ATOMIC_COUNTER_LOG: 'off',
    ...env,
  }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Timed extends Answer {
  ms: number;
}

async function timedCall(handler: ProxyHandler, method: string, id: string): Promise<Timed> {
  const t0 = performance.now();
  const answer = await call(handler, method, 'redis', id);
  return { ...answer, ms: performance.now() - t0 };
}

/** `callers` loops calling POST until `stop()`; every answer is kept. */
function load(handlers: ProxyHandler[], id: string, callers: number) {
  const answers: Timed[] = [];
  let running = true;
  const loops = Array.from({ length: callers }, async (_, i) => {
    while (running) {
      answers.push(await timedCall(handlers[i % handlers.length], 'POST', id));
      await sleep(2);
    }
  });
  return {
    answers,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

function expectOnly200Or503(answers: Answer[]): void {
  for (const a of answers) {
    if (a.status === 200) continue;
    expect(a).toMatchObject({ status: 503 });
    expect(a.body).toEqual({ code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'redis' });
    expect(a.headers['Retry-After']).toBe('1');
  }
}

/** Every answer arrived within `boundMs` (+ slack): no request waited for the function timeout. */
function expectWithin(answers: Timed[], boundMs: number): void {
  const slowest = Math.max(...answers.map((a) => a.ms));
  expect(slowest).toBeLessThan(boundMs + SLACK_MS);
}

function summary(label: string, answers: Timed[]): string {
  const ms = answers.map((a) => a.ms).sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]?.toFixed(1);
  return `${label}: ${answers.length} answers, p50 ${at(0.5)} ms, max ${ms[ms.length - 1]?.toFixed(1)} ms`;
}

describe('redis faults (bundled handler, own redis-server)', () => {
  let dataDir: string;
  let port: number;
  let server: RedisServer | undefined;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-fault-'));
    port = await freePort();
    // Append-only file fsynced before each reply: a restart finds every acknowledged write.
    server = await startRedisServer({ port, dataDir });
  }, 30_000);

  afterAll(async () => {
    if (server) {
      try {
        process.kill(server.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await server.stop();
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  test('stopped between requests: 503 while down, each container succeeds on its next request after the restart, final value = number of 200s', async () => {
    const handlers = containers(4, { [REDIS_ENV.URL]: server!.url, ...PATIENT });
    const before = load(handlers, 'stopped', 8);
    await sleep(300);
    await before.stop();
    await server!.stop();
    server = undefined;

    // Down: every request answers 503 (connection refused: nothing was sent, nothing applied).
    const down: Timed[] = [];
    for (let i = 0; i < 20; i++) down.push(await timedCall(handlers[i % handlers.length], 'POST', 'stopped'));
    expect(down.map((a) => a.status)).toEqual(Array(20).fill(503));
    expectWithin(down, TIMEOUT_MS);

    server = await startRedisServer({ port, dataDir });
    // Back: the very next request of every container is a 200 on a fresh connection.
    const next: Timed[] = [];
    for (const handler of handlers) next.push(await timedCall(handler, 'POST', 'stopped'));
    expect(next.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    const after = load(handlers, 'stopped', 8);
    await sleep(200);
    await after.stop();

    const all = [...before.answers, ...down, ...next, ...after.answers];
    expectOnly200Or503(all);
    expect([...before.answers, ...after.answers].every((a) => a.status === 200)).toBe(true);
    const accepted = all.filter((a) => a.status === 200).map((a) => a.body.counter as number);
    expect(new Set(accepted).size).toBe(accepted.length);
    // Nothing lost, nothing counted twice. Read through a container that never saw the outage.
    const [fresh] = containers(1, { [REDIS_ENV.URL]: server.url });
    expect((await call(fresh, 'GET', 'redis', 'stopped')).body.counter).toBe(accepted.length);
    console.log([
      `stopped between requests: ${accepted.length} × 200, ${down.length} × 503, final value ${accepted.length}`,
      summary('503 while stopped (connection refused)', down),
      summary('first request per container after restart (new connection)', next),
    ].join('\n'));
  }, 60_000);

  test('stopped with requests in flight: every 200 is kept, and at most the in-flight requests answered 503 were applied', async () => {
    const callers = 8;
    const handlers = containers(4, { [REDIS_ENV.URL]: server!.url, ...PATIENT });
    const during = load(handlers, 'in-flight', callers);
    await sleep(300);
    await server!.stop();
    server = undefined;
    await sleep(200);
    await during.stop();
    server = await startRedisServer({ port, dataDir });
    const next = await Promise.all(handlers.map((h) => timedCall(h, 'POST', 'in-flight')));
    expect(next.map((a) => a.status)).toEqual([200, 200, 200, 200]);

    const all = [...during.answers, ...next];
    expectOnly200Or503(all);
    // In flight when the server stopped: the connection closes (before any command timeout).
    expectWithin(all.filter((a) => a.status === 503), TIMEOUT_MS + TIMEOUT_MS);
    const accepted = all.filter((a) => a.status === 200).map((a) => a.body.counter as number);
    expect(new Set(accepted).size).toBe(accepted.length);
    const final = (await call(handlers[0], 'GET', 'redis', 'in-flight')).body.counter as number;
    // A server shutting down can apply a command and close the connection
    // before its reply is written: that 503 is as ambiguous as a timeout.
    // Each caller has at most one request in flight when the server stops.
    expect(final).toBeGreaterThanOrEqual(accepted.length);
    expect(final - accepted.length).toBeLessThanOrEqual(callers);
    console.log(`stopped in flight: ${accepted.length} × 200, ${all.length - accepted.length} × 503, final value ${final} (${final - accepted.length} writes applied but answered 503)`);
  }, 60_000);

  test('hung (SIGSTOP): 503 within the command timeout, 200 again once it resumes; a timed-out write may still have been applied', async () => {
    const handlers = containers(4, { [REDIS_ENV.URL]: server!.url });
    const warm = await Promise.all(handlers.map((h) => timedCall(h, 'POST', 'hung')));
    expect(warm.map((a) => a.status)).toEqual([200, 200, 200, 200]);

    process.kill(server!.pid, 'SIGSTOP');
    const hung: Timed[] = [];
    try {
      for (let i = 0; i < 8; i++) hung.push(await timedCall(handlers[i % handlers.length], 'POST', 'hung'));
    } finally {
      process.kill(server!.pid, 'SIGCONT');
    }
    expect(hung.map((a) => a.status)).toEqual(Array(8).fill(503));
    expectOnly200Or503(hung);
    // A command on an open connection: one command timeout; a new connection: connect + command.
    expectWithin(hung, TIMEOUT_MS + TIMEOUT_MS);

    const resumed = await Promise.all(handlers.map((h) => timedCall(h, 'POST', 'hung')));
    expect(resumed.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    const final = (await call(handlers[0], 'GET', 'redis', 'hung')).body.counter as number;
    // The 200s are all counted; a write that timed out on the client may
    // have reached the server before it froze and be applied on resume.
    // That is why a timeout answers 503 and why a client retry can count twice.
    expect(final).toBeGreaterThanOrEqual(8);
    expect(final).toBeLessThanOrEqual(8 + hung.length);
    console.log([
      summary(`503 while hung (command timeout ${TIMEOUT_MS} ms)`, hung),
      `hung: 8 × 200, ${hung.length} × 503, final value ${final} (${final - 8} timed-out writes applied on resume)`,
    ].join('\n'));
  }, 60_000);

  test('unroutable endpoint: 503 within the connect timeout, never a hanging request', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed, so a SYN goes unanswered
    // (or the network stack refuses at once); either way the answer is a 503.
    const [handler] = containers(1, { [REDIS_ENV.HOST]: '192.0.2.1', [REDIS_ENV.PORT]: '6379', [REDIS_ENV.TLS]: 'false' });
    const answers: Timed[] = [];
    for (let i = 0; i < 3; i++) answers.push(await timedCall(handler, 'POST', 'unroutable'));
    expect(answers.map((a) => a.status)).toEqual([503, 503, 503]);
    expectOnly200Or503(answers);
    expectWithin(answers, TIMEOUT_MS);
    console.log(summary(`503 for an unroutable host (connect timeout ${TIMEOUT_MS} ms)`, answers));

    // Where the sandbox refuses 192.0.2.1 at once, a port whose SYNs go unanswered shows the connect timeout itself.
    const silent = await startUnansweredConnects();
    try {
      const [h] = containers(1, { [REDIS_ENV.HOST]: silent.host, [REDIS_ENV.PORT]: String(silent.port), [REDIS_ENV.TLS]: 'false' });
      const timedOut: Timed[] = [];
      for (let i = 0; i < 3; i++) timedOut.push(await timedCall(h, 'POST', 'unroutable'));
      expect(timedOut.map((a) => a.status)).toEqual([503, 503, 503]);
      expectOnly200Or503(timedOut);
      expect(Math.min(...timedOut.map((a) => a.ms))).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expectWithin(timedOut, TIMEOUT_MS);
      console.log(summary(`503 for SYNs never answered (connect timeout ${TIMEOUT_MS} ms)`, timedOut));
    } finally {
      await silent.close();
    }
  }, 30_000);
});
