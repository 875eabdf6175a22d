/**
 * Time bounds shared by the handlers and by the constructs' synth-time check
 * of each store's worst case against the function timeout (issue 11, point 7).
 * Plain constants only: imported by the backends' env contracts too.
 */

/** Bounds of one Secrets Manager `GetSecretValue` (secrets.ts). */
export const SECRET_READ_BOUNDS = {
  /** TCP + TLS connect to the Secrets Manager endpoint. */
  connectTimeoutMs: 1000,
  /** The whole call, connect included; the client is aborted past it. */
  requestTimeoutMs: 1500,
  /** One attempt: an outage answers 503 at once and the client retries. */
  maxAttempts: 1,
} as const;

/** Worst case of one secret read: every attempt runs to its request timeout. */
export function secretReadWorstCaseMs(): number {
  return SECRET_READ_BOUNDS.maxAttempts * SECRET_READ_BOUNDS.requestTimeoutMs;
}

/**
 * After an authentication failure a container re-reads its secret at most
 * once per this interval (per secret): a wrong secret cannot turn every
 * request into a Secrets Manager call.
 */
export const SECRET_REFRESH_MIN_INTERVAL_MS = 30_000;

/**
 * Margin kept between a store's worst case and the function timeout: module
 * load, the pipeline itself and the log line.
 */
export const FUNCTION_TIMEOUT_MARGIN_MS = 1000;
