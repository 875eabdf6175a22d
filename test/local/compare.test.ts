/**
 * `npm run compare` in small: every registered backend on its real engine,
 * through the bundled handlers, with tiny request counts; then the same tool
 * over HTTP against the local server. Checks the report files and that the
 * JSON holds every backend's figures and verdicts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { availableFixtures } from '../../local/backends';
import { uniqueNamespace } from '../../local/backends/fixture';
import { judge, optionsFromArgs, runComparison } from '../../local/compare';
import { ComparisonReport, SCENARIO_NAMES } from '../../local/report';
import { startLocalServer } from '../../local/server';

const backends = availableFixtures();
const SMALL = { concurrency: 4, requests: 40, max: 5, ids: 4, containers: 2, warmup: 8, silent: true } as const;

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

test('in-process comparison of every registered backend: report.md/json and both SVGs written, every scenario PASS', async () => {
  const out = tmpDir();
  const { report, files } = await runComparison({ ...SMALL, out });
  for (const file of [files.markdown, files.json, files.throughputSvg, files.latencySvg]) {
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
  expect(report.verdict).toBe('PASS');
  const markdown = fs.readFileSync(files.markdown, 'utf8');
  for (const backend of backends) expect(markdown).toContain(`| ${backend} | unconditional-hot |`);
  for (const svg of [files.throughputSvg, files.latencySvg]) {
    const text = fs.readFileSync(svg, 'utf8');
    expect(text.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(text.trim().endsWith('</svg>')).toBe(true);
    for (const backend of backends) expect(text).toContain(backend);
  }
}, 300_000);

test('over HTTP (--url/--api-key) against the local server in conditional mode: only the conditional scenarios run, and pass', async () => {
  const backend = backends[0];
  const server = await startLocalServer({ port: 0, quiet: true, conditionalWrites: true, maxCounterValue: 5, backends: [backend], namespace: uniqueNamespace('t_cmp'), disposeOnStop: true });
  try {
    const { report } = await runComparison({ ...SMALL, out: tmpDir(), url: server.url, apiKey: server.apiKey, backends: [backend] });
    const section = report.backends[0];
    expect(section.status).toBe('ran');
    expect(section.scenarios.map((s) => [s.scenario, s.verdict, s.maximum]))
      .toEqual([['conditional-hot', 'PASS', 5], ['conditional-spread', 'PASS', 5]]);
    expect(section.notRun.map((n) => n.scenario)).toEqual(['unconditional-hot', 'unconditional-spread']);
    expect(report.target).toBe(server.url);
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

test('flags: defaults, --backends validation, unknown flags rejected, --out resolved', () => {
  const defaults = optionsFromArgs([], {});
  expect(defaults).toMatchObject({ concurrency: 16, max: 200, ids: 20, containers: 8, backends: undefined, url: undefined });
  expect(defaults.out).toMatch(/reports[/\\]\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
  expect(optionsFromArgs(['--backends', 'redis,tidb', '--requests=100', '--out', 'x'], { API_KEY: 'k' })).toMatchObject({
    backends: ['redis', 'tidb'], requests: 100, out: path.resolve('x'), apiKey: 'k',
  });
  expect(() => optionsFromArgs(['--backends', 'mysql'])).toThrow(/Unknown backend/);
  expect(() => optionsFromArgs(['--concurency', '4'])).toThrow(/Unknown flag --concurency/);
  expect(() => optionsFromArgs(['--requests', '0'])).toThrow(/at least 1/);
});
