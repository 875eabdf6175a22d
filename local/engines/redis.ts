import { spawn, spawnSync } from 'child_process';
import * as os from 'os';
import Redis from 'ioredis';
import { captureOutput, Engine, EngineUnavailableError, freePort, stopChild, waitUntil } from './engine';

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
