import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter } from '../../src';

/**
 * Issue 19, item 7: `cdk destroy` works whatever the store's removal policy
 * (what only serves a retained store is retained with it), and a failed
 * first deployment leaves nothing behind (`RetainExceptOnCreate` where the
 * library keeps data or logs by default).
 */
const ENV = { account: '123456789012', region: 'eu-west-1' };

/** DeletionPolicy / UpdateReplacePolicy of every resource of `type`, in template order. */
function policiesOf(t: Template, type: string): string[] {
  return Object.values<any>(t.findResources(type)).map((r) => `${r.DeletionPolicy ?? 'Delete'}/${r.UpdateReplacePolicy ?? 'Delete'}`);
}

type Build = (stack: Stack, vpc: ec2.IVpc, removalPolicy: RemovalPolicy | undefined) => void;

/** A counter in a stack whose VPC is imported (another stack's), or created in the same stack. */
function synth(build: Build, removalPolicy?: RemovalPolicy, ownVpc = false): { t: Template; stack: Stack } {
  const stack = new Stack(new App(), 'Test', { env: ENV });
  const vpc = ownVpc
    ? new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 })
    : ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0123456789abcdef0',
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
      privateSubnetIds: ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'],
    });
  build(stack, vpc, removalPolicy);
  return { t: Template.fromStack(stack), stack };
}

const redis: Build = (stack, vpc, removalPolicy) => new RedisCounter(stack, 'Counter', { vpc, removalPolicy });
const docdb: Build = (stack, vpc, removalPolicy) => new DocDbCounter(stack, 'Counter', { vpc, removalPolicy });

/** The created cache security group (not the function's). */
function storeSecurityGroupPolicies(t: Template, description: RegExp): string[] {
  return Object.values<any>(t.findResources('AWS::EC2::SecurityGroup'))
    .filter((r) => description.test(r.Properties.GroupDescription))
    .map((r) => `${r.DeletionPolicy ?? 'Delete'}/${r.UpdateReplacePolicy ?? 'Delete'}`);
}

/**
 * For each store policy: the store's, that of what only serves it (subnet,
 * security and parameter groups; DocumentDB's instances), and its secrets'.
 */
const POLICY_MATRIX = [
  [undefined, 'Snapshot/Snapshot', 'Delete/Delete', 'RetainExceptOnCreate/Retain'],
  [RemovalPolicy.RETAIN, 'Retain/Retain', 'Retain/Retain', 'Retain/Retain'],
  [RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE, 'RetainExceptOnCreate/Retain', 'RetainExceptOnCreate/Retain', 'RetainExceptOnCreate/Retain'],
  [RemovalPolicy.DESTROY, 'Delete/Delete', 'Delete/Delete', 'Delete/Delete'],
] as const;

describe('what only serves a store follows it, so cdk destroy never fails on a retained store', () => {
  test.each(POLICY_MATRIX)('Redis, removalPolicy %p: replication group %s, its groups %s, secret %s', (removalPolicy, store, groups, secret) => {
    const { t } = synth(redis, removalPolicy);
    expect(policiesOf(t, 'AWS::ElastiCache::ReplicationGroup')).toEqual([store]);
    expect(policiesOf(t, 'AWS::ElastiCache::SubnetGroup')).toEqual([groups]);
    expect(policiesOf(t, 'AWS::ElastiCache::ParameterGroup')).toEqual([groups]);
    expect(storeSecurityGroupPolicies(t, /^Redis atomic counter cache/)).toEqual([groups]);
    expect(policiesOf(t, 'AWS::SecretsManager::Secret')).toEqual([secret]);
  });

  test.each(POLICY_MATRIX)('DocumentDB, removalPolicy %p: cluster %s, its instances and groups %s, both secrets %s', (removalPolicy, store, dependents, secrets) => {
    const { t } = synth(docdb, removalPolicy);
    expect(policiesOf(t, 'AWS::DocDB::DBCluster')).toEqual([store]);
    expect([...policiesOf(t, 'AWS::DocDB::DBInstance'), ...policiesOf(t, 'AWS::DocDB::DBSubnetGroup')]).toEqual([dependents, dependents]);
    expect(storeSecurityGroupPolicies(t, /^DocumentDB security group/)).toEqual([dependents]);
    expect(policiesOf(t, 'AWS::SecretsManager::Secret')).toEqual([secrets, secrets]);
  });

  test.each([['Redis', redis], ['DocumentDB', docdb]] as const)('%s: a retained store in a VPC of the same stack warns at synth (destroy could not delete the VPC)', (_name, build) => {
    const warnings = (policy: RemovalPolicy | undefined, ownVpc: boolean) => Annotations.fromStack(synth(build, policy, ownVpc).stack)
      .findWarning('*', Match.stringLikeRegexp('deleting the VPC\'s subnets fails'));
    expect(warnings(RemovalPolicy.RETAIN, true)).toHaveLength(1);
    expect(warnings(RemovalPolicy.RETAIN, false)).toHaveLength(0);
    expect(warnings(undefined, true)).toHaveLength(0);
  });
});

describe('a failed first deployment leaves nothing behind', () => {
  test('DynamoDB: the table and the log group are kept on delete and replacement, but not after a rolled-back create', () => {
    const { t } = synth((stack) => new DynamoCounter(stack, 'Counter'));
    expect(policiesOf(t, 'AWS::DynamoDB::Table')).toEqual(['RetainExceptOnCreate/Retain']);
    expect(policiesOf(t, 'AWS::Logs::LogGroup')).toEqual(['RetainExceptOnCreate/Retain']);
  });

  test('a setup function\'s log group too; an explicit policy is used as given', () => {
    const secret = (stack: Stack) => secretsmanager.Secret.fromSecretCompleteArn(stack, 'Key', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-AbCdEf');
    const { t } = synth((stack) => new MomentoCounter(stack, 'Counter', { credentialsSecret: secret(stack) }));
    expect(policiesOf(t, 'AWS::Logs::LogGroup')).toEqual(['RetainExceptOnCreate/Retain', 'RetainExceptOnCreate/Retain']);
    const explicit = synth((stack) => new MomentoCounter(stack, 'Counter', { credentialsSecret: secret(stack), logRemovalPolicy: RemovalPolicy.DESTROY })).t;
    expect(policiesOf(explicit, 'AWS::Logs::LogGroup')).toEqual(['Delete/Delete', 'Delete/Delete']);
  });
});

describe('Redis: a created replication group never evicts (issue 19, item 5)', () => {
  test.each([
    [{}, 'redis7'],
    [{ engineVersion: '6.2' }, 'redis6.x'],
    [{ engine: 'valkey' }, 'valkey8'],
    [{ engine: 'valkey', engineVersion: '7.2' }, 'valkey7'],
  ])('%p: its own parameter group (family %s) sets maxmemory-policy noeviction, and the group uses it', (props, family) => {
    const { t } = synth((stack, vpc) => new RedisCounter(stack, 'Counter', { vpc, ...props as object }));
    const groups = t.findResources('AWS::ElastiCache::ParameterGroup');
    expect(Object.values<any>(groups).map((g) => g.Properties)).toEqual([{
      CacheParameterGroupFamily: family,
      Description: expect.stringMatching(/noeviction/),
      Properties: { 'maxmemory-policy': 'noeviction' },
    }]);
    t.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { CacheParameterGroupName: { Ref: Object.keys(groups)[0] } });
  });

  test('an existing endpoint gets no parameter group (its policy is the operator\'s: documented as a requirement)', () => {
    const { t } = synth((stack, vpc) => new RedisCounter(stack, 'Counter', { vpc, existingEndpoint: { hostname: 'redis.example.internal' } }));
    t.resourceCountIs('AWS::ElastiCache::ParameterGroup', 0);
  });

  test('an engine version the family cannot be read from fails at synth', () => {
    expect(() => synth((stack, vpc) => new RedisCounter(stack, 'Counter', { vpc, engineVersion: 'latest' })))
      .toThrow(/`engineVersion` must be a literal "<major>.<minor>"/);
  });
});
