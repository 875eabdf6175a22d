/**
 * The container's store through its life (src/runtime/container-store.ts):
 * created and connected at init, reused, dropped after a failure, shared
 * with a request that arrives while the init-phase connect is under way.
 */
import { ContainerStore } from '../../src/runtime/container-store';
import { BackendUnavailableError } from '../../src/runtime/errors';
import { CounterStore } from '../../src/runtime/store';

/** A store that records its life; `connect` fails while `failConnect` holds an error. */
class FakeStore {
  static made: FakeStore[] = [];
  closed = 0;
  connected = 0;
  constructor(private readonly failConnect?: unknown) {
    FakeStore.made.push(this);
  }
  async connect() {
    this.connected++;
    if (this.failConnect) throw this.failConnect;
  }
  async close() {
    this.closed++;
  }
  async apply() {
    return { counter: 1, replayed: false };
  }
  async read() {
    return 0;
  }
}

const asStore = (s: FakeStore) => s as unknown as CounterStore;

beforeEach(() => {
  FakeStore.made = [];
});

test('connect at init: one store, created and connected once, reused by every request', async () => {
  const factory = jest.fn(() => asStore(new FakeStore()));
  const container = new ContainerStore(factory);
  expect(await container.ready()).toBe(true);
  const [a, b] = await Promise.all([container.acquire(), container.acquire()]);
  expect(a).toBe(b);
  expect(await container.acquire()).toBe(a);
  expect(factory).toHaveBeenCalledTimes(1);
  expect(FakeStore.made[0].connected).toBe(1);
});

test('without connect at init: nothing is created before the first request; ready() is false', async () => {
  const factory = jest.fn(() => asStore(new FakeStore()));
  const container = new ContainerStore(factory, false);
  expect(await container.ready()).toBe(false);
  expect(factory).not.toHaveBeenCalled();
  await container.acquire();
  expect(factory).toHaveBeenCalledTimes(1);
});

test('a classified failure of the init connect: the store is closed and dropped, the first request answers that error once, the next gets a fresh store', async () => {
  const unavailable = new BackendUnavailableError('engine down');
  const container = new ContainerStore(() => asStore(new FakeStore(FakeStore.made.length === 0 ? unavailable : undefined)));
  // The request arrives while the connect is under way.
  const first = container.acquire();
  await expect(first).rejects.toBe(unavailable);
  expect(await container.ready()).toBe(false);
  expect(FakeStore.made[0].closed).toBe(1);
  const fresh = await container.acquire();
  expect(fresh).toBe(asStore(FakeStore.made[1]));
  expect(await container.acquire()).toBe(fresh);
});

test('an unclassified failure of the init connect is not shared: the request goes on with a fresh store', async () => {
  const container = new ContainerStore(() => asStore(new FakeStore(FakeStore.made.length === 0 ? new Error('socket hang up') : undefined)));
  const first = container.acquire();
  expect(await first).toBe(asStore(FakeStore.made[1]));
  expect(FakeStore.made[0].closed).toBe(1);
});

test('a creation that throws (a secret that cannot be read) is forgotten: the next request creates again', async () => {
  let attempts = 0;
  const container = new ContainerStore(() => {
    attempts++;
    if (attempts === 1) throw new BackendUnavailableError('secret unreadable');
    return asStore(new FakeStore());
  });
  // The init's own error is answered once to the request that waited for it.
  await expect(container.acquire()).rejects.toThrow('secret unreadable');
  expect(await container.acquire()).toBe(asStore(FakeStore.made[0]));
  expect(attempts).toBe(2);
});

test('close drops and closes the store, even one still being created; the next request creates a fresh one', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const container = new ContainerStore(async () => {
    await gate;
    return asStore(new FakeStore());
  }, false);
  const request = container.acquire();
  const closing = container.close();
  release();
  await closing;
  // The overtaken creation is closed and never becomes the current store.
  expect(FakeStore.made[0].closed).toBe(1);
  await request;
  const next = await container.acquire();
  expect(next).toBe(asStore(FakeStore.made[1]));
  await container.close();
  expect(FakeStore.made[1].closed).toBe(1);
});
