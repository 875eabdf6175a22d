/**
 * One compare scenario on one backend (local/compare.ts): the measured
 * concurrent workload, the read-back of every id, the figures and their
 * verdict (compare-verdicts.ts). `runScenario` runs the four increment
 * scenarios; `runStepScenario` the mixed steps and the keyed retries.
 */
import type { CompareOptions } from './compare';
import { Answer, PostOptions, RETRY_GUARANTEE, Target } from './compare-targets';
import { IdTally, isApplied, judge, judgeRetries, judgeSteps, MIXED_STEPS, mixedStep, SentAnswer } from './compare-verdicts';
import { ProgressBar } from './progress';
import { LatencyHistogram, ScenarioFigures, ScenarioName, StepScenarioFigures, StepScenarioName } from './report';
import { runWorkload, WorkloadResult } from './workload';
import { BackendName, MAX_STEP } from '../src/runtime/store';

const HISTOGRAM_BOUNDS_MS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, Infinity];

function histogram(sortedMs: number[]): LatencyHistogram {
  const counts = HISTOGRAM_BOUNDS_MS.map(() => 0);
  let b = 0;
  for (const v of sortedMs) {
    while (v > HISTOGRAM_BOUNDS_MS[b]) b++;
    counts[b]++;
  }
  return { boundsMs: HISTOGRAM_BOUNDS_MS.map((x) => (x === Infinity ? null : x)), counts };
}

export async function runScenario(
  target: Target, backend: BackendName, scenario: ScenarioName, mode: { conditional: boolean; maximum?: number },
  options: CompareOptions, runTag: string, progress: ProgressBar, label: string,
): Promise<ScenarioFigures> {
  const spread = scenario.endsWith('spread');
  const ids = spread
    ? Array.from({ length: Math.max(1, options.ids) }, (_, i) => `${runTag}-${scenario}-${i}`)
    : [`${runTag}-${scenario}`];
  const tallies = new Map<string, IdTally>(ids.map((id) => [id, { requests: 0, accepted: 0, rejected: 0, errors: 0, counters: [], final: 0 }]));
  const errorStatuses: Record<string, number> = {};
  progress.start(label, options.requests);
  const result = await runWorkload({
    total: options.requests,
    concurrency: options.concurrency,
    call: async (index, caller) => {
      const id = ids[index % ids.length];
      const tally = tallies.get(id)!;
      tally.requests++;
      let answer: Answer;
      try {
        answer = await target.post(mode.conditional, id, caller);
      } catch {
        answer = { status: 0 };
      }
      if (isApplied(answer)) {
        tally.accepted++;
        // A sharded counter's 200 carries no value (docs/sharding.md): the total read back is checked instead.
        if (answer.counter !== undefined) tally.counters.push(answer.counter);
      } else if (answer.status === 409) {
        tally.rejected++;
      } else {
        tally.errors++;
        errorStatuses[answer.status] = (errorStatuses[answer.status] ?? 0) + 1;
      }
      return answer;
    },
    onProgress: (done) => progress.update(done),
  });
  // Read back every id (a few at a time) to check what the store holds.
  await runWorkload({
    total: ids.length,
    concurrency: 4,
    call: async (i) => {
      const answer = await target.get(ids[i]);
      if (answer.status !== 200 || answer.counter === undefined) throw new Error(`GET ${ids[i]} answered ${answer.status}`);
      tallies.get(ids[i])!.final = answer.counter;
      return answer;
    },
  }).then((r) => {
    const failed = r.requests - (r.statuses[200] ?? 0);
    if (failed > 0) throw new Error(`${backend} ${scenario}: ${failed} read-back GET(s) failed`);
  });
  const list = [...tallies.values()];
  const judged = judge(mode.conditional, mode.maximum, list);
  const figures: ScenarioFigures = {
    backend,
    scenario,
    conditional: mode.conditional,
    requests: options.requests,
    ids: ids.length,
    ...(mode.conditional ? { maximum: mode.maximum } : {}),
    concurrency: options.concurrency,
    ...timing(result),
    histogram: histogram(result.latencies),
    accepted: list.reduce((n, t) => n + t.accepted, 0),
    rejected: list.reduce((n, t) => n + t.rejected, 0),
    errors: list.reduce((n, t) => n + t.errors, 0),
    errorStatuses,
    final: list.reduce((n, t) => n + t.final, 0),
    expectedAccepted: judged.expectedAccepted,
    lostUpdates: judged.lostUpdates,
    overshoot: judged.overshoot,
    aboveMaximum: judged.aboveMaximum,
    duplicates: judged.duplicates,
    verdict: judged.reasons.length === 0 ? 'PASS' : 'FAIL',
    reasons: judged.reasons,
  };
  progress.finish(`${figures.opsPerSecond.toFixed(0)} ops/s, p99 ${figures.latencyMs.p99.toFixed(1)} ms, ${figures.verdict}`);
  return figures;
}

function timing(result: WorkloadResult) {
  return {
    durationMs: round(result.durationMs),
    opsPerSecond: round(result.opsPerSecond),
    latencyMs: {
      p50: round(result.p50),
      p95: round(result.p95),
      p99: round(result.p99),
      max: round(result.latencies[result.latencies.length - 1] ?? 0),
      mean: round(result.latencies.reduce((a, b) => a + b, 0) / Math.max(1, result.latencies.length)),
    },
  };
}

async function readBack(target: Target, backend: BackendName, id: string): Promise<number> {
  const answer = await target.get(id);
  if (answer.status !== 200 || answer.counter === undefined) throw new Error(`${backend}: read-back GET ${id} answered ${answer.status}`);
  return answer.counter;
}

function sentAnswer(sent: number, a: Answer): SentAnswer {
  return { sent, status: a.status, by: a.by, counter: a.counter, shards: a.shards, code: a.code, replayed: a.replayed };
}

/**
 * A steps or retry scenario on one hot id (fresh, so it starts at 0):
 * `*-mixed-step` sends `options.stepRequests` requests with `?by=` from
 * MIXED_STEPS; `*-retry` sends `options.retryKeys` keys, each twice
 * concurrently. (What a change costs in datastore calls is measured apart,
 * uncontended: compare-round-trips.ts.)
 */
export async function runStepScenario(
  target: Target, backend: BackendName, scenario: StepScenarioName, mode: { conditional: boolean; maximum?: number },
  options: CompareOptions, runTag: string, progress: ProgressBar, label: string,
): Promise<StepScenarioFigures> {
  const id = `${runTag}-${scenario}`;
  const errorStatuses: Record<string, number> = {};
  const note = (a: SentAnswer) => {
    if (a.status !== 200 && a.status !== 409) errorStatuses[a.status] = (errorStatuses[a.status] ?? 0) + 1;
    return a;
  };
  const common = {
    backend,
    scenario,
    conditional: mode.conditional,
    ...(mode.conditional ? { maximum: mode.maximum } : {}),
    concurrency: options.concurrency,
  };
  const send = async (post: (o: PostOptions) => Promise<Answer>, o: PostOptions): Promise<Answer> => {
    try {
      return await post(o);
    } catch {
      return { status: 0 };
    }
  };

  if (scenario.endsWith('mixed-step')) {
    const total = options.stepRequests ?? DEFAULT_STEP_REQUESTS;
    const answers: SentAnswer[] = [];
    progress.start(label, total);
    const result = await runWorkload({
      total,
      concurrency: options.concurrency,
      call: async (i, caller) => {
        const by = mixedStep(i);
        const a = await send((o) => target.post(mode.conditional, id, caller, o), { by });
        answers.push(note(sentAnswer(by, a)));
        return a;
      },
      onProgress: (done) => progress.update(done),
    });
    const final = await readBack(target, backend, id);
    const v = judgeSteps(mode.conditional, mode.maximum, answers, final);
    const figures: StepScenarioFigures = {
      ...common,
      requests: total,
      ...timing(result),
      accepted: v.accepted,
      rejected: answers.filter((a) => a.status === 409).length,
      rejectedBy: v.rejectedBy,
      errors: v.errors,
      errorStatuses,
      final,
      expectedFinal: v.expectedFinal,
      steps: {
        values: [...MIXED_STEPS],
        chainProblem: v.chain ?? null,
        chainChecked: v.chainChecked,
        byMismatches: v.byMismatches,
        outOfRange: v.outOfRange,
        wrongCodes: v.wrongCodes,
      },
      verdict: v.reasons.length === 0 ? 'PASS' : 'FAIL',
      reasons: v.reasons,
    };
    progress.finish(`${figures.opsPerSecond.toFixed(0)} ops/s, p99 ${figures.latencyMs.p99.toFixed(1)} ms, final ${final}, ${figures.verdict}`);
    return figures;
  }

  // Retries: keyed requests 2k and 2k+1 carry key k; taken one after the
  // other by two callers (two containers), they are in flight together.
  const keys = options.retryKeys ?? DEFAULT_RETRY_KEYS;
  const total = 2 * keys;
  // Conditional: the hot id starts so close to the maximum that only about
  // half the keys fit, so the run shows rejections at the maximum (and their
  // retries) besides the accepted keys.
  const start = mode.conditional ? Math.min(MAX_STEP, Math.max(0, mode.maximum! - Math.ceil(keys / 2))) : 0;
  if (start > 0) {
    const a = await send((o) => target.post(true, id, 0, o), { by: start });
    if (!isApplied(a) || (a.counter ?? start) !== start) throw new Error(`${backend}: setting ${id} to ${start} answered ${a.status} (counter ${a.counter})`);
  }
  const byKey = new Map<string, SentAnswer[]>();
  progress.start(label, total);
  const result = await runWorkload({
    total,
    concurrency: options.concurrency,
    call: async (i, caller) => {
      const key = `${id}-${Math.floor(i / 2)}`;
      const a = await send((o) => target.post(mode.conditional, id, caller, o), { key });
      const list = byKey.get(key) ?? [];
      list.push(note(sentAnswer(1, a)));
      byKey.set(key, list);
      return a;
    },
    onProgress: (done) => progress.update(done),
  });
  const final = await readBack(target, backend, id);
  const v = judgeRetries(mode.conditional, mode.maximum, byKey, final, start);
  const all = [...byKey.values()].flat();
  const rejectedBy: Record<string, number> = {};
  for (const a of all.filter((x) => x.status === 409)) rejectedBy[a.code ?? '?'] = (rejectedBy[a.code ?? '?'] ?? 0) + 1;
  const guarantee = RETRY_GUARANTEE[backend];
  const figures: StepScenarioFigures = {
    ...common,
    requests: total,
    ...timing(result),
    accepted: all.filter((a) => a.status === 200).length,
    rejected: all.filter((a) => a.status === 409).length,
    rejectedBy,
    errors: v.errors,
    errorStatuses,
    final,
    expectedFinal: start + v.expectedApplied,
    retry: {
      start,
      keys: v.keys,
      applied: v.applied,
      replays: v.replays,
      splitKeys: v.splitKeys,
      notOnceFresh: v.notOnceFresh,
      duplicates: v.duplicates,
      overshoot: v.overshoot,
      ...(guarantee ? { guarantee } : {}),
    },
    verdict: v.reasons.length === 0 ? 'PASS' : 'FAIL',
    reasons: v.reasons,
  };
  progress.finish(`${figures.opsPerSecond.toFixed(0)} ops/s, p99 ${figures.latencyMs.p99.toFixed(1)} ms, ${v.replays} replays, ${figures.verdict}`);
  return figures;
}

/** Requests of each mixed-step scenario. */
export const DEFAULT_STEP_REQUESTS = 500;
/** Keys of each retry scenario (each sent twice). */
export const DEFAULT_RETRY_KEYS = 60;

export function round(v: number): number {
  return Math.round(v * 100) / 100;
}
