/**
 * What every TCP proxy of the local engines shares (the fault proxy and the
 * command-counting proxies for Redis, MySQL and MongoDB-wire servers).
 */
import * as net from 'net';

/** Listens on 127.0.0.1 at a free port and answers that port. */
export async function listenOnFreePort(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

/**
 * Forwards the upstream's bytes to the client and ends both sockets together
 * (either side closing or failing), forgetting them in `sockets`. The
 * client-to-upstream direction is the caller's (it reads what it counts).
 */
export function pairSockets(client: net.Socket, upstream: net.Socket, sockets: Set<net.Socket>): void {
  upstream.on('data', (chunk: Buffer) => client.write(chunk));
  const end = () => {
    client.destroy();
    upstream.destroy();
    sockets.delete(client);
    sockets.delete(upstream);
  };
  for (const s of [client, upstream]) {
    s.on('error', end);
    s.on('close', end);
  }
}
