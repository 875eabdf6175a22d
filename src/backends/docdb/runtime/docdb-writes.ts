/**
 * The retry rules every DocumentDB write of the counter shares: a plain
 * write's E11000 and WriteConflict (`retryDuplicateKeyOnce`,
 * `retryWriteConflict`), and how a transaction is ended when it must not
 * hold its documents any longer (`abortTransaction`,
 * `releaseAfterFailedCommit`).
 */
import { ClientSession, MongoClient } from 'mongodb';
import { isDuplicateKeyError, isWriteConflict } from './docdb-errors';
import { retry } from '../../../runtime/retry';
import { DOCDB_DEFAULTS } from '../docdb-env';

/**
 * The duplicate-key decision of an unkeyed upserting change: one retry
 * after an E11000, whose own E11000 proves the rejection. Why one retry
 * tells a first-increment race from an out-of-range value: docs/docdb.md,
 * "Why it is atomic".
 */
export async function retryDuplicateKeyOnce<T>(attempt: () => Promise<T>, rejected: () => Error): Promise<T> {
  return retry(attempt, {
    backoff: { baseMs: 0, capMs: 0 },
    maxAttempts: 2,
    retryable: isDuplicateKeyError,
    exhausted: () => rejected(),
  });
}

/** Pause between retries of a write the server refused with WriteConflict. */
export const WRITE_CONFLICT_BACKOFF = { baseMs: 5, capMs: 25 } as const;

/**
 * Retries an attempt that failed with WriteConflict (112): the server
 * aborted that write, so nothing was applied. A timeout or a network error
 * after the command was sent is ambiguous and goes back as a 503.
 */
export async function retryWriteConflict<T>(attempt: () => Promise<T>, retries: number = DOCDB_DEFAULTS.writeConflictRetries): Promise<T> {
  let last: unknown;
  return retry(attempt, {
    backoff: WRITE_CONFLICT_BACKOFF,
    maxAttempts: retries + 1,
    retryable: (err) => {
      last = err;
      return isWriteConflict(err);
    },
    // The last WriteConflict itself: toDocDbCounterError makes it a 503.
    exhausted: () => last as Error,
  });
}

/** Aborts the session's transaction if one is still open; the driver ignores a server that already ended it. */
export async function abortTransaction(session: ClientSession): Promise<void> {
  if (session.inTransaction()) await session.abortTransaction().catch(() => undefined);
}

/**
 * After a failed commit: a commit that never arrived leaves the transaction
 * open, holding its documents until DocumentDB ends it (one minute), so end
 * it now. Harmless after a commit that did happen, which an abort cannot
 * undo; the driver considers the transaction over, so the command is sent
 * as it is.
 */
export async function releaseAfterFailedCommit(client: MongoClient, session: ClientSession): Promise<void> {
  await client.db('admin').command({ abortTransaction: 1 }, { session }).catch(() => undefined);
}
