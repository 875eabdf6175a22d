/**
 * TiDB backend behaviour beyond the shared conformance suite, on a
 * MySQL-protocol server (MariaDB here): the affected-rows semantics the
 * conditional increment relies on and the setup handler.
 */
import { Connection, createConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { runTiDbSetup, tidbEnv } from '../../local/backends/tidb';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { counterSql } from '../../src/backends/tidb/runtime/tidb-counter-store';
import { call, useBackend } from '../kit/conformance';

const ctx = useBackend('tidb');

async function rawConnection(url: string, database: string, flags: string[]): Promise<Connection> {
  return createConnection({ ...mysqlConnectionOptions(url), database, flags });
}

async function preparedDatabase(): Promise<{ database: string; env: Record<string, string> }> {
  const database = uniqueNamespace('t_tidb_b');
  const env = await ctx().prepare(database);
  return { database, env };
}

describe('affected rows of the conditional upsert (the store\'s accept/reject decision)', () => {
  const sql = counterSql('counters');
  const upsert = async (c: Connection, id: string, max: number) => {
    const [r] = await c.execute<ResultSetHeader>(sql.incrementBelow, [id, max]);
    return { affectedRows: r.affectedRows, insertId: Number(r.insertId) };
  };

  test('with mysql2\'s default CLIENT_FOUND_ROWS, a brand-new row and a rejection at maximum 1 report the same thing', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, []);
    try {
      const inserted = await upsert(c, 'max-one', 1);
      const rejected = await upsert(c, 'max-one', 1);
      // Indistinguishable: this is why the store's pool clears the flag.
      expect(inserted).toEqual({ affectedRows: 1, insertId: 1 });
      expect(rejected).toEqual({ affectedRows: 1, insertId: 1 });
    } finally {
      await c.end();
    }
  });

  test('without CLIENT_FOUND_ROWS: 1 = inserted, 2 = updated, 0 = rejected; the insert id carries the new (or current) value', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, ['-FOUND_ROWS']);
    try {
      expect(await upsert(c, 'max-one', 1)).toEqual({ affectedRows: 1, insertId: 1 });
      expect(await upsert(c, 'max-one', 1)).toEqual({ affectedRows: 0, insertId: 1 });
      expect(await upsert(c, 'capped', 3)).toEqual({ affectedRows: 1, insertId: 1 });
      expect(await upsert(c, 'capped', 3)).toEqual({ affectedRows: 2, insertId: 2 });
      expect(await upsert(c, 'capped', 3)).toEqual({ affectedRows: 2, insertId: 3 });
      // Exactly at the maximum: nothing written, the current value reported.
      expect(await upsert(c, 'capped', 3)).toEqual({ affectedRows: 0, insertId: 3 });
      const [rows] = await c.execute<RowDataPacket[]>(sql.read, ['capped']);
      expect(rows[0].value).toBe(3);
    } finally {
      await c.end();
    }
  });
});

describe('conditional mode through the bundled handler', () => {
  test('maximum 1: a brand-new id → 200 counter 1; then 409 carrying counter 1; nothing written', async () => {
    const [h] = await ctx().containers({ conditional: true, maximum: 1 });
    expect(await call(h, 'POST', 'tidb', 'fresh')).toMatchObject({ status: 200, body: { counter: 1 } });
    expect(await call(h, 'POST', 'tidb', 'fresh')).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED', counter: 1, maxCounterValue: 1 } });
    expect((await call(h, 'GET', 'tidb', 'fresh')).body.counter).toBe(1);
  });

  test('exactly at the maximum (3): 1, 2, 3 accepted, the fourth rejected with counter 3', async () => {
    const [h] = await ctx().containers({ conditional: true, maximum: 3 });
    const counters = [];
    for (let i = 0; i < 3; i++) counters.push((await call(h, 'POST', 'tidb', 'at-max')).body.counter);
    expect(counters).toEqual([1, 2, 3]);
    expect(await call(h, 'POST', 'tidb', 'at-max')).toMatchObject({ status: 409, body: { counter: 3 } });
  });

  test('a value already above a lowered maximum is rejected and left as it is', async () => {
    const namespace = uniqueNamespace('t_tidb_b');
    const [unconditional] = await ctx().containers({ conditional: false }, 1, namespace);
    for (let i = 0; i < 5; i++) await call(unconditional, 'POST', 'tidb', 'lowered');
    const [capped] = await ctx().containers({ conditional: true, maximum: 3 }, 1, namespace);
    expect(await call(capped, 'POST', 'tidb', 'lowered')).toMatchObject({ status: 409, body: { counter: 5 } });
    expect((await call(capped, 'GET', 'tidb', 'lowered')).body.counter).toBe(5);
  });

  test('ids are byte-exact: case and trailing spaces make different counters', async () => {
    const [h] = await ctx().containers({ conditional: false });
    for (const id of ['Key', 'key', 'key ', 'KEY']) {
      expect(await call(h, 'POST', 'tidb', id)).toMatchObject({ status: 200, body: { id, counter: 1 } });
    }
    expect((await call(h, 'POST', 'tidb', 'key')).body.counter).toBe(2);
  });
});

describe('setup handler (the custom resource\'s bundled code)', () => {
  test('is idempotent: a second run succeeds, keeps the table and its data', async () => {
    const { database, env } = await preparedDatabase();
    const [h] = await ctx().containers({ conditional: false }, 1, database);
    await call(h, 'POST', 'tidb', 'kept');
    const again = await runTiDbSetup(env, { Database: database });
    expect(again).toEqual({ PhysicalResourceId: `tidb:${database}/counters`, Data: { Database: database, Table: 'counters' } });
    expect((await call(h, 'POST', 'tidb', 'kept')).body.counter).toBe(2);
  });

  test('creates the id column as VARBINARY(255) primary key and the value as BIGINT NOT NULL', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, []);
    try {
      const [cols] = await c.query<RowDataPacket[]>(
        'SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
        [database, 'counters'],
      );
      expect(cols.map((r) => [r.COLUMN_NAME, r.COLUMN_TYPE, r.IS_NULLABLE, r.COLUMN_KEY])).toEqual([
        ['id', 'varbinary(255)', 'NO', 'PRI'],
        // MySQL 8 and TiDB print `bigint`, MariaDB `bigint(20)`.
        ['value', expect.stringMatching(/^bigint(\(20\))?$/), 'NO', ''],
      ]);
    } finally {
      await c.end();
    }
  });

  test('a server error fails the setup with the server\'s own message', async () => {
    const u = new URL(ctx().engine.url);
    u.username = 'no_such_user_x';
    u.password = 'wrong';
    const env = tidbEnv({ ...ctx().engine, url: u.toString() }, uniqueNamespace('t_tidb_b'));
    await expect(runTiDbSetup(env, {})).rejects.toThrow(/Access denied for user 'no_such_user_x'/);
  });
});

// Refused and silent servers (503 within the worst case): the kit's fault contract (test/kit/fault-contract.ts).
