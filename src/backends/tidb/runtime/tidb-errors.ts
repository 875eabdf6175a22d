import { BackendUnavailableError, CredentialsRejectedError, isNetworkError } from '../../../runtime/errors';
import { keysTableOf } from '../tidb-env';

/**
 * Server errors after which the statement certainly was rolled back, so it
 * can be sent again: deadlock (1213), lock wait timeout (1205), and TiDB's
 * write conflict (9007) and transaction-retry errors (8002, 8022, 8028).
 */
export const RETRYABLE_SERVER_ERRORS = new Set([1205, 1213, 8002, 8022, 8028, 9007]);

/**
 * Inside a keyed change's transaction also: a duplicate key (1062) or TiDB's
 * lazy-uniqueness failure (8147), which a pessimistic transaction reports
 * (and rolls back on) when `tidb_constraint_check_in_place_pessimistic` is
 * OFF and a concurrent transaction recorded the same key first. The store
 * rolls back and runs the whole transaction again.
 */
export const RETRYABLE_TRANSACTION_ERRORS = new Set([...RETRYABLE_SERVER_ERRORS, 1062, 8147]);

/**
 * Server errors meaning "not available right now": too many connections
 * (1040), shutdown in progress (1053), connection killed (1927, MariaDB),
 * query interrupted (1317), TiDB's PD/TiKV timeouts and busy errors
 * (9001–9006), and server-side memory/quota limits (8175, 8252).
 */
const UNAVAILABLE_SERVER_ERRORS = new Set([1040, 1053, 1317, 1927, 9001, 9002, 9003, 9004, 9005, 9006, 8175, 8252]);

/** mysql2's own codes for a connection that is gone or a statement that timed out. */
const CLIENT_UNAVAILABLE_CODES = new Set(['PROTOCOL_SEQUENCE_TIMEOUT', 'PROTOCOL_CONNECTION_LOST', 'ETIMEDOUT', 'ER_CON_COUNT_ERROR']);

export function errno(err: unknown): number | undefined {
  const n = (err as { errno?: unknown })?.errno;
  return typeof n === 'number' ? n : undefined;
}

/**
 * True when the error means the datastore cannot answer right now (503):
 * socket failures, timeouts, a connection mysql2 already marked closed, or
 * one of the server errors above.
 */
export function isUnavailable(err: unknown): boolean {
  if (isNetworkError(err)) return true;
  const e = err as { code?: unknown; fatal?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && CLIENT_UNAVAILABLE_CODES.has(e.code)) return true;
  const n = errno(err);
  if (n !== undefined && (UNAVAILABLE_SERVER_ERRORS.has(n) || RETRYABLE_SERVER_ERRORS.has(n))) return true;
  // A fatal error without a server errno is a dead connection ("Can't add new
  // command when connection is in closed state", handshake cut short, …).
  return e?.fatal === true && n === undefined;
}

/**
 * Server errors of a rejected login: access denied (1045) and an expired
 * password (1862). The handshake failed, so no statement ran.
 */
const AUTH_SERVER_ERRORS = new Set([1045, 1862]);

/** The server's "table doesn't exist" and "unknown database" (MySQL, MariaDB and TiDB alike). */
const NO_SUCH_TABLE = 1146;
const NO_SUCH_DATABASE = 1049;
/** "Unknown column": a table of an earlier schema (no sharding columns: the setup has not run to the current one). */
export const UNKNOWN_COLUMN = 1054;

/**
 * The one place a driver error becomes the pipeline's error: rejected credentials → `CredentialsRejectedError` (the
 * pipeline re-reads the secret, `secretArn`, and retries on a fresh pool);
 * a missing table of the store (`table` or its key records table: the setup
 * has not run, or not to the current schema) → a 503 whose log line says so;
 * "unavailable" → 503; anything else unchanged.
 */
export function toTiDbCounterError(err: unknown, secretArn?: string, table?: string): unknown {
  if (err instanceof BackendUnavailableError || err instanceof CredentialsRejectedError) return err;
  const n = errno(err);
  if (n === NO_SUCH_DATABASE) {
    return new BackendUnavailableError(
      'TiDB: the database does not exist, so the setup custom resource (Custom::TiDbSetup) has not run; '
      + 'deploy the construct (or run its setup) to create it', { cause: err });
  }
  if (n === NO_SUCH_TABLE && table !== undefined) {
    const message = String((err as Error).message);
    const missing = [keysTableOf(table), table].find((name) => message.includes(`.${name}'`) || message.includes(`'${name}'`)) ?? table;
    return new BackendUnavailableError(
      `TiDB: the table ${missing} does not exist, so the setup custom resource (Custom::TiDbSetup) has not run on this database; `
      + 'deploy the construct (or run its setup) to create it', { cause: err });
  }
  if (n === UNKNOWN_COLUMN && table !== undefined) {
    return new BackendUnavailableError(
      `TiDB: the table ${table} (or ${keysTableOf(table)}) lacks a column of the current schema, so the setup custom resource `
      + '(Custom::TiDbSetup) has not run to this version; deploy the construct (or run its setup) to add it', { cause: err });
  }
  if (n !== undefined && AUTH_SERVER_ERRORS.has(n)) {
    return new CredentialsRejectedError(`TiDB rejected the credentials (${n})`, { cause: err, secretArn });
  }
  return isUnavailable(err) ? new BackendUnavailableError('TiDB is unavailable', { cause: err }) : err;
}
