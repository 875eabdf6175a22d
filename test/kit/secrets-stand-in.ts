/**
 * A stand-in for Secrets Manager's JSON API (GetSecretValue), so the real
 * SDK call path of a bundled handler runs: the secret's value can be changed
 * mid-run (rotation), and the endpoint can be made to hang (accept, never
 * answer) or refuse. `use()` points the SDK of containers loaded from now on
 * at it (the client is created at a container's first read, so the
 * variables stay set until `close()`).
 */
import * as http from 'http';
import * as net from 'net';
import * as vm from 'vm';
import { freePort } from '../../local/engines/engine';

export type StandInMode = 'answer' | 'hang' | 'refuse';

export interface SecretsStandIn {
  readonly arn: string;
  /** `GetSecretValue` calls answered or held so far. */
  readonly reads: number;
  /** The JSON the secret holds from now on. */
  setValue(value: Record<string, unknown>): void;
  setMode(mode: StandInMode): Promise<void>;
  close(): Promise<void>;
}

export async function startSecretsStandIn(arn: string, value: Record<string, unknown>): Promise<SecretsStandIn> {
  let current = value;
  let reads = 0;
  let mode: StandInMode = 'answer';
  const held = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      reads++;
      if (mode === 'hang') {
        held.add(req.socket);
        return; // never answer
      }
      const id = JSON.parse(body).SecretId;
      res.setHeader('Content-Type', 'application/x-amz-json-1.1');
      if (id !== arn) {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: 'Secrets Manager can\'t find the specified secret.' }));
        return;
      }
      res.end(JSON.stringify({ ARN: arn, Name: 'stand-in', SecretString: JSON.stringify(current) }));
    });
  });
  let port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));

  const realEnv: NodeJS.ProcessEnv = vm.runInThisContext('process').env;
  const sdkEnv: Record<string, string> = {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://127.0.0.1:${port}`,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  };
  const saved = Object.fromEntries(Object.keys(sdkEnv).map((k) => [k, realEnv[k]]));
  Object.assign(realEnv, sdkEnv);

  return {
    arn,
    get reads() {
      return reads;
    },
    setValue(next) {
      current = next;
    },
    async setMode(next) {
      if (next === 'refuse' && mode !== 'refuse') {
        // Nothing listens on the port any more: connections are refused.
        for (const s of held) s.destroy();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      } else if (next !== 'refuse' && mode === 'refuse') {
        await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
      }
      mode = next;
    },
    async close() {
      for (const s of held) s.destroy();
      if (mode !== 'refuse') {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete realEnv[k];
        else realEnv[k] = v;
      }
      port = 0;
    },
  };
}
