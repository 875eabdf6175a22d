import { CacheClient, CreateCache } from '@gomomento/sdk';
import { momentoError } from './momento-client';

/**
 * Creates the counters' cache if it does not exist. Idempotent: an existing
 * cache (ALREADY_EXISTS) is success, so every deployment may run it. A bad
 * API key fails with Momento's AUTHENTICATION_ERROR in the message, which the
 * custom-resource framework shows as the deployment's failure reason.
 */
export async function ensureCache(client: CacheClient, cacheName: string): Promise<'created' | 'exists'> {
  const resp = await client.createCache(cacheName);
  if (resp instanceof CreateCache.Success) return 'created';
  if (resp instanceof CreateCache.AlreadyExists) return 'exists';
  throw momentoError(`createCache("${cacheName}")`, resp as CreateCache.Error);
}
