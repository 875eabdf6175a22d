import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { RedisCounter, RedisCounterProps, RedisEngine } from '../src';

interface Synth {
  t: Template;
  counter: RedisCounter;
  stack: Stack;
}

function synth(props: Partial<RedisCounterProps> = {}, build?: (stack: Stack) => Partial<RedisCounterProps>): Synth {
  const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const counter = new RedisCounter(stack, 'Counter', { vpc, ...props, ...(build?.(stack) ?? {}) });
  return { t: Template.fromStack(stack), counter, stack };
}

function env(t: Template): Record<string, unknown> {
  return Object.values<any>(t.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
}

describe('RedisCounter (created replication group)', () => {
  test('one primary and one replica, failover and Multi-AZ on, TLS and encryption at rest on, AUTH token from the generated secret', () => {
    const { t } = synth();
    t.resourceCountIs('AWS::ElastiCache::ReplicationGroup', 1);
    t.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      Engine: 'redis',
      EngineVersion: '7.1',
      CacheNodeType: 'cache.t4g.micro',
      NumCacheClusters: 2,
      AutomaticFailoverEnabled: true,
      MultiAZEnabled: true,
      Port: 6379,
      TransitEncryptionEnabled: true,
      AtRestEncryptionEnabled: true,
      AuthToken: {
        'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: Match.stringLikeRegexp('^CounterAuthSecret') }, ':SecretString:authToken::}}']],
      },
    });
  });

  test('the AUTH token is generated as letters and digits only (AuthToken rejects most punctuation), in a JSON field', () => {
    const { t } = synth();
    t.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: {
        SecretStringTemplate: '{}',
        GenerateStringKey: 'authToken',
        ExcludePunctuation: true,
        IncludeSpace: false,
        PasswordLength: 64,
      },
    });
  });

  test('the function gets the secret ARN and read access to that secret only, never the token', () => {
    const { t } = synth();
    const variables = env(t);
    expect(variables).toMatchObject({
      REDIS_HOST: { 'Fn::GetAtt': [expect.stringMatching(/^CounterReplicationGroup/), 'PrimaryEndPoint.Address'] },
      REDIS_PORT: { 'Fn::GetAtt': [expect.stringMatching(/^CounterReplicationGroup/), 'PrimaryEndPoint.Port'] },
      REDIS_TLS: 'true',
      REDIS_AUTH_SECRET_ARN: { Ref: expect.stringMatching(/^CounterAuthSecret/) },
      REDIS_KEY_PREFIX: 'counter:',
      USE_CONDITIONAL_WRITES: 'false',
    });
    expect(JSON.stringify(variables)).not.toMatch(/resolve:secretsmanager|REDIS_URL/);
    const statements = Object.values<any>(t.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
    expect(statements).toEqual([{
      Effect: 'Allow',
      Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
      Resource: { Ref: expect.stringMatching(/^CounterAuthSecret/) },
    }]);
  });

  test('the cache admits port 6379 only from the function\'s security group; neither group allows all outbound', () => {
    const { t, counter, stack } = synth();
    const cacheSg = stack.resolve(counter.cacheSecurityGroup!.securityGroupId);
    const functionSg = stack.resolve(counter.functionSecurityGroup.securityGroupId);
    const ingress = Object.values<any>(t.findResources('AWS::EC2::SecurityGroupIngress')).map((r) => r.Properties);
    expect(ingress).toEqual([{
      IpProtocol: 'tcp',
      FromPort: 6379,
      ToPort: 6379,
      Description: expect.any(String),
      GroupId: cacheSg,
      SourceSecurityGroupId: functionSg,
    }]);
    // No inline ingress (e.g. 0.0.0.0/0) on the cache group.
    const groups = Object.values<any>(t.findResources('AWS::EC2::SecurityGroup')).map((r) => r.Properties);
    for (const g of groups) {
      expect(g.SecurityGroupIngress).toBeUndefined();
      expect(g.SecurityGroupEgress ?? []).not.toContainEqual(expect.objectContaining({ IpProtocol: '-1' }));
    }
    t.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { SecurityGroupIds: [cacheSg] });
    t.hasResourceProperties('AWS::Lambda::Function', { VpcConfig: { SecurityGroupIds: [functionSg], SubnetIds: Match.anyValue() } });
  });

  test('the subnet group holds the VPC\'s private subnets; the group is snapshotted on removal by default', () => {
    const { t, stack } = synth();
    const vpc = stack.node.findChild('Vpc') as ec2.Vpc;
    t.hasResourceProperties('AWS::ElastiCache::SubnetGroup', { SubnetIds: stack.resolve(vpc.privateSubnets.map((s) => s.subnetId)) });
    t.hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
  });

  test('Valkey, node type, replicas and removal policy are props', () => {
    const { t } = synth({ engine: RedisEngine.VALKEY, cacheNodeType: 'cache.r7g.large', replicas: 2, removalPolicy: RemovalPolicy.DESTROY });
    t.hasResource('AWS::ElastiCache::ReplicationGroup', {
      Properties: Match.objectLike({ Engine: 'valkey', EngineVersion: '8.0', CacheNodeType: 'cache.r7g.large', NumCacheClusters: 3 }),
      DeletionPolicy: 'Delete',
    });
  });

  test('no replica: no automatic failover, no Multi-AZ', () => {
    const { t } = synth({ replicas: 0 });
    t.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { NumCacheClusters: 1, AutomaticFailoverEnabled: false, MultiAZEnabled: false });
  });

  test('waitForReplicas reaches the function as REDIS_WAIT_REPLICAS with its timeout; absent by default', () => {
    expect(env(synth().t)).not.toHaveProperty('REDIS_WAIT_REPLICAS');
    expect(env(synth({ waitForReplicas: 1, waitTimeout: Duration.millis(250) }).t)).toMatchObject({ REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '250' });
  });

  test('conditional mode, key prefix and timeouts reach the function; runtime is Node.js 24', () => {
    const { t } = synth({ conditionalWrites: true, maxCounterValue: 5, keyPrefix: 'votes:', commandTimeout: Duration.millis(400), connectTimeout: Duration.millis(800) });
    t.hasResourceProperties('AWS::Lambda::Function', { Runtime: 'nodejs24.x', Timeout: 10 });
    expect(env(t)).toMatchObject({
      USE_CONDITIONAL_WRITES: 'true',
      MAX_COUNTER_VALUE: '5',
      REDIS_KEY_PREFIX: 'votes:',
      REDIS_COMMAND_TIMEOUT_MS: '400',
      REDIS_CONNECT_TIMEOUT_MS: '800',
    });
  });

  test('a metric filter turns $.counter into AtomicCounter/RedisAtomicCounter', () => {
    const { t } = synth();
    t.hasResourceProperties('AWS::Logs::MetricFilter', {
      LogGroupName: { Ref: Match.stringLikeRegexp('^CounterLogGroup') },
      MetricTransformations: [{ MetricNamespace: 'AtomicCounter', MetricName: 'RedisAtomicCounter', MetricValue: '$.counter' }],
    });
  });
});

describe('RedisCounter (existing endpoint)', () => {
  test('creates no replication group, subnet group, cache security group or secret; the function points at the endpoint', () => {
    const { t, counter } = synth({ host: 'my-redis.example.internal', port: 6380, tls: false });
    t.resourceCountIs('AWS::ElastiCache::ReplicationGroup', 0);
    t.resourceCountIs('AWS::ElastiCache::SubnetGroup', 0);
    t.resourceCountIs('AWS::SecretsManager::Secret', 0);
    t.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    expect(counter.replicationGroup).toBeUndefined();
    expect(env(t)).toMatchObject({ REDIS_HOST: 'my-redis.example.internal', REDIS_PORT: '6380', REDIS_TLS: 'false' });
    expect(env(t)).not.toHaveProperty('REDIS_AUTH_SECRET_ARN');
    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 6380, ToPort: 6380, Description: Match.anyValue() }],
    });
  });

  test('an existing auth secret is granted read-only and passed by ARN; TLS defaults to on', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-auth-AbCdEf';
    const { t } = synth({ host: 'my-redis.example.internal' }, (s) => ({ authSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'Auth', arn) }));
    expect(env(t)).toMatchObject({ REDIS_AUTH_SECRET_ARN: arn, REDIS_TLS: 'true', REDIS_PORT: '6379' });
    const statements = Object.values<any>(t.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
    expect(statements).toEqual([{ Effect: 'Allow', Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: arn }]);
  });

  test.each([
    [{ port: 6380 }, /`port` describes an existing endpoint/],
    [{ tls: false }, /`tls` describes an existing endpoint/],
    [{ host: 'h', engine: RedisEngine.VALKEY }, /`engine` applies to a created replication group/],
    [{ host: 'h', replicas: 2 }, /`replicas` applies to a created replication group/],
    [{ waitForReplicas: 2 }, /exceeds the replicas created/],
    [{ waitTimeout: Duration.millis(5) }, /only with waitForReplicas/],
    [{ replicas: 6 }, /replicas must be an integer from 0 to 5/],
  ] as Array<[Partial<RedisCounterProps>, RegExp]>)('conflicting props %p fail at synth', (props, message) => {
    expect(() => synth(props)).toThrow(message);
  });
});
