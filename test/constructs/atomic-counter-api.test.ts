import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, DynamoCounter } from '../../src';
import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';
import { counterMetricNameOf } from '../../src/private/defaults';
import { BackendUnavailableError } from '../../src/runtime/errors';
import { errorResponse } from '../../src/runtime/http';
import { environmentOf, lambdaRuntimes, nodeMajor } from '../kit/template';

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

  test('the 404 body is valid JSON for any path, quotes and backslashes included', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    const [response] = Object.values<any>(t.findResources('AWS::ApiGateway::GatewayResponse', { Properties: { ResponseType: 'MISSING_AUTHENTICATION_TOKEN' } }));
    const template: string = response.Properties.ResponseTemplates['application/json'];
    // API Gateway substitutes $context.* verbatim, without JSON escaping.
    const hostile: Record<string, string> = { path: '/prod/x"y\\z/"}', resourcePath: '/x"', httpMethod: 'DELETE', requestId: 'r"1' };
    const substituted = template.replace(/\$context\.([A-Za-z.]+)/g, (_m, name: string) => hostile[name] ?? 'v"\\');
    expect(() => JSON.parse(substituted)).not.toThrow();
    expect(JSON.parse(substituted)).toMatchObject({ code: 'NOT_FOUND' });
  });

  describe('failures outside the handler answer the contract\'s 503, never API Gateway\'s bare 500/502/504', () => {
    /** The gateway responses of a synthesized API, by response type. */
    function gatewayResponses(): Record<string, any> {
      const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
      return Object.fromEntries(Object.values<any>(t.findResources('AWS::ApiGateway::GatewayResponse'))
        .map((r) => [r.Properties.ResponseType, r.Properties]));
    }

    // INTEGRATION_FAILURE: Lambda refused the invocation (throttled: 429
    // TooManyRequestsException); INTEGRATION_TIMEOUT: no answer in 29 s;
    // DEFAULT_5XX: everything else, the 502 of a function error included.
    test.each(['INTEGRATION_FAILURE', 'INTEGRATION_TIMEOUT', 'DEFAULT_5XX'])('%s → 503 BACKEND_UNAVAILABLE with Retry-After, the handler\'s own body', (type) => {
      const response = gatewayResponses()[type];
      expect(response).toBeDefined();
      expect(response.StatusCode).toBe('503');
      expect(response.ResponseParameters).toEqual({ 'gatewayresponse.header.Retry-After': "'1'" });
      // The handler's own 503 (src/runtime/http.ts), less the backend a gateway response cannot know.
      const handler = errorResponse(new BackendUnavailableError('engine down'), { backend: undefined });
      expect(JSON.parse(response.ResponseTemplates['application/json'])).toEqual(JSON.parse(handler.body));
      expect(handler.statusCode).toBe(503);
      expect(handler.headers['Retry-After']).toBe('1');
    });

    test('API Gateway\'s own 4XX answers the contract lists as theirs are left alone (403 bad key, 429 usage plan)', () => {
      expect(Object.keys(gatewayResponses()).sort()).toEqual(['DEFAULT_5XX', 'INTEGRATION_FAILURE', 'INTEGRATION_TIMEOUT', 'MISSING_AUTHENTICATION_TOKEN']);
    });

    test('the access log keeps the standard fields and records what tells these failures apart', () => {
      const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
      const [stage] = Object.values<any>(t.findResources('AWS::ApiGateway::Stage'));
      const format = JSON.parse(stage.Properties.AccessLogSetting.Format);
      expect(format).toMatchObject(JSON.parse(apigw.AccessLogFormat.jsonWithStandardFields().toString()));
      expect(format).toMatchObject({
        responseType: '$context.error.responseType',
        errorMessage: '$context.error.message',
        integrationStatus: '$context.integration.status',
        integrationServiceStatus: '$context.integration.integrationStatus',
        integrationError: '$context.integration.error',
        integrationErrorMessage: '$context.integrationErrorMessage',
        integrationLatency: '$context.integration.latency',
        integrationRequestId: '$context.integration.requestId',
        responseLatency: '$context.responseLatency',
      });
    });
  });

  test('execution logging at ERROR, into a log group the stack creates first (named as API Gateway names it, with a retention)', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    const [[stageId, stage]] = Object.entries<any>(t.findResources('AWS::ApiGateway::Stage'));
    expect(stage.Properties.MethodSettings).toEqual([{ HttpMethod: '*', ResourcePath: '/*', LoggingLevel: 'ERROR', DataTraceEnabled: false }]);
    const groups = t.findResources('AWS::Logs::LogGroup', { Properties: { LogGroupName: Match.anyValue() } });
    const [[groupId, group]] = Object.entries<any>(groups);
    const restApiId = Object.keys(t.findResources('AWS::ApiGateway::RestApi'))[0];
    expect(group.Properties).toEqual({
      LogGroupName: { 'Fn::Join': ['', ['API-Gateway-Execution-Logs_', { Ref: restApiId }, '/prod']] },
      RetentionInDays: 30,
    });
    expect(stage.DependsOn).toContain(groupId);
    expect(stageId).toBeDefined();
  });

  test('the REST API accepts TLS 1.2 and 1.3 only (an enhanced security policy, STRICT endpoint access)', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    t.hasResourceProperties('AWS::ApiGateway::RestApi', {
      SecurityPolicy: 'SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09',
      EndpointAccessMode: 'STRICT',
      EndpointConfiguration: { Types: ['REGIONAL'] },
    });
  });

  describe('API Gateway CloudWatch Logs role (access logging in a fresh account)', () => {
    test('by default the API sets the account\'s role, retained on delete, before the stage is created', () => {
      const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
      new AtomicCounterApi(stack, 'Api', { dynamo: {} });
      const t = Template.fromStack(stack);
      const accounts = t.findResources('AWS::ApiGateway::Account');
      expect(Object.keys(accounts)).toHaveLength(1);
      const [accountId, account] = Object.entries<any>(accounts)[0];
      expect(account.DeletionPolicy).toBe('Retain');
      const roleId = account.Properties.CloudWatchRoleArn['Fn::GetAtt'][0];
      const role = t.toJSON().Resources[roleId];
      expect(role).toMatchObject({ Type: 'AWS::IAM::Role', DeletionPolicy: 'Retain' });
      expect(JSON.stringify(role.Properties.ManagedPolicyArns)).toContain('AmazonAPIGatewayPushToCloudWatchLogs');
      expect(role.Properties.AssumeRolePolicyDocument.Statement[0].Principal).toEqual({ Service: 'apigateway.amazonaws.com' });
      const [stage] = Object.values<any>(t.findResources('AWS::ApiGateway::Stage'));
      expect(stage.DependsOn).toContain(accountId);
      expect(stage.Properties.AccessLogSetting).toEqual({
        DestinationArn: { 'Fn::GetAtt': [expect.any(String), 'Arn'] },
        Format: expect.stringContaining('"requestId":"$context.requestId"'),
      });
      expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('cloudWatchRole'))).toEqual([]);
    });

    test('cloudWatchRole: false leaves the account setting alone and warns, naming the one-time prerequisite', () => {
      const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
      new AtomicCounterApi(stack, 'Api', { dynamo: {}, cloudWatchRole: false });
      const t = Template.fromStack(stack);
      t.resourceCountIs('AWS::ApiGateway::Account', 0);
      expect(JSON.stringify(t.findResources('AWS::IAM::Role'))).not.toContain('AmazonAPIGatewayPushToCloudWatchLogs');
      const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
      expect(warnings.filter((w) => /cloudWatchRole is false/.test(w) && /once per account and region/.test(w) && /update-account/.test(w))).toHaveLength(1);
    });
  });

  test('the REST API gets a unique default name (<stack name>-<path>); restApiName overrides it', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    t.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'Test-Api' });
    const t2 = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {}, restApiName: 'counters' }));
    t2.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'counters' });
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
    const dynamoEnv = (max: string) => ({
      COUNTER_TABLE_NAME: { Ref: expect.stringMatching(/^ApiDynamoCounterTable/) },
      USE_CONDITIONAL_WRITES: 'true',
      MAX_COUNTER_VALUE: max,
      COUNTER_DEPLOYMENT: 'Test/Api/DynamoCounter',
      IDEMPOTENCY_RETENTION_SECONDS: '86400',
    });
    expect(environmentOf(t, /^Atomic counter on DynamoDB/)).toEqual(dynamoEnv('7'));
    const t2 = synth((s) => new AtomicCounterApi(s, 'Api', { conditionalWrites: true, maxCounterValue: 7, dynamo: { maxCounterValue: 3 } }));
    expect(environmentOf(t2, /^Atomic counter on DynamoDB/)).toEqual(dynamoEnv('3'));
  });

  test('addCounter attaches a counter built separately; a second counter on the same route is refused', () => {
    const t = synth((s) => {
      const api = new AtomicCounterApi(s, 'Api');
      const counter = new DynamoCounter(s, 'Separate', { conditionalWrites: true });
      api.addCounter(counter);
      expect(api.backends).toEqual(['dynamo']);
      expect(api.counters).toEqual([counter]);
      // A copy: the API's list changes only through addCounter.
      api.counters.pop();
      expect(api.counters).toEqual([counter]);
      expect(() => api.addCounter(counter)).toThrow(/^Test\/Api: AtomicCounterApi already serves a counter at \/dynamo$/);
      // A route segment the API cannot serve: refused the same way, before any resource is added.
      const badRoute = Object.assign(Object.create(Object.getPrototypeOf(counter)), counter, { backend: 'Dynamo/2' });
      expect(() => api.addCounter(badRoute)).toThrow(/^Test\/Api: invalid backend route segment: "Dynamo\/2"/);
    });
    t.resourceCountIs('AWS::ApiGateway::Method', 2);
    t.hasResourceProperties('AWS::Lambda::Permission', { Action: 'lambda:InvokeFunction', Principal: 'apigateway.amazonaws.com' });
  });

  test('adds no CfnOutput to the caller\'s stack; the stage writes an access log with a retention', () => {
    const t = synth((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
    expect(t.toJSON().Outputs ?? {}).toEqual({});
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
        momento: { credentialsSecret: momentoKey },
        tidb: { credentialsSecret: tidbSecret },
      });
    };

    test('POST and GET /{backend}/{id} for each, all behind the API key', () => {
      let api: AtomicCounterApi | undefined;
      const t = synth((s) => {
        api = all(s);
      });
      // Every backend the library knows, in the order the API creates them (its props' order, the table's).
      const names = ALL_BACKEND_CONTRACTS.map((c) => c.name);
      expect(api!.backends).toEqual(names);
      expect(api!.counters.map((c) => c.backend)).toEqual(names);
      expect(api!.counters).toEqual([api!.dynamoCounter, api!.redisCounter, api!.momentoCounter, api!.docdbCounter, api!.tidbCounter]);
      const parts = Object.values<any>(t.findResources('AWS::ApiGateway::Resource')).map((r) => r.Properties.PathPart);
      expect(parts.filter((p) => p !== '{id}').sort()).toEqual([...names].sort());
      const methods = Object.values<any>(t.findResources('AWS::ApiGateway::Method'));
      expect(methods).toHaveLength(2 * names.length);
      expect(methods.every((m) => m.Properties.ApiKeyRequired === true)).toBe(true);
      for (const metric of ALL_BACKEND_CONTRACTS.map(counterMetricNameOf)) {
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
