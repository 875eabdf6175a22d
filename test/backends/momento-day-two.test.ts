/**
 * Momento, day two, through the bundled handler on in-process Momento
 * servers: the API key rotated mid-run (server and stand-in secret), a
 * server that stops answering mid-run (the client's deadline), and the
 * compare-and-swap budget enforced before each attempt and before each
 * write. Refused and silent endpoints: the kit's fault contract.
 */
import { runMomentoSetup } from '../../local/backends/momento';
import { MomentoLocalServer } from '../../local/engines/momento-server';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { MOMENTO_BUNDLES, MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import { SECRET_READ_BOUNDS } from '../../src/timeouts';
import { call } from '../kit/conformance';
import { SecretsStandIn, startSecretsStandIn } from '../kit/secrets-stand-in';

const ENTRY = MOMENTO_BUNDLES.counter;
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-key-AbCdEf';
const CLIENT_TIMEOUT_MS = 1000;
const SLACK_MS = 1500;

const servers: MomentoLocalServer[] = [];
let secrets: SecretsStandIn | undefined;
afterEach(async () => {
  await secrets?.close();
  secrets = undefined;
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

async function server(authToken?: string): Promise<MomentoLocalServer> {
  const s = await MomentoLocalServer.start({ authToken });
  servers.push(s);
  return s;
}

function container(endpoint: string, conditional: boolean, extra: Record<string, string> = {}): ProxyHandler {
  return loadBundledHandler(ENTRY, {
    [MOMENTO_ENV.LOCAL_ENDPOINT]: endpoint,
    [MOMENTO_ENV.CACHE_NAME]: 'day-two',
    [MOMENTO_ENV.CLIENT_TIMEOUT_MS]: String(CLIENT_TIMEOUT_MS),
    USE_CONDITIONAL_WRITES: String(conditional),
    MAX_COUNTER_VALUE: '1000',
    ATOMIC_COUNTER_LOG: 'off',
    ...extra,
  });
}

async function timed(handler: ProxyHandler, method: string, id: string) {
  const t0 = performance.now();
  const answer = await call(handler, method, 'momento', id);
  return { ...answer, ms: performance.now() - t0 };
}

describe('momento: API key rotation (key from the stand-in secret)', () => {
  test.each([false, true])('conditional=%p: key rotated on the server and in the secret mid-run: the same warm container answers 200 on its next request (one re-read), nothing lost', async (conditional) => {
    const s = await server('key-one');
    secrets = await startSecretsStandIn(ARN, { apiKey: 'key-one' });
    const endpoint = `${s.host}:${s.port}`;
    await runMomentoSetup({ [MOMENTO_ENV.LOCAL_ENDPOINT]: endpoint, [MOMENTO_ENV.API_KEY_SECRET_ARN]: ARN }, 'day-two');
    const handler = container(endpoint, conditional, { [MOMENTO_ENV.API_KEY_SECRET_ARN]: ARN });
    const readsBefore = secrets.reads;
    let ok = 0;
    for (let i = 0; i < 10; i++) expect(await call(handler, 'POST', 'momento', 'rot')).toMatchObject({ status: 200, body: { counter: ++ok } });
    expect(secrets.reads).toBe(readsBefore + 1);

    s.setAuthToken('key-two');
    secrets.setValue({ apiKey: 'key-two' });
    const recovered = await timed(handler, 'POST', 'rot');
    console.log(`momento rotation (conditional=${conditional}): first request after the rotation answered ${recovered.status} in ${recovered.ms.toFixed(1)} ms (secret re-read + new client)`);
    expect(recovered).toMatchObject({ status: 200, body: { counter: ++ok } });
    expect(recovered.ms).toBeLessThan(SECRET_READ_BOUNDS.requestTimeoutMs + 3 * CLIENT_TIMEOUT_MS + SLACK_MS);
    expect(secrets.reads).toBe(readsBefore + 2);
    for (let i = 0; i < 10; i++) expect(await call(handler, 'POST', 'momento', 'rot')).toMatchObject({ status: 200, body: { counter: ++ok } });

    // Rotated again at once: no second re-read within the interval → 500, nothing written.
    s.setAuthToken('key-three');
    secrets.setValue({ apiKey: 'key-three' });
    expect(await call(handler, 'POST', 'momento', 'rot')).toMatchObject({ status: 500, body: { code: 'INTERNAL', error: 'Internal error' } });
    expect(secrets.reads).toBe(readsBefore + 2);
    s.setAuthToken(undefined);
    const reader = container(endpoint, false);
    expect((await call(reader, 'GET', 'momento', 'rot')).body.counter).toBe(ok);
  }, 60_000);
});

describe('momento: a server that stops answering mid-run is a 503 with the fixed body', () => {
  test.each([false, true])('conditional=%p: a server that accepts and never answers → 503 within the client deadline (never a 500 or a hang); answering again → 200', async (conditional) => {
    const s = await server();
    const endpoint = `${s.host}:${s.port}`;
    await runMomentoSetup({ [MOMENTO_ENV.LOCAL_ENDPOINT]: endpoint }, 'day-two');
    const handler = container(endpoint, conditional);
    expect((await call(handler, 'POST', 'momento', 'hang')).status).toBe(200);
    s.faults = { hang: true };
    const hung = await timed(handler, 'POST', 'hang');
    s.faults = {};
    console.log(`momento hung (conditional=${conditional}): answered ${hung.status} in ${hung.ms.toFixed(0)} ms (client deadline ${CLIENT_TIMEOUT_MS} ms)`);
    expect(hung).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'momento' }, headers: { 'Retry-After': '1' } });
    expect(hung.ms).toBeLessThan(CLIENT_TIMEOUT_MS + SLACK_MS);
    expect((await call(handler, 'POST', 'momento', 'hang')).status).toBe(200);
  }, 60_000);
  // A refused connection and a TCP endpoint that never speaks: the kit's fault contract (test/kit/fault-contract.ts).
});

describe('momento: the compare-and-swap budget', () => {
  test('a read that returns past the budget sends no write: 503 at the deadline (+ one call), nothing written', async () => {
    const s = await server();
    const endpoint = `${s.host}:${s.port}`;
    await runMomentoSetup({ [MOMENTO_ENV.LOCAL_ENDPOINT]: endpoint }, 'day-two');
    const handler = container(endpoint, true, { [MOMENTO_ENV.CAS_BUDGET_MS]: '200' });
    s.faults = { delayMs: 300 };
    s.resetRpcCounts();
    const slow = await timed(handler, 'POST', 'budget');
    s.faults = {};
    console.log(`momento CAS budget 200 ms, 300 ms per call: answered ${slow.status} in ${slow.ms.toFixed(0)} ms, RPCs ${JSON.stringify(s.rpcCounts)}`);
    expect(slow).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE } });
    expect(s.rpcCounts.SetIf ?? 0).toBe(0);
    expect(slow.ms).toBeLessThan(200 + CLIENT_TIMEOUT_MS + SLACK_MS);
    expect((await call(handler, 'GET', 'momento', 'budget')).body.counter).toBe(0);
  }, 60_000);
});
