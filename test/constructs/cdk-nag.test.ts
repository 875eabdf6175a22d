import { Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildExample, exampleDir, FULL_DOTENV } from './example-app';

/** One line per unacknowledged finding: rule, severity and construct path. */
function findings(report: ReturnType<AwsSolutionsChecks['validateScope']>): string[] {
  return report.violations.flatMap((v) => v.violatingResources.map((r) => {
    const where = (r as { constructPath?: string }).constructPath ?? r.resourceLogicalId;
    return `${v.ruleName} (${v.severity}) at ${where}`;
  }));
}

describe('cdk-nag AwsSolutions on the example stack', () => {
  test('every backend configured: no unacknowledged finding, warnings included', () => {
    const { app } = buildExample(exampleDir(FULL_DOTENV));
    const report = new AwsSolutionsChecks(app).validateScope(app);
    expect(findings(report)).toEqual([]);
    expect(report.success).toBe(true);
  });

  test('AWS-only backends (no SaaS credentials): no unacknowledged finding', () => {
    const { app } = buildExample(exampleDir('', { momento: undefined, tidb: undefined }));
    expect(findings(new AwsSolutionsChecks(app).validateScope(app))).toEqual([]);
  });

  test('credentials copied from the files on the opt-in: no unacknowledged finding', () => {
    const { app } = buildExample(exampleDir(''), { allowPlaintextSecretsFromFiles: true });
    expect(findings(new AwsSolutionsChecks(app).validateScope(app))).toEqual([]);
  });

  test('a new unacknowledged finding fails the check', () => {
    const { app, stack } = buildExample(exampleDir(FULL_DOTENV));
    const sg = new ec2.SecurityGroup(stack, 'Wide', { vpc: stack.vpc!, description: 'open to the world' });
    sg.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(22));
    const report = new AwsSolutionsChecks(app).validateScope(app);
    expect(report.success).toBe(false);
    expect(findings(report).join('\n')).toMatch(/AwsSolutions-EC23/);
  });

  test('every acknowledgement carries a reason of substance', () => {
    const { stack } = buildExample(exampleDir(''), { allowPlaintextSecretsFromFiles: true });
    const acknowledged = acknowledgementsIn(stack);
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(acknowledged.filter(({ reason }) => reason.split(/\s+/).length < 12)).toEqual([]);
  });
});

function acknowledgementsIn(stack: Stack): Array<{ path: string; id: string; reason: string }> {
  return stack.node.findAll().flatMap((c) => c.node.metadata
    .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
    .flatMap((m) => Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({ path: c.node.path, id, reason }))));
}
