/**
 * Environment contract between `DynamoCounter` and its handler (docs/architecture.md, "The contracts").
 * Plain constants only: imported by both the construct and the bundled handler.
 */
import { envMs, WorstCase, worstCaseOf } from '../../timeouts';

/** Attribute names of a counter item. `counter` is a DynamoDB reserved word: always aliased. */
export const DYNAMO_ATTRIBUTES = { ID: 'id', COUNTER: 'counter' } as const;

/** The variables the counter function's environment carries (the contract proper). */
export const DYNAMO_ENV = {
  /** Name of the counters table (partition key `id`, string). Required. */
  TABLE_NAME: 'COUNTER_TABLE_NAME',
  /**
   * Optional endpoint override, honoured by the AWS SDK itself; set only for
   * local engines (DynamoDB Local). Never set by the construct.
   */
  ENDPOINT: 'AWS_ENDPOINT_URL_DYNAMODB',
  /** Optional: milliseconds one DynamoDB call may take before a 503 (default 2000). */
  REQUEST_TIMEOUT_MS: 'DYNAMO_REQUEST_TIMEOUT_MS',
} as const;

/** Bounds of the handler's DynamoDB client (dynamo-counter-store.ts). */
export const DYNAMO_DEFAULTS = {
  /** One call, connect included. */
  requestTimeoutMs: 2000,
  /** TCP (+ TLS) connect. */
  connectTimeoutMs: 1000,
  /** Attempts for a call that certainly was not applied (throttled, refused). */
  retryAttempts: 3,
  /** Back-off before retry n (n = 1, 2): at most 1.5 × 25 × 2^n ms. */
  retryBaseMs: 25,
} as const;

/**
 * Worst case of one request: every attempt is throttled only at the end of
 * its request timeout, plus the longest back-offs in between.
 */
export function dynamoWorstCase(env: Readonly<Record<string, string | undefined>>): WorstCase | undefined {
  const requestMs = envMs(env, DYNAMO_ENV.REQUEST_TIMEOUT_MS, DYNAMO_DEFAULTS.requestTimeoutMs);
  let backoffMs = 0;
  for (let n = 1; n < DYNAMO_DEFAULTS.retryAttempts; n++) backoffMs += 1.5 * DYNAMO_DEFAULTS.retryBaseMs * 2 ** n;
  return worstCaseOf({
    [`${DYNAMO_DEFAULTS.retryAttempts} attempts × request timeout`]: requestMs === undefined ? undefined : DYNAMO_DEFAULTS.retryAttempts * requestMs,
    'retry back-off': backoffMs,
  });
}

/**
 * Bundle entries of this backend's handlers: the path below `src/` (and below
 * `assets/`, where projen's esbuild step writes `index.js`), without `.ts`.
 * The constructs, the local fixtures and the tests name bundles only through
 * these; `test/project/bundle-entries.test.ts` checks them against the entries on disk.
 */
export const DYNAMO_BUNDLES = {
  /** The counter function's handler: `src/backends/dynamo/runtime/dynamo-counter.lambda.ts`. */
  counter: 'backends/dynamo/runtime/dynamo-counter.lambda',
} as const;
