import { envMs, secretReadWorstCaseMs, WorstCase, worstCaseOf } from '../../timeouts';

/**
 * Environment contract between `TiDbCounter` and its handlers (docs/architecture.md, "The contracts").
 * Plain constants only: imported by the construct and by the bundled handlers.
 */
export const TIDB_ENV = {
  /**
   * ARN of a Secrets Manager secret holding `{host, port, user, password, database}`
   * (TiDB Cloud's `tidb_info.json` names `pwd` and `db` are accepted too).
   * Set by the construct; read once per container.
   */
  SECRET_ARN: 'TIDB_SECRET_ARN',
  /**
   * A direct `mysql://user:password@host:port/database` URL: local engines and
   * tests only, never set by the construct (it would put a password in the environment).
   */
  URL: 'TIDB_URL',
  /** Database holding the counters table. Default: the secret's (or URL's) database, else `atomic_counter`. */
  DATABASE: 'TIDB_DATABASE',
  /** Counters table. Default `counters`. */
  TABLE: 'TIDB_TABLE',
  /** `true` (default): TLS 1.2+ with certificate and host name verification. */
  TLS: 'TIDB_TLS',
  /** Optional PEM bundle trusted instead of Node's roots (TiDB Cloud Dedicated's private CA). */
  TLS_CA: 'TIDB_TLS_CA',
  /** Milliseconds to establish a connection (TCP + TLS + handshake) before a 503. Default 2000. */
  CONNECT_TIMEOUT_MS: 'TIDB_CONNECT_TIMEOUT_MS',
  /** Milliseconds one statement may take before a 503. Default 2500. */
  QUERY_TIMEOUT_MS: 'TIDB_QUERY_TIMEOUT_MS',
  /** Connections in the per-container pool. Default 2 (Lambda runs one request at a time per container). */
  POOL_SIZE: 'TIDB_POOL_SIZE',
} as const;

/**
 * Properties of the setup custom resource (`Custom::TiDbSetup`), written by
 * `TiDbCounter` and read by the setup handler; a change re-runs the setup.
 */
export const TIDB_SETUP_PROPERTIES = {
  /** Database to create. Default: `TIDB_ENV.DATABASE`, else the secret's, else `atomic_counter`. */
  DATABASE: 'Database',
  /** Counters table to create. Default: `TIDB_ENV.TABLE`, else `counters`. */
  TABLE: 'Table',
  /**
   * The schema revision the setup brings the tables to (`TIDB_SCHEMA_VERSION`).
   * A new revision changes the property, so an existing stack's next
   * deployment re-runs the (idempotent) setup: that is how a deployment made
   * before the keys table existed gets it.
   */
  SCHEMA: 'Schema',
} as const;

/**
 * Revision of the tables the setup creates (docs/architecture.md, "Setup
 * versions": bump it in the change that changes the setup). 1: the counters
 * table. 2: the `Idempotency-Key` records table and a signed value column.
 * 3: sharded counters (issue 21): nullable `headroom` and `width` columns on
 * the counters table, an id column wide enough for a slot row's id, and a
 * nullable `shard` column on the records table (NULL everywhere on rows
 * written before, and on every row of an id never sharded).
 */
export const TIDB_SCHEMA_VERSION = '3';

/** Defaults shared by the construct and the handlers. */
export const TIDB_DEFAULTS = {
  database: 'atomic_counter',
  table: 'counters',
  connectTimeoutMs: 2000,
  queryTimeoutMs: 2500,
  poolSize: 2,
} as const;

/**
 * Column names of the counters table. `headroom` and `width` are NULL on
 * every row of an id never sharded (docs/tidb.md, "Sharded counters"): a
 * slot row's unused share of the bound (conditional mode), and the id's
 * width, on slot 0 only.
 */
export const TIDB_COLUMNS = { ID: 'id', VALUE: 'value', HEADROOM: 'headroom', WIDTH: 'width' } as const;

/**
 * Slot i > 0 of id `<id>` is the row `<id>\u001f<i>`: ids never contain
 * control characters (the request parser refuses them), so no id names a
 * slot row. Slot 0 is the id's own row.
 */
export const TIDB_SLOT_SEPARATOR = '\u001f';

/**
 * Bytes of the counters table's id column: the longest id (255 bytes) and a
 * slot suffix (the separator and up to two digits, `SHARD_LIMITS.max` 64).
 */
export const TIDB_ID_BYTES = 258;

/**
 * Column names of the `Idempotency-Key` records table: the key, what it is
 * bound to (counter id and step), the value its change produced, and when
 * the record expires (UTC). A change of a sharded counter records the slot
 * that took it in `shard` (its replay answers no counter value); NULL for
 * an unsharded change, whose replay answers `value`.
 */
export const TIDB_KEY_COLUMNS = { KEY: 'idempotency_key', ID: 'counter_id', STEP: 'step', VALUE: 'value', EXPIRES: 'expires_at', SHARD: 'shard' } as const;

/** The records table is named after the counters table: `<table>_keys`. */
export const TIDB_KEYS_TABLE_SUFFIX = '_keys';

/** Longest counters table name: its records table's name must stay a 64-character identifier too. */
export const TIDB_MAX_TABLE_LENGTH = 64 - TIDB_KEYS_TABLE_SUFFIX.length;

/** The `Idempotency-Key` records table of a counters table. */
export function keysTableOf(table: string): string {
  return table + TIDB_KEYS_TABLE_SUFFIX;
}

/**
 * Database and table names are spliced into SQL (identifiers cannot be bound
 * as parameters), so they are restricted to this shape and backtick-quoted.
 */
export const TIDB_IDENTIFIER = /^[A-Za-z0-9_]{1,64}$/;

/**
 * Worst case of one request: the secret read (first request of a
 * container), a ping of a stale pooled connection that never answers
 * (query timeout), a fresh connect, then the statement, whose retries share
 * one query timeout. A keyed change (`Idempotency-Key`) is a transaction of
 * several statements: all of them, its ROLLBACK or COMMIT and its retries
 * share that same one query timeout (the store gives each statement what is
 * left of it), so the keyed path has the same worst case.
 */
export function tidbWorstCase(env: Readonly<Record<string, string | undefined>>): WorstCase | undefined {
  const queryMs = envMs(env, TIDB_ENV.QUERY_TIMEOUT_MS, TIDB_DEFAULTS.queryTimeoutMs);
  return worstCaseOf({
    'secret read': env[TIDB_ENV.SECRET_ARN] ? secretReadWorstCaseMs() : 0,
    'stale-connection ping': queryMs,
    'connect': envMs(env, TIDB_ENV.CONNECT_TIMEOUT_MS, TIDB_DEFAULTS.connectTimeoutMs),
    'statement (retries included)': queryMs,
  });
}

/**
 * Bundle entries of this backend's handlers: the path below `src/` (and below
 * `assets/`, where projen's esbuild step writes `index.js`), without `.ts`.
 * The constructs, the local fixtures and the tests name bundles only through
 * these; `test/project/bundle-entries.test.ts` checks them against the entries on disk.
 */
export const TIDB_BUNDLES = {
  /** The counter function's handler: `src/backends/tidb/runtime/tidb-counter.lambda.ts`. */
  counter: 'backends/tidb/runtime/tidb-counter.lambda',
  /** The setup custom resource's handler: `src/backends/tidb/runtime/tidb-setup.lambda.ts`. */
  setup: 'backends/tidb/runtime/tidb-setup.lambda',
} as const;
