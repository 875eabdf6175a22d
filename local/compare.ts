/**
 * The project's main job: the same concurrent workload on every available
 * backend, checked against the counter contract, written up as a report:
 * four increment scenarios, then mixed steps (`?by=`) and keyed retries
 * (`Idempotency-Key`) on a hot id in both modes.
 *
 *   npm run compare                                   # every backend with a local engine
 *   npm run compare -- --backends dynamo,redis --requests 5000 --concurrency 32
 *   npm run compare -- --url https://…/prod --api-key …   # a deployed API (or `npm run local`)
 *   npm run compare -- --cold-samples 0                 # without the cold-start table (default 9 fresh processes per backend)
 *   npm run compare -- --step-requests 2000 --retry-keys 500   # larger steps and retry scenarios
 *   npm run compare -- --keyed-requests 3000            # a longer keyed vs unkeyed bench (3 rounds)
 *   npm run compare -- --hot-id false                   # without the "hot id past one item" scenario (DynamoDB, about 45 s)
 *   npm run compare -- --hot-id-requests 400            # a longer one (requests per shard count)
 *   COUNTER_SHARDS=8 npm run compare                    # every scenario on sharded counters (or --shards 8)
 *
 * In-process mode drives the BUNDLED handlers directly (`loadBundledHandler`,
 * several containers per backend and mode, each with its own client and
 * connections), not the local HTTP server: an HTTP hop on the same two cores
 * would add the same Node.js server cost to every backend and shrink the
 * differences the comparison exists to show. `--url` covers the HTTP path.
 *
 * This file is the run and its command line; the targets it drives are in
 * `compare-targets.ts`, one scenario in `compare-scenario.ts`, the verdict
 * in `compare-verdicts.ts`, the hot id past one item (DynamoDB's scale
 * model) in `compare-hot-id.ts`, the report in `report.ts`.
 */
import * as os from 'os';
import * as path from 'path';
import { intArg, parseArgs } from './args';
import { availableFixtures } from './backends';
import { uniqueNamespace } from './backends/fixture';
import { BackendSession, openBackend } from './backends/lifecycle';
import { COLD_MODE_ENV, coldFigures, ColdFigures } from './cold';
import { DEFAULT_HOT_ID_REQUESTS, HOT_ID_OFFERED_MULTIPLE, HOT_ID_SHARD_COUNTS, HotIdReport, runHotIdScenario } from './compare-hot-id';
import { judgeRoundTrips, keyedVsUnkeyed, measureRoundTrips, ROUND_TRIP_TARGETS, RoundTrips } from './compare-round-trips';
import { DEFAULT_RETRY_KEYS, DEFAULT_STEP_REQUESTS, round, runScenario, runStepScenario } from './compare-scenario';
import { BACKEND_CAVEATS, GENERAL_CAVEATS_HTTP, GENERAL_CAVEATS_LOCAL, httpTarget, inProcessTarget, Target } from './compare-targets';
import { bundlePath, REPO_ROOT } from './lambda-container';
import { ProgressBar } from './progress';
import {
  BackendSection, ComparisonReport, formatColdTable, formatCostTable, formatHotIdTable, formatStepsTable, formatTable, ReportFiles,
  SCENARIO_NAMES, ScenarioName, STEP_SCENARIO_NAMES, StepScenarioName, writeReport,
} from './report';
import { oneLine } from './server';
import { runWorkload } from './workload';
import { COMMON_ENV } from '../src/counter-env';
import { readShards } from '../src/runtime/config';
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
  /** Requests of each mixed-step scenario (one hot id, `?by=` from {+1, +5, −3, +100, −50}). @default 500 */
  readonly stepRequests?: number;
  /** Keys of each retry scenario (one hot id, each key sent twice concurrently). @default 60 */
  readonly retryKeys?: number;
  /**
   * Requests per path and round of the keyed vs unkeyed bench (plain +1,
   * then +1 with a fresh `Idempotency-Key`, each on one hot id, 3 rounds). @default 1000
   */
  readonly keyedRequests?: number;
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
  /**
   * The "hot id past one item" scenario (compare-hot-id.ts): DynamoDB's
   * scale model, shards 1, 2, 4, 8 offered 5× a per-key write limit.
   * In-process runs with DynamoDB only. @default true
   */
  readonly hotId?: boolean;
  /** Requests per shard count of that scenario (paced at 20/s). @default 200 */
  readonly hotIdRequests?: number;
  /**
   * Shards per counter id of the scenarios' containers (`COUNTER_SHARDS`,
   * or `--shards`). Above 1 the answers to changes carry no counter, so the
   * checks that need one (distinct values, the serial chain of the mixed
   * steps) give way to the totals read back; the round-trip figures stay
   * those of unsharded counters (their targets). In-process runs only: a
   * deployed API has its own. @default 1
   */
  readonly shards?: number;
}

/** Requests per path and round of the keyed vs unkeyed bench. */
export const DEFAULT_KEYED_REQUESTS = 1000;

/** The verdicts' checks, exported for the test that proves a broken run is reported as FAIL. */
export { judge, judgeRetries, judgeSteps } from './compare-verdicts';

export const DEFAULT_OPTIONS = {
  concurrency: 16,
  requests: 8000,
  max: 200,
  ids: 20,
  stepRequests: DEFAULT_STEP_REQUESTS,
  retryKeys: DEFAULT_RETRY_KEYS,
  keyedRequests: DEFAULT_KEYED_REQUESTS,
  hotIdRequests: DEFAULT_HOT_ID_REQUESTS,
  containers: 8,
  warmup: 500,
  coldSamples: 9,
} as const;

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
  const hotIdWanted = options.hotId ?? true;
  let hotId: HotIdReport | undefined;
  let hotIdNotRun: string | undefined = !hotIdWanted ? 'turned off (--hot-id false)'
    : overHttp ? 'needs the local throttling proxy in front of DynamoDB Local: in-process runs only'
      : !backends.includes('dynamo') ? 'DynamoDB is not among the backends run' : undefined;
  let hotIdFailed = false;

  for (const [b, backend] of backends.entries()) {
    const caveats = [...BACKEND_CAVEATS[backend].cloud, ...(overHttp ? [] : BACKEND_CAVEATS[backend].local)];
    const skip = (reason: string) => {
      progress.note(`skipped  ${backend}: ${reason}`);
      sections.push({ backend, status: 'skipped', reason, caveats, scenarios: [], stepScenarios: [], notRun: [], roundTrips: null });
    };
    let target: Target;
    let session: BackendSession | undefined;
    let roundTrips: RoundTrips | null = null;
    const roundTripReasons: string[] = [];
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
      try {
        session = await openBackend(backend);
        if (options.coldSamples) {
          // Before the warm workload: nothing of ours is busy in this process
          // (in-process engines answer the fresh processes from here).
          progress.note(`[${b + 1}/${backends.length}] ${backend}: cold start, ${options.coldSamples} fresh processes`);
          coldResults.set(backend, await measureCold(session, options.coldSamples));
        }
        progress.note(`[${b + 1}/${backends.length}] ${backend}: datastore calls per change${session.fixture.callCounter ? '' : ' (no call counter: n/a)'}`);
        try {
          roundTrips = await measureRoundTrips(session, runTag);
          roundTripReasons.push(...judgeRoundTrips(backend, roundTrips));
        } catch (err) {
          roundTripReasons.push(`not measured: ${oneLine(err)}`);
        }
        target = await inProcessTarget(session, options);
      } catch (err) {
        // EngineUnavailableError says what to install in one line; any other
        // failure to start or prepare is reported the same way, not fatal.
        await session?.close().catch(() => undefined);
        skip(oneLine(err));
        if (backend === 'dynamo' && hotIdWanted) hotIdNotRun = `DynamoDB skipped: ${oneLine(err)}`;
        continue;
      }
    }

    progress.note(`[${b + 1}/${backends.length}] ${backend} on ${target.engine}: warming up (${options.warmup} requests per mode, not measured)`);
    const section: BackendSection = {
      backend,
      status: 'ran',
      engine: target.engine,
      caveats,
      scenarios: [],
      stepScenarios: [],
      notRun: [],
      roundTrips,
      ...(overHttp ? {} : { roundTripTargets: ROUND_TRIP_TARGETS[backend], roundTripReasons }),
    };
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
      // Each scenario runs in the mode its name starts with, when the target has that mode.
      const modeOf = (scenario: ScenarioName | StepScenarioName) => {
        const conditional = scenario.startsWith('conditional');
        const mode = target.modes.find((m) => m.conditional === conditional);
        if (!mode) section.notRun.push({ scenario, reason: `the API runs in ${conditional ? 'unconditional' : 'conditional'} mode` });
        return mode;
      };
      const label = (scenario: ScenarioName | StepScenarioName) => `[${b + 1}/${backends.length}] ${backend} ${scenario}`;
      for (const scenario of SCENARIO_NAMES) {
        const mode = modeOf(scenario);
        if (mode) section.scenarios.push(await runScenario(target, backend, scenario, mode, options, runTag, progress, label(scenario)));
      }
      for (const scenario of STEP_SCENARIO_NAMES) {
        const mode = modeOf(scenario);
        if (mode) section.stepScenarios.push(await runStepScenario(target, backend, scenario, mode, options, runTag, progress, label(scenario)));
      }
      if (target.modes.some((m) => !m.conditional)) {
        const requests = options.keyedRequests ?? DEFAULT_KEYED_REQUESTS;
        progress.note(`[${b + 1}/${backends.length}] ${backend}: keyed vs unkeyed bench, ${requests} requests per path, 3 rounds`);
        try {
          section.keyedVsUnkeyed = await keyedVsUnkeyed(target, requests, options.concurrency, runTag);
        } catch (err) {
          section.keyedVsUnkeyedError = oneLine(err);
        }
      }
      if (backend === 'dynamo' && session && hotIdNotRun === undefined) {
        const requests = options.hotIdRequests ?? DEFAULT_HOT_ID_REQUESTS;
        progress.note(`[${b + 1}/${backends.length}] ${backend}: hot id past one item, shards ${HOT_ID_SHARD_COUNTS.join(', ')}, `
          + `${requests} requests each at ${HOT_ID_OFFERED_MULTIPLE}× the per-key limit (paced)`);
        try {
          hotId = await runHotIdScenario(session, requests, (run) => progress.note(
            `  shards ${run.shards}: offered ${run.offeredPerSecond}/s, accepted ${run.acceptedPerSecond}/s, 429: ${run.throttled}`));
        } catch (err) {
          hotIdNotRun = `failed: ${oneLine(err)}`;
          hotIdFailed = true;
        }
      }
    } catch (err) {
      // A read-back that fails is a backend failure, not a crash of the whole comparison.
      const done = [...section.scenarios, ...section.stepScenarios].map((x) => x.scenario as string);
      const skipped = section.notRun.map((n) => n.scenario as string);
      section.notRun.push(...[...SCENARIO_NAMES, ...STEP_SCENARIO_NAMES].filter((s) => !done.includes(s) && !skipped.includes(s))
        .map((scenario) => ({ scenario, reason: oneLine(err) })));
      progress.note(`${backend}: ${oneLine(err)}`);
    } finally {
      await target.close().catch(() => undefined);
    }
  }

  if (hotIdWanted && !hotId && hotIdNotRun === undefined) {
    hotIdNotRun = 'DynamoDB\'s run stopped before it (see its section)';
    hotIdFailed = true;
  }
  const finishedAt = new Date();
  const ran = sections.filter((s) => s.status === 'ran');
  const failed = ran.some((s) => s.notRun.length > 0 && !overHttp)
    || ran.some((s) => [...s.scenarios, ...s.stepScenarios].some((x) => x.verdict === 'FAIL'))
    || ran.some((s) => (s.roundTripReasons ?? []).length > 0)
    || hotIdFailed || hotId?.verdict === 'FAIL';
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
      stepRequests: options.stepRequests ?? DEFAULT_STEP_REQUESTS,
      retryKeys: options.retryKeys ?? DEFAULT_RETRY_KEYS,
      keyedRequests: options.keyedRequests ?? DEFAULT_KEYED_REQUESTS,
      ...(overHttp ? {} : { containers: options.containers }),
      warmup: options.warmup,
      ...(overHttp ? {} : { coldSamples: options.coldSamples ?? 0 }),
      hotId: hotIdWanted,
      ...(hotIdWanted ? { hotIdRequests: options.hotIdRequests ?? DEFAULT_HOT_ID_REQUESTS } : {}),
      ...(overHttp ? {} : { shards: options.shards ?? 1 }),
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
    ...(hotId ? { hotId } : {}),
    ...(hotIdNotRun !== undefined ? { hotIdNotRun } : {}),
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
  const known = new Set([
    'concurrency', 'requests', 'max', 'ids', 'step-requests', 'retry-keys', 'keyed-requests', 'containers', 'warmup', 'cold-samples',
    'hot-id', 'hot-id-requests', 'shards', 'backends', 'out', 'url', 'api-key',
  ]);
  for (const name of Object.keys(args)) if (!known.has(name)) throw new Error(`Unknown flag --${name} (known: ${[...known].map((k) => `--${k}`).join(', ')})`);
  let backends: BackendName[] | undefined;
  if (typeof args.backends === 'string') {
    backends = args.backends.split(',').map((s) => s.trim()).filter(Boolean) as BackendName[];
    const unknown = backends.filter((x) => !(BACKENDS as readonly string[]).includes(x));
    if (unknown.length > 0) throw new Error(`Unknown backend(s) ${unknown.join(', ')} (one of ${BACKENDS.join(', ')})`);
  }
  const hotIdArg = args['hot-id'];
  if (hotIdArg !== undefined && !['true', 'false', true].includes(hotIdArg)) throw new Error(`--hot-id must be true or false (got ${hotIdArg})`);
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
    stepRequests: positive('step-requests', DEFAULT_OPTIONS.stepRequests),
    retryKeys: positive('retry-keys', DEFAULT_OPTIONS.retryKeys),
    keyedRequests: positive('keyed-requests', DEFAULT_OPTIONS.keyedRequests),
    containers: positive('containers', DEFAULT_OPTIONS.containers),
    warmup: intArg(args, 'warmup', DEFAULT_OPTIONS.warmup),
    coldSamples: intArg(args, 'cold-samples', DEFAULT_OPTIONS.coldSamples),
    hotId: hotIdArg !== 'false',
    hotIdRequests: positive('hot-id-requests', DEFAULT_OPTIONS.hotIdRequests),
    // The flag wins over the environment, as everywhere else on this command line.
    shards: args.shards !== undefined ? readShards({ [COMMON_ENV.SHARDS]: String(args.shards) }) : readShards(env),
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
  const stepsTable = formatStepsTable(report);
  if (stepsTable) console.log(`steps and retries (one hot id each)\n${stepsTable}\n`);
  const costTable = formatCostTable(report);
  if (costTable) console.log(`what a change costs (datastore calls per change, engine side, uncontended; keyed vs unkeyed ops/s, medians of 3 rounds)\n${costTable}\n`);
  const hotIdTable = formatHotIdTable(report);
  if (hotIdTable) {
    const h = report.hotId!;
    console.log(`hot id past one item (${h.backend}, scale model: ${h.limitPerKey} write units/s per key, offered ${h.offeredMultiple}× it, ${h.requests} requests per shard count)\n${hotIdTable}\n`);
  }
  const coldTable = formatColdTable(report);
  if (coldTable) console.log(`cold start (medians of fresh processes)\n${coldTable}\n`);
  for (const s of report.backends) {
    if (s.status === 'skipped') console.log(`skipped  ${s.backend}: ${s.reason}`);
    else console.log(`engine   ${s.backend}: ${s.engine}`);
    for (const f of [...s.scenarios, ...s.stepScenarios].filter((x) => x.verdict === 'FAIL')) console.log(`FAIL     ${s.backend} ${f.scenario}: ${f.reasons.join('; ')}`);
    for (const n of s.notRun) console.log(`not run  ${s.backend} ${n.scenario}: ${n.reason}`);
    for (const r of s.roundTripReasons ?? []) console.log(`FAIL     ${s.backend} round trips: ${r}`);
    const benchErrors = Object.entries(s.keyedVsUnkeyed?.errorStatuses ?? {});
    if (benchErrors.length) console.log(`note     ${s.backend} keyed vs unkeyed bench: ${benchErrors.map(([st, n]) => `${n} × ${st}`).join(', ')} (not a verdict: a throughput run)`);
  }
  for (const r of report.hotId?.reasons ?? []) console.log(`FAIL     hot id: ${r}`);
  if (report.hotIdNotRun) console.log(`not run  hot id past one item: ${report.hotIdNotRun}`);
  console.log('');
  console.log(`Verdict: ${report.verdict} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(`Report:  ${files.markdown}`);
  console.log(`         ${files.json}`);
  console.log(`Charts:  ${files.throughputSvg}`);
  console.log(`         ${files.latencySvg}`);
  if (files.hotIdSvg) console.log(`         ${files.hotIdSvg}`);
  // Containers and engines are closed; exit now rather than wait for stray timers of a client library.
  process.exit(report.verdict === 'PASS' ? 0 : 1);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(oneLine(err));
    process.exit(2);
  });
}
