import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { CounterBase, CounterOptions, DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';

/**
 * Issue 19, item 4: a reserved-concurrency prop per counter, with a default
 * derived from the datastore's connection limit where it has one.
 */
const ENV = { account: '123456789012', region: 'eu-west-1' };
const secret = (stack: Stack, id: string) =>
  secretsmanager.Secret.fromSecretCompleteArn(stack, id, `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${id}-AbCdEf`);

type Build = (stack: Stack, id: string, options: CounterOptions) => CounterBase;
const vpcOf = (stack: Stack) => (stack.node.tryFindChild('Vpc') as ec2.Vpc | undefined) ?? new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
const BACKENDS: Record<string, Build> = {
  dynamo: (s, id, o) => new DynamoCounter(s, id, o),
  redis: (s, id, o) => new RedisCounter(s, id, { vpc: vpcOf(s), ...o }),
  momento: (s, id, o) => new MomentoCounter(s, id, { credentialsSecret: secret(s, `${id}Key`), ...o }),
  docdb: (s, id, o) => new DocDbCounter(s, id, { vpc: vpcOf(s), ...o }),
  tidb: (s, id, o) => new TiDbCounter(s, id, { credentialsSecret: secret(s, `${id}Conn`), ...o }),
};

/** ReservedConcurrentExecutions of the counter function (undefined: none), and that no setup function has one. */
function reservation(build: Build, options: CounterOptions = {}): number | undefined {
  const stack = new Stack(new App(), 'Test', { env: ENV });
  const counter = build(stack, 'Counter', options);
  const functions = Template.fromStack(stack).findResources('AWS::Lambda::Function');
  const counterId = stack.getLogicalId(counter.counterFunction.node.defaultChild as any);
  for (const [id, fn] of Object.entries<any>(functions)) {
    if (id !== counterId) expect(fn.Properties.ReservedConcurrentExecutions).toBeUndefined();
  }
  return functions[counterId].Properties.ReservedConcurrentExecutions;
}

describe('defaults, from each datastore\'s connection limit', () => {
  test.each([
    ['docdb', 200], // 500 connections (db.t3/t4g.medium) × 0.8 / 2 per container
    ['dynamo', undefined], // no connections: account concurrency only
    ['redis', undefined], // maxclients 65,000 per node: far above any account's concurrency
    ['momento', undefined], // a rate limit (operations/s), not connections: the usage plan bounds the rate
    ['tidb', undefined], // no documented connection cap (TiDB's max_connections defaults to 0, unlimited)
  ])('%s: %p', (backend, expected) => {
    expect(reservation(BACKENDS[backend])).toBe(expected);
  });
});

describe('the prop', () => {
  test.each(Object.keys(BACKENDS))('%s: a positive integer reserves that many; 0 reserves none', (backend) => {
    expect(reservation(BACKENDS[backend], { reservedConcurrency: 25 })).toBe(25);
    expect(reservation(BACKENDS[backend], { reservedConcurrency: 0 })).toBeUndefined();
  });

  test('a negative or fractional value fails at synth with the prop\'s name', () => {
    expect(() => reservation(BACKENDS.dynamo, { reservedConcurrency: -1 })).toThrow(/`reservedConcurrency` must be an integer ≥ 0 \(got -1\)/);
    expect(() => reservation(BACKENDS.docdb, { reservedConcurrency: 2.5 })).toThrow(/`reservedConcurrency` must be an integer ≥ 0/);
  });
});

describe('the account\'s reservable concurrency', () => {
  const warningsOf = (stack: Stack) => Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('reserve \\d+ concurrent executions'));

  test('no warning while an app\'s counters reserve at most 900 in one account and region (a default account\'s 1,000 minus the 100 Lambda keeps)', () => {
    const app = new App();
    const stack = new Stack(app, 'A', { env: ENV });
    BACKENDS.docdb(stack, 'D1', {});
    BACKENDS.docdb(stack, 'D2', {});
    BACKENDS.dynamo(stack, 'Dy', { reservedConcurrency: 500 });
    expect(warningsOf(stack)).toEqual([]);
  });

  test('a warning on the counter that passes 900, naming the total; other accounts or regions count apart', () => {
    const app = new App();
    const a = new Stack(app, 'A', { env: ENV });
    const b = new Stack(app, 'B', { env: ENV });
    const elsewhere = new Stack(app, 'C', { env: { ...ENV, region: 'us-east-1' } });
    BACKENDS.dynamo(a, 'Dy', { reservedConcurrency: 800 });
    BACKENDS.docdb(b, 'D', {});
    BACKENDS.docdb(elsewhere, 'D', {});
    expect(warningsOf(a)).toEqual([]);
    expect(warningsOf(elsewhere)).toEqual([]);
    const [warning] = warningsOf(b);
    expect(warning.id).toBe('/B/D');
    expect(String(warning.entry.data)).toMatch(/reserve 1000 concurrent executions in 123456789012\/eu-west-1 \(this one 200\).*at least the total plus 100/);
  });
});
