/**
 * The shared pipeline (parse → store → answer → log line), on the TypeScript
 * source. The store here is an in-memory stand-in: these tests prove the HTTP
 * and log contract, not atomicity (the conformance suites do that on real
 * engines).
 */
import { BACKEND_UNAVAILABLE_MESSAGE, BackendUnavailableError, boundRejection, CredentialsRejectedError, IdempotencyKeyReusedError, InvalidIdempotencyKeyError, InvalidIdError, InvalidStepError, isNetworkError, LimitReachedError } from '../../src/runtime/errors';
import { createCounterHandler } from '../../src/runtime/handler';
import { errorResponse } from '../../src/runtime/http';
import { setLogSink } from '../../src/runtime/log';
import { parseIdempotencyKey, parseRequest, parseStep, validateId } from '../../src/runtime/request';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, MAX_STEP, sameBinding } from '../../src/runtime/store';

class MapStore implements CounterStore {
  readonly values = new Map<string, number>();
  readonly keys = new Map<string, { id: string; by: number; counter: number }>();
  fail?: Error;
  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    if (this.fail) throw this.fail;
    const key = change.idempotency?.key;
    const recorded = key === undefined ? undefined : this.keys.get(key);
    if (recorded) {
      if (!sameBinding(recorded, id, change.by)) throw new IdempotencyKeyReusedError();
      return { counter: recorded.counter, replayed: true };
    }
    const current = this.values.get(id) ?? 0;
    const { lowest, highest } = allowedPrevious(change.by, change.maximum);
    if (current < lowest || current > highest) {
      if (change.maximum === undefined) throw new InvalidStepError('result out of range');
      throw boundRejection(change.by, change.maximum, current);
    }
    const counter = current + change.by;
    this.values.set(id, counter);
    if (key !== undefined) this.keys.set(key, { id, by: change.by, counter });
    return { counter, replayed: false };
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

/** The log lines written during each test of the calling describe block (parsed), in order. */
function captureLogLines(): any[] {
  const lines: any[] = [];
  let restore: (l: string) => void;
  beforeEach(() => {
    lines.length = 0;
    restore = setLogSink((l) => lines.push(JSON.parse(l)));
  });
  afterEach(() => setLogSink(restore));
  return lines;
}

describe('pipeline', () => {
  const lines = captureLogLines();

  test('200 with the documented body, and one log line carrying the counter', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'dynamo', createStore: () => store, mode: { conditionalWrites: true, maxCounterValue: 2 } });
    const res = await handler(event('POST', 'a'));
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ id: 'a', counter: 1, by: 1, backend: 'dynamo', useConditionalWrites: true, maxCounterValue: 2 });
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

  test('a sharded counter: the change reaches the store with its shard count; the 200 carries shards, not a total; GET reads every shard', async () => {
    const seen: Array<{ op: string; shards?: number }> = [];
    const store: CounterStore = {
      sharded: true,
      async apply(_id, change) {
        seen.push({ op: 'apply', shards: change.shards });
        return { replayed: false, shard: 5 };
      },
      async read(_id, shards) {
        seen.push({ op: 'read', shards });
        return 42;
      },
    };
    const handler = createCounterHandler({ backend: 'dynamo', createStore: () => store, mode: { conditionalWrites: true, maxCounterValue: 100, shards: 8 } });
    const res = await handler(event('POST', 'a'));
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ id: 'a', shards: 8, by: 1, backend: 'dynamo', useConditionalWrites: true, maxCounterValue: 100 });
    expect(lines[0]).toMatchObject({ id: 'a', shard: 5, accepted: true });
    expect(lines[0]).not.toHaveProperty('counter');
    const read = await handler(event('GET', 'a'));
    expect(JSON.parse(read.body)).toEqual({ id: 'a', counter: 42, shards: 8, backend: 'dynamo' });
    expect(seen).toEqual([{ op: 'apply', shards: 8 }, { op: 'read', shards: 8 }]);
  });

  test('a shard count above 1 for a store without sharding: 500 and nothing applied, never an unsharded answer dressed as sharded', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'tidb', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10, shards: 4 } });
    expect((await handler(event('POST', 'a'))).statusCode).toBe(500);
    expect((await handler(event('GET', 'a'))).statusCode).toBe(500);
    expect(store.values.size).toBe(0);
    expect(lines[0].error).toMatch(/COUNTER_SHARDS=4, but the tidb store does not implement sharded counters/);
  });

  test('an unsharded counter (shards 1) answers exactly as before: no shards field, the counter in the body', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'redis', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10, shards: 1 } });
    expect(JSON.parse((await handler(event('POST', 'a'))).body)).toEqual({ id: 'a', counter: 1, by: 1, backend: 'redis', useConditionalWrites: false });
    expect(JSON.parse((await handler(event('GET', 'a'))).body)).toEqual({ id: 'a', counter: 1, backend: 'redis' });
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

function postEvent(id: string, options: { by?: string | string[]; key?: string | string[]; method?: string } = {}) {
  const by = options.by === undefined ? undefined : ([] as string[]).concat(options.by);
  const key = options.key === undefined ? undefined : ([] as string[]).concat(options.key);
  return {
    httpMethod: options.method ?? 'POST',
    pathParameters: { id },
    queryStringParameters: by ? { by: by[by.length - 1] } : null,
    multiValueQueryStringParameters: by ? { by } : null,
    headers: key ? { 'Idempotency-Key': key[key.length - 1] } : {},
    multiValueHeaders: key ? { 'Idempotency-Key': key } : {},
  };
}

describe('step (?by=N)', () => {
  test.each([['1', 1], ['-1', -1], ['250', 250], ['-50', -50], [String(MAX_STEP), MAX_STEP], [`-${MAX_STEP}`, -MAX_STEP]])('accepts %p', (raw, by) => {
    expect(parseStep([raw as string])).toBe(by);
  });
  test('absent → 1', () => {
    expect(parseStep(undefined)).toBe(1);
    expect(parseRequest(event('POST', 'a')).by).toBe(1);
  });
  test.each(['0', '-0', '', '+5', '1e3', '1.0', '1.5', ' 5', '5 ', '05', 'abc', '0x10', String(MAX_STEP + 1), `-${MAX_STEP + 1}`, '9007199254740993', 'Infinity', 'NaN', '--1'])('rejects %p', (raw) => {
    expect(() => parseStep([raw])).toThrow(InvalidStepError);
  });
  test('given twice → INVALID_STEP; on a GET → INVALID_STEP', () => {
    expect(() => parseRequest(postEvent('a', { by: ['1', '2'] }))).toThrow(InvalidStepError);
    expect(() => parseRequest(postEvent('a', { by: '1', method: 'GET' }))).toThrow(InvalidStepError);
    expect(parseRequest(postEvent('a', { by: '-7' })).by).toBe(-7);
    // The single-value map alone (no multi-value map) is read too.
    expect(parseRequest({ httpMethod: 'POST', pathParameters: { id: 'a' }, queryStringParameters: { by: '3' } }).by).toBe(3);
  });
  test('allowed previous values: conditional bounds both ways, the safe range unconditionally', () => {
    expect(allowedPrevious(7, 1000)).toEqual({ lowest: Number.MIN_SAFE_INTEGER, highest: 993 });
    expect(allowedPrevious(-3, 1000)).toEqual({ lowest: 3, highest: Number.MAX_SAFE_INTEGER });
    expect(allowedPrevious(5)).toEqual({ lowest: Number.MIN_SAFE_INTEGER, highest: Number.MAX_SAFE_INTEGER - 5 });
    expect(allowedPrevious(-5)).toEqual({ lowest: Number.MIN_SAFE_INTEGER + 5, highest: Number.MAX_SAFE_INTEGER });
  });
});

describe('Idempotency-Key', () => {
  test.each(['k', 'a'.repeat(255), 'order-42/attempt 1', '~!@#$%^&*()_+{}|:"<>?`-=[]\\;\',./'])('accepts %p', (key) => {
    expect(parseIdempotencyKey([key])).toBe(key);
  });
  test.each(['', 'a'.repeat(256), 'tab\there', 'nl\n', 'nul\u0000', 'del\u007f', 'naïve', '計数', 'emoji😀'])('rejects %p', (key) => {
    expect(() => parseIdempotencyKey([key])).toThrow(InvalidIdempotencyKeyError);
  });
  test('header names are case-insensitive; two different values → 400; absent → no key', () => {
    expect(parseRequest({ httpMethod: 'POST', pathParameters: { id: 'a' }, headers: { 'idempotency-key': 'k1' } }).requestKey).toBe('k1');
    expect(parseRequest({ httpMethod: 'POST', pathParameters: { id: 'a' }, headers: { 'IDEMPOTENCY-KEY': 'k2' } }).requestKey).toBe('k2');
    expect(() => parseRequest(postEvent('a', { key: ['k1', 'k2'] }))).toThrow(InvalidIdempotencyKeyError);
    expect(parseRequest(postEvent('a', { key: ['k1', 'k1'] })).requestKey).toBe('k1');
    expect(parseRequest(postEvent('a')).requestKey).toBeUndefined();
    // An empty header is a bad key, not an absent one.
    expect(() => parseRequest({ httpMethod: 'POST', pathParameters: { id: 'a' }, headers: { 'Idempotency-Key': '' } })).toThrow(InvalidIdempotencyKeyError);
  });
});

describe('pipeline: steps and keys', () => {
  const lines = captureLogLines();

  test('the store receives the step, the maximum and the key with the configured retention', async () => {
    const seen: CounterChange[] = [];
    const store = new MapStore();
    const apply = store.apply.bind(store);
    store.apply = async (id, change) => {
      seen.push(change);
      return apply(id, change);
    };
    const conditional = createCounterHandler({ backend: 'redis', createStore: () => store, mode: { conditionalWrites: true, maxCounterValue: 50, idempotencyRetentionSeconds: 7 } });
    await conditional(postEvent('a', { by: '5', key: 'k' }));
    const unconditional = createCounterHandler({ backend: 'redis', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 50 } });
    await unconditional(postEvent('a', { by: '-2' }));
    expect(seen).toEqual([
      { by: 5, maximum: 50, idempotency: { key: 'k', retentionSeconds: 7 } },
      { by: -2 },
    ]);
  });

  test('a step answers the value after it and the step; the log line carries both', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'tidb', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10 } });
    const res = await handler(postEvent('a', { by: '250' }));
    expect(JSON.parse(res.body)).toEqual({ id: 'a', counter: 250, by: 250, backend: 'tidb', useConditionalWrites: false });
    expect(res.headers['Idempotent-Replayed']).toBeUndefined();
    const down = await handler(postEvent('a', { by: '-300' }));
    expect(JSON.parse(down.body)).toMatchObject({ counter: -50, by: -300 });
    expect(lines.map((l) => [l.by, l.counter, l.accepted])).toEqual([[250, 250, true], [-300, -50, true]]);
  });

  test('conditional: FLOOR_REACHED going down, LIMIT_REACHED with a step message going up; nothing written', async () => {
    const store = new MapStore();
    store.values.set('a', 2);
    const handler = createCounterHandler({ backend: 'docdb', createStore: () => store, mode: { conditionalWrites: true, maxCounterValue: 10 } });
    const floor = await handler(postEvent('a', { by: '-3' }));
    expect(floor.statusCode).toBe(409);
    expect(JSON.parse(floor.body)).toEqual({
      code: 'FLOOR_REACHED', error: 'Subtracting 3 would take the counter below 0', id: 'a', by: -3, backend: 'docdb', useConditionalWrites: true, counter: 2,
    });
    const limit = await handler(postEvent('a', { by: '9' }));
    expect(JSON.parse(limit.body)).toMatchObject({ code: 'LIMIT_REACHED', error: 'Adding 9 would take the counter above its maximum value of: 10', by: 9, maxCounterValue: 10, counter: 2 });
    expect(store.values.get('a')).toBe(2);
    expect(lines.map((l) => [l.code, l.accepted, l.counter])).toEqual([['FLOOR_REACHED', false, 2], ['LIMIT_REACHED', false, 2]]);
  });

  test('bad step and bad key → 400 before the store is touched', async () => {
    const store = new MapStore();
    let applied = 0;
    store.apply = async () => {
      applied++;
      return { counter: 0, replayed: false };
    };
    const handler = createCounterHandler({ backend: 'dynamo', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10 } });
    for (const [ev, code] of [
      [postEvent('a', { by: '0' }), 'INVALID_STEP'],
      [postEvent('a', { by: '1', method: 'GET' }), 'INVALID_STEP'],
      [postEvent('a', { key: 'a'.repeat(256) }), 'INVALID_IDEMPOTENCY_KEY'],
    ] as const) {
      const res = await handler(ev);
      expect(res.statusCode).toBe(400);
      expect(JSON.parse(res.body).code).toBe(code);
    }
    expect(applied).toBe(0);
  });

  test('keyed: the first answer says Idempotent-Replayed false, a repeat true with the same counter; reuse elsewhere → 422', async () => {
    const store = new MapStore();
    const handler = createCounterHandler({ backend: 'momento', createStore: () => store, mode: { conditionalWrites: false, maxCounterValue: 10 } });
    const first = await handler(postEvent('a', { key: 'order-1' }));
    await handler(postEvent('a'));
    const again = await handler(postEvent('a', { key: 'order-1' }));
    expect(first.headers['Idempotent-Replayed']).toBe('false');
    expect(again.headers['Idempotent-Replayed']).toBe('true');
    expect(again.body).toBe(first.body);
    const reused = await handler(postEvent('b', { key: 'order-1' }));
    expect(reused.statusCode).toBe(422);
    expect(JSON.parse(reused.body)).toEqual({ code: 'IDEMPOTENCY_KEY_REUSED', error: expect.stringMatching(/another counter or another step/) });
    expect(lines.map((l) => [l.statusCode, l.accepted, l.replayed])).toEqual([
      [200, true, false], [200, true, undefined], [200, false, true], [422, false, undefined],
    ]);
  });

  test('the store errors map: InvalidStepError from a store is a 400, boundRejection picks the code by direction', () => {
    expect(errorResponse(new InvalidStepError('x')).statusCode).toBe(400);
    expect(boundRejection(1, 5).code).toBe('LIMIT_REACHED');
    expect(boundRejection(-1, 5).code).toBe('FLOOR_REACHED');
    expect(new IdempotencyKeyReusedError().statusCode).toBe(422);
    expect(new LimitReachedError(5).message).toBe('Counter has reached its maximum value of: 5');
  });
});
