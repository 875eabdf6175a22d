/**
 * The Momento setup custom resource (bundled handler, real SDK, local
 * server), the API key secret shapes, and store behaviours specific to
 * Momento: TTL, the integer string format shared with `increment`.
 */
import { CacheClient, CacheGet, Configurations, CredentialProvider, ListCaches } from '@gomomento/sdk';
import { runMomentoSetup } from '../../local/backends/momento';
import { MomentoLocalServer, TokenProvider } from '../../local/engines/momento-server';
import { loadBundledHandler } from '../../local/lambda-container';
import { MOMENTO_BUNDLES, MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { credentialProviderFromSecret } from '../../src/backends/momento/runtime/momento-client';
import { ensureCache } from '../../src/backends/momento/runtime/momento-setup';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import { call } from '../kit/conformance';


function clientFor(server: MomentoLocalServer, credentialProvider?: CredentialProvider): CacheClient {
  return new CacheClient({
    configuration: Configurations.Lambda.latest(),
    credentialProvider: credentialProvider ?? CredentialProvider.forMomentoLocal({ hostname: server.host, port: server.port }),
    defaultTtlSeconds: 60,
  });
}

async function cacheNames(client: CacheClient): Promise<string[]> {
  const resp = await client.listCaches();
  expect(resp).toBeInstanceOf(ListCaches.Success);
  return (resp as ListCaches.Success).getCaches().map((c) => c.getName());
}

let server: MomentoLocalServer;
let client: CacheClient;
let localEnv: Record<string, string>;

beforeAll(async () => {
  server = await MomentoLocalServer.start();
  client = clientFor(server);
  localEnv = { [MOMENTO_ENV.LOCAL_ENDPOINT]: `${server.host}:${server.port}` };
});
afterAll(async () => {
  client?.close();
  await server?.stop();
});

describe('setup custom resource (bundled handler)', () => {
  test('Create makes the cache; a second Create and an Update succeed on the existing cache with the same physical id', async () => {
    const first = await runMomentoSetup(localEnv, 'setup-idempotent');
    expect(first).toEqual({ PhysicalResourceId: 'momento:setup-idempotent', Data: { CacheName: 'setup-idempotent', Outcome: 'created' } });
    const again = await runMomentoSetup(localEnv, 'setup-idempotent');
    expect(again).toEqual({ PhysicalResourceId: 'momento:setup-idempotent', Data: { CacheName: 'setup-idempotent', Outcome: 'exists' } });
    const update = await runMomentoSetup(localEnv, 'setup-idempotent', 'Update');
    expect(update.Data?.Outcome).toBe('exists');
    expect((await cacheNames(client)).filter((n) => n === 'setup-idempotent')).toHaveLength(1);
  });

  test('Delete leaves the cache and its counters in place', async () => {
    await runMomentoSetup(localEnv, 'setup-delete');
    await client.set('setup-delete', 'votes', '7');
    const handler = loadBundledHandler(MOMENTO_BUNDLES.setup, localEnv) as unknown as (e: unknown) => Promise<unknown>;
    await expect(handler({ RequestType: 'Delete', PhysicalResourceId: 'momento:setup-delete', ResourceProperties: { CacheName: 'setup-delete' } }))
      .resolves.toEqual({ PhysicalResourceId: 'momento:setup-delete' });
    expect(await cacheNames(client)).toContain('setup-delete');
    expect(((await client.get('setup-delete', 'votes')) as CacheGet.Hit).valueString()).toBe('7');
  });

  describe('a bad API key fails clearly', () => {
    let secured: MomentoLocalServer;
    beforeAll(async () => {
      secured = await MomentoLocalServer.start({ authToken: 'the-right-key' });
    });
    afterAll(async () => {
      await secured?.stop();
    });

    test('bundled setup handler without the key: the deployment error names AUTHENTICATION_ERROR and the cache', async () => {
      await expect(runMomentoSetup({ [MOMENTO_ENV.LOCAL_ENDPOINT]: `${secured.host}:${secured.port}` }, 'counters'))
        .rejects.toThrow(/Momento createCache\("counters"\) failed: AUTHENTICATION_ERROR/);
    });

    test('ensureCache with a wrong key throws AUTHENTICATION_ERROR (never a silent success); with the right key it creates', async () => {
      const wrong = clientFor(secured, new TokenProvider(secured.host, secured.port, 'a-wrong-key'));
      const right = clientFor(secured, new TokenProvider(secured.host, secured.port, 'the-right-key'));
      try {
        await expect(ensureCache(wrong, 'counters')).rejects.toThrow(/AUTHENTICATION_ERROR/);
        await expect(ensureCache(right, 'counters')).resolves.toBe('created');
        await expect(ensureCache(right, 'counters')).resolves.toBe('exists');
      } finally {
        wrong.close();
        right.close();
      }
    });
  });
});

describe('API key secret shapes', () => {
  const b64url = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
  // A v2 key is a JWT whose claims carry t = "g"; the SDK checks only that.
  const v2Key = `${b64url({ alg: 'HS256' })}.${b64url({ t: 'g', id: 'key-id' })}.c2lnbmF0dXJl`;
  // A legacy (v1) key is base64 JSON naming its own endpoint.
  const legacyKey = Buffer.from(JSON.stringify({ api_key: 'legacy-secret-value', endpoint: 'cell-1.example.momentohq.com' })).toString('base64');

  test('v2 {"apiKey","endpoint"} → fromApiKeyV2 endpoints', () => {
    const provider = credentialProviderFromSecret({ apiKey: v2Key, endpoint: 'cell-9.example.momentohq.com' });
    expect(provider.getCacheEndpoint()).toBe('cache.cell-9.example.momentohq.com');
    expect(provider.getControlEndpoint()).toBe('control.cell-9.example.momentohq.com');
    expect(provider.getAuthToken()).toBe(v2Key);
  });

  test('legacy momento_key_info.json {apiKey, refreshToken, validUntil, restEndpoint} → the key\'s own endpoints', () => {
    const provider = credentialProviderFromSecret({
      apiKey: legacyKey, refreshToken: 'refresh', validUntil: 1893456000, restEndpoint: 'https://api.cache.cell-1.example.momentohq.com',
    });
    expect(provider.getCacheEndpoint()).toBe('cache.cell-1.example.momentohq.com');
    expect(provider.getAuthToken()).toBe('legacy-secret-value');
  });

  test('malformed secrets fail with a message naming the field, never the key', () => {
    expect(() => credentialProviderFromSecret({ endpoint: 'x' })).toThrow('The Momento API key secret has no "apiKey" field');
    let message = '';
    try {
      credentialProviderFromSecret({ apiKey: 'not-a-key-at-all-SECRETVALUE' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/legacy key .* the SDK rejects/);
    expect(message).not.toContain('SECRETVALUE');
    // A legacy key given with an endpoint is refused as a v2 key, not used blindly.
    expect(() => credentialProviderFromSecret({ apiKey: legacyKey, endpoint: 'x.example.com' })).toThrow(/v2 key with "endpoint" the SDK rejects/);
  });
});

describe('store behaviours specific to Momento (bundled counter handler)', () => {
  function handlerFor(cacheName: string, extra: Record<string, string>) {
    return loadBundledHandler(MOMENTO_BUNDLES.counter, {
      ...localEnv, [MOMENTO_ENV.CACHE_NAME]: cacheName, ATOMIC_COUNTER_LOG: 'off', ...extra,
    });
  }

  test('values are decimal strings, so conditional and unconditional writes (and Momento increment) share one counter', async () => {
    await runMomentoSetup(localEnv, 'store-format');
    const unconditional = handlerFor('store-format', { USE_CONDITIONAL_WRITES: 'false' });
    const conditional = handlerFor('store-format', { USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '5' });
    expect((await call(conditional, 'POST', 'momento', 'mixed')).body.counter).toBe(1);
    expect((await call(unconditional, 'POST', 'momento', 'mixed')).body.counter).toBe(2);
    expect((await call(conditional, 'POST', 'momento', 'mixed')).body.counter).toBe(3);
    expect(((await client.get('store-format', 'mixed')) as CacheGet.Hit).valueString()).toBe('3');
  });

  test('every write sets the TTL: a counter resets once it expires (conditional and unconditional)', async () => {
    await runMomentoSetup(localEnv, 'store-ttl');
    const unconditional = handlerFor('store-ttl', { USE_CONDITIONAL_WRITES: 'false', [MOMENTO_ENV.TTL_SECONDS]: '1' });
    const conditional = handlerFor('store-ttl', { USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '2', [MOMENTO_ENV.TTL_SECONDS]: '1' });
    await call(unconditional, 'POST', 'momento', 'u');
    await call(unconditional, 'POST', 'momento', 'u');
    await call(conditional, 'POST', 'momento', 'c');
    await call(conditional, 'POST', 'momento', 'c');
    expect((await call(conditional, 'POST', 'momento', 'c')).status).toBe(409);
    await new Promise((r) => setTimeout(r, 1200));
    expect((await call(unconditional, 'GET', 'momento', 'u')).body.counter).toBe(0);
    expect((await call(unconditional, 'POST', 'momento', 'u')).body.counter).toBe(1);
    // The expired capped counter accepts again from 1.
    expect((await call(conditional, 'POST', 'momento', 'c')).body.counter).toBe(1);
  });

  test('an item that is not an integer is never overwritten: 500, in both modes', async () => {
    await runMomentoSetup(localEnv, 'store-foreign');
    await client.set('store-foreign', 'foreign', 'not-a-number');
    const modes: Array<Record<string, string>> = [{ USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '10' }, { USE_CONDITIONAL_WRITES: 'false' }];
    for (const mode of modes) {
      const res = await call(handlerFor('store-foreign', mode), 'POST', 'momento', 'foreign');
      expect(res).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    }
    expect(((await client.get('store-foreign', 'foreign')) as CacheGet.Hit).valueString()).toBe('not-a-number');
  });

  test('a missing cache (setup not run) is a 503 (issue 19; its log line: momento-limits.test.ts), an unreachable server a 503 BACKEND_UNAVAILABLE', async () => {
    const missing = await call(handlerFor('no-such-cache', {}), 'POST', 'momento', 'x');
    expect(missing).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    const stopped = await MomentoLocalServer.start();
    const port = stopped.port;
    await stopped.stop();
    const unreachable = loadBundledHandler(MOMENTO_BUNDLES.counter, {
      [MOMENTO_ENV.LOCAL_ENDPOINT]: `127.0.0.1:${port}`, ATOMIC_COUNTER_LOG: 'off',
    });
    const t0 = performance.now();
    const res = await call(unreachable, 'POST', 'momento', 'x');
    // Within the SDK's Lambda deadline (1.1 s), with slack; the body is the fixed message, never SDK text.
    expect(performance.now() - t0).toBeLessThan(1100 + 1500);
    expect(res).toMatchObject({ status: 503, headers: { 'Retry-After': '1' } });
    expect(res.body).toEqual({ code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'momento' });
  });
});
