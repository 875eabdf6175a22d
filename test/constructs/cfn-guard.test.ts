import * as fs from 'fs';
import * as path from 'path';
import { Duration, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { buildExample, exampleDir, FULL_DOTENV } from './example-app';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const guardRules = require('../../examples/lib/guard-rules') as typeof import('../../examples/lib/guard-rules');

/**
 * AWS Control Tower's proactive guard rules on the example (every backend
 * configured), through the very plugin `cdk synth` runs
 * (examples/bin/atomic-counter-example.ts). CI (.ci/run) runs the same plugin
 * on every variant (each backend left out in turn). One cfn-guard run over two
 * templates: the example, and a stack holding what the rules must catch.
 */
describe('AWS Control Tower guard rules on the example stack', () => {
  const { app } = buildExample(exampleDir(FULL_DOTENV));
  // What a careless change would add: a log group kept a week, a function outside any VPC.
  const careless = new Stack(app, 'Careless');
  new logs.LogGroup(careless, 'ShortLived', { retention: logs.RetentionDays.ONE_WEEK });
  new lambda.Function(careless, 'Loose', {
    runtime: lambda.Runtime.NODEJS_24_X, handler: 'index.handler', code: lambda.Code.fromInline('exports.handler = async () => 1'), timeout: Duration.seconds(3),
  });
  const outdir = app.synth().directory;
  const templatePath = (stackName: string) => path.join(outdir, `${stackName}.template.json`);
  const plugin = new guardRules.ControlTowerGuardRules();
  const { report, result } = plugin.check([templatePath('AtomicCounterExample'), templatePath('Careless')]);
  const inTemplate = (stackName: string) => (f: { logicalId: string }) =>
    Object.keys(JSON.parse(fs.readFileSync(templatePath(stackName), 'utf8')).Resources).includes(f.logicalId);

  test('the rules ran and found something to judge (the bundled rule set is present)', () => {
    expect(plugin.ruleIds?.length).toBeGreaterThan(50);
    expect(result.findings.length + result.excluded.length).toBeGreaterThan(0);
  });

  test('every finding on the example is fixed or excluded with a reason', () => {
    const open = result.findings.filter(inTemplate('AtomicCounterExample'));
    expect(open.map((f) => `${f.rule} ${f.resourceType} ${f.logicalId}`)).toEqual([]);
  });

  test('a new finding is not excluded: a week-long log group and a function outside the VPC in another stack fail', () => {
    const caught = result.findings.filter(inTemplate('Careless')).map((f) => `${f.rule} ${f.resourceType}`).sort();
    expect(caught).toEqual(expect.arrayContaining([
      'cloudwatch_log_group_retention_period_check AWS::Logs::LogGroup',
      'lambda_inside_vpc_check AWS::Lambda::Function',
    ]));
    // The report synth gets holds them, and only them: synth (and CI) fails.
    expect(report.success).toBe(false);
    const reported = report.violations.flatMap((v) => v.violatingResources.map((r) => path.basename(r.templatePath)));
    expect([...new Set(reported)]).toEqual(['Careless.template.json']);
  });

  test('every exclusion is still needed and says why, in a sentence or more', () => {
    const used = new Set(result.excluded.filter(inTemplate('AtomicCounterExample')).map((f) => f.exclusion));
    expect(guardRules.GUARD_EXCLUSIONS.filter((e) => !used.has(e)).map((e) => e.rule)).toEqual([]);
    expect(guardRules.GUARD_EXCLUSIONS.filter((e) => e.reason.split(/\s+/).length < 15).map((e) => e.rule)).toEqual([]);
  });

  test('the Lambda-permission exclusion covers only API Gateway\'s invoke permissions, whose SourceArn is a Fn::Join', () => {
    const template = JSON.parse(fs.readFileSync(templatePath('AtomicCounterExample'), 'utf8'));
    const permissions = result.excluded.filter((f) => f.rule === 'lambda_function_public_access_prohibited_check');
    expect(permissions.length).toBeGreaterThan(0);
    for (const { logicalId } of permissions) {
      const { Principal, SourceArn } = template.Resources[logicalId].Properties;
      expect({ logicalId, Principal, joined: 'Fn::Join' in SourceArn }).toEqual({ logicalId, Principal: 'apigateway.amazonaws.com', joined: true });
    }
  });
});
