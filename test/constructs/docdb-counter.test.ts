import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as docdb from 'aws-cdk-lib/aws-docdb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, DocDbCounterProps } from '../../src';

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

function setupFunction(template: Template): { id: string; props: any } {
  const fns = template.findResources('AWS::Lambda::Function', { Properties: { Description: Match.stringLikeRegexp('^Creates the DocumentDB database') } });
  const [id] = Object.keys(fns);
  return { id, props: fns[id].Properties };
}

function functionSecurityGroupId(template: Template): string {
  const sgs = template.findResources('AWS::EC2::SecurityGroup', { Properties: { GroupDescription: 'Atomic counter functions (DocumentDB clients)' } });
  expect(Object.keys(sgs)).toHaveLength(1);
  return Object.keys(sgs)[0];
}

/**
 * Every egress rule of the functions' security group (inline and separate
 * resources), as `<port> → <destination>` (issue 19, item 8).
 */
function functionEgress(template: Template): string[] {
  const fnSg = functionSecurityGroupId(template);
  const inline = template.findResources('AWS::EC2::SecurityGroup')[fnSg].Properties.SecurityGroupEgress ?? [];
  const separate = Object.values(template.findResources('AWS::EC2::SecurityGroupEgress')).map((r) => r.Properties)
    .filter((p) => JSON.stringify(p.GroupId).includes(fnSg));
  return [...inline, ...separate].map((r: any) => {
    const to = r.CidrIp ?? (r.DestinationSecurityGroupId?.['Fn::GetAtt']?.[0] ?? r.DestinationSecurityGroupId);
    return `${r.IpProtocol} ${r.FromPort}-${r.ToPort} → ${typeof to === 'string' ? to : JSON.stringify(to)}`;
  }).sort();
}

describe('DocDbCounter (created cluster)', () => {
  const { template, counter, stack } = synth({ conditionalWrites: true, maxCounterValue: 5 });

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

  test('engine version pinned to 5.0.0 by default (not whatever AWS defaults to on deploy day); the prop chooses another', () => {
    template.hasResourceProperties('AWS::DocDB::DBCluster', { EngineVersion: '5.0.0' });
    synth({ engineVersion: '4.0.0' }).template.hasResourceProperties('AWS::DocDB::DBCluster', { EngineVersion: '4.0.0' });
  });

  test('the counter function logs in as the application user: its environment is exactly this, with the app secret only', () => {
    const clusterId = Object.keys(template.findResources('AWS::DocDB::DBCluster'))[0];
    const appSecretId = Object.keys(template.findResources('AWS::SecretsManager::Secret', { Properties: { Description: Match.stringLikeRegexp('application user') } }))[0];
    expect(appSecretId).toBeDefined();
    const endpoint = {
      DOCDB_HOST: { 'Fn::GetAtt': [clusterId, 'Endpoint'] },
      DOCDB_PORT: '27017',
      DOCDB_TLS: 'true',
      DOCDB_REPLICA_SET: 'rs0',
      DOCDB_DATABASE: 'atomic_counter',
      DOCDB_COLLECTION: 'counters',
      NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
    };
    expect(counterFunction(template).props.Environment).toEqual({
      Variables: {
        DOCDB_SECRET_ARN: { Ref: appSecretId },
        ...endpoint,
        USE_CONDITIONAL_WRITES: 'true',
        MAX_COUNTER_VALUE: '5',
        IDEMPOTENCY_RETENTION_SECONDS: '86400',
        COUNTER_DEPLOYMENT: 'Stack/DocDb',
      },
    });
    // The setup logs in as the master user (the cluster's attached secret) and manages the app user.
    const attachmentId = Object.keys(template.findResources('AWS::SecretsManager::SecretTargetAttachment'))[0];
    expect(setupFunction(template).props.Environment).toEqual({
      Variables: { DOCDB_SECRET_ARN: { Ref: attachmentId }, DOCDB_APP_SECRET_ARN: { Ref: appSecretId }, ...endpoint },
    });
    template.hasResourceProperties('Custom::DocDbSetup', { Database: 'atomic_counter', Collection: 'counters', AppUserSecret: { Ref: appSecretId } });
    expect(stack.resolve(counter.appUserSecret.secretArn)).toEqual({ Ref: appSecretId });
  });

  test('the application user\'s password is generated in its own secret; no environment variable holds a secret value or reference', () => {
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Description: Match.stringLikeRegexp('application user'),
      GenerateSecretString: Match.objectLike({ GenerateStringKey: 'password', SecretStringTemplate: '{"username":"counterapp"}', PasswordLength: 32 }),
    });
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) {
      const env = JSON.stringify(fn.Properties.Environment ?? {});
      expect(env).not.toMatch(/resolve:secretsmanager|SecretString|password/i);
    }
  });

  test('IAM: only the setup function may read the master secret; the counter function reads the app user\'s secret and nothing else', () => {
    const attachmentId = Object.keys(template.findResources('AWS::SecretsManager::SecretTargetAttachment'))[0];
    const masterSecretId = Object.keys(template.findResources('AWS::SecretsManager::Secret', { Properties: { GenerateSecretString: { SecretStringTemplate: '{"username":"counteradmin"}' } } }))[0];
    const appSecretId = Object.keys(template.findResources('AWS::SecretsManager::Secret', { Properties: { Description: Match.stringLikeRegexp('application user') } }))[0];
    expect(masterSecretId).toBeDefined();
    const roleOf = (fnId: string) => template.findResources('AWS::Lambda::Function')[fnId].Properties.Role['Fn::GetAtt'][0];
    const counterRole = roleOf(counterFunction(template).id);
    const setupRole = roleOf(setupFunction(template).id);
    // Every statement that grants a secretsmanager action, with the roles its policy is attached to.
    const grants: Array<{ roles: string[]; resource: string }> = [];
    for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
      const roles = policy.Properties.Roles.map((r: any) => r.Ref);
      for (const statement of policy.Properties.PolicyDocument.Statement) {
        if (![statement.Action].flat().some((a: string) => a.startsWith('secretsmanager:'))) continue;
        expect([statement.Action].flat().sort()).toEqual(['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']);
        grants.push({ roles, resource: JSON.stringify(statement.Resource) });
      }
    }
    const readers = (id: string) => grants.filter((g) => g.resource.includes(id)).flatMap((g) => g.roles).sort();
    expect(readers(attachmentId)).toEqual([setupRole]);
    expect(readers(masterSecretId)).toEqual([]);
    expect(readers(appSecretId)).toEqual([counterRole, setupRole].sort());
    expect(grants.filter((g) => g.roles.includes(counterRole)).map((g) => g.resource)).toEqual([JSON.stringify({ Ref: appSecretId })]);
  });

  test('secrets follow their store: with the default SNAPSHOT both secrets are retained, with DESTROY both are deleted, RETAIN keeps them', () => {
    const policies = (t: Template) => Object.values(t.findResources('AWS::SecretsManager::Secret')).map((r) => [r.DeletionPolicy, r.UpdateReplacePolicy]);
    // Kept, except after a rolled-back first deployment (its cluster was empty).
    expect(policies(template)).toEqual([['RetainExceptOnCreate', 'Retain'], ['RetainExceptOnCreate', 'Retain']]);
    const destroyed = synth({ removalPolicy: RemovalPolicy.DESTROY }).template;
    destroyed.hasResource('AWS::DocDB::DBCluster', { DeletionPolicy: 'Delete' });
    expect(policies(destroyed)).toEqual([['Delete', 'Delete'], ['Delete', 'Delete']]);
    expect(policies(synth({ removalPolicy: RemovalPolicy.RETAIN }).template)).toEqual([['Retain', 'Retain'], ['Retain', 'Retain']]);
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

  test('the functions\' security group sends only to the cluster\'s port (its group) and to HTTPS (Secrets Manager), nothing else', () => {
    const cluster = Object.values(template.findResources('AWS::DocDB::DBCluster'))[0].Properties;
    const clusterSg = cluster.VpcSecurityGroupIds[0]['Fn::GetAtt'][0];
    expect(functionEgress(template)).toEqual([`tcp 27017-27017 → ${clusterSg}`, 'tcp 443-443 → 0.0.0.0/0']);
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

  test('the created cluster is exposed, and the function reaches it on 27017', () => {
    // The metric filter and log group are the construct contract's (test/kit/construct-contract.ts).
    expect(counter.backend).toBe('docdb');
    expect(counter.cluster).toBeInstanceOf(docdb.DatabaseCluster);
    expect(counter.endpointPort).toBe(27017);
  });
});

describe('DocDbCounter (existing cluster)', () => {
  function existing(extra: Partial<DocDbCounterProps> = {}) {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: { account: '111111111111', region: 'eu-west-1' } });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const secret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Creds', 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf');
    const securityGroup = ec2.SecurityGroup.fromSecurityGroupId(stack, 'ClusterSg', 'sg-0123456789abcdef0');
    const counter = new DocDbCounter(stack, 'DocDb', {
      vpc,
      existingEndpoint: { hostname: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com', port: 27018, securityGroup },
      credentialsSecret: secret,
      ...extra,
    });
    return { counter, template: Template.fromStack(stack) };
  }

  test('creates no cluster, points the functions at the given endpoint and secret, opens the given group to the functions only', () => {
    const { template, counter } = existing();
    template.resourceCountIs('AWS::DocDB::DBCluster', 0);
    template.resourceCountIs('AWS::DocDB::DBInstance', 0);
    // Only the application user's secret is created (retained: its user lives on in the existing cluster;
    // deleted only when the deployment that created it rolls back).
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    template.hasResource('AWS::SecretsManager::Secret', { DeletionPolicy: 'RetainExceptOnCreate', UpdateReplacePolicy: 'Retain' });
    const appSecretId = Object.keys(template.findResources('AWS::SecretsManager::Secret'))[0];
    expect(counter.cluster).toBeUndefined();
    expect([counter.endpointHostname, counter.endpointPort]).toEqual(['counters.cluster-abc.eu-west-1.docdb.amazonaws.com', 27018]);
    const endpoint = {
      DOCDB_HOST: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com',
      DOCDB_PORT: '27018',
      DOCDB_TLS: 'true',
      DOCDB_REPLICA_SET: 'rs0',
      DOCDB_DATABASE: 'atomic_counter',
      DOCDB_COLLECTION: 'counters',
      NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
    };
    expect(counterFunction(template).props.Environment.Variables).toEqual({
      DOCDB_SECRET_ARN: { Ref: appSecretId },
      ...endpoint,
      USE_CONDITIONAL_WRITES: 'false',
      MAX_COUNTER_VALUE: '10',
      IDEMPOTENCY_RETENTION_SECONDS: '86400',
      COUNTER_DEPLOYMENT: 'Stack/DocDb',
    });
    // The given (administrator) secret goes to the setup function only.
    expect(setupFunction(template).props.Environment.Variables).toEqual({
      DOCDB_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf',
      DOCDB_APP_SECRET_ARN: { Ref: appSecretId },
      ...endpoint,
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: 'sg-0123456789abcdef0',
      IpProtocol: 'tcp',
      FromPort: 27018,
      ToPort: 27018,
      SourceSecurityGroupId: { 'Fn::GetAtt': [functionSecurityGroupId(template), 'GroupId'] },
    });
    // Egress: the given group's port and HTTPS only.
    expect(functionEgress(template)).toEqual(['tcp 27018-27018 → sg-0123456789abcdef0', 'tcp 443-443 → 0.0.0.0/0']);
    const given = template.findResources('AWS::IAM::Policy', {
      Properties: { PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Resource: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf' })]) } },
    });
    const setupRole = template.findResources('AWS::Lambda::Function')[setupFunction(template).id].Properties.Role['Fn::GetAtt'][0];
    expect(Object.values(given).map((p) => p.Properties.Roles)).toEqual([[{ Ref: setupRole }]]);
  });

  test('without the cluster\'s security group: egress to the endpoint\'s port and HTTPS only', () => {
    const { template } = existing({ existingEndpoint: { hostname: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com' } });
    expect(functionEgress(template)).toEqual(['tcp 27017-27017 → 0.0.0.0/0', 'tcp 443-443 → 0.0.0.0/0']);
  });

  test('conflicting or incomplete props fail at synth with a clear message', () => {
    expect(() => existing({ instances: 2 })).toThrow(/^Stack\/DocDb: `instances` applies to the cluster the construct creates; do not combine with `existingEndpoint`$/);
    expect(() => synth({ existingEndpoint: { hostname: 'h' } })).toThrow(/`existingEndpoint` needs `credentialsSecret`/);
    expect(() => synth({ instances: 0 })).toThrow(/`instances` must be an integer/);
    expect(() => synth({ backupRetention: Duration.days(40) })).toThrow(/`backupRetention`/);
    expect(() => synth({ databaseName: 'a.b' })).toThrow(/`databaseName`/);
    expect(() => synth({ collectionName: 'system.x' })).toThrow(/`collectionName`/);
    // Its keys collection, `<name>_keys`, must fit too.
    expect(() => synth({ collectionName: 'c'.repeat(116) })).toThrow(/`collectionName` must be 1-115 characters/);
    expect(() => synth({ collectionName: 'c'.repeat(115) })).not.toThrow();
    expect(() => synth({ appUsername: 'bad name' })).toThrow(/`appUsername`/);
    expect(() => synth({ appUsername: 'counteradmin' })).toThrow(/`appUsername` must differ/);
  });
});
