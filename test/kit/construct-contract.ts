/**
 * The construct contract every counter keeps, written once and run for all
 * five constructs (test/constructs/construct-contract.test.ts): its function (runtime,
 * architecture, handler, timeout, logging to its own log group), that log
 * group (explicit, retention, retained on delete), the metric filter on that
 * log group reading `$.counter` into namespace AtomicCounter with the
 * Deployment dimension, grants scoped to the one resource or secret the
 * function needs, and no plaintext secret in any function's environment.
 * Backend-specific template checks stay in `test/<b>-counter.test.ts`.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { secretsInEnvironments } from './template';
import { CounterBase, DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';
import type { BackendName } from '../../src/runtime/store';

export interface ConstructUnderTest {
  readonly stack: Stack;
  readonly counter: CounterBase;
  /** The one resource (table, secret) the counter function's grants may name. */
  readonly grantTarget: string;
}

const ENV = { account: '123456789012', region: 'eu-west-1' };

/** Builds one backend's counter with its defaults in a fresh stack. */
export const CONSTRUCTS: Record<BackendName, () => ConstructUnderTest> = {
  dynamo: () => {
    const stack = new Stack(new App(), 'Test', { env: ENV });
    const counter = new DynamoCounter(stack, 'Counter');
    return { stack, counter, grantTarget: stack.resolve((counter.table as any).tableArn)['Fn::GetAtt'][0] };
  },
  redis: () => {
    const stack = new Stack(new App(), 'Test', { env: ENV });
    const counter = new RedisCounter(stack, 'Counter', { vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }) });
    return { stack, counter, grantTarget: stack.resolve(counter.credentialsSecret!.secretArn).Ref };
  },
  momento: () => {
    const stack = new Stack(new App(), 'Test', { env: ENV });
    const credentialsSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Key', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-api-key-AbCdEf');
    const counter = new MomentoCounter(stack, 'Counter', { credentialsSecret });
    return { stack, counter, grantTarget: 'secret:momento-api-key-AbCdEf' };
  },
  docdb: () => {
    const stack = new Stack(new App(), 'Test', { env: ENV });
    const counter = new DocDbCounter(stack, 'Counter', { vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }) });
    // The counter function logs in as the application user: that secret only, never the master's.
    return { stack, counter, grantTarget: stack.resolve(counter.appUserSecret.secretArn).Ref };
  },
  tidb: () => {
    const stack = new Stack(new App(), 'Test', { env: ENV });
    const credentialsSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Connection', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidb-connection-AbCdEf');
    const counter = new TiDbCounter(stack, 'Counter', { credentialsSecret });
    return { stack, counter, grantTarget: 'secret:tidb-connection-AbCdEf' };
  },
};

function logicalId(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as any);
}

/** Statements of every inline policy attached to the role `roleId`. */
function statementsOfRole(template: Template, roleId: string): any[] {
  return Object.values<any>(template.findResources('AWS::IAM::Policy'))
    .filter((p) => (p.Properties.Roles ?? []).some((r: any) => r.Ref === roleId))
    .flatMap((p) => p.Properties.PolicyDocument.Statement);
}

export function describeConstructContract(backend: BackendName): void {
  describe(`${backend} construct contract`, () => {
    const { stack, counter, grantTarget } = CONSTRUCTS[backend]();
    const template = Template.fromStack(stack);
    const fnId = logicalId(stack, counter.counterFunction as any);
    const fn = template.toJSON().Resources[fnId];
    const logGroupId = logicalId(stack, counter.logGroup as any);

    test('function: Node.js 24, arm64, index.handler, 10 s, logging to its own log group', () => {
      expect(fn.Type).toBe('AWS::Lambda::Function');
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Timeout: 10,
        MemorySize: 256,
        LoggingConfig: { LogGroup: { Ref: logGroupId } },
      });
    });

    test('log group: explicit, 1 month retention, retained on delete (not after a rolled-back first deployment)', () => {
      const group = template.toJSON().Resources[logGroupId];
      expect(group).toMatchObject({ Type: 'AWS::Logs::LogGroup', Properties: { RetentionInDays: 30 }, DeletionPolicy: 'RetainExceptOnCreate', UpdateReplacePolicy: 'Retain' });
    });

    test('metric filters: on that log group, $.counter → AtomicCounter/<Backend>AtomicCounter and $.by → …Change, dimension Deployment', () => {
      const filters = Object.values<any>(template.findResources('AWS::Logs::MetricFilter'));
      expect(filters).toHaveLength(2);
      expect(filters.map((f) => f.Properties)).toEqual(expect.arrayContaining([{
        LogGroupName: { Ref: logGroupId },
        FilterPattern: '{ ($.counter >= 0) || ($.counter < 0) }',
        MetricTransformations: [{
          MetricNamespace: 'AtomicCounter',
          MetricName: counter.counterMetricName,
          MetricValue: '$.counter',
          Dimensions: [{ Key: 'Deployment', Value: '$.deployment' }],
        }],
      }, {
        LogGroupName: { Ref: logGroupId },
        FilterPattern: '{ ($.accepted IS TRUE) && (($.by > 0) || ($.by < 0)) }',
        MetricTransformations: [{
          MetricNamespace: 'AtomicCounter',
          MetricName: `${counter.counterMetricName}Change`,
          MetricValue: '$.by',
          Dimensions: [{ Key: 'Deployment', Value: '$.deployment' }],
        }],
      }]));
      expect(counter.counterMetricName).toMatch(/^[A-Z][A-Za-z]*AtomicCounter$/);
      expect(counter.metricCounterValue().dimensions).toEqual({ Deployment: 'Test/Counter' });
    });

    test('grants: every statement of the counter function\'s role names its one resource, never "*"', () => {
      const roleId = fn.Properties.Role['Fn::GetAtt'][0];
      const statements = statementsOfRole(template, roleId);
      expect(statements.length).toBeGreaterThan(0);
      for (const statement of statements) {
        const resources = Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
        for (const resource of resources) {
          expect({ action: statement.Action, resource }).not.toMatchObject({ resource: '*' });
          expect({ action: statement.Action, namesTarget: JSON.stringify(resource).includes(grantTarget) })
            .toEqual({ action: statement.Action, namesTarget: true });
        }
      }
    });

    test('no plaintext secret in any function\'s environment', () => {
      expect(secretsInEnvironments(template)).toEqual([]);
    });
  });
}
