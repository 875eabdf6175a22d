/**
 * TiDB's keyed change as one multi-statement batch (issue 20), through the
 * bundled handler on a MySQL-protocol server (MariaDB here): the commands
 * the engine receives per change, counted at a proxy in front of it (the
 * fixture's `callCounter`), the session settings of the keyed connections,
 * and what they bound: a transaction a vanished container left open.
 */
import { Connection, createConnection, ResultSetHeader } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { tidbFixture } from '../../local/backends/tidb';
import { mysqlConnectionOptions, startMysqlCommandProxy } from '../../local/engines/mysql';
import { ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { BATCH, keyedBatch, sessionSettings } from '../../src/backends/tidb/runtime/tidb-keyed-change';
import { TIDB_ENV } from '../../src/backends/tidb/tidb-env';
import { call, useBackend } from '../kit/conformance';

const ctx = useBackend('tidb');

/** Containers on a fresh database, every command they send counted at a proxy. */
async function counted(mode: { conditional: boolean; maximum?: number }) {
  const namespace = uniqueNamespace('t_tidb_rt');
  const env = await ctx().prepare(namespace);
  const counter = await tidbFixture.callCounter!(ctx().engine, env);
  const [handler] = await ctx().containers({ ...mode, env: counter.env }, 1, namespace);
  return { namespace, counter, handler };
}

/** Engine-side commands of one request. */
async function roundTrips(counter: { count(): number; reset(): void }, request: () => Promise<unknown>): Promise<number> {
  counter.reset();
  await request();
  return counter.count();
}

test('round trips per change, counted by the engine: unkeyed 1, keyed fresh 1, keyed replay 1, a keyed rejection 1 (warm container)', async () => {
  for (const mode of [{ conditional: false }, { conditional: true, maximum: 5 }]) {
    const { counter, handler: h } = await counted(mode);
    try {
      // Warm-up: the connections open at init, the unkeyed statements are prepared once per connection.
      expect((await call(h, 'POST', 'tidb', 'rt')).status).toBe(200);
      expect((await call(h, 'POST', 'tidb', 'rt', { key: 'warm' })).status).toBe(200);
      expect((await call(h, 'GET', 'tidb', 'rt')).status).toBe(200);
      const figures = {
        unkeyed: await roundTrips(counter, async () => expect((await call(h, 'POST', 'tidb', 'rt')).body.counter).toBe(3)),
        keyedFresh: await roundTrips(counter, async () => expect(await call(h, 'POST', 'tidb', 'rt', { key: 'k' }))
          .toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'false' } })),
        keyedReplay: await roundTrips(counter, async () => expect(await call(h, 'POST', 'tidb', 'rt', { key: 'k' }))
          .toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'true' } })),
        keyedRejected: mode.conditional
          ? await roundTrips(counter, async () => {
            expect((await call(h, 'POST', 'tidb', 'rt')).body.counter).toBe(5);
            counter.reset();
            expect((await call(h, 'POST', 'tidb', 'rt', { key: 'over' })).status).toBe(409);
          })
          : 1,
        read: await roundTrips(counter, async () => expect((await call(h, 'GET', 'tidb', 'rt')).status).toBe(200)),
      };
      expect({ mode, ...figures }).toEqual({ mode, unkeyed: 1, keyedFresh: 1, keyedReplay: 1, keyedRejected: 1, read: 1 });
    } finally {
      await counter.close();
    }
  }
});

test('the keyed batch is one COM_QUERY with the whole transaction; each keyed connection got the lock-wait and idle-transaction settings before its first batch', async () => {
  const namespace = uniqueNamespace('t_tidb_rt');
  const env = await ctx().prepare(namespace);
  const { host, port } = mysqlConnectionOptions(ctx().engine.url);
  const proxy = await startMysqlCommandProxy({ host, port });
  try {
    const url = new URL(env[TIDB_ENV.URL]);
    url.host = proxy.address;
    const [h] = await ctx().containers({ conditional: false, env: { [TIDB_ENV.URL]: url.toString(), [TIDB_ENV.QUERY_TIMEOUT_MS]: '2500' } }, 1, namespace);
    expect((await call(h, 'POST', 'tidb', 'batch', { key: 'one' })).status).toBe(200);
    const commands = proxy.commands();
    const batches = commands.filter((c) => c.sql?.startsWith('BEGIN'));
    expect(batches).toHaveLength(1);
    expect(batches[0].command).toBe('COM_QUERY');
    expect(batches[0].sql!.split(';\n')).toHaveLength(BATCH.COMMIT + 1);
    expect(batches[0].sql).toMatch(/COMMIT$/);
    const settings = commands.filter((c) => c.connection === batches[0].connection && c.sql?.startsWith('SET SESSION')).map((c) => c.sql);
    expect(settings).toEqual(sessionSettings(2500));
    expect(settings).toEqual(expect.arrayContaining(['SET SESSION innodb_lock_wait_timeout = 3', 'SET SESSION idle_transaction_timeout = 3']));
    const first = commands.findIndex((c) => c === batches[0]);
    expect(commands.slice(0, first).filter((c) => c.connection === batches[0].connection && c.sql?.startsWith('SET SESSION'))).toHaveLength(settings.length);
    // Request values never appear as text: the id and the key travel as hex literals.
    expect(batches[0].sql).not.toMatch(/'one'|'batch'/);
    expect(batches[0].sql).toContain(`X'${Buffer.from('one').toString('hex')}'`);
  } finally {
    await proxy.close();
  }
});

test('a container that vanished mid-transaction (its batch stopped at an error, no ROLLBACK, no FIN) holds the key\'s lock only until the idle-transaction timeout: the next request with the key applies', async () => {
  const namespace = uniqueNamespace('t_tidb_rt');
  const env = await ctx().prepare(namespace);
  const abandoned: Connection = await createConnection({ ...mysqlConnectionOptions(ctx().engine.url), database: namespace, flags: ['-FOUND_ROWS'] });
  try {
    // A keyed connection as the store sets it up (query timeout 1 s → 1 s idle bound) …
    for (const setting of sessionSettings(1000)) await abandoned.query(setting).catch(() => undefined);
    // … whose batch claimed the key and stopped there: the transaction stays open, the key's row locked.
    const batch = keyedBatch('counters', 'gone', { by: 1 }, { key: 'orphan', retentionSeconds: 60 });
    await abandoned.query(batch[0]);
    const [claim] = await abandoned.query<ResultSetHeader>(batch[BATCH.CLAIM]);
    expect(claim.affectedRows).toBe(1);
    // The container is gone without a word. A fresh one, with time enough to wait for the lock:
    const [h]: ProxyHandler[] = await ctx().containers({ conditional: false, env: { ...env, [TIDB_ENV.QUERY_TIMEOUT_MS]: '20000' } }, 1, namespace);
    const answer = await call(h, 'POST', 'tidb', 'gone', { key: 'orphan' });
    // Without the bound it would wait for the full lock wait (20 s) and answer 503.
    expect(answer).toMatchObject({ status: 200, body: { counter: 1 }, headers: { 'Idempotent-Replayed': 'false' } });
    // The server ended the abandoned session, rolling its claim back.
    await expect(abandoned.query('SELECT 1')).rejects.toThrow();
  } finally {
    abandoned.destroy();
  }
}, 60_000);

test('keyed and unkeyed traffic on one hot id (16 callers, half each, 4 containers): every answer 200, nothing lost, each key once; both sides\' throughput printed', async () => {
  const namespace = uniqueNamespace('t_tidb_mix');
  const handlers = await ctx().containers({ conditional: false }, 4, namespace);
  const total = 800;
  const result = await runWorkload({
    total,
    concurrency: 16,
    call: async (i, caller) => {
      const options = i % 2 === 0 ? {} : { key: `mix-${i}` };
      const answer = await call(handlers[caller % handlers.length], 'POST', 'tidb', 'mixed', options);
      return { status: answer.status, counter: answer.body.counter };
    },
  });
  expect(result.statuses).toEqual({ 200: total });
  expect(new Set(result.counters).size).toBe(total);
  expect((await call(handlers[0], 'GET', 'tidb', 'mixed')).body.counter).toBe(total);
  // Each key replays its own value: applied once.
  const [h] = handlers;
  for (const i of [1, 401, 799]) {
    expect(await call(h, 'POST', 'tidb', 'mixed', { key: `mix-${i}` })).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'true' } });
  }
  console.log(`tidb mixed hot id: ${total} requests (half keyed) at ${result.opsPerSecond.toFixed(0)}/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms`);
}, 120_000);
