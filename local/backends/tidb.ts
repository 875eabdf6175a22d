import { createPool, ResultSetHeader } from 'mysql2/promise';
import { TIDB_DEFAULTS, TIDB_ENV } from '../../src/backends/tidb/tidb-env';
import { Engine } from '../engines/engine';
import { acquireMysql } from '../engines/mysql';
import { loadBundledHandler } from '../lambda-container';
import { BackendFixture, urlPort } from './fixture';

export const TIDB_SETUP_ENTRY = 'backends/tidb/runtime/tidb-setup.lambda';

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
  const setup = loadBundledHandler(TIDB_SETUP_ENTRY, env) as unknown as (event: unknown) => Promise<SetupAnswer>;
  return setup({ RequestType: 'Create', ResourceProperties: properties });
}

/** TiDB on a MySQL-protocol server (MariaDB here): one database per namespace, created by the setup handler. */
export const tidbFixture: BackendFixture = {
  backend: 'tidb',
  entry: 'backends/tidb/runtime/tidb-counter.lambda',
  acquire: acquireMysql,
  async prepare(engine: Engine, namespace: string) {
    const env = tidbEnv(engine, namespace);
    await runTiDbSetup(env, { Database: namespace });
    return env;
  },
  async dispose(engine: Engine, namespace: string) {
    const u = new URL(engine.url);
    const pool = createPool({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
    });
    try {
      await pool.query(`DROP DATABASE IF EXISTS \`${namespace.replace(/`/g, '``')}\``);
    } finally {
      await pool.end();
    }
  },
  async bareClient(engine, env) {
    const u = new URL(engine.url);
    const pool = createPool({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      database: env[TIDB_ENV.DATABASE],
      connectionLimit: TIDB_DEFAULTS.poolSize,
    });
    const sql = `INSERT INTO \`${env[TIDB_ENV.TABLE]}\` (id, value) VALUES (?, LAST_INSERT_ID(1)) ON DUPLICATE KEY UPDATE value = LAST_INSERT_ID(value + 1)`;
    return {
      async increment(id: string) {
        const [result] = await pool.execute<ResultSetHeader>(sql, [id]);
        return Number(result.insertId);
      },
      close: () => pool.end(),
    };
  },
  serverPort: (engine) => urlPort(engine.url, 3306),
};
