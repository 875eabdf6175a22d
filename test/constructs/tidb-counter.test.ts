import { App, Duration, SecretValue, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { TiDbCounter, TiDbCounterProps } from '../../src';
import { readTiDbConfig } from '../../src/backends/tidb/runtime/tidb-config';
import { TIDB_SCHEMA_VERSION } from '../../src/backends/tidb/tidb-env';
import { environmentOf } from '../kit/template';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidb-connection-AbCdEf';

/** The connection variables both functions get with the defaults. */
const CONNECTION_ENV = {
  TIDB_SECRET_ARN: SECRET_ARN,
  TIDB_TABLE: 'counters_test_counter_b3dd7e14', // derived from Test/Counter: a change loses every deployment's counters
  TIDB_TLS: 'true',
  TIDB_CONNECT_TIMEOUT_MS: '2000',
  TIDB_QUERY_TIMEOUT_MS: '2500',
};

function stackWith(
  props: Partial<TiDbCounterProps> = {},
  build?: (stack: Stack) => Partial<TiDbCounterProps>,
): { stack: Stack; counter: TiDbCounter } {
  const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
  const credentialsSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Connection', SECRET_ARN);
  const counter = new TiDbCounter(stack, 'Counter', { credentialsSecret, ...props, ...build?.(stack) });
  return { stack, counter };
}

function synth(props: Partial<TiDbCounterProps> = {}, build?: (stack: Stack) => Partial<TiDbCounterProps>): Template {
  return Template.fromStack(stackWith(props, build).stack);
}

describe('TiDbCounter', () => {
  test('counter function: Node.js 24, the env contract with defaults (TLS on), mode variables, no VPC', () => {
    const t = synth();
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Handler: 'index.handler',
      Description: Match.stringLikeRegexp('^Atomic counter on TiDB'),
      VpcConfig: Match.absent(),
    });
    // Exactly these variables: an extra one (a credential, a secret reference) fails.
    expect(environmentOf(t, /^Atomic counter on TiDB/)).toEqual({
      ...CONNECTION_ENV,
      USE_CONDITIONAL_WRITES: 'false',
      MAX_COUNTER_VALUE: '10',
      IDEMPOTENCY_RETENTION_SECONDS: '86400',
      COUNTER_DEPLOYMENT: 'Test/Counter',
    });
    expect(environmentOf(t, /TiDB database and counters table/)).toEqual(CONNECTION_ENV);
  });

  test('a new schema revision changes the setup resource\'s properties, so an existing stack runs the setup again on its next deployment', () => {
    const t = synth();
    const [setup] = Object.values<any>(t.findResources('Custom::TiDbSetup'));
    expect(setup.Properties.Schema).toBe(TIDB_SCHEMA_VERSION);
    expect(TIDB_SCHEMA_VERSION).toBe('3');
  });

  test('every function of the template (ours and the provider framework) runs Node.js 24 or later', () => {
    const t = synth();
    const runtimes = Object.values<any>(t.findResources('AWS::Lambda::Function')).map((f) => f.Properties.Runtime);
    expect(runtimes.length).toBeGreaterThanOrEqual(3);
    for (const runtime of runtimes) expect(runtime).toMatch(/^nodejs(2[2-9]|[3-9]\d)\.x$/);
  });

  test('database, table, TLS, CA, timeouts and mode are props', () => {
    const t = synth({
      databaseName: 'votes',
      tableName: 'tallies',
      tls: false,
      tlsCaCertificate: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
      connectTimeout: Duration.seconds(1),
      queryTimeout: Duration.seconds(1),
      conditionalWrites: true,
      maxCounterValue: 300,
    });
    const connection = {
      TIDB_SECRET_ARN: SECRET_ARN,
      TIDB_DATABASE: 'votes',
      TIDB_TABLE: 'tallies',
      TIDB_TLS: 'false',
      TIDB_TLS_CA: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
      TIDB_CONNECT_TIMEOUT_MS: '1000',
      TIDB_QUERY_TIMEOUT_MS: '1000',
    };
    expect(environmentOf(t, /^Atomic counter on TiDB/)).toEqual({ ...connection, USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '300', IDEMPOTENCY_RETENTION_SECONDS: '86400', COUNTER_DEPLOYMENT: 'Test/Counter' });
    expect(environmentOf(t, /TiDB database and counters table/)).toEqual(connection);
    t.hasResourceProperties('Custom::TiDbSetup', { Database: 'votes', Table: 'tallies' });
  });

  test('setup custom resource: Custom::TiDbSetup through a Provider, its own function with the same connection env, the counter depends on it', () => {
    const t = synth();
    t.resourceCountIs('Custom::TiDbSetup', 1);
    t.hasResourceProperties('Custom::TiDbSetup', { ServiceToken: Match.anyValue(), Table: 'counters_test_counter_b3dd7e14', Schema: TIDB_SCHEMA_VERSION });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Description: Match.stringLikeRegexp('TiDB database and counters table'),
      LoggingConfig: { LogGroup: Match.anyValue() },
    });
    expect(environmentOf(t, /TiDB database and counters table/)).toEqual(CONNECTION_ENV);
    const [counterId] = Object.entries<any>(t.findResources('AWS::Lambda::Function'))
      .find(([, f]) => /^Atomic counter on TiDB/.test(f.Properties.Description ?? '')) ?? [];
    const counter = t.toJSON().Resources[counterId!];
    const setupId = Object.keys(t.findResources('Custom::TiDbSetup'))[0];
    expect(counter.DependsOn).toEqual(expect.arrayContaining([setupId]));
    // No log-retention helper function: every log group is explicit.
    t.resourceCountIs('Custom::LogRetention', 0);
  });

  test('the secret is granted read-only, on that secret only, to the counter and setup functions', () => {
    const t = synth();
    const policies = Object.values<any>(t.findResources('AWS::IAM::Policy'));
    const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement);
    const secretStatements = statements.filter((s: any) => JSON.stringify(s.Action).includes('secretsmanager'));
    expect(secretStatements).toHaveLength(2);
    for (const s of secretStatements) {
      expect(s).toEqual({ Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: SECRET_ARN });
    }
    // Beyond the secret: the provider invoking its setup function, and the setup reading its own
    // stack's status on a failed Update (scoped in test/constructs/setup-properties.test.ts).
    const allowed = /^(secretsmanager:GetSecretValue|lambda:InvokeFunction|lambda:GetFunction|cloudformation:DescribeStacks)$/;
    for (const s of statements) {
      for (const action of [s.Action].flat()) expect(action).toMatch(allowed);
    }
  });

  test('credentials never appear in an environment variable: only the secret ARN does', () => {
    const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
    const secret = new secretsmanager.Secret(stack, 'Conn', {
      secretObjectValue: {
        host: SecretValue.unsafePlainText('gateway01.eu-central-1.prod.aws.tidbcloud.com'),
        user: SecretValue.unsafePlainText('2abc.root'),
        password: SecretValue.unsafePlainText('s3cr3t-password'),
      },
    });
    new TiDbCounter(stack, 'Counter', { credentialsSecret: secret });
    const t = Template.fromStack(stack);
    for (const fn of Object.values<any>(t.findResources('AWS::Lambda::Function'))) {
      const vars = fn.Properties.Environment?.Variables ?? {};
      expect(vars.TIDB_URL).toBeUndefined();
      if (vars.TIDB_SECRET_ARN) expect(vars.TIDB_SECRET_ARN).toEqual({ Ref: expect.stringMatching(/^Conn/) });
      for (const [name, value] of Object.entries(vars)) {
        expect(name).not.toMatch(/PASSWORD|PWD|^TIDB_USER/i);
        expect(JSON.stringify(value)).not.toMatch(/tidbcloud\.com|s3cr3t|2abc\.root/);
      }
    }
  });

  test('with a VPC: both functions in private subnets with an egress-open security group', () => {
    const t = synth({}, (stack) => ({ vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2 }) }));
    const fns = Object.values<any>(t.findResources('AWS::Lambda::Function')).filter((f) => f.Properties.VpcConfig);
    expect(fns).toHaveLength(2);
    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: '-1' }],
    });
  });

  test('invalid props fail at synth with a clear message', () => {
    expect(() => synth({ tableName: 'bad-name' })).toThrow(/tableName/);
    // The key records table is `<tableName>_keys`: 59 characters leave room for it in a 64-character identifier.
    expect(() => synth({ tableName: 'x'.repeat(59) })).not.toThrow();
    expect(() => synth({ tableName: 'x'.repeat(60) })).toThrow(/`tableName` must be at most 59 characters: the setup also creates `x{60}_keys`/);
    expect(() => synth({ databaseName: 'x`; DROP' })).toThrow(/databaseName/);
    expect(() => synth({ securityGroups: [] })).toThrow(/`securityGroups` needs `vpc`/);
    expect(() => synth({ connectTimeout: Duration.seconds(3), queryTimeout: Duration.seconds(3) })).toThrow(/function timeout/);
    expect(() => synth({ maxCounterValue: 0 })).toThrow(/maxCounterValue/);
  });
});

describe('TiDB handler configuration', () => {
  test('a table name that leaves no room for its `_keys` table fails at init with a clear message', () => {
    const env = { TIDB_URL: 'mysql://root@127.0.0.1:4000/db' };
    expect(readTiDbConfig({ ...env, TIDB_TABLE: 'x'.repeat(59) }).table).toBe('x'.repeat(59));
    expect(() => readTiDbConfig({ ...env, TIDB_TABLE: 'x'.repeat(60) })).toThrow(/TIDB_TABLE must be at most 59 characters: the setup also creates x{60}_keys/);
  });
});
