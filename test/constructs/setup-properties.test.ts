import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, MomentoCounter, TiDbCounter } from '../../src';
import { DOCDB_SETUP_PROPERTIES } from '../../src/backends/docdb/docdb-env';
import { MOMENTO_SETUP_PROPERTIES } from '../../src/backends/momento/momento-env';
import { TIDB_SETUP_PROPERTIES } from '../../src/backends/tidb/tidb-env';

/**
 * The setup custom resources carry only properties the contract file names,
 * so the handler (which reads them through the same constants) sees every one.
 */
const ENV = { account: '123456789012', region: 'eu-west-1' };
const secret = (stack: Stack, name: string) =>
  secretsmanager.Secret.fromSecretCompleteArn(stack, name, `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`);

const CASES: Array<{ backend: string; names: Record<string, string>; build: (stack: Stack) => void }> = [
  { backend: 'momento', names: MOMENTO_SETUP_PROPERTIES, build: (s) => new MomentoCounter(s, 'Counter', { credentialsSecret: secret(s, 'key') }) },
  { backend: 'docdb', names: DOCDB_SETUP_PROPERTIES, build: (s) => new DocDbCounter(s, 'Counter', { vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 }) }) },
  { backend: 'tidb', names: TIDB_SETUP_PROPERTIES, build: (s) => new TiDbCounter(s, 'Counter', { credentialsSecret: secret(s, 'conn'), databaseName: 'counters_db' }) },
];

test.each(CASES)('$backend setup resource: exactly the properties of its contract file', ({ names, build }) => {
  const stack = new Stack(new App(), 'Test', { env: ENV });
  build(stack);
  const setups = Object.entries<any>(Template.fromStack(stack).toJSON().Resources)
    .filter(([, r]) => /^Custom::.*Setup$/.test(r.Type));
  expect(setups).toHaveLength(1);
  const written = Object.keys(setups[0][1].Properties).filter((k) => k !== 'ServiceToken').sort();
  expect(written).toEqual(Object.values(names).sort());
});
