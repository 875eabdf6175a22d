/**
 * The counter API on 127.0.0.1 without AWS (docs/architecture.md, "How one
 * request flows"): every request is routed to the SAME bundled handler that
 * would be deployed, one container per backend, on the local engines of
 * `local/engines/`. What API
 * Gateway answers by itself (API key, unknown routes) is imitated here.
 *
 *   npm run local                     # or: npx projen local
 *   PORT=8080 USE_CONDITIONAL_WRITES=true MAX_COUNTER_VALUE=5 npm run local
 */
import { randomBytes, timingSafeEqual } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { BackendSession, openBackend } from './backends/lifecycle';
import { Engine } from './engines/engine';
import { ProxyHandler } from './lambda-container';
import { openApiDocument } from './openapi';
import { COMMON_ENV, MODE_DEFAULTS } from '../src/counter-env';
import { readBoolean, readInteger, readShards } from '../src/runtime/config';
import { BACKENDS, BackendName } from '../src/runtime/store';

/** Default port of `npm run local` (the port most local web tools use). */
export const DEFAULT_PORT = 3000;
/** The stable namespace (table, key prefix, database, cache) of the local server. */
export const LOCAL_NAMESPACE = 'atomic_counter_local';

export interface LocalServerOptions {
  /** @default 3000; 0 = a free port */
  readonly port?: number;
  /** @default - a random 40-character key */
  readonly apiKey?: string;
  /** @default false */
  readonly conditionalWrites?: boolean;
  /** @default 10 */
  readonly maxCounterValue?: number;
  /** Shards per counter id (`COUNTER_SHARDS`, 1–64). @default 1 */
  readonly shards?: number;
  /** Backends to serve. @default - all five; those without a fixture or engine are skipped */
  readonly backends?: readonly BackendName[];
  /** No request log lines from the handlers, no start-up lines. @default false */
  readonly quiet?: boolean;
  /** Namespace prepared on each engine. @default 'atomic_counter_local' */
  readonly namespace?: string;
  /**
   * Remove the namespace's data from each engine on `stop()` (tests; the
   * CLI keeps its counters across runs). @default false
   */
  readonly disposeOnStop?: boolean;
  /**
   * Engines acquired by the caller, reused as they are and NOT stopped by
   * `stop()` (tests start two servers, one per mode, on the same engines).
   * @default - each backend's engine is acquired (and stopped if started here)
   */
  readonly engines?: Partial<Record<BackendName, Engine>>;
}

export interface SkippedBackend {
  readonly backend: BackendName;
  /** One line: why, and what to install or set. */
  readonly reason: string;
}

export interface LocalServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly apiKey: string;
  /** Backends served, each on its engine. */
  readonly backends: readonly BackendName[];
  readonly skipped: readonly SkippedBackend[];
  readonly engines: Partial<Record<BackendName, Engine>>;
  /** Closes the HTTP server and stops the engines this server started. */
  stop(): Promise<void>;
}

/** First line of an error's message: the acquire contract promises one line. */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0].trim() || (err instanceof Error ? err.name : 'unknown error');
}

interface ServedBackend {
  readonly handler: ProxyHandler;
  readonly session: BackendSession;
}

/**
 * Opens a backend's session (local/backends/lifecycle.ts: engine acquired
 * or given, the namespace prepared) and loads the bundled handler once. Any
 * failure (EngineUnavailableError or otherwise) becomes a one-line skip
 * reason: a missing engine must not stop the other backends.
 */
async function serveBackend(backend: BackendName, options: LocalServerOptions, namespace: string): Promise<ServedBackend | SkippedBackend> {
  let session: BackendSession | undefined;
  try {
    session = await openBackend(backend, { engine: options.engines?.[backend], dispose: options.disposeOnStop ?? false });
    const [handler] = await session.containers({
      conditional: options.conditionalWrites ?? MODE_DEFAULTS.conditionalWrites,
      maximum: options.maxCounterValue,
      shards: options.shards,
      quiet: options.quiet ?? false,
    }, 1, namespace);
    return { handler, session };
  } catch (err) {
    await session?.close().catch(() => undefined);
    return { backend, reason: oneLine(err) };
  }
}

function sameKey(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(text);
}

/** The query string as API Gateway's proxy event carries it (decoded; null when there is none). */
function queryParameters(url: string): { single: Record<string, string> | null; multi: Record<string, string[]> | null } {
  const at = url.indexOf('?');
  if (at < 0) return { single: null, multi: null };
  const single: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (const [name, value] of new URLSearchParams(url.slice(at + 1))) {
    single[name] = value;
    (multi[name] ??= []).push(value);
  }
  return Object.keys(single).length === 0 ? { single: null, multi: null } : { single, multi };
}

export async function startLocalServer(options: LocalServerOptions = {}): Promise<LocalServer> {
  const apiKey = options.apiKey ?? randomBytes(30).toString('base64url');
  const namespace = options.namespace ?? LOCAL_NAMESPACE;
  // Every backend asked for is listed, served or skipped with a reason.
  const wanted = options.backends ?? BACKENDS;

  const served = new Map<BackendName, ServedBackend>();
  const skipped: SkippedBackend[] = [];
  // Engines start in parallel: DynamoDB Local's JVM takes seconds, the others
  // are immediate, so start-up costs the slowest engine, not their sum.
  const outcomes = await Promise.all(wanted.map((backend) => serveBackend(backend, options, namespace)));
  wanted.forEach((backend, i) => {
    const outcome = outcomes[i];
    if ('handler' in outcome) served.set(backend, outcome);
    else skipped.push(outcome);
  });

  const server = http.createServer((req, res) => {
    route(req, res).catch(() => {
      // The handler answers every error itself; reaching this is a bug here.
      if (!res.headersSent) send(res, 500, { code: 'INTERNAL', error: 'Internal error' });
      else res.destroy();
    });
  });

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const rawPath = (req.url ?? '/').split('?')[0];
    // `/{backend}/{id}`, one segment each, the id still percent-encoded:
    // API Gateway REST hands `pathParameters.id` to Lambda undecoded and the
    // handler decodes it once, so the raw segment is passed as it came.
    // The API's own description, as a deployed API's documentation would be
    // published: no key needed.
    if (rawPath === '/openapi.json' && method === 'GET') {
      send(res, 200, openApiDocument());
      return;
    }
    const segments = rawPath.split('/');
    const backend = segments[1] as BackendName;
    const id = segments[2];
    const isRoute = segments.length === 3 && segments[0] === '' && (BACKENDS as readonly string[]).includes(backend) && id !== '';
    // API Gateway matches the resource and method before it looks at the key:
    // an unknown one gets MISSING_AUTHENTICATION_TOKEN, which the construct
    // turns into this 404, key or no key.
    if (!isRoute || (method !== 'GET' && method !== 'POST')) {
      send(res, 404, { code: 'NOT_FOUND', error: `No such route: ${method} ${rawPath}` });
      return;
    }
    if (!sameKey(header(req, 'x-api-key'), apiKey)) {
      send(res, 403, { message: 'Forbidden' });
      return;
    }
    const target = served.get(backend);
    if (!target) {
      // A deployed API without this backend has no such route: 404, as there.
      // The message says why, so a skipped engine is not a silent mystery.
      const why = skipped.find((s) => s.backend === backend)?.reason ?? 'not requested (options.backends)';
      send(res, 404, { code: 'NOT_FOUND', error: `Backend ${backend} is not served by this local server: ${why}` });
      return;
    }
    req.resume(); // the body is ignored, as the deployed API's handlers ignore it
    // As API Gateway's REST proxy event: single-value maps hold the last
    // value of a repeated header or query parameter, multi-value maps all.
    const headers: Record<string, string> = {};
    const multiValueHeaders: Record<string, string[]> = {};
    for (const [name, values] of Object.entries(req.headersDistinct)) {
      if (!values || values.length === 0) continue;
      headers[name] = values[values.length - 1];
      multiValueHeaders[name] = values;
    }
    const query = queryParameters(req.url ?? '/');
    const result = await target.handler({
      httpMethod: method,
      resource: `/${backend}/{id}`,
      path: rawPath,
      pathParameters: { id },
      headers,
      multiValueHeaders,
      queryStringParameters: query.single,
      multiValueQueryStringParameters: query.multi,
      body: null,
      isBase64Encoded: false,
    });
    send(res, result.statusCode, result.body, result.headers ?? {});
  }

  // Each session closes its containers (while the engine still answers), then disposes, then stops an engine it acquired.
  const closeSessions = () => Promise.all([...served.values()].map((s) => s.session.close().catch(() => undefined)));
  const listenPort = options.port ?? DEFAULT_PORT;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await closeSessions();
    const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
    throw new Error(inUse ? `Port ${listenPort} is in use on 127.0.0.1: set PORT to another one` : oneLine(err));
  }
  const port = (server.address() as net.AddressInfo).port;
  const engines: Partial<Record<BackendName, Engine>> = {};
  for (const [backend, s] of served) engines[backend] = s.session.engine;

  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    backends: [...served.keys()],
    skipped,
    engines,
    stop() {
      stopped ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await closeSessions();
      })();
      return stopped;
    },
  };
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * `KEY=value` lines of a `.env` file (comments, blank lines, `export ` and
 * surrounding quotes allowed). Small on purpose: the server needs four keys,
 * not a dotenv dependency.
 */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2].trim();
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, '');
    out[match[1]] = value;
  }
  return out;
}

/** The keys the local server takes from `.env` (the environment wins over the file). */
export const SERVER_ENV_KEYS = ['PORT', 'API_KEY', COMMON_ENV.USE_CONDITIONAL_WRITES, COMMON_ENV.MAX_COUNTER_VALUE, COMMON_ENV.SHARDS] as const;

export function serverSettings(env: NodeJS.ProcessEnv, cwd = process.cwd()): Record<string, string | undefined> {
  const file = path.join(cwd, '.env');
  const fromFile = fs.existsSync(file) ? parseDotEnv(fs.readFileSync(file, 'utf8')) : {};
  const settings: Record<string, string | undefined> = {};
  for (const key of SERVER_ENV_KEYS) settings[key] = env[key] || fromFile[key];
  return settings;
}

async function main(): Promise<void> {
  const settings = serverSettings(process.env);
  const conditionalWrites = readBoolean(settings, COMMON_ENV.USE_CONDITIONAL_WRITES, MODE_DEFAULTS.conditionalWrites);
  const maxCounterValue = readInteger(settings, COMMON_ENV.MAX_COUNTER_VALUE, MODE_DEFAULTS.maxCounterValue, 1);
  const shards = readShards(settings);
  const port = readInteger(settings, 'PORT', DEFAULT_PORT, 0);
  const server = await startLocalServer({ port, apiKey: settings.API_KEY, conditionalWrites, maxCounterValue, shards });

  for (const backend of server.backends) {
    const engine = server.engines[backend]!;
    console.log(`  up       ${backend.padEnd(8)} ${engine.name} (${engine.origin}) → ${server.url}/${backend}/{id}`);
  }
  for (const s of server.skipped) console.log(`  skipped  ${s.backend.padEnd(8)} ${s.reason}`);
  console.log(`Mode: ${conditionalWrites ? `conditional writes, maximum ${maxCounterValue}` : 'unconditional writes'}${shards > 1 ? `, ${shards} shards per id` : ''}`);
  console.log(`Local counter API: ${server.url}`);
  console.log(`API key: ${server.apiKey}`);
  if (server.backends.length > 0) {
    console.log(`Try: curl -X POST -H "x-api-key: ${server.apiKey}" ${server.url}/${server.backends[0]}/my-counter`);
  } else {
    console.log('No backend could be served: install or start one of the engines above.');
  }

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping the server and the engines it started…`);
    server.stop().then(
      // Everything is closed; exit now rather than wait for stray timers of a client library.
      () => process.exit(0),
      (err) => {
        console.error(oneLine(err));
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(oneLine(err));
    process.exit(1);
  });
}
