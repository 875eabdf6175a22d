/**
 * TiDB steps (`?by=N`) and `Idempotency-Key`, on a MySQL-protocol server
 * (MariaDB here), through the bundled handler: what is specific to this
 * backend's mechanism beyond the shared contracts. The UPDATE form for a
 * change that cannot start from 0, the safe-integer edge, the key records
 * table and its binding, an expired record taken over, a rejected change
 * recording nothing, a same-key request waiting on the key's row lock, and a
 * deadlock victim run again (the races are produced by a second session
 * holding locks, since the engine does not produce them on demand).
 */
import * as vm from 'vm';
import { Connection, createConnection, RowDataPacket } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { ContainerMode, ProxyHandler } from '../../local/lambda-container';
import { BATCH, keyedBatch } from '../../src/backends/tidb/runtime/tidb-keyed-change';
import { call, useBackend } from '../kit/conformance';

const ctx = useBackend('tidb');

/** A fresh database (both tables, by the setup handler) and `n` containers on it. */
async function containers(mode: ContainerMode, n = 1, namespace = uniqueNamespace('t_tidb_sk')): Promise<{ database: string; handlers: ProxyHandler[] }> {
  return { database: namespace, handlers: await ctx().containers(mode, n, namespace) };
}

/** A session of our own on the same database, changed rows reported as the store's pool does. */
async function session(database: string): Promise<Connection> {
  return createConnection({ ...mysqlConnectionOptions(ctx().engine.url), database, flags: ['-FOUND_ROWS'] });
}

async function rows(database: string, query: string, params: unknown[] = []): Promise<RowDataPacket[]> {
  const c = await session(database);
  try {
    const [result] = await c.query<RowDataPacket[]>(query, params);
    return result;
  } finally {
    await c.end();
  }
}

async function keyRecord(database: string, key: string): Promise<{ id: string; by: number; value: number; expiresInS: number } | undefined> {
  const [r] = await rows(database,
    'SELECT counter_id, step, value, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) / 1e6 AS left_s FROM counters_keys WHERE idempotency_key = ?', [key]);
  return r && { id: Buffer.from(r.counter_id).toString('utf8'), by: Number(r.step), value: Number(r.value), expiresInS: Number(r.left_s) };
}

/**
 * The request log lines the bundled handlers write while `work` runs. They
 * run in Node's own context, whose `process` is not the copy jest gives a test.
 */
async function captureLogLines(work: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const stdout: NodeJS.WriteStream = vm.runInThisContext('process').stdout;
  const write = stdout.write;
  const chunks: string[] = [];
  stdout.write = ((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof stdout.write;
  try {
    await work();
  } finally {
    stdout.write = write;
  }
  return chunks.join('').split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('steps: the statement the server evaluates', () => {
  test('a change that cannot start from 0 (a conditional decrement, a step above the maximum) on a missing counter: 409 with counter 0, and no row is created', async () => {
    const { database, handlers: [h] } = await containers({ conditional: true, maximum: 10 });
    expect(await call(h, 'POST', 'tidb', 'absent', { by: -1 })).toMatchObject({ status: 409, body: { code: 'FLOOR_REACHED', counter: 0 } });
    expect(await call(h, 'POST', 'tidb', 'absent', { by: 11 })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 0 } });
    expect(await ctx().fixture.keys(ctx().engine, database)).toEqual([]);
    // A step that fits creates the row with exactly that step.
    expect(await call(h, 'POST', 'tidb', 'absent', { by: 10 })).toMatchObject({ status: 200, body: { counter: 10 } });
  });

  test('a step above the maximum still applies to a counter far enough below 0: the decision needs the row, so the server makes it', async () => {
    const { database, handlers: [unconditional] } = await containers({ conditional: false });
    const [capped] = (await containers({ conditional: true, maximum: 10 }, 1, database)).handlers;
    expect((await call(unconditional, 'POST', 'tidb', 'below', { by: -20 })).body.counter).toBe(-20);
    expect(await call(capped, 'POST', 'tidb', 'below', { by: 15 })).toMatchObject({ status: 200, body: { counter: -5 } });
    expect(await call(capped, 'POST', 'tidb', 'below', { by: 15 })).toMatchObject({ status: 200, body: { counter: 10 } });
    expect(await call(capped, 'POST', 'tidb', 'below', { by: 15 })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 10 } });
  });

  test('unconditional, at the edge of the safe integers: the last step that fits applies, the next is 400 INVALID_STEP with nothing written', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false });
    expect((await call(h, 'POST', 'tidb', 'edge')).status).toBe(200);
    expect((await call(h, 'POST', 'tidb', 'low')).status).toBe(200);
    const c = await session(database);
    try {
      await c.query('UPDATE counters SET value = ? WHERE id = ?', [String(Number.MAX_SAFE_INTEGER - 1_000_000_000), 'edge']);
      await c.query('UPDATE counters SET value = ? WHERE id = ?', [String(Number.MIN_SAFE_INTEGER + 7), 'low']);
    } finally {
      await c.end();
    }
    expect(await call(h, 'POST', 'tidb', 'edge', { by: 1_000_000_000 })).toMatchObject({ status: 200, body: { counter: Number.MAX_SAFE_INTEGER } });
    expect(await call(h, 'POST', 'tidb', 'edge', { by: 1 })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect(await call(h, 'POST', 'tidb', 'low', { by: -7 })).toMatchObject({ status: 200, body: { counter: Number.MIN_SAFE_INTEGER } });
    expect(await call(h, 'POST', 'tidb', 'low', { by: -1, key: 'low-key' })).toMatchObject({ status: 400, body: { code: 'INVALID_STEP' } });
    expect((await call(h, 'GET', 'tidb', 'edge')).body.counter).toBe(Number.MAX_SAFE_INTEGER);
    expect((await call(h, 'GET', 'tidb', 'low')).body.counter).toBe(Number.MIN_SAFE_INTEGER);
    expect(await keyRecord(database, 'low-key')).toBeUndefined();
  });
});

describe('Idempotency-Key: the records table and the transaction', () => {
  test('a keyed change records its key in counters_keys, bound to id and step, with the value it produced and an expiry retention seconds ahead (server UTC clock); the counters table holds counters only', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false, env: { IDEMPOTENCY_RETENTION_SECONDS: '600' } });
    expect(await call(h, 'POST', 'tidb', 'keyed', { by: 4, key: 'order-1' })).toMatchObject({ status: 200, body: { counter: 4 } });
    const record = await keyRecord(database, 'order-1');
    expect(record).toMatchObject({ id: 'keyed', by: 4, value: 4 });
    expect(record!.expiresInS).toBeGreaterThan(590);
    expect(record!.expiresInS).toBeLessThanOrEqual(600);
    expect(await ctx().fixture.keys(ctx().engine, database)).toEqual(['keyed']);
  });

  test('keys are compared byte for byte: another case or a trailing space is another key', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false });
    const answers = [];
    for (const key of ['Key', 'key', 'key ', ' key', 'key']) answers.push(await call(h, 'POST', 'tidb', 'bytes', { key }));
    expect(answers.map((a) => [a.body.counter, a.headers['Idempotent-Replayed']])).toEqual([[1, 'false'], [2, 'false'], [3, 'false'], [4, 'false'], [2, 'true']]);
    expect(Number((await rows(database, 'SELECT COUNT(*) AS n FROM counters_keys'))[0].n)).toBe(4);
  });

  test('an expired record is taken over: the key applies afresh, bound to the new id and step, and replays from then on', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false });
    await rows(database,
      "INSERT INTO counters_keys (idempotency_key, counter_id, step, value, expires_at) VALUES ('old', 'elsewhere', 3, 99, UTC_TIMESTAMP(6) - INTERVAL 1 SECOND)");
    expect(await call(h, 'POST', 'tidb', 'taken', { by: 2, key: 'old' })).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await keyRecord(database, 'old')).toMatchObject({ id: 'taken', by: 2, value: 2 });
    expect(await call(h, 'POST', 'tidb', 'taken', { by: 2, key: 'old' })).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'true' } });
    // The old binding is gone with its record.
    expect(await call(h, 'POST', 'tidb', 'elsewhere', { by: 3, key: 'old' })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    expect(await ctx().fixture.keys(ctx().engine, database)).toEqual(['taken']);
  });

  test('the binding is (id, step): the same id with another step and another id with the same step are both 422; nothing written, the record untouched', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false });
    expect((await call(h, 'POST', 'tidb', 'bound', { by: 5, key: 'b-1' })).body.counter).toBe(5);
    expect(await call(h, 'POST', 'tidb', 'bound', { by: 6, key: 'b-1' })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    expect(await call(h, 'POST', 'tidb', 'other', { by: 5, key: 'b-1' })).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    expect(await call(h, 'POST', 'tidb', 'bound', { by: -5, key: 'b-1' })).toMatchObject({ status: 422 });
    expect((await call(h, 'GET', 'tidb', 'bound')).body.counter).toBe(5);
    expect(await ctx().fixture.keys(ctx().engine, database)).toEqual(['bound']);
    expect(await keyRecord(database, 'b-1')).toMatchObject({ id: 'bound', by: 5, value: 5 });
  });

  test('a rejected keyed change records no key (its transaction is rolled back): the same key applies once room is made', async () => {
    const { database, handlers: [h] } = await containers({ conditional: true, maximum: 5 });
    expect((await call(h, 'POST', 'tidb', 'room', { by: 5, key: 'fill' })).body.counter).toBe(5);
    expect(await call(h, 'POST', 'tidb', 'room', { by: 1, key: 'later' })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 5 } });
    expect(await keyRecord(database, 'later')).toBeUndefined();
    expect((await call(h, 'POST', 'tidb', 'room', { by: -1 })).body.counter).toBe(4);
    expect(await call(h, 'POST', 'tidb', 'room', { by: 1, key: 'later' })).toMatchObject({ status: 200, body: { counter: 5 }, headers: { 'Idempotent-Replayed': 'false' } });
    // The accepted key still replays its original answer at the maximum.
    expect(await call(h, 'POST', 'tidb', 'room', { by: 5, key: 'fill' })).toMatchObject({ status: 200, body: { counter: 5 }, headers: { 'Idempotent-Replayed': 'true' } });
  });

  test('a request whose key another transaction holds waits on the key\'s row lock, then replays what that transaction committed (or applies, if it rolled back)', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false });
    for (const [outcome, expected] of [['COMMIT', { counter: 1, replayed: 'true' }], ['ROLLBACK', { counter: 1, replayed: 'false' }]] as const) {
      const id = `held-${outcome}`;
      const key = `held-key-${outcome}`;
      const other = await session(database);
      try {
        // The store's own batch, on a session of ours, all but its COMMIT: left uncommitted.
        for (const statement of keyedBatch('counters', id, { by: 1 }, { key, retentionSeconds: 60 }).slice(0, BATCH.COMMIT)) {
          await other.query(statement);
        }
        let settled = false;
        const pending = call(h, 'POST', 'tidb', id, { key }).finally(() => {
          settled = true;
        });
        await pause(500);
        expect({ outcome, settled }).toEqual({ outcome, settled: false });
        await other.query(outcome);
        const answer = await pending;
        expect({ outcome, status: answer.status, counter: answer.body.counter, replayed: answer.headers['Idempotent-Replayed'] })
          .toEqual({ outcome, status: 200, ...expected });
        expect((await call(h, 'GET', 'tidb', id)).body.counter).toBe(1);
      } finally {
        await other.end();
      }
    }
  });

  test('the replay\'s read of the record is a current read: under a snapshot taken before the record was committed (TiDB\'s snapshot reads are as of BEGIN) it still sees it', async () => {
    const { database } = await containers({ conditional: false });
    const reader = await session(database);
    try {
      // InnoDB takes its snapshot at the first consistent read; this makes it BEGIN, as TiDB's start_ts is.
      await reader.query('START TRANSACTION WITH CONSISTENT SNAPSHOT');
      await rows(database, "INSERT INTO counters_keys (idempotency_key, counter_id, step, value, expires_at) VALUES ('late', 'x', 1, 1, UTC_TIMESTAMP(6) + INTERVAL 60 SECOND)");
      const [snapshot] = await reader.query<RowDataPacket[]>('SELECT * FROM counters_keys WHERE idempotency_key = ?', ['late']);
      expect(snapshot).toEqual([]);
      const [current] = await reader.query<RowDataPacket[]>(keyedBatch('counters', 'x', { by: 1 }, { key: 'late', retentionSeconds: 60 })[BATCH.RECORD]);
      expect(current).toHaveLength(1);
      await reader.query('ROLLBACK');
    } finally {
      await reader.end();
    }
  });

  test('a deadlock victim is rolled back and its whole transaction runs again: 200, counted once', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false });
    expect((await call(h, 'POST', 'tidb', 'dl')).body.counter).toBe(1);
    const other = await session(database);
    try {
      await other.query('CREATE TABLE scratch (n INT PRIMARY KEY)');
      await other.query('BEGIN');
      // Heavier than the keyed transaction (more undo), so InnoDB picks the keyed one as the victim.
      await other.query(`INSERT INTO scratch VALUES ${Array.from({ length: 200 }, (_, i) => `(${i})`).join(', ')}`);
      await other.query("SELECT value FROM counters WHERE id = 'dl' FOR UPDATE");
      // The keyed change claims its key, then waits for the counter row …
      const pending = call(h, 'POST', 'tidb', 'dl', { key: 'dl-key' });
      await pause(300);
      // … which this session holds while it asks for the key's record: a cycle.
      const [locked] = await other.query<RowDataPacket[]>("SELECT * FROM counters_keys WHERE idempotency_key = 'dl-key' FOR UPDATE");
      // This session was not the victim: the keyed transaction was, and it was rolled back.
      expect(locked).toEqual([]);
      await pause(100);
      await other.query('COMMIT');
      const answer = await pending;
      expect(answer).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'false' } });
    } finally {
      await other.end();
    }
    expect((await call(h, 'GET', 'tidb', 'dl')).body.counter).toBe(2);
    expect(await keyRecord(database, 'dl-key')).toMatchObject({ id: 'dl', by: 1, value: 2 });
    expect(await call(h, 'POST', 'tidb', 'dl', { key: 'dl-key' })).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'true' } });
  });

  test('without the counters table either (a setup that never ran at all): unkeyed and keyed changes and reads are 503s whose log lines name the table and the setup, never a 500', async () => {
    const { database, handlers: [bare] } = await containers({ conditional: false, quiet: false });
    await rows(database, 'DROP TABLE counters_keys');
    await rows(database, 'DROP TABLE counters');
    const lines = await captureLogLines(async () => {
      for (const options of [{}, { key: 'k' }]) {
        expect(await call(bare, 'POST', 'tidb', 'no-setup', options)).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
      }
      expect(await call(bare, 'GET', 'tidb', 'no-setup')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    });
    expect(lines).toEqual([
      expect.objectContaining({ level: 'WARN', statusCode: 503, error: expect.stringMatching(/table counters does not exist.*setup/) }),
      expect.objectContaining({ level: 'WARN', statusCode: 503, error: expect.stringMatching(/table counters(_keys)? does not exist.*setup/) }),
      expect.objectContaining({ level: 'WARN', statusCode: 503, error: expect.stringMatching(/table counters does not exist.*setup/) }),
    ]);
  });

  test('a database the setup never created: every request is a 503 whose log line says the setup has not run, never a 500', async () => {
    const [h] = await ctx().containers({ conditional: false, quiet: false, env: { TIDB_DATABASE: uniqueNamespace('t_tidb_never') } });
    const lines = await captureLogLines(async () => {
      for (const options of [{}, { key: 'k' }]) {
        expect(await call(h, 'POST', 'tidb', 'no-db', options)).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
      }
    });
    expect(lines).toEqual([
      expect.objectContaining({ level: 'WARN', statusCode: 503, error: expect.stringMatching(/database does not exist.*setup/) }),
      expect.objectContaining({ level: 'WARN', statusCode: 503, error: expect.stringMatching(/database does not exist.*setup/) }),
    ]);
  });

  test('without the records table (a setup that never ran): a keyed change is a 503 whose log line names the table and the setup, nothing written; unkeyed changes go on', async () => {
    const { database, handlers: [h] } = await containers({ conditional: false, quiet: false });
    await rows(database, 'DROP TABLE counters_keys');
    const lines = await captureLogLines(async () => {
      expect(await call(h, 'POST', 'tidb', 'no-table', { key: 'k' })).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    });
    expect(lines).toEqual([expect.objectContaining({ level: 'WARN', statusCode: 503, error: expect.stringMatching(/counters_keys does not exist.*setup/) })]);
    expect(await ctx().fixture.keys(ctx().engine, database)).toEqual([]);
    expect(await call(h, 'POST', 'tidb', 'no-table')).toMatchObject({ status: 200, body: { counter: 1 } });
  });
});
