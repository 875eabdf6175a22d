/**
 * The project's main job: the same concurrent workload on every available
 * backend, checked against DESIGN.md §5, written up as a report.
 *
 *   npm run compare                                   # every backend with a local engine
 *   npm run compare -- --backends dynamo,redis --requests 5000 --concurrency 32
 *   npm run compare -- --url https://…/prod --api-key …   # a deployed API (or `npm run local`)
 *   npm run compare -- --cold-samples 0                 # without the cold-start table (default 9 fresh processes per backend)
 *
 * In-process mode drives the BUNDLED handlers directly (`loadBundledHandler`,
 * several containers per backend and mode, each with its own client and
 * connections), not the local HTTP server: an HTTP hop on the same two cores
 * would add the same Node.js server cost to every backend and shrink the
 * differences the comparison exists to show. `--url` covers the HTTP path.
 */
import * as os from 'os';
import * as path from 'path';
import { intArg, parseArgs } from './args';
import { availableFixtures } from './backends';
import { uniqueNamespace } from './backends/fixture';
import { BackendSession, openBackend } from './backends/lifecycle';
import { COLD_MODE_ENV, coldFigures, ColdFigures } from './cold';
import { bundlePath, ProxyHandler, proxyEvent, REPO_ROOT } from './lambda-container';
import { ProgressBar } from './progress';
import {
  BackendSection, ComparisonReport, formatColdTable, formatTable, LatencyHistogram, ReportFiles, SCENARIO_NAMES, ScenarioFigures,
  ScenarioName, writeReport,
} from './report';
import { oneLine } from './server';
import { runWorkload } from './workload';
import { BACKENDS, BackendName } from '../src/runtime/store';

export interface CompareOptions {
  /** Concurrent callers. @default 16 */
  readonly concurrency: number;
  /** Requests per scenario per backend (the default run takes about two minutes on 2 cores). @default 8000 */
  readonly requests: number;
  /** Maximum of the conditional scenarios. @default 50 */
  readonly max: number;
  /** Ids of the spread scenarios. @default 20 */
  readonly ids: number;
  /** Handler containers per backend and mode (in-process). @default 8 */
  readonly containers: number;
  /**
   * Warm-up requests per backend and mode, not measured: every container
   * connects and the JIT (Node's, DynamoDB Local's JVM) warms the paths
   * before the first measured scenario. @default 500
   */
  readonly warmup: number;
  /** @default - every backend */
  readonly backends?: readonly BackendName[];
  /** Report folder. */
  readonly out: string;
  /** Drive an API over HTTP instead of in-process handlers. */
  readonly url?: string;
  readonly apiKey?: string;
  /** No progress output (tests). @default false */
  readonly silent?: boolean;
  /**
   * Fresh processes per backend for the cold-start figures (module load,
   * init, first request of the deployed bundle; medians). In-process runs
   * only; 0 skips them. @default 0 (the command line's default is 9)
   */
  readonly coldSamples?: number;
}

export const DEFAULT_OPTIONS = { concurrency: 16, requests: 8000, max: 200, ids: 20, containers: 8, warmup: 500, coldSamples: 9 } as const;

interface Answer {
  status: number;
  counter?: number;
}

/** One backend as the workload sees it: increments in a mode, reads. */
interface Target {
  /** Engine description for the report. */
  readonly engine: string;
  /** Modes this target can run; a deployed API has exactly one. */
  readonly modes: { conditional: boolean; maximum?: number }[];
  post(conditional: boolean, id: string, caller: number): Promise<Answer>;
  get(id: string): Promise<Answer>;
  close(): Promise<void>;
}

const GENERAL_CAVEATS_LOCAL = [
  'Local engines are not the cloud services: the figures compare the code paths (bundled handler, client, protocol, engine) on one machine, not DynamoDB, ElastiCache, Momento, DocumentDB or TiDB Cloud as deployed.',
  'The load generator, the handler containers and the in-process engines (Momento, MongoDB wire) share one Node.js process and event loop; external engines (DynamoDB Local, Redis, MariaDB) share the same cores. There is no network hop.',
  'Ids are fresh for every run, so every counter starts at 0.',
];
const GENERAL_CAVEATS_HTTP = [
  'Driven over HTTP: figures include the network, API Gateway, Lambda (cold starts included) and the usage plan\'s throttle (429s count as errors).',
  'Ids are fresh for every run, so every counter starts at 0.',
];

/** What each store is and is not, as the report should say it. */
const BACKEND_CAVEATS: Record<BackendName, { local: string[]; cloud: string[] }> = {
  dynamo: {
    cloud: ['UpdateItem ADD (+ ConditionExpression): atomic per item. A hot id is one partition: about 1,000 writes/s in the cloud, which no local run shows.'],
    local: ['DynamoDB Local is a Java emulator on SQLite: no partitions, no throttling, no replication.'],
  },
  redis: {
    cloud: ['Lua script on the primary: atomic. Replication to the replica is asynchronous: a failover can lose increments the primary acknowledged.'],
    local: ['One local redis-server: no replica, no TLS, no failover.'],
  },
  momento: {
    cloud: [
      'Items carry a TTL and can expire or be evicted: a Momento counter is not durable storage.',
      'Conditional mode is a compare-and-swap loop (no server-side "increment below"): under contention on one id an accepted increment can cost several round trips (the tail latency of conditional-hot); once the maximum is reached a rejection is one read.',
    ],
    local: ['The engine is an in-process gRPC server speaking Momento\'s protocol, in the load generator\'s process.'],
  },
  docdb: {
    cloud: ['findOneAndUpdate upsert with a unique index on the id: atomic per document on the primary.'],
    local: ['The engine is an in-process MongoDB-wire server (bson + mingo), not DocumentDB: each command runs in one event-loop turn in memory; DocumentDB storage, replication and locking are not exercised.'],
  },
  tidb: {
    cloud: ['One INSERT … ON DUPLICATE KEY UPDATE statement: atomic per row. TiDB is distributed (TiKV regions, Percolator transactions): hot-row contention behaves differently from a single server.'],
    local: ['MariaDB/MySQL stands in for TiDB (same protocol and SQL for the statement used).'],
  },
};

// -------------------------------------------------------------- targets

async function inProcessTarget(session: BackendSession, options: CompareOptions): Promise<Target> {
  const { backend, engine } = session;
  // A fresh namespace per run: counters start at 0 even on a persistent engine.
  const namespace = uniqueNamespace(`cmp_${backend}`);
  const load = (conditional: boolean) => session.containers({ conditional, maximum: options.max }, options.containers, namespace);
  const containers: Record<'true' | 'false', ProxyHandler[]> = { false: await load(false), true: await load(true) };
  const invoke = async (handler: ProxyHandler, method: string, id: string): Promise<Answer> => {
    const res = await handler(proxyEvent(method, backend, id));
    return { status: res.statusCode, counter: JSON.parse(res.body).counter };
  };
  return {
    engine: `${engine.name} (${engine.origin})`,
    modes: [{ conditional: false }, { conditional: true, maximum: options.max }],
    post: (conditional, id, caller) => {
      const set = containers[String(conditional) as 'true' | 'false'];
      return invoke(set[caller % set.length], 'POST', id);
    },
    get: (id) => invoke(containers.false[0], 'GET', id),
    // The figures are in the report: the session leaves nothing behind on a shared engine.
    close: () => session.close(),
  };
}

/**
 * A deployed API (or `npm run local`) over HTTP. Its mode is fixed at deploy
 * time: a probe increment on a throw-away id tells which, and only that
 * mode's scenarios run.
 */
async function httpTarget(backend: BackendName, baseUrl: string, apiKey: string, probeId: string): Promise<Target | string> {
  const request = async (method: string, id: string): Promise<Answer & { body?: any }> => {
    const res = await fetch(`${baseUrl.replace(/\/+$/, '')}/${backend}/${encodeURIComponent(id)}`, {
      method, headers: { 'x-api-key': apiKey }, signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: res.status, counter: typeof body?.counter === 'number' ? body.counter : undefined, body };
  };
  let probe;
  try {
    probe = await request('POST', probeId);
  } catch (err) {
    return `cannot reach ${baseUrl}: ${oneLine(err)}`;
  }
  if (probe.status !== 200) {
    const detail = probe.body?.error ?? probe.body?.message ?? '';
    return `the API answered ${probe.status} to a probe increment${detail ? `: ${detail}` : ''}`;
  }
  const conditional = probe.body.useConditionalWrites === true;
  return {
    engine: `deployed API at ${new URL(baseUrl).host}`,
    modes: [{ conditional, maximum: conditional ? Number(probe.body.maxCounterValue) : undefined }],
    post: (_c, id) => request('POST', id),
    get: (id) => request('GET', id),
    close: async () => undefined,
  };
}

// -------------------------------------------------------------- one scenario

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

interface IdTally {
  requests: number;
  accepted: number;
  rejected: number;
  errors: number;
  counters: number[];
  final: number;
}

/**
 * The DESIGN.md §5 checks on one scenario's tallies (every id started at 0).
 * Exported for the test that proves a broken run is reported as FAIL.
 */
export function judge(conditional: boolean, maximum: number | undefined, tallies: IdTally[]) {
  const reasons: string[] = [];
  let expectedAccepted = 0;
  let lostUpdates = 0;
  let overshoot = 0;
  let aboveMaximum = 0;
  let duplicates = 0;
  let wrongFinal = 0;
  for (const t of tallies) {
    const expected = conditional ? Math.min(t.requests, maximum!) : t.requests;
    expectedAccepted += expected;
    // Unconditional: what the store holds against what was sent. Conditional:
    // what was accepted against what should have been (a spurious rejection
    // is a lost update too); a stored or answered value above the maximum is
    // overshoot.
    lostUpdates += conditional ? expected - t.accepted : expected - t.final;
    if (conditional) {
      overshoot += Math.max(0, t.final - maximum!);
      aboveMaximum += t.counters.filter((c) => c > maximum!).length;
    }
    duplicates += t.counters.length - new Set(t.counters).size;
    // Each 200 carries the value its own increment produced: the store ends at exactly the number accepted.
    if (t.final !== t.accepted) wrongFinal++;
  }
  const errors = tallies.reduce((n, t) => n + t.errors, 0);
  const rejected = tallies.reduce((n, t) => n + t.rejected, 0);
  if (lostUpdates !== 0) reasons.push(lostUpdates > 0 ? `${lostUpdates} lost update(s)` : `${-lostUpdates} increment(s) more than expected`);
  if (overshoot > 0) reasons.push(`stored values exceed the maximum by ${overshoot}`);
  if (aboveMaximum > 0) reasons.push(`${aboveMaximum} answer(s) carried a value above the maximum`);
  if (duplicates > 0) reasons.push(`${duplicates} duplicate counter value(s) among 200 answers`);
  if (wrongFinal > 0) reasons.push(`${wrongFinal} id(s) whose stored value differs from the increments accepted`);
  if (!conditional && rejected > 0) reasons.push(`${rejected} rejection(s) in unconditional mode`);
  // An error leaves the outcome of its increment unknown: the run cannot be
  // said to be correct, and a backend that errors under this load is a finding.
  if (errors > 0) reasons.push(`${errors} error answer(s)`);
  return { expectedAccepted, lostUpdates, overshoot, aboveMaximum, duplicates, reasons };
}

async function runScenario(
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

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

// -------------------------------------------------------------- the run

/** Cold figures of a backend's deployed bundle on the session's engine (an Error instead of throwing). */
async function measureCold(session: BackendSession, samples: number): Promise<ColdFigures | Error> {
  try {
    const env = { ...await session.prepare(uniqueNamespace(`cold_${session.backend}`)), ...COLD_MODE_ENV };
    return await coldFigures(bundlePath(session.fixture.entry), session.backend, env, { samples });
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

export interface ComparisonOutcome {
  readonly report: ComparisonReport;
  readonly files: ReportFiles;
}

export async function runComparison(options: CompareOptions): Promise<ComparisonOutcome> {
  const startedAt = new Date();
  const progress = new ProgressBar({ silent: options.silent });
  const overHttp = options.url !== undefined;
  if (overHttp && !options.apiKey) throw new Error('--url needs --api-key (or API_KEY in the environment)');
  const registered = availableFixtures();
  const backends = options.backends ?? BACKENDS;
  const runTag = `cmp-${startedAt.getTime().toString(36)}`;
  const sections: BackendSection[] = [];
  const coldResults = new Map<BackendName, ColdFigures | Error>();

  for (const [b, backend] of backends.entries()) {
    const caveats = [...BACKEND_CAVEATS[backend].cloud, ...(overHttp ? [] : BACKEND_CAVEATS[backend].local)];
    const skip = (reason: string) => {
      progress.note(`skipped  ${backend}: ${reason}`);
      sections.push({ backend, status: 'skipped', reason, caveats, scenarios: [], notRun: [] });
    };
    let target: Target;
    if (overHttp) {
      const t = await httpTarget(backend, options.url!, options.apiKey!, `${runTag}-probe`);
      if (typeof t === 'string') {
        skip(t);
        continue;
      }
      target = t;
    } else {
      if (!registered.includes(backend)) {
        skip('no local fixture registered in local/backends/index.ts yet');
        continue;
      }
      let session: BackendSession | undefined;
      try {
        session = await openBackend(backend);
        if (options.coldSamples) {
          // Before the warm workload: nothing of ours is busy in this process
          // (in-process engines answer the fresh processes from here).
          progress.note(`[${b + 1}/${backends.length}] ${backend}: cold start, ${options.coldSamples} fresh processes`);
          coldResults.set(backend, await measureCold(session, options.coldSamples));
        }
        target = await inProcessTarget(session, options);
      } catch (err) {
        // EngineUnavailableError says what to install in one line; any other
        // failure to start or prepare is reported the same way, not fatal.
        await session?.close().catch(() => undefined);
        skip(oneLine(err));
        continue;
      }
    }

    progress.note(`[${b + 1}/${backends.length}] ${backend} on ${target.engine}: warming up (${options.warmup} requests per mode, not measured)`);
    const section: BackendSection = { backend, status: 'ran', engine: target.engine, caveats, scenarios: [], notRun: [] };
    const cold = coldResults.get(backend);
    if (cold instanceof Error) section.coldError = oneLine(cold);
    else if (cold) section.cold = cold;
    sections.push(section);
    try {
      for (const mode of target.modes) {
        // Warm-up (not measured): every container opens its connections, the JIT warms the paths.
        const warmIds = Array.from({ length: 8 }, (_, i) => `${runTag}-warmup-${mode.conditional ? 'c' : 'u'}-${i}`);
        await runWorkload({
          total: options.warmup,
          concurrency: options.concurrency,
          call: (i, caller) => target.post(mode.conditional, warmIds[i % warmIds.length], caller),
        });
      }
      for (const scenario of SCENARIO_NAMES) {
        const conditional = scenario.startsWith('conditional');
        const mode = target.modes.find((m) => m.conditional === conditional);
        if (!mode) {
          section.notRun.push({ scenario, reason: `the API runs in ${conditional ? 'unconditional' : 'conditional'} mode` });
          continue;
        }
        const label = `[${b + 1}/${backends.length}] ${backend} ${scenario}`;
        section.scenarios.push(await runScenario(target, backend, scenario, mode, options, runTag, progress, label));
      }
    } catch (err) {
      // A read-back that fails is a backend failure, not a crash of the whole comparison.
      section.notRun.push(...SCENARIO_NAMES.filter((s) => !section.scenarios.some((x) => x.scenario === s))
        .map((scenario) => ({ scenario, reason: oneLine(err) })));
      progress.note(`${backend}: ${oneLine(err)}`);
    } finally {
      await target.close().catch(() => undefined);
    }
  }

  const finishedAt = new Date();
  const ran = sections.filter((s) => s.status === 'ran');
  const failed = ran.some((s) => s.notRun.length > 0 && !overHttp) || ran.some((s) => s.scenarios.some((x) => x.verdict === 'FAIL'));
  const report: ComparisonReport = {
    tool: 'cdk-atomic-counter compare',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: round((finishedAt.getTime() - startedAt.getTime()) / 1000),
    target: overHttp ? options.url! : 'in-process bundled handlers (assets/backends/*/index.js)',
    options: {
      concurrency: options.concurrency,
      requests: options.requests,
      max: options.max,
      ids: options.ids,
      ...(overHttp ? {} : { containers: options.containers }),
      warmup: options.warmup,
      ...(overHttp ? {} : { coldSamples: options.coldSamples ?? 0 }),
      backends,
    },
    machine: {
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      cpus: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      node: process.versions.node,
    },
    caveats: overHttp ? GENERAL_CAVEATS_HTTP : GENERAL_CAVEATS_LOCAL,
    backends: sections,
    verdict: failed || ran.length === 0 ? 'FAIL' : 'PASS',
  };
  const files = writeReport(options.out, report);
  return { report, files };
}

function timestamp(d: Date): string {
  return d.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
}

export function optionsFromArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): CompareOptions {
  const args = parseArgs(argv);
  const known = new Set(['concurrency', 'requests', 'max', 'ids', 'containers', 'warmup', 'cold-samples', 'backends', 'out', 'url', 'api-key']);
  for (const name of Object.keys(args)) if (!known.has(name)) throw new Error(`Unknown flag --${name} (known: ${[...known].map((k) => `--${k}`).join(', ')})`);
  let backends: BackendName[] | undefined;
  if (typeof args.backends === 'string') {
    backends = args.backends.split(',').map((s) => s.trim()).filter(Boolean) as BackendName[];
    const unknown = backends.filter((x) => !(BACKENDS as readonly string[]).includes(x));
    if (unknown.length > 0) throw new Error(`Unknown backend(s) ${unknown.join(', ')} (one of ${BACKENDS.join(', ')})`);
  }
  const positive = (name: string, fallback: number) => {
    const n = intArg(args, name, fallback);
    if (n < 1) throw new Error(`--${name} must be at least 1`);
    return n;
  };
  return {
    concurrency: positive('concurrency', DEFAULT_OPTIONS.concurrency),
    requests: positive('requests', DEFAULT_OPTIONS.requests),
    max: positive('max', DEFAULT_OPTIONS.max),
    ids: positive('ids', DEFAULT_OPTIONS.ids),
    containers: positive('containers', DEFAULT_OPTIONS.containers),
    warmup: intArg(args, 'warmup', DEFAULT_OPTIONS.warmup),
    coldSamples: intArg(args, 'cold-samples', DEFAULT_OPTIONS.coldSamples),
    backends,
    out: typeof args.out === 'string' ? path.resolve(args.out) : path.join(REPO_ROOT, 'reports', timestamp(new Date())),
    url: typeof args.url === 'string' ? args.url : undefined,
    apiKey: typeof args['api-key'] === 'string' ? args['api-key'] : env.API_KEY,
  };
}

async function main(): Promise<void> {
  const options = optionsFromArgs(process.argv.slice(2));
  const started = performance.now();
  const { report, files } = await runComparison(options);
  console.log('');
  console.log(formatTable(report));
  console.log('');
  const coldTable = formatColdTable(report);
  if (coldTable) console.log(`cold start (medians of fresh processes)\n${coldTable}\n`);
  for (const s of report.backends) {
    if (s.status === 'skipped') console.log(`skipped  ${s.backend}: ${s.reason}`);
    else console.log(`engine   ${s.backend}: ${s.engine}`);
    for (const f of s.scenarios.filter((x) => x.verdict === 'FAIL')) console.log(`FAIL     ${s.backend} ${f.scenario}: ${f.reasons.join('; ')}`);
    for (const n of s.notRun) console.log(`not run  ${s.backend} ${n.scenario}: ${n.reason}`);
  }
  console.log('');
  console.log(`Verdict: ${report.verdict} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(`Report:  ${files.markdown}`);
  console.log(`         ${files.json}`);
  console.log(`Charts:  ${files.throughputSvg}`);
  console.log(`         ${files.latencySvg}`);
  // Containers and engines are closed; exit now rather than wait for stray timers of a client library.
  process.exit(report.verdict === 'PASS' ? 0 : 1);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(oneLine(err));
    process.exit(2);
  });
}
