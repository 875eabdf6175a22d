/**
 * The OpenAPI document (docs/openapi.json) is valid OpenAPI 3.1, and the
 * checker the conformance kit and the local-server tests use with it catches
 * the answers the HTTP contract forbids: each case below is a realistic
 * handler bug that must not pass as conforming.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';
import { checkAnswer, OPENAPI_PATH, openApiDocument } from '../../local/openapi';

const JSON_HEADERS = { 'Content-Type': 'application/json' };

test('docs/openapi.json validates against the OpenAPI 3.1 schema (@seriousme/openapi-schema-validator)', () => {
  const cli = path.join(path.dirname(require.resolve('@seriousme/openapi-schema-validator/package.json')), 'bin', 'validate-api-cli.js');
  const out = JSON.parse(execFileSync(process.execPath, [cli, OPENAPI_PATH], { encoding: 'utf8' }));
  expect(out).toEqual({ valid: true });
});

test('the document describes both operations, the API key and every answer of the HTTP contract', () => {
  const doc = openApiDocument();
  expect(doc.openapi).toMatch(/^3\.1\./);
  expect(doc.components.securitySchemes.apiKey).toEqual(expect.objectContaining({ type: 'apiKey', in: 'header', name: 'x-api-key' }));
  const route = doc.paths['/{backend}/{id}'];
  expect(Object.keys(route.post.responses).sort()).toEqual(['200', '400', '403', '404', '409', '422', '429', '500', '503']);
  expect(route.post.parameters.map((p: { $ref: string }) => p.$ref)).toEqual(['#/components/parameters/Step', '#/components/parameters/IdempotencyKey']);
  expect(Object.keys(route.get.responses).sort()).toEqual(['200', '400', '403', '404', '429', '500', '503']);
  expect(doc.components.schemas.Backend.enum).toEqual(['dynamo', 'redis', 'momento', 'docdb', 'tidb']);
});

describe('conforming answers pass', () => {
  test.each([
    ['POST', 200, { id: 'a', counter: 1, by: 1, backend: 'redis', useConditionalWrites: false }, JSON_HEADERS],
    ['POST', 200, { id: 'a', counter: 3, by: 1, backend: 'tidb', useConditionalWrites: true, maxCounterValue: 3 }, JSON_HEADERS],
    ['POST', 200, { id: 'a', counter: -47, by: -50, backend: 'redis', useConditionalWrites: false }, { ...JSON_HEADERS, 'Idempotent-Replayed': 'true' }],
    ['POST', 409, { code: 'LIMIT_REACHED', error: 'Adding 7 would take the counter above its maximum value of: 1000', id: 'a', by: 7, backend: 'docdb', useConditionalWrites: true, maxCounterValue: 1000, counter: 994 }, JSON_HEADERS],
    ['POST', 409, { code: 'FLOOR_REACHED', error: 'Subtracting 3 would take the counter below 0', id: 'a', by: -3, backend: 'tidb', useConditionalWrites: true, counter: 1 }, JSON_HEADERS],
    ['POST', 400, { code: 'INVALID_STEP', error: 'by must be a non-zero integer' }, JSON_HEADERS],
    ['POST', 400, { code: 'INVALID_IDEMPOTENCY_KEY', error: 'bad key' }, JSON_HEADERS],
    ['GET', 400, { code: 'INVALID_STEP', error: 'by is only accepted on POST' }, JSON_HEADERS],
    ['POST', 422, { code: 'IDEMPOTENCY_KEY_REUSED', error: 'reused' }, JSON_HEADERS],
    ['GET', 200, { id: 'a', counter: 0, backend: 'dynamo' }, JSON_HEADERS],
    ['POST', 409, { code: 'LIMIT_REACHED', error: 'Counter has reached its maximum value of: 3', id: 'a', backend: 'docdb', useConditionalWrites: true, maxCounterValue: 3, counter: 3 }, JSON_HEADERS],
    ['POST', 400, { code: 'INVALID_ID', error: 'The counter id must not be empty' }, JSON_HEADERS],
    ['DELETE', 404, { code: 'NOT_FOUND', error: 'No route for method DELETE' }, JSON_HEADERS],
    ['POST', 503, { code: 'BACKEND_UNAVAILABLE', error: 'Backend unavailable, retry later', backend: 'momento' }, { ...JSON_HEADERS, 'Retry-After': '1' }],
    ['GET', 500, { code: 'INTERNAL', error: 'Internal error' }, JSON_HEADERS],
    ['POST', 403, { message: 'Forbidden' }, {}],
    ['POST', 200, { id: 'a', shards: 8, by: 1, backend: 'dynamo', useConditionalWrites: true, maxCounterValue: 100 }, JSON_HEADERS],
    ['POST', 200, { id: 'a', shards: 8, by: -3, backend: 'redis', useConditionalWrites: false }, { ...JSON_HEADERS, 'Idempotent-Replayed': 'true' }],
    ['GET', 200, { id: 'a', counter: 812, shards: 8, backend: 'dynamo' }, JSON_HEADERS],
    ['POST', 429, { code: 'THROTTLED', error: 'The datastore is throttling this counter, retry later', backend: 'dynamo' }, { ...JSON_HEADERS, 'Retry-After': '1' }],
    ['GET', 429, { message: 'Too Many Requests' }, JSON_HEADERS],
  ])('%s → %d', (method, status, body, headers) => {
    expect(checkAnswer(method as string, { status: status as number, body, headers: headers as Record<string, string> })).toEqual([]);
  });
});

describe('answers the contract forbids are caught', () => {
  test.each([
    ['a 200 without the counter', 'POST', 200, { id: 'a', by: 1, backend: 'redis', useConditionalWrites: false }, JSON_HEADERS],
    ['a 200 without the step', 'POST', 200, { id: 'a', counter: 1, backend: 'redis', useConditionalWrites: false }, JSON_HEADERS],
    ['a step of zero', 'POST', 200, { id: 'a', counter: 1, by: 0, backend: 'redis', useConditionalWrites: false }, JSON_HEADERS],
    ['a counter as a string', 'POST', 200, { id: 'a', counter: '1', by: 1, backend: 'redis', useConditionalWrites: false }, JSON_HEADERS],
    ['a counter beyond the safe integers', 'GET', 200, { id: 'a', counter: -9007199254740992, backend: 'redis' }, JSON_HEADERS],
    ['a replay header that is not true or false', 'POST', 200, { id: 'a', counter: 1, by: 1, backend: 'redis', useConditionalWrites: false }, { ...JSON_HEADERS, 'Idempotent-Replayed': 'yes' }],
    ['a floor rejection with the limit code', 'POST', 409, { code: 'LIMIT_REACHED', error: 'Subtracting 3 would take the counter below 0', by: -3, maxCounterValue: 3 }, JSON_HEADERS],
    ['a 422 on a read', 'GET', 422, { code: 'IDEMPOTENCY_KEY_REUSED', error: 'reused' }, JSON_HEADERS],
    ['conditional mode without its maximum', 'POST', 200, { id: 'a', counter: 1, by: 1, backend: 'redis', useConditionalWrites: true }, JSON_HEADERS],
    ['an unconditional answer naming a maximum', 'POST', 200, { id: 'a', counter: 1, by: 1, backend: 'redis', useConditionalWrites: false, maxCounterValue: 3 }, JSON_HEADERS],
    ['an unknown backend', 'GET', 200, { id: 'a', counter: 1, backend: 'postgres' }, JSON_HEADERS],
    ['a 409 on a read', 'GET', 409, { code: 'LIMIT_REACHED', error: 'Counter has reached its maximum value of: 3', maxCounterValue: 3 }, JSON_HEADERS],
    ['a 409 with another message', 'POST', 409, { code: 'LIMIT_REACHED', error: 'full', maxCounterValue: 3 }, JSON_HEADERS],
    ['a 503 carrying the driver\'s text', 'POST', 503, { code: 'BACKEND_UNAVAILABLE', error: '14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1', backend: 'momento' }, { ...JSON_HEADERS, 'Retry-After': '1' }],
    ['a 503 without Retry-After', 'POST', 503, { code: 'BACKEND_UNAVAILABLE', error: 'x', backend: 'redis' }, JSON_HEADERS],
    ['a 503 leaking a stack', 'POST', 503, { code: 'BACKEND_UNAVAILABLE', error: 'x', stack: 'at y' }, { ...JSON_HEADERS, 'Retry-After': '1' }],
    ['a 500 carrying the cause', 'POST', 500, { code: 'INTERNAL', error: 'connect ECONNREFUSED 10.0.0.1:6379' }, JSON_HEADERS],
    ['an undocumented status', 'POST', 502, { message: 'Internal server error' }, JSON_HEADERS],
    ['a 200 for an unknown method', 'PUT', 200, { id: 'a', counter: 1, backend: 'redis' }, JSON_HEADERS],
    ['a sharded 200 that also claims a total', 'POST', 200, { id: 'a', counter: 3, shards: 8, by: 1, backend: 'dynamo', useConditionalWrites: false }, JSON_HEADERS],
    ['a shard count past the limit', 'GET', 200, { id: 'a', counter: 3, shards: 65, backend: 'dynamo' }, JSON_HEADERS],
    ['a throttle answered with the 503 body', 'POST', 429, { code: 'BACKEND_UNAVAILABLE', error: 'Backend unavailable, retry later', backend: 'dynamo' }, { ...JSON_HEADERS, 'Retry-After': '1' }],
    ['a throttle with another message', 'POST', 429, { code: 'THROTTLED', error: 'ProvisionedThroughputExceededException', backend: 'dynamo' }, { ...JSON_HEADERS, 'Retry-After': '1' }],
    ['a wrong content type', 'GET', 200, { id: 'a', counter: 1, backend: 'redis' }, { 'Content-Type': 'text/plain' }],
  ])('%s', (_name, method, status, body, headers) => {
    expect(checkAnswer(method as string, { status: status as number, body, headers: headers as Record<string, string> })).not.toEqual([]);
  });
});
