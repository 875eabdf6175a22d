import { CacheClient, CreateCache } from '@gomomento/sdk';
import { readString } from '../../../runtime/config';
import { SetupHandlerOptions } from '../../../runtime/custom-resource';
import { MOMENTO_DEFAULTS, MOMENTO_SETUP_PROPERTIES } from '../momento-env';
import { createCacheClient, credentialProviderFor } from './momento-client';
import { MomentoConnection } from './momento-config';
import { toMomentoCounterError } from './momento-errors';

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
  throw toMomentoCounterError(`createCache("${cacheName}")`, resp as CreateCache.Error);
}

function cacheNameOf(properties: Record<string, unknown>): string {
  return readString(properties as Record<string, string | undefined>, MOMENTO_SETUP_PROPERTIES.CACHE_NAME, MOMENTO_DEFAULTS.cacheName);
}

/**
 * The setup custom resource: creates the cache on Create and Update
 * (idempotent). Delete leaves the cache and its counters in place (see
 * custom-resource.ts).
 */
export function momentoSetup(connection: MomentoConnection): SetupHandlerOptions {
  return {
    physicalId: (properties) => `momento:${cacheNameOf(properties)}`,
    async setup(properties) {
      const cacheName = cacheNameOf(properties);
      const client = createCacheClient(await credentialProviderFor(connection));
      try {
        const outcome = await ensureCache(client, cacheName);
        return { CacheName: cacheName, Outcome: outcome };
      } finally {
        client.close();
      }
    },
  };
}
