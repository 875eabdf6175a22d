/**
 * The shared pipeline (parse → store → answer → log line), on the TypeScript
 * source. The store here is an in-memory stand-in: these tests prove the HTTP
 * and log contract, not atomicity (the conformance suites do that on real
 * engines).
 */
import { BACKEND_UNAVAILABLE_MESSAGE, BackendUnavailableError, CredentialsRejectedError, InvalidIdError, isNetworkError, LimitReachedError } from '../../src/runtime/errors';
import { createCounterHandler } from '../../src/runtime/handler';
import { errorResponse } from '../../src/runtime/http';
import { setLogSink } from '../../src/runtime/log';
import { parseRequest, validateId } from '../../src/runtime/request';
import { CounterStore } from '../../src/runtime/store';

class MapStore implements CounterStore {
  readonly values = new Map<string, number>();
  fail?: Error;
  async increment(id: string) {
    if (this.fail) throw this.fail;
    const v = (this.values.get(id) ?? 0) + 1;
    this.values.set(id, v);
    return v;
  }
  async incrementBelow(id: string, maximum: number) {
    const current = this.values.get(id) ?? 0;
    if (current >= maximum) throw new LimitReachedError(maximum, current);
    return this.increment(id);
  }
  async read(id: string) {
    return this.values.get(id) ?? 0;
  }
}

function event(method: string, id?: string) {
  return { httpMethod: method, pathParameters: id === undefined ? null : { id } };
}

describe('id validation', () => {
  test.each(['a', 'user-42', 'é'.repeat(127), 'x'.repeat(255), 'with space', '計数'])('accepts %p', (id) => {
    expect(validateId(id)).toBe(id);
  });
  test.each([
    ['', /empty/], [undefined, /empty/], ['x'.repeat(256), /at most 255 bytes/], ['é'.repeat(128), /got 256/],
    ['a\nb', /control/], ['\u0000', /control/], ['\u007f', /control/], ['\u0085', /control/], ['\ud800', /UTF-8/],
  ])('rejects %p', (id, message) => {
    expect(() => validateId(id as string)).toThrow(InvalidIdError);
    expect(() => validateId(id as string)).toThrow(message as RegExp);
  });
  test('path parameters arrive percent-encoded and are decoded exactly once', () => {
    expect(parseRequest(event('POST', 'user%2042')).id).toBe('user 42');
    expect(parseRequest(event('POST', '%2541')).id).toBe('%41');
    expect(() => parseRequest(event('POST', '%E0%A4%A'))).toThrow(InvalidIdError);
  });
});

describe('pipeline', () => {
  let lines: any[];
  let restore: (l: string) => void;
  beforeEach(() => {
    lines = [];
    restore = setLogSink((l) => lines.push(JSON.parse(l)));
  });
  afterEach(() => setLogSink(restore));

  test('200 with the documented body, and one log line carrying the counter', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'dynamo', createStore: () => store, mode: { conditionalWrites: true, maxCounterValue: 2 } });
    const res = await handler(event('POST', 'a'));
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ id: 'a', counter: 1, backend: 'dynamo', useConditionalWrites: true, maxCounterValue: 2 });
    expect(lines).toEqual([expect.objectContaining({ level: 'INFO', backend: 'dynamo', id: 'a', counter: 1, accepted: true, statusCode: 200, durationMs: expect.any(Number) })]);
  });

  test('409 at the maximum: LIMIT_REACHED with the documented message; the log line is not accepted', async () => {
    const store = new MapStore();
    store.values.set('a', 2);
    const handler = createCounterHandler({ backend: 'redis', createStore: () => store, mode: { conditionalWrites: true, maxCounterValue: 2 } });
    const res = await handler(event('POST', 'a'));
    expect(res.statusCode).toBe(409);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'LIMIT_REACHED', error: 'Counter has reached its maximum value of: 2', id: 'a', backend: 'redis', maxCounterValue: 2, counter: 2 });
    expect(lines[0]).toMatchObject({ accepted: false, statusCode: 409, code: 'LIMIT_REACHED', counter: 2 });
    expect(store.values.get('a')).toBe(2);
  });

  test('503 with Retry-After for an unavailable backend; 500 INTERNAL without the message for anything else', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'tidb', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10 } });
    store.fail = new BackendUnavailableError('TiDB is unavailable');
    const unavailable = await handler(event('POST', 'a'));
    expect(unavailable.statusCode).toBe(503);
    expect(unavailable.headers['Retry-After']).toBe('1');
    expect(JSON.parse(unavailable.body)).toEqual({ code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'tidb' });
    // The store's detail (driver text, addresses) never reaches the body; it is in the log line.
    store.fail = new BackendUnavailableError('14 UNAVAILABLE: connect ECONNREFUSED 127.0.0.1:1');
    const detailed = await handler(event('POST', 'a'));
    expect(JSON.parse(detailed.body)).toEqual({ code: 'BACKEND_UNAVAILABLE', error: 'Backend unavailable, retry later', backend: 'tidb' });
    expect(lines[1].error).toMatch(/ECONNREFUSED 127\.0\.0\.1:1/);
    store.fail = new Error('password=hunter2 at /var/task/index.js:1');
    const internal = await handler(event('POST', 'a'));
    expect(internal.statusCode).toBe(500);
    expect(internal.body).toBe('{"code":"INTERNAL","error":"Internal error"}');
    expect(lines.map((l) => l.level)).toEqual(['WARN', 'WARN', 'ERROR']);
  });

  test('the store is created once per container, and again after a failed creation', async () => {
    let created = 0;
    const store = new MapStore();
    const handler = createCounterHandler({
      backend: 'momento',
      createStore: () => {
        created++;
        if (created === 1) throw new BackendUnavailableError('secret not readable yet');
        return store;
      },
      mode: { conditionalWrites: false, maxCounterValue: 10 },
    });
    expect((await handler(event('POST', 'a'))).statusCode).toBe(503);
    for (let i = 0; i < 5; i++) expect((await handler(event('POST', 'a'))).statusCode).toBe(200);
    expect(created).toBe(2);
  });

  test('credentials rejected: the secret is dropped, the store recreated once and the request retried on it; at most one re-read per interval', async () => {
    let created = 0;
    const arn = `arn:aws:secretsmanager:eu-west-1:123456789012:secret:rot-${Math.random().toString(36).slice(2)}`;
    const stores: MapStore[] = [];
    const closed: number[] = [];
    const shared = new Map<string, number>();
    const handler = createCounterHandler({
      backend: 'redis',
      createStore: () => {
        const n = ++created;
        const s = Object.assign(new MapStore(), { close: async () => { closed.push(n); } });
        // One datastore behind every store instance.
        Object.defineProperty(s, 'values', { value: shared });
        stores.push(s);
        return s;
      },
      mode: { conditionalWrites: false, maxCounterValue: 10 },
    });
    expect(JSON.parse((await handler(event('POST', 'a'))).body).counter).toBe(1);
    // Rotation: the first store's credentials are now rejected (before anything is applied).
    stores[0].fail = new CredentialsRejectedError('WRONGPASS', { secretArn: arn });
    const recovered = await handler(event('POST', 'a'));
    expect(recovered.statusCode).toBe(200);
    expect(JSON.parse(recovered.body).counter).toBe(2);
    expect(lines[lines.length - 1]).toMatchObject({ statusCode: 200, counter: 2, credentialsRefreshed: true });
    expect(created).toBe(2);
    expect(closed).toEqual([1]);
    // Rejected again at once: no second re-read within the interval → 500, store kept.
    stores[1].fail = new CredentialsRejectedError('WRONGPASS', { secretArn: arn });
    const again = await handler(event('POST', 'a'));
    expect(again.statusCode).toBe(500);
    expect(again.body).toBe('{"code":"INTERNAL","error":"Internal error"}');
    expect(created).toBe(2);
    // A direct URL (no secret): nothing to re-read, 500 at once.
    stores[1].fail = new CredentialsRejectedError('WRONGPASS');
    expect((await handler(event('POST', 'a'))).statusCode).toBe(500);
    expect(created).toBe(2);
    expect(shared.get('a')).toBe(2);
  });

  test('credentials rejected with too little function time left for a second pass: 503, and the next request runs on a fresh store', async () => {
    let created = 0;
    const arn = `arn:aws:secretsmanager:eu-west-1:123456789012:secret:rot-${Math.random().toString(36).slice(2)}`;
    const first = new MapStore();
    first.fail = new CredentialsRejectedError('WRONGPASS', { secretArn: arn });
    const second = new MapStore();
    const handler = createCounterHandler({
      backend: 'tidb',
      createStore: () => (++created === 1 ? first : second),
      mode: { conditionalWrites: false, maxCounterValue: 10 },
    });
    const res = await handler(event('POST', 'a'), { getRemainingTimeInMillis: () => 500 });
    expect(res.statusCode).toBe(503);
    expect(res.headers['Retry-After']).toBe('1');
    expect(JSON.parse((await handler(event('POST', 'a'))).body).counter).toBe(1);
    expect(created).toBe(2);
  });

  test('unknown method → 404 NOT_FOUND; GET reads without writing', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'docdb', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10 } });
    expect(JSON.parse((await handler(event('PUT', 'a'))).body)).toMatchObject({ code: 'NOT_FOUND' });
    expect(JSON.parse((await handler(event('GET', 'a'))).body)).toEqual({ id: 'a', counter: 0, backend: 'docdb' });
    expect(store.values.size).toBe(0);
  });

  test('invalid configuration fails at init with the variable named', () => {
    expect(() => createCounterHandler({ backend: 'dynamo', createStore: () => new MapStore(), env: { MAX_COUNTER_VALUE: '0' } })).toThrow(/MAX_COUNTER_VALUE must be an integer ≥ 1/);
    expect(() => createCounterHandler({ backend: 'dynamo', createStore: () => new MapStore(), env: { USE_CONDITIONAL_WRITES: 'maybe' } })).toThrow(/USE_CONDITIONAL_WRITES must be true or false/);
  });
});

describe('errors', () => {
  test('network errors are found through cause chains and aggregate errors', () => {
    expect(isNetworkError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isNetworkError(new Error('outer', { cause: Object.assign(new Error('inner'), { code: 'ETIMEDOUT' }) }))).toBe(true);
    expect(isNetworkError(new AggregateError([Object.assign(new Error('a'), { code: 'ECONNRESET' })]))).toBe(true);
    expect(isNetworkError(new Error('syntax error'))).toBe(false);
  });
  test('a non-counter error never leaks its message', () => {
    expect(JSON.parse(errorResponse(new TypeError('secret')).body)).toEqual({ code: 'INTERNAL', error: 'Internal error' });
  });
});
