/**
 * TiDB backend behaviour beyond the shared conformance suite, on a
 * MySQL-protocol server (MariaDB here): the affected-rows and insert-id
 * semantics the bounded statements rely on, and the setup handler.
 */
import { Connection, createConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { runTiDbSetup, tidbEnv } from '../../local/backends/tidb';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { changeStatement, counterSql, reportedValue, updateOutcome } from '../../src/backends/tidb/runtime/tidb-counter-store';
import { keysTtlSql } from '../../src/backends/tidb/runtime/tidb-setup';
import { CounterChange } from '../../src/runtime/store';
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

describe('affected rows and insert id of the bounded statements (the store\'s accept/reject decision)', () => {
  const sql = counterSql('counters');
  /** The statement the store sends for one change, run on a raw connection; the insert id decoded as the store does. */
  const apply = async (c: Connection, id: string, change: CounterChange) => {
    const statement = changeStatement(sql, id, change);
    const [r] = await c.execute<ResultSetHeader>(statement.sql, statement.params);
    return { affectedRows: r.affectedRows, value: Number(r.insertId) === 0 ? 0 : reportedValue(r.insertId) };
  };

  test('with mysql2\'s default CLIENT_FOUND_ROWS, a brand-new row and a rejection at maximum 1 report the same thing', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, []);
    try {
      const inserted = await apply(c, 'max-one', { by: 1, maximum: 1 });
      const rejected = await apply(c, 'max-one', { by: 1, maximum: 1 });
      // Indistinguishable: this is why the store's pool clears the flag.
      expect(inserted).toEqual({ affectedRows: 1, value: 1 });
      expect(rejected).toEqual({ affectedRows: 1, value: 1 });
    } finally {
      await c.end();
    }
  });

  test('without CLIENT_FOUND_ROWS: 1 = inserted, 2 = updated, 0 = rejected; the insert id carries the new (or current) value', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, ['-FOUND_ROWS']);
    try {
      expect(await apply(c, 'max-one', { by: 1, maximum: 1 })).toEqual({ affectedRows: 1, value: 1 });
      expect(await apply(c, 'max-one', { by: 1, maximum: 1 })).toEqual({ affectedRows: 0, value: 1 });
      expect(await apply(c, 'capped', { by: 1, maximum: 3 })).toEqual({ affectedRows: 1, value: 1 });
      expect(await apply(c, 'capped', { by: 1, maximum: 3 })).toEqual({ affectedRows: 2, value: 2 });
      expect(await apply(c, 'capped', { by: 1, maximum: 3 })).toEqual({ affectedRows: 2, value: 3 });
      // Exactly at the maximum: nothing written, the current value reported.
      expect(await apply(c, 'capped', { by: 1, maximum: 3 })).toEqual({ affectedRows: 0, value: 3 });
      // Downward (the UPDATE form): applied 1, rejected 0 with the current value.
      expect(await apply(c, 'capped', { by: -3, maximum: 3 })).toEqual({ affectedRows: 1, value: 0 });
      expect(await apply(c, 'capped', { by: -1, maximum: 3 })).toEqual({ affectedRows: 0, value: 0 });
      const [rows] = await c.execute<RowDataPacket[]>(sql.read, ['capped']);
      expect(rows[0].value).toBe(0);
    } finally {
      await c.end();
    }
  });

  test('LAST_INSERT_ID(expr) is unsigned: a negative value cannot be stored through it, hence the 2^53 offset; with it every value round-trips', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, ['-FOUND_ROWS']);
    try {
      await expect(c.execute('INSERT INTO counters (id, value) VALUES (?, LAST_INSERT_ID(CAST(? AS SIGNED)))', ['raw', '-3']))
        .rejects.toMatchObject({ errno: 1264 });
      expect(await apply(c, 'neg', { by: -3 })).toEqual({ affectedRows: 1, value: -3 });
      expect(await apply(c, 'neg', { by: 3 })).toEqual({ affectedRows: 2, value: 0 });
      await c.query('UPDATE counters SET value = ? WHERE id = ?', [String(Number.MIN_SAFE_INTEGER + 1), 'neg']);
      expect(await apply(c, 'neg', { by: -1 })).toEqual({ affectedRows: 2, value: Number.MIN_SAFE_INTEGER });
      // One more would leave the safe integers: rejected, the current value reported exactly.
      expect(await apply(c, 'neg', { by: -1 })).toEqual({ affectedRows: 0, value: Number.MIN_SAFE_INTEGER });
      await c.query('UPDATE counters SET value = ? WHERE id = ?', [String(Number.MAX_SAFE_INTEGER - 2), 'neg']);
      expect(await apply(c, 'neg', { by: 2 })).toEqual({ affectedRows: 2, value: Number.MAX_SAFE_INTEGER });
      expect(await apply(c, 'neg', { by: 1 })).toEqual({ affectedRows: 0, value: Number.MAX_SAFE_INTEGER });
    } finally {
      await c.end();
    }
  });

  test('the UPDATE form on a missing row: changed 0, insert id 0 (even right after a LAST_INSERT_ID on the same session), no row created', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, ['-FOUND_ROWS']);
    try {
      expect(await apply(c, 'present', { by: 5 })).toEqual({ affectedRows: 1, value: 5 });
      const statement = changeStatement(sql, 'missing', { by: -1, maximum: 10 });
      expect(statement.sql).toBe(sql.update);
      const [r] = await c.execute<ResultSetHeader>(statement.sql, statement.params);
      expect({ affectedRows: r.affectedRows, insertId: Number(r.insertId) }).toEqual({ affectedRows: 0, insertId: 0 });
      expect(updateOutcome(r)).toEqual({ applied: false, value: 0 });
      const [rows] = await c.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM counters WHERE id = ?', ['missing']);
      expect(Number(rows[0].n)).toBe(0);
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
    expect(again).toEqual({
      PhysicalResourceId: `tidb:${database}/counters`,
      Data: { Database: database, Table: 'counters', KeysTable: 'counters_keys', KeysTtl: 'not TiDB' },
    });
    expect((await call(h, 'POST', 'tidb', 'kept')).body.counter).toBe(2);
  });

  test('creates the id column as VARBINARY(258) primary key (an id and a slot suffix), the value as BIGINT NOT NULL, and the nullable sharding columns', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, []);
    try {
      const [cols] = await c.query<RowDataPacket[]>(
        'SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
        [database, 'counters'],
      );
      expect(cols.map((r) => [r.COLUMN_NAME, r.COLUMN_TYPE, r.IS_NULLABLE, r.COLUMN_KEY])).toEqual([
        ['id', 'varbinary(258)', 'NO', 'PRI'],
        // MySQL 8 and TiDB print `bigint`, MariaDB `bigint(20)`.
        ['value', expect.stringMatching(/^bigint(\(20\))?$/), 'NO', ''],
        ['headroom', expect.stringMatching(/^bigint(\(20\))?$/), 'YES', ''],
        ['width', expect.stringMatching(/^int(\(11\))?$/), 'YES', ''],
      ]);
    } finally {
      await c.end();
    }
  });

  test('creates the Idempotency-Key records table: binary key primary key, binding, value, UTC expiry, the slot of a sharded change', async () => {
    const { database } = await preparedDatabase();
    const c = await rawConnection(ctx().engine.url, database, []);
    try {
      const [cols] = await c.query<RowDataPacket[]>(
        'SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
        [database, 'counters_keys'],
      );
      expect(cols.map((r) => [r.COLUMN_NAME, r.COLUMN_TYPE, r.IS_NULLABLE, r.COLUMN_KEY])).toEqual([
        ['idempotency_key', 'varbinary(255)', 'NO', 'PRI'],
        ['counter_id', 'varbinary(255)', 'NO', ''],
        ['step', expect.stringMatching(/^bigint(\(20\))?$/), 'NO', ''],
        ['value', expect.stringMatching(/^bigint(\(20\))?$/), 'NO', ''],
        ['expires_at', 'datetime(6)', 'NO', ''],
        ['shard', expect.stringMatching(/^int(\(11\))?$/), 'YES', ''],
      ]);
    } finally {
      await c.end();
    }
  });

  test('an existing counters table whose value column is UNSIGNED is made signed, its counters kept; the keys table is added', async () => {
    const database = uniqueNamespace('t_tidb_b');
    const env = await ctx().prepare(database);
    const c = await rawConnection(ctx().engine.url, database, []);
    try {
      // A deployment whose table predates this schema (made by hand, unsigned, without the keys table).
      await c.query('DROP TABLE counters_keys');
      await c.query('ALTER TABLE counters MODIFY value BIGINT UNSIGNED NOT NULL');
      await c.query("INSERT INTO counters (id, value) VALUES ('kept', 7)");
      await runTiDbSetup(env, { Database: database });
      const [cols] = await c.query<RowDataPacket[]>(
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'counters' AND COLUMN_NAME = 'value'", [database]);
      expect(cols[0].COLUMN_TYPE).toMatch(/^bigint(\(20\))?$/);
      const [tables] = await c.query<RowDataPacket[]>(
        "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'counters_keys'", [database]);
      expect(Number(tables[0].n)).toBe(1);
      const [h] = await ctx().containers({ conditional: false }, 1, database);
      expect((await call(h, 'POST', 'tidb', 'kept', { by: -10 })).body.counter).toBe(-3);
    } finally {
      await c.end();
    }
  });

  test('the TTL statement (TiDB only) names the records table, its expiry column and a 15-hour grace', () => {
    expect(keysTtlSql('tallies')).toBe("ALTER TABLE `tallies_keys` TTL = `expires_at` + INTERVAL 15 HOUR TTL_ENABLE = 'ON'");
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
