import { createConnection } from 'mysql2/promise';
import { createSetupHandler } from '../../../runtime/custom-resource';
import { TIDB_COLUMNS } from '../tidb-env';
import { connectionOptions, identifier, readTiDbConfig, resolveEndpoint, TiDbConfig } from './tidb-connection';

/** Resource properties of `Custom::TiDbSetup` (changing one re-runs the setup). */
export interface TiDbSetupProperties {
  /** @default - the secret's database, else `atomic_counter` */
  readonly Database?: string;
  /** @default - `TIDB_TABLE`, else `counters` */
  readonly Table?: string;
}

/**
 * The counters table. The id is `VARBINARY(255)`: the UTF-8 bytes of the id,
 * compared byte for byte. A `VARCHAR … COLLATE utf8mb4_bin` key would be
 * case-sensitive too, but that collation is PAD SPACE on TiDB, MySQL and
 * MariaDB alike, so `'user'` and `'user '` would be one counter; and 255
 * bytes is exactly the longest id the API accepts. Valid on TiDB as is
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
 * Creates the database and the counters table when missing (idempotent:
 * `IF NOT EXISTS` on both). A server error propagates, and the custom-resource
 * framework fails the deployment with its message.
 */
export async function setupTiDb(config: TiDbConfig, properties: TiDbSetupProperties): Promise<{ database: string; table: string }> {
  const table = identifier('Table', properties.Table ?? config.table);
  const endpoint = await resolveEndpoint({ ...config, database: properties.Database ?? config.database });
  const conn = await createConnection(connectionOptions(config, endpoint, false));
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${endpoint.database}\``);
    await conn.query(`USE \`${endpoint.database}\``);
    await conn.query(createTableSql(table));
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
  return { database: endpoint.database, table };
}

const config = readTiDbConfig(process.env);

export const handler = createSetupHandler({
  physicalId: (p) => `tidb:${String(p.Database ?? config.database ?? '(secret)')}/${String(p.Table ?? config.table)}`,
  setup: async (p) => {
    const done = await setupTiDb(config, p as TiDbSetupProperties);
    return { Database: done.database, Table: done.table };
  },
});
