import * as fs from 'fs';
import { IPolicyValidationContextBeta1, IPolicyValidationPluginBeta1, PolicyValidationPluginReportBeta1, PolicyViolationBeta1 } from 'aws-cdk-lib';
import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';

/**
 * One accepted AWS Control Tower guard finding: a rule, the resources it may
 * fire on (type, and logical ids where the finding is about some resources
 * of that type only), and why it is accepted.
 */
export interface GuardExclusion {
  /** The cfn-guard rule name, e.g. `lambda_inside_vpc_check`. */
  readonly rule: string;
  /** Its Control Tower control, for the reader (`CT.LAMBDA.PR.3`). */
  readonly control: string;
  /** CloudFormation type of the resources it may fire on. */
  readonly resourceType: string;
  /** Logical ids it may fire on; every resource of `resourceType` when absent. */
  readonly logicalIds?: RegExp;
  readonly reason: string;
}

/** Functions that reach only public AWS APIs or a SaaS endpoint, and the framework functions of aws-cdk-lib. */
const FUNCTIONS_OUTSIDE_THE_VPC = /^(Dynamo(Function)|(Momento|TiDb)(Function|SetupFunction|SetupProviderframeworkonEvent)|DocDbSetupProviderframeworkonEvent|CustomVpcRestrictDefaultSGCustomResourceProviderHandler)[0-9A-F]{8}$/;

/**
 * The Control Tower findings the example accepts, each with its reason.
 * Everything else fails `cdk synth` (bin/atomic-counter-example.ts),
 * test/constructs/cfn-guard.test.ts and CI. Fixed instead (so not listed):
 * log group retention under a year (CT.CLOUDWATCH.PR.2: the example keeps
 * logs a year), public IPs on launch in the public subnets (CT.EC2.PR.11: the
 * NAT gateway has an Elastic IP; nothing else runs there), API Gateway
 * execution logging (CT.APIGATEWAY.PR.1: ERROR level, into a log group with
 * a retention).
 */
export const GUARD_EXCLUSIONS: readonly GuardExclusion[] = [
  {
    rule: 'lambda_function_public_access_prohibited_check',
    control: 'CT.LAMBDA.PR.2',
    resourceType: 'AWS::Lambda::Permission',
    logicalIds: /^ApiRestApi(dynamo|redis|momento|docdb|tidb)id(GET|POST)ApiPermission(Test)?\w+$/,
    reason: 'A false positive of the rule: each permission lets apigateway.amazonaws.com invoke one function only from this REST API\'s own method ARN (SourceArn), which aws-cdk-lib builds with Fn::Join; the rule cannot read a joined SourceArn and reports it as missing.',
  },
  {
    rule: 'lambda_inside_vpc_check',
    control: 'CT.LAMBDA.PR.3',
    resourceType: 'AWS::Lambda::Function',
    logicalIds: FUNCTIONS_OUTSIDE_THE_VPC,
    reason: 'These functions reach only public endpoints over TLS (DynamoDB, Secrets Manager, Momento, TiDB Cloud, CloudFormation, EC2): in a VPC they would gain nothing and depend on the NAT gateway (one AZ). The Redis and DocumentDB functions, which reach private nodes, are in the VPC; the framework functions (custom-resource providers, the default security group\'s cleanup) are aws-cdk-lib\'s own.',
  },
  {
    rule: 'cloudwatch_log_group_encrypted_check',
    control: 'CT.CLOUDWATCH.PR.3',
    resourceType: 'AWS::Logs::LogGroup',
    reason: 'CloudWatch Logs encrypts every log group at rest with a service key; the lines hold no credential (the handlers log the id, the value and a fixed error text). A customer-managed key would cost a key per stack and a key policy for the logs service, and the library\'s log groups take no key yet.',
  },
  {
    rule: 'api_gw_xray_enabled_check',
    control: 'CT.APIGATEWAY.PR.2',
    resourceType: 'AWS::ApiGateway::Stage',
    reason: 'X-Ray tracing is billed per trace recorded; the access log (with the integration status, error and latency of every request) and each function\'s one log line per request carry what an outage needs. Enable tracing on the stage where a tracing budget exists.',
  },
  {
    rule: 'elasticache_repl_grp_rbac_auth_enabled_check',
    control: 'CT.ELASTICACHE.PR.8',
    resourceType: 'AWS::ElastiCache::ReplicationGroup',
    reason: 'The replication group authenticates with an AUTH token from Secrets Manager over TLS (transit encryption required) and admits only the counter function\'s security group; RBAC user groups are an alternative way to authenticate, not a stronger one for a single application user.',
  },
];

/** A finding the exclusions did not cover: rule, logical id, type and the control's text. */
export interface GuardFinding {
  readonly rule: string;
  readonly logicalId: string;
  readonly resourceType: string;
  readonly description: string;
}

/** What the guard rules found in some templates, split by the exclusions. */
export interface GuardResult {
  readonly findings: GuardFinding[];
  /** Accepted findings, with the exclusion that accepted each. */
  readonly excluded: Array<GuardFinding & { readonly exclusion: GuardExclusion }>;
}

/** The exclusion that covers `finding`, if any. */
export function exclusionFor(finding: Omit<GuardFinding, 'description'>, exclusions: readonly GuardExclusion[] = GUARD_EXCLUSIONS): GuardExclusion | undefined {
  return exclusions.find((e) => e.rule === finding.rule
    && e.resourceType === finding.resourceType
    && (e.logicalIds === undefined || e.logicalIds.test(finding.logicalId)));
}

/** Splits a cfn-guard report into findings and accepted findings. */
export function applyExclusions(violations: PolicyViolationBeta1[], exclusions: readonly GuardExclusion[] = GUARD_EXCLUSIONS): GuardResult {
  const templates = new Map<string, { Resources?: Record<string, { Type: string }> }>();
  const typeOf = (templatePath: string, logicalId: string): string => {
    if (!templates.has(templatePath)) templates.set(templatePath, JSON.parse(fs.readFileSync(templatePath, 'utf8')));
    return templates.get(templatePath)!.Resources?.[logicalId]?.Type ?? 'unknown';
  };
  const findings: GuardFinding[] = [];
  const excluded: GuardResult['excluded'] = [];
  for (const violation of violations) {
    for (const resource of violation.violatingResources) {
      const finding = {
        rule: violation.ruleName,
        logicalId: resource.resourceLogicalId,
        resourceType: typeOf(resource.templatePath, resource.resourceLogicalId),
        description: violation.description,
      };
      const exclusion = exclusionFor(finding, exclusions);
      if (exclusion) excluded.push({ ...finding, exclusion });
      else findings.push(finding);
    }
  }
  return { findings, excluded };
}

/**
 * AWS Control Tower's proactive guard rules (`@cdklabs/cdk-validator-cfnguard`,
 * which ships the rules and the cfn-guard binary) as a CDK policy validation
 * plugin, less the findings in `exclusions`: any other finding fails synth.
 * aws-cdk-lib's own `Validations.acknowledge` would accept a rule for every
 * resource of the app; an exclusion here names the resources.
 */
export class ControlTowerGuardRules implements IPolicyValidationPluginBeta1 {
  public readonly name = 'control-tower-guard-rules';
  public readonly version: string;
  public readonly ruleIds?: string[];
  private readonly guard: CfnGuardValidator;

  constructor(private readonly exclusions: readonly GuardExclusion[] = GUARD_EXCLUSIONS) {
    // The report of a whole stack exceeds Node's default 1 MB buffer.
    this.guard = new CfnGuardValidator({ maxBuffer: 256 * 1024 * 1024 });
    this.version = this.guard.version ?? 'unknown';
    this.ruleIds = this.guard.ruleIds;
  }

  public validate(context: IPolicyValidationContextBeta1): PolicyValidationPluginReportBeta1 {
    return this.check(context.templatePaths).report;
  }

  /** One cfn-guard run: the report synth gets (excluded findings removed), and the split behind it. */
  public check(templatePaths: string[]): { readonly report: PolicyValidationPluginReportBeta1; readonly result: GuardResult } {
    // cfn-guard reads the templates only, never the construct tree: a check
    // outside a synth (the tests) has no app to hand it.
    const raw = this.guard.validate({ templatePaths } as IPolicyValidationContextBeta1);
    const result = applyExclusions(raw.violations, this.exclusions);
    const open = (rule: string, logicalId: string) => result.findings.some((f) => f.rule === rule && f.logicalId === logicalId);
    const violations = raw.violations
      .map((v) => ({ ...v, violatingResources: v.violatingResources.filter((r) => open(v.ruleName, r.resourceLogicalId)) }))
      .filter((v) => v.violatingResources.length > 0);
    return { report: { success: violations.length === 0, violations }, result };
  }
}
