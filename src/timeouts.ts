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

/**
 * A store's worst-case answer time, computed from its function's environment
 * (its env contract) with the handler's own defaults: every bounded wait
 * running to its bound, every retry taken. `parts` names each term.
 */
export interface WorstCase {
  readonly totalMs: number;
  readonly parts: Readonly<Record<string, number>>;
}

/**
 * A millisecond setting of an environment map, or its default; undefined
 * when the value is not a plain number yet (a CDK token): the worst case is
 * then unknown at synth and not checked.
 */
export function envMs(env: Readonly<Record<string, string | undefined>>, name: string, fallback: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  return Number.isFinite(n) ? n : undefined;
}

/** Sums named parts; undefined if any part is unknown. Zero parts are left out of `parts`. */
export function worstCaseOf(parts: Record<string, number | undefined>): WorstCase | undefined {
  const known: Record<string, number> = {};
  let totalMs = 0;
  for (const [name, ms] of Object.entries(parts)) {
    if (ms === undefined) return undefined;
    if (ms === 0) continue;
    known[name] = ms;
    totalMs += ms;
  }
  return { totalMs, parts: known };
}
