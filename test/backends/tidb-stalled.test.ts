/**
 * TiDB (MySQL protocol, the machine's MariaDB): a statement that stops
 * answering mid-statement. The shared "never answers" fault test only
 * reaches the connect timeout, because a MySQL server speaks first (its
 * greeting); here a fault proxy sits in front of the engine and fails the
 * connections *after* warm-up, when they are established and the server
 * has spoken, so what is bounded is the statement itself.
 */
import { createConnection, RowDataPacket } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { FaultProxy, startFaultProxy } from '../../local/engines/fault-proxy';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { ProxyHandler } from '../../local/lambda-container';
import { TIDB_ENV, tidbWorstCase } from '../../src/backends/tidb/tidb-env';
import { Answer, call, useBackend } from '../kit/conformance';

const ctx = useBackend('tidb');
const CONNECT_TIMEOUT_MS = 1000;
const QUERY_TIMEOUT_MS = 1000;
/** Scheduling slack on a shared machine: the bound is asserted as the store's worst case + SLACK. */
const SLACK_MS = 1500;

/** A warm container on a fresh database, reaching the engine through a fault proxy. */
interface BehindProxy {
  readonly database: string;
  readonly proxy: FaultProxy;
  readonly handler: ProxyHandler;
  /** The store's worst case + slack. */
  readonly bound: number;
  /** What is stored under `stall` after the warm-up. */
  readonly base: number;
}

async function behindProxy(conditional = false): Promise<BehindProxy> {
  const database = uniqueNamespace('t_tidb_stall');
  const env = await ctx().prepare(database);
  const { host, port } = mysqlConnectionOptions(ctx().engine.url);
  const proxy = await startFaultProxy({ host, port });
  const url = new URL(env[TIDB_ENV.URL]);
  url.host = proxy.address;
  const routed = {
    [TIDB_ENV.URL]: url.toString(),
    [TIDB_ENV.CONNECT_TIMEOUT_MS]: String(CONNECT_TIMEOUT_MS),
    [TIDB_ENV.QUERY_TIMEOUT_MS]: String(QUERY_TIMEOUT_MS),
  };
  const [handler] = await ctx().containers({ conditional, maximum: 100, env: routed }, 1, database);
  // Warm-up: both pools connected (the server has spoken), the statements
  // prepared. A cold connect on a busy machine can pass the 1 s bound: each
  // step is repeated until it answers 200 (an unkeyed one may then have
  // applied twice, so the tests count from what is stored after it).
  for (const request of [
    () => call(handler, 'POST', 'tidb', 'stall'),
    () => call(handler, 'POST', 'tidb', 'stall', { key: 'warm' }),
    () => call(handler, 'GET', 'tidb', 'stall'),
  ]) {
    let answer = await request();
    for (let i = 0; i < 10 && answer.status === 503; i++) answer = await request();
    expect(answer.status).toBe(200);
  }
  const base = await stored(database, 'stall');
  expect(base).toBeGreaterThanOrEqual(2);
  return { database, proxy, handler, bound: tidbWorstCase({ ...env, ...routed })!.totalMs + SLACK_MS, base };
}

async function stored(database: string, id: string): Promise<number> {
  const conn = await createConnection({ ...mysqlConnectionOptions(ctx().engine.url), database });
  try {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT value FROM counters WHERE id = ?', [id]);
    return rows.length === 0 ? 0 : Number(rows[0].value);
  } finally {
    await conn.end();
  }
}

async function timed(request: () => Promise<Answer>): Promise<{ answer: Answer; ms: number }> {
  const t0 = performance.now();
  const answer = await request();
  return { answer, ms: performance.now() - t0 };
}

const UNAVAILABLE = { status: 503, body: { code: 'BACKEND_UNAVAILABLE' }, headers: { 'Retry-After': '1' } };

test('the statement reaches the engine and its answer never comes: 503 within the store\'s bound, applied once and never sent again; a keyed one replays on the retry', async () => {
  for (const conditional of [false, true]) {
    const { database, proxy, handler, bound, base } = await behindProxy(conditional);
    try {
      // Every reply from now on is lost, while requests still reach the engine.
      const dropped = proxy.dropRepliesAfter(0);
      const unkeyed = await timed(() => call(handler, 'POST', 'tidb', 'stall'));
      await dropped;
      const keyed = await timed(() => call(handler, 'POST', 'tidb', 'stall', { key: 'lost-reply' }));
      const read = await timed(() => call(handler, 'GET', 'tidb', 'stall'));
      void proxy.dropRepliesAfter(Infinity);
      for (const { answer, ms } of [unkeyed, keyed, read]) {
        expect({ conditional, answer }).toMatchObject({ conditional, answer: UNAVAILABLE });
        expect(ms).toBeLessThan(bound);
      }
      // Each change was applied by the engine exactly once: not sent again on another connection.
      expect(await stored(database, 'stall')).toBe(base + 2);
      // The keyed client retries: it gets the original answer, nothing applied again.
      expect(await call(handler, 'POST', 'tidb', 'stall', { key: 'lost-reply' }))
        .toMatchObject({ status: 200, body: { counter: base + 2 }, headers: { 'Idempotent-Replayed': 'true' } });
      expect((await call(handler, 'POST', 'tidb', 'stall')).body.counter).toBe(base + 3);
      expect(await stored(database, 'stall')).toBe(base + 3);
    } finally {
      await proxy.close();
    }
  }
}, 60_000);

test('the connection goes silent both ways mid-run (nothing reaches the engine, nothing comes back, no FIN): 503 within the bound, nothing applied, the next request answers 200 on a fresh connection', async () => {
  const { database, proxy, handler, bound, base } = await behindProxy();
  try {
    expect(proxy.blackholeExisting()).toBeGreaterThanOrEqual(2);
    const unkeyed = await timed(() => call(handler, 'POST', 'tidb', 'stall'));
    const keyed = await timed(() => call(handler, 'POST', 'tidb', 'stall', { key: 'silent' }));
    for (const { answer, ms } of [unkeyed, keyed]) {
      expect(answer).toMatchObject(UNAVAILABLE);
      expect(ms).toBeLessThan(bound);
    }
    expect(await stored(database, 'stall')).toBe(base);
    // The silent connections were destroyed; new ones are forwarded.
    expect((await call(handler, 'POST', 'tidb', 'stall')).body.counter).toBe(base + 1);
    expect(await call(handler, 'POST', 'tidb', 'stall', { key: 'silent' })).toMatchObject({ status: 200, body: { counter: base + 2 }, headers: { 'Idempotent-Replayed': 'false' } });
  } finally {
    await proxy.close();
  }
}, 60_000);
