/**
 * Exactly-once increments (`Idempotency-Key`), written once and run for every
 * backend by the conformance suite, through the bundled handler against the
 * real engine, in both modes.
 */
import { Answer, call, CONFORMANCE_BUDGETS, COUNTING_TEST_TIMEOUT_MS, Counters } from './conformance';
import { FAULT_TARGETS } from './fault-contract';
import { uniqueNamespace } from '../../local/backends/fixture';
import { chainProblem, Transition } from '../../local/compare-verdicts';
import { engineAddress, FaultProxy, startFaultProxy, throughProxy } from '../../local/engines/fault-proxy';
import { ContainerMode, ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { COMMON_ENV } from '../../src/counter-env';
import type { BackendName } from '../../src/runtime/store';

const MODES: Array<{ label: string; mode: ContainerMode }> = [
  { label: 'unconditional', mode: { conditional: false } },
  { label: 'conditional', mode: { conditional: true, maximum: 100_000 } },
];

/**
 * The client timeouts of the fault contract's environment (names with
 * TIMEOUT or BUDGET), without its endpoint: short, so a lost reply turns into
 * a 503 quickly.
 */
function shortTimeouts(backend: BackendName): Record<string, string> {
  const env = FAULT_TARGETS[backend].env('127.0.0.1', 1);
  return Object.fromEntries(Object.entries(env).filter(([name]) => /TIMEOUT|BUDGET/.test(name)));
}

/**
 * A fault proxy in front of the engine and the prepared environment routed
 * through it. Fails when the environment names the engine some other way:
 * requests would bypass the proxy and nothing could be cut.
 */
async function proxied(engineUrl: string, env: Record<string, string>): Promise<{ proxy: FaultProxy; env: Record<string, string> }> {
  const target = engineAddress(engineUrl);
  if (!target) throw new Error(`the engine URL ${engineUrl} names no host:port to put a proxy in front of`);
  const proxy = await startFaultProxy(target);
  const routed = throughProxy(env, target.address, proxy.address);
  if (Object.keys(env).every((k) => env[k] === routed[k])) {
    await proxy.close();
    throw new Error(`no variable of the prepared environment names ${target.address}: requests would bypass the proxy`);
  }
  return { proxy, env: routed };
}

/**
 * What a client does after a 503: wait `Retry-After` and send the same
 * request again, here for at most 40 s: generous, since on a busy machine
 * the engine takes its time to notice the dead connection of a change cut
 * mid-flight and release what it held (a lock, a transaction).
 */
async function retryWhileUnavailable(send: () => Promise<Answer>): Promise<Answer> {
  const deadline = Date.now() + 40_000;
  for (;;) {
    const answer = await send();
    if (answer.status !== 503 || Date.now() > deadline) return answer;
    await new Promise((resolve) => setTimeout(resolve, 1000 * Number(answer.headers['Retry-After'] ?? 1)));
  }
}

/**
 * The fault contract's client timeouts and budgets, ten times longer, or the
 * kit's counting budgets where those are longer: for a test about answers
 * under contention, not about timeouts, so that a machine busy with other
 * work does not turn a slow call into a 503 (Momento's compare-and-swap
 * budget at ten times 1.5 s ran out for 2 keyed changes of 16 racing callers
 * with four CPU-bound processes beside the suite).
 */
function patientTimeouts(backend: BackendName): Record<string, string> {
  const env: Record<string, string> = { ...CONFORMANCE_BUDGETS[backend] };
  for (const [name, ms] of Object.entries(shortTimeouts(backend))) {
    env[name] = String(Math.max(10 * Number(ms), Number(env[name] ?? 0)));
  }
  return env;
}

/** An engine endpoint a test routes the handler through, with its own environment (`ExactlyOnceContractOptions.contendedRoute`). */
export interface EngineRoute {
  /** Variables over the prepared environment (e.g. an endpoint pointing at a proxy). */
  readonly env: Record<string, string>;
  /** Calls the route refused on the engine's behalf (e.g. emulated transaction conflicts): > 0 shows the contention was played. */
  refused(): number;
  close(): Promise<void>;
}

export interface ExactlyOnceContractOptions {
  readonly containers?: number;
  readonly callers?: number;
  /**
   * Where the mixed keyed/unkeyed hot-id test sends its calls, for an engine
   * whose local stand-in hides a kind of contention the service has (DynamoDB
   * Local runs one call at a time: no write ever meets a transaction under
   * way). @default - straight to the engine
   */
  readonly contendedRoute?: (engineUrl: string) => Promise<EngineRoute>;
}

export function describeExactlyOnceContract(backend: BackendName, ctx: () => Counters, options: ExactlyOnceContractOptions = {}): void {
  const nContainers = options.containers ?? 8;
  const callers = options.callers ?? 32;

  describe('exactly-once (Idempotency-Key)', () => {
    for (const { label, mode } of MODES) {
      test(`${label}: 50 concurrent requests with one key on a fresh id → one increment, 50 × 200 with the same counter, 49 replays`, async () => {
        const handlers = await ctx().containers(mode, nContainers);
        const send = (i: number) => call(handlers[i % handlers.length], 'POST', backend, 'one-key', { key: 'order-1' });
        const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => send(i)));
        expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
        expect(new Set(answers.map((a) => a.body.counter))).toEqual(new Set([1]));
        const replayed = answers.map((a) => a.headers['Idempotent-Replayed']);
        expect(replayed.filter((r) => r === 'true')).toHaveLength(49);
        expect(replayed.filter((r) => r === 'false')).toHaveLength(1);
        expect((await call(handlers[0], 'GET', backend, 'one-key')).body.counter).toBe(1);
      });

      test(`${label}: 1,000 requests carrying 500 keys, each sent twice concurrently, on one hot id → exactly 500, one value per key`, async () => {
        const maximum = mode.conditional ? 400 : undefined;
        const handlers = await ctx().containers(maximum === undefined ? mode : { ...mode, maximum }, nContainers);
        const byKey = new Map<string, Array<{ status: number; counter?: number; replayed?: string; code?: string }>>();
        const result = await runWorkload({
          total: 1000,
          concurrency: callers,
          // Requests 2k and 2k+1 carry key k: taken one after the other by two callers, they are in flight together.
          call: async (i, caller) => {
            const key = `pair-${Math.floor(i / 2)}`;
            const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'hot-keys', { key });
            const list = byKey.get(key) ?? [];
            list.push({ status: answer.status, counter: answer.body.counter, replayed: answer.headers['Idempotent-Replayed'], code: answer.body.code });
            byKey.set(key, list);
            return { status: answer.status, counter: answer.body.counter };
          },
        });
        const applied: number[] = [];
        for (const [key, answers] of byKey) {
          expect({ key, answers: answers.length }).toEqual({ key, answers: 2 });
          const ok = answers.filter((a) => a.status === 200);
          if (ok.length === 0) {
            expect({ key, codes: answers.map((a) => a.code) }).toEqual({ key, codes: ['LIMIT_REACHED', 'LIMIT_REACHED'] });
            continue;
          }
          // Applied once: both answers are 200 with its value, one of them fresh.
          // (A 409 beside a 200 is impossible here: the counter only goes up,
          // so a duplicate that saw the maximum came after the original, and
          // then it must have replayed.)
          expect({ key, statuses: answers.map((a) => a.status) }).toEqual({ key, statuses: [200, 200] });
          expect({ key, values: new Set(ok.map((a) => a.counter)).size }).toEqual({ key, values: 1 });
          expect({ key, fresh: ok.filter((a) => a.replayed === 'false').length }).toEqual({ key, fresh: 1 });
          applied.push(ok[0].counter!);
        }
        const final = (await call(handlers[0], 'GET', backend, 'hot-keys')).body.counter;
        const expected = maximum ?? 500;
        expect(final).toBe(expected);
        expect(applied).toHaveLength(expected);
        expect([...applied].sort((a, b) => a - b)).toEqual(Array.from({ length: expected }, (_, i) => i + 1));
        expect(result.statuses).toEqual(maximum === undefined ? { 200: 1000 } : { 200: 2 * maximum, 409: 1000 - 2 * maximum });
      }, COUNTING_TEST_TIMEOUT_MS);
    }

    test('the ambiguity resolved: the engine applies the keyed change, its reply is lost (503), and the retry answers the original value once', async () => {
      const { engine } = ctx();
      const namespace = uniqueNamespace(`t_${backend}`);
      const env = await ctx().prepare(namespace);
      const [direct] = await ctx().containers({ conditional: false }, 1, namespace);
      let expected = 0;
      let resolvedAfterLoss = 0;
      // Cut the replies after 0, 1, 2, … engine chunks: a keyed change of
      // several round trips is cut after each of them in turn, until one
      // goes through untouched.
      for (let keep = 0; keep < 40; keep++) {
        const { proxy, env: routed } = await proxied(engine.url, env);
        const through: ProxyHandler[] = [];
        try {
          const [handler] = await ctx().containers({ conditional: false, env: { ...routed, ...shortTimeouts(backend) } }, 1, namespace);
          through.push(handler);
          // Warm: connect, authenticate and prepare through the proxy first.
          // With the short timeouts a cold connect on a busy machine may
          // answer 503 (full suite, Node 24: it did): the warm-up is keyed and
          // retried, so it counts exactly once whatever that 503 hid.
          const warm = await retryWhileUnavailable(() => call(handler, 'POST', backend, 'ambiguous', { key: `warm-${keep}` }));
          expected++;
          expect({ keep, status: warm.status, counter: warm.body.counter }).toEqual({ keep, status: 200, counter: expected });
          void proxy.dropRepliesAfter(keep);
          const key = `lost-${keep}`;
          const first = await call(handler, 'POST', backend, 'ambiguous', { key });
          if (first.status === 200) {
            // Nothing was dropped in time: every cut point was tried.
            expect(proxy.droppedReplies).toBe(0);
            expected++;
            expect(first.body.counter).toBe(expected);
            break;
          }
          expect({ keep, status: first.status, code: first.body.code }).toEqual({ keep, status: 503, code: 'BACKEND_UNAVAILABLE' });
          // The client retries (on another container, straight to the engine).
          const retry = await retryWhileUnavailable(() => call(direct, 'POST', backend, 'ambiguous', { key }));
          expected++;
          expect({ keep, status: retry.status, counter: retry.body.counter }).toEqual({ keep, status: 200, counter: expected });
          if (retry.headers['Idempotent-Replayed'] === 'true') resolvedAfterLoss++;
          const again = await call(direct, 'POST', backend, 'ambiguous', { key });
          expect({ keep, counter: again.body.counter, replayed: again.headers['Idempotent-Replayed'] }).toEqual({ keep, counter: expected, replayed: 'true' });
          expect((await call(direct, 'GET', backend, 'ambiguous')).body.counter).toBe(expected);
        } finally {
          await Promise.all(through.map((h) => h.close?.()));
          await proxy.close();
        }
      }
      // At least one cut fell after the engine applied the change: the case
      // that double-counts without a key.
      expect(resolvedAfterLoss).toBeGreaterThanOrEqual(1);
    }, 180_000);

    test('a container killed mid-request (the change reached the engine, no answer came): the retry on a fresh container answers the original once', async () => {
      const { engine } = ctx();
      const namespace = uniqueNamespace(`t_${backend}`);
      const { proxy, env: routed } = await proxied(engine.url, await ctx().prepare(namespace));
      try {
        const [handler] = await ctx().containers({ conditional: false, env: routed }, 1, namespace);
        expect((await call(handler, 'POST', backend, 'killed')).status).toBe(200);
        // Drop every reply from now on; once the first is dropped the request is out: kill the container.
        const dropped = proxy.dropRepliesAfter(0);
        const pending = call(handler, 'POST', backend, 'killed', { key: 'killed-1' }).catch(() => undefined);
        await dropped;
        // Let the engine finish what reached it, then kill: its sockets close, its promise is abandoned.
        await new Promise((resolve) => setTimeout(resolve, 200));
        await handler.close?.();
        void pending;
        const [fresh] = await ctx().containers({ conditional: false }, 1, namespace);
        const retry = await retryWhileUnavailable(() => call(fresh, 'POST', backend, 'killed', { key: 'killed-1' }));
        expect(retry.status).toBe(200);
        expect(retry.body.counter).toBe(2);
        expect((await call(fresh, 'POST', backend, 'killed', { key: 'killed-1' })).body.counter).toBe(2);
        expect((await call(fresh, 'GET', backend, 'killed')).body.counter).toBe(2);
      } finally {
        await proxy.close();
      }
    }, 60_000);

    test('conditional: after the maximum is reached, replaying an accepted key answers its original 200; a rejected key is evaluated afresh', async () => {
      const [handler] = await ctx().containers({ conditional: true, maximum: 3 });
      for (let i = 1; i <= 3; i++) expect((await call(handler, 'POST', backend, 'full', { key: `k${i}` })).body.counter).toBe(i);
      const rejected = await call(handler, 'POST', backend, 'full', { key: 'k4' });
      expect(rejected).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED' } });
      const replay = await call(handler, 'POST', backend, 'full', { key: 'k1' });
      expect(replay).toMatchObject({ status: 200, body: { counter: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
      // k4 recorded nothing: after a decrement it applies.
      expect((await call(handler, 'POST', backend, 'full', { by: -1 })).body.counter).toBe(2);
      expect(await call(handler, 'POST', backend, 'full', { key: 'k4' })).toMatchObject({ status: 200, body: { counter: 3 }, headers: { 'Idempotent-Replayed': 'false' } });
    });

    test('a key reused on another id or with another step (the sign flipped included) → 422, nothing written; the original still replays', async () => {
      const { fixture, engine } = ctx();
      const namespace = uniqueNamespace(`t_${backend}`);
      const [handler] = await ctx().containers({ conditional: false }, 1, namespace);
      expect((await call(handler, 'POST', backend, 'first', { key: 'shared', by: 5 })).body.counter).toBe(5);
      expect(await call(handler, 'POST', backend, 'second', { key: 'shared', by: 5 })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      expect(await call(handler, 'POST', backend, 'first', { key: 'shared', by: 6 })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      expect(await call(handler, 'POST', backend, 'first', { key: 'shared' })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      // The same id and the same magnitude, the sign flipped: another change, both ways.
      expect(await call(handler, 'POST', backend, 'first', { key: 'shared', by: -5 })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      expect((await call(handler, 'POST', backend, 'first', { key: 'down', by: -3 })).body.counter).toBe(2);
      expect(await call(handler, 'POST', backend, 'first', { key: 'down', by: 3 })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      expect((await call(handler, 'GET', backend, 'first')).body.counter).toBe(2);
      expect((await call(handler, 'GET', backend, 'second')).body.counter).toBe(0);
      expect(await call(handler, 'POST', backend, 'first', { key: 'shared', by: 5 })).toMatchObject({ status: 200, body: { counter: 5 }, headers: { 'Idempotent-Replayed': 'true' } });
      expect(await call(handler, 'POST', backend, 'first', { key: 'down', by: -3 })).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'true' } });
      expect((await fixture.keys(engine, namespace)).sort()).toEqual(['first']);
    });

    for (const { label, mode } of MODES) {
      test(`${label}: a hot id taking keyed +2 and unkeyed +1 changes alike from 16 callers → only 200${mode.conditional ? '/409' : ''} answers, the totals exact, one serial path`, async () => {
        const { engine } = ctx();
        const route = options.contendedRoute ? await options.contendedRoute(engine.url) : undefined;
        try {
          const maximum = mode.conditional ? 500 : undefined;
          const handlers = await ctx().containers(
            { ...mode, ...(maximum ? { maximum } : {}), env: { ...patientTimeouts(backend), ...route?.env } },
            nContainers,
          );
          const transitions: Transition[] = [];
          const sent = { keyed: 0, unkeyed: 0 };
          const accepted = { keyed: 0, unkeyed: 0 };
          const codes: Record<string, number> = {};
          const result = await runWorkload({
            total: 400,
            concurrency: 16,
            call: async (i, caller) => {
              const withKey = i % 2 === 1;
              const by = withKey ? 2 : 1;
              sent[withKey ? 'keyed' : 'unkeyed']++;
              const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'mixed-keys', withKey ? { by, key: `mixed-${i}` } : { by });
              if (answer.status === 200) {
                accepted[withKey ? 'keyed' : 'unkeyed']++;
                transitions.push({ by, counter: answer.body.counter });
              } else {
                const what = `${withKey ? 'keyed' : 'unkeyed'} ${answer.status} ${answer.body.code}`;
                codes[what] = (codes[what] ?? 0) + 1;
              }
              return { status: answer.status, counter: answer.body.counter };
            },
          });
          // Every answer a 200 or (conditional) a 409 at the maximum: no 503 for either side.
          const others = Object.entries(codes).filter(([c]) => !(mode.conditional && c.endsWith(' 409 LIMIT_REACHED')));
          expect({ others, statuses: Object.keys(result.statuses).filter((s) => s !== '200' && s !== '409') }).toEqual({ others: [], statuses: [] });
          if (!mode.conditional) expect(accepted).toEqual(sent);
          const final = (await call(handlers[0], 'GET', backend, 'mixed-keys')).body.counter;
          expect(final).toBe(accepted.unkeyed + 2 * accepted.keyed);
          expect(chainProblem(0, final, transitions)).toBeUndefined();
          if (maximum !== undefined) {
            // 400 changes worth 600 against a maximum of 500: the bound was reached, and held.
            expect(final).toBeLessThanOrEqual(maximum);
            expect(final).toBeGreaterThanOrEqual(maximum - 1);
          }
          if (route) expect(route.refused()).toBeGreaterThan(0);
        } finally {
          await route?.close();
        }
      }, 120_000);
    }

    test('bad keys (empty, 256 characters, control characters, non-ASCII) → 400 INVALID_IDEMPOTENCY_KEY, nothing written', async () => {
      const { fixture, engine } = ctx();
      const namespace = uniqueNamespace(`t_${backend}`);
      const [handler] = await ctx().containers({ conditional: false }, 1, namespace);
      expect((await call(handler, 'POST', backend, 'valid', { key: 'x'.repeat(255) })).status).toBe(200);
      for (const key of ['', 'x'.repeat(256), 'tab\there', 'bell\u0007', 'del\u007f', 'naïve', '計数']) {
        const res = await call(handler, 'POST', backend, 'bad-key', { key });
        expect({ key, status: res.status, code: res.body.code }).toEqual({ key, status: 400, code: 'INVALID_IDEMPOTENCY_KEY' });
      }
      expect(await fixture.keys(engine, namespace)).toEqual(['valid']);
    });

    test('a short retention (2 s) expires: after it the same key increments again', async () => {
      const [handler] = await ctx().containers({ conditional: false, env: { [COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]: '2' } });
      expect((await call(handler, 'POST', backend, 'retained', { key: 'short' })).body.counter).toBe(1);
      expect(await call(handler, 'POST', backend, 'retained', { key: 'short' })).toMatchObject({ body: { counter: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
      await new Promise((resolve) => setTimeout(resolve, 3500));
      expect(await call(handler, 'POST', backend, 'retained', { key: 'short' })).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'false' } });
      expect(await call(handler, 'POST', backend, 'retained', { key: 'short' })).toMatchObject({ body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'true' } });
    }, 30_000);

    test('unkeyed requests are untouched by keys: no Idempotent-Replayed header', async () => {
      const [handler] = await ctx().containers({ conditional: false });
      const res = await call(handler, 'POST', backend, 'plain');
      expect(res.headers['Idempotent-Replayed']).toBeUndefined();
    });
  });
}
