import { CacheClient, CacheIncrement, Configurations, CredentialProvider, DeleteCache, MomentoErrorCode } from '@gomomento/sdk';
import { MOMENTO_BUNDLES, MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { KEY_RECORD_PREFIX } from '../../src/backends/momento/runtime/momento-counter-store';
import { Engine } from '../engines/engine';
import { acquireMomento, MomentoEngine } from '../engines/momento';
import { loadBundledHandler } from '../lambda-container';
import { BackendFixture } from './fixture';
import { counterIdOf } from '../../src/runtime/shards';

/** What the setup handler answers the custom-resource framework. */
export interface SetupAnswer {
  PhysicalResourceId: string;
  Data?: Record<string, string>;
}

/** Runs the bundled setup handler (what the custom resource runs on AWS) to create a cache. */
export async function runMomentoSetup(env: Record<string, string>, cacheName: string, requestType: 'Create' | 'Update' = 'Create'): Promise<SetupAnswer> {
  const handler = loadBundledHandler(MOMENTO_BUNDLES.setup, env) as unknown as (event: unknown) => Promise<SetupAnswer>;
  return handler({ RequestType: requestType, ResourceProperties: { CacheName: cacheName } });
}

/** An SDK client of the local Momento server, beside the handlers (bare loops, tests reading items raw). */
export function localCacheClient(engine: Engine): CacheClient {
  const { hostname, port } = endpointOf(engine);
  return new CacheClient({
    configuration: Configurations.Lambda.latest(),
    credentialProvider: CredentialProvider.forMomentoLocal({ hostname, port }),
    defaultTtlSeconds: 3600,
  });
}

function endpointOf(engine: Engine): { hostname: string; port: number } {
  const e = engine as MomentoEngine;
  return { hostname: e.hostname, port: e.port };
}

/**
 * Momento on a local Momento protocol server: one cache per namespace,
 * created through the bundled setup handler, as the custom resource would.
 */
export const momentoFixture: BackendFixture = {
  backend: 'momento',
  entry: MOMENTO_BUNDLES.counter,
  acquire: acquireMomento,
  async prepare(engine, namespace) {
    const { hostname, port } = endpointOf(engine);
    const env = {
      [MOMENTO_ENV.LOCAL_ENDPOINT]: `${hostname}:${port}`,
      [MOMENTO_ENV.CACHE_NAME]: namespace,
      // The CAS time budget (default 5 s) is sized for Momento's ~1 ms round
      // trips. The in-process server shares this process and two busy cores
      // with every client: under 20–32 contending callers a round trip takes
      // 20–50 ms, so 5 s is only ~100 rounds and the slowest requests ran
      // out of time (503) on a loaded machine. Locally the attempt bound
      // (200) is the one that applies.
      [MOMENTO_ENV.CAS_BUDGET_MS]: process.env[MOMENTO_ENV.CAS_BUDGET_MS] ?? '30000',
      // Same reason for the SDK's per-call deadline (1.1 s in the Lambda
      // configuration): on a loaded CI machine a call past it answers 503
      // although the write may still be applied, which the exact-count
      // assertions cannot tell from a lost update.
      [MOMENTO_ENV.CLIENT_TIMEOUT_MS]: process.env[MOMENTO_ENV.CLIENT_TIMEOUT_MS] ?? '15000',
      // And for the init-phase channel connect (1 s on Lambda): eight
      // containers connecting at once to a server in the same busy process
      // missed it in CI, and requests waiting on it answered 503.
      [MOMENTO_ENV.CONNECT_TIMEOUT_MS]: process.env[MOMENTO_ENV.CONNECT_TIMEOUT_MS] ?? '15000',
    };
    await runMomentoSetup(env, namespace); // idempotent: an existing cache is success
    return env;
  },
  /**
   * Deletes the namespace's cache: its counters and its key records. Only
   * for a server we did not start (MOMENTO_LOCAL_URL): the in-process one
   * vanishes with the run.
   */
  async dispose(engine, namespace) {
    if ((engine as MomentoEngine).server) return;
    const { hostname, port } = endpointOf(engine);
    const client = new CacheClient({
      configuration: Configurations.Lambda.latest(),
      credentialProvider: CredentialProvider.forMomentoLocal({ hostname, port }),
      defaultTtlSeconds: 60,
    });
    try {
      const resp = await client.deleteCache(namespace);
      if (resp instanceof DeleteCache.Error && resp.errorCode() !== MomentoErrorCode.CACHE_NOT_FOUND_ERROR) throw new Error(`momento: deleting cache ${namespace}: ${resp.message()}`);
    } finally {
      client.close();
    }
  },
  async keys(engine, namespace) {
    const server = (engine as MomentoEngine).server;
    // The Momento API has no key listing: only our in-process server can say.
    if (!server) throw new Error(`momento: listing a cache's keys needs the in-process Momento server (${engine.url} is another)`);
    const keys = server.keys(namespace);
    if (!keys) throw new Error(`momento: no cache ${namespace}`);
    // Counters only: an Idempotency-Key's record is an item of its own,
    // named with a control-character prefix no counter id can contain; a
    // sharded id's slot i > 0 (`<id>\u001f<i>`) is listed as its id, once.
    const ids = keys.filter((key) => !key.startsWith(KEY_RECORD_PREFIX)).map(counterIdOf);
    return [...new Set(ids)];
  },
  async bareClient(engine, env) {
    const client = localCacheClient(engine);
    const cacheName = env[MOMENTO_ENV.CACHE_NAME];
    return {
      async increment(id: string) {
        const resp = await client.increment(cacheName, id, 1);
        if (resp instanceof CacheIncrement.Success) return resp.value();
        throw new Error(`increment failed: ${(resp as CacheIncrement.Error).message()}`);
      },
      async close() {
        client.close();
      },
    };
  },
  serverPort: (engine) => endpointOf(engine).port,
  /**
   * The in-process server's own count of the data calls that name this
   * environment's cache (every call, failed ones included). Not available
   * for a server we did not start (MOMENTO_LOCAL_URL).
   */
  async callCounter(engine, env) {
    const server = (engine as MomentoEngine).server;
    if (!server) throw new Error(`momento: counting calls needs the in-process Momento server (${engine.url} is another)`);
    const cacheName = env[MOMENTO_ENV.CACHE_NAME];
    let base = server.callsByCache.get(cacheName) ?? 0;
    return {
      env,
      count: () => (server.callsByCache.get(cacheName) ?? 0) - base,
      reset: () => {
        base = server.callsByCache.get(cacheName) ?? 0;
      },
      close: async () => undefined,
    };
  },
};
