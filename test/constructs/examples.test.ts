import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { buildExample, config, EXAMPLE_VARIANTS, exampleDir, FAKE_CREDENTIALS, FULL_DOTENV } from './example-app';
import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';

/** The backends the example serves when every credential is configured: every backend the library knows. */
const ALL_BACKENDS = ALL_BACKEND_CONTRACTS.map((c) => c.name);
/** Backends with a setup custom resource, and its type. */
const SETUP_TYPES: Record<string, string> = { momento: 'Custom::MomentoSetup', docdb: 'Custom::DocDbSetup', tidb: 'Custom::TiDbSetup' };

type Resources = Record<string, { Type: string; Properties?: any }>;

function logicalId(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as never);
}

/** `/dynamo/{id}` for an AWS::ApiGateway::Resource logical id, from PathPart/ParentId. */
function resourcePath(resources: Resources, id: string): string {
  const r = resources[id];
  if (!r || r.Type !== 'AWS::ApiGateway::Resource') return '';
  const parent = r.Properties.ParentId;
  const parentPath = parent.Ref ? resourcePath(resources, parent.Ref) : '';
  return `${parentPath}/${r.Properties.PathPart}`;
}

describe('example stack, every backend configured', () => {
  const { app, stack } = buildExample(exampleDir(FULL_DOTENV));
  const template = Template.fromStack(stack);
  const resources = template.toJSON().Resources as Resources;

  test('serves every backend', () => {
    expect(stack.api.backends.sort()).toEqual([...ALL_BACKENDS].sort());
    // The example's own list (it builds on the published package, not on src/private) names the same backends.
    expect([...config.BACKEND_NAMES].sort()).toEqual([...ALL_BACKENDS].sort());
  });

  test('one VPC with two public and two private subnets and ONE NAT gateway; rejected traffic is flow-logged', () => {
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    const subnets = Object.values(template.findResources('AWS::EC2::Subnet'));
    expect(subnets).toHaveLength(4);
    // No public address on launch, public subnets included (the NAT gateway has its Elastic IP): CT.EC2.PR.11.
    expect(subnets.map((s) => s.Properties.MapPublicIpOnLaunch)).toEqual([false, false, false, false]);
    template.resourceCountIs('AWS::EC2::EIP', 1);
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT' });
  });

  test('the VPC\'s default security group is stripped of its rules (restrictDefaultSecurityGroup)', () => {
    const vpcId = logicalId(stack, stack.vpc!);
    template.hasResourceProperties('Custom::VpcRestrictDefaultSG', { DefaultSecurityGroupId: { 'Fn::GetAtt': [vpcId, 'DefaultSecurityGroup'] } });
  });

  test('the Redis eviction alarm notifies an encrypted SNS topic (CT.CLOUDWATCH.PR.1)', () => {
    expect(stack.dashboard.alarms).toHaveLength(1);
    const topicId = logicalId(stack, stack.alarmTopic);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [{ Ref: topicId }] });
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    template.hasOutput('AlarmTopicArn', { Value: { Ref: topicId } });
  });

  test('every log group is kept a year (CT.CLOUDWATCH.PR.2)', () => {
    const groups = Object.entries(template.findResources('AWS::Logs::LogGroup'));
    expect(groups.length).toBeGreaterThan(2 * ALL_BACKENDS.length);
    expect(groups.filter(([, g]) => g.Properties.RetentionInDays !== 365).map(([id]) => id)).toEqual([]);
  });

  test('no function may call secretsmanager:DescribeSecret (nothing uses it); each reads its secrets with GetSecretValue only', () => {
    const actions = Object.values(template.findResources('AWS::IAM::Policy'))
      .flatMap((p) => p.Properties.PolicyDocument.Statement).flatMap((st: any) => [st.Action].flat())
      .filter((a: string) => a.startsWith('secretsmanager:'));
    expect(actions.length).toBeGreaterThan(0);
    expect([...new Set(actions)]).toEqual(['secretsmanager:GetSecretValue']);
  });

  test('one counter function per backend, each told the mode from .env', () => {
    const counterFunctions = Object.values(template.findResources('AWS::Lambda::Function', {
      Properties: { Environment: { Variables: { USE_CONDITIONAL_WRITES: Match.anyValue() } } },
    }));
    expect(counterFunctions).toHaveLength(ALL_BACKENDS.length);
    for (const fn of counterFunctions) {
      expect(fn.Properties.Runtime).toBe('nodejs24.x');
    }
    // Each counter function's environment, exactly: an extra variable (a credential, a secret reference) fails.
    const any = expect.anything();
    const mode = { USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '25' };
    const expected: Record<string, Record<string, unknown>> = {
      dynamo: { COUNTER_TABLE_NAME: any },
      redis: {
        REDIS_HOST: any,
        REDIS_PORT: any,
        REDIS_TLS: 'true',
        REDIS_KEY_PREFIX: 'counter:',
        REDIS_CONNECT_TIMEOUT_MS: '1000',
        REDIS_COMMAND_TIMEOUT_MS: '1000',
        REDIS_AUTH_SECRET_ARN: any,
      },
      momento: {
        MOMENTO_API_KEY_SECRET_ARN: any,
        MOMENTO_CACHE_NAME: 'counters-under-test',
        MOMENTO_TTL_SECONDS: '86400',
        MOMENTO_CAS_MAX_ATTEMPTS: '200',
        MOMENTO_CAS_BUDGET_MS: '5000',
      },
      docdb: {
        DOCDB_SECRET_ARN: any,
        DOCDB_HOST: any,
        DOCDB_PORT: any,
        DOCDB_TLS: 'true',
        DOCDB_REPLICA_SET: any,
        DOCDB_DATABASE: any,
        DOCDB_COLLECTION: any,
        NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
      },
      tidb: { TIDB_SECRET_ARN: any, TIDB_TABLE: 'counters_atomiccounterexample_tidb_c2cb8f81', TIDB_TLS: 'true', TIDB_CONNECT_TIMEOUT_MS: '2000', TIDB_QUERY_TIMEOUT_MS: '2500' },
    };
    for (const counter of stack.counters) {
      const variables = resources[logicalId(stack, counter.counterFunction)].Properties.Environment.Variables;
      const deployment = `AtomicCounterExample/${counter.counterFunction.node.scope!.node.id}`;
      const want = { ...expected[counter.backend], ...mode, COUNTER_DEPLOYMENT: deployment, IDEMPOTENCY_RETENTION_SECONDS: '86400' };
      expect({ backend: counter.backend, variables }).toEqual({ backend: counter.backend, variables: want });
    }
  });

  test('POST and GET /{backend}/{id} for every backend, API key required, each integrated with its own function', () => {
    for (const counter of stack.counters) {
      const fnId = logicalId(stack, counter.counterFunction);
      for (const method of ['POST', 'GET']) {
        const matches = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Method'
          && r.Properties.HttpMethod === method
          && resourcePath(resources, r.Properties.ResourceId.Ref) === `/${counter.backend}/{id}`);
        expect(matches).toHaveLength(1);
        expect(matches[0].Properties.ApiKeyRequired).toBe(true);
        expect(JSON.stringify(matches[0].Properties.Integration.Uri)).toContain(`"${fnId}","Arn"`);
      }
    }
  });

  test('cdk destroy can delete the VPC: nothing inside it is retained (DocumentDB and Redis end with a snapshot)', () => {
    const inVpc = ['AWS::DocDB::DBCluster', 'AWS::DocDB::DBInstance', 'AWS::ElastiCache::ReplicationGroup', 'AWS::EC2::SecurityGroup', 'AWS::Lambda::Function'];
    const retained = Object.entries(template.toJSON().Resources as Record<string, { Type: string; DeletionPolicy?: string }>)
      .filter(([, r]) => inVpc.includes(r.Type) && r.DeletionPolicy === 'Retain').map(([id]) => id);
    expect(retained).toEqual([]);
    template.hasResource('AWS::DocDB::DBCluster', { DeletionPolicy: 'Snapshot' });
  });

  test('an API key bound to a usage plan on the stage', () => {
    template.resourceCountIs('AWS::ApiGateway::ApiKey', 1);
    template.resourceCountIs('AWS::ApiGateway::UsagePlan', 1);
    template.hasResourceProperties('AWS::ApiGateway::UsagePlan', { ApiStages: [Match.objectLike({ Stage: Match.anyValue() })] });
    template.hasResourceProperties('AWS::ApiGateway::UsagePlanKey', { KeyType: 'API_KEY' });
    // The example's own outputs (the library adds none): the URL and the key id for calling the API.
    expect(Object.keys(template.toJSON().Outputs).sort()).toEqual(['AlarmTopicArn', 'ApiKeyId', 'ApiUrl', 'Backends', 'DashboardName']);
    template.hasOutput('ApiKeyId', { Description: Match.stringLikeRegexp('get-api-key') });
  });

  test('the setup custom resources of the backends that need one', () => {
    for (const backend of ALL_BACKENDS.filter((b) => SETUP_TYPES[b])) {
      template.resourceCountIs(SETUP_TYPES[backend], 1);
    }
  });

  test('two metric filters per backend (value and change), each on its own function\'s log group, into AtomicCounter/<Backend>AtomicCounter[Change]', () => {
    const filters = Object.values(template.findResources('AWS::Logs::MetricFilter'));
    expect(filters).toHaveLength(2 * ALL_BACKENDS.length);
    for (const counter of stack.counters) {
      const fn = resources[logicalId(stack, counter.counterFunction)];
      const logGroupRef = fn.Properties.LoggingConfig.LogGroup;
      expect(logGroupRef).toEqual({ Ref: logicalId(stack, counter.logGroup) });
      const own = filters.filter((f) => JSON.stringify(f.Properties.LogGroupName) === JSON.stringify(logGroupRef));
      expect(own).toHaveLength(2);
      expect(own.map((f) => f.Properties.MetricTransformations[0])).toEqual(expect.arrayContaining([
        expect.objectContaining({ MetricNamespace: 'AtomicCounter', MetricName: counter.counterMetricName, MetricValue: '$.counter' }),
        expect.objectContaining({ MetricNamespace: 'AtomicCounter', MetricName: `${counter.counterMetricName}Change`, MetricValue: '$.by' }),
      ]));
    }
  });

  test('the dashboard has a row for the API and for every backend', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const body = JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);
    for (const heading of ['API', ...ALL_BACKENDS]) expect(body).toContain(`## ${heading}`);
  });

  test('no credential value of the test config appears anywhere in the cloud assembly', () => {
    const outdir = app.synth().directory;
    const texts = [JSON.stringify(template.toJSON()), ...filesUnder(outdir).filter((f) => /\.json$/.test(f)).map((f) => fs.readFileSync(f, 'utf8'))];
    for (const value of Object.values(FAKE_CREDENTIALS)) {
      expect(texts.filter((t) => t.includes(value))).toHaveLength(0);
    }
    // The secrets are referenced by name (the ARN is resolved at deploy time).
    expect(JSON.stringify(template.toJSON())).toContain('secret:atomic-counter/momento');
    // The stack's own secrets (Redis AUTH token, DocumentDB master password) are generated by Secrets Manager.
    const secrets = Object.values(template.findResources('AWS::SecretsManager::Secret'));
    expect(secrets.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect(secret.Properties.GenerateSecretString).toBeDefined();
      expect(secret.Properties.SecretString).toBeUndefined();
    }
  });
});

describe('example stack: any backend can be left out (BACKENDS), as CI synthesizes it', () => {
  test.each(EXAMPLE_VARIANTS.filter((v) => v.name !== 'all').map((v) => [v.name, v.backends] as const))('%s: serves exactly the rest, and nothing of the one left out is in the template', (name, backends) => {
    const { stack } = buildExample(exampleDir(FULL_DOTENV), {}, { BACKENDS: backends.join(',') });
    expect(stack.api.backends.sort()).toEqual([...backends].sort());
    const left = name.replace('without-', '');
    const types = new Set(Object.values(Template.fromStack(stack).toJSON().Resources as Resources).map((r) => r.Type));
    const own: Record<string, string[]> = {
      docdb: ['AWS::DocDB::DBCluster', 'AWS::DocDB::DBInstance', 'AWS::DocDB::DBSubnetGroup', 'Custom::DocDbSetup'],
      redis: ['AWS::ElastiCache::ReplicationGroup', 'AWS::ElastiCache::SubnetGroup'],
      dynamo: ['AWS::DynamoDB::Table'],
      momento: ['Custom::MomentoSetup'],
      tidb: ['Custom::TiDbSetup'],
    };
    expect(own[left].filter((t) => types.has(t))).toEqual([]);
    // A backend left out by BACKENDS is no warning; credentials it would need are not read.
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings.filter((w) => /left out/.test(w))).toEqual([]);
  });

  test('without Redis and DocumentDB there is no VPC (and no NAT gateway to pay for)', () => {
    const { stack } = buildExample(exampleDir(FULL_DOTENV), {}, { BACKENDS: 'dynamo,momento,tidb' });
    expect(stack.vpc).toBeUndefined();
    Template.fromStack(stack).resourceCountIs('AWS::EC2::VPC', 0);
    expect(stack.api.backends.sort()).toEqual(['dynamo', 'momento', 'tidb']);
  });

  test.each([
    ['BACKENDS=dynamo,mysql', /^BACKENDS: unknown backend "mysql"/],
    ['BACKENDS=,', /^BACKENDS: empty/],
    ['API_GATEWAY_CLOUDWATCH_ROLE=no', /^API_GATEWAY_CLOUDWATCH_ROLE: expected true or false, got "no"$/],
    ['STACK_NAME=1st', /^STACK_NAME: "1st" is not a CloudFormation stack name/],
    ['MOMENTO_SECRET_NAME=m\nMOMENTO_SECRET_KMS_KEY_ARN=alias/secrets', /^MOMENTO_SECRET_KMS_KEY_ARN: "alias\/secrets" is not a KMS key ARN/],
  ])('.env "%s" stops synth with one line naming it', (dotenv, message) => {
    expectConfigError(() => buildExample(exampleDir(dotenv.replace('\\n', '\n'))), message);
  });
});

describe('example stack: account, organisation and copies', () => {
  test('API_GATEWAY_CLOUDWATCH_ROLE=false leaves the account-level API Gateway logging role alone (and synth says it is a prerequisite)', () => {
    const { stack } = buildExample(exampleDir(`${FULL_DOTENV}\nAPI_GATEWAY_CLOUDWATCH_ROLE=false`));
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::ApiGateway::Account', 0);
    expect(JSON.stringify(t.findResources('AWS::IAM::Role'))).not.toContain('AmazonAPIGatewayPushToCloudWatchLogs');
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings.filter((w) => /cloudWatchRole is false/.test(w))).toHaveLength(1);
    // The default sets it.
    Template.fromStack(buildExample(exampleDir(FULL_DOTENV)).stack).resourceCountIs('AWS::ApiGateway::Account', 1);
  });

  test('SaaS secrets encrypted with a customer-managed KMS key: the counter and setup functions may decrypt with that key, through Secrets Manager only', () => {
    const keys = {
      momento: 'arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555',
      tidb: 'arn:aws:kms:eu-west-1:123456789012:key/66666666-7777-8888-9999-000000000000',
    };
    const { stack } = buildExample(exampleDir([FULL_DOTENV, `MOMENTO_SECRET_KMS_KEY_ARN=${keys.momento}`, `TIDB_SECRET_KMS_KEY_ARN=${keys.tidb}`].join('\n')));
    const t = Template.fromStack(stack);
    const resources = t.toJSON().Resources as Resources;
    for (const [backend, key] of Object.entries(keys)) {
      const counter = stack.counters.find((c) => c.backend === backend)!;
      const setup = counter.counterFunction.node.scope!.node.tryFindChild('SetupFunction') as { node: { defaultChild?: unknown } } | undefined;
      expect(setup).toBeDefined();
      for (const fn of [counter.counterFunction, setup!]) {
        const role = resources[logicalId(stack, fn as never)].Properties.Role['Fn::GetAtt'][0];
        const statements = Object.values(resources).filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.Roles.some((x: any) => x.Ref === role))
          .flatMap((p) => p.Properties.PolicyDocument.Statement);
        const decrypt = statements.filter((st: any) => [st.Action].flat().includes('kms:Decrypt'));
        expect(decrypt).toEqual([expect.objectContaining({
          Effect: 'Allow',
          Resource: key,
          Condition: { StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } } },
        })]);
        // And the secret itself, by name with Secrets Manager's suffix.
        expect(JSON.stringify(statements.filter((st: any) => st.Action === 'secretsmanager:GetSecretValue'))).toContain(`:secret:atomic-counter/${backend}-??????`);
      }
    }
    // Without a key ARN, no kms:Decrypt anywhere.
    const plain = Template.fromStack(buildExample(exampleDir(FULL_DOTENV)).stack).toJSON();
    expect(JSON.stringify(plain)).not.toContain('kms:Decrypt');
  });

  test('the stack name comes from STACK_NAME or -c stackName (which wins): a second copy is only a setting, with its own deployment identity', () => {
    const fromEnv = buildExample(exampleDir(FULL_DOTENV), {}, { STACK_NAME: 'CountersStaging' }).stack;
    expect(fromEnv.stackName).toBe('CountersStaging');
    const fromContext = buildExample(exampleDir(`${FULL_DOTENV}\nSTACK_NAME=CountersStaging`), { stackName: 'CountersProd' }).stack;
    expect(fromContext.stackName).toBe('CountersProd');
    const deployments = [fromEnv, fromContext].map((stack) => {
      const dynamo = stack.counters.find((c) => c.backend === 'dynamo')!;
      const fn = Template.fromStack(stack).toJSON().Resources[logicalId(stack, dynamo.counterFunction)];
      return fn.Properties.Environment.Variables.COUNTER_DEPLOYMENT;
    });
    expect(deployments).toEqual(['CountersStaging/Dynamo', 'CountersProd/Dynamo']);
    expect(buildExample(exampleDir(FULL_DOTENV)).stack.stackName).toBe('AtomicCounterExample');
  });
});

describe('example stack, configuration', () => {
  test('without .env or credentials: unconditional, maximum 10, the AWS-only backends, and a warning per left-out backend', () => {
    const { stack } = buildExample(exampleDir('', { momento: undefined, tidb: undefined }));
    expect(stack.api.backends.sort()).toEqual(['docdb', 'dynamo', 'redis']);
    for (const counter of stack.counters) {
      const variables = Template.fromStack(stack).toJSON().Resources[logicalId(stack, counter.counterFunction)].Properties.Environment.Variables;
      expect(variables).toMatchObject({ USE_CONDITIONAL_WRITES: 'false', MAX_COUNTER_VALUE: '10' });
    }
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings).toEqual(expect.arrayContaining([
      expect.stringMatching(/^Momento left out: set MOMENTO_SECRET_NAME/),
      expect.stringMatching(/^TiDB left out: set TIDB_SECRET_NAME/),
    ]));
  });

  test('credential files present but no opt-in: ignored, and the warning says how to use them', () => {
    const { stack } = buildExample(exampleDir(''));
    expect(stack.api.backends).not.toContain('momento');
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings.join('\n')).toMatch(/momento_key_info\.json is present but is read only with -c allowPlaintextSecretsFromFiles=true/);
  });

  test('the plaintext opt-in copies each file into a Secrets Manager secret only, and warns', () => {
    const { stack } = buildExample(exampleDir(''), { allowPlaintextSecretsFromFiles: true });
    expect(stack.api.backends).toEqual(expect.arrayContaining(['momento', 'tidb']));
    const template = Template.fromStack(stack).toJSON();
    const holding = (value: string) => Object.entries(template.Resources as Resources)
      .filter(([, r]) => JSON.stringify(r).includes(value)).map(([, r]) => r.Type);
    expect(holding(FAKE_CREDENTIALS.momentoApiKey)).toEqual(['AWS::SecretsManager::Secret']);
    expect(holding(FAKE_CREDENTIALS.tidbPassword)).toEqual(['AWS::SecretsManager::Secret']);
    expect(JSON.stringify(template.Outputs ?? {})).not.toContain(FAKE_CREDENTIALS.momentoApiKey);
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings.filter((w) => /in the synthesized template .* as plain text/.test(w))).toHaveLength(2);
  });

  test.each([
    ['USE_CONDITIONAL_WRITES=yes', /^USE_CONDITIONAL_WRITES: expected true or false, got "yes"$/],
    ['MAX_COUNTER_VALUE=0', /^MAX_COUNTER_VALUE: expected an integer ≥ 1, got "0"$/],
    ['MAX_COUNTER_VALUE=ten', /^MAX_COUNTER_VALUE: expected an integer ≥ 1, got "ten"$/],
    ['MAX_COUNTER_VALUE=', /^MAX_COUNTER_VALUE: expected an integer ≥ 1, got ""$/],
    ['MOMENTO_CACHE_NAME=has space', /^MOMENTO_CACHE_NAME: "has space" is not a valid Momento cache name/],
    ['MOMENTO_SECRET_NAME=bad name!', /^MOMENTO_SECRET_NAME: "bad name!" is not a Secrets Manager secret name/],
    ['TIDB_SECRET_NAME=', /^TIDB_SECRET_NAME: "" is not a Secrets Manager secret name/],
    ['this is not an assignment', /^\.env:1: expected KEY=value/],
  ])('.env "%s" stops synth with one line naming it', (dotenv, message) => {
    expectConfigError(() => buildExample(exampleDir(dotenv)), message);
  });

  test.each([
    ['momento', '{"apiKey": ', /^momento_key_info\.json: not valid JSON/],
    ['momento', { apiKey: 'k' }, /^momento_key_info\.json: missing "endpoint" \(v2 key\) or "restEndpoint" \(legacy key\)$/],
    ['tidb', { host: 'h', user: 'u' }, /^tidb_info\.json: missing "password" \(or "pwd"\)$/],
    ['tidb', ['not', 'an', 'object'], /^tidb_info\.json: expected a JSON object$/],
  ])('a malformed %s file on the opt-in stops synth with one line naming it', (backend, content, message) => {
    expectConfigError(() => buildExample(exampleDir('', { [backend]: content }), { allowPlaintextSecretsFromFiles: true }), message);
  });

  test('a malformed opt-in value stops synth', () => {
    expectConfigError(() => buildExample(exampleDir(''), { allowPlaintextSecretsFromFiles: 'yes' }), /^-c allowPlaintextSecretsFromFiles: expected true or false/);
  });

  test('COUNTER_SHARDS reaches every counter function (unset: none gets it); outside 1–64 stops synth naming the variable', () => {
    const shardsOf = (dotenv: string) => {
      const t = Template.fromStack(buildExample(exampleDir(dotenv)).stack);
      return Object.values(t.findResources('AWS::Lambda::Function', {
        Properties: { Environment: { Variables: { USE_CONDITIONAL_WRITES: Match.anyValue() } } },
      })).map((fn) => fn.Properties.Environment.Variables.COUNTER_SHARDS);
    };
    expect(shardsOf(`${FULL_DOTENV}\nCOUNTER_SHARDS=8`)).toEqual(ALL_BACKENDS.map(() => '8'));
    expect(shardsOf(FULL_DOTENV)).toEqual(ALL_BACKENDS.map(() => undefined));
    expectConfigError(() => buildExample(exampleDir('COUNTER_SHARDS=65')), /^COUNTER_SHARDS: expected an integer from 1 to 64, got "65"/);
    expectConfigError(() => buildExample(exampleDir('COUNTER_SHARDS=0')), /^COUNTER_SHARDS: expected an integer ≥ 1/);
  });

  test('the process environment wins over .env', () => {
    const dir = exampleDir('MAX_COUNTER_VALUE=5');
    expect(config.loadExampleConfig({ dir, env: { MAX_COUNTER_VALUE: '7' } }).maxCounterValue).toBe(7);
    expect(config.loadExampleConfig({ dir, env: {} }).maxCounterValue).toBe(5);
  });

  test('.env.example is valid and documents every variable the example reads', () => {
    const text = fs.readFileSync(path.join(__dirname, '..', '..', 'examples', '.env.example'), 'utf8');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'env-example-'));
    fs.writeFileSync(path.join(dir, '.env'), text);
    expect(config.loadExampleConfig({ dir, env: {} })).toMatchObject({ conditionalWrites: false, maxCounterValue: 10 });
    for (const variable of ['STACK_NAME', 'BACKENDS', 'API_GATEWAY_CLOUDWATCH_ROLE', 'USE_CONDITIONAL_WRITES', 'MAX_COUNTER_VALUE', 'COUNTER_SHARDS', 'MOMENTO_CACHE_NAME',
      'MOMENTO_SECRET_NAME', 'MOMENTO_SECRET_KMS_KEY_ARN', 'TIDB_SECRET_NAME', 'TIDB_SECRET_KMS_KEY_ARN']) {
      expect(text).toContain(variable);
    }
  });
});

function expectConfigError(build: () => unknown, message: RegExp): void {
  let error: unknown;
  try {
    build();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(config.ConfigError);
  const text = (error as Error).message;
  expect(text).toMatch(message);
  expect(text).not.toContain('\n');
}

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(full) : [full];
  });
}
