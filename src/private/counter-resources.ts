/**
 * The resources every counter construct builds the same way: the function
 * (runtime, timeout bound, explicit log group, mode variables), the setup
 * custom resource, the log group and the metric filter (the last two created
 * by `CounterBase`). Construct plumbing,
 * not part of the published API: the backends call these with their own
 * entry, environment and placement.
 */
import * as path from 'path';
import { CustomResource, Duration, Lazy, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, IConstruct, IDependable } from 'constructs';
import type { BackendContract } from './backend-contract';
import { checkReservedConcurrency, recordReservation, reservedConcurrencyOf } from './concurrency';
import { COUNTER_DEFAULTS, DEPLOYMENT_DIMENSION, METRIC_NAMESPACE } from './defaults';
import { PropsValidation } from './props';
import { KEEP_UNLESS_CREATE_FAILED } from './removal';
import type { CounterBase, CounterOptions, FunctionPlacementOptions } from '../counter-base';
import { COMMON_ENV, IDEMPOTENCY_DEFAULTS, SHARD_LIMITS } from '../counter-env';
import { environmentSizeProblem } from '../deploy-checks';
import { worstCaseProblem } from '../worst-case';

/** The resolved mode of a counter. */
export interface CounterMode {
  /** Increment only while below `maxCounterValue`. */
  readonly conditionalWrites: boolean;
  /** The maximum in conditional mode. */
  readonly maxCounterValue: number;
  /** Shard records per counter id. */
  readonly shards: number;
  /** Seconds an Idempotency-Key is remembered. */
  readonly idempotencyRetentionSeconds: number;
}

/** Fills in the mode props (validated by `checkCounterOptions`). */
export function resolveMode(props: CounterOptions): CounterMode {
  return {
    conditionalWrites: props.conditionalWrites ?? COUNTER_DEFAULTS.conditionalWrites,
    maxCounterValue: props.maxCounterValue ?? COUNTER_DEFAULTS.maxCounterValue,
    shards: props.shards ?? SHARD_LIMITS.default,
    // Milliseconds first: toSeconds() would throw on 1.5 s before `checkCounterOptions` can say why.
    idempotencyRetentionSeconds: props.idempotencyRetention
      ? props.idempotencyRetention.toMilliseconds() / 1000
      : IDEMPOTENCY_DEFAULTS.retentionSeconds,
  };
}

/** Records the problems of the props every counter shares. */
export function checkCounterOptions(check: PropsValidation, props: CounterOptions): PropsValidation {
  check.integer('maxCounterValue', props.maxCounterValue, 1);
  check.integer('shards', props.shards, SHARD_LIMITS.min, SHARD_LIMITS.max);
  checkReservedConcurrency(check, props.reservedConcurrency);
  const retention = props.idempotencyRetention?.toMilliseconds();
  if (retention !== undefined && !Token.isUnresolved(retention)) {
    check.check(retention >= 1000 && retention % 1000 === 0, `\`idempotencyRetention\` must be whole seconds, at least 1 second (got ${retention} ms)`);
  }
  const timeout = props.timeout?.toSeconds();
  if (timeout !== undefined && !Token.isUnresolved(timeout)) {
    check.check(timeout <= COUNTER_DEFAULTS.maxTimeoutSeconds,
      `\`timeout\` must be at most ${COUNTER_DEFAULTS.maxTimeoutSeconds} seconds (API Gateway gives up after 29 s); got ${timeout}`);
  }
  return check;
}

/** The function timeout in milliseconds, or undefined when a token. */
export function functionTimeoutMs(props: CounterOptions): number | undefined {
  const seconds = props.timeout?.toSeconds() ?? COUNTER_DEFAULTS.timeoutSeconds;
  return Token.isUnresolved(seconds) ? undefined : seconds * 1000;
}

/**
 * `<stack name>/<construct path below the stack>`, e.g.
 * `AtomicCounterExample/Api/RedisCounter`: unique per account and region,
 * since a stack name is.
 */
export function deploymentName(scope: IConstruct, separator = '/'): string {
  const stack = Stack.of(scope);
  const below = scope.node.path.slice(stack.node.path.length).split('/').filter((p) => p !== '');
  return [stack.stackName, ...below].join(separator);
}

/**
 * Where projen's esbuild step puts the bundle of a Lambda entry:
 * `assets/<entry path below src/, without .ts>/index.js`. The same relative
 * path works from `src/private/` (tests) and from `lib/private/` (the published package).
 */
export function bundledHandlerPath(entry: string): string {
  return path.join(__dirname, '..', '..', 'assets', entry);
}

/**
 * A function's code: the prebuilt bundle directory, without its source map
 * (`index.js.map`) unless `sourceMaps` asks for it. The asset hash covers
 * only what ships, so turning source maps on or off replaces the code.
 */
export function bundledHandlerCode(entry: string, options: Pick<CounterOptions, 'sourceMaps'>): lambda.Code {
  return lambda.Code.fromAsset(bundledHandlerPath(entry), options.sourceMaps ? {} : { exclude: ['*.map'] });
}

/** `NODE_OPTIONS=--enable-source-maps` when `sourceMaps` is on; nothing otherwise. */
export function sourceMapEnvironment(options: Pick<CounterOptions, 'sourceMaps'>): { [key: string]: string } {
  return options.sourceMaps ? { NODE_OPTIONS: '--enable-source-maps' } : {};
}

/**
 * Placement for a backend reached over the internet (Momento, TiDB Cloud):
 * no VPC unless one is given, and then private subnets with egress by default.
 */
export function egressPlacement(props: FunctionPlacementOptions): FunctionPlacementOptions {
  return props.vpc
    ? { vpc: props.vpc, vpcSubnets: props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }, securityGroups: props.securityGroups }
    : {};
}

/** `vpcSubnets` and `securityGroups` place a function inside `vpc` only. */
export function checkEgressPlacement(check: PropsValidation, props: FunctionPlacementOptions): PropsValidation {
  const orphans = (['vpcSubnets', 'securityGroups'] as const).filter((k) => props[k] !== undefined);
  return check.check(props.vpc !== undefined || orphans.length === 0, `${orphans.map((k) => `\`${k}\``).join(' and ')} need${orphans.length > 1 ? '' : 's'} \`vpc\``);
}

/**
 * What the counter and the setup function share: the description, the
 * runtime and architecture (from the counter's props), the bundled handler,
 * and the placement (subnets and security groups only inside a VPC).
 */
function bundledFunctionProps(
  props: CounterOptions, fn: FunctionPlacementOptions & { readonly entry: string; readonly description: string },
): Omit<lambda.FunctionProps, 'memorySize' | 'timeout' | 'logGroup' | 'environment'> {
  return {
    description: fn.description,
    runtime: props.runtime ?? COUNTER_DEFAULTS.runtime,
    architecture: props.architecture ?? COUNTER_DEFAULTS.architecture,
    handler: 'index.handler',
    code: bundledHandlerCode(fn.entry, props),
    vpc: fn.vpc,
    vpcSubnets: fn.vpc ? fn.vpcSubnets : undefined,
    securityGroups: fn.vpc ? fn.securityGroups : undefined,
  };
}

/**
 * Stands in for a value that a resource the counter has not created yet will
 * decide (an endpoint, a secret's ARN): an unresolved token, which the
 * checks treat like the real one (counted at a token's estimated size, and
 * present), so that a counter can check its function's environment together
 * with its props before it creates anything (`checkCounterFunction`). It
 * never reaches a template: resolving it fails the synth.
 */
export function notCreatedYet(what: string): string {
  return Lazy.string({ produce: () => { throw new Error(`${what} was checked before it existed and never replaced (a bug in this library)`); } });
}

/** What a backend tells `createCounterFunction` (and `checkCounterFunction`) about its function. */
export interface CounterFunctionOptions extends FunctionPlacementOptions {
  /** The backend's own environment (its env contract); mode variables are added here. */
  readonly environment: { [key: string]: string };
  /** The function's description. */
  readonly description: string;
  /** Read access (only) to this secret is granted to the function; none by default. */
  readonly secret?: secretsmanager.ISecret;
  /** The function is created after this (e.g. the setup resource), so it answers only once the store is set up. */
  readonly after?: IDependable;
  /**
   * The backend's reservation when `reservedConcurrency` is not given,
   * derived from its datastore's connection limit; none by default.
   */
  readonly defaultReservedConcurrency?: number;
}

/** The counter function's whole environment: the backend's own variables, then those every counter carries. */
function counterFunctionEnvironment(counter: CounterBase, props: CounterOptions, environment: { [key: string]: string }): { [key: string]: string } {
  return {
    ...environment,
    [COMMON_ENV.USE_CONDITIONAL_WRITES]: String(counter.conditionalWrites),
    [COMMON_ENV.MAX_COUNTER_VALUE]: String(counter.maxCounterValue),
    [COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS]: String(counter.idempotencyRetentionSeconds),
    [COMMON_ENV.DEPLOYMENT]: counter.deployment,
    // Unsharded counters keep the environment they always had.
    ...(counter.shards !== 1 ? { [COMMON_ENV.SHARDS]: String(counter.shards) } : {}),
    ...sourceMapEnvironment(props),
  };
}

/**
 * Records the synth-time problems of a counter function, for the counter's
 * one props error: its environment against Lambda's size limit, and the
 * store's worst case (from `backend`, the counter's contract) against the
 * function timeout, so a slow store answers 503, never a Lambda timeout's
 * 502. A counter calls it with the rest of its props checks, before it
 * creates anything (`notCreatedYet` for what resources will decide);
 * `createCounterFunction` checks the final environment again.
 */
export function checkCounterFunction(
  check: PropsValidation, counter: CounterBase, backend: BackendContract, props: CounterOptions, environment: { [key: string]: string },
): PropsValidation {
  const full = counterFunctionEnvironment(counter, props, environment);
  return check
    .check(counter.backend === backend.name, `the counter serves /${counter.backend} but was given the contract of ${backend.name} (a bug in this library)`)
    .check(counter.shards <= 1 || backend.sharded, `\`shards\` (${counter.shards}): the ${backend.name} backend does not implement sharded counters yet; leave \`shards\` at 1`)
    .problem(environmentSizeProblem('the counter function', full))
    .problem(worstCaseProblem(backend, full, functionTimeoutMs(props)));
}

/** Records the synth-time problems of a setup function: its environment against Lambda's size limit. */
export function checkSetupFunction(check: PropsValidation, environment: { [key: string]: string }): PropsValidation {
  return check.problem(environmentSizeProblem('the setup function', environment));
}

/**
 * Creates the counter function of `counter`, from its backend's contract
 * (bundle, worst case), logging to `counter.logGroup`: the shared defaults,
 * the mode and deployment variables, and the synth-time checks of
 * `checkCounterFunction` on the final environment. Requiring the contract
 * here is what keeps a backend from shipping a function whose worst case
 * nobody checked. The backend grants access to its store itself (beyond `fn.secret`).
 */
export function createCounterFunction(
  counter: CounterBase, backend: BackendContract, props: CounterOptions, fn: CounterFunctionOptions,
): lambda.Function {
  checkCounterFunction(new PropsValidation(counter), counter, backend, props, fn.environment).throwIfInvalid();
  const reservedConcurrentExecutions = reservedConcurrencyOf(props.reservedConcurrency, fn.defaultReservedConcurrency);
  recordReservation(counter, reservedConcurrentExecutions);
  const counterFunction = new lambda.Function(counter, 'Function', {
    ...bundledFunctionProps(props, { ...fn, entry: backend.bundles.counter }),
    reservedConcurrentExecutions,
    memorySize: props.memorySize ?? COUNTER_DEFAULTS.memorySize,
    timeout: props.timeout ?? Duration.seconds(COUNTER_DEFAULTS.timeoutSeconds),
    logGroup: counter.logGroup,
    environment: counterFunctionEnvironment(counter, props, fn.environment),
  });
  if (fn.secret) grantSecretValueRead(fn.secret, counterFunction);
  if (fn.after) counterFunction.node.addDependency(fn.after);
  return counterFunction;
}

/** What a backend tells `createSetupResource` about its setup step. */
export interface SetupResourceOptions extends FunctionPlacementOptions {
  /** Bundle directory below `assets/`, e.g. `backends/tidb/runtime/tidb-setup.lambda`. */
  readonly entry: string;
  /** The setup function's description. */
  readonly description: string;
  /** CloudFormation type, `Custom::<Name>Setup`. */
  readonly resourceType: string;
  /** Resource properties handed to the setup handler; a change re-runs setup. */
  readonly properties: { [key: string]: string };
  /** The setup function's environment (the backend's connection contract). */
  readonly environment: { [key: string]: string };
  /** Read access to this secret is granted to the setup function; none by default. */
  readonly secret?: secretsmanager.ISecret;
  /** Timeout of the setup function; one minute by default. */
  readonly timeout?: Duration;
}

/** What `createSetupResource` creates. */
export interface SetupResources {
  /** The function that runs the setup (create-if-missing, idempotent). */
  readonly setupFunction: lambda.Function;
  /** The custom resource; the deployment fails with the setup's error message. */
  readonly resource: CustomResource;
}

/**
 * A backend's setup step (schema, index, cache) as a custom resource run
 * by aws-cdk-lib's Provider framework: Create and Update run the setup,
 * Delete leaves the data, and an Update a rollback sends succeeds even when
 * the setup cannot run (it may read its own stack's status for that). The
 * framework function logs to the same explicit log group as the setup
 * function.
 */
export function createSetupResource(scope: Construct, props: CounterOptions, options: SetupResourceOptions): SetupResources {
  checkSetupFunction(new PropsValidation(scope), options.environment).throwIfInvalid();
  const logGroup = createLogGroup(scope, 'SetupLogGroup', props);
  const setupFunction = new lambda.Function(scope, 'SetupFunction', {
    ...bundledFunctionProps(props, options),
    memorySize: 256,
    timeout: options.timeout ?? Duration.minutes(1),
    logGroup,
    environment: { ...options.environment, ...sourceMapEnvironment(props) },
  });
  if (options.secret) grantSecretValueRead(options.secret, setupFunction);
  // A failed Update asks whether the stack is rolling back (src/runtime/custom-resource.ts):
  // its own stack's status only.
  setupFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['cloudformation:DescribeStacks'], resources: [Stack.of(scope).stackId] }));
  const provider = new cr.Provider(scope, 'SetupProvider', { onEventHandler: setupFunction, logGroup });
  const resource = new CustomResource(scope, 'Setup', {
    serviceToken: provider.serviceToken,
    resourceType: options.resourceType,
    properties: options.properties,
  });
  return { setupFunction, resource };
}

/**
 * What a function needs to read `secret`, and nothing more:
 * `secretsmanager:GetSecretValue` on that secret (the handlers call nothing
 * else: src/runtime/secrets.ts), plus `kms:Decrypt` through Secrets Manager
 * when the secret is encrypted with a customer-managed key (import it with
 * `Secret.fromSecretAttributes({ …, encryptionKey })`). `secret.grantRead`
 * would add `secretsmanager:DescribeSecret`, which nothing uses. The
 * resource is the one `grantRead` uses: the full ARN, or a secret imported by
 * name or partial ARN with Secrets Manager's six-character suffix.
 */
export function grantSecretValueRead(secret: secretsmanager.ISecret, grantee: iam.IGrantable): void {
  iam.Grant.addToPrincipalOrResource({
    grantee,
    actions: ['secretsmanager:GetSecretValue'],
    resourceArns: [secret.secretFullArn ?? `${secret.secretArn}-??????`],
    resource: secret,
  });
  // In the function's own policy: `encryptionKey.grantDecrypt(ViaServicePrincipal)`,
  // which `grantRead` uses, writes only to the key's policy, and an imported
  // key's policy is not the stack's, so the function got nothing. The key's
  // policy must let the account's IAM policies grant it (KMS's default key
  // policy does).
  if (secret.encryptionKey) {
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['kms:Decrypt'],
      resourceArns: [secret.encryptionKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Stack.of(secret).region}.amazonaws.com` } },
    });
  }
}

/** An explicit log group with the counter's retention (also used by setup functions). */
export function createLogGroup(scope: Construct, id: string, props: CounterOptions): logs.LogGroup {
  return new logs.LogGroup(scope, id, {
    retention: props.logRetention ?? COUNTER_DEFAULTS.logRetention,
    // Kept for the record, but not left behind by a failed first deployment.
    removalPolicy: props.logRemovalPolicy ?? KEEP_UNLESS_CREATE_FAILED,
  });
}

/**
 * `$.by` of the lines of applied changes (`accepted` true: no rejection, no
 * replay) → `AtomicCounter/<metricName>`: the step each change carried.
 */
export function createChangeMetricFilter(scope: Construct, logGroup: logs.ILogGroup, metricName: string): logs.MetricFilter {
  return new logs.MetricFilter(scope, 'ChangeMetricFilter', {
    logGroup,
    metricNamespace: METRIC_NAMESPACE,
    metricName,
    filterPattern: logs.FilterPattern.all(
      logs.FilterPattern.booleanValue('$.accepted', true),
      logs.FilterPattern.any(logs.FilterPattern.numberValue('$.by', '>', 0), logs.FilterPattern.numberValue('$.by', '<', 0)),
    ),
    metricValue: '$.by',
    dimensions: { [DEPLOYMENT_DIMENSION]: '$.deployment' },
  });
}

/** `$.counter` of the function's log lines → `AtomicCounter/<metricName>`, dimension `Deployment` from `$.deployment`. */
export function createMetricFilter(scope: Construct, logGroup: logs.ILogGroup, metricName: string): logs.MetricFilter {
  return new logs.MetricFilter(scope, 'CounterMetricFilter', {
    logGroup,
    metricNamespace: METRIC_NAMESPACE,
    metricName,
    // Numeric comparisons match only lines whose counter is a number (which
    // may be negative: an unconditional counter can go below zero).
    filterPattern: logs.FilterPattern.any(logs.FilterPattern.numberValue('$.counter', '>=', 0), logs.FilterPattern.numberValue('$.counter', '<', 0)),
    metricValue: '$.counter',
    // Two deployments in one account and region write apart: the log line's `deployment`.
    dimensions: { [DEPLOYMENT_DIMENSION]: '$.deployment' },
  });
}
