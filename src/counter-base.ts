import * as path from 'path';
import { CustomResource, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, IConstruct } from 'constructs';
import { COMMON_ENV, MODE_DEFAULTS } from './counter-env';
import { checkEnvironmentSize } from './deploy-checks';
import { validateWorstCase } from './worst-case';

/** Namespace of every counter metric. */
export const METRIC_NAMESPACE = 'AtomicCounter';

/**
 * A counter behind one route of the API: what `AtomicCounterApi.addCounter`
 * needs, and what users attach alarms and grants to.
 */
export interface ICounter {
  /** Route segment: `dynamo`, `redis`, `momento`, `docdb` or `tidb`. */
  readonly backend: string;
  /** The function that serves `POST` and `GET /{backend}/{id}`. */
  readonly counterFunction: lambda.IFunction;
  /** The function's log group (explicit, with a retention). */
  readonly logGroup: logs.ILogGroup;
  /** Turns `$.counter` of each request's log line into a metric. */
  readonly metricFilter: logs.MetricFilter;
  /** The counter metric in namespace `AtomicCounter` (maximum of `$.counter`). */
  readonly counterMetric: string;
  /**
   * Dimensions of the counter metric, e.g. `{ Deployment: "<stack>/<path>" }`,
   * so two deployments in one account and region keep apart.
   * @default - no dimensions
   */
  readonly counterMetricDimensions?: { [name: string]: string };
}

/** Name of the counter metric's dimension that identifies the deployment. */
export const DEPLOYMENT_DIMENSION = 'Deployment';

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

/** Props every counter construct accepts. */
export interface CounterOptions {
  /**
   * Increment only while the value is below `maxCounterValue`; once there,
   * answer 409 `LIMIT_REACHED` and write nothing.
   * @default false
   */
  readonly conditionalWrites?: boolean;

  /**
   * The maximum in conditional mode (an integer ≥ 1). Ignored otherwise.
   * @default 10
   */
  readonly maxCounterValue?: number;

  /**
   * How long the function's logs are kept.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * What happens to the function's log group when it leaves the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly logRemovalPolicy?: RemovalPolicy;

  /**
   * Memory of the counter function, in MiB.
   * @default 256
   */
  readonly memorySize?: number;

  /**
   * Timeout of the counter function: at most 25 seconds, so an answer always
   * reaches API Gateway before its 29-second integration limit.
   * @default Duration.seconds(10)
   */
  readonly timeout?: Duration;

  /**
   * Lambda architecture: every handler is plain JavaScript.
   * @default lambda.Architecture.ARM_64
   */
  readonly architecture?: lambda.Architecture;

  /**
   * Lambda runtime of the counter function and of the setup function (if
   * the backend has one). The bundles target Node.js 24; an older runtime
   * may not run them.
   * @default lambda.Runtime.NODEJS_24_X
   */
  readonly runtime?: lambda.Runtime;

  /**
   * Ship each bundle's source map with its function and set
   * `NODE_OPTIONS=--enable-source-maps`, so stack traces name TypeScript
   * lines. Off by default: the flag slows module load (a cold start) and
   * every error stack, and the map is downloaded on every cold start.
   * @default false
   */
  readonly sourceMaps?: boolean;
}

/** The resolved mode of a counter. */
export interface CounterMode {
  /** Increment only while below `maxCounterValue`. */
  readonly conditionalWrites: boolean;
  /** The maximum in conditional mode. */
  readonly maxCounterValue: number;
}

/** Defaults, in one place (README "Default settings" mirrors this). */
export const COUNTER_DEFAULTS = {
  ...MODE_DEFAULTS,
  logRetention: logs.RetentionDays.ONE_MONTH,
  memorySize: 256,
  timeoutSeconds: 10,
  maxTimeoutSeconds: 25,
  runtime: lambda.Runtime.NODEJS_24_X,
  architecture: lambda.Architecture.ARM_64,
} as const;

/** Validates and fills in the mode props. */
export function resolveMode(props: CounterOptions): CounterMode {
  const maxCounterValue = props.maxCounterValue ?? COUNTER_DEFAULTS.maxCounterValue;
  if (!Token.isUnresolved(maxCounterValue) && (!Number.isSafeInteger(maxCounterValue) || maxCounterValue < 1)) {
    throw new Error(`maxCounterValue must be an integer ≥ 1 (got ${maxCounterValue})`);
  }
  return { conditionalWrites: props.conditionalWrites ?? COUNTER_DEFAULTS.conditionalWrites, maxCounterValue };
}

/**
 * Where projen's esbuild step puts the bundle of a Lambda entry:
 * `assets/<entry path below src/, without .ts>/index.js`. The same relative
 * path works from `src/` (tests) and from `lib/` (the published package).
 */
export function bundledHandlerPath(entry: string): string {
  return path.join(__dirname, '..', 'assets', entry);
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

/** Where a function runs: in a VPC (with subnets and security groups) or not. */
export interface FunctionPlacement {
  /**
   * The VPC to run the function in.
   * @default - not in a VPC
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of `vpc` for the function (only with `vpc`).
   * @default - the VPC's default selection (private subnets with egress)
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the function (only with `vpc`).
   * @default - one security group allowing all outbound traffic
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
}

/** What a backend tells `CounterBase` about its function. */
export interface CounterFunctionOptions extends FunctionPlacement {
  /** Bundle directory below `assets/`, e.g. `backends/dynamo/runtime/dynamo-counter.lambda`. */
  readonly entry: string;
  /** The backend's own environment (its env contract); mode variables are added here. */
  readonly environment: { [key: string]: string };
  /** The function's description. */
  readonly description: string;
}

/**
 * Placement for a backend reached over the internet (Momento, TiDB Cloud):
 * no VPC unless one is given, and then private subnets with egress by default.
 */
export function egressPlacement(props: FunctionPlacement): FunctionPlacement {
  return props.vpc
    ? { vpc: props.vpc, vpcSubnets: props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }, securityGroups: props.securityGroups }
    : {};
}

/** What a backend tells `CounterBase` about its setup step. */
export interface SetupResourceOptions extends FunctionPlacement {
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
  /**
   * Read access to this secret is granted to the setup function.
   * @default - no secret
   */
  readonly secret?: secretsmanager.ISecret;
  /**
   * Timeout of the setup function.
   * @default Duration.minutes(1)
   */
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
 * What every backend construct shares: the function defaults (runtime,
 * timeout bound, explicit log group), the mode variables and the metric
 * filter on the function's own log group.
 */
export abstract class CounterBase extends Construct implements ICounter {
  public abstract readonly backend: string;
  public abstract readonly counterFunction: lambda.IFunction;
  public abstract readonly logGroup: logs.ILogGroup;
  public abstract readonly metricFilter: logs.MetricFilter;
  public abstract readonly counterMetric: string;
  /** Conditional or unconditional writes, and the maximum. */
  public readonly mode: CounterMode;
  /** `<stack name>/<construct path>`: the `Deployment` dimension of the counter metric. */
  public readonly deployment: string;
  /** `{ Deployment: deployment }`. */
  public readonly counterMetricDimensions?: { [name: string]: string };

  protected constructor(scope: Construct, id: string, protected readonly options: CounterOptions) {
    super(scope, id);
    this.mode = resolveMode(options);
    this.deployment = deploymentName(this);
    this.counterMetricDimensions = { [DEPLOYMENT_DIMENSION]: this.deployment };
    const timeout = options.timeout?.toSeconds() ?? COUNTER_DEFAULTS.timeoutSeconds;
    if (!Token.isUnresolved(timeout) && timeout > COUNTER_DEFAULTS.maxTimeoutSeconds) {
      throw new Error(`timeout must be at most ${COUNTER_DEFAULTS.maxTimeoutSeconds} seconds (API Gateway gives up after 29 s); got ${timeout}`);
    }
  }

  /** Creates the counter function, logging to `logGroup` (see `createLogGroup`). */
  protected createCounterFunction(props: CounterFunctionOptions, logGroup: logs.ILogGroup): lambda.Function {
    const environment = {
      ...props.environment,
      [COMMON_ENV.USE_CONDITIONAL_WRITES]: String(this.mode.conditionalWrites),
      [COMMON_ENV.MAX_COUNTER_VALUE]: String(this.mode.maxCounterValue),
      [COMMON_ENV.DEPLOYMENT]: this.deployment,
      ...sourceMapEnvironment(this.options),
    };
    checkEnvironmentSize(`${this.node.path}: the counter function`, environment);
    // The store's worst case (its env contract's timeouts and retries) must fit the function timeout: 503, never 502.
    const timeoutSeconds = this.options.timeout?.toSeconds() ?? COUNTER_DEFAULTS.timeoutSeconds;
    validateWorstCase(this, this.backend, environment, Token.isUnresolved(timeoutSeconds) ? undefined : timeoutSeconds);
    return new lambda.Function(this, 'Function', {
      description: props.description,
      runtime: this.options.runtime ?? COUNTER_DEFAULTS.runtime,
      architecture: this.options.architecture ?? COUNTER_DEFAULTS.architecture,
      handler: 'index.handler',
      code: bundledHandlerCode(props.entry, this.options),
      memorySize: this.options.memorySize ?? COUNTER_DEFAULTS.memorySize,
      timeout: this.options.timeout ?? Duration.seconds(COUNTER_DEFAULTS.timeoutSeconds),
      logGroup,
      vpc: props.vpc,
      vpcSubnets: props.vpc ? props.vpcSubnets : undefined,
      securityGroups: props.vpc ? props.securityGroups : undefined,
      environment,
    });
  }

  /**
   * A backend's setup step (schema, index, cache) as a custom resource run
   * by aws-cdk-lib's Provider framework: Create and Update run the setup,
   * Delete leaves the data. The framework function logs to the same
   * explicit log group as the setup function.
   */
  protected createSetupResource(options: SetupResourceOptions): SetupResources {
    checkEnvironmentSize(`${this.node.path}: the setup function`, options.environment);
    const logGroup = this.createLogGroup('SetupLogGroup');
    const setupFunction = new lambda.Function(this, 'SetupFunction', {
      description: options.description,
      runtime: this.options.runtime ?? COUNTER_DEFAULTS.runtime,
      architecture: this.options.architecture ?? COUNTER_DEFAULTS.architecture,
      handler: 'index.handler',
      code: bundledHandlerCode(options.entry, this.options),
      memorySize: 256,
      timeout: options.timeout ?? Duration.minutes(1),
      logGroup,
      environment: { ...options.environment, ...sourceMapEnvironment(this.options) },
      vpc: options.vpc,
      vpcSubnets: options.vpc ? options.vpcSubnets : undefined,
      securityGroups: options.vpc ? options.securityGroups : undefined,
    });
    options.secret?.grantRead(setupFunction);
    const provider = new cr.Provider(this, 'SetupProvider', { onEventHandler: setupFunction, logGroup });
    const resource = new CustomResource(this, 'Setup', {
      serviceToken: provider.serviceToken,
      resourceType: options.resourceType,
      properties: options.properties,
    });
    return { setupFunction, resource };
  }

  /** An explicit log group with the counter's retention (also used by setup functions). */
  protected createLogGroup(id: string): logs.LogGroup {
    return new logs.LogGroup(this, id, {
      retention: this.options.logRetention ?? COUNTER_DEFAULTS.logRetention,
      removalPolicy: this.options.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
  }

  /** `$.counter` of the function's log lines → `AtomicCounter/<metricName>`, dimension `Deployment` from `$.deployment`. */
  protected createMetricFilter(logGroup: logs.ILogGroup, metricName: string): logs.MetricFilter {
    return new logs.MetricFilter(this, 'CounterMetricFilter', {
      logGroup,
      metricNamespace: METRIC_NAMESPACE,
      metricName,
      // A numeric comparison matches only lines whose counter is a number.
      filterPattern: logs.FilterPattern.numberValue('$.counter', '>=', 0),
      metricValue: '$.counter',
      // Two deployments in one account and region write apart: the log line's `deployment`.
      dimensions: { [DEPLOYMENT_DIMENSION]: '$.deployment' },
    });
  }
}
