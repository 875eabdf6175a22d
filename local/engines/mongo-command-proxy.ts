/**
 * A TCP proxy in front of a MongoDB-wire engine that counts the commands
 * clients send through it: engine-side round trips per change, whatever
 * the engine (our in-process server, a real `mongod`, DocumentDB through a
 * tunnel). It reads the client→engine stream message by message (the wire
 * protocol's length-prefixed frames, not TCP chunks) and records each
 * command's name; bytes are forwarded unchanged both ways.
 *
 * Not counted: the driver's monitoring and handshake (`hello`, `isMaster`,
 * and the `ping` a store sends at init), which run on their own schedule
 * and are no part of a change. Everything else is: transaction commands
 * (`commitTransaction`, `abortTransaction`), a `listCollections` on a
 * failure path, `endSessions` at client close.
 */
import * as net from 'net';
import { decodeMessage, takeMessages } from './mongo-wire-protocol';
import { listenOnFreePort, pairSockets } from './tcp';

/** Commands that are heartbeats or handshakes, never part of a change. */
export const UNCOUNTED_COMMANDS: ReadonlySet<string> = new Set(['hello', 'isMaster', 'ismaster', 'ping']);

export interface MongoCommandProxy {
  readonly host: string;
  readonly port: number;
  /** `host:port` of the proxy. */
  readonly address: string;
  /** Commands seen but not counted (heartbeats and handshakes) since the last `reset`. */
  readonly uncounted: number;
  /** Counted commands since the last `reset`, in arrival order (`name` or `name:collection`). */
  commands(): string[];
  reset(): void;
  close(): Promise<void>;
}

/** Starts a counting proxy on 127.0.0.1 (a free port) in front of `target`. */
export async function startMongoCommandProxy(target: { host: string; port: number }): Promise<MongoCommandProxy> {
  let seen: string[] = [];
  let uncounted = 0;
  const sockets = new Set<net.Socket>();

  const record = (message: Buffer) => {
    let name = '?';
    let on: unknown;
    try {
      const request = decodeMessage(message);
      const body = request.kind === 'msg' ? request.body : request.query;
      name = Object.keys(body).find((k) => !k.startsWith('$')) ?? '?';
      on = body[name];
    } catch {
      // A frame this decoder does not know (compression is never offered): count it under '?'.
    }
    if (UNCOUNTED_COMMANDS.has(name)) uncounted++;
    else seen.push(typeof on === 'string' ? `${name}:${on}` : name);
  };

  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let buffer: Buffer = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      try {
        const { messages, rest } = takeMessages(buffer.length ? Buffer.concat([buffer, chunk]) : chunk);
        buffer = rest;
        for (const m of messages) record(m);
      } catch {
        buffer = Buffer.alloc(0);
      }
    });
    pairSockets(client, upstream, sockets);
  });
  const port = await listenOnFreePort(server);
  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    commands: () => [...seen],
    get uncounted() { return uncounted; },
    reset() {
      seen = [];
      uncounted = 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
