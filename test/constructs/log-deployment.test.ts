import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { DynamoCounter } from '../../src';
import { COMMON_ENV } from '../../src/counter-env';

/** The log line a handler writes with the environment a construct gives it. */
function logLineWith(env: Record<string, string>): Record<string, unknown> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    let line = '';
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const log = require('../../src/runtime/log') as typeof import('../../src/runtime/log');
      log.setLogSink((l) => { line = l; });
      log.writeLogLine({ level: 'INFO', backend: 'dynamo', id: 'a', counter: 3, accepted: true, statusCode: 200, durationMs: 1 });
    });
    return JSON.parse(line);
  } finally {
    process.env = saved;
  }
}

describe('the Deployment dimension travels construct → environment → log line → metric filter', () => {
  test('the log line carries the value the construct put in COUNTER_DEPLOYMENT, under the field the metric filter reads', () => {
    const stack = new Stack(new App(), 'Counters');
    new DynamoCounter(stack, 'Dynamo');
    const t = Template.fromStack(stack);
    const [fn] = Object.values<any>(t.findResources('AWS::Lambda::Function'));
    const [filter] = Object.values<any>(t.findResources('AWS::Logs::MetricFilter'));
    const deployment = fn.Properties.Environment.Variables[COMMON_ENV.DEPLOYMENT];
    expect(deployment).toBe('Counters/Dynamo');
    const [{ Key, Value }] = filter.Properties.MetricTransformations[0].Dimensions;
    expect(Key).toBe('Deployment');
    const field = /^\$\.(\w+)$/.exec(Value)![1];
    const line = logLineWith({ [COMMON_ENV.DEPLOYMENT]: deployment });
    expect(line[field]).toBe('Counters/Dynamo');
    expect(line.counter).toBe(3);
  });

  test('without COUNTER_DEPLOYMENT (local runs) the line has no deployment field', () => {
    expect(logLineWith({})).not.toHaveProperty('deployment');
  });
});
