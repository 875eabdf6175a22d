import { CancellationReason, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError, CounterError, isNetworkError, THROTTLED_MESSAGE, ThrottledError } from '../../../runtime/errors';

/**
 * DynamoDB's throttling exceptions: a partition past its rate (reason
 * `TableWriteKeyRangeThroughputExceeded`, about 1,000 write units per
 * second per partition), a table past its provisioned or on-demand
 * maximum, an account past its quota. Nothing was applied.
 */
const THROTTLED = new Set(['ThrottlingException', 'ProvisionedThroughputExceededException', 'RequestLimitExceeded']);
/** Cancellation reasons that say a transaction's item was throttled. */
const THROTTLED_REASONS = new Set(['ThrottlingError', 'ProvisionedThroughputExceeded']);
/**
 * Seconds a throttled client is told to wait (`Retry-After`): DynamoDB's
 * partition limit is a rate per second, and its bucket refills within one.
 */
export const THROTTLED_RETRY_AFTER_SECONDS = 1;

/**
 * Errors after which DynamoDB certainly did not apply the write: safe to
 * retry. `TransactionConflictException` is a single-item write refused
 * because a transaction (a keyed change) was updating the same item.
 */
const NOT_APPLIED = new Set([...THROTTLED, 'TransactionConflictException']);
/** Errors that mean "the service cannot answer right now": 503. */
const UNAVAILABLE = new Set(['TransactionConflictException', 'InternalServerError', 'ServiceUnavailable', 'TimeoutError', 'RequestTimeout']);
/**
 * Cancellation reasons of a transaction that say "not now" rather than "no":
 * another write on the item at the same moment, or throttling. Nothing of
 * the transaction was applied; it may be sent again.
 */
const RETRYABLE_REASONS = new Set(['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded']);

/** True when the call certainly was not applied (throttled, refused, a transaction conflict): the store may resend it. */
export function isNotApplied(err: unknown): boolean {
  return NOT_APPLIED.has((err as Error)?.name) || (err as { code?: string })?.code === 'ECONNREFUSED' || isThrottledCancellation(err);
}

/**
 * True when DynamoDB throttled the call: one of its throttling exceptions,
 * or a transaction cancelled because one of its items was throttled (and
 * for no condition failing: a failed condition is an answer to read, not a
 * rate to wait out).
 */
export function isThrottled(err: unknown): boolean {
  return THROTTLED.has((err as Error)?.name) || isThrottledCancellation(err);
}

function isThrottledCancellation(err: unknown): boolean {
  if (!(err instanceof TransactionCanceledException)) return false;
  const reasons = err.CancellationReasons ?? [];
  return reasons.some((r) => r.Code !== undefined && THROTTLED_REASONS.has(r.Code))
    && !reasons.some((r) => r.Code === 'ConditionalCheckFailed');
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
 * The one place an SDK error becomes the pipeline's error: throttling →
 * 429 `THROTTLED` with `Retry-After` (the store's own retries are spent);
 * a service error or timeout, a network failure → 503; anything else (a
 * typed error already among them) unchanged. Condition failures are
 * answers and are mapped by the store, which knows the change.
 */
export function toDynamoCounterError(err: unknown): unknown {
  if (err instanceof CounterError) return err;
  if (isThrottled(err)) {
    return new ThrottledError(THROTTLED_MESSAGE, { cause: err, retryAfterSeconds: THROTTLED_RETRY_AFTER_SECONDS });
  }
  if (UNAVAILABLE.has((err as Error)?.name) || isNetworkError(err)) {
    return new BackendUnavailableError('DynamoDB is unavailable', { cause: err });
  }
  return err;
}
