import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, DocDbCounterProps } from '../src';

function synth(props: Partial<DocDbCounterProps> = {}, withVpc = true) {
  const app = new App();
  const stack = new Stack(app, 'Stack', { env: { account: '111111111111', region: 'eu-west-1' } });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const counter = new DocDbCounter(stack, 'DocDb', { ...(withVpc ? { vpc } : {}), ...props } as DocDbCounterProps);
  return { stack, vpc, counter, template: Template.fromStack(stack) };
}

function counterFunction(template: Template): { id: string; props: any } {
  const fns = template.findResources('AWS::Lambda::Function', { Properties: { Description: Match.stringLikeRegexp('^Atomic counter on DocumentDB') } });
  const [id] = Object.keys(fns);
  return { id, props: fns[id].Properties };
}

function functionSecurityGroupId(template: Template): string {
  const sgs = template.findResources('AWS::EC2::SecurityGroup', { Properties: { GroupDescription: 'Atomic counter functions (DocumentDB clients)' } });
  expect(Object.keys(sgs)).toHaveLength(1);
  return Object.keys(sgs)[0];
}

describe('DocDbCounter (created cluster)', () => {
  const { template, counter } = synth({ conditionalWrites: true, maxCounterValue: 5 });

  test('creates one encrypted cluster of one db.t4g.medium instance, master password generated in Secrets Manager', () => {
    template.resourceCountIs('AWS::DocDB::DBCluster', 1);
    template.resourceCountIs('AWS::DocDB::DBInstance', 1);
    template.hasResourceProperties('AWS::DocDB::DBInstance', { DBInstanceClass: 'db.t4g.medium' });
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: Match.objectLike({ GenerateStringKey: 'password', SecretStringTemplate: '{"username":"counteradmin"}' }),
    });
    const cluster = Object.values(template.findResources('AWS::DocDB::DBCluster'))[0].Properties;
    expect(cluster.StorageEncrypted).toBe(true);
    expect(cluster.BackupRetentionPeriod).toBe(7);
    // User name and password are dynamic references resolved by CloudFormation, never literals.
    expect(JSON.stringify(cluster.MasterUsername)).toMatch(/resolve:secretsmanager:.*:SecretString:username::/);
    expect(JSON.stringify(cluster.MasterUserPassword)).toMatch(/resolve:secretsmanager:.*:SecretString:password::/);
    expect(cluster.DBClusterParameterGroupName).toBeUndefined(); // the default group: tls enabled
  });

  test('removed with a final snapshot by default, so a VPC in the same stack can be deleted', () => {
    template.hasResource('AWS::DocDB::DBCluster', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
  });

  test('TLS is not disabled: no parameter group turns `tls` off and the functions connect with TLS and the Amazon RDS CA bundle', () => {
    template.resourceCountIs('AWS::DocDB::DBClusterParameterGroup', 0);
    const json = JSON.stringify(template.toJSON());
    expect(json).not.toMatch(/"tls"\s*:\s*"disabled"/);
    const env = counterFunction(template).props.Environment.Variables;
    expect(env).toMatchObject({
      DOCDB_TLS: 'true',
      DOCDB_REPLICA_SET: 'rs0',
      NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
      DOCDB_DATABASE: 'atomic_counter',
      DOCDB_COLLECTION: 'counters',
      USE_CONDITIONAL_WRITES: 'true',
      MAX_COUNTER_VALUE: '5',
    });
  });

  test('credentials only via the secret: the functions get its ARN, no variable resolves its value, reads are scoped to it', () => {
    const secretId = Object.keys(template.findResources('AWS::SecretsManager::Secret'))[0];
    const fns = template.findResources('AWS::Lambda::Function', { Properties: { Environment: { Variables: { DOCDB_SECRET_ARN: Match.anyValue() } } } });
    expect(Object.keys(fns)).toHaveLength(2); // counter and setup
    for (const fn of Object.values(fns)) {
      const env = fn.Properties.Environment.Variables;
      // The attachment's ARN is the secret's ARN (CloudFormation's Ref of the attachment).
      expect(JSON.stringify(env.DOCDB_SECRET_ARN)).toMatch(/Attachment|Secret/);
      expect(JSON.stringify(env)).not.toMatch(/resolve:secretsmanager|SecretString|password/i);
      expect(Object.keys(env).filter((k) => /PASS|USER|URI/.test(k))).toEqual([]);
    }
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['secretsmanager:GetSecretValue']) })]) } } });
    expect(Object.keys(policies).length).toBeGreaterThanOrEqual(2);
    for (const policy of Object.values(policies)) {
      for (const statement of policy.Properties.PolicyDocument.Statement) {
        if (![statement.Action].flat().some((a: string) => a.startsWith('secretsmanager:'))) continue;
        expect(JSON.stringify(statement.Resource)).toMatch(new RegExp(`${secretId}|Attachment`));
        expect(statement.Resource).not.toBe('*');
      }
    }
  });

  test('the cluster admits 27017 only from the functions\' security group, which both functions use', () => {
    const fnSg = functionSecurityGroupId(template);
    const cluster = Object.values(template.findResources('AWS::DocDB::DBCluster'))[0].Properties;
    const clusterSgRef = cluster.VpcSecurityGroupIds[0]['Fn::GetAtt'][0];
    // No inline ingress on the cluster's group…
    const clusterSg = template.findResources('AWS::EC2::SecurityGroup')[clusterSgRef].Properties;
    expect(clusterSg.SecurityGroupIngress ?? []).toEqual([]);
    // …and exactly one ingress rule: 27017 from the functions' group.
    const ingress = Object.values(template.findResources('AWS::EC2::SecurityGroupIngress')).map((r) => r.Properties)
      .filter((p) => JSON.stringify(p.GroupId).includes(clusterSgRef));
    expect(ingress).toEqual([expect.objectContaining({
      IpProtocol: 'tcp',
      FromPort: 27017,
      ToPort: 27017,
      SourceSecurityGroupId: { 'Fn::GetAtt': [fnSg, 'GroupId'] },
    })]);
    expect(JSON.stringify(ingress)).not.toMatch(/CidrIp/);
    const inVpc = template.findResources('AWS::Lambda::Function', { Properties: { VpcConfig: Match.anyValue() } });
    expect(Object.keys(inVpc)).toHaveLength(2);
    for (const fn of Object.values(inVpc)) {
      expect(fn.Properties.VpcConfig.SecurityGroupIds).toEqual([{ 'Fn::GetAtt': [fnSg, 'GroupId'] }]);
    }
  });

  test('a setup custom resource, after the cluster and before the counter function; every function on Node.js 24 or later', () => {
    template.hasResourceProperties('Custom::DocDbSetup', { Database: 'atomic_counter', Collection: 'counters' });
    const setup = template.findResources('Custom::DocDbSetup');
    const [setupId] = Object.keys(setup);
    const deps: string[] = setup[setupId].DependsOn ?? [];
    const clusterId = Object.keys(template.findResources('AWS::DocDB::DBCluster'))[0];
    const instanceId = Object.keys(template.findResources('AWS::DocDB::DBInstance'))[0];
    expect(deps).toEqual(expect.arrayContaining([clusterId, instanceId]));
    const fn = template.findResources('AWS::Lambda::Function')[counterFunction(template).id];
    expect(fn.DependsOn).toEqual(expect.arrayContaining([setupId]));
    for (const f of Object.values(template.findResources('AWS::Lambda::Function'))) {
      expect(JSON.stringify(f.Properties.Runtime)).not.toMatch(/nodejs(1\d|20)\./);
    }
    expect(counterFunction(template).props.Runtime).toBe('nodejs24.x');
  });

  test('metric filter DocDbAtomicCounter on the function\'s log group; everything exposed', () => {
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      MetricTransformations: [Match.objectLike({ MetricNamespace: 'AtomicCounter', MetricName: 'DocDbAtomicCounter', MetricValue: '$.counter' })],
    });
    expect(counter.backend).toBe('docdb');
    expect(counter.cluster).toBeDefined();
    expect(counter.setupFunction).toBeDefined();
    expect(counter.securityGroup).toBeDefined();
  });
});

describe('DocDbCounter (existing cluster)', () => {
  function existing(extra: Partial<DocDbCounterProps> = {}) {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: { account: '111111111111', region: 'eu-west-1' } });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const secret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Creds', 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf');
    const clusterSecurityGroup = ec2.SecurityGroup.fromSecurityGroupId(stack, 'ClusterSg', 'sg-0123456789abcdef0');
    const counter = new DocDbCounter(stack, 'DocDb', {
      vpc,
      clusterEndpoint: { hostname: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com', port: 27018 },
      credentialsSecret: secret,
      clusterSecurityGroup,
      ...extra,
    });
    return { counter, template: Template.fromStack(stack) };
  }

  test('creates no cluster, points the functions at the given endpoint and secret, opens the given group to the functions only', () => {
    const { template, counter } = existing();
    template.resourceCountIs('AWS::DocDB::DBCluster', 0);
    template.resourceCountIs('AWS::DocDB::DBInstance', 0);
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(counter.cluster).toBeUndefined();
    expect(counterFunction(template).props.Environment.Variables).toMatchObject({
      DOCDB_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf',
      DOCDB_HOST: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com',
      DOCDB_PORT: '27018',
      DOCDB_TLS: 'true',
      NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: 'sg-0123456789abcdef0',
      IpProtocol: 'tcp',
      FromPort: 27018,
      ToPort: 27018,
      SourceSecurityGroupId: { 'Fn::GetAtt': [functionSecurityGroupId(template), 'GroupId'] },
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Resource: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf' })]) },
    });
  });

  test('conflicting or incomplete props fail at synth with a clear message', () => {
    expect(() => existing({ instances: 2 })).toThrow(/`instances` apply to a created cluster/);
    expect(() => synth({ clusterEndpoint: { hostname: 'h' } })).toThrow(/`clusterEndpoint` needs `credentialsSecret`/);
    expect(() => synth({ instances: 0 })).toThrow(/`instances` must be an integer/);
    expect(() => synth({ backupRetention: Duration.days(40) })).toThrow(/`backupRetention`/);
    expect(() => synth({ databaseName: 'a.b' })).toThrow(/`databaseName`/);
    expect(() => synth({ collectionName: 'system.x' })).toThrow(/`collectionName`/);
  });
});
