import { Annotations, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { DocDbCounter, DocDbCounterProps } from './backends/docdb/docdb-counter';
import { DynamoCounter, DynamoCounterProps } from './backends/dynamo/dynamo-counter';
import { MomentoCounter, MomentoCounterProps } from './backends/momento/momento-counter';
import { RedisCounter, RedisCounterProps } from './backends/redis/redis-counter';
import { TiDbCounter, TiDbCounterProps } from './backends/tidb/tidb-counter';
import { CounterOptions, ICounter } from './counter-base';
import { deploymentName } from './private/counter-resources';
import { USAGE_PLAN_DEFAULTS } from './private/defaults';
import { PropsValidation, stripUndefined } from './private/props';

/** Throttle and quota of the API's usage plan. */
export interface UsagePlanLimits {
  /**
   * Steady-state requests per second across the API key.
   * @default 100
   */
  readonly rateLimit?: number;
  /**
   * Burst of requests above the steady rate.
   * @default 200
   */
  readonly burstLimit?: number;
  /**
   * Requests allowed per quota period; 0 disables the quota.
   * @default 1000000
   */
  readonly quotaLimit?: number;
  /**
   * The quota period.
   * @default apigw.Period.MONTH
   */
  readonly quotaPeriod?: apigw.Period;
}

/** Props of `AtomicCounterApi`. */
export interface AtomicCounterApiProps {
  /**
   * Default mode for the counters the API creates from props
   * (`dynamo`, …); a backend's own props override it.
   * @default false
   */
  readonly conditionalWrites?: boolean;
  /**
   * Default maximum for the counters the API creates from props.
   * @default 10
   */
  readonly maxCounterValue?: number;
  /**
   * Default shard count for the counters the API creates from props
   * (`CounterOptions.shards`).
   * @default 1
   */
  readonly shards?: number;
  /**
   * Default `Idempotency-Key` retention for the counters the API creates
   * from props.
   * @default Duration.hours(24)
   */
  readonly idempotencyRetention?: Duration;
  /**
   * Create a DynamoDB counter at `/dynamo/{id}` with these props.
   * @default - no DynamoDB counter (attach one with `addCounter`)
   */
  readonly dynamo?: DynamoCounterProps;
  /**
   * Create an ElastiCache Redis counter at `/redis/{id}` with these props
   * (its `vpc` is required).
   * @default - no Redis counter
   */
  readonly redis?: RedisCounterProps;
  /**
   * Create a Momento counter at `/momento/{id}` with these props (its
   * `credentialsSecret` is required).
   * @default - no Momento counter
   */
  readonly momento?: MomentoCounterProps;
  /**
   * Create a DocumentDB counter at `/docdb/{id}` with these props (its `vpc`
   * is required).
   * @default - no DocumentDB counter
   */
  readonly docdb?: DocDbCounterProps;
  /**
   * Create a TiDB counter at `/tidb/{id}` with these props (its
   * `credentialsSecret` is required).
   * @default - no TiDB counter
   */
  readonly tidb?: TiDbCounterProps;
  /**
   * Name of the REST API, the `ApiName` dimension of its CloudWatch metrics
   * (the dashboard's API row): unique per account and region by default, so
   * two deployments do not share graphs.
   * @default - `<stack name>-<construct path below the stack>`, e.g. `AtomicCounterExample-Api`
   */
  readonly restApiName?: string;
  /**
   * Name of the deployment stage.
   * @default "prod"
   */
  readonly stageName?: string;
  /**
   * Throttle and quota of the usage plan bound to the API key.
   * @default - 100 requests/s, burst 200, 1,000,000 requests a month
   */
  readonly usagePlan?: UsagePlanLimits;
  /**
   * Retention of the stage's access log and execution log.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly accessLogRetention?: logs.RetentionDays;

  /**
   * Set the account's API Gateway CloudWatch Logs role in this region: an IAM
   * role (`AmazonAPIGatewayPushToCloudWatchLogs`) and the
   * `AWS::ApiGateway::Account` setting pointing at it, both retained when the
   * stack is deleted (other APIs of the account rely on the setting). Without
   * that setting, CloudFormation rejects a stage with access logging in an
   * account and region where it was never set. Set `false` where the setting
   * is managed centrally (one per account and region; the last stack to set it
   * wins): synth then warns that it is a prerequisite.
   * @default true
   */
  readonly cloudWatchRole?: boolean;
}

/**
 * Body of every 5XX API Gateway answers by itself (the function never ran, or
 * its answer never came back): the handler's own 503 `BACKEND_UNAVAILABLE`
 * body (`errorResponse` in src/runtime/http.ts, without the optional
 * `backend`, which a gateway response cannot know). The runtime is bundled,
 * not compiled into the library, hence the copy; a test keeps the two equal.
 */
const GATEWAY_UNAVAILABLE_BODY = '{"code":"BACKEND_UNAVAILABLE","error":"Backend unavailable, retry later"}';

/** `Retry-After` of the gateway's 503s, in seconds: the handler's own default. */
const GATEWAY_RETRY_AFTER_SECONDS = 1;

/**
 * The API Gateway answers that would otherwise reach a client as
 * `500/502/504 {"message":"Internal server error"}` (or `"Endpoint request
 * timed out"`), outside the HTTP contract, and why each happens (AWS:
 * "Gateway response types for API Gateway" and Lambda's "Handling Lambda
 * errors with an API Gateway API"):
 *
 * - `INTEGRATION_FAILURE` (default 504): Lambda's Invoke API refused the
 *   call: the function is throttled (429 `TooManyRequestsException`: reserved
 *   or account concurrency exhausted), or Lambda itself failed. API Gateway
 *   answers 500 for these today.
 * - `INTEGRATION_TIMEOUT` (default 504): no answer within the integration
 *   timeout (29 s). Our functions answer well before (timeout ≤ 25 s, worst
 *   case checked at synth), so this means the function never answered.
 * - `DEFAULT_5XX`: every other 5XX API Gateway generates, among them the 502
 *   for a function error (an init crash, a runtime timeout, an out-of-memory
 *   kill: the handler never wrote its answer).
 *
 * Each answers the contract's 503 with `Retry-After`. The access log's
 * `responseType`, `integrationError` and `integrationServiceStatus` tell them
 * apart (docs/operations.md).
 */
const GATEWAY_UNAVAILABLE_RESPONSES: ReadonlyArray<{ readonly id: string; readonly type: apigw.ResponseType }> = [
  { id: 'IntegrationFailure', type: apigw.ResponseType.INTEGRATION_FAILURE },
  { id: 'IntegrationTimeout', type: apigw.ResponseType.INTEGRATION_TIMEOUT },
  { id: 'Default5xx', type: apigw.ResponseType.DEFAULT_5XX },
];

/**
 * The stage's access log line: aws-cdk-lib's standard JSON fields plus what
 * tells an answer API Gateway produced itself from the function's own one.
 * Values are substituted without JSON escaping; the error messages come from
 * API Gateway and Lambda, not from the client.
 */
function accessLogFormat(): apigw.AccessLogFormat {
  const standard = JSON.parse(apigw.AccessLogFormat.jsonWithStandardFields().toString()) as Record<string, string>;
  return apigw.AccessLogFormat.custom(JSON.stringify({
    ...standard,
    // Set when API Gateway answered by itself: the gateway response type
    // (INTEGRATION_FAILURE, INTEGRATION_TIMEOUT, THROTTLED, QUOTA_EXCEEDED, …) and its message.
    responseType: '$context.error.responseType',
    errorMessage: '$context.error.message',
    // The status the function's own answer carried (Lambda proxy), e.g. 503 from the handler.
    integrationStatus: '$context.integration.status',
    // The status Lambda's Invoke API returned: 200, or 429 when the function was throttled.
    integrationServiceStatus: '$context.integration.integrationStatus',
    integrationError: '$context.integration.error',
    integrationErrorMessage: '$context.integrationErrorMessage',
    integrationLatency: '$context.integration.latency',
    // Lambda's request id: the function's log lines for this request carry it.
    integrationRequestId: '$context.integration.requestId',
    responseLatency: '$context.responseLatency',
    // What the REST API's security policy let through.
    tlsVersion: '$context.tlsVersion',
  }));
}

/**
 * The REST API's TLS security policy: TLS 1.3 and 1.2, forward-secret
 * suites only, with post-quantum hybrid key exchange where the client offers
 * it (AWS: "Supported security policies", regional and private APIs). TLS 1.0
 * and 1.1 are refused.
 */
const REST_API_SECURITY_POLICY = apigw.SecurityPolicy.TLS13_1_2_PFS_PQ_2025_09;

/** Body of the 404 that replaces API Gateway's 403 "Missing Authentication Token". */
// API Gateway substitutes $context variables verbatim (no JSON escaping): a
// path holding a `"` would break the body, so it embeds none.
const NOT_FOUND_BODY = '{"code":"NOT_FOUND","error":"No such route"}';

/**
 * An API Gateway REST API serving `POST` (increment) and `GET` (read)
 * `/{backend}/{id}` for each counter, every method behind an API key bound
 * to a usage plan. Unknown routes and methods answer 404 `NOT_FOUND`.
 */
export class AtomicCounterApi extends Construct {
  /** The REST API. */
  public readonly restApi: apigw.RestApi;
  /** The API key every method requires (`x-api-key`). */
  public readonly apiKey: apigw.IApiKey;
  /** The usage plan bound to the key and the stage. */
  public readonly usagePlan: apigw.UsagePlan;
  /** The stage's access log. */
  public readonly accessLogGroup: logs.LogGroup;
  /**
   * The stage's execution log (level ERROR): API Gateway's own lines about
   * failures outside the handler, in the log group it writes to
   * (`API-Gateway-Execution-Logs_<API id>/<stage>`), created with the access
   * log's retention.
   */
  public readonly executionLogGroup: logs.LogGroup;
  /** The DynamoDB counter, when created from props. */
  public readonly dynamoCounter?: DynamoCounter;
  /** The Redis counter, when created from props. */
  public readonly redisCounter?: RedisCounter;
  /** The Momento counter, when created from props. */
  public readonly momentoCounter?: MomentoCounter;
  /** The DocumentDB counter, when created from props. */
  public readonly docdbCounter?: DocDbCounter;
  /** The TiDB counter, when created from props. */
  public readonly tidbCounter?: TiDbCounter;

  private readonly counterDefaults: CounterOptions;
  private readonly validator: apigw.RequestValidator;
  private readonly served = new Map<string, ICounter>();

  constructor(scope: Construct, id: string, props: AtomicCounterApiProps = {}) {
    super(scope, id);
    this.counterDefaults = stripUndefined({
      conditionalWrites: props.conditionalWrites,
      maxCounterValue: props.maxCounterValue,
      shards: props.shards,
      idempotencyRetention: props.idempotencyRetention,
    });

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.accessLogRetention ?? logs.RetentionDays.ONE_MONTH,
    });
    const cloudWatchRole = props.cloudWatchRole ?? true;
    const stageName = props.stageName ?? 'prod';
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      restApiName: props.restApiName ?? deploymentName(this, '-'),
      description: 'Atomic counter API (cdk-atomic-counter)',
      deployOptions: {
        stageName,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: accessLogFormat(),
        // Execution logging at ERROR only: API Gateway's own account of a
        // failure outside the handler ("Lambda invocation failed with status:
        // 429", "Execution failed due to configuration error: …"), one line per
        // failed request, no request or response data.
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        tracingEnabled: false,
      },
      endpointTypes: [apigw.EndpointType.REGIONAL],
      // The account's CloudWatch Logs role for API Gateway: access logging
      // (not only execution logging) needs it. Retained: other APIs use it too.
      cloudWatchRole,
      cloudWatchRoleRemovalPolicy: cloudWatchRole ? RemovalPolicy.RETAIN : undefined,
    });
    // API Gateway writes execution logs to a log group of this fixed name,
    // creating it (without a retention) if it does not exist: create it first,
    // with the access log's retention.
    this.executionLogGroup = new logs.LogGroup(this, 'ExecutionLogs', {
      logGroupName: `API-Gateway-Execution-Logs_${this.restApi.restApiId}/${stageName}`,
      retention: props.accessLogRetention ?? logs.RetentionDays.ONE_MONTH,
    });
    this.restApi.deploymentStage.node.addDependency(this.executionLogGroup);
    // TLS 1.2 or 1.3 only, on the API's own execute-api endpoint. A REST API
    // without a custom domain used to take no security policy at all (a new
    // regional API gets the legacy TLS_1_0); API Gateway's enhanced policies
    // (SecurityPolicy_…) apply to the API itself and require an endpoint
    // access mode. STRICT also rejects requests whose SNI host is not this
    // API's (domain fronting). aws-cdk-lib 2.259's RestApi has no prop for
    // either, hence the L1 properties. Upgrading a deployed API: docs/operations.md.
    const cfnRestApi = this.restApi.node.defaultChild as apigw.CfnRestApi;
    cfnRestApi.securityPolicy = REST_API_SECURITY_POLICY;
    cfnRestApi.endpointAccessMode = apigw.EndpointAccessMode.STRICT;
    // RestApi always adds a CfnOutput (`Endpoint`) to the stack; a library
    // leaves a stack's outputs to its owner (`url` and `apiKey` are exposed).
    this.restApi.node.tryRemoveChild('Endpoint');
    if (!cloudWatchRole) {
      Annotations.of(this).addWarningV2('@cdk-atomic-counter/api:cloudWatchRole',
        'cloudWatchRole is false: the stage\'s access logging needs the API Gateway CloudWatch Logs role set once per account and region ' +
        '(aws apigateway update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=<role ARN>, the role trusting apigateway.amazonaws.com ' +
        'with AmazonAPIGatewayPushToCloudWatchLogs); without it the deployment fails with "CloudWatch Logs role ARN must be set in account settings to enable logging"');
    }
    // Unknown resources and methods get API Gateway's 403 "Missing
    // Authentication Token"; answer what our contract says instead.
    this.restApi.addGatewayResponse('NotFound', {
      type: apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
      statusCode: '404',
      templates: { 'application/json': NOT_FOUND_BODY },
    });
    // Failures outside the handler answer the contract's 503 instead of API
    // Gateway's bare 500/502/504 (see GATEWAY_UNAVAILABLE_RESPONSES).
    for (const { id: responseId, type } of GATEWAY_UNAVAILABLE_RESPONSES) {
      this.restApi.addGatewayResponse(responseId, {
        type,
        statusCode: '503',
        responseHeaders: { 'Retry-After': `'${GATEWAY_RETRY_AFTER_SECONDS}'` },
        templates: { 'application/json': GATEWAY_UNAVAILABLE_BODY },
      });
    }
    this.validator = this.restApi.addRequestValidator('PathValidator', {
      requestValidatorName: 'id-path-parameter',
      validateRequestParameters: true,
    });

    const limits = { ...USAGE_PLAN_DEFAULTS, ...stripUndefined(props.usagePlan ?? {}) };
    const check = new PropsValidation(this);
    for (const [name, value] of Object.entries({ rateLimit: limits.rateLimit, burstLimit: limits.burstLimit, quotaLimit: limits.quotaLimit })) {
      check.number(`usagePlan.${name}`, value, 0);
    }
    check.throwIfInvalid();
    this.apiKey = this.restApi.addApiKey('ApiKey', { description: 'Key for the atomic counter API' });
    this.usagePlan = this.restApi.addUsagePlan('UsagePlan', {
      description: 'Throttle and quota for the atomic counter API',
      throttle: { rateLimit: limits.rateLimit, burstLimit: limits.burstLimit },
      quota: limits.quotaLimit > 0 ? { limit: limits.quotaLimit, period: limits.quotaPeriod } : undefined,
      apiStages: [{ stage: this.restApi.deploymentStage }],
    });
    this.usagePlan.addApiKey(this.apiKey);

    // Counters from props: the API-level mode is the default, a backend's own props win.
    const withDefaults = <T extends CounterOptions>(backendProps: T): T => ({ ...this.counterDefaults, ...stripUndefined(backendProps) });
    // Creates a backend's counter only when its props are given, and serves it.
    const served = <P extends CounterOptions, C extends ICounter>(backendProps: P | undefined, create: (p: P) => C): C | undefined => {
      if (backendProps === undefined) return undefined;
      const counter = create(withDefaults(backendProps));
      this.addCounter(counter);
      return counter;
    };
    this.dynamoCounter = served(props.dynamo, (p) => new DynamoCounter(this, 'DynamoCounter', p));
    this.redisCounter = served(props.redis, (p) => new RedisCounter(this, 'RedisCounter', p));
    this.momentoCounter = served(props.momento, (p) => new MomentoCounter(this, 'MomentoCounter', p));
    this.docdbCounter = served(props.docdb, (p) => new DocDbCounter(this, 'DocDbCounter', p));
    this.tidbCounter = served(props.tidb, (p) => new TiDbCounter(this, 'TiDbCounter', p));
  }

  /**
   * Serves `counter` at `POST` and `GET /{counter.backend}/{id}`. One counter
   * per backend name.
   */
  public addCounter(counter: ICounter): void {
    // Like every synth-time check: one error, prefixed by the API's path, listing every problem.
    new PropsValidation(this)
      .check(!this.served.has(counter.backend), `AtomicCounterApi already serves a counter at /${counter.backend}`)
      .check(/^[a-z][a-z0-9-]*$/.test(counter.backend), `invalid backend route segment: "${counter.backend}" (lowercase letters, digits and hyphens, starting with a letter)`)
      .throwIfInvalid();
    this.served.set(counter.backend, counter);
    const idResource = this.restApi.root.addResource(counter.backend).addResource('{id}');
    const integration = new apigw.LambdaIntegration(counter.counterFunction, { proxy: true });
    for (const method of ['POST', 'GET']) {
      idResource.addMethod(method, integration, {
        apiKeyRequired: true,
        requestValidator: this.validator,
        // The proxy integration hands every header and query parameter to the
        // function, which validates them; declaring the optional ones puts
        // them in the API's own description (and its exported OpenAPI).
        requestParameters: method === 'POST'
          ? { 'method.request.path.id': true, 'method.request.querystring.by': false, 'method.request.header.Idempotency-Key': false }
          : { 'method.request.path.id': true },
      });
    }
  }

  /**
   * Every counter the API serves, in the order they were added: those created
   * from its props and those attached with `addCounter`. A copy: attach
   * counters with `addCounter`.
   */
  public get counters(): ICounter[] {
    return [...this.served.values()];
  }

  /** The route segments served (`dynamo`, `redis`, …), in the order they were added. */
  public get backends(): string[] {
    return [...this.served.keys()];
  }

  /** The URL of the deployed stage (`https://…/prod/`). */
  public get url(): string {
    return this.restApi.url;
  }
}
