/**
 * The comparison report: its data shape and its writers (Markdown, JSON and
 * SVG charts written by hand, so the report needs no dependency and
 * opens in any browser or GitHub page).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ColdFigures } from './cold';
import type { HotIdReport } from './compare-hot-id';
import type { KeyedVsUnkeyed, RoundTrips } from './compare-round-trips';

export type Verdict = 'PASS' | 'FAIL';

export const SCENARIO_NAMES = ['unconditional-hot', 'unconditional-spread', 'conditional-hot', 'conditional-spread'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/**
 * Steps and retries, one hot id each: `*-mixed-step` sends `?by=` drawn from
 * {+1, +5, −3, +100, −50}; `*-retry` sends every +1 twice concurrently with
 * one fresh `Idempotency-Key` per pair.
 */
export const STEP_SCENARIO_NAMES = ['unconditional-mixed-step', 'conditional-mixed-step', 'unconditional-retry', 'conditional-retry'] as const;
export type StepScenarioName = (typeof STEP_SCENARIO_NAMES)[number];

/** Latency histogram: `counts[i]` calls took ≤ `boundsMs[i]` (and more than the previous bound); the last bound is Infinity (`null` in JSON). */
export interface LatencyHistogram {
  readonly boundsMs: (number | null)[];
  readonly counts: number[];
}

/** One scenario on one backend: measured figures and the contract's checks (compare-verdicts.ts). */
export interface ScenarioFigures {
  readonly backend: string;
  readonly scenario: ScenarioName;
  readonly conditional: boolean;
  readonly requests: number;
  readonly ids: number;
  /** Conditional scenarios only. */
  readonly maximum?: number;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly opsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number; readonly mean: number };
  readonly histogram: LatencyHistogram;
  /** 200 answers. */
  readonly accepted: number;
  /** 409 answers. */
  readonly rejected: number;
  /** Anything else (5xx, transport failures); by status, 0 = the call threw. */
  readonly errors: number;
  readonly errorStatuses: Record<string, number>;
  /** Accepted increments the run should produce: requests (unconditional), Σ min(requests per id, maximum) (conditional). */
  readonly expectedAccepted: number;
  /** Sum over the scenario's ids of the value read back with GET. */
  readonly final: number;
  /** Unconditional: expected − final. Conditional: min(requests, maximum) − accepted, per id, summed. Non-zero fails. */
  readonly lostUpdates: number;
  /** Conditional: Σ max(0, final − maximum) per id. */
  readonly overshoot: number;
  /** Conditional: 200 answers that carried a counter above the maximum. */
  readonly aboveMaximum: number;
  /** 200 answers whose counter another 200 of the same id also carried. */
  readonly duplicates: number;
  readonly verdict: Verdict;
  /** Why a FAIL failed (empty on PASS). */
  readonly reasons: string[];
}

/** One steps or retry scenario on one backend (compare-verdicts.ts judgeSteps / judgeRetries). */
export interface StepScenarioFigures {
  readonly backend: string;
  readonly scenario: StepScenarioName;
  readonly conditional: boolean;
  readonly maximum?: number;
  readonly requests: number;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly opsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number; readonly mean: number };
  /** 200 answers (replays included). */
  readonly accepted: number;
  /** 409 answers. */
  readonly rejected: number;
  /** 409 answers by code (LIMIT_REACHED, FLOOR_REACHED). */
  readonly rejectedBy: Record<string, number>;
  readonly errors: number;
  readonly errorStatuses: Record<string, number>;
  /** The value read back with GET. */
  readonly final: number;
  /** What it must be: Σ by of the 200s (mixed steps); start + keys, or start + min(keys, maximum − start) (retries). */
  readonly expectedFinal: number;
  /** Mixed steps only. */
  readonly steps?: {
    /** The steps drawn from. */
    readonly values: number[];
    /** Why the 200s' transitions do not chain from 0 to `final` (null: they do, or were not checked). */
    readonly chainProblem: string | null;
    /** False on sharded counters: their 200s carry no value to chain (the sum of the steps is still checked). */
    readonly chainChecked: boolean;
    readonly byMismatches: number;
    readonly outOfRange: number;
    readonly wrongCodes: number;
  };
  /** Retries only. */
  readonly retry?: {
    /** The hot id's value before the keys: 0, or (conditional) a plain step to maximum − keys/2 so that about half the keys fit. */
    readonly start: number;
    readonly keys: number;
    readonly applied: number;
    /** `Idempotent-Replayed: true` answers. */
    readonly replays: number;
    readonly splitKeys: number;
    readonly notOnceFresh: number;
    readonly duplicates: number;
    readonly overshoot: number;
    /** A guarantee weaker than exactly-once that this PASS cannot show (Momento). */
    readonly guarantee?: string;
  };
  readonly verdict: Verdict;
  readonly reasons: string[];
}

export interface BackendSection {
  readonly backend: string;
  readonly status: 'ran' | 'skipped';
  /** Skipped: one line saying why (what to install). */
  readonly reason?: string;
  /** Engine the backend ran on, e.g. "DynamoDB Local (started)". */
  readonly engine?: string;
  readonly caveats: string[];
  readonly scenarios: ScenarioFigures[];
  /** Steps and retries (`STEP_SCENARIO_NAMES`). */
  readonly stepScenarios: StepScenarioFigures[];
  /** Scenarios not run, with why (e.g. a deployed API in the other mode). */
  readonly notRun: { scenario: ScenarioName | StepScenarioName; reason: string }[];
  /**
   * Datastore calls per change, counted on the engine side through the
   * bundled handler (compare-round-trips.ts): uncontended, unconditional
   * mode. `null` when not counted: a skipped backend, a run over HTTP, or a
   * fixture without a call counter.
   */
  roundTrips: RoundTrips | null;
  /** The most calls per change allowed (issue 20's targets); counts above fail the run. */
  roundTripTargets?: RoundTrips;
  /** Why the round trips failed (above a target, or the measurement failed); empty or absent when they passed. */
  roundTripReasons?: string[];
  /** The bench's keyed vs unkeyed throughput on one hot id (median of rounds, same run). */
  keyedVsUnkeyed?: KeyedVsUnkeyed;
  /** Why there is no keyed vs unkeyed figure, when it failed. */
  keyedVsUnkeyedError?: string;
  /** Cold start of the deployed bundle in fresh processes (in-process runs with cold samples). */
  cold?: ColdFigures;
  /** Why there are no cold figures, when they were asked for. */
  coldError?: string;
}

export interface ComparisonReport {
  readonly tool: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationSeconds: number;
  /** "in-process bundled handlers" or the URL of the API driven over HTTP. */
  readonly target: string;
  readonly options: Record<string, unknown>;
  readonly machine: Record<string, unknown>;
  readonly caveats: string[];
  readonly backends: BackendSection[];
  /** The "hot id past one item" scenario (DynamoDB's scale model), when it ran. */
  readonly hotId?: HotIdReport;
  /** Why it did not run (turned off, over HTTP, DynamoDB not run, or a failure). */
  readonly hotIdNotRun?: string;
  readonly verdict: Verdict;
}

export interface ReportFiles {
  readonly markdown: string;
  readonly json: string;
  readonly throughputSvg: string;
  readonly latencySvg: string;
  /** Offered vs accepted ops/s per shard count, when the hot id scenario ran. */
  readonly hotIdSvg?: string;
}

const COLUMNS = ['backend', 'scenario', 'ops/s', 'p50 ms', 'p95 ms', 'p99 ms', 'accepted', 'rejected', 'errors', 'final', 'lost', 'overshoot', 'verdict'];
const RIGHT_ALIGNED = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

function ms(value: number): string {
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function rows(report: ComparisonReport): string[][] {
  const out: string[][] = [];
  for (const section of report.backends) {
    for (const s of section.scenarios) {
      const overshoot = s.conditional ? String(s.overshoot + s.aboveMaximum) : '–';
      out.push([
        s.backend, s.scenario, s.opsPerSecond.toFixed(0), ms(s.latencyMs.p50), ms(s.latencyMs.p95), ms(s.latencyMs.p99),
        String(s.accepted), String(s.rejected), String(s.errors), `${s.final}/${s.expectedAccepted}`, String(s.lostUpdates), overshoot, s.verdict,
      ]);
    }
  }
  return out;
}

const STEP_COLUMNS = [
  'backend', 'scenario', 'ops/s', 'p50 ms', 'p99 ms', 'accepted', 'rejected', 'errors', 'final', 'chain', 'replays', 'verdict',
];
const STEP_RIGHT_ALIGNED = new Set([2, 3, 4, 5, 6, 7, 8, 10]);

function stepRows(report: ComparisonReport): string[][] {
  const out: string[][] = [];
  for (const section of report.backends) {
    for (const s of section.stepScenarios ?? []) {
      out.push([
        s.backend, s.scenario, s.opsPerSecond.toFixed(0), ms(s.latencyMs.p50), ms(s.latencyMs.p99),
        String(s.accepted), String(s.rejected), String(s.errors), `${s.final}/${s.expectedFinal}`,
        s.steps ? (s.steps.chainProblem !== null ? 'BROKEN' : s.steps.chainChecked ? 'ok' : 'n/a (sharded)') : '–',
        s.retry ? String(s.retry.replays) : '–',
        `${s.verdict}${s.retry?.guarantee ? '*' : ''}`,
      ]);
    }
  }
  return out;
}

/** Footnotes of the steps table: the weaker guarantees its verdicts cannot show. */
function stepNotes(report: ComparisonReport): string[] {
  const notes = new Map<string, string>();
  for (const section of report.backends) {
    for (const s of section.stepScenarios ?? []) if (s.retry?.guarantee) notes.set(s.backend, s.retry.guarantee);
  }
  return [...notes].map(([backend, note]) => `* ${backend} retry: ${note}`);
}

const STEPS_LEGEND = [
  '`final` is the value read back against what it must be (the sum of the accepted steps; the keys that should apply); ' +
    '`chain`: the 200s\' transitions (counter − by) → counter form one path from 0 to the final value (a serial order of the changes exists); ' +
    '`replays`: answers with `Idempotent-Replayed: true`. Mixed steps fail on a wrong final value, a broken chain, an answer whose by differs from the one sent, ' +
    'and (conditional) a value outside [0, maximum] or a rejection not coded LIMIT_REACHED (up) / FLOOR_REACHED (down); ' +
    'retries fail unless both answers of a key carry the same counter and exactly one is fresh, the stored value equals the keys applied, ' +
    'no value belongs to two keys and (conditional) nothing exceeds the maximum. Any error fails both.',
];

/** The steps and retries table as fixed-width text, footnotes included (empty when none ran). */
export function formatStepsTable(report: ComparisonReport): string {
  const body = stepRows(report);
  if (body.length === 0) return '';
  const widths = STEP_COLUMNS.map((c, i) => Math.max(c.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (STEP_RIGHT_ALIGNED.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(STEP_COLUMNS), widths.map((w) => '─'.repeat(w)).join('  '), ...body.map(line), ...stepNotes(report)].join('\n');
}

function stepsMarkdown(report: ComparisonReport): string[] {
  const body = stepRows(report);
  if (body.length === 0) return [];
  const align = STEP_COLUMNS.map((_, i) => (STEP_RIGHT_ALIGNED.has(i) ? '---:' : '---'));
  const notes = stepNotes(report).map((n) => `\\${n}`);
  return [
    '## Steps and retries',
    '',
    `One hot id per scenario. Mixed steps: ${report.options.stepRequests} requests with \`?by=\` drawn from {+1, +5, −3, +100, −50}. ` +
      `Retries: ${report.options.retryKeys} fresh \`Idempotency-Key\`s on +1, each sent twice concurrently ` +
      '(conditional: the id is first set by one plain step to the maximum − keys/2, so about half the keys fit and the rest are rejected twice).',
    '',
    ...STEPS_LEGEND,
    '',
    [STEP_COLUMNS, align, ...body].map((r) => `| ${r.join(' | ')} |`).join('\n'),
    '',
    ...(notes.length ? [notes.join('\n\n'), ''] : []),
  ];
}

const COST_COLUMNS = ['backend', 'calls unkeyed', 'keyed fresh', 'keyed replay', 'target', 'unkeyed ops/s', 'keyed ops/s', 'keyed ÷ unkeyed'];

function costRows(report: ComparisonReport): string[][] {
  return report.backends.filter((b) => b.status === 'ran').map((b) => {
    const r = b.roundTrips ?? null;
    const t = b.roundTripTargets;
    const k = b.keyedVsUnkeyed;
    const failed = (b.roundTripReasons ?? []).length > 0 ? ' FAIL' : '';
    return [
      b.backend,
      r ? String(r.unkeyed) : 'n/a',
      r ? String(r.keyedFresh) : 'n/a',
      r ? `${r.keyedReplay}${failed}` : 'n/a',
      t ? `${t.unkeyed} / ${t.keyedFresh} / ${t.keyedReplay}` : '–',
      k ? String(k.unkeyedMedian) : '–',
      k ? String(k.keyedMedian) : '–',
      k ? `×${k.ratio.toFixed(2)}` : '–',
    ];
  });
}

const COST_LEGEND = 'Calls: datastore calls per change as the engine receives them (top-level Redis commands, DynamoDB requests, ' +
  'MySQL-protocol commands, Momento and MongoDB-wire requests; never TCP chunks), through one bundled handler container, uncontended, ' +
  'unconditional mode, medians of 5; `n/a`: the backend\'s fixture has no call counter yet. `target`: the most calls allowed ' +
  '(unkeyed / keyed fresh / replay); a count above fails the run. Ops/s: the bench\'s plain +1 and +1 with a fresh `Idempotency-Key`, ' +
  'each on one hot id, alternated over rounds in the same run (medians).';

/** Calls per change and keyed vs unkeyed throughput per backend, as fixed-width text (empty when no backend ran). */
export function formatCostTable(report: ComparisonReport): string {
  return firstColumnTable(COST_COLUMNS, costRows(report));
}

/** Fixed-width text with a rule under the header: the first column left-aligned, the others right (empty without rows). */
function firstColumnTable(columns: string[], body: string[][]): string {
  if (body.length === 0) return '';
  const widths = columns.map((c, i) => Math.max(c.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i > 0 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  return [line(columns), widths.map((w) => '─'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function costMarkdown(report: ComparisonReport): string[] {
  return firstColumnSection('What a change costs', COST_LEGEND, COST_COLUMNS, costRows(report));
}

/** A report section holding one table whose first column is left-aligned and the others right (nothing without rows). */
function firstColumnSection(title: string, text: string, columns: string[], body: string[][]): string[] {
  if (body.length === 0) return [];
  return [
    `## ${title}`,
    '',
    text,
    '',
    [columns, columns.map((_, i) => (i > 0 ? '---:' : '---')), ...body].map((r) => `| ${r.join(' | ')} |`).join('\n'),
    '',
  ];
}

const HOT_ID_COLUMNS = ['shards', 'offered ops/s', 'accepted ops/s', 'accepted × limit', '429', 'Retry-After', 'total/accepted', 'throttled calls', 'seconds'];

function hotIdRows(report: ComparisonReport): string[][] {
  return (report.hotId?.runs ?? []).map((r) => {
    const errors = Object.values(r.errorStatuses).reduce((a, n) => a + n, 0);
    return [
      String(r.shards), r.offeredPerSecond.toFixed(1), r.acceptedPerSecond.toFixed(1), `×${r.acceptedTimesLimit.toFixed(1)}`,
      `${r.throttled}${errors ? ` (+${errors} errors)` : ''}`,
      r.throttled === 0 ? '–' : r.throttledWithoutRetryAfter === 0 ? 'on every 429' : `missing on ${r.throttledWithoutRetryAfter}`,
      `${r.total}/${r.accepted}`, String(r.throttledCalls), r.seconds.toFixed(1),
    ];
  });
}

/** The hot id past one item, one row per shard count, as fixed-width text (empty when it did not run). */
export function formatHotIdTable(report: ComparisonReport): string {
  return firstColumnTable(HOT_ID_COLUMNS, hotIdRows(report));
}

function hotIdMarkdown(report: ComparisonReport): string[] {
  const h = report.hotId;
  if (!h) return report.hotIdNotRun ? ['## Hot id past one item', '', `Not run: ${report.hotIdNotRun}.`, ''] : [];
  return [
    ...firstColumnSection('Hot id past one item',
      'DynamoDB only: it is the one backend with a per-key write limit (about 1,000 write units/s per partition; past it, ' +
        '`TableWriteKeyRangeThroughputExceeded`). DynamoDB Local never throttles, so a proxy in front of it enforces a per-partition-key ' +
        `token bucket scaled down to ${h.limitPerKey} write units/s per key (1 s of burst) and answers DynamoDB's own throttling errors. ` +
        `One hot id is offered ${h.requests} +1s per shard count, paced open loop at ${h.offeredMultiple}× that limit ` +
        `(${h.offeredMultiple * h.limitPerKey}/s at most: a busy machine offers less), through 4 bundled handler containers with \`COUNTER_SHARDS\`. ` +
        '`offered ops/s` is measured (requests ÷ elapsed), `accepted` counts the 200s, `429` the `THROTTLED` answers, `total/accepted` ' +
        'the value read back against the 200s, `throttled calls` the DynamoDB calls the proxy throttled (a sharded change that meets one ' +
        'tries another slot). It fails on any other answer, a 429 without `Retry-After`, a total other than the 200s, more accepted than ' +
        'the buckets allow, no 429 unsharded or any 429 at 8 shards.',
      HOT_ID_COLUMNS, hotIdRows(report)),
    `**Verdict: ${h.verdict}**${h.reasons.length ? `: ${h.reasons.join('; ')}` : ''}`,
    '',
    '![Hot id past one item](hot-id.svg)',
    '',
  ];
}

const COLD_COLUMNS = ['backend', 'bundle KiB', 'module load ms', 'init ms', 'first request ms', 'samples'];

function coldRows(report: ComparisonReport): string[][] {
  return report.backends.filter((b) => b.cold).map((b) => {
    const c = b.cold!;
    const failed = c.failures ? ` (${c.failures} first requests failed)` : '';
    return [b.backend, (c.bundleBytes / 1024).toFixed(0), ms(c.loadMs), ms(c.initMs), ms(c.firstRequestMs), `${c.samples}${failed}`];
  });
}

/**
 * Cold start per backend as fixed-width text (empty when none was measured):
 * module load, init (secret + connect) and first request, medians over fresh
 * processes.
 */
export function formatColdTable(report: ComparisonReport): string {
  return firstColumnTable(COLD_COLUMNS, coldRows(report));
}

/** The table as fixed-width text, for the terminal. */
export function formatTable(report: ComparisonReport): string {
  const body = rows(report);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (RIGHT_ALIGNED.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  return [line(COLUMNS), widths.map((w) => '─'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function markdownTable(report: ComparisonReport): string {
  const align = COLUMNS.map((_, i) => (RIGHT_ALIGNED.has(i) ? '---:' : '---'));
  return [COLUMNS, align, ...rows(report)].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

function coldMarkdown(report: ComparisonReport): string[] {
  return firstColumnSection('Cold start',
    'The deployed bundle in fresh Node.js processes, as Lambda starts a container (medians): `module load` is the bundle\'s `require`; ' +
      '`init` is what the pipeline starts while loading (secret read + connection, Lambda\'s init phase); `first request` is the first POST after it. ' +
      'Node.js start-up itself is excluded. `npx projen bench --cold` adds the minified no-source-map comparison.',
    COLD_COLUMNS, coldRows(report));
}

export function renderMarkdown(report: ComparisonReport): string {
  const o = report.options;
  const lines = [
    '# Atomic counter: comparison of the datastores',
    '',
    `**Verdict: ${report.verdict}** · ${report.startedAt} · ${report.durationSeconds.toFixed(0)} s · target: ${report.target}`,
    '',
    `Workload: ${o.requests} requests per scenario and backend, concurrency ${o.concurrency}` +
      `${o.containers ? `, ${o.containers} handler containers per mode` : ''}; spread scenarios over ${o.ids} ids; conditional maximum ${o.max}` +
      `${typeof o.shards === 'number' && o.shards > 1
        ? `; **${o.shards} shards per id** (\`COUNTER_SHARDS\`): a sharded 200 carries no counter, so duplicate values and the mixed steps' serial chain are not checked, the totals read back are` : ''}.`,
    `Machine: ${report.machine.cpuModel} × ${report.machine.cpus}, ${report.machine.memoryGiB} GiB, ${report.machine.platform}, Node.js ${report.machine.node}.`,
    '',
    '`final` is the value read back with GET (summed over the ids) against the accepted increments expected; ' +
      '`lost` is expected − final (unconditional) or min(requests, maximum) − accepted per id (conditional); ' +
      '`overshoot` counts values above the maximum, stored or answered. A verdict fails on any lost update, overshoot, ' +
      'duplicate counter value among 200 answers, unexpected rejection or error.',
    '',
    markdownTable(report),
    '',
    '![Throughput](throughput.svg)',
    '',
    '![Latency](latency.svg)',
    '',
    ...stepsMarkdown(report),
    ...costMarkdown(report),
    ...hotIdMarkdown(report),
    ...coldMarkdown(report),
    '## Backends',
    '',
  ];
  for (const b of report.backends) {
    lines.push(`### ${b.backend}`, '');
    if (b.status === 'skipped') {
      lines.push(`Skipped: ${b.reason}`, '');
      continue;
    }
    lines.push(`Engine: ${b.engine}`, '');
    for (const s of [...b.scenarios, ...b.stepScenarios ?? []].filter((x) => x.verdict === 'FAIL')) {
      lines.push(`- **${s.scenario} FAILED**: ${s.reasons.join('; ')}`);
    }
    for (const n of b.notRun) lines.push(`- ${n.scenario} not run: ${n.reason}`);
    for (const r of b.roundTripReasons ?? []) lines.push(`- **round trips FAILED**: ${r}`);
    if (b.keyedVsUnkeyedError) lines.push(`- keyed vs unkeyed not measured: ${b.keyedVsUnkeyedError}`);
    const benchErrors = Object.entries(b.keyedVsUnkeyed?.errorStatuses ?? {});
    if (benchErrors.length) lines.push(`- keyed vs unkeyed bench: answers other than 200 (by status): ${benchErrors.map(([st, n]) => `${n} × ${st}`).join(', ')}`);
    if (b.coldError) lines.push(`- cold start not measured: ${b.coldError}`);
    for (const c of b.caveats) lines.push(`- ${c}`);
    lines.push('');
  }
  lines.push('## Caveats', '', ...report.caveats.map((c) => `- ${c}`), '');
  return lines.join('\n');
}

// ---------------------------------------------------------------- SVG charts

const BACKEND_COLORS: Record<string, string> = {
  dynamo: '#2f6fb3', redis: '#c8372d', momento: '#2e9e6a', docdb: '#7b4fb5', tidb: '#d9822b',
};
const FALLBACK_COLORS = ['#555555', '#8c564b', '#17becf', '#bcbd22'];
const PERCENTILE_SHADES = { p50: 1, p95: 0.65, p99: 0.35 };

function colorOf(backend: string, index: number): string {
  return BACKEND_COLORS[backend] ?? FALLBACK_COLORS[index % FALLBACK_COLORS.length];
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" axis maximum: 1, 2 or 5 × 10^k at or above `value`. */
function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 5, 10]) if (m * exp >= value) return m * exp;
  return 10 * exp;
}

function svgDocument(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function ranBackends(report: ComparisonReport): string[] {
  return report.backends.filter((b) => b.scenarios.length > 0).map((b) => b.backend);
}

/** Throughput: one group of bars per scenario, one bar per backend. */
export function renderThroughputSvg(report: ComparisonReport): string {
  const backends = ranBackends(report);
  const scenarios = SCENARIO_NAMES.filter((s) => report.backends.some((b) => b.scenarios.some((x) => x.scenario === s)));
  const figures = report.backends.flatMap((b) => b.scenarios);
  const top = niceCeiling(Math.max(1, ...figures.map((f) => f.opsPerSecond)));
  const left = 70;
  const plotTop = 50;
  const plotHeight = 300;
  const barWidth = 30; // wide enough for a five-digit label above each bar
  const groupWidth = Math.max(1, backends.length) * barWidth + 40;
  const width = Math.max(560, left + scenarios.length * groupWidth + 30);
  const height = plotTop + plotHeight + 90;
  const y = (v: number) => plotTop + plotHeight - (v / top) * plotHeight;
  const body: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const v = (top / 5) * i;
    body.push(`<line x1="${left}" x2="${width - 20}" y1="${y(v)}" y2="${y(v)}" stroke="#e3e3e3"/>`);
    body.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#444">${Math.round(v)}</text>`);
  }
  body.push(`<text transform="translate(16 ${plotTop + plotHeight / 2}) rotate(-90)" text-anchor="middle" fill="#444">requests per second</text>`);
  scenarios.forEach((scenario, g) => {
    const x0 = left + 20 + g * groupWidth;
    backends.forEach((backend, i) => {
      const f = figures.find((x) => x.backend === backend && x.scenario === scenario);
      if (!f) return;
      const x = x0 + i * barWidth;
      const stroke = f.verdict === 'FAIL' ? ' stroke="#000" stroke-width="2" stroke-dasharray="3 2"' : '';
      body.push(`<rect x="${x}" y="${y(f.opsPerSecond)}" width="${barWidth - 4}" height="${plotTop + plotHeight - y(f.opsPerSecond)}" fill="${colorOf(backend, i)}"${stroke}><title>${esc(`${backend} ${scenario}: ${f.opsPerSecond.toFixed(0)} ops/s (${f.verdict})`)}</title></rect>`);
      body.push(`<text x="${x + (barWidth - 4) / 2}" y="${y(f.opsPerSecond) - 4}" text-anchor="middle" font-size="9" fill="#333">${f.opsPerSecond.toFixed(0)}</text>`);
    });
    body.push(`<text x="${x0 + (backends.length * barWidth) / 2}" y="${plotTop + plotHeight + 18}" text-anchor="middle">${esc(scenario)}</text>`);
  });
  body.push(...legend(backends, left, plotTop + plotHeight + 45));
  return svgDocument(width, height, `Throughput per backend and scenario (concurrency ${report.options.concurrency})`, body);
}

function legend(backends: string[], x: number, y: number): string[] {
  return backends.flatMap((backend, i) => [
    `<rect x="${x + i * 110}" y="${y - 10}" width="12" height="12" fill="${colorOf(backend, i)}"/>`,
    `<text x="${x + i * 110 + 18}" y="${y}">${esc(backend)}</text>`,
  ]);
}

/**
 * Latency: one panel per scenario, p50 / p95 / p99 bars per backend on a
 * log scale (a CAS loop's p99 can be a hundred times another store's p50;
 * a linear axis would flatten everyone else).
 */
export function renderLatencySvg(report: ComparisonReport): string {
  const backends = ranBackends(report);
  const scenarios = SCENARIO_NAMES.filter((s) => report.backends.some((b) => b.scenarios.some((x) => x.scenario === s)));
  const figures = report.backends.flatMap((b) => b.scenarios);
  const all = figures.flatMap((f) => [f.latencyMs.p50, f.latencyMs.p95, f.latencyMs.p99]).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(1, ...all))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(10, ...all))));
  const left = 70;
  const panelHeight = 150;
  const gap = 50;
  const barWidth = 12;
  const groupWidth = 3 * barWidth + 24;
  const width = Math.max(560, left + backends.length * groupWidth + 60);
  const height = 50 + scenarios.length * (panelHeight + gap) + 40;
  const body: string[] = [];
  scenarios.forEach((scenario, p) => {
    const top = 50 + p * (panelHeight + gap);
    const y = (v: number) => top + panelHeight - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * panelHeight;
    body.push(`<text x="${left}" y="${top - 8}" font-weight="bold">${esc(scenario)}</text>`);
    for (let decade = lo; decade <= hi * 1.0001; decade *= 10) {
      body.push(`<line x1="${left}" x2="${width - 20}" y1="${y(decade)}" y2="${y(decade)}" stroke="#e3e3e3"/>`);
      body.push(`<text x="${left - 6}" y="${y(decade) + 4}" text-anchor="end" fill="#444">${decade >= 1 ? decade.toFixed(0) : decade.toPrecision(1)} ms</text>`);
    }
    backends.forEach((backend, i) => {
      const f = figures.find((x) => x.backend === backend && x.scenario === scenario);
      const x0 = left + 20 + i * groupWidth;
      body.push(`<text x="${x0 + (3 * barWidth) / 2}" y="${top + panelHeight + 16}" text-anchor="middle">${esc(backend)}</text>`);
      if (!f) return;
      (['p50', 'p95', 'p99'] as const).forEach((name, k) => {
        const v = f.latencyMs[name];
        body.push(`<rect x="${x0 + k * barWidth}" y="${y(v)}" width="${barWidth - 2}" height="${top + panelHeight - y(v)}" fill="${colorOf(backend, i)}" fill-opacity="${PERCENTILE_SHADES[name]}"><title>${esc(`${backend} ${scenario} ${name}: ${v.toFixed(2)} ms`)}</title></rect>`);
      });
    });
  });
  const ly = height - 20;
  (['p50', 'p95', 'p99'] as const).forEach((name, k) => {
    body.push(`<rect x="${left + k * 90}" y="${ly - 10}" width="12" height="12" fill="#333" fill-opacity="${PERCENTILE_SHADES[name]}"/>`);
    body.push(`<text x="${left + k * 90 + 18}" y="${ly}">${name}</text>`);
  });
  return svgDocument(width, height, 'Latency per backend: p50 / p95 / p99 (log scale)', body);
}

/**
 * The hot id past one item: per shard count, offered and accepted ops/s side
 * by side, with the per-key limit and 1, 2, 4, 8 × it as a dashed line.
 */
export function renderHotIdSvg(hot: HotIdReport): string {
  const top = niceCeiling(Math.max(1, ...hot.runs.flatMap((r) => [r.offeredPerSecond, r.acceptedPerSecond, r.shards * hot.limitPerKey])));
  const left = 70;
  const plotTop = 50;
  const plotHeight = 300;
  const barWidth = 34;
  const groupWidth = 2 * barWidth + 50;
  const width = Math.max(640, left + hot.runs.length * groupWidth + 40);
  const height = plotTop + plotHeight + 90;
  const y = (v: number) => plotTop + plotHeight - (Math.min(v, top) / top) * plotHeight;
  const bars = [
    { name: 'offered ops/s', color: '#9a9a9a', value: (r: HotIdReport['runs'][number]) => r.offeredPerSecond },
    { name: 'accepted ops/s', color: BACKEND_COLORS.dynamo, value: (r: HotIdReport['runs'][number]) => r.acceptedPerSecond },
  ];
  const body: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const v = (top / 5) * i;
    body.push(`<line x1="${left}" x2="${width - 20}" y1="${y(v)}" y2="${y(v)}" stroke="#e3e3e3"/>`);
    body.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#444">${Number(v.toFixed(1))}</text>`);
  }
  body.push(`<text transform="translate(16 ${plotTop + plotHeight / 2}) rotate(-90)" text-anchor="middle" fill="#444">requests per second</text>`);
  hot.runs.forEach((r, g) => {
    const x0 = left + 25 + g * groupWidth;
    // What the id's slots take together: shards × the per-key limit.
    const capacity = r.shards * hot.limitPerKey;
    if (capacity <= top) {
      body.push(`<line x1="${x0 - 8}" x2="${x0 + 2 * barWidth + 4}" y1="${y(capacity)}" y2="${y(capacity)}" stroke="#000" stroke-dasharray="4 3"><title>${esc(`${r.shards} × the limit: ${capacity}/s`)}</title></line>`);
    }
    bars.forEach((bar, k) => {
      const v = bar.value(r);
      const x = x0 + k * barWidth;
      body.push(`<rect x="${x}" y="${y(v)}" width="${barWidth - 4}" height="${plotTop + plotHeight - y(v)}" fill="${bar.color}"><title>${esc(`shards ${r.shards} ${bar.name}: ${v.toFixed(1)}`)}</title></rect>`);
      body.push(`<text x="${x + (barWidth - 4) / 2}" y="${y(v) - 4}" text-anchor="middle" font-size="10" fill="#333">${v.toFixed(1)}</text>`);
    });
    body.push(`<text x="${x0 + barWidth}" y="${plotTop + plotHeight + 18}" text-anchor="middle">${r.shards === 1 ? '1 shard' : `${r.shards} shards`}</text>`);
    body.push(`<text x="${x0 + barWidth}" y="${plotTop + plotHeight + 33}" text-anchor="middle" font-size="10" fill="#c8372d">${r.throttled ? `${r.throttled} × 429` : 'no 429'}</text>`);
  });
  const ly = plotTop + plotHeight + 65;
  bars.forEach((bar, k) => {
    body.push(`<rect x="${left + k * 150}" y="${ly - 10}" width="12" height="12" fill="${bar.color}"/>`);
    body.push(`<text x="${left + k * 150 + 18}" y="${ly}">${esc(bar.name)}</text>`);
  });
  body.push(`<line x1="${left + 300}" x2="${left + 324}" y1="${ly - 4}" y2="${ly - 4}" stroke="#000" stroke-dasharray="4 3"/>`);
  body.push(`<text x="${left + 330}" y="${ly}">shards × limit</text>`);
  return svgDocument(width, height,
    `Hot id past one item (${hot.backend}): offered ${hot.offeredMultiple}× a limit of ${hot.limitPerKey} writes/s per key`, body);
}

/** Writes report.md, report.json, throughput.svg, latency.svg and (when the hot id ran) hot-id.svg into `dir` (created if needed). */
export function writeReport(dir: string, report: ComparisonReport): ReportFiles {
  fs.mkdirSync(dir, { recursive: true });
  const files: ReportFiles = {
    markdown: path.join(dir, 'report.md'),
    json: path.join(dir, 'report.json'),
    throughputSvg: path.join(dir, 'throughput.svg'),
    latencySvg: path.join(dir, 'latency.svg'),
    ...(report.hotId ? { hotIdSvg: path.join(dir, 'hot-id.svg') } : {}),
  };
  fs.writeFileSync(files.markdown, renderMarkdown(report));
  // Infinity is not JSON: the histogram's open last bound is written as null.
  fs.writeFileSync(files.json, JSON.stringify(report, (_k, v) => (v === Infinity ? null : v), 2) + '\n');
  fs.writeFileSync(files.throughputSvg, renderThroughputSvg(report));
  fs.writeFileSync(files.latencySvg, renderLatencySvg(report));
  if (report.hotId && files.hotIdSvg) fs.writeFileSync(files.hotIdSvg, renderHotIdSvg(report.hotId));
  return files;
}
