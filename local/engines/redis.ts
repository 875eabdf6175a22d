import { spawn, spawnSync } from 'child_process';
import Redis from 'ioredis';
import { captureOutput, Engine, EngineUnavailableError, freePort, stopChild, waitUntil } from './engine';

const DEFAULT_URL = 'redis://127.0.0.1:6379';

async function answersPing(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 500, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
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

/** Starts a throw-away `redis-server` on a free port (no persistence). */
export async function startRedisServer(port?: number): Promise<Engine> {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) {
    throw new EngineUnavailableError('Redis: no server at REDIS_URL or 127.0.0.1:6379 and no redis-server on PATH: apt-get install redis-server');
  }
  const p = port ?? await freePort();
  const child = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captureOutput(child);
  const url = `redis://127.0.0.1:${p}`;
  try {
    await waitUntil('redis-server', () => answersPing(url), 15_000, child);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${output()}`);
  }
  return { name: 'redis-server', origin: 'started', url, stop: () => stopChild(child) };
}

/** `REDIS_URL` → 127.0.0.1:6379 → a `redis-server` we start. */
export async function acquireRedis(): Promise<Engine> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) return { name: 'Redis', origin: 'env', url: fromEnv, stop: async () => undefined };
  if (await answersPing(DEFAULT_URL)) return { name: 'Redis', origin: 'default-port', url: DEFAULT_URL, stop: async () => undefined };
  return startRedisServer();
}
