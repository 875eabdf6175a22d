/**
 * The "hot id past one item" scenario of `npm run compare` (issue 21): the
 * scale model (hot-id.ts) run for 1, 2, 4 and 8 shards, one hot id offered
 * 5× a scaled-down per-key write limit, as offered vs accepted ops/s.
 *
 * DynamoDB only: it is the one backend here with a per-key (per-partition)
 * write limit to model, and the only one whose throttling proxy exists.
 * Redis, Momento, DocumentDB and TiDB have other ceilings (one primary's
 * CPU, a rate limit per cache, one row or document lock), not a write rate
 * per key that a token bucket can stand in for.
 */
import { uniqueNamespace } from './backends/fixture';
import type { BackendSession } from './backends/lifecycle';
import { HOT_ID_LIMIT_PER_KEY, HotIdOutcome, offerHotId } from './hot-id';
import type { Verdict } from './report';

/** Shard counts of the scenario. */
export const HOT_ID_SHARD_COUNTS = [1, 2, 4, 8] as const;
/** The offered rate, as a multiple of the per-key limit. */
export const HOT_ID_OFFERED_MULTIPLE = 5;
/** Requests per shard count: at 5 × 4/s, 10 s each nominal, so the scenario takes about 45 s. */
export const DEFAULT_HOT_ID_REQUESTS = 200;

/** One shard count's figures. */
export interface HotIdRun {
  readonly shards: number;
  /** Requests sent (all +1 on one id). */
  readonly requests: number;
  /** From the first send to the last answer. */
  readonly seconds: number;
  /** requests ÷ seconds: what was offered, measured (at most the pace, less on a stalled machine). */
  readonly offeredPerSecond: number;
  /** 200 answers. */
  readonly accepted: number;
  /** accepted ÷ seconds. */
  readonly acceptedPerSecond: number;
  /** acceptedPerSecond ÷ the per-key limit. */
  readonly acceptedTimesLimit: number;
  /** 429 THROTTLED answers. */
  readonly throttled: number;
  /** 429s without `Retry-After` (must be 0). */
  readonly throttledWithoutRetryAfter: number;
  /** Any other answer (or a call that threw, status 0), by status. */
  readonly errorStatuses: Record<string, number>;
  /** DynamoDB calls the proxy throttled (a sharded change can meet some and be accepted on another slot). */
  readonly throttledCalls: number;
  /** The total read back with GET afterwards (must equal `accepted`). */
  readonly total: number;
  /** Why calls threw (status 0), the first few; absent when none did. */
  readonly failures?: string[];
}

/** The scenario's section of the report (`report.json` `hotId`). */
export interface HotIdReport {
  readonly backend: 'dynamo';
  /** Write units per second per partition key at the throttling proxy. */
  readonly limitPerKey: number;
  /** Offered rate ÷ limit. */
  readonly offeredMultiple: number;
  /** Requests per shard count. */
  readonly requests: number;
  readonly runs: HotIdRun[];
  readonly verdict: Verdict;
  readonly reasons: string[];
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** One outcome as report figures. */
export function hotIdRun(outcome: HotIdOutcome, limitPerKey: number): HotIdRun {
  const accepted = outcome.statuses[200] ?? 0;
  const errorStatuses = Object.fromEntries(Object.entries(outcome.statuses).filter(([status]) => status !== '200' && status !== '429'));
  return {
    shards: outcome.shards,
    requests: outcome.requests,
    seconds: round2(outcome.seconds),
    offeredPerSecond: round2(outcome.requests / outcome.seconds),
    accepted,
    acceptedPerSecond: round2(accepted / outcome.seconds),
    acceptedTimesLimit: round2(accepted / outcome.seconds / limitPerKey),
    throttled: outcome.statuses[429] ?? 0,
    throttledWithoutRetryAfter: outcome.throttledWithoutRetryAfter,
    errorStatuses,
    throttledCalls: outcome.throttledCalls,
    total: outcome.total,
    ...(outcome.failures.length ? { failures: outcome.failures } : {}),
  };
}

/**
 * What the scale model must show, per run, with no wall-clock threshold
 * (as test/backends/dynamo-shards-scale.test.ts): every answer a 200 or a
 * 429 with `Retry-After`; the total read back equal to the 200s; at most
 * shards × (burst + limit × elapsed) accepted (the buckets' allowance);
 * unsharded, some 429 (true unless the run took (requests − burst) ÷ limit
 * seconds, about 5× its nominal time); with 8 shards, none (the offered
 * rate, 5× at most, is under the 8× the id then takes).
 */
export function judgeHotId(runs: readonly HotIdRun[], limitPerKey: number): string[] {
  const reasons: string[] = [];
  for (const r of runs) {
    const at = `shards ${r.shards}`;
    const errors = Object.entries(r.errorStatuses);
    if (errors.length) {
      const why = r.failures?.length ? ` (${r.failures.join('; ')})` : '';
      reasons.push(`${at}: answers other than 200 or 429: ${errors.map(([s, n]) => `${n} × ${s}`).join(', ')}${why}`);
    }
    if (r.throttledWithoutRetryAfter > 0) reasons.push(`${at}: ${r.throttledWithoutRetryAfter} 429 answer(s) without Retry-After`);
    if (r.total !== r.accepted) reasons.push(`${at}: read back ${r.total}, but ${r.accepted} change(s) were accepted`);
    const allowance = r.shards * (limitPerKey + Math.ceil(limitPerKey * r.seconds));
    if (r.accepted > allowance) reasons.push(`${at}: ${r.accepted} accepted, above the ${allowance} the per-key limit allows in ${r.seconds} s`);
    if (r.shards === 1 && r.throttled === 0) reasons.push(`${at}: no 429 although the id was offered ${HOT_ID_OFFERED_MULTIPLE}× its limit`);
    if (r.shards >= 8 && r.throttled > 0) reasons.push(`${at}: ${r.throttled} 429(s) although the offered rate is under the id's capacity`);
  }
  return reasons;
}

/**
 * Runs the scenario on a DynamoDB session (or the test kit's, which
 * prepares namespaces the same way): one fresh namespace and fresh
 * containers per shard count.
 */
export async function runHotIdScenario(
  session: Pick<BackendSession, 'prepare'>, requests: number, onRun?: (run: HotIdRun) => void,
): Promise<HotIdReport> {
  const limitPerKey = HOT_ID_LIMIT_PER_KEY;
  const runs: HotIdRun[] = [];
  for (const shards of HOT_ID_SHARD_COUNTS) {
    const outcome = await offerHotId(session.prepare, {
      shards, offeredPerSecond: HOT_ID_OFFERED_MULTIPLE * limitPerKey, requests, limitPerKey,
    }, uniqueNamespace(`cmp_hot_${shards}`));
    const run = hotIdRun(outcome, limitPerKey);
    runs.push(run);
    onRun?.(run);
  }
  const reasons = judgeHotId(runs, limitPerKey);
  return {
    backend: 'dynamo', limitPerKey, offeredMultiple: HOT_ID_OFFERED_MULTIPLE, requests, runs, verdict: reasons.length ? 'FAIL' : 'PASS', reasons,
  };
}
