import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { createChangeMetricFilter, createLogGroup, createMetricFilter, deploymentName, resolveMode } from './private/counter-resources';
import { changeMetricNameOf, DEPLOYMENT_DIMENSION, METRIC_NAMESPACE } from './private/defaults';

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
  /** Name of the counter metric in namespace `AtomicCounter`, e.g. `DynamoAtomicCounter`. */
  readonly counterMetricName: string;
  /**
   * Dimensions of the counter metric, e.g. `{ Deployment: "<stack>/<path>" }`,
   * so two deployments in one account and region keep apart.
   * @default - no dimensions
   */
  readonly counterMetricDimensions?: { [name: string]: string };

  /**
   * The counter value: `$.counter` of each request's log line, this
   * deployment's series only, statistic Maximum (over 5 minutes unless
   * `props.period` says otherwise). Use it for alarms and graphs.
   */
  metricCounterValue(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
}

/** Props every counter construct accepts. */
export interface CounterOptions {
  /**
   * Keep the value within [0, `maxCounterValue`]: a change that would pass
   * the maximum answers 409 `LIMIT_REACHED`, one that would go below 0
   * answers 409 `FLOOR_REACHED`, and neither writes anything. Without it
   * every change is applied (a counter may go below zero).
   * @default false
   */
  readonly conditionalWrites?: boolean;

  /**
   * The maximum in conditional mode (an integer ≥ 1). Ignored otherwise.
   * @default 10
   */
  readonly maxCounterValue?: number;

  /**
   * Shard records per counter id (an integer from 1 to 64), for an id hotter
   * than one item, key, document or row can take (README, "Sharded
   * counters"). With more than 1 a change goes to one shard and its `200`
   * answer carries `shards` instead of the total (read it with `GET`);
   * conditional mode still keeps the total within [0, `maxCounterValue`],
   * and an `Idempotency-Key` still applies a change once. It may be changed
   * on a live counter, up or down. Every backend implements it (Momento,
   * which has no multi-item write, rejects a step larger than 1 when no
   * single shard can take it: docs/momento.md).
   * @default 1
   */
  readonly shards?: number;

  /**
   * How long an `Idempotency-Key` is remembered after its change was
   * applied: a request repeating the key within this window applies nothing
   * and answers what the first one answered; after it the key is new again.
   * Whole seconds, at least 1 second. Momento keeps keys inside the counter's
   * cache item, so there the window is also bounded by the item's TTL (see
   * the Momento page of the docs).
   * @default Duration.hours(24)
   */
  readonly idempotencyRetention?: Duration;

  /**
   * How long the function's logs are kept.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * What happens to the function's (and the setup function's) log group
   * when it leaves the stack.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE - kept, except when the deployment that created it rolls back
   */
  readonly logRemovalPolicy?: RemovalPolicy;

  /**
   * Reserved concurrency of the counter function: the most requests it
   * serves at once, hence the most containers (and datastore connections)
   * it opens; past it Lambda throttles, and the API answers the contract's
   * `503` with `Retry-After`. The reservation is taken from the account's
   * concurrency in the region, of which Lambda always keeps 100 unreserved:
   * a new account whose quota is below the total plus 100 cannot deploy it
   * (raise the quota, or set 0). `0` reserves nothing: the function draws on
   * the account's unreserved pool without a cap (it does not stop the
   * function, as Lambda's own `ReservedConcurrentExecutions: 0` would).
   * Synth warns when the counters of one app reserve more than a default
   * account allows (900).
   * @default - the backend's: 200 for DocumentDB (derived from the smallest instance class's 500 connections); none for DynamoDB, Redis, Momento and TiDB (README, "Reserved concurrency")
   */
  readonly reservedConcurrency?: number;

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

/**
 * Where the functions of a counter whose store is reached over the internet
 * (`MomentoCounter`, `TiDbCounter`) run: outside any VPC unless `vpc` is
 * given. The counter's class documentation says what its subnets must reach.
 */
export interface FunctionPlacementOptions {
  /**
   * A VPC to run the counter and setup functions in. Its subnets need egress
   * to the store's endpoint (a NAT gateway for a public endpoint) and to
   * Secrets Manager.
   * @default - no VPC: the functions reach the store's public endpoint
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Subnets of `vpc` for the functions (only with `vpc`).
   * @default - private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Security groups of the functions (only with `vpc`).
   * @default - one security group per function, all outbound traffic allowed
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
}

/**
 * The endpoint of a datastore that already exists (bring your own cluster):
 * `existingEndpoint` of `RedisCounter` and `DocDbCounter`.
 */
export interface ExistingEndpoint {
  /**
   * Host name of the endpoint that takes writes: a Redis primary endpoint, a
   * DocumentDB cluster endpoint (never a reader or instance endpoint).
   */
  readonly hostname: string;

  /**
   * Port of the endpoint.
   * @default - the engine's port: 6379 for Redis, 27017 for DocumentDB
   */
  readonly port?: number;

  /**
   * Security group of the endpoint: ingress on `port` from the counter's
   * `functionSecurityGroup` is added to it.
   * @default - no rule is added; admit `functionSecurityGroup` yourself
   */
  readonly securityGroup?: ec2.ISecurityGroup;
}

/**
 * What every counter construct shares: the `ICounter` members, the write
 * mode, the function's log group and the counter metric (its filter and
 * `metricCounterValue`).
 *
 * `counterFunction` stays abstract here so each backend can declare it with
 * the concrete type it creates (`lambda.Function`): jsii lets a subclass
 * narrow an inherited property's type, but not a class narrow the interface
 * it implements.
 *
 * Exported because the concrete counters (`DynamoCounter`, …) extend it;
 * it is not meant to be extended outside this library: a new backend needs
 * a bundled handler and an environment contract that only the library
 * ships. Implement `ICounter` to serve a counter of your own.
 */
export abstract class CounterBase extends Construct implements ICounter {
  public readonly backend: string;
  public readonly counterMetricName: string;
  public readonly logGroup: logs.ILogGroup;
  public readonly metricFilter: logs.MetricFilter;
  /** Turns `$.by` of each applied change's log line into the change metric (`metricCounterChange`). */
  public readonly changeMetricFilter: logs.MetricFilter;
  public abstract readonly counterFunction: lambda.IFunction;
  /** Whether the counter increments only while below `maxCounterValue`. */
  public readonly conditionalWrites: boolean;
  /** The maximum in conditional mode. */
  public readonly maxCounterValue: number;
  /** Shard records per counter id (1: unsharded). */
  public readonly shards: number;
  /** How long an `Idempotency-Key` is remembered, in seconds. */
  public readonly idempotencyRetentionSeconds: number;
  /** `<stack name>/<construct path>`: the `Deployment` dimension of the counter metric. */
  public readonly deployment: string;
  /** `{ Deployment: deployment }`. */
  public readonly counterMetricDimensions?: { [name: string]: string };

  /**
   * The backend's facts come from its contract (`src/backends/<b>/<b>-contract.ts`),
   * which each counter passes here and to `createCounterFunction`: the base
   * knows no backend by name.
   * @param backend the route segment, e.g. `dynamo`
   * @param counterMetricName the counter metric's name, e.g. `DynamoAtomicCounter` (the change metric adds `Change`)
   */
  protected constructor(scope: Construct, id: string, options: CounterOptions, backend: string, counterMetricName: string) {
    super(scope, id);
    this.backend = backend;
    this.counterMetricName = counterMetricName;
    ({
      conditionalWrites: this.conditionalWrites,
      maxCounterValue: this.maxCounterValue,
      shards: this.shards,
      idempotencyRetentionSeconds: this.idempotencyRetentionSeconds,
    } = resolveMode(options));
    this.deployment = deploymentName(this);
    this.counterMetricDimensions = { [DEPLOYMENT_DIMENSION]: this.deployment };
    // Neither depends on the backend: the subclass's function logs to this group.
    this.logGroup = createLogGroup(this, 'LogGroup', options);
    this.metricFilter = createMetricFilter(this, this.logGroup, this.counterMetricName);
    this.changeMetricFilter = createChangeMetricFilter(this, this.logGroup, changeMetricNameOf(counterMetricName));
  }

  /**
   * The counter value in namespace `AtomicCounter` (`counterMetricName`,
   * dimension `Deployment`): the highest `$.counter` logged in the period.
   * Use it for alarms and graphs, e.g. an alarm when a conditional counter
   * nears its maximum. Statistic Maximum and a 5-minute period unless
   * `props` says otherwise.
   */
  public metricCounterValue(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRIC_NAMESPACE,
      metricName: this.counterMetricName,
      dimensionsMap: this.counterMetricDimensions,
      statistic: cloudwatch.Stats.MAXIMUM,
      ...props,
    });
  }

  /**
   * The applied changes: `$.by` of each request that changed the counter
   * (not of a rejection or of a replayed Idempotency-Key), in namespace
   * `AtomicCounter` (`<Backend>AtomicCounterChange`, dimension `Deployment`).
   * Statistic Sum (the net change in the period) and a 5-minute period
   * unless `props` says otherwise; SampleCount is the number of changes.
   */
  public metricCounterChange(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRIC_NAMESPACE,
      metricName: changeMetricNameOf(this.counterMetricName),
      dimensionsMap: this.counterMetricDimensions,
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }
}
