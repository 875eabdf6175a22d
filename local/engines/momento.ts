import { Engine } from './engine';
import { MomentoLocalServer } from './momento-server';

/** A Momento engine: `url` is `host:port` of a plaintext Momento protocol server. */
export interface MomentoEngine extends Engine {
  /** The in-process server when we started it (its RPC counts feed the tests and the bench). */
  readonly server?: MomentoLocalServer;
  readonly hostname: string;
  readonly port: number;
}

function parseHostPort(value: string): { hostname: string; port: number } {
  const match = /^(?:[a-z+-]+:\/\/)?\[?([^\]/]+?)\]?:(\d{1,5})\/?$/i.exec(value.trim());
  if (!match || Number(match[2]) < 1) throw new Error(`MOMENTO_LOCAL_URL must be host:port (got "${value}")`);
  return { hostname: match[1], port: Number(match[2]) };
}

/**
 * `MOMENTO_LOCAL_URL` (host:port of a Momento protocol server, e.g. Momento's
 * own momento-local) → else our in-process `MomentoLocalServer`. There is no
 * default port to probe: Momento is a SaaS with no conventional local port,
 * and the in-process server always starts (it needs nothing installed).
 *
 * Set `MOMENTO_LOCAL_RPC_REPORT=1` to print the in-process server's RPC
 * counts when the engine stops (e.g. with `npx projen bench --backend momento`:
 * SetIf calls per accepted conditional increment = compare-and-swap attempts).
 */
export async function acquireMomento(): Promise<MomentoEngine> {
  const fromEnv = process.env.MOMENTO_LOCAL_URL;
  if (fromEnv) {
    const { hostname, port } = parseHostPort(fromEnv);
    return { name: 'Momento (MOMENTO_LOCAL_URL)', origin: 'env', url: `${hostname}:${port}`, hostname, port, stop: async () => undefined };
  }
  const server = await MomentoLocalServer.start();
  return {
    name: 'in-process Momento server',
    origin: 'started',
    url: `${server.host}:${server.port}`,
    hostname: server.host,
    port: server.port,
    server,
    async stop() {
      if (process.env.MOMENTO_LOCAL_RPC_REPORT) console.log(`momento server RPCs: ${JSON.stringify(server.rpcCounts)}`);
      await server.stop();
    },
  };
}
