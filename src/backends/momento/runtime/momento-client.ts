import { CacheClient, Configurations, CredentialProvider, MomentoLocalProvider } from '@gomomento/sdk';
import { readJsonSecret } from '../../../runtime/secrets';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { MomentoConnection } from './momento-config';

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
