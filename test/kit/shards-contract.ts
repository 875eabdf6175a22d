/**
 * Sharded counters (issue 21), written once for every backend: through the
 * bundled handler on the real engine, with `COUNTER_SHARDS` set in the
 * handler's environment, for each shard count given (1 and 8 by default)
 * and both modes. What it holds a store to:
 *
 * - no lost update: the total read back after quiescence is exactly what
 *   was accepted;
 * - the bound: for unit steps with at least `maximum` offered, exactly
 *   `maximum` accepted, and no 200 for a request sent after a 409 was
 *   answered (nothing decrements);
 * - the mixed-step chain: every accepted change accounted for, the total
 *   within [0, maximum];
 * - exactly-once: 500 keys each sent twice → exactly 500;
 * - resharding 2 → 8 → 4 under load: no overshoot, exact totals.
 *
 * Every answer is held to docs/openapi.json by `call` (a sharded 200
 * carries `shards` and no `counter`).
 */
import { call, COUNTING_TEST_TIMEOUT_MS, Counters } from './conformance';
import { uniqueNamespace } from '../../local/backends/fixture';
import { mixedStep } from '../../local/compare-verdicts';
import { ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { COMMON_ENV } from '../../src/counter-env';
import type { BackendName } from '../../src/runtime/store';

export interface ShardsContractOptions {
  /** Shard counts to run everything with. @default [1, 8] */
  readonly shardCounts?: readonly number[];
  /** Concurrent callers. @default 16 */
  readonly callers?: number;
  /** Containers the callers are spread over. @default 4 */
  readonly containers?: number;
}

/** The environment of a container configured with `shards`. */
export function shardsEnv(shards: number): Record<string, string> {
  return { [COMMON_ENV.SHARDS]: String(shards) };
}

/** A 200 answer's shape for `shards`: a total when unsharded, `shards` and no total when sharded. */
function expectShape(body: any, shards: number): void {
  if (shards > 1) {
    expect(body.shards).toBe(shards);
    expect(body.counter).toBeUndefined();
  } else {
    expect(typeof body.counter).toBe('number');
    expect(body.shards).toBeUndefined();
  }
}

export function describeShardsContract(backend: BackendName, ctx: () => Counters, options: ShardsContractOptions = {}): void {
  const shardCounts = options.shardCounts ?? [1, 8];
  const callers = options.callers ?? 16;
  const nContainers = options.containers ?? 4;

  const containers = (shards: number, conditional: boolean, maximum?: number, namespace?: string): Promise<ProxyHandler[]> =>
    ctx().containers({ conditional, ...(maximum === undefined ? {} : { maximum }), env: shardsEnv(shards) }, nContainers, namespace);
  const total = async (handler: ProxyHandler, id: string, shards: number): Promise<number> => {
    const read = await call(handler, 'GET', backend, id);
    expect(read.status).toBe(200);
    if (shards > 1) expect(read.body.shards).toBe(shards);
    return read.body.counter;
  };

  describe.each(shardCounts)(`${backend} sharded counters: shards = %i`, (shards) => {
    test('unconditional: 400 concurrent increments lose nothing (exact total after quiescence)', async () => {
      const handlers = await containers(shards, false);
      const result = await runWorkload({
        total: 400,
        concurrency: callers,
        call: async (_i, caller) => {
          const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'hot');
          if (answer.status === 200) expectShape(answer.body, shards);
          return { status: answer.status };
        },
      });
      expect(result.statuses).toEqual({ 200: 400 });
      expect(await total(handlers[0], 'hot', shards)).toBe(400);
    }, COUNTING_TEST_TIMEOUT_MS);

    test('conditional, maximum 100, 300 unit increments: exactly 100 accepted, no 200 sent after a 409 was answered, total 100', async () => {
      const maximum = 100;
      const handlers = await containers(shards, true, maximum);
      let clock = 0;
      let firstRejection = Infinity;
      const lateAccepted: number[] = [];
      const result = await runWorkload({
        total: 300,
        concurrency: callers,
        call: async (_i, caller) => {
          const sent = clock++;
          const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'capped');
          const answered = clock++;
          if (answer.status === 200) {
            expectShape(answer.body, shards);
            if (sent > firstRejection) lateAccepted.push(sent);
          } else if (answer.status === 409) {
            expect(answer.body.code).toBe('LIMIT_REACHED');
            firstRejection = Math.min(firstRejection, answered);
          }
          return { status: answer.status };
        },
      });
      expect(result.statuses).toEqual({ 200: maximum, 409: 300 - maximum });
      expect(lateAccepted).toEqual([]);
      expect(await total(handlers[0], 'capped', shards)).toBe(maximum);
      expect((await call(handlers[1 % handlers.length], 'POST', backend, 'capped')).status).toBe(409);
    }, COUNTING_TEST_TIMEOUT_MS);

    test('conditional, maximum 12, one caller: no 409 before the maximum on five ids (every increment below it accepted, the slot with the last room found), then 409', async () => {
      // Concurrent runs only prove the bound; a rejection one too early (a
      // slot's room missed, a stale snapshot) shows with a single caller.
      const [handler] = await containers(shards, true, 12);
      for (const id of ['e1', 'e2', 'e3', 'e4', 'e5']) {
        const statuses: number[] = [];
        for (let i = 0; i < 13; i++) statuses.push((await call(handler, 'POST', backend, id)).status);
        expect({ id, statuses }).toEqual({ id, statuses: [...Array(12).fill(200), 409] });
        expect(await total(handler, id, shards)).toBe(12);
      }
    }, COUNTING_TEST_TIMEOUT_MS);

    test.each([false, true])('mixed steps {+1, +5, −3, +100, −50}, conditional %s (maximum 1000): every accepted change accounted for, total within bounds', async (conditional) => {
      const maximum = 1000;
      const handlers = await containers(shards, conditional, maximum);
      let sum = 0;
      const codes: Record<string, number> = {};
      const result = await runWorkload({
        total: 600,
        concurrency: callers,
        call: async (i, caller) => {
          const by = mixedStep(i);
          const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'mixed', { by });
          if (answer.status === 200) {
            expect(answer.body.by).toBe(by);
            expectShape(answer.body, shards);
            sum += by;
          } else {
            codes[answer.body.code] = (codes[answer.body.code] ?? 0) + 1;
          }
          return { status: answer.status };
        },
      });
      const final = await total(handlers[0], 'mixed', shards);
      expect(final).toBe(sum);
      if (conditional) {
        expect(final).toBeGreaterThanOrEqual(0);
        expect(final).toBeLessThanOrEqual(maximum);
        // Only bound rejections: contention is never an answer.
        expect(Object.keys(codes).filter((c) => c !== 'LIMIT_REACHED' && c !== 'FLOOR_REACHED')).toEqual([]);
        expect((result.statuses[200] ?? 0) + (result.statuses[409] ?? 0)).toBe(600);
      } else {
        expect(result.statuses).toEqual({ 200: 600 });
      }
    }, COUNTING_TEST_TIMEOUT_MS);

    test.each([false, true])('500 Idempotency-Keys each sent twice (conditional %s, maximum 1000) → exactly 500, one replay each', async (conditional) => {
      const handlers = await containers(shards, conditional, 1000);
      const order = Array.from({ length: 1000 }, (_, i) => i % 500);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      const replays = new Map<number, boolean[]>();
      const result = await runWorkload({
        total: order.length,
        concurrency: callers,
        call: async (i, caller) => {
          const k = order[i];
          const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'keyed', { key: `key-${k}` });
          if (answer.status === 200) {
            expectShape(answer.body, shards);
            (replays.get(k) ?? replays.set(k, []).get(k)!).push(answer.headers['Idempotent-Replayed'] === 'true');
          }
          return { status: answer.status };
        },
      });
      expect(result.statuses).toEqual({ 200: 1000 });
      expect(await total(handlers[0], 'keyed', shards)).toBe(500);
      expect(replays.size).toBe(500);
      for (const flags of replays.values()) expect(flags.sort()).toEqual([false, true]);
    }, COUNTING_TEST_TIMEOUT_MS);
  });

  describe(`${backend} sharded counters: resharding 2 → 8 → 4 under load`, () => {
    /** Containers of each width on one namespace; load runs on two widths at once while the width changes. */
    const phases = async (conditional: boolean, maximum: number) => {
      const namespace = uniqueNamespace(`t_${backend}_reshard`);
      const widths = [2, 8, 4];
      const handlers = new Map<number, ProxyHandler[]>();
      for (const w of widths) handlers.set(w, await containers(w, conditional, maximum, namespace));
      let accepted = 0;
      const statuses: Record<number, number> = {};
      const run = (w: number, n: number) => runWorkload({
        total: n,
        concurrency: callers / 2,
        call: async (_i, caller) => {
          const list = handlers.get(w)!;
          const answer = await call(list[caller % list.length], 'POST', backend, 'resharded');
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
          if (answer.status === 200) {
            expectShape(answer.body, w);
            accepted++;
          }
          return { status: answer.status };
        },
      });
      await run(2, 60);
      await Promise.all([run(2, 60), run(8, 90)]);
      await Promise.all([run(8, 60), run(4, 90)]);
      const totals = await Promise.all(widths.map((w) => total(handlers.get(w)![0], 'resharded', w)));
      return { accepted, statuses, totals };
    };

    test('unconditional: every change counted, every width reads the same exact total', async () => {
      const { accepted, statuses, totals } = await phases(false, 10);
      expect(statuses).toEqual({ 200: 360 });
      expect(totals).toEqual([accepted, accepted, accepted]);
    }, COUNTING_TEST_TIMEOUT_MS);

    test('conditional, maximum 200, 360 offered: exactly 200 accepted, every width reads 200', async () => {
      const { accepted, statuses, totals } = await phases(true, 200);
      expect(statuses).toEqual({ 200: 200, 409: 160 });
      expect(accepted).toBe(200);
      expect(totals).toEqual([200, 200, 200]);
    }, COUNTING_TEST_TIMEOUT_MS);
  });
}
