/**
 * What the constructs add for steps and Idempotency-Keys: the retention
 * reaches the function, the API declares the optional parameters, the value
 * metric keeps negative values and a second metric carries the step.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations as Found, Match, Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, DynamoCounter, MomentoCounter } from '../../src';
import { COMMON_ENV } from '../../src/counter-env';

function template(build: (stack: Stack) => void): Template {
  const stack = new Stack(new App(), 'Counters');
  build(stack);
  return Template.fromStack(stack);
}

function counterEnv(t: Template): Record<string, string> {
  const fns = Object.values<any>(t.findResources('AWS::Lambda::Function'))
    .filter((f) => f.Properties.Environment?.Variables?.[COMMON_ENV.USE_CONDITIONAL_WRITES] !== undefined);
  expect(fns).toHaveLength(1);
  return fns[0].Properties.Environment.Variables;
}

describe('Idempotency-Key retention', () => {
  test('24 hours by default; a prop sets it; the API passes its default to the counters it creates', () => {
    expect(counterEnv(template((s) => new DynamoCounter(s, 'D')))[COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]).toBe('86400');
    expect(counterEnv(template((s) => new DynamoCounter(s, 'D', { idempotencyRetention: Duration.minutes(10) })))[COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]).toBe('600');
    const viaApi = template((s) => new AtomicCounterApi(s, 'Api', { idempotencyRetention: Duration.hours(2), dynamo: {} }));
    expect(counterEnv(viaApi)[COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]).toBe('7200');
    const overridden = template((s) => new AtomicCounterApi(s, 'Api', { idempotencyRetention: Duration.hours(2), dynamo: { idempotencyRetention: Duration.seconds(30) } }));
    expect(counterEnv(overridden)[COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]).toBe('30');
  });

  test.each([[Duration.millis(500), /at least 1 second/], [Duration.millis(1500), /whole seconds/]])('%p is rejected at synth', (retention, message) => {
    expect(() => new DynamoCounter(new Stack(new App(), 'S'), 'D', { idempotencyRetention: retention })).toThrow(message);
  });
});

test('POST declares the optional by query parameter and Idempotency-Key header; GET declares neither', () => {
  const t = template((s) => new AtomicCounterApi(s, 'Api', { dynamo: {} }));
  const methods = Object.values<any>(t.findResources('AWS::ApiGateway::Method')).filter((m) => m.Properties.HttpMethod !== 'OPTIONS');
  const post = methods.filter((m) => m.Properties.HttpMethod === 'POST');
  const get = methods.filter((m) => m.Properties.HttpMethod === 'GET');
  expect(post).toHaveLength(1);
  expect(post[0].Properties.RequestParameters).toEqual({
    'method.request.path.id': true,
    'method.request.querystring.by': false,
    'method.request.header.Idempotency-Key': false,
  });
  expect(get[0].Properties.RequestParameters).toEqual({ 'method.request.path.id': true });
});

describe('metrics', () => {
  test('the value metric matches negative counters too; the change metric sums $.by of applied changes only', () => {
    const t = template((s) => new DynamoCounter(s, 'D'));
    const filters = Object.values<any>(t.findResources('AWS::Logs::MetricFilter')).map((f) => f.Properties);
    const value = filters.find((f) => f.MetricTransformations[0].MetricName === 'DynamoAtomicCounter');
    const change = filters.find((f) => f.MetricTransformations[0].MetricName === 'DynamoAtomicCounterChange');
    expect(value.FilterPattern).toBe('{ ($.counter >= 0) || ($.counter < 0) }');
    expect(change.FilterPattern).toBe('{ ($.accepted IS TRUE) && (($.by > 0) || ($.by < 0)) }');
    expect(change.MetricTransformations[0]).toEqual(expect.objectContaining({ MetricValue: '$.by', MetricNamespace: 'AtomicCounter', Dimensions: [{ Key: 'Deployment', Value: '$.deployment' }] }));
  });

  test('metricCounterChange: Sum of the change metric, this deployment only', () => {
    const stack = new Stack(new App(), 'Counters');
    const counter = new DynamoCounter(stack, 'D');
    const metric = counter.metricCounterChange();
    expect(metric.metricName).toBe('DynamoAtomicCounterChange');
    expect(metric.statistic).toBe('Sum');
    expect(metric.dimensions).toEqual({ Deployment: 'Counters/D' });
  });
});

test('Momento: a retention above the 24-hour default TTL limit warns at synth; 24 hours does not', () => {
  const build = (retention?: Duration) => {
    const stack = new Stack(new App(), 'M');
    const secret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'S', 'arn:aws:secretsmanager:us-east-1:123456789012:secret:momento-AbCdEf');
    new MomentoCounter(stack, 'C', { credentialsSecret: secret, idempotencyRetention: retention });
    return Found.fromStack(stack);
  };
  build(Duration.hours(25)).hasWarning('/M/C', Match.stringLikeRegexp('above Momento\'s default 24-hour TTL limit'));
  expect(build().findWarning('*', Match.stringLikeRegexp('TTL limit'))).toEqual([]);
});
