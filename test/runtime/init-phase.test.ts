import * as net from 'net';
import { fixtureFor } from '../../local/backends';
import { uniqueNamespace } from '../../local/backends/fixture';
import { Engine, freePort } from '../../local/engines/engine';
import { loadCounterContainers, ProxyHandler, proxyEvent } from '../../local/lambda-container';
import { BackendName } from '../../src/runtime/store';
import { CONFORMANCE_BUDGETS } from '../kit/conformance';

/**
 * Lambda's init phase does the connecting: a container reads its secret and
 * opens its connection while the module loads, so the first request finds it
 * under way or ready. A failure there throws nothing and leaves no unhandled
 * rejection; the first request tries again.
 *
 * Each container reaches its engine through a TCP relay in this process,
 * which counts the connections it accepts and can be closed (engine down)
 * and opened again (engine back).
 */
class Relay {
  accepted = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly port: number, private readonly target: number) {}

  async open(): Promise<void> {
    this.server = net.createServer((client) => {
      this.accepted++;
      const upstream = net.connect(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}

/** The handler environment with every `:fromPort` turned into `:relayPort`. */
function through(env: Record<string, string>, fromPort: number, relayPort: number): Record<string, string> {
  const re = new RegExp(`:${fromPort}(?!\\d)`, 'g');
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(re, `:${relayPort}`)]));
}

function enginePort(engine: Engine): number {
  const m = /:(\d+)(?:[/?]|$)/.exec(engine.url.replace(/^[a-z+]+:\/\/[^@/]*@/, ''));
  if (!m) throw new Error(`no port in ${engine.url}`);
  return Number(m[1]);
}

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => process.off('unhandledRejection', onUnhandled));

// DynamoDB speaks HTTP per request: there is no connection to open ahead of
// it without a request against the table (see docs/cold-start.md); its init
// phase warms the SDK on a request answered locally, tested at the end.
const CONNECTING: BackendName[] = ['redis', 'tidb', 'docdb', 'momento'];

describe.each(CONNECTING)('%s: init phase', (backend) => {
  const fixture = fixtureFor(backend);
  let engine: Engine;
  let env: Record<string, string>;
  const namespace = uniqueNamespace(`init_${backend}`);

  beforeAll(async () => {
    engine = await fixture.acquire();
    env = await fixture.prepare(engine, namespace);
  });
  afterAll(async () => {
    await fixture.dispose?.(engine, namespace).catch(() => undefined);
    await engine?.stop();
  });

  const post = async (h: ProxyHandler) => {
    const res = await h(proxyEvent('POST', backend, 'init-phase'));
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };

  test('a good engine: the connection is open before the first request, which opens none', async () => {
    const relay = new Relay(await freePort(), enginePort(engine));
    await relay.open();
    try {
      // The kit's roomy budgets: a cold connect on a busy machine must not pass a deployed bound and make `ready()` false.
      const mode = { conditional: false, env: CONFORMANCE_BUDGETS[backend] };
      const [handler] = loadCounterContainers(fixture.entry, through(env, enginePort(engine), relay.port), mode);
      await expect((handler as unknown as { ready(): Promise<boolean> }).ready()).resolves.toBe(true);
      const before = relay.accepted;
      expect(before).toBeGreaterThanOrEqual(1);
      expect((await post(handler)).status).toBe(200);
      expect(relay.accepted).toBe(before);
      await handler.close?.();
    } finally {
      await relay.close();
    }
  });

  test('the engine down at load: no crash, no unhandled rejection; the first request once it is up succeeds', async () => {
    const relay = new Relay(await freePort(), enginePort(engine));
    const [handler] = loadCounterContainers(fixture.entry, through(env, enginePort(engine), relay.port), { conditional: false });
    await expect((handler as unknown as { ready(): Promise<boolean> }).ready()).resolves.toBe(false);
    // Let any stray rejection of the failed connect surface.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await relay.open();
    try {
      const first = await post(handler);
      expect(first).toMatchObject({ status: 200 });
      expect(unhandled).toEqual([]);
      await handler.close?.();
    } finally {
      await relay.close();
    }
  });
});

describe('dynamo: init phase', () => {
  const fixture = fixtureFor('dynamo');
  let engine: Engine;
  let env: Record<string, string>;

  beforeAll(async () => {
    engine = await fixture.acquire();
    env = await fixture.prepare(engine, uniqueNamespace('init_dynamo'));
  });
  afterAll(async () => {
    await engine?.stop();
  });

  test('the SDK is warmed without a request reaching the engine; the first request then answers 200', async () => {
    const relay = new Relay(await freePort(), enginePort(engine));
    await relay.open();
    try {
      const [handler] = loadCounterContainers(fixture.entry, through(env, enginePort(engine), relay.port), { conditional: false });
      await expect((handler as unknown as { ready(): Promise<boolean> }).ready()).resolves.toBe(true);
      expect(relay.accepted).toBe(0);
      const res = await handler(proxyEvent('POST', 'dynamo', 'init-phase'));
      expect({ status: res.statusCode, counter: JSON.parse(res.body).counter }).toEqual({ status: 200, counter: 1 });
      expect(relay.accepted).toBe(1);
      expect(unhandled).toEqual([]);
      await handler.close?.();
    } finally {
      await relay.close();
    }
  });
});
