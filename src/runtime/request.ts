import { InvalidIdError, NotFoundError } from './errors';

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
}

export type CounterOperation = 'increment' | 'read';

export interface CounterRequest {
  readonly operation: CounterOperation;
  readonly id: string;
  /** `Idempotency-Key` header, when sent (reserved, see `WriteOptions`). */
  readonly requestKey?: string;
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
  return { operation, id: validateId(id), requestKey: header(event, 'idempotency-key') };
}

function header(event: CounterEvent, name: string): string | undefined {
  const headers = event.headers;
  if (!headers) return undefined;
  // Per request: no entries array; most headers differ from `name` in length.
  for (const key in headers) {
    if (key.length !== name.length || key.toLowerCase() !== name) continue;
    const value = headers[key];
    if (value) return value;
  }
  return undefined;
}
