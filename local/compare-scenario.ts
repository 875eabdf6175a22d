/**
 * One compare scenario on one backend (local/compare.ts): warm-up, the
 * measured concurrent workload, the read-back of every id, the figures and
 * their verdict (compare-verdicts.ts).
 */
import type { CompareOptions } from './compare';
import { Answer, Target } from './compare-targets';
import { IdTally, judge } from './compare-verdicts';
import { ProgressBar } from './progress';
import { LatencyHistogram, ScenarioFigures, ScenarioName } from './report';
import { runWorkload } from './workload';
import { BackendName } from '../src/runtime/store';

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
      if (answer.status === 200 && answer.counter !== undefined) {
        tally.accepted++;
        tally.counters.push(answer.counter);
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
    durationMs: round(result.durationMs),
    opsPerSecond: round(result.opsPerSecond),
    latencyMs: {
      p50: round(result.p50),
      p95: round(result.p95),
      p99: round(result.p99),
      max: round(result.latencies[result.latencies.length - 1] ?? 0),
      mean: round(result.latencies.reduce((a, b) => a + b, 0) / Math.max(1, result.latencies.length)),
    },
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

export function round(v: number): number {
  return Math.round(v * 100) / 100;
}
