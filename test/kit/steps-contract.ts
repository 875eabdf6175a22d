/**
 * Steps and decrements (`POST /{backend}/{id}?by=N`), written once and run for
 * every backend by the conformance suite, through the bundled handler against
 * the real engine, in both modes.
 */
import { call, Counters, hammer } from './conformance';
import { uniqueNamespace } from '../../local/backends/fixture';
import { chainProblem, MIXED_STEPS, mixedStep, Transition } from '../../local/compare-verdicts';
import { runWorkload } from '../../local/workload';
import type { BackendName } from '../../src/runtime/store';


export interface StepsContractOptions {
  readonly mixedTotal?: number;
  readonly callers?: number;
  readonly containers?: number;
}

export function describeStepsContract(backend: BackendName, ctx: () => Counters, options: StepsContractOptions = {}): void {
  const mixedTotal = options.mixedTotal ?? 2000;
  const callers = options.callers ?? 32;
  const nContainers = options.containers ?? 8;

  describe('steps and decrements (?by=N)', () => {
    test(`unconditional: ${mixedTotal} concurrent mixed steps {${MIXED_STEPS.join(', ')}} on one id chain into one serial path`, async () => {
      const handlers = await ctx().containers({ conditional: false }, nContainers);
      const transitions: Transition[] = [];
      let sum = 0;
      const result = await runWorkload({
        total: mixedTotal,
        concurrency: callers,
        call: async (i, caller) => {
          const by = mixedStep(i);
          const answer = await call(handlers[caller % handlers.length], 'POST', backend, 'mixed', { by });
          if (answer.status === 200) {
            if (answer.body.by !== by) throw new Error(`answer carries by ${answer.body.by}, sent ${by}`);
            transitions.push({ by, counter: answer.body.counter });
            sum += by;
          }
          return { status: answer.status, counter: answer.body.counter };
        },
      });
      expect(result.statuses).toEqual({ 200: mixedTotal });
      const final = (await call(handlers[0], 'GET', backend, 'mixed')).body.counter;
      expect(final).toBe(sum);
      expect(chainProblem(0, final, transitions)).toBeUndefined();
    });

    test('conditional, maximum 1000: concurrent by=+7 → accepted × 7 ≤ 1000, ends at 994, no answer above the maximum', async () => {
      const handlers = await ctx().containers({ conditional: true, maximum: 1000 }, nContainers);
      const attempts = 200;
      const result = await hammerStep(handlers, backend, 'plus7', callers, attempts, 7);
      const accepted = Math.floor(1000 / 7);
      expect(result.statuses).toEqual({ 200: accepted, 409: attempts - accepted });
      expect([...result.counters].sort((a, b) => a - b)).toEqual(Array.from({ length: accepted }, (_, i) => 7 * (i + 1)));
      expect(result.codes).toEqual({ LIMIT_REACHED: attempts - accepted });
      expect((await call(handlers[0], 'GET', backend, 'plus7')).body.counter).toBe(7 * accepted);
    });

    test('conditional: concurrent by=−3 on a counter at 100 → never below 0, ends at 1, rejections are FLOOR_REACHED', async () => {
      const handlers = await ctx().containers({ conditional: true, maximum: 1000 }, nContainers);
      expect((await call(handlers[0], 'POST', backend, 'minus3', { by: 100 })).body.counter).toBe(100);
      const attempts = 60;
      const result = await hammerStep(handlers, backend, 'minus3', callers, attempts, -3);
      expect(result.statuses).toEqual({ 200: 33, 409: attempts - 33 });
      expect([...result.counters].sort((a, b) => a - b)).toEqual(Array.from({ length: 33 }, (_, i) => 1 + 3 * i));
      expect(result.codes).toEqual({ FLOOR_REACHED: attempts - 33 });
      expect((await call(handlers[0], 'GET', backend, 'minus3')).body.counter).toBe(1);
    });

    test('conditional: a step that would pass a bound is rejected whole even when a smaller one fits (no clamp); nothing written', async () => {
      const { fixture, engine } = ctx();
      const namespace = uniqueNamespace(`t_${backend}`);
      const [handler] = await ctx().containers({ conditional: true, maximum: 1000 }, 1, namespace);
      expect((await call(handler, 'POST', backend, 'edge', { by: 994 })).body.counter).toBe(994);
      const over = await call(handler, 'POST', backend, 'edge', { by: 7 });
      expect(over).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', by: 7, maxCounterValue: 1000 } });
      expect((await call(handler, 'GET', backend, 'edge')).body.counter).toBe(994);
      expect((await call(handler, 'POST', backend, 'edge', { by: 6 })).body).toMatchObject({ counter: 1000, by: 6 });
      expect((await call(handler, 'POST', backend, 'edge', { by: -1000 })).body.counter).toBe(0);
      const under = await call(handler, 'POST', backend, 'edge', { by: -1 });
      expect(under).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED', by: -1 } });
      expect((await call(handler, 'GET', backend, 'edge')).body.counter).toBe(0);
      // A brand-new id: a decrement and a step above the maximum write nothing, not even a 0.
      expect(await call(handler, 'POST', backend, 'fresh-down', { by: -1 })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED' } });
      expect(await call(handler, 'POST', backend, 'fresh-up', { by: 1001 })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED' } });
      expect((await fixture.keys(engine, namespace)).sort()).toEqual(['edge']);
    });

    test('unconditional: decrements apply and a counter may go below zero', async () => {
      const [handler] = await ctx().containers({ conditional: false });
      expect((await call(handler, 'POST', backend, 'negative', { by: -5 })).body).toMatchObject({ counter: -5, by: -5 });
      expect((await call(handler, 'POST', backend, 'negative', { by: 2 })).body).toMatchObject({ counter: -3, by: 2 });
      expect((await call(handler, 'GET', backend, 'negative')).body.counter).toBe(-3);
    });

    test('a bad by → 400 INVALID_STEP in both modes, nothing written', async () => {
      const { fixture, engine } = ctx();
      const namespace = uniqueNamespace(`t_${backend}`);
      const [unconditional] = await ctx().containers({ conditional: false }, 1, namespace);
      const [conditional] = await ctx().containers({ conditional: true, maximum: 100 }, 1, namespace);
      expect((await call(unconditional, 'POST', backend, 'valid', { by: 2 })).status).toBe(200);
      for (const handler of [unconditional, conditional]) {
        for (const by of ['0', '-0', '1e3', '+', '+5', '1.5', '2.0', 'abc', '', ' 1', '05', '1000000001', '-1000000001', '9007199254740993']) {
          const res = await call(handler, 'POST', backend, 'bad-step', { by });
          expect({ by, status: res.status, code: res.body.code }).toEqual({ by, status: 400, code: 'INVALID_STEP' });
        }
        const read = await call(handler, 'GET', backend, 'valid', { by: 1 });
        expect(read).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
      }
      expect((await call(unconditional, 'GET', backend, 'valid')).body.counter).toBe(2);
      expect(await fixture.keys(engine, namespace)).toEqual(['valid']);
    });
  });
}

/** `total` POSTs of one step on `id`, spread over callers and containers; counts the error codes too. */
async function hammerStep(handlers: Parameters<typeof hammer>[0], backend: string, id: string, callers: number, total: number, by: number) {
  const codes: Record<string, number> = {};
  const result = await runWorkload({
    total,
    concurrency: callers,
    call: async (_i, caller) => {
      const answer = await call(handlers[caller % handlers.length], 'POST', backend, id, { by });
      if (answer.status !== 200) codes[answer.body.code] = (codes[answer.body.code] ?? 0) + 1;
      return { status: answer.status, counter: answer.body.counter };
    },
  });
  return { ...result, codes };
}
