import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { createConnection } from 'mysql2/promise';
import { captureOutput, Engine, EngineUnavailableError, freePort, stopChild, waitUntil } from './engine';
import { listenOnFreePort, pairSockets } from './tcp';

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

/** MySQL-protocol command bytes a client sends (the first byte of a command packet). */
export const MYSQL_COMMANDS: Readonly<Record<number, string>> = {
  0x01: 'COM_QUIT',
  0x02: 'COM_INIT_DB',
  0x03: 'COM_QUERY',
  0x0e: 'COM_PING',
  0x11: 'COM_CHANGE_USER',
  0x16: 'COM_STMT_PREPARE',
  0x17: 'COM_STMT_EXECUTE',
  0x19: 'COM_STMT_CLOSE',
  0x1a: 'COM_STMT_RESET',
  0x1f: 'COM_RESET_CONNECTION',
};

/** Commands the server sends no answer to: they cost no round trip. */
const UNANSWERED = new Set(['COM_QUIT', 'COM_STMT_CLOSE']);

/** One client command as the proxy saw it. */
export interface MysqlCommand {
  /** Which client connection (1-based, in accept order). */
  readonly connection: number;
  readonly command: string;
  /** The SQL text of a COM_QUERY or COM_STMT_PREPARE. */
  readonly sql?: string;
}

/** A MySQL-protocol proxy that counts the commands its clients send. */
export interface MysqlCommandProxy {
  /** `host:port` of the proxy. */
  readonly address: string;
  /** Every command since the last `reset`, in arrival order. */
  commands(): MysqlCommand[];
  /** Commands since the last `reset` that the server answers (round trips): all but COM_QUIT and COM_STMT_CLOSE. */
  count(): number;
  reset(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of a MySQL-protocol server that parses the client's
 * side of the wire protocol and records each command: a packet is a 3-byte
 * little-endian length, a sequence id and the payload; every command starts
 * a new exchange with sequence id 0 and its payload's first byte names it.
 * The handshake (the client's packets answer the server's greeting, so their
 * sequence ids start at 1) is not a command and is not counted. A payload
 * of 2^24 − 1 bytes continues in the next packet (sequence id ≠ 0), so a long
 * batch is still one command. Plain TCP only (local engines run without TLS).
 */
export async function startMysqlCommandProxy(target: { host: string; port: number }): Promise<MysqlCommandProxy> {
  let seen: MysqlCommand[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const connection = ++connections;
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    let pending = Buffer.alloc(0);
    client.on('data', (chunk) => {
      upstream.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readUIntLE(0, 3);
        if (pending.length < 4 + length) break;
        const sequence = pending[3];
        const payload = pending.subarray(4, 4 + length);
        pending = pending.subarray(4 + length);
        if (sequence !== 0 || length === 0) continue;
        const command = MYSQL_COMMANDS[payload[0]] ?? `COM_0x${payload[0].toString(16)}`;
        const sql = command === 'COM_QUERY' || command === 'COM_STMT_PREPARE' ? payload.subarray(1).toString('utf8') : undefined;
        seen.push({ connection, command, ...(sql === undefined ? {} : { sql }) });
      }
    });
    pairSockets(client, upstream, sockets);
  });
  const port = await listenOnFreePort(server);
  return {
    address: `127.0.0.1:${port}`,
    commands: () => [...seen],
    count: () => seen.filter((c) => !UNANSWERED.has(c.command)).length,
    reset() {
      seen = [];
    },
    async close() {
      for (const s of sockets) s.destroy();
      sockets.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
