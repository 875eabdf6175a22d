/**
 * Momento-specific checks of steps (`?by=N`) and exactly-once increments
 * (`Idempotency-Key`) on the in-process Momento server, through the real
 * SDK: what the store writes (the counter's item, decimal or structured, and
 * the key record), the round trips of each path, the safe-integer edge that
 * `increment` cannot check, states a request leaves when it dies between two
 * calls, an evicted or expired key record, and the races the engine cannot
 * produce on demand, injected between two calls of one request. The shared
 * contracts (test/kit/steps-contract.ts, test/kit/exactly-once-contract.ts)
 * cover the behaviour every backend shares.
 */
import { CacheClient, CacheGet, CacheSetIfEqual, CredentialProvider, TimeoutError } from '@gomomento/sdk';
import { MomentoLocalServer } from '../../local/engines/momento-server';
import { MOMENTO_DEFAULTS } from '../../src/backends/momento/momento-env';
import { createCacheClient } from '../../src/backends/momento/runtime/momento-client';
import { MomentoConfig } from '../../src/backends/momento/runtime/momento-config';
import { KEY_RECORD_PREFIX, MomentoCounterStore } from '../../src/backends/momento/runtime/momento-counter-store';
import { BackendUnavailableError, IdempotencyKeyReusedError, InvalidStepError, LimitReachedError } from '../../src/runtime/errors';
import { CounterChange } from '../../src/runtime/store';

const CACHE = 'steps-keys';
const MAX = Number.MAX_SAFE_INTEGER;
const HOUR = 3600;
/** A change with an Idempotency-Key retained an hour. */
function keyed(key: string, by = 1, extra: Partial<CounterChange> = {}): CounterChange {
  return { by, ...extra, idempotency: { key, retentionSeconds: HOUR } };
}

let server: MomentoLocalServer;
let bare: CacheClient;
const stores: MomentoCounterStore[] = [];
let idSeq = 0;
/** A counter id no other test uses. */
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

/**
 * A store (one container's) on its own client. `wrap` may replace SDK
 * methods of that client: the way a test runs something between two calls
 * of one request.
 */
function store(overrides: Partial<MomentoConfig> = {}, wrap?: (client: CacheClient) => Partial<CacheClient>): MomentoCounterStore {
  const client = createCacheClient(localCredentials(), HOUR, 15_000);
  const wrapped = wrap ? Object.assign(Object.create(client) as CacheClient, wrap(client)) : client;
  const s = new MomentoCounterStore(wrapped, config(overrides));
  stores.push(s);
  return s;
}

function localCredentials(): CredentialProvider {
  return CredentialProvider.forMomentoLocal({ hostname: server.host, port: server.port });
}

/** The stored text of an item, undefined when missing. */
async function stored(key: string): Promise<string | undefined> {
  const resp = await bare.get(CACHE, key);
  if (resp instanceof CacheGet.Miss) return undefined;
  expect(resp).toBeInstanceOf(CacheGet.Hit);
  return (resp as CacheGet.Hit).valueString();
}

async function put(key: string, text: string, ttlSeconds = HOUR): Promise<void> {
  await bare.set(CACHE, key, text, { ttl: ttlSeconds });
}

const record = (key: string) => KEY_RECORD_PREFIX + key;
const json = async (key: string) => JSON.parse((await stored(key))!);

/** RPCs the server answered during `run`, by method. */
async function rpcsOf(run: () => Promise<unknown>): Promise<Record<string, number>> {
  server.resetRpcCounts();
  await run();
  return { ...server.rpcCounts };
}

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
  bare = createCacheClient(localCredentials(), HOUR);
  await bare.createCache(CACHE);
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  bare?.close();
  await server?.stop();
});

describe('what each path writes, and its round trips', () => {
  test('an unconditional step is one Increment by the step; the item stays a decimal', async () => {
    const s = store();
    const id = freshId('plain');
    expect(await rpcsOf(() => s.apply(id, { by: 5 }))).toEqual({ Increment: 1 });
    expect(await s.apply(id, { by: -7 })).toEqual({ counter: -2, replayed: false });
    expect(await stored(id)).toBe('-2');
  });

  test('a conditional step: get, then one conditional write of the decimal (setIfAbsent for a new id, setIfEqual after)', async () => {
    const s = store();
    const id = freshId('conditional');
    expect(await rpcsOf(() => s.apply(id, { by: 7, maximum: 10 }))).toEqual({ Get: 1, SetIf: 1 });
    expect(await rejection(s.apply(id, { by: 7, maximum: 10 }))).toBeInstanceOf(LimitReachedError);
    expect(await stored(id)).toBe('7');
  });

  test('a keyed change on a new key: item read, record claimed, value and entry in ONE write, outcome copied to the record (4 calls)', async () => {
    const s = store();
    const id = freshId('keyed');
    const rpcs = await rpcsOf(async () => expect(await s.apply(id, keyed('order-1', 3))).toEqual({ counter: 3, replayed: false }));
    expect(rpcs).toEqual({ Get: 1, SetIf: 3 });
    const item = await json(id);
    expect(item).toEqual({ v: 3, k: [['order-1', 3, 3, expect.any(Number)]], e: expect.any(String), d: 0 });
    const rec = await json(record('order-1'));
    expect(rec).toEqual({ id, by: 3, exp: item.k[0][3], counter: 3 });
    expect(rec.exp).toBeGreaterThan(Date.now() + (HOUR - 60) * 1000);
    // A replay: the record answers (item read, claim refused, record read); nothing written.
    expect(await rpcsOf(async () => expect(await s.apply(id, keyed('order-1', 3))).toEqual({ counter: 3, replayed: true }))).toEqual({ Get: 2, SetIf: 1 });
    expect(await s.read(id)).toBe(3);
  });

  test('an unconditional unkeyed change of an item holding entries: increment refused, the CAS path applies it and drops the settled entries; the next one is one Increment again', async () => {
    const s = store();
    const id = freshId('back-to-decimal');
    await s.apply(id, keyed('k-a', 2));
    await s.apply(id, keyed('k-b', 2));
    expect((await json(id)).k).toHaveLength(2);
    const rpcs = await rpcsOf(async () => expect(await s.apply(id, { by: 1 })).toEqual({ counter: 5, replayed: false }));
    expect(rpcs).toEqual({ Increment: 1, Get: 1, GetBatch: 1, SetIf: 1 });
    expect(await stored(id)).toBe('5');
    expect(await rpcsOf(() => s.apply(id, { by: 1 }))).toEqual({ Increment: 1 });
    // The records still answer replays.
    expect(await s.apply(id, keyed('k-a', 2))).toEqual({ counter: 2, replayed: true });
  });

  test('a hot id with many keys: the item keeps at most the drop threshold of entries (a few hundred bytes), one getBatch per threshold of changes', async () => {
    const s = store();
    const id = freshId('bounded');
    const rpcs = await rpcsOf(async () => {
      for (let i = 1; i <= 100; i++) expect(await s.apply(id, keyed(`bounded-${id}-${i}`))).toEqual({ counter: i, replayed: false });
    });
    expect(rpcs.GetBatch).toBeLessThanOrEqual(Math.ceil(100 / MOMENTO_DEFAULTS.pendingEntriesPruneAt));
    expect(rpcs).toEqual({ Get: 100, SetIf: 300, GetBatch: rpcs.GetBatch });
    let largest = 0;
    for (let i = 101; i <= 140; i++) {
      await s.apply(id, keyed(`bounded-${id}-${i}`));
      const item = await json(id);
      expect(item.k.length).toBeLessThanOrEqual(MOMENTO_DEFAULTS.pendingEntriesPruneAt + 1);
      largest = Math.max(largest, JSON.stringify(item).length);
    }
    expect(largest).toBeLessThan(2000);
  });
});

describe('steps past the safe integers (increment cannot check them)', () => {
  test('unconditional: a step past the safe range is undone at once, re-checked by compare-and-swap and rejected; the stored value is the one before', async () => {
    const s = store();
    const id = freshId('edge');
    await put(id, String(MAX - 5));
    const rpcs = await rpcsOf(async () => expect(await rejection(s.apply(id, { by: 10 }))).toBeInstanceOf(InvalidStepError));
    expect(rpcs).toEqual({ Increment: 2, Get: 1 });
    expect(await stored(id)).toBe(String(MAX - 5));
    expect(await s.apply(id, { by: 5 })).toEqual({ counter: MAX, replayed: false });
    expect(await rejection(s.apply(id, { by: 1 }))).toBeInstanceOf(InvalidStepError);
    expect(await stored(id)).toBe(String(MAX));

    const low = freshId('edge-low');
    await put(low, String(-MAX + 5));
    expect(await rejection(s.apply(low, { by: -10 }))).toBeInstanceOf(InvalidStepError);
    expect(await stored(low)).toBe(String(-MAX + 5));
    expect(await s.apply(low, { by: -5 })).toEqual({ counter: -MAX, replayed: false });
  });

  test('keyed: the bound is checked before the one write, nothing written', async () => {
    const s = store();
    const id = freshId('edge-keyed');
    await put(id, String(MAX - 5));
    expect(await rejection(s.apply(id, keyed('edge-key', 10)))).toBeInstanceOf(InvalidStepError);
    expect(await stored(id)).toBe(String(MAX - 5));
  });

  test('an item caught holding an unsafe value (a step being undone) answers 503, never a rounded number', async () => {
    const s = store();
    const id = freshId('transient');
    await put(id, '9007199254740993');
    expect(await rejection(s.read(id))).toBeInstanceOf(BackendUnavailableError);
    expect(await rejection(s.apply(id, { by: 1, maximum: 10 }))).toBeInstanceOf(BackendUnavailableError);
  });
});

describe('states a request leaves when it dies between two calls', () => {
  test('applied, but the outcome never reached the record: the retry replays from the counter\'s entry and copies the outcome', async () => {
    const s = store();
    const id = freshId('died-after-write');
    const exp = Date.now() + HOUR * 1000;
    await put(record('died'), JSON.stringify({ id, by: 2, exp }));
    await put(id, JSON.stringify({ v: 7, k: [['died', 2, 7, exp]], e: 'epoch', d: 0 }));
    expect(await s.apply(id, keyed('died', 2))).toEqual({ counter: 7, replayed: true });
    expect(await json(record('died'))).toEqual({ id, by: 2, exp, counter: 7 });
    expect((await json(id)).v).toBe(7);
    // Same key, another step: the entry binds it too.
    expect(await rejection(s.apply(id, keyed('died', 3)))).toBeInstanceOf(IdempotencyKeyReusedError);
  });

  test('claimed, never applied: the retry applies it once', async () => {
    const s = store();
    const id = freshId('died-after-claim');
    await put(record('claimed'), JSON.stringify({ id, by: 4, exp: Date.now() + HOUR * 1000 }));
    expect(await s.apply(id, keyed('claimed', 4))).toEqual({ counter: 4, replayed: false });
    expect(await s.apply(id, keyed('claimed', 4))).toEqual({ counter: 4, replayed: true });
  });

  test('the outcome\'s copy fails (the change IS applied): 503, and the client\'s retry replays it', async () => {
    let fail = true;
    const failing = store({}, (client) => ({
      setIfEqual: async (...args: Parameters<CacheClient['setIfEqual']>) => {
        if (fail && String(args[1]).startsWith(KEY_RECORD_PREFIX)) return new CacheSetIfEqual.Error(new TimeoutError('injected: the reply was lost'));
        return client.setIfEqual(...args);
      },
    }));
    const id = freshId('settle-lost');
    expect(await rejection(failing.apply(id, keyed('lost-reply', 5)))).toBeInstanceOf(BackendUnavailableError);
    fail = false;
    expect(await store().apply(id, keyed('lost-reply', 5))).toEqual({ counter: 5, replayed: true });
    expect(await store().read(id)).toBe(5);
  });

  test('an entry is dropped only once its record holds the outcome: copied there first when its request died before doing so; an evicted record\'s entry, or one of another use of the key, stays', async () => {
    const s = store();
    const id = freshId('drop-rule');
    const exp = Date.now() + HOUR * 1000;
    const rows: Array<[string, number, number, number]> = [['pending', 1, 1, exp], ['evicted', 1, 2, exp], ['other-use', 1, 3, exp]];
    await put(record('pending'), JSON.stringify({ id, by: 1, exp }));
    await put(record('other-use'), JSON.stringify({ id, by: 1, exp: exp + 5000 }));
    for (let i = 4; i <= MOMENTO_DEFAULTS.pendingEntriesPruneAt + 2; i++) {
      rows.push([`done-${i}`, 1, i, exp]);
      await put(record(`done-${i}`), JSON.stringify({ id, by: 1, exp, counter: i }));
    }
    const v = rows.length;
    await put(id, JSON.stringify({ v, k: rows, e: 'epoch', d: 4 }));
    expect(await s.apply(id, keyed('next'))).toEqual({ counter: v + 1, replayed: false });
    const item = await json(id);
    expect(item.k.map((row: unknown[]) => row[0])).toEqual(['evicted', 'other-use', 'next']);
    expect(item).toMatchObject({ v: v + 1, e: 'epoch', d: 5 });
    // The dead request's outcome is in its record now; the other use's record is untouched.
    expect(await json(record('pending'))).toEqual({ id, by: 1, exp, counter: 1 });
    expect(await json(record('other-use'))).toEqual({ id, by: 1, exp: exp + 5000 });
    // The evicted record's entry still makes its retry a replay.
    expect(await s.apply(id, keyed('evicted'))).toEqual({ counter: 2, replayed: true });
  });
});

describe('key records: expiry and binding', () => {
  test('a record past its retention (still in the cache) is replaced: the key is new again, for any id and step', async () => {
    const s = store();
    const id = freshId('expired');
    await put(record('old-key'), JSON.stringify({ id: 'elsewhere', by: 9, exp: Date.now() - 1000, counter: 9 }));
    expect(await s.apply(id, keyed('old-key', 1))).toEqual({ counter: 1, replayed: false });
    expect(await json(record('old-key'))).toMatchObject({ id, by: 1, counter: 1 });
  });

  test('an entry past its retention is ignored and dropped: the key applies again', async () => {
    const s = store();
    const id = freshId('expired-entry');
    await put(id, JSON.stringify({ v: 10, k: [['stale', 1, 10, Date.now() - 1000]], e: 'epoch', d: 0 }));
    expect(await s.apply(id, keyed('stale'))).toEqual({ counter: 11, replayed: false });
    expect((await json(id)).k.map((row: unknown[]) => row[0])).toEqual(['stale']);
  });

  test('a key whose change was rejected (409) is released: the same request is evaluated afresh, another step is a new use (issue 20)', async () => {
    const s = store();
    const id = freshId('rejected');
    await s.apply(id, { by: 3, maximum: 3 });
    expect(await rejection(s.apply(id, keyed('after-409', 1, { maximum: 3 })))).toBeInstanceOf(LimitReachedError);
    expect(await rejection(s.apply(id, keyed('after-409', 2, { maximum: 3 })))).toBeInstanceOf(LimitReachedError);
    await s.apply(id, { by: -1, maximum: 3 });
    expect(await s.apply(id, keyed('after-409', 1, { maximum: 3 }))).toEqual({ counter: 3, replayed: false });
  });

  test('the record binds the key across ids even when the first use is not settled yet', async () => {
    const s = store();
    const a = freshId('bind-a');
    await put(record('unsettled'), JSON.stringify({ id: a, by: 1, exp: Date.now() + HOUR * 1000 }));
    expect(await rejection(s.apply(freshId('bind-b'), keyed('unsettled')))).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await rejection(s.apply(a, keyed('unsettled', 2)))).toBeInstanceOf(IdempotencyKeyReusedError);
  });
});

describe('injected races: a request whose record read is older than another request\'s apply, copy and drop', () => {
  /**
   * B reads the item, claims the key (the record shows no outcome), and
   * before B's write lands: A (same key, another container) applies it and
   * copies the outcome, then C (an unkeyed unconditional change) drops the
   * settled entry. B's write then fails (the item changed); on its next
   * attempt the item shows no entry for the key. Only the record, read
   * after that item read, tells B the change is done.
   */
  async function race(id: string, key: string, when: 'before B writes' | 'after B claims' = 'before B writes'): Promise<{ b: unknown; a: unknown }> {
    let a: unknown;
    let interfered = false;
    const b = store({}, (client) => {
      const interfere = async () => {
        if (interfered) return;
        interfered = true;
        a = await store().apply(id, keyed(key));
        await store().apply(id, { by: 100 });
      };
      return {
        setIfEqual: async (...args: Parameters<CacheClient['setIfEqual']>) => {
          if (args[1] === id && when === 'before B writes') await interfere();
          return client.setIfEqual(...args);
        },
        setIfAbsent: async (...args: Parameters<CacheClient['setIfAbsent']>) => {
          if (args[1] === id && when === 'before B writes') await interfere();
          const resp = await client.setIfAbsent(...args);
          if (args[1] === record(key) && when === 'after B claims') await interfere();
          return resp;
        },
      };
    });
    return { b: await b.apply(id, keyed(key)), a };
  }

  test('item a decimal when B first read it: B replays A\'s change', async () => {
    const id = freshId('race-decimal');
    const { a, b } = await race(id, 'raced-1');
    expect(a).toEqual({ counter: 1, replayed: false });
    expect(b).toEqual({ counter: 1, replayed: true });
    expect(await stored(id)).toBe('101');
  });

  test('item structured when B first read it, and still structured (same epoch) after the drop: the drop count tells B to read the record again', async () => {
    const id = freshId('race-structured');
    const exp = Date.now() + HOUR * 1000;
    // An entry whose record was evicted keeps the item structured through C's drop.
    await put(id, JSON.stringify({ v: 1, k: [[`${id}-stuck`, 1, 1, exp]], e: 'same-epoch', d: 0 }));
    const { a, b } = await race(id, 'raced-2');
    expect(a).toEqual({ counter: 2, replayed: false });
    expect(b).toEqual({ counter: 2, replayed: true });
    expect(await json(id)).toMatchObject({ v: 102, e: 'same-epoch', d: 1, k: [[`${id}-stuck`, 1, 1, exp]] });
  });

  test('all of it between B\'s claim and B\'s first write: B read the item BEFORE claiming, so its write fails and it reads the record again', async () => {
    const id = freshId('race-after-claim');
    const { a, b } = await race(id, 'raced-3', 'after B claims');
    expect(a).toEqual({ counter: 1, replayed: false });
    expect(b).toEqual({ counter: 1, replayed: true });
    expect(await stored(id)).toBe('101');
  });

  test('two containers, one key, 20 concurrent requests each: one change, every answer its value', async () => {
    const id = freshId('same-key');
    const [s1, s2] = [store(), store()];
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? s1 : s2).apply(id, keyed('shared-key', 6))));
    expect(answers.filter((x) => !x.replayed)).toHaveLength(1);
    expect(new Set(answers.map((x) => x.counter))).toEqual(new Set([6]));
    expect(await s1.read(id)).toBe(6);
  });
});

describe('close', () => {
  test('cancels a call under way and waits for it: no SDK retry fires on the closed channel', async () => {
    const s = store();
    const id = freshId('closing');
    server.faults = { delayMs: 500 };
    try {
      const pending = s.apply(id, keyed('closing-key')).catch((err: Error) => err);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await s.close();
      expect(await pending).toBeInstanceOf(Error);
      expect(await rejection(s.read(id))).toBeInstanceOf(BackendUnavailableError);
    } finally {
      server.faults = {};
    }
    // Give a stray SDK retry timer the time to fire (it would throw outside the test).
    await new Promise((resolve) => setTimeout(resolve, 700));
  });
});
