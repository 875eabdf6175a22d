import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, DynamoCounter } from '../src';
import { lambdaRuntimes, nodeMajor } from './kit/template';

function synth(build: (stack: Stack) => void, env = true): Template {
  const stack = new Stack(new App(), 'Test', env ? { env: { account: '123456789012', region: 'eu-west-1' } } : {});
  build(stack);
  return Template.fromStack(stack);
}

describe('AtomicCounterApi', () => {
  test('POST and GET /dynamo/{id}, each requiring the API key and validating {id}', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    t.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: 'dynamo' });
    t.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: '{id}' });
    const methods = Object.values<any>(t.findResources('AWS::ApiGateway::Method'));
    expect(methods.map((m) => m.Properties.HttpMethod).sort()).toEqual(['GET', 'POST']);
    for (const m of methods) {
      expect(m.Properties).toMatchObject({
        ApiKeyRequired: true,
        RequestParameters: { 'method.request.path.id': true },
        RequestValidatorId: { Ref: expect.stringMatching(/PathValidator/) },
        Integration: { Type: 'AWS_PROXY', IntegrationHttpMethod: 'POST' },
      });
    }
    t.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestParameters: true });
  });

  test('unknown routes and methods answer 404 NOT_FOUND instead of 403 Missing Authentication Token', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'MISSING_AUTHENTICATION_TOKEN',
      StatusCode: '404',
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('"code":"NOT_FOUND"') },
    });
  });

  test('usage plan defaults: 100 rps, burst 200, 1,000,000 a month, bound to the key and stage', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    t.hasResourceProperties('AWS::ApiGateway::UsagePlan', {
      Throttle: { RateLimit: 100, BurstLimit: 200 },
      Quota: { Limit: 1000000, Period: 'MONTH' },
      ApiStages: [Match.objectLike({ Stage: { Ref: Match.stringLikeRegexp('DeploymentStageprod') } })],
    });
    t.resourceCountIs('AWS::ApiGateway::ApiKey', 1);
    t.resourceCountIs('AWS::ApiGateway::UsagePlanKey', 1);
  });

  test('usage plan limits are props; quota 0 disables the quota', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {}, usagePlan: { rateLimit: 5, burstLimit: 10, quotaLimit: 0 } }));
    const plan = Object.values<any>(t.findResources('AWS::ApiGateway::UsagePlan'))[0];
    expect(plan.Properties.Throttle).toEqual({ RateLimit: 5, BurstLimit: 10 });
    expect(plan.Properties.Quota).toBeUndefined();
    const t2 = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {}, usagePlan: { quotaLimit: 500, quotaPeriod: apigw.Period.DAY } }));
    t2.hasResourceProperties('AWS::ApiGateway::UsagePlan', { Quota: { Limit: 500, Period: 'DAY' } });
  });

  test('a negative limit is rejected at synth', () => {
    expect(() => synth((s) => new AtomicCounterApi(s, 'Api', { usagePlan: { rateLimit: -1 } }))).toThrow(/usagePlan.rateLimit/);
  });

  test('API-level mode is the default for counters created from props; a backend prop overrides it', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { conditionalWrites: true, maxCounterValue: 7, dynamo: {} }));
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '7' }) },
    });
    const t2 = synth((s) => new AtomicCounterApi(s, 'Api', { conditionalWrites: true, maxCounterValue: 7, dynamo: { maxCounterValue: 3 } }));
    t2.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '3' }) },
    });
  });

  test('addCounter attaches a counter built separately; a second counter on the same route is refused', () => {
    const t = synth((s) => {
      const api = new AtomicCounterApi(s, 'Api');
      const counter = new DynamoCounter(s, 'Separate', { conditionalWrites: true });
      api.addCounter(counter);
      expect(api.backends).toEqual(['dynamo']);
      expect(() => api.addCounter(counter)).toThrow(/already serves a counter at \/dynamo/);
    });
    t.resourceCountIs('AWS::ApiGateway::Method', 2);
    t.hasResourceProperties('AWS::Lambda::Permission', { Action: 'lambda:InvokeFunction', Principal: 'apigateway.amazonaws.com' });
  });

  test('outputs the URL and the API key id; the stage writes an access log with a retention', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    const outputs = t.toJSON().Outputs;
    expect(Object.keys(outputs).some((k) => k.startsWith('ApiUrl'))).toBe(true);
    expect(Object.values<any>(outputs).some((o) => JSON.stringify(o.Value).includes('ApiKey'))).toBe(true);
    t.hasResourceProperties('AWS::ApiGateway::Stage', { StageName: 'prod', AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }) });
  });

  test.each([true, false])('every Lambda function deploys on a runtime AWS still creates (nodejs24.x or later), env-agnostic=%p', (withEnv) => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }), withEnv);
    const runtimes = lambdaRuntimes(t);
    expect(runtimes.length).toBeGreaterThan(0);
    for (const { logicalId, runtime } of runtimes) {
      expect({ logicalId, major: nodeMajor(runtime) }).toEqual({ logicalId, major: expect.any(Number) });
      expect(nodeMajor(runtime)).toBeGreaterThanOrEqual(24);
    }
  });

  describe('every backend configured through props', () => {
    const all = (s: Stack) => {
      const vpc = new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 });
      const momentoKey = secretsmanager.Secret.fromSecretNameV2(s, 'MomentoKey', 'momento-api-key');
      const tidbSecret = secretsmanager.Secret.fromSecretNameV2(s, 'TiDbSecret', 'tidb-connection');
      return new AtomicCounterApi(s, 'Api', {
        conditionalWrites: true,
        maxCounterValue: 5,
        dynamo: {},
        redis: { vpc },
        docdb: { vpc },
        momento: { apiKeySecret: momentoKey },
        tidb: { connectionSecret: tidbSecret },
      });
    };

    test('POST and GET /{backend}/{id} for each, all behind the API key', () => {
      let api: AtomicCounterApi | undefined;
      const t = synth((s) => {
        api = all(s);
      });
      expect(api!.backends.sort()).toEqual(['docdb', 'dynamo', 'momento', 'redis', 'tidb']);
      const parts = Object.values<any>(t.findResources('AWS::ApiGateway::Resource')).map((r) => r.Properties.PathPart);
      expect(parts.filter((p) => p !== '{id}').sort()).toEqual(['docdb', 'dynamo', 'momento', 'redis', 'tidb']);
      const methods = Object.values<any>(t.findResources('AWS::ApiGateway::Method'));
      expect(methods).toHaveLength(10);
      expect(methods.every((m) => m.Properties.ApiKeyRequired === true)).toBe(true);
      for (const metric of ['DynamoAtomicCounter', 'RedisAtomicCounter', 'MomentoAtomicCounter', 'DocDbAtomicCounter', 'TiDbAtomicCounter']) {
        t.hasResourceProperties('AWS::Logs::MetricFilter', { MetricTransformations: [Match.objectLike({ MetricName: metric })] });
      }
    });

    test('every Lambda function, custom-resource framework ones included, runs on nodejs24.x or later', () => {
      for (const withEnv of [true, false]) {
        const runtimes = lambdaRuntimes(synth(all, withEnv));
        expect(runtimes.length).toBeGreaterThanOrEqual(4);
        const tooOld = runtimes.filter((r) => (nodeMajor(r.runtime) ?? 0) < 24);
        expect(tooOld).toEqual([]);
      }
    });
  });
});
