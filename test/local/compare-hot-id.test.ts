/**
 * The "hot id past one item" scenario of `npm run compare`
 * (local/compare-hot-id.ts) on DynamoDB Local behind the throttling proxy,
 * as the compare run drives it, with fewer requests: the section's shape
 * and figures, its table and chart; and that its verdict fails on what it
 * must. No rate is asserted (see test/backends/dynamo-shards-scale.test.ts
 * for why 429 > 0 unsharded and none at 8 shards hold on a busy machine).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HOT_ID_SHARD_COUNTS, HotIdRun, judgeHotId, runHotIdScenario } from '../../local/compare-hot-id';
import { HOT_ID_LIMIT_PER_KEY } from '../../local/hot-id';
import { ComparisonReport, formatHotIdTable, renderMarkdown, writeReport } from '../../local/report';
import { useBackend } from '../kit/conformance';

const ctx = useBackend('dynamo');

/** A report holding nothing but the hot id's part. */
function reportWith(part: Pick<ComparisonReport, 'hotId' | 'hotIdNotRun'>): ComparisonReport {
  return {
    tool: 'test',
    startedAt: '',
    finishedAt: '',
    durationSeconds: 0,
    target: 'test',
    options: {},
    machine: {},
    caveats: [],
    backends: [],
    verdict: 'PASS',
    ...part,
  };
}

/** At 20/s, 4 s per shard count nominal; unsharded, some must be throttled unless a run takes (80 − 4) ÷ 4 = 19 s. */
const REQUESTS = 80;

test(`shards ${HOT_ID_SHARD_COUNTS.join(', ')} offered 5× the per-key limit: totals exact, 429 with Retry-After unsharded, none at 8 shards; table, markdown and hot-id.svg`, async () => {
  const hot = await runHotIdScenario(ctx(), REQUESTS);
  // eslint-disable-next-line no-console
  console.log(formatHotIdTable(reportWith({ hotId: hot })));
  expect({ backend: hot.backend, limitPerKey: hot.limitPerKey, offeredMultiple: hot.offeredMultiple, requests: hot.requests })
    .toEqual({ backend: 'dynamo', limitPerKey: HOT_ID_LIMIT_PER_KEY, offeredMultiple: 5, requests: REQUESTS });
  expect(hot.runs.map((r) => r.shards)).toEqual([1, 2, 4, 8]);
  for (const r of hot.runs) {
    expect({ shards: r.shards, requests: r.requests, answered: r.accepted + r.throttled, errors: r.errorStatuses, total: r.total })
      .toEqual({ shards: r.shards, requests: REQUESTS, answered: REQUESTS, errors: {}, total: r.accepted });
    expect(r.throttledWithoutRetryAfter).toBe(0);
    expect(r.offeredPerSecond).toBeCloseTo(REQUESTS / r.seconds, 0);
    expect(r.acceptedTimesLimit).toBeCloseTo(r.acceptedPerSecond / HOT_ID_LIMIT_PER_KEY, 1);
  }
  expect(hot.runs[0].throttled).toBeGreaterThan(0);
  expect(hot.runs[3]).toMatchObject({ throttled: 0, accepted: REQUESTS, total: REQUESTS });
  expect({ verdict: hot.verdict, reasons: hot.reasons }).toEqual({ verdict: 'PASS', reasons: [] });

  // The report: a table row per shard count in the console and in report.md, and the chart.
  const table = formatHotIdTable(reportWith({ hotId: hot })).split('\n');
  expect(table[0]).toMatch(/^shards +offered ops\/s +accepted ops\/s +accepted × limit +429 +Retry-After/);
  expect(table.slice(2).map((line) => line.split(/ +/)[0])).toEqual(['1', '2', '4', '8']);
  expect(table[2]).toMatch(/on every 429/);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-hot-id-'));
  const report = reportWith({ hotId: hot });
  const files = writeReport(out, report);
  expect(files.hotIdSvg).toBe(path.join(out, 'hot-id.svg'));
  const svg = fs.readFileSync(files.hotIdSvg!, 'utf8');
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  for (const shards of ['1 shard', '2 shards', '4 shards', '8 shards']) expect(svg).toContain(`>${shards}<`);
  expect(svg).toContain(`shards 1 offered ops/s: ${hot.runs[0].offeredPerSecond.toFixed(1)}`);
  expect(svg).toContain(`shards 8 accepted ops/s: ${hot.runs[3].acceptedPerSecond.toFixed(1)}`);
  const markdown = renderMarkdown(report);
  expect(markdown).toContain('## Hot id past one item');
  expect(markdown).toContain('![Hot id past one item](hot-id.svg)');
  expect(markdown).toMatch(/^\| 8 \| [\d.]+ \| [\d.]+ \| ×[\d.]+ \| 0 \| – \| 80\/80 \|/m);
}, 180_000);

test('without a hot id section no hot-id.svg is written, and report.md says why it did not run', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-hot-id-'));
  const report = reportWith({ hotIdNotRun: 'turned off (--hot-id false)' });
  const files = writeReport(out, report);
  expect(files.hotIdSvg).toBeUndefined();
  expect(fs.existsSync(path.join(out, 'hot-id.svg'))).toBe(false);
  expect(fs.readFileSync(files.markdown, 'utf8')).toContain('Not run: turned off (--hot-id false).');
});

describe('the hot id verdict fails on what it must', () => {
  // 100 requests in 5 s, one key: 20 accepted (burst 4 + 4/s × 4 s), 80 throttled.
  const run = (shards: number, over: Partial<HotIdRun> = {}): HotIdRun => ({
    shards,
    requests: 100,
    seconds: 5,
    offeredPerSecond: 20,
    accepted: 20,
    acceptedPerSecond: 4,
    acceptedTimesLimit: 1,
    throttled: 80,
    throttledWithoutRetryAfter: 0,
    errorStatuses: {},
    throttledCalls: 200,
    total: 20,
    ...over,
  });
  const clean = [run(1), run(2, { accepted: 40, total: 40, throttled: 60 }), run(4, { accepted: 80, total: 80, throttled: 20 }),
    run(8, { accepted: 100, total: 100, throttled: 0 })];

  test('a clean run passes', () => {
    expect(judgeHotId(clean, 4)).toEqual([]);
  });

  test('a lost update (total short of the 200s), a 429 without Retry-After, another status, and more accepted than the buckets allow each fail', () => {
    expect(judgeHotId([run(1, { total: 19 })], 4)).toEqual(['shards 1: read back 19, but 20 change(s) were accepted']);
    expect(judgeHotId([run(1, { throttledWithoutRetryAfter: 3 })], 4)).toEqual(['shards 1: 3 429 answer(s) without Retry-After']);
    expect(judgeHotId([run(1, { errorStatuses: { 503: 2 }, failures: ['x'] })], 4).join()).toMatch(/answers other than 200 or 429: 2 × 503 \(x\)/);
    // One key: burst 4 + 4/s × 5 s = 24 at most.
    expect(judgeHotId([run(1, { accepted: 25, total: 25 })], 4)).toEqual(['shards 1: 25 accepted, above the 24 the per-key limit allows in 5 s']);
    expect(judgeHotId([run(1, { accepted: 24, total: 24 })], 4)).toEqual([]);
  });

  test('no 429 unsharded, or a 429 at 8 shards, fails', () => {
    expect(judgeHotId([run(1, { throttled: 0 })], 4).join()).toMatch(/shards 1: no 429/);
    expect(judgeHotId([run(8, { accepted: 99, total: 99, throttled: 1 })], 4).join()).toMatch(/shards 8: 1 429\(s\)/);
  });
});
