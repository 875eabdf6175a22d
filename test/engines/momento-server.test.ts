/**
 * Conformance test for local/engines/momento-server.ts: the real
 * @gomomento/sdk CacheClient talks gRPC to the in-process server, and every
 * primitive the Momento counter relies on is asserted by exact response type.
 */
import {
  CacheClient,
  CacheDelete,
  CacheGet,
  CacheGetBatch,
  CacheIncrement,
  CacheSet,
  CacheSetIfAbsent,
  CacheSetIfAbsentOrEqual,
  CacheSetIfEqual,
  CacheSetIfNotEqual,
  CacheSetIfPresent,
  CacheSetIfPresentAndNotEqual,
  Configurations,
  CreateCache,
  CredentialProvider,
  DeleteCache,
  ListCaches,
  MomentoErrorCode,
} from '@gomomento/sdk';
import { MomentoLocalServer, TokenProvider } from '../../local/engines/momento-server';

const CACHE = 'conformance';

async function newClient(server: MomentoLocalServer, credentialProvider?: CredentialProvider): Promise<CacheClient> {
  return CacheClient.create({
    // The SDK's 5 s deadline is for a network service; this server shares the
    // test's event loop, which a busy machine can stall for longer.
    configuration: Configurations.Laptop.v1().withClientTimeoutMillis(30_000),
    credentialProvider: credentialProvider ?? CredentialProvider.forMomentoLocal({ hostname: server.host, port: server.port }),
    defaultTtlSeconds: 60,
  });
}

/** Current string value of a key, or undefined on a Miss (fails on an Error). */
async function valueOf(client: CacheClient, key: string): Promise<string | undefined> {
  const resp = await client.get(CACHE, key);
  if (resp instanceof CacheGet.Hit) return resp.valueString();
  expect(resp).toBeInstanceOf(CacheGet.Miss);
  return undefined;
}

let server: MomentoLocalServer;
let client: CacheClient;
let keySeq = 0;
const freshKey = () => `key-${++keySeq}`;

beforeAll(async () => {
  server = await MomentoLocalServer.start();
  client = await newClient(server);
});

afterAll(async () => {
  client?.close();
  await server?.stop();
});

describe('control plane', () => {
  test('binds a real port, not 0', () => {
    expect(server.port).toBeGreaterThan(0);
  });

  test('createCache twice: Success, then AlreadyExists', async () => {
    expect(await client.createCache(CACHE)).toBeInstanceOf(CreateCache.Success);
    expect(await client.createCache(CACHE)).toBeInstanceOf(CreateCache.AlreadyExists);
  });

  test('listCaches returns the created caches', async () => {
    expect(await client.createCache('other')).toBeInstanceOf(CreateCache.Success);
    const resp = await client.listCaches();
    expect(resp).toBeInstanceOf(ListCaches.Success);
    const names = (resp as ListCaches.Success).getCaches().map((c) => c.getName());
    expect(names.sort()).toEqual([CACHE, 'other']);
  });

  test('deleteCache removes it; data calls then fail with NOT_FOUND; deleting again fails', async () => {
    expect(await client.deleteCache('other')).toBeInstanceOf(DeleteCache.Success);
    const get = await client.get('other', 'k');
    expect(get).toBeInstanceOf(CacheGet.Error);
    expect((get as CacheGet.Error).errorCode()).toBe(MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
    const again = await client.deleteCache('other');
    expect(again).toBeInstanceOf(DeleteCache.Error);
    expect((again as DeleteCache.Error).errorCode()).toBe(MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
  });
});

describe('data plane', () => {
  test('set then get: Hit with the value; unknown key: Miss', async () => {
    const key = freshKey();
    expect(await client.set(CACHE, key, 'hello')).toBeInstanceOf(CacheSet.Success);
    const hit = await client.get(CACHE, key);
    expect(hit).toBeInstanceOf(CacheGet.Hit);
    expect((hit as CacheGet.Hit).valueString()).toBe('hello');
    expect(await client.get(CACHE, freshKey())).toBeInstanceOf(CacheGet.Miss);
  });

  test('keys and values are bytes', async () => {
    const key = new Uint8Array([0xff, 0x00, 0xfe]);
    const value = new Uint8Array([0x00, 0x80, 0xff, 0x01]);
    expect(await client.set(CACHE, key, value)).toBeInstanceOf(CacheSet.Success);
    const hit = await client.get(CACHE, key);
    expect(hit).toBeInstanceOf(CacheGet.Hit);
    expect(Array.from((hit as CacheGet.Hit).valueUint8Array())).toEqual([0x00, 0x80, 0xff, 0x01]);
    // A different byte key that would collide under a lossy utf8 mapping.
    expect(await client.get(CACHE, new Uint8Array([0xfe, 0x00, 0xff]))).toBeInstanceOf(CacheGet.Miss);
  });

  test('delete removes the item', async () => {
    const key = freshKey();
    await client.set(CACHE, key, 'x');
    expect(await client.delete(CACHE, key)).toBeInstanceOf(CacheDelete.Success);
    expect(await valueOf(client, key)).toBeUndefined();
  });

  test('getBatch answers each key in the order asked: Hit with its value or Miss (expired items are misses)', async () => {
    const [a, b, gone] = [freshKey(), freshKey(), freshKey()];
    await client.set(CACHE, a, 'one');
    await client.set(CACHE, b, 'two');
    await client.set(CACHE, gone, 'x', { ttl: 0.05 });
    await new Promise((r) => setTimeout(r, 100));
    const resp = await client.getBatch(CACHE, [b, freshKey(), a, gone]);
    expect(resp).toBeInstanceOf(CacheGetBatch.Success);
    const results = (resp as CacheGetBatch.Success).results();
    expect(results.map((r) => (r instanceof CacheGet.Hit ? r.valueString() : r.constructor.name))).toEqual(['two', 'Miss', 'one', 'Miss']);
    const missing = await client.getBatch('no-such-cache', [a]);
    expect(missing).toBeInstanceOf(CacheGetBatch.Error);
    expect((missing as CacheGetBatch.Error).errorCode()).toBe(MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
  });

  test('an item over the 1 MB default limit is refused as LIMIT_EXCEEDED (item size), before any condition is looked at', async () => {
    const key = freshKey();
    const big = 'x'.repeat(1024 * 1024);
    const set = await client.set(CACHE, key, big);
    expect(set).toBeInstanceOf(CacheSet.Error);
    expect((set as CacheSet.Error).errorCode()).toBe(MomentoErrorCode.LIMIT_EXCEEDED_ERROR);
    expect((set as CacheSet.Error).message()).toMatch(/item size/i);
    const setIf = await client.setIfAbsent(CACHE, key, big);
    expect(setIf).toBeInstanceOf(CacheSetIfAbsent.Error);
    expect((setIf as CacheSetIfAbsent.Error).errorCode()).toBe(MomentoErrorCode.LIMIT_EXCEEDED_ERROR);
    expect(await valueOf(client, key)).toBeUndefined();
    // Just under the limit (key included) is stored.
    expect(await client.set(CACHE, key, 'x'.repeat(1024 * 1024 - key.length))).toBeInstanceOf(CacheSet.Success);
  });

  test('a data call on a missing cache is a CacheNotFound error', async () => {
    const get = await client.get('no-such-cache', 'k');
    expect(get).toBeInstanceOf(CacheGet.Error);
    expect((get as CacheGet.Error).errorCode()).toBe(MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
    const inc = await client.increment('no-such-cache', 'k', 1);
    expect(inc).toBeInstanceOf(CacheIncrement.Error);
    expect((inc as CacheIncrement.Error).errorCode()).toBe(MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
    const setIf = await client.setIfAbsent('no-such-cache', 'k', 'v');
    expect(setIf).toBeInstanceOf(CacheSetIfAbsent.Error);
  });
});

describe('setIf* conditions', () => {
  // Initial state of the key before the call: missing, holding the value
  // passed as the condition's comparand ("same"), or holding another value.
  type State = 'absent' | 'same' | 'different';
  interface Case {
    name: string;
    call: (key: string, value: string, check: string) => Promise<unknown>;
    Stored: new (...args: never[]) => unknown;
    NotStored: new (...args: never[]) => unknown;
    stores: Record<State, boolean>;
  }
  const cases: Case[] = [
    {
      name: 'setIfAbsent',
      call: (k, v) => client.setIfAbsent(CACHE, k, v),
      Stored: CacheSetIfAbsent.Stored,
      NotStored: CacheSetIfAbsent.NotStored,
      stores: { absent: true, same: false, different: false },
    },
    {
      name: 'setIfPresent',
      call: (k, v) => client.setIfPresent(CACHE, k, v),
      Stored: CacheSetIfPresent.Stored,
      NotStored: CacheSetIfPresent.NotStored,
      stores: { absent: false, same: true, different: true },
    },
    {
      name: 'setIfEqual',
      call: (k, v, c) => client.setIfEqual(CACHE, k, v, c),
      Stored: CacheSetIfEqual.Stored,
      NotStored: CacheSetIfEqual.NotStored,
      stores: { absent: false, same: true, different: false },
    },
    {
      name: 'setIfNotEqual',
      call: (k, v, c) => client.setIfNotEqual(CACHE, k, v, c),
      Stored: CacheSetIfNotEqual.Stored,
      NotStored: CacheSetIfNotEqual.NotStored,
      stores: { absent: true, same: false, different: true },
    },
    {
      name: 'setIfPresentAndNotEqual',
      call: (k, v, c) => client.setIfPresentAndNotEqual(CACHE, k, v, c),
      Stored: CacheSetIfPresentAndNotEqual.Stored,
      NotStored: CacheSetIfPresentAndNotEqual.NotStored,
      stores: { absent: false, same: false, different: true },
    },
    {
      name: 'setIfAbsentOrEqual',
      call: (k, v, c) => client.setIfAbsentOrEqual(CACHE, k, v, c),
      Stored: CacheSetIfAbsentOrEqual.Stored,
      NotStored: CacheSetIfAbsentOrEqual.NotStored,
      stores: { absent: true, same: true, different: false },
    },
  ];
  const rows = cases.flatMap((c) => (['absent', 'same', 'different'] as State[]).map((state) => [c.name, state, c] as const));

  test.each(rows)('%s on a key that is %s', async (_name, state, c) => {
    const key = freshKey();
    const initial = state === 'absent' ? undefined : state === 'same' ? 'check' : 'other';
    if (initial !== undefined) await client.set(CACHE, key, initial);

    const resp = await c.call(key, 'new', 'check');

    const stored = c.stores[state];
    expect(resp).toBeInstanceOf(stored ? c.Stored : c.NotStored);
    expect(await valueOf(client, key)).toBe(stored ? 'new' : initial);
  });
});

describe('increment', () => {
  test('on a missing key sets it to the amount', async () => {
    const key = freshKey();
    const resp = await client.increment(CACHE, key, 7);
    expect(resp).toBeInstanceOf(CacheIncrement.Success);
    expect((resp as CacheIncrement.Success).value()).toBe(7);
    expect(await valueOf(client, key)).toBe('7');
  });

  test('on an existing integer adds the amount (also negative)', async () => {
    const key = freshKey();
    await client.set(CACHE, key, '10');
    expect(((await client.increment(CACHE, key, 5)) as CacheIncrement.Success).value()).toBe(15);
    expect(((await client.increment(CACHE, key, -20)) as CacheIncrement.Success).value()).toBe(-5);
    expect(await valueOf(client, key)).toBe('-5');
  });

  test('on a non-integer value is a FAILED_PRECONDITION error and leaves the value', async () => {
    const key = freshKey();
    await client.set(CACHE, key, 'abc');
    const resp = await client.increment(CACHE, key, 1);
    expect(resp).toBeInstanceOf(CacheIncrement.Error);
    expect((resp as CacheIncrement.Error).errorCode()).toBe(MomentoErrorCode.FAILED_PRECONDITION_ERROR);
    expect(await valueOf(client, key)).toBe('abc');
  });

  test('on a JSON document (a counter holding pending keyed changes) is a FAILED_PRECONDITION error', async () => {
    const key = freshKey();
    await client.set(CACHE, key, '{"v":3,"k":[]}');
    const resp = await client.increment(CACHE, key, 1);
    expect((resp as CacheIncrement.Error).errorCode()).toBe(MomentoErrorCode.FAILED_PRECONDITION_ERROR);
    expect(await valueOf(client, key)).toBe('{"v":3,"k":[]}');
  });

  test('past int64 range is an error', async () => {
    const key = freshKey();
    await client.set(CACHE, key, '9223372036854775807');
    expect(await client.increment(CACHE, key, 1)).toBeInstanceOf(CacheIncrement.Error);
  });

  test('10 clients x 100 concurrent increments lose nothing and each value is seen once', async () => {
    const key = freshKey();
    const clients = await Promise.all(Array.from({ length: 10 }, () => newClient(server)));
    server.resetRpcCounts();
    try {
      const results = await Promise.all(
        clients.flatMap((c) => Array.from({ length: 100 }, () => c.increment(CACHE, key, 1))),
      );
      const values = results.map((r) => {
        expect(r).toBeInstanceOf(CacheIncrement.Success);
        return (r as CacheIncrement.Success).value();
      });
      expect(new Set(values).size).toBe(1000);
      expect(Math.min(...values)).toBe(1);
      expect(Math.max(...values)).toBe(1000);
      expect(await valueOf(client, key)).toBe('1000');
      expect(server.rpcCounts.Increment).toBe(1000);
    } finally {
      clients.forEach((c) => c.close());
    }
  });
});

describe('TTL', () => {
  test('items written by set, setIf and increment expire after their ttl', async () => {
    const [a, b, c, d] = [freshKey(), freshKey(), freshKey(), freshKey()];
    await client.set(CACHE, a, 'v', { ttl: 1 });
    expect(await client.setIfAbsent(CACHE, b, 'v', { ttl: 1 })).toBeInstanceOf(CacheSetIfAbsent.Stored);
    expect(await client.increment(CACHE, c, 3, { ttl: 1 })).toBeInstanceOf(CacheIncrement.Success);
    await client.set(CACHE, d, 'v', { ttl: 60 });
    expect(await valueOf(client, a)).toBe('v');

    await new Promise((r) => setTimeout(r, 1200));

    expect(await valueOf(client, a)).toBeUndefined();
    expect(await valueOf(client, b)).toBeUndefined();
    expect(await valueOf(client, d)).toBe('v');
    // An expired counter starts again from the amount.
    expect(((await client.increment(CACHE, c, 3)) as CacheIncrement.Success).value()).toBe(3);
    // An expired key counts as absent for conditional writes.
    expect(await client.setIfPresent(CACHE, a, 'w')).toBeInstanceOf(CacheSetIfPresent.NotStored);
  });
});

describe('auth token', () => {

  let secured: MomentoLocalServer;
  beforeAll(async () => {
    secured = await MomentoLocalServer.start({ authToken: 'secret-token' });
  });
  afterAll(async () => {
    await secured?.stop();
  });

  test('calls with a wrong or empty token are rejected as AuthenticationError', async () => {
    for (const provider of [
      CredentialProvider.forMomentoLocal({ hostname: secured.host, port: secured.port }),
      new TokenProvider(secured.host, secured.port, 'wrong-token'),
    ]) {
      const bad = await newClient(secured, provider);
      try {
        const create = await bad.createCache(CACHE);
        expect(create).toBeInstanceOf(CreateCache.Error);
        expect((create as CreateCache.Error).errorCode()).toBe(MomentoErrorCode.AUTHENTICATION_ERROR);
        const get = await bad.get(CACHE, 'k');
        expect(get).toBeInstanceOf(CacheGet.Error);
        expect((get as CacheGet.Error).errorCode()).toBe(MomentoErrorCode.AUTHENTICATION_ERROR);
      } finally {
        bad.close();
      }
    }
  });

  test('calls with the right token succeed', async () => {
    const good = await newClient(secured, new TokenProvider(secured.host, secured.port, 'secret-token'));
    try {
      expect(await good.createCache(CACHE)).toBeInstanceOf(CreateCache.Success);
      expect(await good.set(CACHE, 'k', 'v')).toBeInstanceOf(CacheSet.Success);
      expect(await good.get(CACHE, 'k')).toBeInstanceOf(CacheGet.Hit);
    } finally {
      good.close();
    }
  });
});
