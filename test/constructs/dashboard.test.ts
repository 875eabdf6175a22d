import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, AtomicCounterDashboard, DynamoCounter, ICounter, RedisCounter } from '../../src';

/** The dashboard body with CloudFormation's Fn::Join flattened and tokens kept as JSON. */
function dashboardBody(stack: Stack): { widgets: Widget[] } {
  const dashboards = Template.fromStack(stack).findResources('AWS::CloudWatch::Dashboard');
  const [dashboard] = Object.values(dashboards);
  const body = dashboard.Properties.DashboardBody;
  const text = typeof body === 'string'
    ? body
    : (body['Fn::Join'][1] as unknown[]).map((part) => (typeof part === 'string' ? part : JSON.stringify(part).replace(/"/g, "'"))).join('');
  return JSON.parse(text);
}

interface Widget {
  type: string;
  properties: { title?: string; markdown?: string; metrics?: unknown[][]; query?: string; view?: string; annotations?: { alarms?: string[] } };
}

function newStack(): Stack {
  return new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
}

/** A counter on a plain function, as a third-party backend would provide. */
function fakeCounter(stack: Stack, backend: string): ICounter {
  const logGroup = new logs.LogGroup(stack, `${backend}Logs`);
  const counterFunction = new lambda.Function(stack, `${backend}Fn`, {
    runtime: lambda.Runtime.NODEJS_22_X,
    handler: 'index.handler',
    code: lambda.Code.fromInline('exports.handler = async () => ({})'),
    logGroup,
  });
  const metricFilter = new logs.MetricFilter(stack, `${backend}Filter`, {
    logGroup, metricNamespace: 'AtomicCounter', metricName: `${backend}Metric`, filterPattern: logs.FilterPattern.allEvents(), metricValue: '$.counter',
  });
  const counterMetricName = `${backend}Metric`;
  return {
    backend,
    counterFunction,
    logGroup,
    metricFilter,
    counterMetricName,
    metricCounterValue: (props) => new cloudwatch.Metric({ namespace: 'AtomicCounter', metricName: counterMetricName, statistic: 'Maximum', ...props }),
  };
}

function metricsOf(widgets: Widget[], title: RegExp): string[] {
  const widget = widgets.find((w) => title.test(w.properties.title ?? ''));
  if (!widget) throw new Error(`no widget titled ${title}; titles: ${widgets.map((w) => w.properties.title).join(' | ')}`);
  return (widget.properties.metrics ?? []).map((m) => JSON.stringify(m));
}

describe('AtomicCounterDashboard', () => {
  test('charts the API (requests, 4XX, 5XX, latency p50/p99) and each counter (value, invocations, throttles, function errors, duration p50/p99)', () => {
    const stack = newStack();
    const api = new AtomicCounterApi(stack, 'Api');
    const dynamo = new DynamoCounter(stack, 'Dynamo');
    const other = fakeCounter(stack, 'other');
    api.addCounter(dynamo);
    api.addCounter(other);
    new AtomicCounterDashboard(stack, 'Dashboard', { api, counters: [dynamo, other] });

    const { widgets } = dashboardBody(stack);
    const headings = widgets.filter((w) => w.type === 'text').map((w) => w.properties.markdown);
    expect(headings).toEqual(['## API', '## dynamo', '## other']);

    expect(metricsOf(widgets, /^API 4XX/).join()).toMatch(/"AWS\/ApiGateway","4XXError".*"stat":"Sum"/);
    expect(metricsOf(widgets, /^API 5XX/).join()).toMatch(/"AWS\/ApiGateway","5XXError".*"stat":"Sum"/);
    expect(metricsOf(widgets, /^API requests/).join()).toMatch(/"AWS\/ApiGateway","Count"/);
    const latency = metricsOf(widgets, /^API latency/);
    expect(latency).toHaveLength(2);
    expect(latency[0]).toMatch(/"Latency".*"stat":"p50"/);
    expect(latency[1]).toMatch(/"Latency".*"stat":"p99"/);

    for (const [backend, metricName] of [['dynamo', 'DynamoAtomicCounter'], ['other', 'otherMetric']]) {
      // Our counters carry their deployment as a dimension; a third-party counter without one is charted as it is.
      const dimensions = backend === 'dynamo' ? ['Deployment', 'Test/Dynamo'] : [];
      expect(metricsOf(widgets, new RegExp(`^${backend}: counter value`))[0]).toBe(
        JSON.stringify(['AtomicCounter', metricName, ...dimensions, { label: metricName, period: 60, stat: 'Maximum' }]),
      );
      expect(metricsOf(widgets, new RegExp(`^${backend}: invocations`))[0]).toMatch(/"AWS\/Lambda","Invocations","FunctionName"/);
      const throttlesAndErrors = metricsOf(widgets, new RegExp(`^${backend}: throttles and function errors`));
      expect(throttlesAndErrors[0]).toMatch(/"AWS\/Lambda","Throttles"/);
      expect(throttlesAndErrors[1]).toMatch(/"AWS\/Lambda","Errors"/);
      const duration = metricsOf(widgets, new RegExp(`^${backend}: duration`));
      expect(duration[0]).toMatch(/"AWS\/Lambda","Duration".*"stat":"p50"/);
      expect(duration[1]).toMatch(/"AWS\/Lambda","Duration".*"stat":"p99"/);
    }
  });

  test('what an outage needs: the handlers\' WARN/ERROR lines (per backend and all together) and the 5XX the gateway answered itself, by response type', () => {
    const stack = newStack();
    const api = new AtomicCounterApi(stack, 'Api');
    const dynamo = new DynamoCounter(stack, 'Dynamo');
    api.addCounter(dynamo);
    new AtomicCounterDashboard(stack, 'Dashboard', { api });
    const { widgets } = dashboardBody(stack);
    const logGroupRef = (group: { node: { defaultChild?: unknown } }) => `'${stack.getLogicalId(group.node.defaultChild as never)}'`;
    const query = (title: RegExp) => {
      const widget = widgets.find((w) => w.type === 'log' && title.test(w.properties.title ?? ''));
      if (!widget) throw new Error(`no log widget titled ${title}`);
      return widget.properties.query!;
    };
    // The handler writes level WARN for a 503 and ERROR for a 500 (src/runtime/log.ts).
    const perBackend = query(/^dynamo: handler WARN \(503\) and ERROR \(500\) lines per minute/);
    expect(perBackend).toContain('filter level = "WARN" or level = "ERROR"');
    expect(perBackend).toMatch(/stats count\(\*\) as lines by bin\(60s\)/);
    expect(perBackend).toContain(logGroupRef(dynamo.logGroup));
    const latest = query(/^Handlers: latest WARN/);
    expect(latest).toContain('filter level = "WARN" or level = "ERROR"');
    expect(latest).toContain(logGroupRef(dynamo.logGroup));
    const gateway = query(/^API: 5XX answered by API Gateway itself/);
    expect(gateway).toContain(logGroupRef(api.accessLogGroup));
    // Fields the access log writes (atomic-counter-api.ts): the response type and Lambda's own status (429 = throttled).
    expect(gateway).toMatch(/by responseType, integrationServiceStatus, integrationError/);
    const stage = Template.fromStack(stack).toJSON().Resources[stack.getLogicalId(api.restApi.deploymentStage.node.defaultChild as never)];
    const format = JSON.parse(stage.Properties.AccessLogSetting.Format);
    for (const field of ['responseType', 'integrationServiceStatus', 'integrationError', 'status']) expect(Object.keys(format)).toContain(field);
  });

  test('a Redis replication group gets evictions and memory per node, and an alarm on any eviction', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const redis = new RedisCounter(stack, 'Redis', { vpc });
    const dashboard = new AtomicCounterDashboard(stack, 'Dashboard', { counters: [redis] });
    const t = Template.fromStack(stack);
    const groupId = stack.getLogicalId(redis.replicationGroup!);
    const nodes = redis.replicationGroup!.numCacheClusters!;
    expect(nodes).toBeGreaterThanOrEqual(2);
    const member = (n: number) => ({ 'Fn::Join': ['-', [{ Ref: groupId }, `00${n}`]] });
    expect(dashboard.alarms).toHaveLength(1);
    const [alarm] = Object.values<any>(t.findResources('AWS::CloudWatch::Alarm'));
    expect(alarm.Properties).toMatchObject({ ComparisonOperator: 'GreaterThanThreshold', Threshold: 0, EvaluationPeriods: 1, TreatMissingData: 'notBreaching' });
    const math = alarm.Properties.Metrics.find((m: any) => m.Expression);
    expect(math.Expression).toBe(`SUM([${Array.from({ length: nodes }, (_, i) => `e${i}`).join(',')}])`);
    const evictions = alarm.Properties.Metrics.filter((m: any) => m.MetricStat);
    expect(evictions.map((m: any) => m.MetricStat.Metric)).toEqual(Array.from({ length: nodes }, (_, i) => ({
      Namespace: 'AWS/ElastiCache', MetricName: 'Evictions', Dimensions: [{ Name: 'CacheClusterId', Value: member(i + 1) }],
    })));
    const { widgets } = dashboardBody(stack);
    expect(metricsOf(widgets, /^redis: evictions per node/)).toHaveLength(nodes);
    const memory = metricsOf(widgets, /^redis: memory used/);
    expect(memory).toHaveLength(nodes);
    expect(memory[0]).toMatch(/"AWS\/ElastiCache","DatabaseMemoryUsagePercentage","CacheClusterId"/);
    expect(widgets.find((w) => /^redis: evictions \(alarm on any\)/.test(w.properties.title ?? ''))?.properties.annotations?.alarms).toHaveLength(1);
    // Without a replication group (an existing endpoint) there is nothing to alarm on.
    const other = newStack();
    const existing = new RedisCounter(other, 'Redis', { vpc: new ec2.Vpc(other, 'Vpc', { maxAzs: 2, natGateways: 1 }), existingEndpoint: { hostname: 'redis.example.internal' } });
    expect(new AtomicCounterDashboard(other, 'Dashboard', { counters: [existing] }).alarms).toEqual([]);
  });

  test("each backend's Lambda metrics point at that backend's own function", () => {
    const stack = newStack();
    const a = fakeCounter(stack, 'alpha');
    const b = fakeCounter(stack, 'beta');
    new AtomicCounterDashboard(stack, 'Dashboard', { counters: [a, b] });
    const { widgets } = dashboardBody(stack);
    const ref = (c: ICounter) => JSON.stringify({ Ref: stack.getLogicalId((c.counterFunction as lambda.Function).node.defaultChild as lambda.CfnFunction) }).replace(/"/g, "'");
    expect(metricsOf(widgets, /^alpha: invocations/)[0]).toContain(ref(a));
    expect(metricsOf(widgets, /^alpha: invocations/)[0]).not.toContain(ref(b));
    expect(metricsOf(widgets, /^beta: duration/)[1]).toContain(ref(b));
  });

  test('every counter the API serves (from its props or addCounter) is charted without listing it, and only once when listed', () => {
    const stack = newStack();
    const credentialsSecret = secretsmanager.Secret.fromSecretNameV2(stack, 'Key', 'momento-key');
    const api = new AtomicCounterApi(stack, 'Api', { dynamo: {}, momento: { credentialsSecret } });
    api.addCounter(fakeCounter(stack, 'attached'));
    new AtomicCounterDashboard(stack, 'Dashboard', { api, counters: [api.dynamoCounter!] });
    const headings = dashboardBody(stack).widgets.filter((w) => w.type === 'text').map((w) => w.properties.markdown);
    expect(headings).toEqual(['## API', '## dynamo', '## momento', '## attached']);
  });

  test('period and name are props', () => {
    const stack = newStack();
    new AtomicCounterDashboard(stack, 'Dashboard', { counters: [fakeCounter(stack, 'x')], period: Duration.minutes(2), dashboardName: 'counters' });
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'counters' });
    expect(metricsOf(dashboardBody(stack).widgets, /^x: invocations/)[0]).toMatch(/"period":120/);
  });

  test('nothing to chart is a synth-time error', () => {
    expect(() => new AtomicCounterDashboard(newStack(), 'Dashboard', {})).toThrow(/give `api`, `counters`, or both/);
  });

  test('two different counters claiming one backend are rejected', () => {
    const stack = newStack();
    const first = fakeCounter(stack, 'same');
    const second = { ...fakeCounter(stack, 'other'), backend: 'same' };
    expect(() => new AtomicCounterDashboard(stack, 'Dashboard', { counters: [first, second] })).toThrow(/two different counters for backend "same"/);
  });
});

describe('metric and dashboard identity: two deployments in one account and region keep apart', () => {
  /** One app, two stacks built the same way (same construct ids), as two deployments of one app would be. */
  function twoDeployments(): Stack[] {
    const app = new App();
    return ['CountersA', 'CountersB'].map((name) => {
      const stack = new Stack(app, name, { env: { account: '123456789012', region: 'eu-west-1' } });
      const api = new AtomicCounterApi(stack, 'Api', { dynamo: {} });
      new AtomicCounterDashboard(stack, 'Dashboard', { api });
      return stack;
    });
  }

  test('each REST API has its own default name, and the dashboard\'s API row filters on it', () => {
    const names = twoDeployments().map((stack) => {
      const t = Template.fromStack(stack);
      const [api] = Object.values(t.findResources('AWS::ApiGateway::RestApi'));
      const widgets = dashboardBody(stack).widgets;
      for (const title of [/^API requests/, /^API 4XX/, /^API 5XX/, /^API latency/]) {
        for (const metric of metricsOf(widgets, title)) expect(metric).toContain(`"ApiName","${api.Properties.Name}"`);
      }
      return api.Properties.Name;
    });
    expect(names).toEqual(['CountersA-Api', 'CountersB-Api']);
  });

  test('the counter metric has a Deployment dimension from the log line, the function is told its value, and the dashboard charts that series', () => {
    const deployments = twoDeployments().map((stack) => {
      const t = Template.fromStack(stack);
      const [filter] = Object.values(t.findResources('AWS::Logs::MetricFilter'));
      expect(filter.Properties.MetricTransformations).toEqual([expect.objectContaining({
        MetricName: 'DynamoAtomicCounter', Dimensions: [{ Key: 'Deployment', Value: '$.deployment' }],
      })]);
      const [fn] = Object.values(t.findResources('AWS::Lambda::Function'));
      const deployment = fn.Properties.Environment.Variables.COUNTER_DEPLOYMENT;
      expect(metricsOf(dashboardBody(stack).widgets, /^dynamo: counter value/)[0])
        .toBe(JSON.stringify(['AtomicCounter', 'DynamoAtomicCounter', 'Deployment', deployment, { label: 'DynamoAtomicCounter', period: 60, stat: 'Maximum' }]));
      return deployment;
    });
    expect(deployments).toEqual(['CountersA/Api/DynamoCounter', 'CountersB/Api/DynamoCounter']);
  });
});
