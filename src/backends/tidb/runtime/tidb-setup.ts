import { createConnection } from 'mysql2/promise';
import { SetupHandlerOptions } from '../../../runtime/custom-resource';
import { TIDB_COLUMNS, TIDB_SETUP_PROPERTIES } from '../tidb-env';
import { connectionOptions, resolveEndpoint } from './tidb-client';
import { identifier, TiDbConfig } from './tidb-config';

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
export async function setupTiDb(config: TiDbConfig, properties: Record<string, unknown>): Promise<{ database: string; table: string }> {
  const table = identifier(TIDB_SETUP_PROPERTIES.TABLE, tableOf(config, properties));
  const endpoint = await resolveEndpoint({ ...config, database: databaseOf(config, properties) });
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

/** The setup custom resource (`Custom::TiDbSetup`): creates the database and the counters table. */
export function tidbSetup(config: TiDbConfig): SetupHandlerOptions {
  return {
    physicalId: (p) => `tidb:${String(databaseOf(config, p) ?? '(secret)')}/${String(tableOf(config, p))}`,
    setup: async (p) => {
      const done = await setupTiDb(config, p);
      return { Database: done.database, Table: done.table };
    },
  };
}
