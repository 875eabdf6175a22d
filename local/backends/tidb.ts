import { createPool, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { changeStatement, counterSql } from '../../src/backends/tidb/runtime/tidb-counter-store';
import { counterIdOf } from '../../src/backends/tidb/runtime/tidb-sql';
import { TIDB_BUNDLES, TIDB_COLUMNS, TIDB_DEFAULTS, TIDB_ENV } from '../../src/backends/tidb/tidb-env';
import { Engine } from '../engines/engine';
import { acquireMysql, mysqlConnectionOptions, startMysqlCommandProxy } from '../engines/mysql';
import { loadBundledHandler } from '../lambda-container';
import { BackendFixture, urlPort } from './fixture';

/** Handler environment for a MySQL-protocol engine and one database (the namespace). */
export function tidbEnv(engine: Engine, database: string): Record<string, string> {
  return {
    [TIDB_ENV.URL]: engine.url,
    [TIDB_ENV.DATABASE]: database,
    [TIDB_ENV.TABLE]: TIDB_DEFAULTS.table,
    // Local engines speak plain TCP; the construct always deploys with TLS on unless told otherwise.
    [TIDB_ENV.TLS]: 'false',
  };
}

/** Runs the bundled setup handler (the custom resource's code) as CloudFormation would on Create. */
type SetupAnswer = { PhysicalResourceId: string; Data?: Record<string, string> };
export async function runTiDbSetup(env: Record<string, string>, properties: Record<string, unknown> = {}): Promise<SetupAnswer> {
  const setup = loadBundledHandler(TIDB_BUNDLES.setup, env) as unknown as (event: unknown) => Promise<SetupAnswer>;
  return setup({ RequestType: 'Create', ResourceProperties: properties });
}

/**
 * TiDB on a MySQL-protocol server (MariaDB here): one database per namespace,
 * created by the setup handler with both tables (counters and
 * `Idempotency-Key` records); `keys` lists the counters table only (a
 * sharded id once, however many slot rows it has), and
 * `dispose` drops the database with both.
 */
export const tidbFixture: BackendFixture = {
  backend: 'tidb',
  entry: TIDB_BUNDLES.counter,
  acquire: acquireMysql,
  async prepare(engine: Engine, namespace: string) {
    const env = tidbEnv(engine, namespace);
    // The setup's deployed bounds (2 s to connect) are for a cluster a
    // network hop away; here a busy machine (load average 10 on 2 cores) let
    // a localhost connect pass 2 s and the namespace went unprepared. The
    // environment returned keeps the deployed defaults for the tests of them.
    await runTiDbSetup({ ...env, [TIDB_ENV.CONNECT_TIMEOUT_MS]: '10000', [TIDB_ENV.QUERY_TIMEOUT_MS]: '20000' }, { Database: namespace });
    return env;
  },
  async dispose(engine: Engine, namespace: string) {
    const pool = createPool(mysqlConnectionOptions(engine.url));
    try {
      await pool.query(`DROP DATABASE IF EXISTS \`${namespace.replace(/`/g, '``')}\``);
    } finally {
      await pool.end();
    }
  },
  async keys(engine: Engine, namespace: string) {
    const pool = createPool(mysqlConnectionOptions(engine.url));
    const quote = (name: string) => `\`${name.replace(/`/g, '``')}\``;
    try {
      const [rows] = await pool.query<RowDataPacket[]>(`SELECT ${quote(TIDB_COLUMNS.ID)} AS id FROM ${quote(namespace)}.${quote(TIDB_DEFAULTS.table)}`);
      // A sharded id's slot rows (`<id>\u001f<i>`) are one counter: listed once, as its id.
      return [...new Set(rows.map((r) => counterIdOf(Buffer.isBuffer(r.id) ? r.id.toString('utf8') : String(r.id))))];
    } finally {
      await pool.end();
    }
  },
  async bareClient(engine, env) {
    const pool = createPool({
      ...mysqlConnectionOptions(engine.url),
      database: env[TIDB_ENV.DATABASE],
      connectionLimit: TIDB_DEFAULTS.poolSize,
    });
    // The very statement the store sends for an unconditional +1, without the handler around it.
    const sql = counterSql(env[TIDB_ENV.TABLE]);
    return {
      async increment(id: string) {
        const statement = changeStatement(sql, id, { by: 1 });
        const [result] = await pool.execute<ResultSetHeader>(statement.sql, statement.params);
        return statement.outcome(result).value;
      },
      close: () => pool.end(),
    };
  },
  serverPort: (engine) => urlPort(engine.url, 3306),
  /**
   * MySQL-protocol commands (COM_QUERY, COM_STMT_EXECUTE, …) counted at a
   * proxy in front of the engine, per command as the server receives it: a
   * keyed change's multi-statement batch is one COM_QUERY. The handshake is
   * not a command; a new connection's session settings are (they are sent
   * once per connection, so a warm count does not see them).
   */
  async callCounter(engine, env) {
    const { host, port } = mysqlConnectionOptions(engine.url);
    const proxy = await startMysqlCommandProxy({ host, port });
    const url = new URL(env[TIDB_ENV.URL]);
    url.host = proxy.address;
    return {
      env: { ...env, [TIDB_ENV.URL]: url.toString() },
      count: () => proxy.count(),
      reset: () => proxy.reset(),
      close: () => proxy.close(),
    };
  },
};
