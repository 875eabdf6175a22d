/**
 * `shards` (issue 21) at synth, for every backend the library knows: an
 * unsharded counter's function environment is what it always was (no
 * COUNTER_SHARDS), a shard count reaches the counter function of a backend
 * whose store implements sharding (every backend today), and a backend
 * whose contract does not declare sharding refuses it, with the other
 * props problems in one error.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, CounterBase, CounterOptions, DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';
import { DYNAMO_CONTRACT } from '../../src/backends/dynamo/dynamo-contract';
import { COMMON_ENV } from '../../src/counter-env';
import type { BackendContract } from '../../src/private/backend-contract';
import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';
import { checkCounterFunction } from '../../src/private/counter-resources';
import { PropsValidation } from '../../src/private/props';
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

/** The props a backend's counter needs beyond its defaults (a VPC, a secret). */
function backendProps(backend: BackendName, stack: Stack): Record<string, unknown> {
  const secret = (name: string) => secretsmanager.Secret.fromSecretCompleteArn(stack, name, `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`);
  const vpc = () => new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  return {
    dynamo: () => ({}),
    redis: () => ({ vpc: vpc() }),
    momento: () => ({ credentialsSecret: secret('momento') }),
    docdb: () => ({ vpc: vpc() }),
    tidb: () => ({ credentialsSecret: secret('tidb') }),
  }[backend]();
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

  test.each(SHARDED)('%s: AtomicCounterApi passes its shards default to the counter it creates; the backend\'s own props override it', (backend) => {
    const served = (apiShards: number, own?: number) => {
      const stack = new Stack(new App(), 'Test', { env: ENV });
      const props = { ...backendProps(backend, stack), ...(own === undefined ? {} : { shards: own }) };
      const api = new AtomicCounterApi(stack, 'Api', { shards: apiShards, [backend]: props });
      return (api.counters.find((c) => c.backend === backend) as CounterBase).shards;
    };
    expect(served(4)).toBe(4);
    expect(served(4, 2)).toBe(2);
  });
}

if (UNSHARDED.length > 0) {
  test.each(UNSHARDED)('%s: shards: 8 is refused at synth (the store does not implement sharding), with the other problems in one error', (backend) => {
    const message = thrown(() => build(backend, { shards: 8, timeout: Duration.seconds(30), maxCounterValue: 0 }));
    expect(message).toContain(`\`shards\` (8): the ${backend} backend does not implement sharded counters yet`);
    expect(message).toContain('`maxCounterValue` must be an integer ≥ 1 (got 0)');
  });
}

test('a backend whose contract does not declare sharding refuses shards above 1 in the counter function\'s checks (a sixth backend added without it)', () => {
  const { counter } = build('dynamo', { shards: 8 });
  const problems = (contract: BackendContract) => {
    try {
      checkCounterFunction(new PropsValidation(counter), counter, contract, { shards: 8 }, {}).throwIfInvalid();
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };
  expect(problems({ ...DYNAMO_CONTRACT, sharded: false })).toContain('`shards` (8): the dynamo backend does not implement sharded counters yet');
  expect(problems(DYNAMO_CONTRACT)).toBe('');
});
