import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { BackendUnavailableError, isNetworkError } from './errors';
import { SECRET_READ_BOUNDS, SECRET_REFRESH_MIN_INTERVAL_MS } from '../timeouts';

/**
 * The Secrets Manager client (part of the Lambda runtime's AWS SDK) costs
 * tens of milliseconds of module load: it is required on the first secret
 * read, so a function that reads none (a local run with a direct URL) never
 * pays for it, and importing this module stays free.
 */
type SecretsManagerSdk = typeof import('@aws-sdk/client-secrets-manager');
function sdk(): SecretsManagerSdk {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@aws-sdk/client-secrets-manager');
}

/**
 * Loads the Secrets Manager client now: a handler that will read a secret
 * calls this at module load, so the cost falls in Lambda's init phase
 * rather than in the first request.
 */
export function preloadSecretsManager(): void {
  sdk();
}

const cache = new Map<string, Promise<Record<string, unknown>>>();
/** When each secret was last dropped by `invalidateSecret` (refresh rate bound). */
const lastInvalidated = new Map<string, number>();
let client: SecretsManagerClient | undefined;

/**
 * Reads a Secrets Manager secret holding JSON, once per container: the
 * promise is cached by ARN, and dropped again if the read fails so the next
 * request retries. Credentials never travel through the environment.
 *
 * The read is bounded (SECRET_READ_BOUNDS: connect 1 s, whole call 1.5 s,
 * one attempt): an endpoint that is unreachable, refuses, or accepts and
 * never answers gives `BackendUnavailableError` (503) well before the
 * function timeout, never a hang.
 */
export function readJsonSecret(secretArn: string): Promise<Record<string, unknown>> {
  let pending = cache.get(secretArn);
  if (!pending) {
    pending = fetchSecret(secretArn);
    pending.catch(() => {
      if (cache.get(secretArn) === pending) cache.delete(secretArn);
    });
    cache.set(secretArn, pending);
  }
  return pending;
}

/**
 * Drops the cached value of a secret so the next `readJsonSecret` reads it
 * again: call it when the datastore rejected the credentials (the secret was
 * rotated). Rate-bounded: returns false, and keeps the cache, when this
 * secret was already dropped less than `minIntervalMs` ago.
 */
export function invalidateSecret(secretArn: string, minIntervalMs: number = SECRET_REFRESH_MIN_INTERVAL_MS): boolean {
  const now = Date.now();
  const last = lastInvalidated.get(secretArn);
  if (last !== undefined && now - last < minIntervalMs) return false;
  lastInvalidated.set(secretArn, now);
  cache.delete(secretArn);
  return true;
}

/** SDK error names that mean "Secrets Manager cannot answer right now": 503. */
const UNAVAILABLE = new Set([
  'TimeoutError', 'RequestTimeout', 'AbortError', 'ThrottlingException', 'TooManyRequestsException',
  'InternalServiceError', 'InternalServiceErrorException', 'ServiceUnavailable', 'ServiceUnavailableException',
]);

async function fetchSecret(secretArn: string): Promise<Record<string, unknown>> {
  const { GetSecretValueCommand, SecretsManagerClient: Client } = sdk();
  client ??= new Client({
    maxAttempts: SECRET_READ_BOUNDS.maxAttempts,
    // Options object rather than a NodeHttpHandler instance: the SDK builds
    // the handler itself, so the bundle needs no @smithy import of its own.
    requestHandler: {
      connectionTimeout: SECRET_READ_BOUNDS.connectTimeoutMs,
      requestTimeout: SECRET_READ_BOUNDS.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });
  let text: string | undefined;
  // The abort is the hard bound, whatever the SDK version in the runtime
  // does with the handler options above.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), SECRET_READ_BOUNDS.requestTimeoutMs * SECRET_READ_BOUNDS.maxAttempts + 100);
  try {
    const out = await client.send(new GetSecretValueCommand({ SecretId: secretArn }), { abortSignal: abort.signal });
    text = out.SecretString;
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (abort.signal.aborted || isNetworkError(err) || UNAVAILABLE.has(e?.name ?? '') || (e?.$metadata?.httpStatusCode ?? 0) >= 500) {
      throw new BackendUnavailableError(`Secrets Manager did not answer (${e?.name ?? 'error'})`, { cause: err });
    }
    throw new Error(`Cannot read secret ${secretArn}: ${e?.name ?? 'error'}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
  if (text === undefined) throw new Error(`Secret ${secretArn} has no SecretString`);
  try {
    const value = JSON.parse(text);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value;
  } catch {
    // fall through: never echo the secret's text in an error
  }
  throw new Error(`Secret ${secretArn} is not a JSON object`);
}

/** Pick a string field of a secret, failing with a message that names the field, not its value. */
export function secretField(secret: Record<string, unknown>, name: string, secretName = 'secret'): string {
  const value = secret[name];
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string' || value === '') throw new Error(`The ${secretName} has no "${name}" field`);
  return value;
}
