/**
 * One validation for every construct: every conflicting or missing prop
 * combination is reported at once, in ONE error prefixed by the construct's
 * path, so a user fixes them all in one round.
 */
import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, RedisEngine, TiDbCounter } from '../../src';
import { notCreatedYet } from '../../src/private/counter-resources';
import { thrown } from '../kit/template';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:creds-AbCdEf';

function stack(): Stack {
  return new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
}


/** The listed problems of a multi-problem error, after its one-line head. */
function problems(message: string): string[] {
  return message.split('\n').slice(1).map((l) => l.replace(/^ {2}- /, ''));
}

test.each([
  ['DynamoCounter', (s: Stack) => new DynamoCounter(s, 'Counter', {
    existingTable: dynamodb.Table.fromTableName(s, 'T', 'x'), removalPolicy: RemovalPolicy.DESTROY, maxCounterValue: 0, timeout: Duration.seconds(30),
  }), [
    '`maxCounterValue` must be an integer ≥ 1 (got 0)',
    '`timeout` must be at most 25 seconds (API Gateway gives up after 29 s); got 30',
    '`removalPolicy` applies to the table the construct creates; do not combine with `existingTable`',
  ]],
  ['RedisCounter', (s: Stack) => new RedisCounter(s, 'Counter', {
    vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }),
    existingEndpoint: { hostname: 'redis.internal', port: 0 },
    engine: RedisEngine.VALKEY,
    replicas: 2,
    waitTimeout: Duration.millis(5),
  }), [
    '`engine`, `replicas` apply to the replication group the construct creates; do not combine with `existingEndpoint`',
    '`existingEndpoint.port` must be an integer from 1 to 65535 (got 0)',
    '`waitTimeout` applies only with `waitForReplicas`',
  ]],
  ['DocDbCounter', (s: Stack) => new DocDbCounter(s, 'Counter', {
    vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }),
    existingEndpoint: { hostname: 'docdb.internal' },
    instances: 2,
    masterUsername: 'admin',
    databaseName: 'a.b',
  }), [
    '`instances`, `masterUsername` apply to the cluster the construct creates; do not combine with `existingEndpoint`',
    '`existingEndpoint` needs `credentialsSecret`',
    '`databaseName` must be 1-63 characters without / \\ . space " $ (got "a.b")',
  ]],
  ['MomentoCounter', (s: Stack) => new MomentoCounter(s, 'Counter', {
    credentialsSecret: secretsmanager.Secret.fromSecretNameV2(s, 'K', 'momento-key-Ab12Cd'), securityGroups: [], cacheName: ' ', casMaxAttempts: 0,
  }), [
    '`securityGroups` needs `vpc`',
    '`cacheName` must not be blank',
    '`casMaxAttempts` must be an integer ≥ 1 (got 0)',
    '`credentialsSecret`: the secret name "momento-key-Ab12Cd" ends in "-" plus six characters, which Secrets Manager takes for the random suffix of a full ARN (lookups by name then fail); rename the secret, e.g. without the last hyphen',
  ]],
  ['TiDbCounter', (s: Stack) => new TiDbCounter(s, 'Counter', {
    credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'C', SECRET_ARN), vpcSubnets: {}, securityGroups: [], tableName: 'bad-name', databaseName: 'x;',
  }), [
    '`vpcSubnets` and `securityGroups` need `vpc`',
    '`tableName` must be 1-64 letters, digits or underscores (got "bad-name")',
    '`databaseName` must be 1-64 letters, digits or underscores (got "x;")',
  ]],
] as Array<[string, (s: Stack) => unknown, string[]]>)('%s: every problem in one error, prefixed by the construct path', (_name, build, expected) => {
  const message = thrown(() => build(stack()));
  expect(message.split('\n')[0]).toBe(`Test/Counter: ${expected.length} problems with its props:`);
  expect(problems(message)).toEqual(expected);
});

test('one problem: one line, prefixed by the path (here below the API, which passes its props on)', () => {
  const message = thrown(() => new AtomicCounterApi(stack(), 'Api', { dynamo: { existingTable: undefined, tableName: 'x', maxCounterValue: 1.5 } }));
  expect(message).toBe('Test/Api/DynamoCounter: `maxCounterValue` must be an integer ≥ 1 (got 1.5)');
});

test('props describing an existing resource without it are named together', () => {
  const s = stack();
  const message = thrown(() => new RedisCounter(s, 'Counter', {
    vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }),
    credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'C', SECRET_ARN),
    tls: false,
  }));
  expect(message).toBe('Test/Counter: `credentialsSecret`, `tls` describe an existing resource: give `existingEndpoint` too, or leave them out to create the replication group');
});

test('the API reports its own props the same way', () => {
  const message = thrown(() => new AtomicCounterApi(stack(), 'Api', { usagePlan: { rateLimit: -1, burstLimit: -2 } }));
  expect(message).toBe('Test/Api: 2 problems with its props:\n  - `usagePlan.rateLimit` must be a number ≥ 0 (got -1)\n  - `usagePlan.burstLimit` must be a number ≥ 0 (got -2)');
});

test('valid props of each backend pass', () => {
  const s = stack();
  const vpc = new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const secret = secretsmanager.Secret.fromSecretCompleteArn(s, 'C', SECRET_ARN);
  expect(() => {
    new DynamoCounter(s, 'Dynamo', { existingTable: dynamodb.Table.fromTableName(s, 'T', 'x') });
    new RedisCounter(s, 'Redis', { vpc, existingEndpoint: { hostname: 'r' }, credentialsSecret: secret, tls: true });
    new DocDbCounter(s, 'DocDb', { vpc, existingEndpoint: { hostname: 'd', port: 27018 }, credentialsSecret: secret });
    new MomentoCounter(s, 'Momento', { credentialsSecret: secret, vpc, securityGroups: [] });
    new TiDbCounter(s, 'TiDb', { credentialsSecret: secret, databaseName: 'votes' });
  }).not.toThrow();
});

/**
 * Issue 19, item 9: the synth-time checks that are not about one prop (the
 * store's worst case against the timeout, Lambda's environment limit, the
 * region) are problems of the same validation, reported in the same one
 * error as the props' own, before anything is created.
 */
describe('synth-time checks join the props problems in one error', () => {
  const worstCase = /^the store's worst-case answer time is \d+ ms \(.*\); with a 1000 ms margin it exceeds the function timeout of \d+ ms/;

  test.each([
    ['DynamoCounter: a bad maximum and a timeout below the worst case', (s: Stack) => new DynamoCounter(s, 'Counter', { maxCounterValue: 0, timeout: Duration.seconds(5) }),
      [/^`maxCounterValue` must be an integer ≥ 1 \(got 0\)$/, worstCase]],
    ['RedisCounter (created group): a bad replica count and a command timeout over the worst case', (s: Stack) => new RedisCounter(s, 'Counter', {
      vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }), replicas: 9, commandTimeout: Duration.seconds(3),
    }), [/^`replicas` must be an integer from 0 to 5 \(got 9\)$/, worstCase]],
    ['MomentoCounter: a bad attempt count and a CAS budget over the worst case', (s: Stack) => new MomentoCounter(s, 'Counter', {
      credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'C', SECRET_ARN), casMaxAttempts: 0, casTimeBudget: Duration.seconds(8),
    }), [/^`casMaxAttempts` must be an integer ≥ 1 \(got 0\)$/, worstCase]],
    ['TiDbCounter: a bad table name and two CA certificates over Lambda\'s environment limit', (s: Stack) => new TiDbCounter(s, 'Counter', {
      credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'C', SECRET_ARN), tableName: 'bad-name', tlsCaCertificate: 'x'.repeat(4000),
    }), [/^`tableName` must be 1-64 letters/, /^the setup function: its environment variables take about \d+ bytes, over Lambda's limit of 4096/,
      /^the counter function: its environment variables take about \d+ bytes, over Lambda's limit of 4096/]],
  ] as Array<[string, (s: Stack) => unknown, RegExp[]]>)('%s', (_name, build, expected) => {
    const message = thrown(() => build(stack()));
    expect(message.split('\n')[0]).toBe(`Test/Counter: ${expected.length} problems with its props:`);
    const listed = problems(message);
    expect(listed).toHaveLength(expected.length);
    expected.forEach((pattern, i) => expect(listed[i]).toMatch(pattern));
  });

  test('DocDbCounter: a region without DocumentDB, a bad instance count and a timeout below the worst case, in one error', () => {
    const s = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'us-west-1' } });
    const message = thrown(() => new DocDbCounter(s, 'Counter', {
      vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }), instances: 0, timeout: Duration.seconds(8),
    }));
    expect(message.split('\n')[0]).toBe('Test/Counter: 3 problems with its props:');
    const listed = problems(message);
    expect(listed[0]).toBe('`instances` must be an integer from 1 to 16 (got 0)');
    expect(listed[1]).toMatch(/^Amazon DocumentDB is not offered in us-west-1 /);
    expect(listed[2]).toMatch(worstCase);
  });

  test('a stand-in for a value not created yet never reaches a template: resolving it fails the synth', () => {
    const s = stack();
    expect(() => s.resolve(notCreatedYet('the primary endpoint'))).toThrow(/the primary endpoint was checked before it existed and never replaced/);
  });

  test('nothing is created before the error: the stack holds no resource of the counter', () => {
    const s = stack();
    expect(() => new DynamoCounter(s, 'Counter', { maxCounterValue: 0, timeout: Duration.seconds(5) })).toThrow();
    const counter = s.node.tryFindChild('Counter');
    expect(counter?.node.tryFindChild('Table')).toBeUndefined();
    expect(counter?.node.tryFindChild('Function')).toBeUndefined();
  });
});
