/**
 * A TCP proxy that can fail the way networks do without saying so: it
 * forwards connections to a target, and on demand silently blackholes them
 * (stops forwarding in both directions and never sends a FIN or RST), as a
 * NAT gateway does with a flow it forgot (idle > 350 s, or a Lambda
 * container frozen that long). New connections can keep being forwarded
 * (the NAT makes a fresh flow) or be accepted and never answered.
 *
 * Used by the stale-connection tests of every backend; also a stand-in for
 * "an endpoint that accepts TCP and never answers" (`hang()` with no target use).
 */
import * as net from 'net';
import { listenOnFreePort } from './tcp';

export type ProxyMode =
  /** Forward every byte both ways. */
  | 'forward'
  /** Connections accepted from now on are held open and never answered; existing ones keep working. */
  | 'hang-new';

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** `host:port` of the proxy. */
  readonly address: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Chunks dropped by `dropRepliesAfter` so far. */
  readonly droppedReplies: number;
  /** Chunks forwarded from clients to the engine so far: about one per request sent (an approximation: TCP may merge or split writes). */
  readonly requestChunks: number;
  setMode(mode: ProxyMode): void;
  /**
   * Every connection open now stops forwarding, silently, both ways (bytes
   * are read and dropped; nothing is closed). Later connections are
   * forwarded as the mode says. Returns how many were blackholed.
   */
  blackholeExisting(): number;
  /**
   * From now on, forward `n` more chunks from the engine to clients (over
   * all connections), then drop every later one, while requests keep being
   * forwarded to the engine: the engine applies what it receives and its
   * answers are lost, as when a network path fails after the request went
   * out. `n` = 0 drops the very next reply. Returns a promise that resolves
   * when the first chunk is dropped.
   */
  dropRepliesAfter(n: number): Promise<void>;
  close(): Promise<void>;
}

interface Flow {
  client: net.Socket;
  upstream?: net.Socket;
  blackholed: boolean;
}

/** Starts a proxy on 127.0.0.1 (a free port) in front of `target` (`host:port`). */
export async function startFaultProxy(target: { host: string; port: number }, initialMode: ProxyMode = 'forward'): Promise<FaultProxy> {
  let mode = initialMode;
  let accepted = 0;
  /** Engine → client chunks still forwarded before replies are dropped (Infinity: all). */
  let repliesLeft = Infinity;
  let droppedReplies = 0;
  let requestChunks = 0;
  let onFirstDrop: (() => void) | undefined;
  const flows = new Set<Flow>();
  /** Engine-side sockets of blackholed flows whose client went away: left open (no FIN reaches the engine) until `close`. */
  const lingering = new Set<net.Socket>();

  const server = net.createServer((client) => {
    accepted++;
    const flow: Flow = { client, blackholed: false };
    flows.add(flow);
    const forget = () => {
      flows.delete(flow);
    };
    client.on('error', () => undefined);
    client.on('close', () => {
      forget();
      if (!flow.blackholed) flow.upstream?.destroy();
      else if (flow.upstream) lingering.add(flow.upstream);
    });
    if (mode === 'hang-new') {
      // Accept and never answer: read and drop whatever arrives.
      flow.blackholed = true;
      client.on('data', () => undefined);
      return;
    }
    const upstream = net.connect(target.port, target.host);
    flow.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => {
      if (!flow.blackholed) client.destroy();
    });
    client.on('data', (chunk) => {
      if (flow.blackholed) return;
      requestChunks++;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (flow.blackholed) return;
      if (repliesLeft <= 0) {
        droppedReplies++;
        onFirstDrop?.();
        onFirstDrop = undefined;
        return;
      }
      repliesLeft--;
      client.write(chunk);
    });
  });
  const port = await listenOnFreePort(server);

  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    get open() {
      return flows.size;
    },
    setMode(next: ProxyMode) {
      mode = next;
    },
    get droppedReplies() {
      return droppedReplies;
    },
    get requestChunks() {
      return requestChunks;
    },
    dropRepliesAfter(n: number) {
      repliesLeft = n;
      return new Promise<void>((resolve) => {
        onFirstDrop = resolve;
      });
    },
    blackholeExisting() {
      let n = 0;
      for (const flow of flows) {
        if (!flow.blackholed) n++;
        flow.blackholed = true;
      }
      return n;
    },
    async close() {
      for (const flow of flows) {
        flow.client.destroy();
        flow.upstream?.destroy();
      }
      flows.clear();
      for (const upstream of lingering) upstream.destroy();
      lingering.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A server that accepts TCP connections and never answers (nor closes them):
 * a stand-in for an endpoint whose service hangs (Secrets Manager, Momento).
 */
export async function startSilentServer(): Promise<{ host: string; port: number; url: string; accepted: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A port whose connection attempts are never completed: SYNs go unanswered,
 * as for a host behind a firewall that drops them, so a client sees a
 * *connect* timeout (not a refusal, not a read timeout). Linux drops SYNs
 * once a listening socket's accept queue is full; Node accepts on its own,
 * so a tiny python3 process holds a listening socket with a zero backlog,
 * filled and never accepted.
 */
export async function startUnansweredConnects(): Promise<{ host: string; port: number; close(): Promise<void> }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawn } = require('child_process') as typeof import('child_process');
  const script = [
    'import socket, sys, time',
    's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
    'port = s.getsockname()[1]',
    'fill = []',
    'for i in range(3):',
    '    c = socket.socket(); c.setblocking(False)',
    '    try: c.connect(("127.0.0.1", port))',
    '    except BlockingIOError: pass',
    '    fill.append(c)',
    'time.sleep(0.3)',
    'print(port, flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`python3 is needed for an unanswered-connect port: ${err.message}`)));
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(String(chunk).trim())));
  });
  return {
    host: '127.0.0.1',
    port,
    async close() {
      const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
      child.stdin!.destroy();
      child.stdout!.destroy();
      child.kill();
      await exited;
    },
  };
}

/**
 * `host:port` of an engine URL (`redis://127.0.0.1:6379`, `127.0.0.1:4443`,
 * `mysql://root@127.0.0.1:3306/`), with the host and port apart; undefined
 * when the URL names no port.
 */
export function engineAddress(url: string): { address: string; host: string; port: number } | undefined {
  let address: string;
  try {
    address = new URL(url.includes('://') ? url : `tcp://${url}`).host;
  } catch {
    return undefined;
  }
  const at = address.lastIndexOf(':');
  if (!/:\d+$/.test(address)) return undefined;
  return { address, host: address.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(address.slice(at + 1)) };
}

/** A handler environment with every occurrence of the engine's `host:port` replaced by the proxy's. */
export function throughProxy(env: Record<string, string>, engine: string, proxy: string): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.split(engine).join(proxy)]));
}
