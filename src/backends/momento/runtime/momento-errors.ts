import { MomentoErrorCode } from '@gomomento/sdk';
import { BackendUnavailableError, CredentialsRejectedError } from '../../../runtime/errors';

/** SDK error codes that mean "Momento cannot answer right now": 503, the client may retry. */
const UNAVAILABLE = new Set<MomentoErrorCode>([
  MomentoErrorCode.TIMEOUT_ERROR,
  MomentoErrorCode.SERVER_UNAVAILABLE,
  MomentoErrorCode.CONNECTION_ERROR,
  MomentoErrorCode.CANCELLED_ERROR,
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
 * The one place an SDK error response becomes the pipeline's error: 503 when Momento
 * is unavailable, throttled or timed out; a rejected key is a
 * `CredentialsRejectedError` (the call was refused before it ran: the
 * pipeline re-reads `secretArn` and retries once); anything else (missing
 * cache, a non-integer value) is a configuration or data fault: 500.
 */
export function toMomentoCounterError(operation: string, response: MomentoErrorResponse, secretArn?: string, _cacheName?: string): Error {
  const code = response.errorCode();
  const message = `Momento ${operation} failed: ${code}: ${response.message()}`;
  if (UNAVAILABLE.has(code)) return new BackendUnavailableError(message);
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
