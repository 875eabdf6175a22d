import { MomentoErrorCode } from '@gomomento/sdk';
import { BackendUnavailableError, CredentialsRejectedError, ThrottledError } from '../../../runtime/errors';

/** SDK error codes that mean "Momento cannot answer right now": 503, the client may retry. */
const UNAVAILABLE = new Set<MomentoErrorCode>([
  MomentoErrorCode.TIMEOUT_ERROR,
  MomentoErrorCode.SERVER_UNAVAILABLE,
  MomentoErrorCode.CONNECTION_ERROR,
  MomentoErrorCode.CANCELLED_ERROR,
  // A limit other than a rate (request or item size): as before, a 503.
  MomentoErrorCode.LIMIT_EXCEEDED_ERROR,
  MomentoErrorCode.INTERNAL_SERVER_ERROR,
  MomentoErrorCode.CLIENT_RESOURCE_EXHAUSTED,
]);

/** What every SDK error response offers. */
export interface MomentoErrorResponse {
  errorCode(): MomentoErrorCode;
  message(): string;
}

/**
 * The SDK's texts for the two rate limits among its LIMIT_EXCEEDED errors
 * (the `err` trailer `operations_rate_limit_exceeded` or
 * `throughput_rate_limit_exceeded`, which the SDK turns into these message
 * wrappers); the size limits share the error code and are not throttles.
 */
const RATE_LIMIT_MESSAGES = ['Request rate limit exceeded', 'Bandwidth limit exceeded'];

/**
 * The one place an SDK error response becomes the pipeline's error:
 *
 * - Momento's rate limits (operations or throughput per second): 429
 *   `THROTTLED` with `Retry-After`, nothing applied;
 * - Momento unavailable, timed out or another limit: 503;
 * - a missing cache: 503, with a log line that says the setup has not run
 *   (a deployment whose setup resource failed, or a cache deleted by hand);
 * - a rejected key: `CredentialsRejectedError` (the call was refused before
 *   it ran: the pipeline re-reads `secretArn` and retries once);
 * - anything else (a non-integer value, a TTL over the cache's limit) is a
 *   configuration or data fault: 500.
 */
export function toMomentoCounterError(operation: string, response: MomentoErrorResponse, secretArn?: string, cacheName?: string): Error {
  const code = response.errorCode();
  const message = `Momento ${operation} failed: ${code}: ${response.message()}`;
  if (code === MomentoErrorCode.LIMIT_EXCEEDED_ERROR && RATE_LIMIT_MESSAGES.some((m) => response.message().includes(m))) {
    return new ThrottledError(`${message} (Momento's rate limit for the account or cache; nothing applied)`, { retryAfterSeconds: 1 });
  }
  if (UNAVAILABLE.has(code)) return new BackendUnavailableError(message);
  if (code === MomentoErrorCode.CACHE_NOT_FOUND_ERROR) {
    return new BackendUnavailableError(
      `Momento cache "${cacheName ?? '?'}" does not exist: the setup resource (Custom::MomentoSetup) that creates it has not run `
      + `or failed, or the cache was deleted; redeploy the stack to run it (${message})`,
      { retryAfterSeconds: 30 },
    );
  }
  if (code === MomentoErrorCode.AUTHENTICATION_ERROR) return new CredentialsRejectedError(message, { secretArn });
  const err = new Error(message);
  err.name = 'MomentoError';
  return err;
}

/**
 * The init-phase channel connect failed (the SDK's plain Error, "Unable to
 * connect to Momento …"): the service is not reachable now, a 503 for a
 * request that waited for it.
 */
export function toMomentoConnectError(err: unknown): Error {
  return new BackendUnavailableError('Momento is unreachable (init-phase connect)', { cause: err });
}
