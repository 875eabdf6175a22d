import { Connection, createConnection, RowDataPacket } from 'mysql2/promise';
import { SetupHandlerOptions } from '../../../runtime/custom-resource';
import { writeWarning } from '../../../runtime/log';
import { keysTableOf, TIDB_COLUMNS, TIDB_ID_BYTES, TIDB_KEY_COLUMNS, TIDB_SETUP_PROPERTIES } from '../tidb-env';
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
 * The counters table. The id is `VARBINARY`: the UTF-8 bytes of the id,
 * compared byte for byte. A `VARCHAR … COLLATE utf8mb4_bin` key would be
 * case-sensitive too, but that collation is PAD SPACE on TiDB, MySQL and
 * MariaDB alike, so `'user'` and `'user '` would be one counter. 258 bytes:
 * the longest id the API accepts (255) and a slot row's suffix
 * (`TIDB_ID_BYTES`). The value is a signed `BIGINT` (an unconditional
 * counter may go below 0). `headroom` and `width` serve sharded counters
 * only (`SHARD_COLUMNS`). Valid on TiDB as is (clustered primary key) and on
 * MySQL/MariaDB.
 */
export function createTableSql(table: string): string {
  return (
    `CREATE TABLE IF NOT EXISTS \`${table}\` (` +
    `${TIDB_COLUMNS.ID} VARBINARY(${TIDB_ID_BYTES}) NOT NULL, ` +
    `${TIDB_COLUMNS.VALUE} BIGINT NOT NULL, ` +
    `${TIDB_COLUMNS.HEADROOM} ${SHARD_COLUMNS.counters[TIDB_COLUMNS.HEADROOM]}, ` +
    `${TIDB_COLUMNS.WIDTH} ${SHARD_COLUMNS.counters[TIDB_COLUMNS.WIDTH]}, ` +
    `PRIMARY KEY (${TIDB_COLUMNS.ID})` +
    ')'
  );
}

/**
 * The columns schema 3 added for sharded counters, by table. Nullable with
 * no default: a row written before (or by an id never sharded) has NULL
 * there, which every statement reads as "not sharded" (width) and "no
 * headroom", so adding them changes no stored value and no answer.
 */
export const SHARD_COLUMNS = {
  counters: { [TIDB_COLUMNS.HEADROOM]: 'BIGINT NULL', [TIDB_COLUMNS.WIDTH]: 'INT NULL' },
  keys: { [TIDB_KEY_COLUMNS.SHARD]: 'INT NULL' },
} as const;

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
    `${k.SHARD} ${SHARD_COLUMNS.keys[k.SHARD]}, ` +
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
 * earlier schema made `UNSIGNED` into a signed one, brings tables of schema
 * 2 or older to schema 3 (`upgradeToShards`), and on TiDB gives the
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
    await upgradeToShards(conn, endpoint.database, table);
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

/**
 * Schema 3 on tables an earlier setup created: the sharding columns that are
 * missing are added (nullable, so existing rows and answers are unchanged;
 * on TiDB adding a nullable column is a metadata-only change), and an id
 * column narrower than `TIDB_ID_BYTES` is widened (a lossless change: no
 * stored id is altered). Each step looks first, so running it again does
 * nothing.
 */
async function upgradeToShards(conn: Connection, database: string, table: string): Promise<void> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT TABLE_NAME AS t, COLUMN_NAME AS c, CHARACTER_MAXIMUM_LENGTH AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)',
    [database, table, keysTableOf(table)],
  );
  const has = (t: string, c: string) => rows.find((r) => String(r.t) === t && String(r.c).toLowerCase() === c);
  for (const [t, columns] of [[table, SHARD_COLUMNS.counters], [keysTableOf(table), SHARD_COLUMNS.keys]] as const) {
    for (const [column, type] of Object.entries(columns)) {
      if (!has(t, column)) await conn.query(`ALTER TABLE \`${t}\` ADD COLUMN ${column} ${type}`);
    }
  }
  const id = has(table, TIDB_COLUMNS.ID);
  if (id && Number(id.n) < TIDB_ID_BYTES) {
    await conn.query(`ALTER TABLE \`${table}\` MODIFY ${TIDB_COLUMNS.ID} VARBINARY(${TIDB_ID_BYTES}) NOT NULL`);
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
