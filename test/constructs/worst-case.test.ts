/**
 * Point 7 of issue 11: each store's worst-case answer time, computed from its
 * function's environment, is checked at synth against the function timeout
 * (a Lambda timeout reaches the client as a 502, a store's own bound as a 503).
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';
import { docdbWorstCase } from '../../src/backends/docdb/docdb-env';
import { dynamoWorstCase } from '../../src/backends/dynamo/dynamo-env';
import { momentoWorstCase } from '../../src/backends/momento/momento-env';
import { redisWorstCase } from '../../src/backends/redis/redis-env';
import { tidbWorstCase } from '../../src/backends/tidb/tidb-env';
import { SECRET_READ_BOUNDS } from '../../src/timeouts';

const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:key-AbCdEf';

function stack(): Stack {
  return new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
}
const secret = (s: Stack) => secretsmanager.Secret.fromSecretCompleteArn(s, 'Secret', SECRET);

describe('worst cases from the env contracts', () => {
  test('defaults: every term named, sums as documented', () => {
    expect(dynamoWorstCase({})).toEqual({ totalMs: 3 * 2000 + 75 + 150, parts: { '3 attempts × request timeout': 6000, 'retry back-off': 225 } });
    expect(redisWorstCase({ REDIS_AUTH_SECRET_ARN: SECRET })?.totalMs).toBe(SECRET_READ_BOUNDS.requestTimeoutMs + 1000 + 1000 + 2000);
    expect(redisWorstCase({ REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '250' })?.parts.WAIT).toBe(250);
    // Both modes: a keyed change runs the compare-and-swap loop whatever the mode.
    expect(momentoWorstCase({ MOMENTO_API_KEY_SECRET_ARN: SECRET, USE_CONDITIONAL_WRITES: 'false' })?.totalMs).toBe(SECRET_READ_BOUNDS.requestTimeoutMs + 1000 + 5000 + 1100 + 16);
    expect(momentoWorstCase({ MOMENTO_API_KEY_SECRET_ARN: SECRET, USE_CONDITIONAL_WRITES: 'true', MOMENTO_CAS_BUDGET_MS: '3000' })?.totalMs).toBe(SECRET_READ_BOUNDS.requestTimeoutMs + 1000 + 3000 + 1100 + 16);
    expect(tidbWorstCase({ TIDB_SECRET_ARN: SECRET })?.totalMs).toBe(SECRET_READ_BOUNDS.requestTimeoutMs + 2500 + 2000 + 2500);
    // DocumentDB: the operation timeout bounds selection + connect + every attempt, whichever is less.
    expect(docdbWorstCase({ DOCDB_SECRET_ARN: SECRET })).toEqual({ totalMs: SECRET_READ_BOUNDS.requestTimeoutMs + 6000, parts: { 'secret read': 1500, 'operation timeout': 6000 } });
    expect(docdbWorstCase({ DOCDB_SECRET_ARN: SECRET, DOCDB_SOCKET_TIMEOUT_MS: '500', DOCDB_OPERATION_TIMEOUT_MS: '20000' })?.totalMs)
      .toBe(SECRET_READ_BOUNDS.requestTimeoutMs + 2000 + 2000 + 3 * 500);
  });

  test('a value that is still a token makes the worst case unknown (not checked at synth)', () => {
    expect(redisWorstCase({ REDIS_COMMAND_TIMEOUT_MS: '${Token[TOKEN.1]}' })).toBeUndefined();
  });
});

describe('synth: worst case against the function timeout', () => {
  test('every backend\'s defaults fit the default 10 s timeout', () => {
    const s = stack();
    const vpc = new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 });
    expect(() => new DynamoCounter(s, 'Dynamo')).not.toThrow();
    expect(() => new RedisCounter(s, 'Redis', { vpc })).not.toThrow();
    expect(() => new MomentoCounter(s, 'Momento', { credentialsSecret: secret(s), conditionalWrites: true })).not.toThrow();
    expect(() => new TiDbCounter(s, 'TiDb', { credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'T', SECRET.replace('key', 'tidb')) })).not.toThrow();
    expect(() => new DocDbCounter(s, 'DocDb', { vpc })).not.toThrow();
  });

  test.each([
    ['DynamoDB, timeout 5 s', (s: Stack) => new DynamoCounter(s, 'C', { timeout: Duration.seconds(5) }), /^Test\/C: the store's worst-case answer time is 6225 ms \(3 attempts × request timeout 6000 ms \+ retry back-off 225 ms\); with a 1000 ms margin it exceeds the function timeout of 5000 ms/],
    ['Redis, command timeout 3 s under a 10 s timeout', (s: Stack) => new RedisCounter(s, 'C', { vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }), commandTimeout: Duration.seconds(3) }), /^Test\/C: the store's worst-case answer time is 11500 ms \(secret read 1500 ms \+ idle-connection PING 3000 ms \+ connect 1000 ms \+ command \+ NOSCRIPT fallback 6000 ms\).*function timeout of 10000 ms.*502 instead of a 503/],
    ['Momento, conditional, CAS budget 8 s under a 10 s timeout', (s: Stack) => new MomentoCounter(s, 'C', { credentialsSecret: secret(s), conditionalWrites: true, casTimeBudget: Duration.seconds(8) }), /^Test\/C: the store's worst-case answer time is 11616 ms \(secret read 1500 ms \+ init-phase channel connect 1000 ms \+ compare-and-swap budget 8000 ms \+ one SDK call \(client deadline\) 1100 ms \+ back-off 16 ms\)/],
    ['TiDB, query timeout 4 s under an 11 s timeout', (s: Stack) => new TiDbCounter(s, 'C', { credentialsSecret: secret(s), connectTimeout: Duration.seconds(1), queryTimeout: Duration.seconds(4), timeout: Duration.seconds(11) }), /^Test\/C: the store's worst-case answer time is 10500 ms \(secret read 1500 ms \+ stale-connection ping 4000 ms \+ connect 1000 ms \+ statement \(retries included\) 4000 ms\)/],
  ])('%s: synth fails with one clear message', (_, build, message) => {
    expect(() => build(stack())).toThrow(message);
  });

  test('raising the timeout makes the same settings synthesize', () => {
    const s = stack();
    expect(() => new DynamoCounter(s, 'C', { timeout: Duration.seconds(8) })).not.toThrow();
    expect(() => new MomentoCounter(s, 'M', { credentialsSecret: secret(s), conditionalWrites: true, casTimeBudget: Duration.seconds(8), timeout: Duration.seconds(13) })).not.toThrow();
  });

  test('DocumentDB: a worst case over the timeout fails synth like every backend\'s (the operation timeout is the bound)', () => {
    const s = stack();
    const vpc = new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 });
    expect(() => new DocDbCounter(s, 'C', { vpc, timeout: Duration.seconds(8) }))
      .toThrow(/^Test\/C: the store's worst-case answer time is 7500 ms \(secret read 1500 ms \+ operation timeout 6000 ms\); with a 1000 ms margin it exceeds the function timeout of 8000 ms/);
  });
});
