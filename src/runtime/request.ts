import { InvalidIdempotencyKeyError, InvalidIdError, InvalidStepError, NotFoundError } from './errors';
import { MAX_STEP } from './store';

/** Longest id in UTF-8 bytes (DynamoDB keys and TiDB's VARCHAR(255) both hold it). */
export const MAX_ID_BYTES = 255;

// C0 controls, DEL and C1 controls.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
/** A surrogate half without its other half: not encodable as UTF-8. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Validates a counter id: 1–255 bytes of UTF-8, no control characters. Ids
 * are stored verbatim and only ever passed to a datastore as parameters.
 */
export function validateId(id: string | undefined | null): string {
  if (id === undefined || id === null || id.length === 0) {
    throw new InvalidIdError('The counter id must not be empty');
  }
  if (CONTROL_CHARACTERS.test(id)) {
    throw new InvalidIdError('The counter id must not contain control characters');
  }
  if (LONE_SURROGATE.test(id)) {
    throw new InvalidIdError('The counter id must be valid UTF-8');
  }
  const bytes = Buffer.byteLength(id, 'utf8');
  if (bytes > MAX_ID_BYTES) {
    throw new InvalidIdError(`The counter id must be at most ${MAX_ID_BYTES} bytes of UTF-8 (got ${bytes})`);
  }
  return id;
}

/** The parts of an API Gateway REST (proxy integration) event the pipeline reads. */
export interface CounterEvent {
  readonly httpMethod?: string;
  readonly pathParameters?: { readonly [name: string]: string | undefined } | null;
  readonly headers?: { readonly [name: string]: string | undefined } | null;
  readonly multiValueHeaders?: { readonly [name: string]: readonly string[] | undefined } | null;
  readonly queryStringParameters?: { readonly [name: string]: string | undefined } | null;
  readonly multiValueQueryStringParameters?: { readonly [name: string]: readonly string[] | undefined } | null;
}

export type CounterOperation = 'increment' | 'read';

export interface CounterRequest {
  readonly operation: CounterOperation;
  readonly id: string;
  /** The step of an increment (`?by=N`, default 1); 0 for a read. */
  readonly by: number;
  /** The validated `Idempotency-Key` header of an increment, when sent. */
  readonly requestKey?: string;
}

/** Longest `Idempotency-Key`, in characters (all ASCII). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;
/** 1–255 printable ASCII characters (space to tilde). */
const IDEMPOTENCY_KEY = new RegExp(`^[\\x20-\\x7e]{1,${MAX_IDEMPOTENCY_KEY_LENGTH}}$`);
/** A non-zero integer in plain decimal: no sign but `-`, no leading zeros, no exponent, no spaces. */
const STEP = /^-?[1-9][0-9]{0,15}$/;

/**
 * `?by=N`: absent → 1. Anything but one plain non-zero decimal integer with
 * |N| ≤ MAX_STEP is an INVALID_STEP (zero, `1e3`, `+5`, `1.0`, ` 5`, `05`,
 * an empty value, the parameter given twice).
 */
export function parseStep(values: readonly string[] | undefined): number {
  if (values === undefined || values.length === 0) return 1;
  if (values.length > 1) throw new InvalidStepError('The query parameter by must be given at most once');
  const raw = values[0];
  if (!STEP.test(raw)) throw new InvalidStepError(`by must be a non-zero integer between -${MAX_STEP} and ${MAX_STEP} (got "${truncate(raw)}")`);
  const by = Number(raw);
  if (Math.abs(by) > MAX_STEP) throw new InvalidStepError(`by must be a non-zero integer between -${MAX_STEP} and ${MAX_STEP} (got "${truncate(raw)}")`);
  return by;
}

/** The `Idempotency-Key` header: absent → undefined; present, it must be 1–255 printable ASCII characters. */
export function parseIdempotencyKey(values: readonly string[] | undefined): string | undefined {
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1 && new Set(values).size > 1) throw new InvalidIdempotencyKeyError('Send one Idempotency-Key header');
  const key = values[0];
  if (!IDEMPOTENCY_KEY.test(key)) {
    throw new InvalidIdempotencyKeyError(`Idempotency-Key must be 1-${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters`);
  }
  return key;
}

function truncate(text: string): string {
  return text.length > 20 ? text.slice(0, 20) + '…' : text;
}

/**
 * API Gateway event → request. REST APIs hand path parameters to Lambda still
 * percent-encoded, so the id is decoded exactly once here; a malformed
 * encoding is an invalid id.
 */
export function parseRequest(event: CounterEvent): CounterRequest {
  const method = (event.httpMethod ?? '').toUpperCase();
  let operation: CounterOperation;
  if (method === 'POST') operation = 'increment';
  else if (method === 'GET') operation = 'read';
  else throw new NotFoundError(`No route for method ${method || '(none)'}`);

  const raw = event.pathParameters?.id;
  let id: string | undefined;
  try {
    id = raw === undefined ? undefined : decodeURIComponent(raw);
  } catch {
    throw new InvalidIdError('The counter id is not valid percent-encoded UTF-8');
  }
  const validId = validateId(id);
  const steps = headerOrQuery(event.queryStringParameters, event.multiValueQueryStringParameters, 'by', false);
  if (operation === 'read') {
    if (steps !== undefined) throw new InvalidStepError('by is only accepted on POST');
    return { operation, id: validId, by: 0 };
  }
  const by = parseStep(steps);
  const requestKey = parseIdempotencyKey(headerOrQuery(event.headers, event.multiValueHeaders, 'idempotency-key', true));
  return requestKey === undefined ? { operation, id: validId, by } : { operation, id: validId, by, requestKey };
}

/**
 * Every value of a header (case-insensitive name) or query parameter (exact
 * name). API Gateway's REST proxy event carries both a single-value map (the
 * last value) and a multi-value map; the multi-value one wins when present.
 */
function headerOrQuery(
  single: { readonly [name: string]: string | undefined } | null | undefined,
  multi: { readonly [name: string]: readonly string[] | undefined } | null | undefined,
  name: string,
  caseInsensitive: boolean,
): readonly string[] | undefined {
  const find = <T>(map: { readonly [name: string]: T | undefined } | null | undefined): T | undefined => {
    if (!map) return undefined;
    if (!caseInsensitive) return map[name];
    // Per request: no entries array; most names differ from `name` in length.
    for (const key in map) {
      if (key.length === name.length && key.toLowerCase() === name) return map[key];
    }
    return undefined;
  };
  const all = find(multi);
  if (all !== undefined) return all;
  const one = find(single);
  return one === undefined || one === null ? undefined : [one];
}
