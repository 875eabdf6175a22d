import { CacheClient, Configurations, CredentialProvider, MomentoErrorCode, MomentoLocalProvider } from '@gomomento/sdk';
import { ConfigError, Env, readOptionalString } from '../../../runtime/config';
import { BackendUnavailableError, CredentialsRejectedError } from '../../../runtime/errors';
import { readJsonSecret } from '../../../runtime/secrets';
import { MOMENTO_DEFAULTS, MOMENTO_ENV } from '../momento-env';

/**
 * Where the Momento client connects: the real service, with a key read from
 * Secrets Manager, or a local protocol server (tests and local runs).
 */
export type MomentoConnection =
  | { readonly kind: 'secret'; readonly secretArn: string }
  | { readonly kind: 'local'; readonly hostname: string; readonly port: number; readonly secretArn?: string };

/** The ARN the connection's key comes from, if any (what a rotation re-reads). */
export function secretArnOf(connection: MomentoConnection): string | undefined {
  return connection.secretArn;
}

export function readMomentoConnection(env: Env): MomentoConnection {
  const local = readOptionalString(env, MOMENTO_ENV.LOCAL_ENDPOINT);
  if (local) {
    const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(local);
    const port = match ? Number(match[2]) : NaN;
    // Port 0 would silently mean 8080 to the SDK: refuse it.
    if (!match || !(port >= 1 && port <= 65535)) {
      throw new ConfigError(`${MOMENTO_ENV.LOCAL_ENDPOINT} must be host:port with a port 1–65535 (got "${local}")`);
    }
    // A secret ARN next to a local endpoint: its apiKey is sent as the token
    // the local server checks (rotation tests). Otherwise no key at all.
    return { kind: 'local', hostname: match[1], port, secretArn: readOptionalString(env, MOMENTO_ENV.API_KEY_SECRET_ARN) };
  }
  const secretArn = readOptionalString(env, MOMENTO_ENV.API_KEY_SECRET_ARN);
  if (!secretArn) {
    throw new ConfigError(`${MOMENTO_ENV.API_KEY_SECRET_ARN} must be set (or ${MOMENTO_ENV.LOCAL_ENDPOINT} for a local server)`);
  }
  return { kind: 'secret', secretArn };
}

/**
 * The credential provider for a secret's JSON. Two shapes are accepted:
 *
 * - a v2 API key (what the Momento console issues today): `{"apiKey", "endpoint"}`;
 *   v2 keys do not name their endpoint, so the secret must;
 * - the legacy `momento_key_info.json` (`{"apiKey", "refreshToken",
 *   "validUntil", "restEndpoint"}`): the legacy key encodes its own
 *   endpoints, which `fromString` decodes. The refresh token is not used:
 *   rotate the secret before `validUntil`.
 *
 * Errors name the field that is wrong, never the key.
 */
export function credentialProviderFromSecret(secret: Record<string, unknown>): CredentialProvider {
  const apiKey = secret.apiKey;
  if (typeof apiKey !== 'string' || apiKey === '') {
    throw new Error('The Momento API key secret has no "apiKey" field');
  }
  const endpoint = secret.endpoint;
  try {
    if (typeof endpoint === 'string' && endpoint !== '') {
      return CredentialProvider.fromApiKeyV2({ apiKey, endpoint });
    }
    return CredentialProvider.fromString({ apiKey });
  } catch (err) {
    // The SDK's messages name the key type, not the key: safe to pass on.
    const kind = typeof endpoint === 'string' && endpoint !== '' ? 'a v2 key with "endpoint"' : 'a legacy key (no "endpoint")';
    throw new Error(`The Momento API key secret holds ${kind} the SDK rejects: ${(err as Error).message}`);
  }
}

/** Resolves the connection to a credential provider (reads the secret once per container). */
export async function credentialProviderFor(connection: MomentoConnection): Promise<CredentialProvider> {
  if (connection.kind === 'local') {
    if (!connection.secretArn) return CredentialProvider.forMomentoLocal({ hostname: connection.hostname, port: connection.port });
    const apiKey = (await readJsonSecret(connection.secretArn)).apiKey;
    if (typeof apiKey !== 'string' || apiKey === '') throw new Error('The Momento API key secret has no "apiKey" field');
    return new LocalTokenProvider(connection.hostname, connection.port, apiKey);
  }
  return credentialProviderFromSecret(await readJsonSecret(connection.secretArn));
}

/** A local-server provider that sends a key as its token, as a real key would be sent. */
class LocalTokenProvider extends MomentoLocalProvider {
  constructor(hostname: string, port: number, private readonly token: string) {
    super({ hostname, port });
  }
  getAuthToken(): string {
    return this.token;
  }
}

/**
 * A cache client with the SDK's Lambda configuration (1.1 s deadline, one
 * channel, idle connections refreshed before the NLB's 350 s timeout). The
 * client connects lazily on the first call, so creating it costs no round trip.
 */
export function createCacheClient(
  credentialProvider: CredentialProvider,
  defaultTtlSeconds: number = MOMENTO_DEFAULTS.ttlSeconds,
  clientTimeoutMs?: number,
): CacheClient {
  const lambda = Configurations.Lambda.latest();
  return new CacheClient({
    configuration: clientTimeoutMs ? lambda.withClientTimeoutMillis(clientTimeoutMs) : lambda,
    credentialProvider,
    defaultTtlSeconds,
  });
}

/** SDK error codes that mean "Momento cannot answer right now": 503, the client may retry. */
const UNAVAILABLE = new Set<MomentoErrorCode>([
  MomentoErrorCode.TIMEOUT_ERROR,
  MomentoErrorCode.SERVER_UNAVAILABLE,
  MomentoErrorCode.CONNECTION_ERROR,
  MomentoErrorCode.CANCELLED_ERROR,
  MomentoErrorCode.LIMIT_EXCEEDED_ERROR,
  MomentoErrorCode.INTERNAL_SERVER_ERROR,
  MomentoErrorCode.CLIENT_RESOURCE_EXHAUSTED,
]);

/** What every SDK error response offers. */
export interface MomentoErrorResponse {
  errorCode(): MomentoErrorCode;
  message(): string;
}

/**
 * Turns an SDK error response into the pipeline's error: 503 when Momento
 * is unavailable, throttled or timed out; a rejected key is a
 * `CredentialsRejectedError` (the call was refused before it ran: the
 * pipeline re-reads `secretArn` and retries once); anything else (missing
 * cache, a non-integer value) is a configuration or data fault: 500.
 */
export function momentoError(operation: string, response: MomentoErrorResponse, secretArn?: string): Error {
  const code = response.errorCode();
  const message = `Momento ${operation} failed: ${code}: ${response.message()}`;
  if (UNAVAILABLE.has(code)) return new BackendUnavailableError(message);
  if (code === MomentoErrorCode.AUTHENTICATION_ERROR) return new CredentialsRejectedError(message, { secretArn });
  const err = new Error(message);
  err.name = 'MomentoError';
  return err;
}
