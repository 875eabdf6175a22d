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
