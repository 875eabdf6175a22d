/**
 * `shards` (issue 21) at synth, for every backend the library knows: an
 * unsharded counter's function environment is what it always was (no
 * COUNTER_SHARDS), a shard count reaches the counter function of a backend
 * whose store implements sharding, and is refused, with the other props
 * problems in one error, by a backend whose store does not.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, CounterBase, CounterOptions, DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';
import { COMMON_ENV } from '../../src/counter-env';
import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';
import type { BackendName } from '../../src/runtime/store';
import { functionEnvironments, thrown } from '../kit/template';

const ENV = { account: '123456789012', region: 'eu-west-1' };

/** One backend's counter with `props` in a fresh stack. */
function build(backend: BackendName, props: CounterOptions): { stack: Stack; counter: CounterBase } {
  const stack = new Stack(new App(), 'Test', { env: ENV });
  const secret = (name: string) => secretsmanager.Secret.fromSecretCompleteArn(stack, name, `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`);
  const vpc = () => new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const counter = {
    dynamo: () => new DynamoCounter(stack, 'Counter', props),
    redis: () => new RedisCounter(stack, 'Counter', { ...props, vpc: vpc() }),
    momento: () => new MomentoCounter(stack, 'Counter', { ...props, credentialsSecret: secret('momento') }),
    docdb: () => new DocDbCounter(stack, 'Counter', { ...props, vpc: vpc() }),
    tidb: () => new TiDbCounter(stack, 'Counter', { ...props, credentialsSecret: secret('tidb') }),
  }[backend]();
  return { stack, counter };
}

/** COUNTER_SHARDS of every function of the stack (undefined where unset). */
function shardSettings(stack: Stack): Array<unknown> {
  return Object.values(functionEnvironments(Template.fromStack(stack))).map((f) => f.variables[COMMON_ENV.SHARDS]);
}

const SHARDED = ALL_BACKEND_CONTRACTS.filter((c) => c.sharded).map((c) => c.name);
const UNSHARDED = ALL_BACKEND_CONTRACTS.filter((c) => !c.sharded).map((c) => c.name);

describe.each(ALL_BACKEND_CONTRACTS.map((c) => c.name))('%s', (backend) => {
  test('unsharded by default and with shards: 1: no function gets COUNTER_SHARDS, the counter says 1', () => {
    for (const props of [{}, { shards: 1 }]) {
      const { stack, counter } = build(backend, props);
      expect(counter.shards).toBe(1);
      expect(shardSettings(stack).filter((v) => v !== undefined)).toEqual([]);
    }
  });

  test.each([0, 65, 2.5])('shards: %p is refused with the other props problems in one error', (shards) => {
    const message = thrown(() => build(backend, { shards, maxCounterValue: 0 }));
    expect(message).toContain(`\`shards\` must be an integer from 1 to 64 (got ${shards})`);
    expect(message).toContain('`maxCounterValue` must be an integer ≥ 1 (got 0)');
  });
});

if (SHARDED.length > 0) {
  test.each(SHARDED)('%s: shards: 8 reaches the counter function (and only it), and the counter says 8', (backend) => {
    const { stack, counter } = build(backend, { shards: 8, conditionalWrites: true, maxCounterValue: 1000 });
    expect(counter.shards).toBe(8);
    const functions = Object.values(functionEnvironments(Template.fromStack(stack)));
    const counterFunction = functions.filter((f) => f.variables[COMMON_ENV.MAX_COUNTER_VALUE] !== undefined);
    expect(counterFunction.map((f) => f.variables[COMMON_ENV.SHARDS])).toEqual(['8']);
    const others = functions.filter((f) => f.variables[COMMON_ENV.MAX_COUNTER_VALUE] === undefined);
    expect(others.filter((f) => f.variables[COMMON_ENV.SHARDS] !== undefined)).toEqual([]);
  });

  test('AtomicCounterApi passes its shards default to the counters it creates; a backend\'s own props override it', () => {
    const stack = new Stack(new App(), 'Test', { env: ENV });
    const api = new AtomicCounterApi(stack, 'Api', { shards: 4, dynamo: {}, redis: { vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }), shards: 2 } } as any);
    const served = [api.dynamoCounter, api.redisCounter].filter((c): c is NonNullable<typeof c> => c !== undefined);
    expect(served.map((c) => [c.backend, c.shards])).toEqual([['dynamo', 4], ['redis', 2]]);
  });
}

if (UNSHARDED.length > 0) {
  test.each(UNSHARDED)('%s: shards: 8 is refused at synth (the store does not implement sharding), with the other problems in one error', (backend) => {
    const message = thrown(() => build(backend, { shards: 8, timeout: Duration.seconds(30), maxCounterValue: 0 }));
    expect(message).toContain(`\`shards\` (8): the ${backend} backend does not implement sharded counters yet`);
    expect(message).toContain('`maxCounterValue` must be an integer ≥ 1 (got 0)');
  });
}
