/**
 * The Momento keyed change of issue 20 at the store level, on the
 * in-process Momento server through the real SDK: the item read and the
 * key's claim run in parallel (and what makes that safe), and a rejected
 * key is released. Races the engine cannot produce on demand are injected
 * between two calls of one request, as in momento-steps-keys.test.ts.
 */
import { CacheClient, CacheGet, CacheSetIfAbsent, CredentialProvider, TimeoutError } from '@gomomento/sdk';
import { MomentoLocalServer } from '../../local/engines/momento-server';
import { createCacheClient } from '../../src/backends/momento/runtime/momento-client';
import { MomentoConfig } from '../../src/backends/momento/runtime/momento-config';
import { KEY_RECORD_PREFIX, MomentoCounterStore } from '../../src/backends/momento/runtime/momento-counter-store';
import { BackendUnavailableError, IdempotencyKeyReusedError, LimitReachedError } from '../../src/runtime/errors';
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

describe('a rejected key is released', () => {
  test('409: the key is free again, for another id or step, and the same request is evaluated afresh', async () => {
    const s = store();
    const id = freshId('released-409');
    await s.apply(id, { by: 3, maximum: 3 });
    expect(await rejection(s.apply(id, keyed(`k-${id}`, 1, { maximum: 3 })))).toBeInstanceOf(LimitReachedError);
    expect(await rejection(s.apply(id, keyed(`k-${id}`, 1, { maximum: 3 })))).toBeInstanceOf(LimitReachedError);
    const other = freshId('released-409-other');
    expect(await s.apply(other, keyed(`k-${id}`, 2, { maximum: 3 }))).toEqual({ counter: 2, replayed: false });
    expect(await s.apply(other, keyed(`k-${id}`, 2, { maximum: 3 }))).toEqual({ counter: 2, replayed: true });
  });

  test('503 (compare-and-swap attempts spent, nothing stored): the key is free again', async () => {
    const id = freshId('released-503');
    let raced = false;
    const s = store({ casMaxAttempts: 1 }, (client) => ({
      setIfAbsent: async (...args: Parameters<CacheClient['setIfAbsent']>) => {
        if (args[1] === id && !raced) {
          raced = true;
          await store().apply(id, { by: 1, maximum: 10 }); // lands first: this write loses
        }
        return client.setIfAbsent(...args);
      },
    }));
    expect(await rejection(s.apply(id, keyed(`k-${id}`, 1, { maximum: 10 })))).toBeInstanceOf(BackendUnavailableError);
    expect(await store().apply(freshId('released-503-other'), keyed(`k-${id}`, 5))).toEqual({ counter: 5, replayed: false });
  });

  test('503 before the compare-and-swap (the item read fails): the key is free again', async () => {
    const id = freshId('released-read');
    const s = store({}, (client) => ({
      get: async (...args: Parameters<CacheClient['get']>) => {
        if (args[1] === id) return new CacheGet.Error(new TimeoutError('injected: the item read timed out'));
        return client.get(...args);
      },
    }));
    expect(await rejection(s.apply(id, keyed(`k-${id}`)))).toBeInstanceOf(BackendUnavailableError);
    expect(await store().apply(freshId('released-read-other'), keyed(`k-${id}`, 4))).toEqual({ counter: 4, replayed: false });
  });

  test('a write whose outcome is unknown (it may be stored): the key stays bound, and its retry is answered once', async () => {
    const id = freshId('unknown-write');
    const s = store({}, (client) => ({
      setIfAbsent: async (...args: Parameters<CacheClient['setIfAbsent']>) => {
        if (args[1] === id) {
          await client.setIfAbsent(...args); // stored, and the reply is lost
          return new CacheSetIfAbsent.Error(new TimeoutError('injected: the reply was lost'));
        }
        return client.setIfAbsent(...args);
      },
    }));
    expect(await rejection(s.apply(id, keyed(`k-${id}`, 3)))).toBeInstanceOf(BackendUnavailableError);
    expect(await rejection(store().apply(freshId('unknown-write-other'), keyed(`k-${id}`, 3)))).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await store().apply(id, keyed(`k-${id}`, 3))).toEqual({ counter: 3, replayed: true });
    expect(await store().read(id)).toBe(3);
  });

  test('a request with the same key that applies under the record first joins it: the rejected creator\'s release then leaves it alone', async () => {
    const id = freshId('joined');
    const key = `k-${id}`;
    await store().apply(id, { by: 3, maximum: 3 });
    // B (same key and step, another container) applies under A's record;
    // A's release lands between B's write and B's copy of the outcome.
    let atSettle!: () => void;
    const bAtSettle = new Promise<void>((resolve) => atSettle = resolve);
    let released!: () => void;
    const aReleased = new Promise<void>((resolve) => released = resolve);
    const bStore = store({}, (client) => ({
      setIfEqual: async (...args: Parameters<CacheClient['setIfEqual']>) => {
        if (args[1] === record(key) && String(args[2]).includes('"counter"')) {
          atSettle();
          await aReleased;
        }
        return client.setIfEqual(...args);
      },
    }));
    let b: Promise<unknown> | undefined;
    const a = store({}, (client) => ({
      setIfEqual: async (...args: Parameters<CacheClient['setIfEqual']>) => {
        if (args[1] !== record(key) || b) return client.setIfEqual(...args);
        // A was rejected at the maximum and is releasing its claim. Before
        // the release lands, the counter goes down and B applies.
        await store().apply(id, { by: -1, maximum: 3 });
        b = bStore.apply(id, keyed(key, 1, { maximum: 3 }));
        await bAtSettle;
        const resp = await client.setIfEqual(...args);
        released();
        return resp;
      },
    }));
    expect(await rejection(a.apply(id, keyed(key, 1, { maximum: 3 })))).toBeInstanceOf(LimitReachedError);
    expect(await b).toEqual({ counter: 3, replayed: false });
    // The key is still B's: another id is a reuse, B's retry replays.
    expect(await rejection(store().apply(freshId('joined-other'), keyed(key, 1, { maximum: 3 })))).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await store().apply(id, keyed(key, 1, { maximum: 3 }))).toEqual({ counter: 3, replayed: true });
  });
});
