import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as docdb from 'aws-cdk-lib/aws-docdb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { DocDbCounter, DocDbCounterProps } from '../../src';
import { readCredentials } from '../../src/backends/docdb/runtime/docdb-client';

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

/** The target attachments of the master secret and of the application user's secret (created cluster). */
function attachments(template: Template): { master: string; app: string; appSecret: string; masterSecret: string } {
  const appSecret = Object.keys(template.findResources('AWS::SecretsManager::Secret', { Properties: { Description: Match.stringLikeRegexp('application user') } }))[0];
  const masterSecret = Object.keys(template.findResources('AWS::SecretsManager::Secret')).find((id) => id !== appSecret)!;
  const all = Object.entries<any>(template.findResources('AWS::SecretsManager::SecretTargetAttachment'));
  const of = (secret: string) => all.filter(([, r]) => r.Properties.SecretId.Ref === secret).map(([id]) => id);
  expect([of(masterSecret), of(appSecret)].map((ids) => ids.length)).toEqual([1, 1]);
  return { master: of(masterSecret)[0], app: of(appSecret)[0], appSecret, masterSecret };
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
    const { master: attachmentId, appSecret: appSecretId } = attachments(template);
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
    expect(setupFunction(template).props.Environment).toEqual({
      Variables: { DOCDB_SECRET_ARN: { Ref: attachmentId }, DOCDB_APP_SECRET_ARN: { Ref: appSecretId }, ...endpoint },
    });
    template.hasResourceProperties('Custom::DocDbSetup', { Database: 'atomic_counter', Collection: 'counters', AppUserSecret: { Ref: appSecretId } });
    expect(stack.resolve(counter.appUserSecret.secretArn)).toEqual({ Ref: appSecretId });
  });

  test('the application user\'s password is generated in its own secret; no environment variable holds a secret value or reference', () => {
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Description: Match.stringLikeRegexp('application user'),
      GenerateSecretString: Match.objectLike({ GenerateStringKey: 'password', PasswordLength: 32, ExcludeCharacters: '"@/\\' }),
    });
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) {
      const env = JSON.stringify(fn.Properties.Environment ?? {});
      expect(env).not.toMatch(/resolve:secretsmanager|SecretString|password/i);
    }
  });

  test('IAM: only the setup function may read the master secret; the counter function reads the app user\'s secret and nothing else', () => {
    const { master: attachmentId, masterSecret: masterSecretId, appSecret: appSecretId } = attachments(template);
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

/**
 * Issue 19, item 3: the application user's secret has the shape AWS's
 * DocumentDB rotation functions read, keeps the keys the handler and the
 * setup read, and can be rotated by AWS's own alternating-users function.
 */
describe('DocDbCounter: the application user\'s secret, rotatable by AWS', () => {
  /** The secret's JSON template with each `{Ref: X}` written as `<X>` (the secret string CloudFormation would generate, minus the password). */
  function secretTemplate(template: Template, secretId: string): Record<string, unknown> {
    const raw = template.findResources('AWS::SecretsManager::Secret')[secretId].Properties.GenerateSecretString.SecretStringTemplate;
    const token = (part: any) => (part.Ref ? `<${part.Ref}>` : `<${part['Fn::GetAtt'].join('.')}>`);
    const text = typeof raw === 'string' ? raw : raw['Fn::Join'][1].map((part: any) => (typeof part === 'string' ? part : token(part))).join('');
    return JSON.parse(text);
  }

  test('created cluster: username, engine "mongo", ssl, masterarn = the master secret, host and port; attached to the cluster like the master secret', () => {
    const { template } = synth();
    const ids = attachments(template);
    const clusterId = Object.keys(template.findResources('AWS::DocDB::DBCluster'))[0];
    // In the template (a regenerated secret string keeps them), and from the attachment as the master's host is.
    expect(secretTemplate(template, ids.appSecret)).toEqual({
      username: 'counterapp', engine: 'mongo', ssl: true, masterarn: `<${ids.master}>`, host: `<${clusterId}.Endpoint>`, port: 27017,
    });
    template.hasResourceProperties('AWS::SecretsManager::SecretTargetAttachment', {
      SecretId: { Ref: ids.appSecret }, TargetId: { Ref: clusterId }, TargetType: 'AWS::DocDB::DBCluster',
    });
    // The master secret gets its host the same way: AWS's rotation function requires both hosts to be equal.
    template.hasResourceProperties('AWS::SecretsManager::SecretTargetAttachment', {
      SecretId: { Ref: ids.masterSecret }, TargetId: { Ref: clusterId }, TargetType: 'AWS::DocDB::DBCluster',
    });
  });

  test('existing cluster: host and port written into the secret, masterarn = the given secret', () => {
    const stack = new Stack(new App(), 'Stack', { env: { account: '111111111111', region: 'eu-west-1' } });
    const given = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:docdb-creds-AbCdEf';
    new DocDbCounter(stack, 'DocDb', {
      vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }),
      existingEndpoint: { hostname: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com', port: 27018 },
      credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(stack, 'Creds', given),
      appUsername: 'votes',
    });
    const template = Template.fromStack(stack);
    const [appSecret] = Object.keys(template.findResources('AWS::SecretsManager::Secret'));
    expect(secretTemplate(template, appSecret)).toEqual({
      username: 'votes', engine: 'mongo', ssl: true, masterarn: given, host: 'counters.cluster-abc.eu-west-1.docdb.amazonaws.com', port: 27018,
    });
    template.resourceCountIs('AWS::SecretsManager::SecretTargetAttachment', 0);
  });

  test('the handler and the setup still find what they read in that shape: username and password', () => {
    const { template } = synth();
    const ids = attachments(template);
    const generated = { ...secretTemplate(template, ids.appSecret), host: 'h', port: 27017, dbClusterIdentifier: 'c', password: 'p@ss' };
    expect(template.findResources('AWS::SecretsManager::Secret')[ids.appSecret].Properties.GenerateSecretString.GenerateStringKey).toBe('password');
    expect(readCredentials(generated)).toEqual({ username: 'counterapp', password: 'p@ss' });
  });

  test('no rotation by default', () => {
    const { template, counter } = synth();
    template.resourceCountIs('AWS::SecretsManager::RotationSchedule', 0);
    expect(counter.appUserRotation).toBeUndefined();
  });

  test('applicationUserRotation: AWS\'s hosted MongoDB multi-user rotation of the app secret, with the master secret, in the functions\' subnets, after the setup', () => {
    const { template, counter, stack } = synth({ applicationUserRotation: Duration.days(30) });
    const ids = attachments(template);
    const rotationSg = stack.resolve(counter.rotationSecurityGroup!.securityGroupId);
    const [schedule] = Object.values<any>(template.findResources('AWS::SecretsManager::RotationSchedule'));
    const setupId = Object.keys(template.findResources('Custom::DocDbSetup'))[0];
    expect(schedule.Properties).toEqual({
      SecretId: { Ref: ids.appSecret },
      RotationRules: { ScheduleExpression: 'rate(30 days)' },
      HostedRotationLambda: {
        RotationType: 'MongoDBMultiUser',
        MasterSecretArn: { Ref: ids.master },
        ExcludeCharacters: '"@/\\',
        VpcSecurityGroupIds: rotationSg,
        VpcSubnetIds: { 'Fn::Join': ['', [{ Ref: expect.stringMatching(/^VpcPrivateSubnet1/) }, ',', { Ref: expect.stringMatching(/^VpcPrivateSubnet2/) }]] },
      },
    });
    // After the setup created the user, and after the attachment wrote host and port into the secret.
    expect(schedule.DependsOn.sort()).toEqual([ids.app, setupId].sort());
    expect(template.toJSON().Transform).toMatch(/^AWS::SecretsManager-/);
  });

  test('the rotation function\'s security group reaches only the cluster\'s port (admitted by the cluster\'s group) and HTTPS', () => {
    const { template, counter, stack } = synth({ applicationUserRotation: Duration.days(30) });
    const rotationSg = stack.resolve(counter.rotationSecurityGroup!.securityGroupId)['Fn::GetAtt'][0];
    const sg = template.findResources('AWS::EC2::SecurityGroup')[rotationSg].Properties;
    expect(sg.SecurityGroupEgress).toEqual([expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 })]);
    const clusterSg = Object.values<any>(template.findResources('AWS::DocDB::DBCluster'))[0].Properties.VpcSecurityGroupIds[0]['Fn::GetAtt'][0];
    template.hasResourceProperties('AWS::EC2::SecurityGroupEgress', {
      GroupId: { 'Fn::GetAtt': [rotationSg, 'GroupId'] }, DestinationSecurityGroupId: { 'Fn::GetAtt': [clusterSg, 'GroupId'] }, FromPort: 27017, ToPort: 27017,
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: { 'Fn::GetAtt': [clusterSg, 'GroupId'] }, SourceSecurityGroupId: { 'Fn::GetAtt': [rotationSg, 'GroupId'] }, FromPort: 27017, ToPort: 27017,
    });
  });

  test('cdk-nag: rotation adds no finding, and the application user\'s secret is no longer unrotated (SMG4)', () => {
    const findings = (props: Partial<DocDbCounterProps>) => {
      const { stack } = synth(props);
      const report = new AwsSolutionsChecks(stack.node.root).validateScope(stack.node.root);
      return report.violations.flatMap((v) => v.violatingResources.map((r: any) => `${v.ruleName} ${r.constructPath ?? r.resourceLogicalId}`));
    };
    const without = findings({});
    const withRotation = findings({ applicationUserRotation: Duration.days(30) });
    expect(without).toContain('AwsSolutions-SMG4 Stack/DocDb/AppUserSecret/Resource');
    expect(withRotation).toEqual(without.filter((f) => f !== 'AwsSolutions-SMG4 Stack/DocDb/AppUserSecret/Resource'));
  });

  test('a schedule Secrets Manager refuses, or an appUsername whose _clone is too long, fails at synth', () => {
    expect(() => synth({ applicationUserRotation: Duration.hours(1) })).toThrow(/`applicationUserRotation` must be between 4 hours and 1000 days/);
    expect(() => synth({ applicationUserRotation: Duration.days(30), appUsername: 'u'.repeat(58) })).toThrow(/`appUsername` must be at most 57 characters with `applicationUserRotation`/);
    expect(() => synth({ appUsername: 'u'.repeat(58) })).not.toThrow();
  });
});
