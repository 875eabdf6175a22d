import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { RedisCounter, RedisCounterProps, RedisEngine } from '../../src';

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

/** The counter function's whole environment with the defaults (compared exactly). */
const DEFAULT_ENV: Record<string, unknown> = {
  REDIS_HOST: { 'Fn::GetAtt': [expect.stringMatching(/^CounterReplicationGroup/), 'PrimaryEndPoint.Address'] },
  REDIS_PORT: { 'Fn::GetAtt': [expect.stringMatching(/^CounterReplicationGroup/), 'PrimaryEndPoint.Port'] },
  REDIS_TLS: 'true',
  REDIS_KEY_PREFIX: 'counter:',
  REDIS_CONNECT_TIMEOUT_MS: '1000',
  REDIS_COMMAND_TIMEOUT_MS: '1000',
  REDIS_AUTH_SECRET_ARN: { Ref: expect.stringMatching(/^CounterAuthSecret/) },
  USE_CONDITIONAL_WRITES: 'false',
  MAX_COUNTER_VALUE: '10',
  IDEMPOTENCY_RETENTION_SECONDS: '86400',
  COUNTER_DEPLOYMENT: 'Test/Counter',
};

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
    // Exactly these variables: an extra one (a credential, say) fails.
    expect(variables).toEqual(DEFAULT_ENV);
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
    expect(env(synth().t)).toEqual(DEFAULT_ENV);
    expect(env(synth({ waitForReplicas: 1, waitTimeout: Duration.millis(250) }).t)).toEqual({ ...DEFAULT_ENV, REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '250' });
  });

  test('conditional mode, key prefix and timeouts reach the function; runtime is Node.js 24', () => {
    const { t } = synth({ conditionalWrites: true, maxCounterValue: 5, keyPrefix: 'votes:', commandTimeout: Duration.millis(400), connectTimeout: Duration.millis(800) });
    t.hasResourceProperties('AWS::Lambda::Function', { Runtime: 'nodejs24.x', Timeout: 10 });
    expect(env(t)).toEqual({
      ...DEFAULT_ENV,
      USE_CONDITIONAL_WRITES: 'true',
      MAX_COUNTER_VALUE: '5',
      REDIS_KEY_PREFIX: 'votes:',
      REDIS_COMMAND_TIMEOUT_MS: '400',
      REDIS_CONNECT_TIMEOUT_MS: '800',
    });
  });

});

describe('RedisCounter: the AUTH secret follows its replication group', () => {
  test.each([
    [undefined, 'Snapshot', 'RetainExceptOnCreate'],
    [RemovalPolicy.SNAPSHOT, 'Snapshot', 'RetainExceptOnCreate'],
    [RemovalPolicy.RETAIN, 'Retain', 'Retain'],
    [RemovalPolicy.DESTROY, 'Delete', 'Delete'],
  ])('removalPolicy %p: group %s, secret %s (a restored snapshot or a retained group keeps its token)', (removalPolicy, group, secret) => {
    const { t } = synth(removalPolicy === undefined ? {} : { removalPolicy });
    t.hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: group });
    const secrets = Object.values<any>(t.findResources('AWS::SecretsManager::Secret'));
    expect(secrets).toHaveLength(1);
    expect(secrets[0].DeletionPolicy).toBe(secret);
    // A replacement keeps the old secret (UpdateReplacePolicy has no RetainExceptOnCreate).
    expect(secrets[0].UpdateReplacePolicy).toBe(secret === 'RetainExceptOnCreate' ? 'Retain' : secret);
  });
});

describe('RedisCounter: placement where the AUTH secret can be read', () => {
  function isolatedVpc(stack: Stack): ec2.Vpc {
    return new ec2.Vpc(stack, 'Isolated', { maxAzs: 2, natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
  }

  test('a VPC without egress subnets fails at synth with one line naming the ways out', () => {
    let message = '';
    try {
      synth({}, (s) => ({ vpc: isolatedVpc(s) }));
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^Test\/Counter: the VPC has no private subnets with egress.*Secrets Manager.*secretsManagerEndpoint: true/);
    expect(message).not.toContain('\n');
  });

  test('secretsManagerEndpoint: true adds a Secrets Manager interface endpoint (private DNS) in the isolated subnets, reachable on 443 from the function only', () => {
    const { t, counter, stack } = synth({ secretsManagerEndpoint: true }, (s) => ({ vpc: isolatedVpc(s) }));
    const endpoints = Object.values<any>(t.findResources('AWS::EC2::VPCEndpoint'));
    expect(endpoints).toHaveLength(1);
    expect(endpoints[0].Properties).toMatchObject({ VpcEndpointType: 'Interface', PrivateDnsEnabled: true });
    expect(JSON.stringify(endpoints[0].Properties.ServiceName)).toContain('secretsmanager');
    expect(endpoints[0].Properties.SubnetIds.map((r: any) => r.Ref).every((id: string) => /^IsolatedisolatedSubnet/.test(id))).toBe(true);
    const functionSg = stack.getLogicalId(counter.functionSecurityGroup.node.defaultChild as ec2.CfnSecurityGroup);
    const endpointSg = endpoints[0].Properties.SecurityGroupIds[0]['Fn::GetAtt'][0];
    t.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      IpProtocol: 'tcp',
      FromPort: 443,
      ToPort: 443,
      GroupId: { 'Fn::GetAtt': [endpointSg, 'GroupId'] },
      SourceSecurityGroupId: { 'Fn::GetAtt': [functionSg, 'GroupId'] },
    });
    // The endpoint's group admits nothing else (no VPC-wide 443 rule).
    const endpointGroup = t.toJSON().Resources[endpointSg];
    expect(endpointGroup.Type).toBe('AWS::EC2::SecurityGroup');
    expect(endpointGroup.Properties.SecurityGroupIngress).toBeUndefined();
    t.resourceCountIs('AWS::EC2::VPCEndpoint', 1);
  });

  test('no endpoint by default; an existing endpoint without a secret needs no egress', () => {
    synth().t.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    synth({ existingEndpoint: { hostname: 'redis.internal' } }, (s) => ({ vpc: isolatedVpc(s) })).t.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
  });

  test('an existing secret imported by a name that looks like a full ARN is rejected', () => {
    expect(() => synth({ existingEndpoint: { hostname: 'h' } }, (s) => ({ credentialsSecret: secretsmanager.Secret.fromSecretNameV2(s, 'Auth', 'redis-auth-AbCdEf') })))
      .toThrow(/^Test\/Counter: `credentialsSecret`: the secret name "redis-auth-AbCdEf" ends in "-" plus six characters/);
  });
});

describe('RedisCounter (existing endpoint)', () => {
  test('creates no replication group, subnet group, cache security group or secret; the function points at the endpoint', () => {
    const { t, counter } = synth({ existingEndpoint: { hostname: 'my-redis.example.internal', port: 6380 }, tls: false });
    expect(counter.endpointHostname).toBe('my-redis.example.internal');
    expect(counter.endpointPort).toBe(6380);
    t.resourceCountIs('AWS::ElastiCache::ReplicationGroup', 0);
    t.resourceCountIs('AWS::ElastiCache::SubnetGroup', 0);
    t.resourceCountIs('AWS::SecretsManager::Secret', 0);
    t.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    expect(counter.replicationGroup).toBeUndefined();
    const { REDIS_AUTH_SECRET_ARN: _none, ...withoutSecret } = DEFAULT_ENV;
    expect(env(t)).toEqual({ ...withoutSecret, REDIS_HOST: 'my-redis.example.internal', REDIS_PORT: '6380', REDIS_TLS: 'false' });
    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 6380, ToPort: 6380, Description: Match.anyValue() }],
    });
  });

  test('the existing endpoint\'s security group admits its port from the function\'s group (same shape as DocDbCounter)', () => {
    const { t, counter, stack } = synth({}, (s) => ({
      existingEndpoint: { hostname: 'my-redis.example.internal', port: 6380, securityGroup: ec2.SecurityGroup.fromSecurityGroupId(s, 'CacheSg', 'sg-0123456789abcdef0') },
    }));
    t.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: 'sg-0123456789abcdef0',
      IpProtocol: 'tcp',
      FromPort: 6380,
      ToPort: 6380,
      SourceSecurityGroupId: stack.resolve(counter.functionSecurityGroup.securityGroupId),
    });
  });

  test('an existing auth secret is granted read-only and passed by ARN; TLS defaults to on', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-auth-AbCdEf';
    const { t } = synth({ existingEndpoint: { hostname: 'my-redis.example.internal' } }, (s) => ({ credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(s, 'Auth', arn) }));
    expect(env(t)).toEqual({ ...DEFAULT_ENV, REDIS_HOST: 'my-redis.example.internal', REDIS_AUTH_SECRET_ARN: arn, REDIS_TLS: 'true', REDIS_PORT: '6379' });
    const statements = Object.values<any>(t.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
    expect(statements).toEqual([{ Effect: 'Allow', Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: arn }]);
  });

  test.each([
    [{ tls: false }, /^Test\/Counter: `tls` describes an existing resource: give `existingEndpoint` too/],
    [{ existingEndpoint: { hostname: 'h' }, engine: RedisEngine.VALKEY }, /^Test\/Counter: `engine` applies to the replication group the construct creates; do not combine with `existingEndpoint`/],
    [{ existingEndpoint: { hostname: 'h' }, replicas: 2 }, /`replicas` applies to the replication group/],
    [{ existingEndpoint: { hostname: 'h', port: 70000 } }, /`existingEndpoint.port` must be an integer from 1 to 65535/],
    [{ waitForReplicas: 2 }, /exceeds the replicas created/],
    [{ waitTimeout: Duration.millis(5) }, /`waitTimeout` applies only with `waitForReplicas`/],
    [{ replicas: 6 }, /`replicas` must be an integer from 0 to 5/],
  ] as Array<[Partial<RedisCounterProps>, RegExp]>)('conflicting props %p fail at synth', (props, message) => {
    expect(() => synth(props)).toThrow(message);
  });
});
