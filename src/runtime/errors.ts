/**
 * Typed errors of the counter pipeline. Each maps to exactly one HTTP answer
 * (see `http.ts`); stores throw these, the pipeline never matches on message
 * text.
 */
export type ErrorCode =
  | 'LIMIT_REACHED'
  | 'FLOOR_REACHED'
  | 'INVALID_ID'
  | 'INVALID_STEP'
  | 'INVALID_IDEMPOTENCY_KEY'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'NOT_FOUND'
  | 'BACKEND_UNAVAILABLE'
  | 'THROTTLED'
  | 'INTERNAL';

export abstract class CounterError extends Error {
  abstract readonly code: ErrorCode;
  abstract readonly statusCode: number;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Conditional mode: the change would take the counter above the maximum
 * (for a `+1`: it already holds the maximum); nothing was written.
 */
export class LimitReachedError extends CounterError {
  readonly code = 'LIMIT_REACHED';
  readonly statusCode = 409;
  constructor(readonly maxCounterValue: number, readonly counter?: number, readonly by: number = 1) {
    super(by === 1
      ? `Counter has reached its maximum value of: ${maxCounterValue}`
      : `Adding ${by} would take the counter above its maximum value of: ${maxCounterValue}`);
  }
}

/** Conditional mode: the decrement would take the counter below 0; nothing was written. */
export class FloorReachedError extends CounterError {
  readonly code = 'FLOOR_REACHED';
  readonly statusCode = 409;
  constructor(readonly by: number, readonly counter?: number) {
    super(`Subtracting ${-by} would take the counter below 0`);
  }
}

/**
 * A bad `by`: zero, not an integer, over `MAX_STEP`, on a GET, or (thrown
 * by a store, nothing written) a result outside JavaScript's safe integers.
 */
export class InvalidStepError extends CounterError {
  readonly code = 'INVALID_STEP';
  readonly statusCode = 400;
}

/** An `Idempotency-Key` that is empty, too long, or not printable ASCII. */
export class InvalidIdempotencyKeyError extends CounterError {
  readonly code = 'INVALID_IDEMPOTENCY_KEY';
  readonly statusCode = 400;
}

/** The key was first used for another id or another step; nothing was written. */
export class IdempotencyKeyReusedError extends CounterError {
  readonly code = 'IDEMPOTENCY_KEY_REUSED';
  readonly statusCode = 422;
  constructor() {
    super('This Idempotency-Key was already used for another counter or another step');
  }
}

export class InvalidIdError extends CounterError {
  readonly code = 'INVALID_ID';
  readonly statusCode = 400;
}

export class NotFoundError extends CounterError {
  readonly code = 'NOT_FOUND';
  readonly statusCode = 404;
  constructor(message = 'Not found') {
    super(message);
  }
}

/** The one public body text of every 503: the detail goes to the log line only. */
export const BACKEND_UNAVAILABLE_MESSAGE = 'Backend unavailable, retry later';

/**
 * The datastore could not be reached or did not answer in time (or, for a
 * compare-and-swap store, the retry budget ran out). The client may retry.
 */
export class BackendUnavailableError extends CounterError {
  readonly code = 'BACKEND_UNAVAILABLE';
  readonly statusCode = 503;
  /** Seconds the client should wait before retrying (`Retry-After`). */
  readonly retryAfterSeconds: number;
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds ?? 1;
  }
}

/** The one public body text of every datastore-throttling 429. */
export const THROTTLED_MESSAGE = 'The datastore is throttling this counter, retry later';

/**
 * The datastore refused the request for its rate (DynamoDB's throttling
 * exceptions, a transaction cancelled for throttling, Momento's rate limits):
 * nothing was applied, and the client may retry after `Retry-After`. (API
 * Gateway's own throttles are 429s too, with API Gateway's body.)
 */
export class ThrottledError extends CounterError {
  readonly code = 'THROTTLED';
  readonly statusCode = 429;
  /** Seconds the client should wait before retrying (`Retry-After`). */
  readonly retryAfterSeconds: number;
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds ?? 1;
  }
}

/**
 * The datastore rejected the credentials (Redis WRONGPASS/NOAUTH, MySQL 1045,
 * MongoDB code 18, a Momento authentication error). Authentication fails
 * before any command runs, so nothing was applied: the pipeline drops the
 * cached secret (`invalidateSecret`) and the store, and retries the request
 * once on a fresh store built from a fresh read of the secret (rotation).
 * Still rejected (or no secret to re-read): a 500, a misconfiguration.
 */
export class CredentialsRejectedError extends CounterError {
  readonly code = 'INTERNAL';
  readonly statusCode = 500;
  /** The secret the rejected credentials came from; undefined for a direct URL (nothing to re-read). */
  readonly secretArn?: string;
  constructor(message: string, options?: { cause?: unknown; secretArn?: string }) {
    super(message, options);
    this.secretArn = options?.secretArn;
  }
}

export class InternalError extends CounterError {
  readonly code = 'INTERNAL';
  readonly statusCode = 500;
}

/** Socket-level error codes that mean "the server is not reachable right now". */
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENOTFOUND', 'EAI_AGAIN', 'ESOCKETTIMEDOUT', 'PROTOCOL_CONNECTION_LOST', 'ERR_SOCKET_CLOSED',
]);

/**
 * True when `err` (or anything in its `cause` chain, or an AggregateError's
 * members) is a socket-level failure: refused, reset, timed out, unresolvable.
 * Stores use it as the common part of their "is this 503 or 500" decision.
 */
export function isNetworkError(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; errno?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && NETWORK_ERROR_CODES.has(e.code)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isNetworkError(x, depth + 1))) return true;
  return isNetworkError(e.cause, depth + 1);
}

/** The conditional-mode rejection of a change `by`: above the maximum going up, below 0 going down. */
export function boundRejection(by: number, maximum: number, counter?: number): LimitReachedError | FloorReachedError {
  return by > 0 ? new LimitReachedError(maximum, counter, by) : new FloorReachedError(by, counter);
}

/**
 * Why a store did not apply a change whose previous value was outside
 * `allowedPrevious(by, maximum)`: with a maximum the 409 (`boundRejection`),
 * without one the result would have left the safe integers (400
 * `InvalidStepError`). `counter` is the stored value, when the datastore
 * returned it.
 */
export function rejectionOf(by: number, maximum: number | undefined, counter?: number): CounterError {
  if (maximum !== undefined) return boundRejection(by, maximum, counter);
  const now = counter === undefined ? '' : ` (now ${counter})`;
  return new InvalidStepError(`Adding ${by} to the counter${now} would leave the safe integers (±${Number.MAX_SAFE_INTEGER}); nothing was written`);
}
