import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { DynamoCounter } from '../../src';
import { environmentOf } from '../kit/template';

function synth(build: (stack: Stack) => void): Template {
  const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
  build(stack);
  return Template.fromStack(stack);
}

describe('DynamoCounter', () => {
  test('creates an on-demand table with a string partition key, PITR on, retained by default', () => {
    const t = synth((s) => new DynamoCounter(s, 'Counter'));
    t.resourceCountIs('AWS::DynamoDB::Table', 1);
    t.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: { SSEEnabled: true },
        // Key records of Idempotency-Keys expire through TTL.
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      },
      // Kept, except when the deployment that created it rolls back (no empty table left behind).
      DeletionPolicy: 'RetainExceptOnCreate',
      UpdateReplacePolicy: 'Retain',
    });
  });

  test('removal policy is a prop', () => {
    const t = synth((s) => new DynamoCounter(s, 'Counter', { removalPolicy: RemovalPolicy.DESTROY }));
    t.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
  });

  test('unconditional by default: the function is told so, with the default maximum 10', () => {
    const t = synth((s) => new DynamoCounter(s, 'Counter'));
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Handler: 'index.handler',
      Timeout: 10,
    });
    // Exactly these variables: an extra one (a credential, say) fails.
    expect(environmentOf(t, /^Atomic counter on DynamoDB/)).toEqual({
      COUNTER_TABLE_NAME: { Ref: expect.stringMatching(/^CounterTable/) },
      USE_CONDITIONAL_WRITES: 'false',
      MAX_COUNTER_VALUE: '10',
      COUNTER_DEPLOYMENT: 'Test/Counter',
      IDEMPOTENCY_RETENTION_SECONDS: '86400',
    });
  });

  test('conditional mode and maximum reach the function', () => {
    const t = synth((s) => new DynamoCounter(s, 'Counter', { conditionalWrites: true, maxCounterValue: 250 }));
    expect(environmentOf(t, /^Atomic counter on DynamoDB/)).toEqual({
      COUNTER_TABLE_NAME: { Ref: expect.stringMatching(/^CounterTable/) },
      USE_CONDITIONAL_WRITES: 'true',
      MAX_COUNTER_VALUE: '250',
      COUNTER_DEPLOYMENT: 'Test/Counter',
      IDEMPOTENCY_RETENTION_SECONDS: '86400',
    });
  });

  test.each([0, -1, 1.5, Number.NaN])('maxCounterValue %p is rejected at synth', (max) => {
    expect(() => synth((s) => new DynamoCounter(s, 'Counter', { maxCounterValue: max }))).toThrow(/^Test\/Counter: `maxCounterValue` must be an integer ≥ 1/);
  });

  test('a timeout past 25 s is rejected (API Gateway gives up at 29 s)', () => {
    expect(() => synth((s) => new DynamoCounter(s, 'Counter', { timeout: Duration.seconds(30) }))).toThrow(/at most 25 seconds/);
  });

  test('the IAM policy allows UpdateItem and GetItem, and PutItem only inside TransactWriteItems, on the one table', () => {
    const t = synth((s) => new DynamoCounter(s, 'Counter'));
    const policies = t.findResources('AWS::IAM::Policy');
    expect(Object.keys(policies)).toHaveLength(1);
    const statements = Object.values<any>(policies)[0].Properties.PolicyDocument.Statement;
    const table = { 'Fn::GetAtt': [expect.stringMatching(/^CounterTable/), 'Arn'] };
    expect(statements).toEqual([
      {
        Effect: 'Allow',
        Action: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
        Resource: [table],
      },
      {
        Effect: 'Allow',
        Action: 'dynamodb:PutItem',
        Resource: table,
        Condition: { 'ForAnyValue:StringEquals': { 'dynamodb:EnclosingOperation': ['TransactWriteItems'] } },
      },
    ]);
  });

  test('an existing table is used, not created, and is the only resource in the policy', () => {
    const t = synth((s) => {
      const table = dynamodb.Table.fromTableName(s, 'Existing', 'my-counters');
      new DynamoCounter(s, 'Counter', { existingTable: table });
    });
    t.resourceCountIs('AWS::DynamoDB::Table', 0);
    expect(environmentOf(t, /^Atomic counter on DynamoDB/)).toEqual({
      COUNTER_TABLE_NAME: 'my-counters',
      USE_CONDITIONAL_WRITES: 'false',
      MAX_COUNTER_VALUE: '10',
      COUNTER_DEPLOYMENT: 'Test/Counter',
      IDEMPOTENCY_RETENTION_SECONDS: '86400',
    });
    const statements = Object.values<any>(t.findResources('AWS::IAM::Policy'))[0].Properties.PolicyDocument.Statement;
    expect(statements).toHaveLength(2);
    for (const statement of statements) expect(JSON.stringify(statement.Resource)).toContain(':table/my-counters');
    expect(statements.map((st: any) => st.Action)).toEqual([['dynamodb:UpdateItem', 'dynamodb:GetItem'], 'dynamodb:PutItem']);
    expect(statements[1].Condition).toEqual({ 'ForAnyValue:StringEquals': { 'dynamodb:EnclosingOperation': ['TransactWriteItems'] } });
  });

  test('a sharded counter may also BatchGetItem (its GET reads every slot at once); an unsharded one may not', () => {
    const actions = (shards: number) => {
      const t = synth((s) => new DynamoCounter(s, 'Counter', { existingTable: dynamodb.Table.fromTableName(s, 'Existing', 'my-counters'), shards }));
      return Object.values<any>(t.findResources('AWS::IAM::Policy'))[0].Properties.PolicyDocument.Statement.map((st: any) => st.Action);
    };
    expect(actions(8)).toEqual([['dynamodb:UpdateItem', 'dynamodb:GetItem', 'dynamodb:BatchGetItem'], 'dynamodb:PutItem']);
    expect(actions(1)).toEqual([['dynamodb:UpdateItem', 'dynamodb:GetItem'], 'dynamodb:PutItem']);
  });

  test('created-table props conflict with an existing table, all named in one error', () => {
    expect(() => synth((s) => new DynamoCounter(s, 'Counter', {
      existingTable: dynamodb.Table.fromTableName(s, 'Existing', 'x'),
      tableName: 'mine',
      removalPolicy: RemovalPolicy.DESTROY,
    }))).toThrow(/^Test\/Counter: `tableName`, `removalPolicy` apply to the table the construct creates; do not combine with `existingTable`$/);
  });

  test('metricCounterValue(): namespace AtomicCounter, this deployment\'s series, Maximum; an alarm on it', () => {
    const stack = new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
    const counter = new DynamoCounter(stack, 'Counter', { conditionalWrites: true, maxCounterValue: 100 });
    const metric = counter.metricCounterValue();
    expect(metric.namespace).toBe('AtomicCounter');
    expect(metric.metricName).toBe('DynamoAtomicCounter');
    expect(metric.dimensions).toEqual({ Deployment: 'Test/Counter' });
    expect(metric.statistic).toBe('Maximum');
    expect(metric.period.toMinutes()).toBe(5);
    // Props win, as in aws-cdk-lib's metricXxx() methods.
    const p99 = counter.metricCounterValue({ statistic: 'p99', period: Duration.minutes(1) });
    expect([p99.statistic, p99.period.toSeconds(), p99.metricName]).toEqual(['p99', 60, 'DynamoAtomicCounter']);

    metric.createAlarm(stack, 'NearMax', { threshold: 90, evaluationPeriods: 1, comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD });
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AtomicCounter',
      MetricName: 'DynamoAtomicCounter',
      Dimensions: [{ Name: 'Deployment', Value: 'Test/Counter' }],
      Statistic: 'Maximum',
      Period: 300,
      Threshold: 90,
    });
    // The alarm watches exactly what the metric filter writes.
    Template.fromStack(stack).hasResourceProperties('AWS::Logs::MetricFilter', {
      MetricTransformations: [{ MetricNamespace: 'AtomicCounter', MetricName: 'DynamoAtomicCounter', MetricValue: '$.counter', Dimensions: [{ Key: 'Deployment', Value: '$.deployment' }] }],
    });
  });

});
