/**
 * Environment contract between `DocDbCounter` and its handlers (DESIGN.md §4).
 * Plain constants only: imported by both the construct and the bundled handlers.
 */
export const DOCDB_ENV = {
  /**
   * ARN of a Secrets Manager secret holding JSON `{username, password}` (and,
   * for a secret attached to a cluster, `host` and `port`). Read once per
   * container; the credentials go to the driver's `auth` option, never into
   * a connection string.
   */
  SECRET_ARN: 'DOCDB_SECRET_ARN',
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
} as const;

/** Defaults shared by the construct, the handlers and the docs. */
export const DOCDB_DEFAULTS = {
  database: 'atomic_counter',
  collection: 'counters',
  port: 27017,
  replicaSet: 'rs0',
  /** Lambda's Node.js 20+ runtimes ship the Amazon RDS CAs here but load them only through NODE_EXTRA_CA_CERTS. */
  caBundlePath: '/var/runtime/ca-cert.pem',
} as const;

/**
 * A counter document: `{_id: <counter id>, counter: <value>}`. The id is the
 * `_id`, so the collection's built-in unique `_id` index is the index the
 * conditional upsert collides with: it exists from the first write, even
 * before the setup step has run.
 */
export const DOCDB_FIELDS = { ID: '_id', COUNTER: 'counter' } as const;
