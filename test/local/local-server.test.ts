/**
 * `npm run local` end to end: the local server over real HTTP (node's fetch),
 * for every backend whose fixture is registered in local/backends/index.ts,
 * on real engines, through the bundled handlers. Two servers share the
 * engines: one unconditional, one conditional with a small maximum.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { availableFixtures } from '../../local/backends';
import { uniqueNamespace } from '../../local/backends/fixture';
import { freePort } from '../../local/engines/engine';
import { checkAnswer, openApiDocument } from '../../local/openapi';
import { LocalServer, parseDotEnv, serverSettings, startLocalServer } from '../../local/server';

const backends = availableFixtures();
const MAX = 3;

let unconditional: LocalServer;
let conditional: LocalServer;

beforeAll(async () => {
  unconditional = await startLocalServer({ port: await freePort(), quiet: true, namespace: uniqueNamespace('t_local'), disposeOnStop: true });
  conditional = await startLocalServer({
    port: 0,
    quiet: true,
    conditionalWrites: true,
    maxCounterValue: MAX,
    engines: unconditional.engines,
    namespace: uniqueNamespace('t_local'),
    disposeOnStop: true,
  });
}, 240_000);

afterAll(async () => {
  await conditional?.stop();
  await unconditional?.stop();
});

/** `apiKey: null` sends no key at all. */
async function request(
  server: LocalServer, method: string, route: string, apiKey: string | null = server.apiKey, extra: Record<string, string> = {},
) {
  const res = await fetch(server.url + route, { method, headers: { ...(apiKey === null ? {} : { 'x-api-key': apiKey }), ...extra } });
  const text = await res.text();
  const answer = { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  // Every answer of the local server is held to the OpenAPI document.
  const problems = checkAnswer(method, { ...answer, headers: Object.fromEntries(res.headers) });
  expect({ method, route, problems }).toEqual({ method, route, problems: [] });
  return answer;
}

test('GET /openapi.json serves the API description without a key (the document the answers are checked against)', async () => {
  const res = await fetch(`${unconditional.url}/openapi.json`);
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual(openApiDocument());
});

test('every registered backend is served (an engine that cannot be had fails here with its one line)', () => {
  expect(backends.length).toBeGreaterThan(0);
  expect(unconditional.skipped.filter((s) => backends.includes(s.backend))).toEqual([]);
  expect([...unconditional.backends].sort()).toEqual([...backends].sort());
  expect([...conditional.backends].sort()).toEqual([...backends].sort());
  expect(unconditional.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
});

describe.each(backends)('%s through the local server', (backend) => {
  test('403 {"message":"Forbidden"} without an API key and with a wrong one; nothing written', async () => {
    const id = `k-${Date.now()}`;
    expect(await request(unconditional, 'POST', `/${backend}/${id}`, null)).toMatchObject({ status: 403, body: { message: 'Forbidden' } });
    expect(await request(unconditional, 'POST', `/${backend}/${id}`, 'wrong-key')).toMatchObject({ status: 403, body: { message: 'Forbidden' } });
    expect(await request(unconditional, 'GET', `/${backend}/${id}`, unconditional.apiKey + 'x')).toMatchObject({ status: 403 });
    expect((await request(unconditional, 'GET', `/${backend}/${id}`)).body.counter).toBe(0);
  });

  test('404 NOT_FOUND for unknown methods and routes, with or without a key (as the overridden gateway response)', async () => {
    for (const [method, route] of [['DELETE', `/${backend}/x`], ['PUT', `/${backend}/x`], ['PATCH', `/${backend}/x`], ['GET', `/${backend}`],
      ['POST', `/${backend}/`], ['POST', `/${backend}/x/y`], ['POST', '/nope/x'], ['GET', '/'], ['POST', `/x/${backend}/y`]]) {
      for (const key of [unconditional.apiKey, null]) {
        const res = await request(unconditional, method, route, key);
        expect({ method, route, status: res.status, code: res.body?.code }).toEqual({ method, route, status: 404, code: 'NOT_FOUND' });
      }
    }
  });

  test('400 INVALID_ID for a control character, an over-long id and a broken percent-encoding', async () => {
    for (const raw of ['line%0Abreak', 'x'.repeat(256), '%E0%A4%A']) {
      const res = await request(unconditional, 'POST', `/${backend}/${raw}`);
      expect({ raw, status: res.status, code: res.body.code }).toEqual({ raw, status: 400, code: 'INVALID_ID' });
    }
  });

  test('unconditional: POST answers 200 with the new value; GET reads it back; the id is decoded once', async () => {
    const id = `user 42/ü-${Date.now()}`; // a space, a slash and a non-ASCII letter, percent-encoded in one segment
    const route = `/${backend}/${encodeURIComponent(id)}`;
    for (let n = 1; n <= 3; n++) {
      const res = await request(unconditional, 'POST', route);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ id, counter: n, by: 1, backend, useConditionalWrites: false });
      expect(res.headers.get('content-type')).toBe('application/json');
    }
    expect(await request(unconditional, 'GET', route)).toMatchObject({ status: 200, body: { id, counter: 3, backend } });
    expect((await request(unconditional, 'GET', `/${backend}/never-${Date.now()}`)).body.counter).toBe(0);
  });

  test('?by=N and Idempotency-Key reach the handler as API Gateway passes them; a repeated by is a 400', async () => {
    const id = `step-${Date.now()}`;
    expect((await request(unconditional, 'POST', `/${backend}/${id}?by=-4`)).body).toMatchObject({ counter: -4, by: -4 });
    const first = await request(unconditional, 'POST', `/${backend}/${id}?by=10`, unconditional.apiKey, { 'Idempotency-Key': `k-${id}` });
    const again = await request(unconditional, 'POST', `/${backend}/${id}?by=10`, unconditional.apiKey, { 'Idempotency-Key': `k-${id}` });
    expect(first.body).toMatchObject({ counter: 6, by: 10 });
    expect(again.body).toEqual(first.body);
    expect([first.headers.get('idempotent-replayed'), again.headers.get('idempotent-replayed')]).toEqual(['false', 'true']);
    expect((await request(unconditional, 'POST', `/${backend}/${id}?by=1&by=2`)).body.code).toBe('INVALID_STEP');
    expect((await request(unconditional, 'GET', `/${backend}/${id}?by=1`)).body.code).toBe('INVALID_STEP');
    expect((await request(unconditional, 'GET', `/${backend}/${id}`)).body.counter).toBe(6);
  });

  test(`conditional (maximum ${MAX}): 200 up to the maximum, then 409 LIMIT_REACHED; GET reads ${MAX}`, async () => {
    const id = `capped-${Date.now()}`;
    for (let n = 1; n <= MAX; n++) {
      expect(await request(conditional, 'POST', `/${backend}/${id}`)).toMatchObject({
        status: 200, body: { id, counter: n, useConditionalWrites: true, maxCounterValue: MAX },
      });
    }
    expect(await request(conditional, 'POST', `/${backend}/${id}`)).toMatchObject({
      status: 409, body: { code: 'LIMIT_REACHED', error: `Counter has reached its maximum value of: ${MAX}`, maxCounterValue: MAX },
    });
    expect((await request(conditional, 'GET', `/${backend}/${id}`)).body.counter).toBe(MAX);
  });

  test(`conditional over HTTP: 20 concurrent POSTs on a new id → exactly ${MAX} accepted with distinct values`, async () => {
    const id = `race-${Date.now()}`;
    const answers = await Promise.all(Array.from({ length: 20 }, () => request(conditional, 'POST', `/${backend}/${id}`)));
    const accepted = answers.filter((a) => a.status === 200).map((a) => a.body.counter).sort();
    expect(accepted).toEqual(Array.from({ length: MAX }, (_, i) => i + 1));
    expect(answers.filter((a) => a.status === 409)).toHaveLength(20 - MAX);
  });
});

test('a backend whose engine cannot be used is skipped with one line and answers 404, the others are unaffected', async () => {
  const saved = process.env.DYNAMODB_URL;
  process.env.DYNAMODB_URL = 'http://127.0.0.1:9'; // the discard port: nothing answers DynamoDB there
  let server: LocalServer | undefined;
  try {
    server = await startLocalServer({ port: 0, quiet: true, backends: ['dynamo'], namespace: uniqueNamespace('t_local'), disposeOnStop: true });
    expect(server.backends).toEqual([]);
    expect(server.skipped).toHaveLength(1);
    expect(server.skipped[0].backend).toBe('dynamo');
    expect(server.skipped[0].reason).not.toContain('\n');
    const res = await request(server, 'POST', '/dynamo/x');
    expect(res.status).toBe(404);
    expect(res.body.error).toContain('not served by this local server');
  } finally {
    if (saved === undefined) delete process.env.DYNAMODB_URL;
    else process.env.DYNAMODB_URL = saved;
    await server?.stop();
  }
}, 60_000);

test('.env parsing: comments, quotes and export lines; the environment wins over the file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-env-'));
  fs.writeFileSync(path.join(dir, '.env'), 'PORT=4000\nMAX_COUNTER_VALUE=5\nREDIS_URL=redis://elsewhere\n');
  expect(serverSettings({ PORT: '9000' }, dir)).toEqual({ PORT: '9000', API_KEY: undefined, USE_CONDITIONAL_WRITES: undefined, MAX_COUNTER_VALUE: '5' });
  expect(parseDotEnv('# c\nexport PORT=8080\nAPI_KEY="a b#c"\nUSE_CONDITIONAL_WRITES=true # on\n\nBAD LINE\nMAX_COUNTER_VALUE=\'7\'')).toEqual({
    PORT: '8080', API_KEY: 'a b#c', USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '7',
  });
});
