/**
 * A closed-loop load generator: `concurrency` callers each take the next
 * request number until `total` are done. Shared by the conformance tests,
 * the bench and the comparison.
 */
export interface CallOutcome {
  status: number;
  counter?: number;
}

export interface WorkloadResult {
  readonly requests: number;
  readonly durationMs: number;
  readonly opsPerSecond: number;
  /** Latencies in ms, ascending. */
  readonly latencies: number[];
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  /** Answers by HTTP status (0 = the call threw). */
  readonly statuses: Record<number, number>;
  /** `counter` of every 200 answer, in completion order. */
  readonly counters: number[];
}

export interface WorkloadOptions {
  readonly total: number;
  readonly concurrency: number;
  readonly call: (index: number, caller: number) => Promise<CallOutcome>;
  /** Called after each completed request with the number done. */
  readonly onProgress?: (done: number) => void;
}

export async function runWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  const counters: number[] = [];
  let next = 0;
  let done = 0;
  const started = performance.now();
  const caller = async (callerIndex: number) => {
    while (next < options.total) {
      const index = next++;
      const t0 = performance.now();
      let outcome: CallOutcome;
      try {
        outcome = await options.call(index, callerIndex);
      } catch {
        outcome = { status: 0 };
      }
      latencies.push(performance.now() - t0);
      statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1;
      if (outcome.status === 200 && outcome.counter !== undefined) counters.push(outcome.counter);
      options.onProgress?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, options.total)) }, (_, i) => caller(i)));
  const durationMs = performance.now() - started;
  latencies.sort((a, b) => a - b);
  return {
    requests: options.total,
    durationMs,
    opsPerSecond: options.total / (durationMs / 1000),
    latencies,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    statuses,
    counters,
  };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}
