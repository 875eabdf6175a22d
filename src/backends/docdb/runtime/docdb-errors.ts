import {
  MongoError, MongoNetworkError, MongoNotConnectedError, MongoOperationTimeoutError, MongoServerError,
  MongoServerSelectionError, MongoTopologyClosedError,
} from 'mongodb';
import { BackendUnavailableError, CredentialsRejectedError, isNetworkError } from '../../../runtime/errors';

const AUTHENTICATION_FAILED = 18;
const WRITE_CONFLICT = 112;
const DUPLICATE_KEY = 11000;
const NO_SUCH_TRANSACTION = 251;

/**
 * Server error codes that mean "not now": no usable primary (failover,
 * shutdown, replication lag past the write concern's bound), or the server
 * gave up on the operation (a time limit, a write conflict). The client may
 * retry; none of them is a fault of the request.
 */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  64, // WriteConcernFailed
  89, // NetworkTimeout
  91, // ShutdownInProgress
  112, // WriteConflict (after the store's own retry)
  251, // NoSuchTransaction (a transaction that expired or was aborted, after the store's retries)
  134, // ReadConcernMajorityNotAvailableYet
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** Labels the driver or the server put on errors worth retrying later. */
const TRANSIENT_LABELS = ['TransientTransactionError', 'RetryableWriteError', 'ResetPool', 'PoolRequstedRetry', 'SystemOverloadedError', 'RetryableError'];

/** True for a MongoDB error (or one in its cause chain) with code 18 AuthenticationFailed. */
export function isAuthenticationFailure(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  if (err instanceof MongoError && (err.code === AUTHENTICATION_FAILED || (err as MongoServerError).codeName === 'AuthenticationFailed')) return true;
  return isAuthenticationFailure((err as { cause?: unknown }).cause, depth + 1);
}

/** A WriteConflict: the server aborted the write, nothing was applied; safe to retry. */
export function isWriteConflict(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === WRITE_CONFLICT;
}

/** E11000: an insert (an upsert's) collided with the `_id` index; see `retryDuplicateKeyOnce`. */
export function isDuplicateKeyError(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === DUPLICATE_KEY;
}

/**
 * An error inside a transaction (before its commit) after which the whole
 * transaction may run again: a write conflict, a transaction the server no
 * longer has (aborted, expired: 251), anything the server or the driver
 * labels `TransientTransactionError` (a network error or a failed server
 * selection inside a transaction, say). No commit was sent, so nothing of
 * it was applied.
 */
export function isTransactionRetryable(err: unknown): boolean {
  if (!(err instanceof MongoError)) return false;
  return err.code === WRITE_CONFLICT || err.code === NO_SUCH_TRANSACTION || err.hasErrorLabel('TransientTransactionError');
}

/** Transient: worth a 503 (the client may retry), never a 500. */
export function isTransientError(err: unknown): boolean {
  if (
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNetworkError || // includes MongoNetworkTimeoutError and MongoPoolClearedError
    err instanceof MongoTopologyClosedError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoOperationTimeoutError
  ) return true;
  if (err instanceof MongoError) {
    if (err.name === 'MongoWaitQueueTimeoutError') return true;
    if (TRANSIENT_LABELS.some((label) => err.hasErrorLabel(label))) return true;
    if (typeof err.code === 'number' && UNAVAILABLE_CODES.has(err.code)) return true;
  }
  return isNetworkError(err);
}

/**
 * The one place a driver error becomes the pipeline's error:
 *
 * - the cluster rejected the credentials (code 18, during the connection's
 *   handshake, so before any command ran) → `CredentialsRejectedError`: the
 *   pipeline drops the cached secret and the client, re-reads the secret and
 *   retries once (rotation);
 * - a cluster that cannot be selected or reached, a socket that timed out or
 *   broke, a primary in the middle of a failover, a time limit or a write
 *   conflict, anything the driver labels transient → `BackendUnavailableError`
 *   (503, the client may retry);
 * - anything else is returned unchanged (a 500).
 *
 * A timed-out increment may have been applied: the 503 hands that decision
 * to the client, as with every backend.
 */
export function toDocDbCounterError(err: unknown, secretArn?: string): unknown {
  if (isAuthenticationFailure(err)) return new CredentialsRejectedError('DocumentDB rejected the credentials', { cause: err, secretArn });
  if (isTransientError(err)) return new BackendUnavailableError('DocumentDB is unavailable', { cause: err });
  return err;
}

/**
 * A failed `commitTransaction` that certainly applied nothing: the server
 * refused the commit for a conflict (WriteConflict, or an error it labels
 * `TransientTransactionError`). Not a 251 NoSuchTransaction: DocumentDB
 * answers it to a commit that did happen once that transaction is over
 * (and the driver retries a commit whose reply was lost, which then gets
 * exactly that); nor a lost reply itself (`UnknownTransactionCommitResult`,
 * a network error): either may have committed.
 */
export function isCommitRefused(err: unknown): boolean {
  if (!(err instanceof MongoServerError) || err.code === NO_SUCH_TRANSACTION || err.hasErrorLabel('UnknownTransactionCommitResult')) return false;
  return err.code === WRITE_CONFLICT || err.hasErrorLabel('TransientTransactionError');
}
