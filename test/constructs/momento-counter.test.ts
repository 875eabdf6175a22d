import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { MomentoCounter, MomentoCounterProps } from '../../src';
import { environmentOf } from '../kit/template';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-api-key-AbCdEf';

function synth(props: Partial<MomentoCounterProps> = {}, build?: (stack: Stack) => Partial<MomentoCounterProps>): Template {
  const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
  const credentialsSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Key', SECRET_ARN);
  new MomentoCounter(stack, 'Counter', { credentialsSecret, ...props, ...build?.(stack) });
  return Template.fromStack(stack);
}

/** The counter function's whole environment with the defaults (compared exactly). */
const COUNTER_ENV = {
  MOMENTO_API_KEY_SECRET_ARN: SECRET_ARN,
  MOMENTO_CACHE_NAME: 'atomic-counter-test-counter-b3dd7e14', // derived from Test/Counter: a change loses every deployment's counters
  MOMENTO_TTL_SECONDS: '86400',
  MOMENTO_CAS_MAX_ATTEMPTS: '200',
  MOMENTO_CAS_BUDGET_MS: '5000',
  USE_CONDITIONAL_WRITES: 'false',
  MAX_COUNTER_VALUE: '10',
  IDEMPOTENCY_RETENTION_SECONDS: '86400',
  COUNTER_DEPLOYMENT: 'Test/Counter',
};

/** Functions of the template by their description prefix. */
function functionsOf(t: Template): Record<string, any> {
  return t.findResources('AWS::Lambda::Function');
}

describe('MomentoCounter', () => {
  test('counter function: Node.js 24, the env contract with defaults, mode variables, no VPC', () => {
    const t = synth();
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Handler: 'index.handler',
      Description: Match.stringLikeRegexp('^Atomic counter on Momento'),
      VpcConfig: Match.absent(),
    });
    // Exactly these variables: an extra one (a credential, say) fails.
    expect(environmentOf(t, /^Atomic counter on Momento/)).toEqual(COUNTER_ENV);
  });

  test('cache name, TTL, CAS budget, mode and Idempotency-Key retention are props', () => {
    const t = synth({
      cacheName: 'votes',
      ttl: Duration.hours(2),
      casMaxAttempts: 20,
      casTimeBudget: Duration.seconds(2),
      conditionalWrites: true,
      maxCounterValue: 300,
      idempotencyRetention: Duration.hours(1),
    });
    expect(environmentOf(t, /^Atomic counter on Momento/)).toEqual({
      ...COUNTER_ENV,
      MOMENTO_CACHE_NAME: 'votes',
      MOMENTO_TTL_SECONDS: '7200',
      MOMENTO_CAS_MAX_ATTEMPTS: '20',
      MOMENTO_CAS_BUDGET_MS: '2000',
      USE_CONDITIONAL_WRITES: 'true',
      MAX_COUNTER_VALUE: '300',
      IDEMPOTENCY_RETENTION_SECONDS: '3600',
    });
    expect(environmentOf(t, /Creates the Momento cache/)).toEqual({ MOMENTO_API_KEY_SECRET_ARN: SECRET_ARN, MOMENTO_CACHE_NAME: 'votes' });
    t.hasResourceProperties('Custom::MomentoSetup', { CacheName: 'votes' });
  });

  test('the secret is granted read-only, on that secret only, to the counter and setup functions', () => {
    const t = synth();
    const policies = Object.values<any>(t.findResources('AWS::IAM::Policy'));
    const secretStatements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement)
      .filter((s: any) => JSON.stringify(s.Action).includes('secretsmanager'));
    // One grant for the counter function, one for the setup function.
    expect(secretStatements).toHaveLength(2);
    for (const s of secretStatements) {
      expect(s).toEqual({ Effect: 'Allow', Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: SECRET_ARN });
    }
    // No other policy statement mentions Secrets Manager or any other resource.
    const all = policies.flatMap((p) => p.Properties.PolicyDocument.Statement);
    for (const s of all) {
      for (const action of [s.Action].flat()) expect(action).toMatch(/^(secretsmanager:(GetSecretValue|DescribeSecret)|lambda:InvokeFunction|lambda:GetFunction|cloudformation:DescribeStacks)$/);
    }
  });

  test('the API key never appears in an environment variable: only the secret ARN does', () => {
    const t = synth();
    for (const fn of Object.values(functionsOf(t))) {
      const vars = fn.Properties.Environment?.Variables ?? {};
      const text = JSON.stringify(vars);
      expect(text).not.toMatch(/resolve:secretsmanager|SecretString|apiKey/i);
      for (const [name, value] of Object.entries(vars)) {
        if (/secret|key|token/i.test(name)) expect([name, value]).toEqual(['MOMENTO_API_KEY_SECRET_ARN', SECRET_ARN]);
      }
    }
  });

  test('setup custom resource: Custom::MomentoSetup through a Provider, its own Node.js 24 function with an explicit log group', () => {
    const t = synth();
    t.resourceCountIs('Custom::MomentoSetup', 1);
    t.hasResourceProperties('Custom::MomentoSetup', { ServiceToken: Match.anyValue(), CacheName: 'atomic-counter-test-counter-b3dd7e14' });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Description: Match.stringLikeRegexp('Creates the Momento cache'),
      LoggingConfig: { LogGroup: { Ref: Match.stringLikeRegexp('^CounterSetupLogGroup') } },
    });
    expect(environmentOf(t, /Creates the Momento cache/)).toEqual({ MOMENTO_API_KEY_SECRET_ARN: SECRET_ARN, MOMENTO_CACHE_NAME: 'atomic-counter-test-counter-b3dd7e14' });
    // Every function of the stack (ours and the Provider's framework) runs on Node.js 24 or later.
    for (const fn of Object.values(functionsOf(t))) {
      expect(fn.Properties.Runtime).toMatch(/^nodejs(2[2-9]|[3-9]\d)\.x$/);
    }
    // No log-retention custom resource: every log group is explicit.
    t.resourceCountIs('Custom::LogRetention', 0);
    // The counter function waits for the cache.
    const counter = Object.entries(functionsOf(t)).find(([, fn]) => /^Atomic counter on Momento/.test(fn.Properties.Description ?? ''));
    expect(counter?.[1].DependsOn).toEqual(expect.arrayContaining([expect.stringMatching(/^CounterSetup[A-F0-9]+$/)]));
  });

  test('with a VPC both functions run in its private subnets with egress (Momento is on the internet)', () => {
    const t = synth({}, (stack) => ({ vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2 }) }));
    const inVpc = Object.values(functionsOf(t)).filter((fn) => fn.Properties.VpcConfig);
    expect(inVpc).toHaveLength(2);
    for (const fn of inVpc) {
      expect(fn.Properties.VpcConfig.SubnetIds).toEqual(expect.arrayContaining([{ Ref: expect.stringMatching(/PrivateSubnet/) }]));
    }
    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: '-1' }],
    });
  });

  test.each([
    [{ ttl: Duration.millis(1500) }, /ttl.*whole number of seconds/],
    [{ casMaxAttempts: 0 }, /casMaxAttempts` must be an integer/],
    [{ casTimeBudget: Duration.seconds(10) }, /casTimeBudget.*function timeout/],
    [{ cacheName: ' ' }, /cacheName.*blank/],
  ])('invalid props are rejected at synth: %p', (props, message) => {
    expect(() => synth(props as Partial<MomentoCounterProps>)).toThrow(message);
  });

  test('vpcSubnets without vpc is rejected', () => {
    expect(() => synth({ vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } })).toThrow(/^Test\/Counter: `vpcSubnets` needs `vpc`/);
  });
});
