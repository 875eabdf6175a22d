import { Connection, createConnection, RowDataPacket } from 'mysql2/promise';
import { SetupHandlerOptions } from '../../../runtime/custom-resource';
import { writeWarning } from '../../../runtime/log';
import { keysTableOf, TIDB_COLUMNS, TIDB_KEY_COLUMNS, TIDB_SETUP_PROPERTIES } from '../tidb-env';
import { connectionOptions, resolveEndpoint } from './tidb-client';
import { tableName, TiDbConfig } from './tidb-config';

/** The table a setup event names, else the configuration's. */
function tableOf(config: TiDbConfig, properties: Record<string, unknown>): string {
  return (properties[TIDB_SETUP_PROPERTIES.TABLE] as string | undefined) ?? config.table;
}

/** The database a setup event names, else the configuration's (undefined: the secret's). */
function databaseOf(config: TiDbConfig, properties: Record<string, unknown>): string | undefined {
  return (properties[TIDB_SETUP_PROPERTIES.DATABASE] as string | undefined) ?? config.database;
}

/**
 * The counters table. The id is `VARBINARY(255)`: the UTF-8 bytes of the id,
 * compared byte for byte. A `VARCHAR … COLLATE utf8mb4_bin` key would be
 * case-sensitive too, but that collation is PAD SPACE on TiDB, MySQL and
 * MariaDB alike, so `'user'` and `'user '` would be one counter; and 255
 * bytes is exactly the longest id the API accepts. The value is a signed
 * `BIGINT` (an unconditional counter may go below 0). Valid on TiDB as is
 * (clustered primary key) and on MySQL/MariaDB.
 */
export function createTableSql(table: string): string {
  return (
    `CREATE TABLE IF NOT EXISTS \`${table}\` (` +
    `${TIDB_COLUMNS.ID} VARBINARY(255) NOT NULL, ` +
    `${TIDB_COLUMNS.VALUE} BIGINT NOT NULL, ` +
    `PRIMARY KEY (${TIDB_COLUMNS.ID})` +
    ')'
  );
}

/**
 * The `Idempotency-Key` records table (`<table>_keys`): one row per key
 * applied within the retention window. The key is `VARBINARY(255)` for the
 * reason the counter id is (keys are 1–255 printable ASCII characters and a
 * trailing space is significant); `expires_at` is a UTC wall-clock time the
 * store writes and compares with `UTC_TIMESTAMP(6)` itself. On TiDB the
 * primary key is clustered (one key-value pair per record instead of two);
 * the `T![clustered_index]` comment is TiDB's executable-comment syntax and
 * a plain comment elsewhere.
 */
export function createKeysTableSql(table: string): string {
  const k = TIDB_KEY_COLUMNS;
  return (
    `CREATE TABLE IF NOT EXISTS \`${keysTableOf(table)}\` (` +
    `${k.KEY} VARBINARY(255) NOT NULL, ` +
    `${k.ID} VARBINARY(255) NOT NULL, ` +
    `${k.STEP} BIGINT NOT NULL, ` +
    `${k.VALUE} BIGINT NOT NULL, ` +
    `${k.EXPIRES} DATETIME(6) NOT NULL, ` +
    `PRIMARY KEY (${k.KEY}) /*T![clustered_index] CLUSTERED */` +
    ')'
  );
}

/**
 * Hours TiDB's TTL job waits past `expires_at` before deleting a record. The
 * job reads a `DATETIME` in the cluster's global time zone while the store
 * writes UTC; every time zone is within UTC+14, so 15 hours keeps the job
 * from ever deleting a record before its UTC expiry. (The store checks expiry
 * itself: a record past `expires_at` but not deleted yet is treated as gone.)
 */
export const KEYS_TTL_GRACE_HOURS = 15;

/** TiDB only (v6.5+): the background TTL job deletes expired records. Idempotent. */
export function keysTtlSql(table: string): string {
  return `ALTER TABLE \`${keysTableOf(table)}\` TTL = \`${TIDB_KEY_COLUMNS.EXPIRES}\` + INTERVAL ${KEYS_TTL_GRACE_HOURS} HOUR TTL_ENABLE = 'ON'`;
}

/** What the setup made sure of. */
export interface TiDbSetupDone {
  readonly database: string;
  readonly table: string;
  /** 'on', 'not TiDB', or 'unavailable: <reason>'. */
  readonly keysTtl: string;
}

/**
 * Creates the database, the counters table and the key records table when
 * missing (idempotent: `IF NOT EXISTS` everywhere), turns a value column an
 * earlier schema made `UNSIGNED` into a signed one, and on TiDB gives the
 * records table its TTL. A server error propagates, and the custom-resource
 * framework fails the deployment with its message; only the TTL is optional
 * (a cluster without the feature still works: the store checks expiry itself).
 */
export async function setupTiDb(config: TiDbConfig, properties: Record<string, unknown>): Promise<TiDbSetupDone> {
  const table = tableName(TIDB_SETUP_PROPERTIES.TABLE, tableOf(config, properties));
  const endpoint = await resolveEndpoint({ ...config, database: databaseOf(config, properties) });
  const conn = await createConnection(connectionOptions(config, endpoint, false));
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${endpoint.database}\``);
    await conn.query(`USE \`${endpoint.database}\``);
    await conn.query(createTableSql(table));
    await signValueColumn(conn, endpoint.database, table);
    await conn.query(createKeysTableSql(table));
    return { database: endpoint.database, table, keysTtl: await enableKeysTtl(conn, table) };
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}

/**
 * A counters table created by hand (or by another tool) with
 * `value BIGINT UNSIGNED` cannot hold a negative counter: it is altered to
 * `BIGINT NOT NULL`. Counter values are far below 2^63, so nothing is lost.
 */
async function signValueColumn(conn: Connection, database: string, table: string): Promise<void> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?',
    [database, table, TIDB_COLUMNS.VALUE],
  );
  if (rows.length === 1 && /unsigned/i.test(String(rows[0].COLUMN_TYPE))) {
    await conn.query(`ALTER TABLE \`${table}\` MODIFY ${TIDB_COLUMNS.VALUE} BIGINT NOT NULL`);
  }
}

/** 'on' (TiDB, TTL set), 'not TiDB', or 'unavailable: <reason>' (TiDB without the TTL feature). */
async function enableKeysTtl(conn: Connection, table: string): Promise<string> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT VERSION() AS version');
  if (!/TiDB/i.test(String(rows[0]?.version ?? ''))) return 'not TiDB';
  try {
    await conn.query(keysTtlSql(table));
    return 'on';
  } catch (err) {
    const reason = (err as Error).message;
    writeWarning('tidb', `setup: no TTL on ${keysTableOf(table)} (${reason}); expired Idempotency-Key records stay until deleted by hand (docs/tidb.md)`);
    return `unavailable: ${reason}`.slice(0, 200);
  }
}

/** The setup custom resource (`Custom::TiDbSetup`): creates the database, the counters table and its key records table. */
export function tidbSetup(config: TiDbConfig): SetupHandlerOptions {
  return {
    physicalId: (p) => `tidb:${String(databaseOf(config, p) ?? '(secret)')}/${String(tableOf(config, p))}`,
    setup: async (p) => {
      const done = await setupTiDb(config, p);
      return { Database: done.database, Table: done.table, KeysTable: keysTableOf(done.table), KeysTtl: done.keysTtl };
    },
  };
}
