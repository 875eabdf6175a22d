/**
 * Environment contract between `DynamoCounter` and its handler (docs/architecture.md, "The contracts").
 * Plain constants only: imported by both the construct and the bundled handler.
 */
import { envMs, WorstCase, worstCaseOf } from '../../timeouts';

/**
 * Attribute names. A counter item is `{id, counter}`; `counter` is a DynamoDB
 * reserved word, always aliased. Keyed changes add marker attributes (see
 * `DYNAMO_KEYS`) and `markerBytes` to it, until their values are folded into
 * their key records (docs/dynamo.md, "Exactly-once increments").
 *
 * An `Idempotency-Key` is a key record in the same table: `{id: <key record
 * id>, boundId, by, expiresAt, expiresAtMs, result}`. `expiresAt` (epoch
 * seconds) is the table's TTL attribute; `expiresAtMs` is what the store
 * compares, to the millisecond.
 */
export const DYNAMO_ATTRIBUTES = {
  ID: 'id',
  COUNTER: 'counter',
  /** Key record: the counter id the key is bound to. */
  BOUND_ID: 'boundId',
  /** Key record: the step the key is bound to. */
  BY: 'by',
  /** Key record: the value the keyed change produced (written once it is known). */
  RESULT: 'result',
  /** Key record: end of retention, epoch seconds (rounded up): the table's TTL attribute. */
  EXPIRES_AT: 'expiresAt',
  /** Key record: end of retention, epoch milliseconds: what the store checks. */
  EXPIRES_AT_MS: 'expiresAtMs',
  /**
   * Counter item: the bytes its markers take, as the store counts them (a
   * marker's name plus the largest number DynamoDB stores); bounded by
   * `DYNAMO_DEFAULTS.markerBytesCap` in the keyed transaction's condition.
   */
  MARKER_BYTES: 'markerBytes',
  /**
   * Sharded counters (docs/dynamo.md, "Sharded counters"), conditional
   * mode: a slot's headroom, the part of its share of the maximum not yet
   * taken (share = counter + headroom).
   */
  HEADROOM: 'headroom',
  /** Sharded counters: on slot 0 (the id's own item), the width, the number of slots ever written. */
  WIDTH: 'width',
  /** Key record of a sharded counter's keyed change: the slot the change went to (replayed as it is). */
  SHARD: 'shard',
} as const;

/**
 * Names of what exactly-once adds to the table. Counter ids never contain a
 * control character (the request parser rejects them), so a key record's id
 * never equals a counter id, and a marker's name never equals `id` or
 * `counter`.
 */
export const DYNAMO_KEYS = {
  /** A key record's partition key value is this prefix followed by the key. */
  RECORD_PREFIX: '\u0001key\u0001',
  /**
   * A marker attribute on the counter item is named this prefix followed by
   * the key; its value is the value the keyed change produced, until it is
   * folded into the key record's `result`. (Markers written by earlier releases
   * also carry the separator and the record's `expiresAtMs` in base 36; they
   * are still read and folded.)
   */
  MARKER_PREFIX: '\u0001',
  MARKER_SEPARATOR: '\u0001',
  /**
   * Slot i > 0 of a sharded counter is the item whose id is the counter id,
   * this separator and i (slot 0 is the counter's own item): no counter id
   * contains a control character, so no id names another's slot.
   */
  SLOT_SEPARATOR: '\u001f',
} as const;

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
  /**
   * TCP (+ TLS) connect, as a share of the request timeout: 1 s at the
   * default 2 s. A share rather than a constant so that a raised request
   * timeout (a slow network, or a busy local machine whose event loop stalls
   * past 1 s) raises the connect bound with it.
   */
  connectTimeoutShare: 0.5,
  /** Attempts for a call that certainly was not applied (throttled, refused). */
  retryAttempts: 3,
  /** Back-off before retry n (n = 1, 2): at most 1.5 × 25 × 2^n ms. */
  retryBaseMs: 25,
  /**
   * Longest back-off after a transaction DynamoDB cancelled for a conflict,
   * or a write it refused because a transaction held the item.
   */
  conflictBackoffCapMs: 32,
  /**
   * Keyed changes: the markers on one counter item take at most this many
   * bytes (as `markerBytes` counts them); a keyed change that would pass it
   * folds markers into their key records first.
   */
  markerBytesCap: 2048,
  /** Keyed changes: bytes counted for a marker's value (DynamoDB's largest number, 38 digits: 21 bytes). */
  markerValueBytes: 21,
  /** Keyed changes: at most this many markers are folded into their records by one transaction. */
  foldsPerTransaction: 24,
  /** Keyed changes: counter ids whose markers a container remembers, to fold them in its next keyed change there. */
  rememberedIds: 512,
} as const;

/** Sum of the longest back-offs of the unkeyed path's retries (n = 1 … attempts − 1). */
function retryBackoffMs(): number {
  let backoffMs = 0;
  for (let n = 1; n < DYNAMO_DEFAULTS.retryAttempts; n++) backoffMs += 1.5 * DYNAMO_DEFAULTS.retryBaseMs * 2 ** n;
  return backoffMs;
}

/**
 * Time budget of one request (a change, keyed or not, or a read): no call of
 * it starts, and no back-off ends, after this many milliseconds; a call that
 * started just before may still run for one request timeout. The budget is
 * the worst case of three attempts minus that one request timeout, so a
 * request's worst case is `dynamoWorstCase` whatever it retries.
 */
export function dynamoBudgetMs(requestTimeoutMs: number): number {
  return (DYNAMO_DEFAULTS.retryAttempts - 1) * requestTimeoutMs + retryBackoffMs();
}

/**
 * Worst case of one request: three attempts each throttled only at the end
 * of its request timeout, plus the longest back-offs in between; equally,
 * the request's budget plus one call that started just before it ran out,
 * the same total by construction (`dynamoBudgetMs`).
 */
export function dynamoWorstCase(env: Readonly<Record<string, string | undefined>>): WorstCase | undefined {
  const requestMs = envMs(env, DYNAMO_ENV.REQUEST_TIMEOUT_MS, DYNAMO_DEFAULTS.requestTimeoutMs);
  return worstCaseOf({
    [`${DYNAMO_DEFAULTS.retryAttempts} attempts × request timeout`]: requestMs === undefined ? undefined : DYNAMO_DEFAULTS.retryAttempts * requestMs,
    'retry back-off': retryBackoffMs(),
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
