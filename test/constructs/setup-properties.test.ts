import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, MomentoCounter, TiDbCounter } from '../../src';
import { DOCDB_SCHEMA_VERSION, DOCDB_SETUP_PROPERTIES } from '../../src/backends/docdb/docdb-env';
import { MOMENTO_SCHEMA_VERSION, MOMENTO_SETUP_PROPERTIES } from '../../src/backends/momento/momento-env';
import { TIDB_SCHEMA_VERSION, TIDB_SETUP_PROPERTIES } from '../../src/backends/tidb/tidb-env';

/**
 * The setup custom resources carry only properties the contract file names,
 * so the handler (which reads them through the same constants) sees every one.
 */
const ENV = { account: '123456789012', region: 'eu-west-1' };
const secret = (stack: Stack, name: string) =>
  secretsmanager.Secret.fromSecretCompleteArn(stack, name, `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`);

const CASES: Array<{ backend: string; names: Record<string, string>; version: string; build: (stack: Stack) => void }> = [
  {
    backend: 'momento',
    names: MOMENTO_SETUP_PROPERTIES,
    version: MOMENTO_SCHEMA_VERSION,
    build: (s) => new MomentoCounter(s, 'Counter', { credentialsSecret: secret(s, 'key') }),
  },
  {
    backend: 'docdb',
    names: DOCDB_SETUP_PROPERTIES,
    version: DOCDB_SCHEMA_VERSION,
    build: (s) => new DocDbCounter(s, 'Counter', { vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }) }),
  },
  {
    backend: 'tidb',
    names: TIDB_SETUP_PROPERTIES,
    version: TIDB_SCHEMA_VERSION,
    build: (s) => new TiDbCounter(s, 'Counter', { credentialsSecret: secret(s, 'conn'), databaseName: 'counters_db' }),
  },
];

/** The one setup custom resource's properties (ServiceToken left out). */
function setupProperties(build: (stack: Stack) => void): Record<string, unknown> {
  const stack = new Stack(new App(), 'Test', { env: ENV });
  build(stack);
  const setups = Object.entries<any>(Template.fromStack(stack).toJSON().Resources)
    .filter(([, r]) => /^Custom::.*Setup$/.test(r.Type));
  expect(setups).toHaveLength(1);
  const { ServiceToken: _serviceToken, ...properties } = setups[0][1].Properties;
  return properties;
}

test.each(CASES)('$backend setup resource: exactly the properties of its contract file', ({ names, build }) => {
  expect(Object.keys(setupProperties(build)).sort()).toEqual(Object.values(names).sort());
});

/**
 * Issue 19, item 2: a library upgrade that changes what a setup creates
 * must re-run it on existing stacks. CloudFormation sends a custom resource
 * an Update only when its properties change, so each setup carries the
 * revision of what it sets up (docs/architecture.md, "Setup versions").
 */
test.each(CASES)('$backend setup resource carries its schema revision, so an upgrade that changes the setup runs it again', ({ backend, names, version, build }) => {
  expect((names as { SCHEMA?: string }).SCHEMA).toBe('Schema');
  expect(setupProperties(build).Schema).toBe(version);
  // The revisions as released: a change here is a change to the setup, made in the same commit.
  expect({ backend, version }).toEqual({ backend, version: { momento: '1', docdb: '2', tidb: '3' }[backend] });
});

/**
 * Issue 19, item 7: a setup Update sent by a rollback succeeds even when the
 * datastore is unreachable (src/runtime/custom-resource.ts); the handler
 * tells a rollback by its own stack's status, and may read nothing else.
 */
test.each(CASES)('$backend setup function may read its own stack\'s status, and no other stack\'s', ({ build }) => {
  const stack = new Stack(new App(), 'Test', { env: ENV });
  build(stack);
  const statements = Object.values<any>(Template.fromStack(stack).findResources('AWS::IAM::Policy'))
    .flatMap((p) => p.Properties.PolicyDocument.Statement)
    .filter((s: any) => JSON.stringify(s.Action).includes('cloudformation:'));
  expect(statements).toEqual([{ Effect: 'Allow', Action: 'cloudformation:DescribeStacks', Resource: { Ref: 'AWS::StackId' } }]);
});
