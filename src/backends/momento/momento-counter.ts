import { Annotations, CustomResource, Duration, Token } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { MOMENTO_CONTRACT } from './momento-contract';
import { MOMENTO_DEFAULTS, MOMENTO_ENV, MOMENTO_SCHEMA_VERSION, MOMENTO_SETUP_PROPERTIES } from './momento-env';
import { CounterBase, CounterOptions, FunctionPlacementOptions } from '../../counter-base';
import { importedSecretNameProblem } from '../../deploy-checks';
import { checkCounterFunction, checkCounterOptions, checkEgressPlacement, checkSetupFunction, createCounterFunction, createSetupResource, egressPlacement, functionTimeoutMs } from '../../private/counter-resources';
import { counterMetricNameOf } from '../../private/defaults';
import { PropsValidation } from '../../private/props';
import { claimStore, deploymentStoreName, secretIdentity } from '../../private/store-names';

/**
 * How a derived cache name is spelled: lowercase letters, digits and
 * hyphens, a subset of every spelling Momento accepts, short enough to read
 * in the console.
 */
const DERIVED_CACHE_NAME = { prefix: 'atomic-counter-', separator: '-', maxLength: 64 } as const;

/** Momento's default limit on an item's TTL (a service quota that support can raise). */
const MOMENTO_MAX_DEFAULT_TTL_SECONDS = 24 * 60 * 60;

/** Props of `MomentoCounter`. */
export interface MomentoCounterProps extends CounterOptions, FunctionPlacementOptions {
  /**
   * The Secrets Manager secret holding the Momento API key, as JSON: a v2 key
   * `{"apiKey": "…", "endpoint": "…"}` (what the Momento console issues), or
   * the legacy `momento_key_info.json` shape `{"apiKey", "refreshToken",
   * "validUntil", "restEndpoint"}`. The functions get read access to this
   * secret only; the key never appears in their environment.
   */
  readonly credentialsSecret: secretsmanager.ISecret;

  /**
   * Name of the Momento cache holding the counters (and the key records of
   * `Idempotency-Key`s). The setup custom resource creates it if it does
   * not exist; deleting the stack leaves it. Two counters that use one API
   * key must not share a cache: synth warns when two counters of one app do.
   *
   * Earlier releases defaulted to `atomic-counter` for every deployment: a
   * deployment made with one keeps its counters only by setting
   * `cacheName: 'atomic-counter'` (README, "Upgrading from a release with shared default names").
   * @default - derived from the deployment: `atomic-counter-<stack name and construct path>-<hash>` (lowercase, at most 64 characters), unique per stack name and construct path
   */
  readonly cacheName?: string;

  /**
   * TTL every write sets on a counter: a Momento counter is a cache item, so
   * it resets to 0 this long after its last increment (or earlier, if
   * evicted). Whole seconds; Momento's default per-cache limit is 24 hours.
   * @default Duration.hours(24)
   */
  readonly ttl?: Duration;

  /**
   * Compare-and-swap attempts one request may make on a contended counter
   * before answering 503 (retryable): conditional mode, changes with an
   * `Idempotency-Key`, and unconditional changes of a counter that holds
   * pending keyed changes.
   * @default 200
   */
  readonly casMaxAttempts?: number;

  /**
   * Time one request may spend on a compare-and-swap (the same cases as
   * `casMaxAttempts`) before answering 503. Must stay below `timeout`.
   * @default Duration.seconds(5)
   */
  readonly casTimeBudget?: Duration;
}

/**
 * An atomic counter on Momento Cache. Unconditional: Momento's server-side
 * `increment` by the step (one round trip). Conditional, and any change with
 * an `Idempotency-Key`: a bounded compare-and-swap loop (`get`, then
 * `setIfAbsent` / `setIfEqual`) with jittered back-off, which answers 503
 * only when its retry budget runs out, never 409 for a race; a key is bound
 * by its own cache item and recorded in the counter's item by the same
 * conditional write as the change (docs/momento.md).
 * A setup custom resource creates the cache if it does not exist.
 *
 * No VPC is needed: Momento is reached over the internet. With `vpc`, the
 * subnets must have egress to the internet (a NAT gateway), or the
 * functions cannot reach Momento.
 */
export class MomentoCounter extends CounterBase {
  /** The function serving this counter's routes. */
  public readonly counterFunction: lambda.Function;
  /** The cache holding the counters. */
  public readonly cacheName: string;
  /** The secret holding the Momento API key. */
  public readonly credentialsSecret: secretsmanager.ISecret;
  /** The function run by the setup custom resource (creates the cache). */
  public readonly setupFunction: lambda.Function;
  /** The setup custom resource (`Custom::MomentoSetup`). */
  public readonly setup: CustomResource;

  constructor(scope: Construct, id: string, props: MomentoCounterProps) {
    super(scope, id, props, MOMENTO_CONTRACT.name, counterMetricNameOf(MOMENTO_CONTRACT));
    // One cache per deployment unless told otherwise: two stacks on one API key never share counters or keys.
    this.cacheName = props.cacheName ?? deploymentStoreName(this.deployment, DERIVED_CACHE_NAME);
    const ttlSeconds = props.ttl ? props.ttl.toMilliseconds() / 1000 : MOMENTO_DEFAULTS.ttlSeconds;
    const casMaxAttempts = props.casMaxAttempts ?? MOMENTO_DEFAULTS.casMaxAttempts;
    const casBudgetMs = props.casTimeBudget?.toMilliseconds() ?? MOMENTO_DEFAULTS.casBudgetMs;
    const timeoutMs = functionTimeoutMs(props);
    const check = checkEgressPlacement(checkCounterOptions(new PropsValidation(this), props), props)
      .check(Token.isUnresolved(this.cacheName) || this.cacheName.trim() !== '', '`cacheName` must not be blank')
      .check(Token.isUnresolved(ttlSeconds) || (Number.isSafeInteger(ttlSeconds) && ttlSeconds >= 1), `\`ttl\` must be a whole number of seconds ≥ 1 (got ${ttlSeconds})`)
      .integer('casMaxAttempts', casMaxAttempts, 1)
      .problem(importedSecretNameProblem('credentialsSecret', props.credentialsSecret));
    if (!Token.isUnresolved(casBudgetMs) && timeoutMs !== undefined) {
      check.check(casBudgetMs >= 1 && casBudgetMs < timeoutMs, `\`casTimeBudget\` must be between 1 ms and the function timeout (${timeoutMs} ms); got ${casBudgetMs} ms`);
    }
    // Only the secret's ARN travels through the environment; the handler reads it once per container.
    const connectionEnv = {
      [MOMENTO_ENV.API_KEY_SECRET_ARN]: props.credentialsSecret.secretArn,
      [MOMENTO_ENV.CACHE_NAME]: this.cacheName,
    };
    const counterEnv = {
      ...connectionEnv,
      [MOMENTO_ENV.TTL_SECONDS]: String(ttlSeconds),
      [MOMENTO_ENV.CAS_MAX_ATTEMPTS]: String(casMaxAttempts),
      [MOMENTO_ENV.CAS_BUDGET_MS]: String(casBudgetMs),
    };
    checkSetupFunction(check, connectionEnv);
    checkCounterFunction(check, this, MOMENTO_CONTRACT, props, counterEnv).throwIfInvalid();
    // Key records are cache items whose TTL is the retention: Momento's
    // default account limit on an item's TTL is 24 hours (it can be raised).
    if (!Token.isUnresolved(this.idempotencyRetentionSeconds) && this.idempotencyRetentionSeconds > MOMENTO_MAX_DEFAULT_TTL_SECONDS) {
      Annotations.of(this).addWarningV2('cdk-atomic-counter:momentoRetentionAboveTtlLimit',
        `idempotencyRetention (${this.idempotencyRetentionSeconds} s) is above Momento's default 24-hour TTL limit: unless the account's limit was raised, ` +
        'every request with an Idempotency-Key will fail (500).');
    }
    this.credentialsSecret = props.credentialsSecret;
    claimStore(this, ['momento', secretIdentity(this.credentialsSecret), this.cacheName],
      `Momento cache "${this.cacheName}" of the API key in ${this.credentialsSecret.node.path}`);

    const placement = egressPlacement(props);

    // Setup: create the cache if it is missing (idempotent; Delete leaves it).
    ({ setupFunction: this.setupFunction, resource: this.setup } = createSetupResource(this, props, {
      entry: MOMENTO_CONTRACT.bundles.setup,
      description: 'Creates the Momento cache of the atomic counter if it does not exist',
      resourceType: 'Custom::MomentoSetup',
      // A new schema revision re-runs the setup on an existing stack's next deployment.
      properties: { [MOMENTO_SETUP_PROPERTIES.CACHE_NAME]: this.cacheName, [MOMENTO_SETUP_PROPERTIES.SCHEMA]: MOMENTO_SCHEMA_VERSION },
      environment: connectionEnv,
      secret: this.credentialsSecret,
      ...placement,
    }));

    this.counterFunction = createCounterFunction(this, MOMENTO_CONTRACT, props, {
      description: 'Atomic counter on Momento Cache (increment; conditional: compare-and-swap)',
      environment: counterEnv,
      secret: this.credentialsSecret,
      after: this.setup, // the counter answers only once the cache exists
      ...placement,
    });
  }
}
