/**
 * Bench: the bundled handler against its engine, and a bare client loop
 * doing the same single operation at the same concurrency; then the
 * handler's keyed and unkeyed paths side by side (plain +1, `?by=5`, a fresh
 * `Idempotency-Key` per request, pairs of requests sharing a key). Prints
 * figures; asserts nothing.
 *
 *   npx projen bench --backend dynamo [--concurrency 32] [--requests 5000]
 *                    [--mode unconditional|conditional] [--containers 8]
 *                    [--rounds 1]     # alternating handler/bare rounds; the ratio is their median
 *                    [--assets DIR]   # bundles from another assets/ folder (e.g. an older build)
 *
 * Cold start (fresh processes, see cold.ts): module load, init (secret +
 * connect) and the first request, medians of --samples, for the deployed
 * bundle and, in the same run, a minified esbuild bundle of the same entry
 * without source maps (the floor the deployed bundle is held to):
 *
 *   npx projen bench --cold [--backend redis,tidb] [--samples 9]
 *                    [--source-maps]      # as with the sourceMaps prop (NODE_OPTIONS=--enable-source-maps)
 *                    [--assets DIR]       # bundles from another assets/ folder (e.g. an older build)
 *                    [--also DIR,DIR:maps] # more assets/-like folders, measured in the same run
 *                                          # (`:maps`: with --enable-source-maps)
 */
import * as os from 'os';
import * as path from 'path';
import { parseArgs, intArg } from './args';
import { availableFixtures } from './backends';
import { uniqueNamespace } from './backends/fixture';
import { openBackend } from './backends/lifecycle';
import { buildReferenceBundle, COLD_MODE_ENV, coldFiguresInterleaved, ColdFigures, ColdVariant } from './cold';
import { bundlePath, proxyEvent, setAssetsDir } from './lambda-container';
import { CallOutcome, runWorkload, WorkloadResult } from './workload';
import { BACKENDS, BackendName } from '../src/runtime/store';

function line(label: string, r: WorkloadResult): string {
  const ok = r.statuses[200] ?? 0;
  return `${label.padEnd(30)} ${r.opsPerSecond.toFixed(0).padStart(8)} ops/s   p50 ${r.p50.toFixed(2).padStart(7)} ms   p95 ${r.p95.toFixed(2).padStart(7)} ms   p99 ${r.p99.toFixed(2).padStart(7)} ms   200: ${ok}/${r.requests}`;
}

export interface BenchOptions {
  readonly concurrency: number;
  readonly requests: number;
  readonly conditional: boolean;
  readonly containers: number;
  /** Alternating handler/bare measurement rounds. @default 1 */
  readonly rounds: number;
}

export async function bench(backend: BackendName, opts: BenchOptions): Promise<void> {
  const session = await openBackend(backend);
  const { fixture, engine } = session;
  try {
    const namespace = uniqueNamespace(`bench_${backend}`);
    const env = await session.prepare(namespace);
    // Conditional runs never reach the maximum: the figure is the accept path.
    const handlers = await session.containers({ conditional: opts.conditional, maximum: Number.MAX_SAFE_INTEGER }, opts.containers, namespace);
    console.log(`${backend} on ${engine.name} (${engine.origin}, ${engine.url.replace(/\/\/[^@/]*@/, '//***@')}); ${opts.conditional ? 'conditional' : 'unconditional'}; concurrency ${opts.concurrency}; ${opts.requests} requests; ${opts.containers} containers`);
    // Warm up both paths (connections, our JIT and the engine's: DynamoDB
    // Local's JVM needs a few thousand requests) before measuring either.
    const warm = Math.max(500, Math.min(3000, opts.requests));
    const post = async (caller: number, id: string, headers: Record<string, string> = {}, query: Record<string, string> = {}) => {
      const res = await handlers[caller % handlers.length](proxyEvent('POST', backend, id, headers, query));
      return { status: res.statusCode, counter: JSON.parse(res.body).counter, replayed: res.headers?.['Idempotent-Replayed'] };
    };
    const callHandler = (_i: number, caller: number) => post(caller, 'bench-hot');
    const bare = await Promise.all(Array.from({ length: opts.containers }, () => fixture.bareClient(engine, env)));
    const callBare = async (_i: number, caller: number) => ({ status: 200, counter: await bare[caller % bare.length].increment('bench-bare') });
    await runWorkload({ total: warm, concurrency: opts.concurrency, call: callHandler });
    await runWorkload({ total: warm, concurrency: opts.concurrency, call: callBare });

    // Rounds alternate handler and bare runs, so both see the same machine
    // load; the ratio reported is the median of the rounds' ratios.
    // CPU time of this process per request (user + system) is steadier than
    // throughput on a busy machine; in-process engines (Momento, MongoDB
    // wire) are counted on both sides alike.
    const measured = async (call: (i: number, caller: number) => Promise<CallOutcome>) => {
      const cpu0 = process.cpuUsage();
      const result = await runWorkload({ total: opts.requests, concurrency: opts.concurrency, call });
      const cpu = process.cpuUsage(cpu0);
      return { result, cpuUs: (cpu.user + cpu.system) / opts.requests };
    };
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const viaHandler = await measured(callHandler);
      const viaBare = await measured(callBare);
      const prefix = opts.rounds > 1 ? `[${round}] ` : '';
      console.log(`${line(`${prefix}bundled handler`, viaHandler.result)}   cpu ${viaHandler.cpuUs.toFixed(1)} µs/req`);
      console.log(`${line(`${prefix}bare client loop`, viaBare.result)}   cpu ${viaBare.cpuUs.toFixed(1)} µs/req`);
      console.log(`${prefix}handler overhead: throughput ×${(viaBare.result.opsPerSecond / viaHandler.result.opsPerSecond).toFixed(2)} lower, p50 +${(viaHandler.result.p50 - viaBare.result.p50).toFixed(2)} ms, p99 +${(viaHandler.result.p99 - viaBare.result.p99).toFixed(2)} ms`);
      ratios.push(viaHandler.result.opsPerSecond / viaBare.result.opsPerSecond);
      cpuRatios.push(viaBare.cpuUs / viaHandler.cpuUs);
    }
    await Promise.all(bare.map((b) => b.close()));
    const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
    const rounds = `median of ${ratios.length} round${ratios.length > 1 ? 's' : ''}`;
    console.log(`handler / bare throughput: ${med(ratios).toFixed(2)} (${rounds}: ${ratios.map((r) => r.toFixed(2)).join(' ')})`);
    console.log(`handler / bare CPU efficiency (bare cpu per request ÷ handler's): ${med(cpuRatios).toFixed(2)} (${rounds}: ${cpuRatios.map((r) => r.toFixed(2)).join(' ')})`);
    await keyedBench(post, opts, med);
  } finally {
    await session.close();
  }
}

interface PostAnswer {
  status: number;
  counter?: number;
  replayed?: string;
}
type Post = (caller: number, id: string, headers?: Record<string, string>, query?: Record<string, string>) => Promise<PostAnswer>;

/**
 * The handler's write paths at the same concurrency and containers, each on
 * its own hot id: plain +1 (the one-round-trip path), `?by=5`, a fresh
 * `Idempotency-Key` per request (the keyed path applying), and pairs of
 * requests sharing a key (requests 2k and 2k+1, in flight together: one
 * applies, the other waits or replays). Rounds alternate the four.
 */
async function keyedBench(post: Post, opts: BenchOptions, med: (v: number[]) => number): Promise<void> {
  const tag = Date.now().toString(36);
  let replays = 0;
  const keyed = (id: string, keyOf: (i: number) => string) => async (i: number, caller: number) => {
    const answer = await post(caller, id, { 'Idempotency-Key': keyOf(i) });
    if (answer.replayed === 'true') replays++;
    return answer;
  };
  let round = 0;
  const variants: Array<{ label: string; call: (i: number, caller: number) => Promise<{ status: number; counter?: number }> }> = [
    { label: 'unkeyed +1', call: (_i, caller) => post(caller, 'bench-plain') },
    { label: 'unkeyed ?by=5', call: (_i, caller) => post(caller, 'bench-by5', {}, { by: '5' }) },
    { label: 'keyed, a fresh key each', call: keyed('bench-keyed', (i) => `${tag}-${round}-fresh-${i}`) },
    { label: 'keyed contended (pairs)', call: keyed('bench-pairs', (i) => `${tag}-${round}-pair-${Math.floor(i / 2)}`) },
  ];
  // Warm the keyed path too (key records, transactions, prepared statements).
  round = -1;
  for (const v of variants) await runWorkload({ total: Math.max(500, Math.min(2000, opts.requests)), concurrency: opts.concurrency, call: v.call });
  console.log(`keyed vs unkeyed (bundled handler, same containers and concurrency, ${opts.requests} requests each):`);
  const figures = variants.map(() => ({ ops: [] as number[], p50: [] as number[], p99: [] as number[] }));
  for (round = 1; round <= opts.rounds; round++) {
    for (const [k, v] of variants.entries()) {
      replays = 0;
      const r = await runWorkload({ total: opts.requests, concurrency: opts.concurrency, call: v.call });
      const prefix = opts.rounds > 1 ? `[${round}] ` : '';
      console.log(`${line(`${prefix}${v.label}`, r)}${v.label.startsWith('keyed') ? `   replays: ${replays}` : ''}`);
      figures[k].ops.push(r.opsPerSecond);
      figures[k].p50.push(r.p50);
      figures[k].p99.push(r.p99);
    }
  }
  const base = med(figures[0].ops);
  console.log(`keyed vs unkeyed${opts.rounds > 1 ? ` (medians of ${opts.rounds} rounds)` : ''}, throughput relative to unkeyed +1:`);
  for (const [k, v] of variants.entries()) {
    const ops = med(figures[k].ops);
    console.log(`  ${v.label.padEnd(28)} ${ops.toFixed(0).padStart(8)} ops/s   ×${(ops / base).toFixed(2)}   p50 ${med(figures[k].p50).toFixed(2).padStart(7)} ms   p99 ${med(figures[k].p99).toFixed(2).padStart(7)} ms`);
  }
}

export interface ColdBenchOptions {
  readonly samples: number;
  /** Run the deployed bundle with NODE_OPTIONS=--enable-source-maps (the sourceMaps prop). */
  readonly sourceMaps: boolean;
  /** Another assets/ folder to take the deployed bundle from. @default - assets/ */
  readonly assetsDir?: string;
  /**
   * More assets/-like folders measured in the same run (e.g. an older
   * build); a folder ending in `:maps` runs with NODE_OPTIONS=--enable-source-maps.
   */
  readonly also?: readonly string[];
}

export interface ColdBenchRow {
  readonly backend: BackendName;
  readonly deployed: ColdFigures;
  readonly reference: ColdFigures;
  /** The `--also` folders' bundles, in order. */
  readonly also: ColdFigures[];
}

function coldLine(label: string, f: ColdFigures): string {
  const failures = f.failures ? `   first request failed in ${f.failures}/${f.samples}` : '';
  return `  ${label.padEnd(34)} ${(f.bundleBytes / 1024).toFixed(0).padStart(6)} KiB   load ${f.loadMs.toFixed(1).padStart(6)} ms   init ${f.initMs.toFixed(1).padStart(6)} ms   first request ${f.firstRequestMs.toFixed(1).padStart(6)} ms${failures}`;
}

/** Cold figures of one backend: the deployed bundle and the minified, map-less reference, against one engine. */
export async function coldBench(backend: BackendName, opts: ColdBenchOptions): Promise<ColdBenchRow> {
  const session = await openBackend(backend);
  const { fixture } = session;
  try {
    const env = { ...await session.prepare(uniqueNamespace(`cold_${backend}`)), ...COLD_MODE_ENV };
    const variants: ColdVariant[] = [
      { file: bundlePath(fixture.entry), nodeOptions: opts.sourceMaps ? '--enable-source-maps' : '' },
      { file: await buildReferenceBundle(fixture.entry) },
      ...(opts.also ?? []).map((dir) => ({
        file: path.join(path.resolve(dir.replace(/:maps$/, '')), fixture.entry, 'index.js'),
        nodeOptions: dir.endsWith(':maps') ? '--enable-source-maps' : '',
      })),
    ];
    // Samples interleaved in one run, so every variant sees the same machine load.
    const [deployed, reference, ...also] = await coldFiguresInterleaved(variants, backend, env, { samples: opts.samples });
    return { backend, deployed, reference, also };
  } finally {
    await session.close();
  }
}

async function coldMain(backends: BackendName[], opts: ColdBenchOptions): Promise<void> {
  console.log(`cold start: node ${process.version}, median of ${opts.samples} fresh processes per figure, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const deployedLabel = `deployed bundle${opts.sourceMaps ? ' + --enable-source-maps' : ''}${opts.assetsDir ? ` (${opts.assetsDir})` : ''}`;
  for (const backend of backends) {
    const row = await coldBench(backend, opts);
    console.log(backend);
    console.log(coldLine(deployedLabel, row.deployed));
    console.log(coldLine('minified esbuild, no source maps', row.reference));
    row.also.forEach((f, i) => console.log(coldLine(opts.also![i].replace(/:maps$/, ' + --enable-source-maps'), f)));
    const ratio = row.deployed.loadMs / row.reference.loadMs;
    console.log(`  module load deployed / minified-no-map: ×${ratio.toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const backends = typeof args.backend === 'string' ? args.backend.split(',') : availableFixtures();
  for (const b of backends) {
    if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`Unknown backend "${b}" (one of ${BACKENDS.join(', ')})`);
  }
  if (typeof args.assets === 'string') setAssetsDir(args.assets);
  if (args.cold) {
    await coldMain(backends as BackendName[], {
      samples: intArg(args, 'samples', 9),
      sourceMaps: Boolean(args['source-maps']),
      assetsDir: typeof args.assets === 'string' ? args.assets : undefined,
      also: typeof args.also === 'string' ? args.also.split(',') : undefined,
    });
    process.exit(0);
  }
  for (const b of backends) {
    await bench(b as BackendName, {
      concurrency: intArg(args, 'concurrency', 32),
      requests: intArg(args, 'requests', 5000),
      conditional: args.mode === 'conditional',
      containers: intArg(args, 'containers', 8),
      rounds: Math.max(1, intArg(args, 'rounds', 1)),
    });
  }
  // Clients of loaded containers keep sockets open: exit explicitly.
  process.exit(0);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
