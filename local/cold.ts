/**
 * Cold start of a bundled counter handler, measured the way Lambda starts
 * one: a fresh Node.js process per sample, which
 *
 *   1. loads the bundle (`require`, the module's top level): "module load";
 *   2. waits for the init-phase connect the pipeline starts while loading
 *      (secret read + connection, `handler.ready()`): "init";
 *   3. serves one POST: "first request".
 *
 * Every phase is timed inside the child, so Node's own start-up is excluded
 * (it is the same for every bundle). Figures are medians of `samples`
 * processes; printed, never asserted.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { REPO_ROOT } from './lambda-container';
import { COMMON_ENV } from '../src/counter-env';

/** One fresh process's figures, in ms. */
export interface ColdSample {
  readonly loadMs: number;
  readonly initMs: number;
  /** Whether the init-phase connect succeeded. */
  readonly initOk: boolean;
  readonly firstRequestMs: number;
  readonly firstStatus: number;
}

/** Medians of a set of samples. */
export interface ColdFigures {
  readonly samples: number;
  readonly loadMs: number;
  readonly initMs: number;
  readonly firstRequestMs: number;
  /** Samples whose first request did not answer 200. */
  readonly failures: number;
  readonly bundleBytes: number;
}

/**
 * The child: plain JavaScript (no ts-node hooks in the measured process),
 * handed to `node -e`. Lambda's runtime sets the environment before loading
 * the handler module, so the child does too.
 */
const CHILD = `
const [file, backend, env] = [process.argv[1], process.argv[2], JSON.parse(process.argv[3])];
Object.assign(process.env, env);
const t0 = performance.now();
const mod = require(file);
const t1 = performance.now();
const handler = mod.handler;
(async () => {
  const ok = typeof handler.ready === 'function' ? await handler.ready() : false;
  const t2 = performance.now();
  const res = await handler({
    httpMethod: 'POST', resource: '/' + backend + '/{id}', path: '/' + backend + '/cold',
    pathParameters: { id: 'cold' }, headers: {}, body: null, isBase64Encoded: false,
  }, { getRemainingTimeInMillis: () => 10000 });
  const t3 = performance.now();
  process.stdout.write('\\n@@cold ' + JSON.stringify({ loadMs: t1 - t0, initMs: t2 - t1, initOk: ok, firstRequestMs: t3 - t2, firstStatus: res.statusCode }) + '\\n');
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
`;

export interface ColdOptions {
  /** Fresh processes per figure (median). @default 9 */
  readonly samples?: number;
  /** `NODE_OPTIONS` of the child, e.g. `--enable-source-maps`. @default none */
  readonly nodeOptions?: string;
  /** The Node.js binary. @default the running one */
  readonly node?: string;
}

/** Runs one fresh process on `file` (a bundled counter handler). */
export function coldSample(file: string, backend: string, env: Record<string, string>, options: ColdOptions = {}): Promise<ColdSample> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: options.nodeOptions ?? '' };
  delete childEnv.TS_NODE_PROJECT;
  return new Promise((resolve, reject) => {
    const child = spawn(options.node ?? process.execPath, ['-e', CHILD, file, backend, JSON.stringify({ ...env, ATOMIC_COUNTER_LOG: 'off' })], {
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('@@cold '));
      if (code !== 0 || !line) reject(new Error(`cold sample of ${file} failed (exit ${code}): ${err.trim().slice(-400)}`));
      else resolve(JSON.parse(line.slice('@@cold '.length)));
    });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const round2 = (v: number) => Math.round(v * 100) / 100;

/** Medians over `samples` fresh processes. */
export async function coldFigures(file: string, backend: string, env: Record<string, string>, options: ColdOptions = {}): Promise<ColdFigures> {
  const [figures] = await coldFiguresInterleaved([{ file, nodeOptions: options.nodeOptions }], backend, env, options);
  return figures;
}

/** A bundle to measure, and the `NODE_OPTIONS` to run it with. */
export interface ColdVariant {
  readonly file: string;
  readonly nodeOptions?: string;
}

/**
 * Medians for several bundles of one backend, their samples interleaved
 * (a, b, c, a, b, c, …) so every variant sees the same machine load.
 */
export async function coldFiguresInterleaved(
  variants: readonly ColdVariant[], backend: string, env: Record<string, string>, options: ColdOptions = {},
): Promise<ColdFigures[]> {
  const n = Math.max(1, options.samples ?? 9);
  const samples: ColdSample[][] = variants.map(() => []);
  for (let i = 0; i < n; i++) {
    for (const [v, variant] of variants.entries()) {
      samples[v].push(await coldSample(variant.file, backend, env, { ...options, nodeOptions: variant.nodeOptions }));
    }
  }
  return variants.map((variant, v) => summarize(variant.file, samples[v]));
}

function summarize(file: string, samples: ColdSample[]): ColdFigures {
  return {
    samples: samples.length,
    loadMs: round2(median(samples.map((s) => s.loadMs))),
    initMs: round2(median(samples.map((s) => s.initMs))),
    firstRequestMs: round2(median(samples.map((s) => s.firstRequestMs))),
    failures: samples.filter((s) => s.firstStatus !== 200).length,
    bundleBytes: fs.statSync(file).size,
  };
}

/**
 * The comparison point the deployed bundle must not be slower than: the same
 * entry bundled by esbuild, minified, without source maps, same target and
 * externals. Written below node_modules/ so the externals (`@aws-sdk/*`)
 * resolve as they do for `assets/`. Returns the bundle's path.
 */
export async function buildReferenceBundle(entry: string): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const esbuild = require('esbuild') as typeof import('esbuild');
  const outfile = path.join(REPO_ROOT, 'node_modules', '.cache', 'cold-reference', entry, 'index.js');
  // The deployed bundles' target, as projen's bundle tasks pass it to esbuild.
  const tasks = fs.readFileSync(path.join(REPO_ROOT, '.projen', 'tasks.json'), 'utf8');
  const target = /--target=(node\d+)/.exec(tasks)?.[1] ?? `node${process.versions.node.split('.')[0]}`;
  await esbuild.build({
    entryPoints: [path.join(REPO_ROOT, 'src', `${entry}.ts`)],
    outfile,
    bundle: true,
    platform: 'node',
    target,
    external: ['@aws-sdk/*'],
    minify: true,
    sourcemap: false,
    logLevel: 'error',
  });
  return outfile;
}

/** Mode variables a counter function always has. */
export const COLD_MODE_ENV = { [COMMON_ENV.USE_CONDITIONAL_WRITES]: 'false', [COMMON_ENV.MAX_COUNTER_VALUE]: String(Number.MAX_SAFE_INTEGER) };
