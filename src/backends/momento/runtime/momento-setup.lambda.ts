import { readString } from '../../../runtime/config';
import { createSetupHandler } from '../../../runtime/custom-resource';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { ensureCache } from './momento-cache-setup';
import { createCacheClient, credentialProviderFor, readMomentoConnection } from './momento-client';

/** Resource properties the construct passes to the setup custom resource. */
export const MOMENTO_SETUP_PROPERTIES = { CACHE_NAME: 'CacheName' } as const;

// Init phase: where to connect (the secret's ARN, or a local server).
const connection = readMomentoConnection(process.env);

/**
 * Setup custom resource: creates the cache on Create and Update (idempotent).
 * Delete leaves the cache and its counters in place (see custom-resource.ts).
 */
export const handler = createSetupHandler({
  physicalId: (p) => `momento:${cacheNameOf(p)}`,
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
});

function cacheNameOf(properties: Record<string, unknown>): string {
  return readString(properties as Record<string, string | undefined>, MOMENTO_SETUP_PROPERTIES.CACHE_NAME, MOMENTO_DEFAULTS.cacheName);
}
