import { spawn, spawnSync } from 'child_process';
import * as net from 'net';
import * as os from 'os';
import Redis from 'ioredis';
import { captureOutput, Engine, EngineUnavailableError, freePort, stopChild, waitUntil } from './engine';
import { pairSockets } from './tcp';

const DEFAULT_URL = 'redis://127.0.0.1:6379';

async function answersPing(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true, connectTimeout: 500, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

export interface RedisServerOptions {
  /** @default - a free port */
  readonly port?: number;
  /**
   * Keep data in an append-only file in this directory, fsynced before each
   * reply (`appendfsync always`), so a restart on the same directory finds
   * every acknowledged write. @default - no persistence
   */
  readonly dataDir?: string;
  /** Require this password (`requirepass`); the engine's URL carries it. @default - no AUTH */
  readonly password?: string;
  /** Extra `redis-server` arguments, e.g. `['--replicaof', '127.0.0.1', '6390']`. */
  readonly args?: string[];
}

/** A `redis-server` this process started. */
export interface RedisServer extends Engine {
  readonly port: number;
  readonly pid: number;
}

/** Starts a throw-away `redis-server` (no persistence unless `dataDir` is given). */
export async function startRedisServer(portOrOptions?: number | RedisServerOptions): Promise<RedisServer> {
  const options: RedisServerOptions = typeof portOrOptions === 'number' ? { port: portOrOptions } : portOrOptions ?? {};
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) {
    throw new EngineUnavailableError('Redis: no server at REDIS_URL or 127.0.0.1:6379 and no redis-server on PATH: apt-get install redis-server');
  }
  const p = options.port ?? await freePort();
  const persistence = options.dataDir
    ? ['--dir', options.dataDir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '']
    // Without a data dir, work in the temp dir: a replica's full sync writes
    // dump.rdb into the server's working directory even with `--save ""`.
    : ['--dir', os.tmpdir(), '--save', '', '--appendonly', 'no'];
  const auth = options.password ? ['--requirepass', options.password] : [];
  const args = ['--port', String(p), '--bind', '127.0.0.1', ...persistence, ...auth, ...(options.args ?? [])];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captureOutput(child);
  const url = options.password ? `redis://:${encodeURIComponent(options.password)}@127.0.0.1:${p}` : `redis://127.0.0.1:${p}`;
  try {
    await waitUntil('redis-server', () => answersPing(url), 15_000, child);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${output()}`);
  }
  return { name: 'redis-server', origin: 'started', url, port: p, pid: child.pid!, stop: () => stopChild(child) };
}

/** `REDIS_URL` → 127.0.0.1:6379 → a `redis-server` we start. */
export async function acquireRedis(): Promise<Engine> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) return { name: 'Redis', origin: 'env', url: fromEnv, stop: async () => undefined };
  if (await answersPing(DEFAULT_URL)) return { name: 'Redis', origin: 'default-port', url: DEFAULT_URL, stop: async () => undefined };
  return startRedisServer();
}

/**
 * A TCP proxy in front of a Redis server that reads the client's side of
 * every connection as Redis does (RESP arrays, or inline commands) and
 * counts top-level commands: what the server executes as one request each.
 * `INFO commandstats` cannot tell these apart, because it also counts the
 * commands a Lua script runs inside (`redis.call`); a `MULTI … EXEC`
 * counts each of its commands, as the server receives them.
 */
export interface RedisCommandProxy {
  /** `redis://[credentials@]127.0.0.1:<port>`: the target's URL pointed at the proxy. */
  readonly url: string;
  /** Top-level commands received since the last `reset`, lower-case names in arrival order. */
  readonly commands: readonly string[];
  reset(): void;
  close(): Promise<void>;
}

/**
 * Length of the first complete command in `buffer` from `offset` and its
 * name, or undefined while it is incomplete. RESP: `*<n>\r\n` then n bulk
 * strings `$<len>\r\n<bytes>\r\n`; anything else is an inline command (one line).
 */
export function nextRedisCommand(buffer: Buffer, offset = 0): { length: number; name: string } | undefined {
  const lineEnd = (from: number) => {
    const at = buffer.indexOf('\r\n', from);
    return at < 0 ? undefined : at;
  };
  if (offset >= buffer.length) return undefined;
  if (buffer[offset] !== 0x2a /* '*' */) {
    const end = lineEnd(offset);
    if (end === undefined) return undefined;
    const name = buffer.subarray(offset, end).toString('latin1').trim().split(/\s+/)[0]?.toLowerCase() ?? '';
    return { length: end + 2 - offset, name };
  }
  const headerEnd = lineEnd(offset);
  if (headerEnd === undefined) return undefined;
  const count = Number(buffer.subarray(offset + 1, headerEnd).toString('latin1'));
  let at = headerEnd + 2;
  let name = '';
  for (let i = 0; i < count; i++) {
    const end = lineEnd(at);
    if (end === undefined) return undefined;
    const size = Number(buffer.subarray(at + 1, end).toString('latin1'));
    const start = end + 2;
    if (start + size + 2 > buffer.length) return undefined;
    if (i === 0) name = buffer.subarray(start, start + size).toString('latin1').toLowerCase();
    at = start + size + 2;
  }
  return { length: at - offset, name };
}

/** Starts a command-counting proxy on 127.0.0.1 (a free port) in front of the Redis server at `targetUrl`. */
export async function startRedisCommandProxy(targetUrl: string): Promise<RedisCommandProxy> {
  const target = new URL(targetUrl);
  let commands: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: target.hostname, port: Number(target.port || 6379) });
    sockets.add(client);
    sockets.add(upstream);
    let pending: Buffer = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let offset = 0;
      for (let next = nextRedisCommand(pending, offset); next; next = nextRedisCommand(pending, offset)) {
        commands.push(next.name);
        offset += next.length;
      }
      pending = pending.subarray(offset);
      upstream.write(chunk);
    });
    pairSockets(client, upstream, sockets);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    get commands() {
      return commands;
    },
    reset() {
      commands = [];
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
