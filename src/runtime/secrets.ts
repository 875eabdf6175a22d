import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { BackendUnavailableError, isNetworkError } from './errors';

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
 * Reads a Secrets Manager secret holding JSON, once per container: the
 * promise is cached by ARN, and dropped again if the read fails so the next
 * request retries. Credentials never travel through the environment.
 */
/**
 * Loads the Secrets Manager client now: a handler that will read a secret
 * calls this at module load, so the cost falls in Lambda's init phase
 * rather than in the first request.
 */
export function preloadSecretsManager(): void {
  sdk();
}

const cache = new Map<string, Promise<Record<string, unknown>>>();
let client: SecretsManagerClient | undefined;

export function readJsonSecret(secretArn: string): Promise<Record<string, unknown>> {
  let pending = cache.get(secretArn);
  if (!pending) {
    pending = fetchSecret(secretArn);
    pending.catch(() => cache.delete(secretArn));
    cache.set(secretArn, pending);
  }
  return pending;
}

async function fetchSecret(secretArn: string): Promise<Record<string, unknown>> {
  const { GetSecretValueCommand, SecretsManagerClient: Client } = sdk();
  client ??= new Client({});
  let text: string | undefined;
  try {
    const out = await client.send(new GetSecretValueCommand({ SecretId: secretArn }));
    text = out.SecretString;
  } catch (err) {
    if (isNetworkError(err)) throw new BackendUnavailableError('Secrets Manager is not reachable', { cause: err });
    throw new Error(`Cannot read secret ${secretArn}: ${(err as Error).name}`, { cause: err });
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
