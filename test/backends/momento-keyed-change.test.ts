/**
 * The Momento keyed change of issue 20 at the store level, on the
 * in-process Momento server through the real SDK: the item read and the
 * key's claim run in parallel (and what makes that safe), and a rejected
 * key is released. Races the engine cannot produce on demand are injected
 * between two calls of one request, as in momento-steps-keys.test.ts.
 */
import { CacheClient, CacheGet, CredentialProvider, TimeoutError, CacheSetIfEqual } from '@gomomento/sdk';
import { MomentoLocalServer } from '../../local/engines/momento-server';
import { createCacheClient } from '../../src/backends/momento/runtime/momento-client';
import { MomentoConfig } from '../../src/backends/momento/runtime/momento-config';
import { KEY_RECORD_PREFIX, MomentoCounterStore } from '../../src/backends/momento/runtime/momento-counter-store';
import { BackendUnavailableError, LimitReachedError } from '../../src/runtime/errors';
import { CounterChange } from '../../src/runtime/store';

const CACHE = 'keyed-change';
const HOUR = 3600;
function keyed(key: string, by = 1, extra: Partial<CounterChange> = {}): CounterChange {
  return { by, ...extra, idempotency: { key, retentionSeconds: HOUR } };
}

let server: MomentoLocalServer;
let bare: CacheClient;
const stores: MomentoCounterStore[] = [];
let idSeq = 0;
const freshId = (name: string) => `${name}-${++idSeq}`;

function config(overrides: Partial<MomentoConfig> = {}): MomentoConfig {
  return {
    connection: { kind: 'local', hostname: server.host, port: server.port },
    cacheName: CACHE,
    ttlSeconds: HOUR,
    casMaxAttempts: 200,
    casBudgetMs: 30_000,
    clientTimeoutMs: 15_000,
    connectTimeoutMs: 15_000,
    ...overrides,
  };
}

/** A store on its own client; `wrap` may replace SDK methods (to run something between two calls of one request). */
function store(overrides: Partial<MomentoConfig> = {}, wrap?: (client: CacheClient) => Partial<CacheClient>): MomentoCounterStore {
  const client = createCacheClient(CredentialProvider.forMomentoLocal({ hostname: server.host, port: server.port }), HOUR, 15_000);
  const wrapped = wrap ? Object.assign(Object.create(client) as CacheClient, wrap(client)) : client;
  const s = new MomentoCounterStore(wrapped, config(overrides));
  stores.push(s);
  return s;
}

async function stored(key: string): Promise<string | undefined> {
  const resp = await bare.get(CACHE, key);
  if (resp instanceof CacheGet.Miss) return undefined;
  return (resp as CacheGet.Hit).valueString();
}
const record = (key: string) => KEY_RECORD_PREFIX + key;

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

beforeAll(async () => {
  server = await MomentoLocalServer.start();
  bare = createCacheClient(CredentialProvider.forMomentoLocal({ hostname: server.host, port: server.port }), HOUR);
  await bare.createCache(CACHE);
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  bare?.close();
  await server?.stop();
});

describe('item read and claim in parallel', () => {
  /**
   * B claims a new key; B's item read (sent with the claim) is served only
   * after A (same key, another container) found B's record, applied the
   * change and copied its outcome, and C (an unkeyed change) dropped A's
   * settled entry. B's item read then shows no entry of the key, and its
   * record (its own claim) showed no outcome when written: B must find out
   * from the item's drop watermark, or from the record read again, that the
   * change is done, and replay it instead of applying it twice.
   */
  async function lateItemRead(id: string, key: string): Promise<{ a: unknown; b: unknown }> {
    let a: unknown;
    let delayed = false;
    const b = store({}, (client) => ({
      get: async (...args: Parameters<CacheClient['get']>) => {
        if (args[1] === id && !delayed) {
          delayed = true;
          // Served after the claim, and after all of the others' work.
          while ((await stored(record(key))) === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
          a = await store().apply(id, keyed(key));
          await store().apply(id, { by: 100 });
        }
        return client.get(...args);
      },
    }));
    return { b: await b.apply(id, keyed(key)), a };
  }

  test('the item a decimal after the drop: B replays A\'s change, one change in the counter', async () => {
    const id = freshId('late-decimal');
    const { a, b } = await lateItemRead(id, `late-${id}`);
    expect(a).toEqual({ counter: 1, replayed: false });
    expect(b).toEqual({ counter: 1, replayed: true });
    expect(await stored(id)).toBe('101');
  });

  test('the item still structured after the drop (its watermark now covers B\'s use): B replays A\'s change', async () => {
    const id = freshId('late-structured');
    const exp = Date.now() + HOUR * 1000;
    // An entry whose record was evicted keeps the item structured through
    // C's drop; earlier drops left a watermark below B's use.
    await bare.set(CACHE, id, JSON.stringify({ v: 1, k: [[`${id}-stuck`, 1, 1, exp]], e: 'epoch', d: 3, x: Date.now() }), { ttl: HOUR });
    const { a, b } = await lateItemRead(id, `late-${id}`);
    expect(a).toEqual({ counter: 2, replayed: false });
    expect(b).toEqual({ counter: 2, replayed: true });
    expect(JSON.parse((await stored(id))!)).toMatchObject({ v: 102, d: 4 });
  });
});
