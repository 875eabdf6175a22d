import { envMs, secretReadWorstCaseMs, WorstCase, worstCaseOf } from '../../timeouts';

/**
 * Environment contract between `DocDbCounter` and its handlers (docs/architecture.md, "The contracts").
 * Plain constants only: imported by both the construct and the bundled handlers.
 */
export const DOCDB_ENV = {
  /**
   * ARN of a Secrets Manager secret holding JSON `{username, password}` (and,
   * for a secret attached to a cluster, `host` and `port`): the user the
   * function logs in as. The counter function gets the application user's
   * secret, the setup function the master user's. Read once per container
   * and again after an authentication failure (rotation); the credentials go
   * to the driver's `auth` option, never into a connection string.
   */
  SECRET_ARN: 'DOCDB_SECRET_ARN',
  /**
   * Setup function only: ARN of the application user's secret (JSON
   * `{username, password}`). The setup creates that user with `readWrite` on
   * the counter database, or sets its password and roles if it exists.
   * Unset: no application user is managed.
   */
  APP_SECRET_ARN: 'DOCDB_APP_SECRET_ARN',
  /** Cluster endpoint host name. Falls back to the secret's `host`. */
  HOST: 'DOCDB_HOST',
  /** Cluster endpoint port. Falls back to the secret's `port`, then 27017. */
  PORT: 'DOCDB_PORT',
  /** "false" turns TLS off (local engines only). Default true. Ignored with `DOCDB_URI`. */
  TLS: 'DOCDB_TLS',
  /**
   * Replica set name (DocumentDB: always `rs0`): the driver then follows the
   * primary across failovers. Unset: a direct connection to the host.
   * Ignored with `DOCDB_URI`.
   */
  REPLICA_SET: 'DOCDB_REPLICA_SET',
  /**
   * A complete `mongodb://` connection string, for local runs and tests only
   * (never set by the construct). It governs host, TLS and topology; the
   * safety options below are still applied, and credentials still come from
   * the secret when `DOCDB_SECRET_ARN` is set.
   */
  URI: 'DOCDB_URI',
  /** Database holding the counters. Default `atomic_counter`. */
  DATABASE: 'DOCDB_DATABASE',
  /** Collection holding the counters. Default `counters`. */
  COLLECTION: 'DOCDB_COLLECTION',
  /** How long the driver looks for a usable primary before a 503. Default 2000 ms. */
  SERVER_SELECTION_TIMEOUT_MS: 'DOCDB_SERVER_SELECTION_TIMEOUT_MS',
  /** TCP + TLS connect bound. Default 2000 ms. */
  CONNECT_TIMEOUT_MS: 'DOCDB_CONNECT_TIMEOUT_MS',
  /** Bound on waiting for one reply on an open socket. Default 5000 ms. */
  SOCKET_TIMEOUT_MS: 'DOCDB_SOCKET_TIMEOUT_MS',
  /**
   * Bound on one whole store call — server selection, connecting, the
   * operation and its retries (a first-increment race, a WriteConflict; for
   * a keyed change, the transaction and its retries) — after which the
   * request answers 503. The driver's own timeouts bound each step; this
   * bounds their sum, so the function always answers before its timeout.
   * The store applies the smaller of this and server selection + connect +
   * 3 socket timeouts (see `docdbCallBudgetMs`). Like any timeout it is
   * ambiguous: an unkeyed write still in flight may land (a keyed one is
   * resolved by its key). Default 6000 ms.
   */
  OPERATION_TIMEOUT_MS: 'DOCDB_OPERATION_TIMEOUT_MS',
  /**
   * A pooled connection idle longer than this is closed instead of used
   * (the driver's `maxIdleTimeMS`): a frozen container's flows may have been
   * dropped silently (a NAT gateway forgets a flow idle for 350 s), and a
   * request on such a socket would wait for the socket timeout. Default 60000 ms.
   */
  MAX_IDLE_TIME_MS: 'DOCDB_MAX_IDLE_TIME_MS',
} as const;

/** Defaults shared by the construct, the handlers and the docs. */
export const DOCDB_DEFAULTS = {
  database: 'atomic_counter',
  collection: 'counters',
  port: 27017,
  replicaSet: 'rs0',
  /** Lambda's Node.js 20+ runtimes ship the Amazon RDS CAs here but load them only through NODE_EXTRA_CA_CERTS. */
  caBundlePath: '/var/runtime/ca-cert.pem',
  /**
   * Engine version of a created cluster: pinned, so a deployment does not
   * take whatever AWS defaults to on the day. 5.0.0 is active with a
   * long-term-support release and the newest version AWS's template linter
   * accepts. Retryable writes need engine 8.0.2; the driver keeps them off.
   */
  engineVersion: '5.0.0',
  /** The application user the counter function logs in as (`readWrite` on the counter database only). */
  appUsername: 'counterapp',
  /** Pooled connections idle longer than this are replaced (see `MAX_IDLE_TIME_MS`). */
  maxIdleTimeMs: 60_000,
  /**
   * A WriteConflict (112) means the write was not applied: it is retried
   * this many times, after a short jittered pause, before answering 503.
   */
  writeConflictRetries: 1,
} as const;

/**
 * Properties of the setup custom resource (`Custom::DocDbSetup`), written by
 * `DocDbCounter` and read by the setup handler. A change re-runs the setup:
 * a renamed database or collection, or a replaced application user's secret
 * (which the handler reads from `DOCDB_ENV.APP_SECRET_ARN`; the property only makes the
 * replacement an Update).
 */
export const DOCDB_SETUP_PROPERTIES = {
  /** Database to create the collection in. Default: the `DOCDB_ENV.DATABASE` value. */
  DATABASE: 'Database',
  /** Collection to create. Default: the `DOCDB_ENV.COLLECTION` value. */
  COLLECTION: 'Collection',
  /** ARN of the application user's secret. */
  APP_USER_SECRET: 'AppUserSecret',
  /**
   * The schema revision the setup brings the database to
   * (`DOCDB_SCHEMA_VERSION`): a new revision changes the property, so an
   * existing stack's next deployment runs the (idempotent) setup again.
   */
  SCHEMA: 'Schema',
} as const;

/**
 * Revision of what the setup creates (docs/architecture.md, "Setup
 * versions": bump it in the change that changes the setup). 1: the counters
 * collection and the application user. 2: the `Idempotency-Key` records
 * collection and its TTL index.
 */
export const DOCDB_SCHEMA_VERSION = '2';

/**
 * A counter document: `{_id: <counter id>, counter: <value>}`. The id is the
 * `_id`, so the collection's built-in unique `_id` index is the index the
 * conditional upsert collides with: it exists from the first write, even
 * before the setup step has run.
 *
 * A sharded counter (docs/docdb.md, "Sharded counters") adds slot documents
 * `{_id: <counter id>\u001f<slot>, counter, headroom}` and, on the counter's
 * own document (slot 0), `headroom` and `width` (the most slots it was ever
 * written with).
 */
export const DOCDB_FIELDS = { ID: '_id', COUNTER: 'counter', HEADROOM: 'headroom', WIDTH: 'width', SLOT_SEPARATOR: '\u001f' } as const;

/**
 * A key record (exactly-once changes), in the keys collection next to the
 * counters: `{_id: <Idempotency-Key>, id, by, counter, expiresAt, request}`.
 * The key is the `_id` (unique, so a key is recorded once per namespace);
 * `id` and `by` are what it is bound to, `counter` the value its change
 * produced (a sharded change, which knows no total: `shard`, the slot it
 * went to), `expiresAt` when it stops counting (the store checks it; a TTL
 * index deletes the record some time later), `request` a random token of
 * the request that recorded it (so that request, retrying after a lost
 * commit reply, knows the change as its own and not as a replay).
 */
export const DOCDB_KEY_FIELDS = { KEY: '_id', ID: 'id', BY: 'by', COUNTER: 'counter', SHARD: 'shard', EXPIRES_AT: 'expiresAt', REQUEST: 'request' } as const;

/** Suffix of the keys collection's name (the construct keeps collection names short enough for it). */
export const DOCDB_KEYS_SUFFIX = '_keys';

/** The keys collection of a counters collection: `<collection>_keys`, in the same database. */
export function docdbKeysCollection(collection: string): string {
  return `${collection}${DOCDB_KEYS_SUFFIX}`;
}

/** Name of the TTL index on the key records' `expiresAt` (created by the setup). */
export const DOCDB_KEY_EXPIRY_INDEX = 'expiresAt_ttl';

/**
 * The counter function's driver timeouts when the environment sets none
 * (runtime/docdb-config.ts `COUNTER_TIMEOUTS` is this object).
 */
export const DOCDB_COUNTER_TIMEOUT_DEFAULTS = {
  serverSelectionTimeoutMs: 2000,
  connectTimeoutMs: 2000,
  socketTimeoutMs: 5000,
  operationTimeoutMs: 6000,
} as const;

/** Attempts of an unkeyed change, each bounded by the socket timeout: the first, the duplicate-key retry, the WriteConflict retries. */
export const DOCDB_UNKEYED_ATTEMPTS = 2 + DOCDB_DEFAULTS.writeConflictRetries;

/**
 * The bound the store puts on one whole call (`withinDeadline`): the
 * operation timeout, or server selection + connect + every attempt of an
 * unkeyed change each running to the socket timeout, whichever is less.
 * An unkeyed change never needs more than the second term. A keyed change
 * (a transaction retried on conflicts) has no such natural bound, so this
 * budget is what cuts it off: the worst case of both is the same.
 */
export function docdbCallBudgetMs(
  t: { serverSelectionTimeoutMs: number; connectTimeoutMs: number; socketTimeoutMs: number; operationTimeoutMs: number },
): number {
  return Math.min(t.operationTimeoutMs, t.serverSelectionTimeoutMs + t.connectTimeoutMs + DOCDB_UNKEYED_ATTEMPTS * t.socketTimeoutMs);
}

/**
 * Worst case of one request: the secret read (first request of a
 * container), then the store call, which the store cuts off at its budget
 * (`docdbCallBudgetMs`): the operation timeout (`OPERATION_TIMEOUT_MS`) —
 * or, when less, server selection, a fresh connection and every attempt of
 * an unkeyed change (the first, the duplicate-key retry of an upsert race,
 * the WriteConflict retries), each running to its own bound. A keyed change
 * (a transaction and its retries) gets the same budget.
 */
export function docdbWorstCase(env: Readonly<Record<string, string | undefined>>): WorstCase | undefined {
  const socketMs = envMs(env, DOCDB_ENV.SOCKET_TIMEOUT_MS, DOCDB_COUNTER_TIMEOUT_DEFAULTS.socketTimeoutMs);
  const selectionMs = envMs(env, DOCDB_ENV.SERVER_SELECTION_TIMEOUT_MS, DOCDB_COUNTER_TIMEOUT_DEFAULTS.serverSelectionTimeoutMs);
  const connectMs = envMs(env, DOCDB_ENV.CONNECT_TIMEOUT_MS, DOCDB_COUNTER_TIMEOUT_DEFAULTS.connectTimeoutMs);
  const operationMs = envMs(env, DOCDB_ENV.OPERATION_TIMEOUT_MS, DOCDB_COUNTER_TIMEOUT_DEFAULTS.operationTimeoutMs);
  if (socketMs === undefined || selectionMs === undefined || connectMs === undefined || operationMs === undefined) return undefined;
  const attempts = DOCDB_UNKEYED_ATTEMPTS;
  const budgetMs = docdbCallBudgetMs({
    serverSelectionTimeoutMs: selectionMs, connectTimeoutMs: connectMs, socketTimeoutMs: socketMs, operationTimeoutMs: operationMs,
  });
  return worstCaseOf({
    'secret read': env[DOCDB_ENV.SECRET_ARN] ? secretReadWorstCaseMs() : 0,
    ...(budgetMs === operationMs
      ? { 'operation timeout': operationMs }
      : { 'server selection': selectionMs, 'connect': connectMs, [`${attempts} attempts × socket timeout`]: attempts * socketMs }),
  });
}

/**
 * Bundle entries of this backend's handlers: the path below `src/` (and below
 * `assets/`, where projen's esbuild step writes `index.js`), without `.ts`.
 * The constructs, the local fixtures and the tests name bundles only through
 * these; `test/project/bundle-entries.test.ts` checks them against the entries on disk.
 */
export const DOCDB_BUNDLES = {
  /** The counter function's handler: `src/backends/docdb/runtime/docdb-counter.lambda.ts`. */
  counter: 'backends/docdb/runtime/docdb-counter.lambda',
  /** The setup custom resource's handler: `src/backends/docdb/runtime/docdb-setup.lambda.ts`. */
  setup: 'backends/docdb/runtime/docdb-setup.lambda',
} as const;
