/**
 * What a change costs on each backend, in `npm run compare`
 * (local/compare.ts): the datastore calls one change sends, counted on the
 * engine side through the fixture's `callCounter` (top-level commands, HTTP
 * requests, protocol commands: never TCP chunks), and the bench's keyed vs
 * unkeyed throughput on one hot id, alternated over rounds in the same run.
 */
import { uniqueNamespace } from './backends/fixture';
import { BackendSession } from './backends/lifecycle';
import type { Target } from './compare-targets';
import { loadCounterContainers, ProxyHandler, proxyEvent } from './lambda-container';
import { runWorkload } from './workload';
import { AGAIN, retry } from '../src/runtime/retry';
import type { BackendName } from '../src/runtime/store';

/** Datastore calls per change (medians of `ROUND_TRIP_SAMPLES`), uncontended, unconditional mode. */
export interface RoundTrips {
  /** A plain +1. */
  readonly unkeyed: number;
  /** A +1 with a fresh `Idempotency-Key`. */
  readonly keyedFresh: number;
  /** The same request again: its replay. */
  readonly keyedReplay: number;
}

/**
 * The most calls per change each backend may send (issue 20's targets):
 * a report whose count is above fails. Where a backend cannot reach its
 * target, its line changes here with the reason from the datastore's
 * documentation, so the report holds the best reached.
 */
export const ROUND_TRIP_TARGETS: Record<BackendName, RoundTrips> = {
  redis: { unkeyed: 1, keyedFresh: 1, keyedReplay: 1 },
  tidb: { unkeyed: 1, keyedFresh: 1, keyedReplay: 1 },
  dynamo: { unkeyed: 1, keyedFresh: 2, keyedReplay: 1 },
  docdb: { unkeyed: 1, keyedFresh: 3, keyedReplay: 3 },
  // 4 calls, 3 of them one after the other (the item read and the key's claim go out together).
  momento: { unkeyed: 1, keyedFresh: 4, keyedReplay: 3 },
};

/** Requests measured per figure; the median is reported (an idle check or a retry can add a call to one). */
export const ROUND_TRIP_SAMPLES = 5;

/**
 * Warm-up attempts while the first requests answer 503: a cold container's
 * first connect, with the deployed timeouts, can miss its bound on a machine
 * busy with other work, and that is not what this figure measures (the
 * counted requests that follow must each answer 200 at once).
 */
export const WARM_UP_ATTEMPTS = 10;

/** Why a backend's round trips fail its targets (empty: within them, or not counted). */
export function judgeRoundTrips(backend: BackendName, roundTrips: RoundTrips | null): string[] {
  if (roundTrips === null) return [];
  const target = ROUND_TRIP_TARGETS[backend];
  return (Object.keys(target) as (keyof RoundTrips)[])
    .filter((k) => roundTrips[k] > target[k])
    .map((k) => `${k}: ${roundTrips[k]} calls per change, above the target of ${target[k]}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Calls per change through one bundled handler container whose environment
 * passes the fixture's call counter; `null` when the backend's fixture has
 * no counter. Warm first (connect, authenticate, load scripts, prepare), on
 * another id: then each change alone, its calls counted from a reset.
 * Unkeyed changes go to an id only unkeyed changes touch, keyed ones to an
 * id that already exists and only keyed changes touch: each path as a
 * counter used one way costs it (on Momento an unkeyed change of an item
 * that carries key entries is a compare-and-swap, and a keyed change of a
 * plain-number item converts it first; docs/momento.md).
 */
export async function measureRoundTrips(session: BackendSession, runTag: string): Promise<RoundTrips | null> {
  const { fixture, engine, backend } = session;
  if (!fixture.callCounter) return null;
  const env = await session.prepare(uniqueNamespace(`rt_${backend}`));
  const counter = await fixture.callCounter(engine, env);
  let handler: ProxyHandler | undefined;
  try {
    [handler] = loadCounterContainers(fixture.entry, counter.env, { conditional: false }, 1);
    const send = (id: string, key?: string) => handler!(proxyEvent('POST', backend, id, key === undefined ? {} : { 'Idempotency-Key': key }));
    const post = async (id: string, key?: string) => {
      const res = await send(id, key);
      if (res.statusCode !== 200) throw new Error(`${backend} round trips: POST ${id} answered ${res.statusCode} ${res.body}`);
      const replayed = Object.entries(res.headers ?? {}).find(([name]) => name.toLowerCase() === 'idempotent-replayed')?.[1];
      return replayed;
    };
    const warm = (key?: string) => retry(async () => {
      const id = `${runTag}-rt-warm`;
      const res = await send(id, key);
      if (res.statusCode === 503) return AGAIN;
      if (res.statusCode !== 200) throw new Error(`${backend} round trips: warm-up POST ${id} answered ${res.statusCode} ${res.body}`);
      return undefined;
    }, {
      backoff: { baseMs: 200, capMs: 2000 },
      maxAttempts: WARM_UP_ATTEMPTS,
      retryable: () => false,
      exhausted: (attempts) => new Error(`${backend} round trips: the warm-up answered 503 ${attempts} times`),
    });
    await warm();
    await warm(`${runTag}-rt-warm`);
    await warm(`${runTag}-rt-warm`);
    const counted = async (work: () => Promise<unknown>) => {
      counter.reset();
      await work();
      return counter.count();
    };
    const plainId = `${runTag}-rt-plain`;
    const keyedId = `${runTag}-rt-keyed`;
    await post(plainId);
    await post(keyedId, `${runTag}-rt-first`);
    const figures = { unkeyed: [] as number[], keyedFresh: [] as number[], keyedReplay: [] as number[] };
    for (let i = 0; i < ROUND_TRIP_SAMPLES; i++) {
      const key = `${runTag}-rt-${i}`;
      figures.unkeyed.push(await counted(() => post(plainId)));
      figures.keyedFresh.push(await counted(async () => {
        if (await post(keyedId, key) !== 'false') throw new Error(`${backend} round trips: a fresh key was not answered fresh`);
      }));
      figures.keyedReplay.push(await counted(async () => {
        if (await post(keyedId, key) !== 'true') throw new Error(`${backend} round trips: a repeated key was not replayed`);
      }));
    }
    return { unkeyed: median(figures.unkeyed), keyedFresh: median(figures.keyedFresh), keyedReplay: median(figures.keyedReplay) };
  } finally {
    await handler?.close?.().catch(() => undefined);
    await counter.close();
  }
}

/** The keyed vs unkeyed bench of one backend (`BackendSection.keyedVsUnkeyed`). */
export interface KeyedVsUnkeyed {
  /** Requests per path per round. */
  readonly requests: number;
  readonly rounds: number;
  readonly concurrency: number;
  /** Plain +1 on one hot id (fresh per round): ops/s of each round and their median. */
  readonly unkeyedOpsPerSecond: number[];
  readonly unkeyedMedian: number;
  /** +1 with a fresh `Idempotency-Key` each, on another hot id (fresh per round). */
  readonly keyedOpsPerSecond: number[];
  readonly keyedMedian: number;
  /** keyedMedian ÷ unkeyedMedian. */
  readonly ratio: number;
  /** Answers other than 200 over all rounds, by status. */
  readonly errorStatuses: Record<string, number>;
}

/** Rounds of the keyed vs unkeyed bench. */
export const KEYED_BENCH_ROUNDS = 3;

/**
 * The bench's keyed vs unkeyed paths on this target (unconditional mode,
 * the compare run's containers and concurrency): each round runs the
 * unkeyed then the keyed path on fresh hot ids, so both see the same load.
 */
export async function keyedVsUnkeyed(target: Target, requests: number, concurrency: number, runTag: string): Promise<KeyedVsUnkeyed> {
  const errorStatuses: Record<string, number> = {};
  const unkeyed: number[] = [];
  const keyed: number[] = [];
  for (let round = 1; round <= KEYED_BENCH_ROUNDS; round++) {
    for (const withKey of [false, true]) {
      const id = `${runTag}-bench-${withKey ? 'keyed' : 'unkeyed'}-${round}`;
      const result = await runWorkload({
        total: requests,
        concurrency,
        call: async (i, caller) => {
          const answer = await target.post(false, id, caller, withKey ? { key: `${id}-${i}` } : {}).catch(() => ({ status: 0, counter: undefined }));
          if (answer.status !== 200) errorStatuses[answer.status] = (errorStatuses[answer.status] ?? 0) + 1;
          return answer;
        },
      });
      (withKey ? keyed : unkeyed).push(Math.round(result.opsPerSecond));
    }
  }
  const unkeyedMedian = median(unkeyed);
  const keyedMedian = median(keyed);
  return {
    requests,
    rounds: KEYED_BENCH_ROUNDS,
    concurrency,
    unkeyedOpsPerSecond: unkeyed,
    unkeyedMedian,
    keyedOpsPerSecond: keyed,
    keyedMedian,
    ratio: Math.round((keyedMedian / unkeyedMedian) * 100) / 100,
    errorStatuses,
  };
}
