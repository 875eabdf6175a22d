import * as fs from 'fs';
import * as path from 'path';
import * as vm from 'vm';
import { COMMON_ENV, MODE_DEFAULTS } from '../src/counter-env';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Module = require('module');

/** Repository root (local/ sits directly below it). */
export const REPO_ROOT = path.join(__dirname, '..');

let assetsDir = path.join(REPO_ROOT, 'assets');

/**
 * Loads bundles from another folder laid out like `assets/` (the bench's
 * `--assets`, e.g. an older build to compare with). Returns the previous one.
 */
export function setAssetsDir(dir: string): string {
  const previous = assetsDir;
  assetsDir = path.resolve(dir);
  return previous;
}

/** The bundled file projen's esbuild step writes for a Lambda entry. */
export function bundlePath(entry: string): string {
  return path.join(assetsDir, entry, 'index.js');
}

export interface ProxyResult {
  statusCode: number;
  headers?: Record<string, string>;
  body: string;
}
/**
 * A loaded container's handler. Counter handlers built by the shared
 * pipeline also carry `close()`, which releases the container's store.
 */
export type ProxyHandler = ((event: unknown) => Promise<ProxyResult>) & { close?: () => Promise<void> };

/** Every container loaded by this process, so they can all be closed. */
const loaded = new Set<ProxyHandler>();

/**
 * Closes every loaded container's store (its connections), so a test file or
 * a local run can end without open handles.
 */
export async function closeContainers(): Promise<void> {
  const all = [...loaded];
  loaded.clear();
  await Promise.all(all.map((h) => h.close?.().catch(() => undefined)));
}

/**
 * Loads a bundled Lambda handler as a fresh module instance: a stand-in for
 * one Lambda container. `env` is in `process.env` while the bundle's top
 * level runs (Lambda's init phase, where our handlers read their
 * configuration) and restored afterwards, so several containers with
 * different configurations can live in one process. Each instance has its
 * own module state, hence its own client and connections.
 */
export function loadBundledHandler(entry: string, env: Record<string, string>, exportName = 'handler'): ProxyHandler {
  const file = bundlePath(entry);
  if (!fs.existsSync(file)) {
    throw new Error(`${path.relative(REPO_ROOT, file)} does not exist: run \`npx projen bundle\` first`);
  }
  // The bundle runs in Node's own context, whose `process` is not the copy a
  // jest test sees: set the variables where the bundle will read them.
  const realEnv: NodeJS.ProcessEnv = vm.runInThisContext('process').env;
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = realEnv[k];
    realEnv[k] = v;
  }
  try {
    const mod = new Module(file, null);
    mod.filename = file;
    mod.paths = Module._nodeModulePaths(path.dirname(file));
    mod._compile(fs.readFileSync(file, 'utf8'), file);
    const handler = mod.exports[exportName];
    if (typeof handler !== 'function') throw new Error(`${entry} exports no function "${exportName}"`);
    loaded.add(handler);
    return handler;
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete realEnv[k];
      else realEnv[k] = v;
    }
  }
}

/** The write mode a counter container runs in. */
export interface ContainerMode {
  readonly conditional: boolean;
  /** @default 10 (the constructs' default) */
  readonly maximum?: number;
  /** Shards per counter id (`COUNTER_SHARDS`). @default 1 (unsharded) */
  readonly shards?: number;
  /** No request log lines (load runs). @default true */
  readonly quiet?: boolean;
  /** More environment (e.g. IDEMPOTENCY_RETENTION_SECONDS, shorter client timeouts), over the fixture's. */
  readonly env?: Record<string, string>;
}

/**
 * Loads `n` containers of a backend's bundled counter handler in one mode,
 * on the handler environment a fixture prepared.
 */
export function loadCounterContainers(entry: string, env: Record<string, string>, mode: ContainerMode, n = 1): ProxyHandler[] {
  const modeEnv = {
    [COMMON_ENV.USE_CONDITIONAL_WRITES]: String(mode.conditional),
    [COMMON_ENV.MAX_COUNTER_VALUE]: String(mode.maximum ?? MODE_DEFAULTS.maxCounterValue),
    // Always set: the bundle reads the process's environment, so a
    // COUNTER_SHARDS exported in the shell (`COUNTER_SHARDS=8 npm run
    // compare`) would otherwise reach every container, the unsharded ones
    // (the round-trip figures, a test's) included.
    [COMMON_ENV.SHARDS]: String(mode.shards ?? 1),
    ...(mode.quiet ?? true ? { ATOMIC_COUNTER_LOG: 'off' } : {}),
    ...mode.env,
  };
  return Array.from({ length: Math.max(1, n) }, () => loadBundledHandler(entry, { ...env, ...modeEnv }));
}

/** An API Gateway REST proxy event for `METHOD /{backend}/{id}` (id percent-encoded, as API Gateway passes it). */
export function proxyEvent(
  method: string, backend: string, id: string | undefined, headers: Record<string, string> = {}, query: Record<string, string> = {},
): unknown {
  const encoded = id === undefined ? undefined : encodeURIComponent(id);
  const hasQuery = Object.keys(query).length > 0;
  return {
    httpMethod: method,
    resource: '/' + backend + '/{id}',
    path: `/${backend}/${encoded ?? ''}`,
    pathParameters: encoded === undefined ? null : { id: encoded },
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: hasQuery ? query : null,
    multiValueQueryStringParameters: hasQuery ? Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v]])) : null,
    body: null,
    isBase64Encoded: false,
  };
}

/** Open file descriptors of this process (Linux). */
export function openFileDescriptors(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/**
 * Established TCP connections this process holds to `port` (Linux /proc):
 * the client side of every connection from this process's containers to an
 * engine on this machine. Only this process's sockets (by inode), so that
 * another process using the same engine (another jest worker beside this
 * one) changes nothing.
 */
export function establishedConnections(port: number): number {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // closed while listing
    }
  }
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const remotePort = parseInt(cols[2].split(':')[1], 16);
      if (remotePort === port && cols[3] === '01' && inodes.has(cols[9])) count++;
    }
  }
  return count;
}
