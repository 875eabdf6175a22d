import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError, CounterError, isNetworkError, LimitReachedError } from '../../../runtime/errors';
import { DYNAMO_ATTRIBUTES } from '../dynamo-env';

/** Errors after which DynamoDB certainly did not apply the write: safe to retry. */
const THROTTLING = new Set(['ThrottlingException', 'ProvisionedThroughputExceededException', 'RequestLimitExceeded']);
/** Errors that mean "the service cannot answer right now": 503. */
const UNAVAILABLE = new Set([...THROTTLING, 'InternalServerError', 'ServiceUnavailable', 'TimeoutError', 'RequestTimeout']);

/** True when the call certainly was not applied (throttled, connection refused): the store may resend it. */
export function isNotApplied(err: unknown): boolean {
  return THROTTLING.has((err as Error)?.name) || (err as { code?: string })?.code === 'ECONNREFUSED';
}

/**
 * The one place an SDK error becomes the pipeline's error:
 *
 * - a failed `ConditionExpression` of a conditional increment (`maximum`
 *   given) → `LimitReachedError`, with the current value the rejection carries;
 * - throttling, a service error or timeout, a network failure → 503;
 * - anything else (a typed error already among them) unchanged.
 */
export function toDynamoCounterError(err: unknown, maximum?: number): unknown {
  if (err instanceof CounterError) return err;
  if (err instanceof ConditionalCheckFailedException) {
    if (maximum === undefined) return err;
    const current = err.Item?.[DYNAMO_ATTRIBUTES.COUNTER]?.N;
    return new LimitReachedError(maximum, current === undefined ? undefined : Number(current));
  }
  if (UNAVAILABLE.has((err as Error)?.name) || isNetworkError(err)) {
    return new BackendUnavailableError('DynamoDB is unavailable', { cause: err });
  }
  return err;
}
