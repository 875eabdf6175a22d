import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createConnection } from 'mysql2/promise';
import { captureOutput, Engine, EngineUnavailableError, freePort, stopChild, waitUntil } from './engine';

const DEFAULT_URL = 'mysql://root@127.0.0.1:3306/';

/** Connection options for an engine URL (`mysql://user:password@host:port/`), for mysql2. */
export function mysqlConnectionOptions(url: string): { host: string; port: number; user: string; password: string } {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username) || 'root',
    password: decodeURIComponent(u.password),
  };
}

/** True when a MySQL-protocol server at `url` accepts the credentials and answers `SELECT 1`. */
export async function answersQuery(url: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const conn = await createConnection({ ...mysqlConnectionOptions(url), connectTimeout: timeoutMs });
    try {
      await conn.query('SELECT 1');
      return true;
    } finally {
      conn.destroy();
    }
  } catch {
    return false;
  }
}

function findBinary(names: string[]): string | undefined {
  for (const name of names) {
    for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':')]) {
      const file = path.join(dir, name);
      if (dir && fs.existsSync(file)) return file;
    }
  }
  return undefined;
}

/** A MySQL-protocol server this process started: can be stopped and started again on the same port and datadir. */
export interface OwnMysqlServer extends Engine {
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server (SIGTERM, clean shutdown); the datadir is kept. */
  halt(): Promise<void>;
  /** Kills the server (SIGKILL, as a crash or a lost host would); the datadir is kept and recovered on restart. */
  crash(): Promise<void>;
  /** Starts it again on the same port with the same datadir. */
  restart(): Promise<void>;
}

/**
 * Starts our own `mariadbd` (or `mysqld`) on a free port with a temporary
 * datadir initialised by `mariadb-install-db`; root without a password, TCP
 * on 127.0.0.1 only. Used when no server is reachable, and by the fault test
 * (which must never stop the machine's shared server).
 */
export async function startMysqlServer(port?: number): Promise<OwnMysqlServer> {
  const server = findBinary(['mariadbd', 'mysqld']);
  const installDb = findBinary(['mariadb-install-db', 'mysql_install_db']);
  if (!server || !installDb) {
    throw new EngineUnavailableError('MySQL protocol: no server at MYSQL_URL or 127.0.0.1:3306 and no mariadbd to start: apt-get install mariadb-server');
  }
  const p = port ?? await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atomic-counter-mariadb-'));
  const init = spawnSync(installDb, [
    '--no-defaults', `--datadir=${dataDir}`, '--auth-root-authentication-method=normal',
    '--skip-test-db', '--skip-name-resolve', ...(process.getuid?.() === 0 ? ['--user=root'] : []),
  ], { encoding: 'utf8' });
  if (init.status !== 0) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`${path.basename(installDb)} failed: ${init.stderr || init.stdout}`);
  }
  const url = `mysql://root@127.0.0.1:${p}/`;
  let child: ChildProcess | undefined;

  const start = async () => {
    const c = spawn(server, [
      '--no-defaults', `--datadir=${dataDir}`, `--port=${p}`, '--bind-address=127.0.0.1',
      `--socket=${path.join(dataDir, 'mysqld.sock')}`, `--pid-file=${path.join(dataDir, 'mysqld.pid')}`,
      '--skip-name-resolve', '--skip-log-bin', '--innodb-buffer-pool-size=32M', `--max-connections=${TEST_MAX_CONNECTIONS}`,
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    const output = captureOutput(c);
    try {
      await waitUntil(path.basename(server), () => answersQuery(url, 500), 60_000, c);
    } catch (err) {
      await stopChild(c);
      throw new Error(`${(err as Error).message}\n${output()}`);
    }
    child = c;
  };
  const halt = async () => {
    if (child) await stopChild(child, 20_000);
    child = undefined;
  };
  const crash = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGKILL');
    await exited;
  };
  await start().catch((err) => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  return {
    name: path.basename(server),
    origin: 'started',
    url,
    port: p,
    dataDir,
    halt,
    crash,
    restart: start,
    async stop() {
      await halt();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Connections a test file may hold at once: every container it loads keeps
 * its pool open until the file ends (8 containers × 2 per test, over some 30
 * tests), more than a stock server's 151. The servers we start get it on the
 * command line; a server we find is raised to it (a runtime setting, gone at
 * its next restart; never lowered). No privilege to do so: left as it is.
 */
export const TEST_MAX_CONNECTIONS = 1000;

async function raiseConnectionLimit(url: string): Promise<void> {
  try {
    const conn = await createConnection({ ...mysqlConnectionOptions(url), connectTimeout: 1000 });
    try {
      await conn.query(`SET GLOBAL max_connections = GREATEST(@@GLOBAL.max_connections, ${TEST_MAX_CONNECTIONS})`);
    } finally {
      conn.destroy();
    }
  } catch {
    // Not allowed (or not MySQL-compatible enough): the suite runs with the server's own limit.
  }
}

/** `MYSQL_URL` → 127.0.0.1:3306 as root without a password → a `mariadbd` we start. */
export async function acquireMysql(): Promise<Engine> {
  const fromEnv = process.env.MYSQL_URL;
  if (fromEnv) {
    await raiseConnectionLimit(fromEnv);
    return { name: 'MySQL protocol', origin: 'env', url: fromEnv, stop: async () => undefined };
  }
  if (await answersQuery(DEFAULT_URL)) {
    await raiseConnectionLimit(DEFAULT_URL);
    return { name: 'MariaDB/MySQL', origin: 'default-port', url: DEFAULT_URL, stop: async () => undefined };
  }
  return startMysqlServer();
}
