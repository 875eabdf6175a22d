/**
 * TLS to Redis with certificate and host name verification, against a
 * redis-server serving TLS with a certificate from a CA this test makes.
 * Node reads NODE_EXTRA_CA_CERTS only at start-up, so each case runs the
 * bundled handler in a fresh `node` process (as a Lambda container would).
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Redis from 'ioredis';
import { freePort } from '../../local/engines/engine';
import { RedisServer, startRedisServer } from '../../local/engines/redis';
import { bundlePath, proxyEvent } from '../../local/lambda-container';
import { REDIS_BUNDLES, REDIS_ENV } from '../../src/backends/redis/redis-env';

const ENTRY = REDIS_BUNDLES.counter;
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

function makeCertificates(dir: string): void {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Test Redis CA', '-keyout', 'ca.key', '-out', 'ca.crt');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  // The certificate names "localhost" only: connecting as 127.0.0.1 must fail verification.
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'server.crt');
}

/** One POST through the bundled handler in a fresh node process; returns status and body. */
function postInFreshProcess(env: Record<string, string>): { statusCode: number; body: any } {
  const script = `require(${JSON.stringify(bundlePath(ENTRY))}).handler(${JSON.stringify(proxyEvent('POST', 'redis', 'tls'))})
    .then((r) => { process.stdout.write('RESULT ' + JSON.stringify(r) + '\\n'); process.exit(0); })`;
  const out = execFileSync(process.execPath, ['-e', script], { env: { PATH: process.env.PATH, ATOMIC_COUNTER_LOG: 'off', ...env }, encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  const result = JSON.parse(line!.slice('RESULT '.length));
  return { statusCode: result.statusCode, body: JSON.parse(result.body) };
}

// Never skipped: a suite that disappears when a tool is missing proves
// nothing. openssl makes the test CA and certificates.
describe('redis: TLS with certificate and host name verification', () => {
  let dir: string;
  let server: RedisServer;
  let tlsPort: number;
  let plain: Redis;

  beforeAll(async () => {
    if (!hasOpenssl) throw new Error('openssl is needed to make the test certificates: apt-get install openssl');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-tls-'));
    makeCertificates(dir);
    tlsPort = await freePort();
    server = await startRedisServer({
      args: ['--tls-port', String(tlsPort), '--tls-cert-file', path.join(dir, 'server.crt'), '--tls-key-file', path.join(dir, 'server.key'),
        '--tls-ca-cert-file', path.join(dir, 'ca.crt'), '--tls-auth-clients', 'no'],
    });
    plain = new Redis(server.url);
  }, 30_000);

  afterAll(async () => {
    plain?.disconnect();
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const base = () => ({ [REDIS_ENV.PORT]: String(tlsPort), [REDIS_ENV.TLS]: 'true', USE_CONDITIONAL_WRITES: 'false' });

  test('a certificate from a trusted CA for the host name: 200 over TLS', async () => {
    const res = postInFreshProcess({ ...base(), [REDIS_ENV.HOST]: 'localhost', [REDIS_ENV.KEY_PREFIX]: 'ok:', NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.crt') });
    expect(res).toMatchObject({ statusCode: 200, body: { counter: 1 } });
    expect(await plain.get('ok:tls')).toBe('1');
  });

  test('a host name the certificate does not name: 500 (not a retryable 503), nothing written', async () => {
    const res = postInFreshProcess({ ...base(), [REDIS_ENV.HOST]: '127.0.0.1', [REDIS_ENV.KEY_PREFIX]: 'name:', NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.crt') });
    expect(res).toMatchObject({ statusCode: 500, body: { code: 'INTERNAL' } });
    expect(await plain.get('name:tls')).toBeNull();
  });

  test('a certificate from an untrusted CA: 500, nothing written', async () => {
    const res = postInFreshProcess({ ...base(), [REDIS_ENV.HOST]: 'localhost', [REDIS_ENV.KEY_PREFIX]: 'ca:' });
    expect(res).toMatchObject({ statusCode: 500, body: { code: 'INTERNAL' } });
    expect(await plain.get('ca:tls')).toBeNull();
  });
});
