import { BACKEND_UNAVAILABLE_MESSAGE, BackendUnavailableError, CounterError, CredentialsRejectedError, FloorReachedError, InternalError, LimitReachedError, THROTTLED_MESSAGE, ThrottledError } from './errors';

/** What a Lambda proxy integration returns to API Gateway. */
export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

const JSON_HEADERS = { 'Content-Type': 'application/json' };

export function jsonResponse(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { statusCode, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

/**
 * The one place errors become HTTP answers (the README's HTTP contract). Anything that is
 * not a `CounterError` is a 500 whose body carries no message, stack trace
 * or credential.
 */
export function errorResponse(err: unknown, context: Record<string, unknown> = {}): HttpResponse {
  const error = err instanceof CounterError ? err : new InternalError('Internal error');
  const body: Record<string, unknown> = { code: error.code, error: error.message };
  const headers: Record<string, string> = {};
  if (error instanceof LimitReachedError) {
    Object.assign(body, context, { maxCounterValue: error.maxCounterValue });
    if (error.counter !== undefined) body.counter = error.counter;
  } else if (error instanceof FloorReachedError) {
    Object.assign(body, context);
    if (error.counter !== undefined) body.counter = error.counter;
  } else if (error instanceof BackendUnavailableError) {
    headers['Retry-After'] = String(error.retryAfterSeconds);
    // A fixed public message: the driver's text (addresses, SDK detail) goes to the log line only.
    body.error = BACKEND_UNAVAILABLE_MESSAGE;
    body.backend = context.backend;
  } else if (error instanceof ThrottledError) {
    headers['Retry-After'] = String(error.retryAfterSeconds);
    // Which limit and which slot go to the log line only, as for a 503.
    body.error = THROTTLED_MESSAGE;
    body.backend = context.backend;
  } else if (error instanceof InternalError || error instanceof CredentialsRejectedError) {
    body.error = 'Internal error';
  }
  return jsonResponse(error.statusCode, body, headers);
}
