/**
 * `npm run compare` in small: every registered backend on its real engine,
 * through the bundled handlers, with tiny request counts; then the same tool
 * over HTTP against the local server. Checks the report files and that the
 * JSON holds every backend's figures and verdicts, the steps and retries
 * included; and that every verdict fails on the broken run it exists to catch.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vm from 'vm';
import { availableFixtures, fixtureFor } from '../../local/backends';
import { uniqueNamespace } from '../../local/backends/fixture';
import { openBackend } from '../../local/backends/lifecycle';
import { judge, judgeRetries, judgeSteps, optionsFromArgs, runComparison } from '../../local/compare';
import { judgeRoundTrips, ROUND_TRIP_TARGETS, RoundTrips } from '../../local/compare-round-trips';
import { chainProblem, SentAnswer } from '../../local/compare-verdicts';
import { proxyEvent } from '../../local/lambda-container';
import { ComparisonReport, formatCostTable, formatStepsTable, SCENARIO_NAMES, STEP_SCENARIO_NAMES } from '../../local/report';
import { startLocalServer } from '../../local/server';
import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';

const backends = availableFixtures();
/** Requests per shard count of the hot id scenario: paced at 20/s, 4 s each, 16 s in all (DynamoDB only). */
const HOT_ID_REQUESTS = 80;
const SMALL = {
  concurrency: 4, requests: 40, max: 5, ids: 4, stepRequests: 40, retryKeys: 20, keyedRequests: 20, containers: 2, warmup: 8, silent: true,
} as const;

/**
 * Datastore calls per change as each store sends them today (uncontended,
 * unconditional): checked exactly for the backends whose fixture counts
 * calls. A backend that gains a counter (or changes its calls) updates its line.
 */
const ROUND_TRIPS_NOW: Record<string, RoundTrips> = {
  redis: { unkeyed: 1, keyedFresh: 1, keyedReplay: 1 },
  dynamo: { unkeyed: 1, keyedFresh: 2, keyedReplay: 1 },
  tidb: ROUND_TRIP_TARGETS.tidb,
  docdb: ROUND_TRIP_TARGETS.docdb,
  momento: ROUND_TRIP_TARGETS.momento,
};

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'compare-'));
}

/**
 * True when `ms` (rounded to 0.01) lies in the histogram bucket that holds the
 * `rank`-th smallest sample (1-based).
 */
function inBucketOfRank(h: { boundsMs: (number | null)[]; counts: number[] }, ms: number, rank: number): boolean {
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    seen += h.counts[i];
    if (seen < rank) continue;
    const upper = h.boundsMs[i] ?? Infinity;
    const lower = i === 0 ? -Infinity : (h.boundsMs[i - 1] ?? Infinity);
    return ms <= upper + 0.005 && ms > lower - 0.005;
  }
  return false;
}

test('in-process comparison of every registered backend: report.md/json and the SVGs written, every scenario PASS, steps, retries and the hot id included', async () => {
  const out = tmpDir();
  const { report, files } = await runComparison({ ...SMALL, hotIdRequests: HOT_ID_REQUESTS, out });
  const hotIdSvg = backends.includes('dynamo') ? [files.hotIdSvg!] : [];
  for (const file of [files.markdown, files.json, files.throughputSvg, files.latencySvg, ...hotIdSvg]) {
    expect(fs.existsSync(file)).toBe(true);
    expect(path.dirname(file)).toBe(out);
  }
  const json: ComparisonReport = JSON.parse(fs.readFileSync(files.json, 'utf8'));
  expect(json.verdict).toBe('PASS');
  expect(json.options).toMatchObject({ concurrency: 4, requests: 40, max: 5, ids: 4 });
  expect(json.machine).toMatchObject({ cpus: expect.any(Number), node: process.versions.node });
  for (const backend of backends) {
    const section = json.backends.find((b) => b.backend === backend)!;
    // A registered backend whose engine cannot be had fails here with its one line.
    expect({ backend, status: section.status, reason: section.reason }).toEqual({ backend, status: 'ran', reason: undefined });
    expect(section.engine).toEqual(expect.any(String));
    expect(section.caveats.length).toBeGreaterThan(0);
    expect(section.scenarios.map((s) => s.scenario)).toEqual([...SCENARIO_NAMES]);
    for (const s of section.scenarios) {
      expect({ backend, scenario: s.scenario, verdict: s.verdict, reasons: s.reasons }).toEqual({ backend, scenario: s.scenario, verdict: 'PASS', reasons: [] });
      expect(s.opsPerSecond).toBeGreaterThan(0);
      // The figures agree with the samples they summarise: each percentile
      // (nearest rank of 40) lies in the histogram bucket holding that sample,
      // and ops/s is requests over duration.
      const p50InBucket = inBucketOfRank(s.histogram, s.latencyMs.p50, 20);
      expect({ backend, scenario: s.scenario, p50InBucket }).toEqual({ backend, scenario: s.scenario, p50InBucket: true });
      const p99InBucket = inBucketOfRank(s.histogram, s.latencyMs.p99, 40);
      expect({ backend, scenario: s.scenario, p99InBucket }).toEqual({ backend, scenario: s.scenario, p99InBucket: true });
      const maxInBucket = inBucketOfRank(s.histogram, s.latencyMs.max, 40);
      expect({ backend, scenario: s.scenario, maxInBucket }).toEqual({ backend, scenario: s.scenario, maxInBucket: true });
      expect(Math.abs(s.opsPerSecond - 40 / (s.durationMs / 1000)) / s.opsPerSecond).toBeLessThan(0.01);
      expect(s.histogram.counts.reduce((a, b) => a + b, 0)).toBe(40);
      expect(s.errors).toBe(0);
      if (s.conditional) {
        // hot: one id, 40 attempts, maximum 5; spread: 4 ids × 10 attempts, maximum 5 each.
        const accepted = s.scenario === 'conditional-hot' ? 5 : 20;
        expect({ accepted: s.accepted, rejected: s.rejected, final: s.final, overshoot: s.overshoot })
          .toEqual({ accepted, rejected: 40 - accepted, final: accepted, overshoot: 0 });
      } else {
        expect({ accepted: s.accepted, final: s.final, lost: s.lostUpdates }).toEqual({ accepted: 40, final: 40, lost: 0 });
      }
    }
  }
  for (const backend of backends) {
    const section = json.backends.find((b) => b.backend === backend)!;
    expect(section.stepScenarios.map((s) => s.scenario)).toEqual([...STEP_SCENARIO_NAMES]);
    for (const s of section.stepScenarios) {
      expect({ backend, scenario: s.scenario, verdict: s.verdict, reasons: s.reasons }).toEqual({ backend, scenario: s.scenario, verdict: 'PASS', reasons: [] });
      expect(s.errors).toBe(0);
      expect(s.final).toBe(s.expectedFinal);
      if (s.scenario.endsWith('mixed-step')) {
        expect(s.requests).toBe(40);
        expect(s.steps).toMatchObject({ values: [1, 5, -3, 100, -50], chainProblem: null, byMismatches: 0, outOfRange: 0, wrongCodes: 0 });
        if (s.conditional) {
          // Maximum 5: +100 never fits, so some 409s are LIMIT_REACHED; -50 never fits above 0.
          expect(s.rejectedBy.LIMIT_REACHED).toBeGreaterThan(0);
          expect(s.rejectedBy.FLOOR_REACHED).toBeGreaterThan(0);
          expect(s.final).toBeLessThanOrEqual(5);
        }
      } else {
        // 20 keys × 2 on one hot id; conditional maximum 5: 5 keys apply, 15 are rejected twice.
        const applied = s.conditional ? 5 : 20;
        expect({ backend, scenario: s.scenario, accepted: s.accepted, rejected: s.rejected, final: s.final, replays: s.retry?.replays })
          .toEqual({ backend, scenario: s.scenario, accepted: 2 * applied, rejected: 40 - 2 * applied, final: applied, replays: applied });
      }
    }
    // Calls per change, counted on the engine side: exact where the fixture
    // has a counter (an extra call in a store fails here), n/a elsewhere.
    const expected = ROUND_TRIPS_NOW[backend];
    expect({ backend, roundTrips: section.roundTrips, reasons: section.roundTripReasons })
      .toEqual({ backend, roundTrips: fixtureFor(backend).callCounter ? expected : null, reasons: [] });
    expect(section.roundTripTargets).toEqual(ROUND_TRIP_TARGETS[backend]);
    // The keyed vs unkeyed bench: 3 rounds of each path, every answer a 200.
    const bench = section.keyedVsUnkeyed!;
    expect({ backend, rounds: bench.unkeyedOpsPerSecond.length, keyedRounds: bench.keyedOpsPerSecond.length, errors: bench.errorStatuses })
      .toEqual({ backend, rounds: 3, keyedRounds: 3, errors: {} });
    expect(bench.keyedMedian).toBe([...bench.keyedOpsPerSecond].sort((a, b) => a - b)[1]);
    expect(bench.unkeyedMedian).toBeGreaterThan(0);
  }
  expect(report.verdict).toBe('PASS');
  // The printed steps table: its columns and a row per backend and scenario.
  const table = formatStepsTable(report);
  for (const column of ['chain', 'replays', 'verdict']) expect(table.split('\n')[0]).toContain(column);
  // The costs table: calls per change (n/a without a counter) and the keyed vs unkeyed medians.
  const costs = formatCostTable(report);
  for (const column of ['calls unkeyed', 'keyed fresh', 'keyed replay', 'target', 'unkeyed ops/s', 'keyed ops/s']) expect(costs.split('\n')[0]).toContain(column);
  for (const backend of backends) {
    const rt = ROUND_TRIPS_NOW[backend];
    const calls = fixtureFor(backend).callCounter ? `${rt.unkeyed} +${rt.keyedFresh} +${rt.keyedReplay}` : 'n/a +n/a +n/a';
    expect(costs).toMatch(new RegExp(`^${backend} +${calls} `, 'm'));
  }
  for (const backend of backends) {
    for (const scenario of STEP_SCENARIO_NAMES) expect(table).toMatch(new RegExp(`^${backend} +${scenario} .*PASS`, 'm'));
  }
  if (backends.includes('momento')) expect(table).toMatch(/^momento +unconditional-retry .*PASS\*$/m);
  if (backends.includes('momento')) expect(table).toMatch(/^\* momento retry: .*weaker than exactly-once/m);
  const markdown = fs.readFileSync(files.markdown, 'utf8');
  for (const backend of backends) expect(markdown).toContain(`| ${backend} | unconditional-hot |`);
  expect(markdown).toContain('## Steps and retries');
  for (const backend of backends) expect(markdown).toContain(`| ${backend} | unconditional-retry |`);
  for (const svg of [files.throughputSvg, files.latencySvg]) {
    const text = fs.readFileSync(svg, 'utf8');
    expect(text.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(text.trim().endsWith('</svg>')).toBe(true);
    for (const backend of backends) expect(text).toContain(backend);
  }
  // The hot id past one item (DynamoDB's scale model; test/local/compare-hot-id.test.ts has the details):
  // 4 shard counts, every answer a 200 or a 429 with Retry-After, totals exact, throttled unsharded, none at 8 shards.
  if (backends.includes('dynamo')) {
    const hot = json.hotId!;
    expect(hot).toMatchObject({ backend: 'dynamo', limitPerKey: 4, offeredMultiple: 5, requests: HOT_ID_REQUESTS, verdict: 'PASS', reasons: [] });
    expect(hot.runs.map((r) => r.shards)).toEqual([1, 2, 4, 8]);
    for (const r of hot.runs) {
      expect({ shards: r.shards, answered: r.accepted + r.throttled, total: r.total, withoutRetryAfter: r.throttledWithoutRetryAfter })
        .toEqual({ shards: r.shards, answered: HOT_ID_REQUESTS, total: r.accepted, withoutRetryAfter: 0 });
    }
    expect(hot.runs[0].throttled).toBeGreaterThan(0);
    expect(hot.runs[3]).toMatchObject({ throttled: 0, total: HOT_ID_REQUESTS });
    expect(json.hotIdNotRun).toBeUndefined();
    expect(markdown).toContain('![Hot id past one item](hot-id.svg)');
    expect(fs.readFileSync(files.hotIdSvg!, 'utf8')).toContain('>8 shards<');
  }
}, 360_000);

test('COUNTER_SHARDS (--shards 8): every sharded backend runs every scenario on sharded counters and passes on the totals read back', async () => {
  const sharded = backends.filter((b) => ALL_BACKEND_CONTRACTS.find((c) => c.name === b)!.sharded);
  expect(sharded.length).toBeGreaterThan(0);
  const out = tmpDir();
  const { report, files } = await runComparison({ ...SMALL, shards: 8, backends: sharded, hotId: false, out });
  expect(report.options).toMatchObject({ shards: 8 });
  expect(fs.readFileSync(files.markdown, 'utf8')).toContain('**8 shards per id**');
  for (const backend of sharded) {
    const section = report.backends.find((b) => b.backend === backend)!;
    expect({ backend, status: section.status, reason: section.reason }).toEqual({ backend, status: 'ran', reason: undefined });
    for (const s of section.scenarios) {
      expect({ backend, scenario: s.scenario, verdict: s.verdict, reasons: s.reasons }).toEqual({ backend, scenario: s.scenario, verdict: 'PASS', reasons: [] });
      // The 200s carry no counter: every accepted change is counted from
      // the answer, and the total read back must match it exactly.
      const accepted = !s.conditional ? 40 : s.scenario === 'conditional-hot' ? 5 : 20;
      expect({ backend, scenario: s.scenario, accepted: s.accepted, final: s.final, duplicates: s.duplicates })
        .toEqual({ backend, scenario: s.scenario, accepted, final: accepted, duplicates: 0 });
    }
    for (const s of section.stepScenarios) {
      expect({ backend, scenario: s.scenario, verdict: s.verdict, reasons: s.reasons }).toEqual({ backend, scenario: s.scenario, verdict: 'PASS', reasons: [] });
      expect(s.final).toBe(s.expectedFinal);
      const { scenario } = s;
      if (s.steps) expect({ backend, scenario, chainChecked: s.steps.chainChecked }).toEqual({ backend, scenario, chainChecked: false });
      if (s.retry) expect({ backend, scenario, applied: s.retry.applied }).toEqual({ backend, scenario, applied: s.final - s.retry.start });
    }
  }
  expect(formatStepsTable(report)).toContain('n/a (sharded)');
}, 600_000);

test('over HTTP (--url/--api-key) against the local server in conditional mode: only the conditional scenarios run, and pass', async () => {
  const backend = backends[0];
  const server = await startLocalServer({ port: 0, quiet: true, conditionalWrites: true, maxCounterValue: 5, backends: [backend], namespace: uniqueNamespace('t_cmp'), disposeOnStop: true });
  try {
    const { report } = await runComparison({ ...SMALL, out: tmpDir(), url: server.url, apiKey: server.apiKey, backends: [backend] });
    const section = report.backends[0];
    expect(section.status).toBe('ran');
    expect(section.scenarios.map((s) => [s.scenario, s.verdict, s.maximum]))
      .toEqual([['conditional-hot', 'PASS', 5], ['conditional-spread', 'PASS', 5]]);
    // ?by= and Idempotency-Key go over HTTP too; nothing counts datastore calls there.
    expect(section.stepScenarios.map((s) => [s.scenario, s.verdict, s.reasons])).toEqual([['conditional-mixed-step', 'PASS', []], ['conditional-retry', 'PASS', []]]);
    const retry = section.stepScenarios[1];
    expect({ final: retry.final, replays: retry.retry?.replays }).toEqual({ final: 5, replays: 5 });
    expect({ roundTrips: section.roundTrips, bench: section.keyedVsUnkeyed }).toEqual({ roundTrips: null, bench: undefined });
    expect(section.notRun.map((n) => n.scenario)).toEqual(['unconditional-hot', 'unconditional-spread', 'unconditional-mixed-step', 'unconditional-retry']);
    expect(report.target).toBe(server.url);
    expect(report.hotIdNotRun).toMatch(/in-process runs only/);
    expect(JSON.stringify(report)).not.toContain(server.apiKey);
  } finally {
    await server.stop();
  }
}, 180_000);

test('a wrong API key over HTTP skips the backend with the 403, it does not crash the run', async () => {
  const backend = backends[0];
  const server = await startLocalServer({ port: 0, quiet: true, backends: [backend], namespace: uniqueNamespace('t_cmp'), disposeOnStop: true });
  try {
    const { report } = await runComparison({ ...SMALL, out: tmpDir(), url: server.url, apiKey: 'wrong', backends: [backend] });
    expect(report.backends[0]).toMatchObject({ status: 'skipped', reason: expect.stringContaining('403') });
    expect(report.verdict).toBe('FAIL'); // nothing ran: nothing was shown correct
  } finally {
    await server.stop();
  }
}, 180_000);

describe('verdicts fail on what they must', () => {
  const tally = (requests: number, accepted: number, counters: number[], final: number, rejected = 0, errors = 0) =>
    ({ requests, accepted, rejected, errors, counters, final });

  test('a clean unconditional and a clean conditional run pass', () => {
    expect(judge(false, undefined, [tally(3, 3, [1, 2, 3], 3)]).reasons).toEqual([]);
    expect(judge(true, 2, [tally(4, 2, [1, 2], 2, 2)]).reasons).toEqual([]);
  });

  test('a lost update (final below the increments answered 200) fails', () => {
    const verdict = judge(false, undefined, [tally(3, 3, [1, 2, 3], 2)]);
    expect(verdict.lostUpdates).toBe(1);
    expect(verdict.reasons.join()).toMatch(/lost update/);
  });

  test('two 200 answers with the same value fail even when the final value is right', () => {
    expect(judge(false, undefined, [tally(3, 3, [1, 2, 2], 3)]).reasons.join()).toMatch(/duplicate/);
  });

  test('conditional: overshoot, an answer above the maximum and a spurious rejection each fail', () => {
    expect(judge(true, 2, [tally(4, 3, [1, 2, 3], 3, 1)]).reasons.join()).toMatch(/exceed the maximum.*above the maximum/);
    expect(judge(true, 2, [tally(4, 1, [1], 1, 3)]).reasons.join()).toMatch(/1 lost update/);
  });

  test('errors fail: the outcome of an errored increment is unknown', () => {
    expect(judge(false, undefined, [tally(3, 2, [1, 2], 2, 0, 1)]).reasons.join()).toMatch(/error/);
  });
});

describe('step and retry verdicts fail on what they must', () => {
  const ok = (sent: number, counter: number, replayed?: string): SentAnswer => ({ sent, status: 200, by: sent, counter, replayed });
  const no = (sent: number, code: string): SentAnswer => ({ sent, status: 409, by: sent, code });

  test('the chain check: a serial order passes; two changes from one value, or a value nobody produced, fail', () => {
    expect(chainProblem(0, 3, [{ by: 5, counter: 5 }, { by: -3, counter: 2 }, { by: 1, counter: 3 }])).toBeUndefined();
    expect(chainProblem(0, 5, [{ by: 5, counter: 5 }, { by: 1, counter: 1 }])).toBeDefined();
    expect(chainProblem(0, 6, [{ by: 5, counter: 5 }, { by: 1, counter: 7 }])).toBeDefined();
  });

  test('clean mixed steps pass in both modes', () => {
    expect(judgeSteps(false, undefined, [ok(5, 5), ok(-50, -45), ok(100, 55), ok(1, 56)], 56).reasons).toEqual([]);
    expect(judgeSteps(true, 10, [ok(5, 5), no(100, 'LIMIT_REACHED'), no(-50, 'FLOOR_REACHED'), ok(-3, 2), ok(1, 3)], 3).reasons).toEqual([]);
  });

  test('a lost update: two steps applied from the same value, the stored value short of their sum', () => {
    const v = judgeSteps(false, undefined, [ok(5, 5), ok(1, 1)], 5);
    expect(v.expectedFinal).toBe(6);
    expect(v.reasons.join()).toMatch(/stored 5, but the accepted steps sum to 6/);
    expect(v.reasons.join()).toMatch(/do not chain/);
  });

  test('a chain that breaks fails even when the stored value equals the sum of the steps', () => {
    // 0 → 5, 5 → 6 and 5 → 2: the -3 was applied to a value the +1 had already left.
    const v = judgeSteps(false, undefined, [ok(5, 5), ok(1, 6), ok(-3, 2)], 3);
    expect(v.expectedFinal).toBe(3);
    expect(v.chain).toBeDefined();
    expect(v.reasons).toHaveLength(1);
    expect(v.reasons[0]).toMatch(/do not chain into one serial path from 0 to 3/);
  });

  test('an answer carrying another by than the one sent fails', () => {
    const v = judgeSteps(false, undefined, [ok(5, 5), { ...ok(1, 6), by: 5 }], 6);
    expect(v.byMismatches).toBe(1);
    expect(v.reasons.join()).toMatch(/another by than the one sent/);
  });

  test('conditional: a value above the maximum, a stored value above it, and a rejection with the wrong code each fail', () => {
    expect(judgeSteps(true, 5, [ok(5, 5), ok(1, 6)], 6).reasons.join()).toMatch(/2 answered or stored value\(s\) outside \[0, 5\]/);
    expect(judgeSteps(true, 5, [ok(5, 5), ok(-3, 2), ok(-3, -1)], -1).reasons.join()).toMatch(/outside \[0, 5\]/);
    expect(judgeSteps(true, 5, [ok(5, 5), no(-50, 'LIMIT_REACHED')], 5).reasons.join()).toMatch(/1 rejection\(s\) with the wrong code/);
    expect(judgeSteps(true, 5, [ok(5, 5), no(1, 'FLOOR_REACHED')], 5).wrongCodes).toBe(1);
  });

  test('unconditional: a rejection or an error fails', () => {
    expect(judgeSteps(false, undefined, [ok(5, 5), no(1, 'LIMIT_REACHED')], 5).reasons.join()).toMatch(/rejection\(s\) in unconditional mode/);
    expect(judgeSteps(false, undefined, [ok(5, 5), { sent: 1, status: 503 }], 5).reasons.join()).toMatch(/1 error answer/);
  });

  const keys = (...pairs: SentAnswer[][]) => new Map(pairs.map((answers, i) => [`k${i}`, answers]));

  // A sharded counter's 200 carries `shards` and no counter.
  const sh = (sent: number, replayed?: string): SentAnswer => ({ sent, status: 200, by: sent, shards: 8, replayed });

  test('sharded answers: the steps are judged on their sum (no chain to check); a short total, or sharded and unsharded answers mixed on one id, fail', () => {
    const clean = judgeSteps(true, 10, [sh(5), sh(-3), no(100, 'LIMIT_REACHED'), sh(1)], 3);
    expect({ reasons: clean.reasons, accepted: clean.accepted, chainChecked: clean.chainChecked })
      .toEqual({ reasons: [], accepted: 3, chainChecked: false });
    expect(judgeSteps(false, undefined, [sh(5), sh(1)], 5).reasons.join()).toMatch(/stored 5, but the accepted steps sum to 6/);
    expect(judgeSteps(true, 10, [sh(5), sh(1)], 11).reasons.join()).toMatch(/outside \[0, 10\]/);
    expect(judgeSteps(false, undefined, [sh(5), ok(1, 6)], 6).reasons.join()).toMatch(/1 of 2 200s carry a counter/);
  });

  test('sharded retries: clean keys pass; a key applied twice or a total short of the keys applied fails', () => {
    expect(judgeRetries(true, 1, keys([sh(1, 'false'), sh(1, 'true')], [no(1, 'LIMIT_REACHED'), no(1, 'LIMIT_REACHED')]), 1).reasons).toEqual([]);
    expect(judgeRetries(false, undefined, keys([sh(1, 'false'), sh(1, 'false')]), 2).reasons.join()).toMatch(/stored 2, but 1 key\(s\) applied.*without exactly one Idempotent-Replayed: false/);
    expect(judgeRetries(false, undefined, keys([sh(1, 'false'), sh(1, 'true')], [sh(1, 'false'), sh(1, 'true')]), 1).reasons.join()).toMatch(/stored 1, but 2 key\(s\) applied/);
    expect(judgeRetries(true, 1, keys([sh(1, 'false'), sh(1, 'true')]), 2).reasons.join()).toMatch(/above the maximum/);
  });

  test('clean retries pass in both modes', () => {
    expect(judgeRetries(false, undefined, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [ok(1, 2, 'true'), ok(1, 2, 'false')]), 2).reasons).toEqual([]);
    const atMaximum = keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [no(1, 'LIMIT_REACHED'), no(1, 'LIMIT_REACHED')]);
    const v = judgeRetries(true, 1, atMaximum, 1);
    expect(v.reasons).toEqual([]);
    expect({ applied: v.applied, replays: v.replays }).toEqual({ applied: 1, replays: 1 });
    // From a start value: 7 → 8 fits under the maximum 8, the second key does not.
    const fromSeven = keys([ok(1, 8, 'true'), ok(1, 8, 'false')], [no(1, 'LIMIT_REACHED'), no(1, 'LIMIT_REACHED')]);
    expect(judgeRetries(true, 8, fromSeven, 8, 7).reasons).toEqual([]);
    expect(judgeRetries(true, 8, fromSeven, 9, 7).reasons.join()).toMatch(/stored 9, but 1 key\(s\) applied from 7/);
  });

  test('a double-applied key (both answers fresh, two values, the store one ahead) fails', () => {
    const v = judgeRetries(false, undefined, keys([ok(1, 1, 'false'), ok(1, 2, 'false')]), 2);
    expect({ notOnceFresh: v.notOnceFresh, splitKeys: v.splitKeys }).toEqual({ notOnceFresh: 1, splitKeys: 1 });
    expect(v.reasons.join()).toMatch(/stored 2, but 1 key\(s\) applied/);
    expect(v.reasons.join()).toMatch(/without exactly one Idempotent-Replayed: false/);
  });

  test('a replay answering another value than the original fails', () => {
    const v = judgeRetries(false, undefined, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [ok(1, 2, 'false'), ok(1, 1, 'true')]), 2);
    expect(v.splitKeys).toBe(1);
    expect(v.reasons.join()).toMatch(/1 key\(s\) whose two answers differ/);
  });

  test('a lost update among keys (every key answered, the store short) and one value for two keys fail', () => {
    const lost = judgeRetries(false, undefined, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [ok(1, 2, 'false'), ok(1, 2, 'true')]), 1);
    expect(lost.reasons.join()).toMatch(/stored 1, but 2 key\(s\) applied/);
    const shared = judgeRetries(false, undefined, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [ok(1, 1, 'false'), ok(1, 1, 'true')]), 2);
    expect(shared.duplicates).toBe(1);
    expect(shared.reasons.join()).toMatch(/1 value\(s\) carried by more than one key/);
  });

  test('conditional: a key applied above the maximum, a spurious rejection and a wrong rejection code each fail', () => {
    const over = judgeRetries(true, 1, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [ok(1, 2, 'false'), ok(1, 2, 'true')]), 2);
    expect(over.overshoot).toBe(3);
    expect(over.reasons.join()).toMatch(/applied beyond the maximum.*above the maximum/);
    const spurious = judgeRetries(true, 2, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [no(1, 'LIMIT_REACHED'), no(1, 'LIMIT_REACHED')]), 1);
    expect(spurious.reasons.join()).toMatch(/1 key\(s\) not applied that should have been/);
    const floor = judgeRetries(true, 1, keys([ok(1, 1, 'false'), ok(1, 1, 'true')], [no(1, 'FLOOR_REACHED'), no(1, 'LIMIT_REACHED')]), 1);
    expect(floor.reasons.join()).toMatch(/1 rejection\(s\) that are not LIMIT_REACHED/);
  });

  test('an error or a key answered once fails', () => {
    expect(judgeRetries(false, undefined, keys([ok(1, 1, 'false'), { sent: 1, status: 503 }]), 1).reasons.join()).toMatch(/1 error answer/);
    expect(judgeRetries(false, undefined, keys([ok(1, 1, 'false')]), 1).reasons.join()).toMatch(/without exactly two answers/);
  });
});

test('COUNTER_SHARDS exported in the shell reaches only the containers given shards (the round-trip figures and unsharded runs stay unsharded)', async () => {
  // The bundles read the real process environment, not jest's copy.
  const realEnv: NodeJS.ProcessEnv = vm.runInThisContext('process').env;
  const saved = realEnv.COUNTER_SHARDS;
  realEnv.COUNTER_SHARDS = '8';
  const session = await openBackend('redis');
  try {
    const [plain] = await session.containers({ conditional: false }, 1);
    const [sharded] = await session.containers({ conditional: false, shards: 4 }, 1);
    const body = (res: { body: string }) => JSON.parse(res.body);
    expect(body(await plain(proxyEvent('POST', 'redis', 'x')))).toMatchObject({ counter: 1 });
    expect(body(await plain(proxyEvent('POST', 'redis', 'x')))).not.toHaveProperty('shards');
    expect(body(await sharded(proxyEvent('POST', 'redis', 'y')))).toMatchObject({ shards: 4 });
  } finally {
    if (saved === undefined) delete realEnv.COUNTER_SHARDS;
    else realEnv.COUNTER_SHARDS = saved;
    await session.close();
  }
});

test('round trips above a backend\'s target fail the run, with the figure and the target in the reason; none counted judges nothing', () => {
  expect(judgeRoundTrips('redis', { unkeyed: 1, keyedFresh: 1, keyedReplay: 1 })).toEqual([]);
  expect(judgeRoundTrips('dynamo', { unkeyed: 1, keyedFresh: 3, keyedReplay: 1 })).toEqual(['keyedFresh: 3 calls per change, above the target of 2']);
  expect(judgeRoundTrips('redis', { unkeyed: 2, keyedFresh: 1, keyedReplay: 2 })).toHaveLength(2);
  expect(judgeRoundTrips('tidb', null)).toEqual([]);
});

test('flags: defaults, --backends validation, unknown flags rejected, --out resolved', () => {
  const defaults = optionsFromArgs([], {});
  expect(defaults).toMatchObject({
    concurrency: 16, max: 200, ids: 20, stepRequests: 500, retryKeys: 60, keyedRequests: 1000, containers: 8, backends: undefined, url: undefined,
  });
  expect(defaults.out).toMatch(/reports[/\\]\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
  expect(optionsFromArgs(['--backends', 'redis,tidb', '--requests=100', '--out', 'x'], { API_KEY: 'k' })).toMatchObject({
    backends: ['redis', 'tidb'], requests: 100, out: path.resolve('x'), apiKey: 'k',
  });
  expect(() => optionsFromArgs(['--backends', 'mysql'])).toThrow(/Unknown backend/);
  expect(() => optionsFromArgs(['--concurency', '4'])).toThrow(/Unknown flag --concurency/);
  expect(() => optionsFromArgs(['--requests', '0'])).toThrow(/at least 1/);
  expect(optionsFromArgs(['--step-requests', '50', '--retry-keys', '7'])).toMatchObject({ stepRequests: 50, retryKeys: 7 });
  expect(() => optionsFromArgs(['--retry-keys', '0'])).toThrow(/--retry-keys must be at least 1/);
  expect(defaults).toMatchObject({ hotId: true, hotIdRequests: 200 });
  expect(optionsFromArgs(['--hot-id', 'false', '--hot-id-requests', '40'])).toMatchObject({ hotId: false, hotIdRequests: 40 });
  expect(optionsFromArgs(['--hot-id'])).toMatchObject({ hotId: true });
  expect(() => optionsFromArgs(['--hot-id', 'no'])).toThrow(/--hot-id must be true or false/);
  expect(defaults.shards).toBe(1);
  expect(optionsFromArgs([], { COUNTER_SHARDS: '4' }).shards).toBe(4);
  expect(optionsFromArgs(['--shards', '8'], { COUNTER_SHARDS: '4' }).shards).toBe(8);
  expect(() => optionsFromArgs(['--shards', '65'], {})).toThrow(/COUNTER_SHARDS must be at most 64/);
  expect(() => optionsFromArgs([], { COUNTER_SHARDS: 'many' })).toThrow(/COUNTER_SHARDS/);
});
