import type { CancellationReason } from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError, CounterError, isNetworkError } from '../../../runtime/errors';

/**
 * Errors after which DynamoDB certainly did not apply the write: safe to
 * retry. `TransactionConflictException` is a single-item write refused
 * because a transaction (a keyed change) was updating the same item.
 */
const NOT_APPLIED = new Set([
  'ThrottlingException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'TransactionConflictException',
]);
/** Errors that mean "the service cannot answer right now": 503. */
const UNAVAILABLE = new Set([...NOT_APPLIED, 'InternalServerError', 'ServiceUnavailable', 'TimeoutError', 'RequestTimeout']);
/**
 * Cancellation reasons of a transaction that say "not now" rather than "no":
 * another write on the item at the same moment, or throttling. Nothing of
 * the transaction was applied; it may be sent again.
 */
const RETRYABLE_REASONS = new Set(['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded']);

/** True when the call certainly was not applied (throttled, refused, a transaction conflict): the store may resend it. */
export function isNotApplied(err: unknown): boolean {
  return NOT_APPLIED.has((err as Error)?.name) || (err as { code?: string })?.code === 'ECONNREFUSED';
}

/**
 * True for a single-item write DynamoDB refused because a transaction was
 * under way on the item ("Operation was rejected because there is an
 * ongoing transaction for the item"): nothing was applied, and the item is
 * free again within milliseconds.
 */
export function isConflict(err: unknown): boolean {
  return (err as Error)?.name === 'TransactionConflictException';
}

/** True when a cancelled transaction may simply be sent again (nothing failed but timing). */
export function isRetryableReason(reason: CancellationReason | undefined): boolean {
  return reason?.Code !== undefined && RETRYABLE_REASONS.has(reason.Code);
}

/**
 * The one place an SDK error becomes the pipeline's error: throttling, a
 * service error or timeout, a network failure → 503; anything else (a typed
 * error already among them) unchanged. Condition failures are answers and
 * are mapped by the store, which knows the change.
 */
export function toDynamoCounterError(err: unknown): unknown {
  if (err instanceof CounterError) return err;
  if (UNAVAILABLE.has((err as Error)?.name) || isNetworkError(err)) {
    return new BackendUnavailableError('DynamoDB is unavailable', { cause: err });
  }
  return err;
}
