import { Annotations, ArnFormat, CfnOutput, SecretValue, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import {
  AtomicCounterApi,
  AtomicCounterDashboard,
  CounterOptions,
  DocDbCounter,
  DynamoCounter,
  ICounter,
  MomentoCounter,
  RedisCounter,
  TiDbCounter,
} from 'cdk-atomic-counter';
import { Construct } from 'constructs';
import { BackendName, CredentialSource, ExampleConfig } from './config';
import { acknowledgeNagFindings } from './nag-acknowledgements';

/**
 * Retention of every log group of the stack: a year, as AWS Control
 * Tower's CT.CLOUDWATCH.PR.2 asks (the library's default is a month).
 */
const LOG_RETENTION = logs.RetentionDays.ONE_YEAR;

export interface AtomicCounterExampleStackProps extends StackProps {
  /** What `.env`, the credential files and the context say (see `loadExampleConfig`). */
  readonly config: ExampleConfig;
}

/**
 * The whole documented system in one stack: a VPC (public and private
 * subnets, one NAT gateway) when Redis or DocumentDB is deployed, a counter
 * per backend behind one API (API key, usage plan), each backend's setup
 * custom resource and metric filter, and one dashboard. `BACKENDS` leaves
 * backends out; a SaaS backend without credentials is left out with a
 * synth-time warning.
 */
export class AtomicCounterExampleStack extends Stack {
  /** The VPC of the Redis and DocumentDB counters; none when both are left out. */
  public readonly vpc?: ec2.Vpc;
  public readonly api: AtomicCounterApi;
  public readonly counters: ICounter[];
  public readonly dashboard: AtomicCounterDashboard;
  /** Where the dashboard's alarms notify. */
  public readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: AtomicCounterExampleStackProps) {
    super(scope, id, props);
    const { config } = props;
    for (const warning of config.warnings) {
      Annotations.of(this).addWarningV2('@cdk-atomic-counter/example:config', warning);
    }
    const deploys = (backend: BackendName) => config.backends.has(backend);

    // Two AZs, public subnets for the one NAT gateway, private subnets with
    // egress for the functions (Secrets Manager, Momento and TiDB Cloud are
    // reached through the NAT) and the cache and database nodes. Only Redis
    // and DocumentDB live in it.
    if (deploys('redis') || deploys('docdb')) {
      this.vpc = new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 1,
        subnetConfiguration: [
          // Only the NAT gateway lives here, on its own Elastic IP: nothing
          // launched in these subnets gets a public address by default.
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
        ],
        // The default security group admits all traffic between its members
        // and all egress; nothing here uses it. A custom resource removes its
        // rules (aws-cdk-lib's own; it runs at deploy time only).
        restrictDefaultSecurityGroup: true,
        flowLogs: {
          rejected: {
            destination: ec2.FlowLogDestination.toCloudWatchLogs(new logs.LogGroup(this, 'VpcFlowLogs', {
              retention: LOG_RETENTION,
            })),
            trafficType: ec2.FlowLogTrafficType.REJECT,
          },
        },
      });
    }
    const vpc = this.vpc;

    const mode: CounterOptions = {
      conditionalWrites: config.conditionalWrites, maxCounterValue: config.maxCounterValue, shards: config.shards, logRetention: LOG_RETENTION,
    };
    const counters: ICounter[] = [];
    if (deploys('dynamo')) counters.push(new DynamoCounter(this, 'Dynamo', mode));
    if (deploys('redis') && vpc) counters.push(new RedisCounter(this, 'Redis', { ...mode, vpc }));
    // The library's defaults: removed with a final snapshot (so `cdk destroy`
    // can delete the VPC), 7 days of point-in-time restore.
    if (deploys('docdb') && vpc) counters.push(new DocDbCounter(this, 'DocDb', { ...mode, vpc }));
    const copiedSecrets: secretsmanager.ISecret[] = [];
    const secretFor = (secretId: string, description: string, source: CredentialSource<object>) => {
      const secret = this.secretFor(secretId, description, source);
      if (secret && source.kind === 'plaintextFile') copiedSecrets.push(secret);
      return secret;
    };
    const momentoKey = secretFor('MomentoApiKey', 'Momento API key (momento_key_info.json)', config.momento);
    if (momentoKey && config.momento.kind !== 'absent') {
      counters.push(new MomentoCounter(this, 'Momento', { ...mode, credentialsSecret: momentoKey, cacheName: config.momento.cacheName }));
    }
    // TiDB Cloud's endpoint is public (TLS with host name verification): the
    // functions need no VPC to reach it.
    const tidbSecret = secretFor('TiDbConnection', 'TiDB Cloud connection (tidb_info.json)', config.tidb);
    if (tidbSecret) counters.push(new TiDbCounter(this, 'TiDb', { ...mode, credentialsSecret: tidbSecret }));
    this.counters = counters;

    // API_GATEWAY_CLOUDWATCH_ROLE=false: the account's API Gateway logging
    // role is managed elsewhere (organisations that set it centrally, or whose
    // tag policies reject the role); synth then warns that it is a prerequisite.
    this.api = new AtomicCounterApi(this, 'Api', {
      conditionalWrites: config.conditionalWrites,
      maxCounterValue: config.maxCounterValue,
      shards: config.shards,
      cloudWatchRole: config.cloudWatchRole,
      accessLogRetention: LOG_RETENTION,
    });
    for (const counter of counters) this.api.addCounter(counter);

    // The dashboard charts every counter the API serves (`api.counters`).
    this.dashboard = new AtomicCounterDashboard(this, 'Dashboard', { api: this.api });
    // The dashboard's alarms (a Redis eviction) notify this topic: subscribe
    // to it (AlarmTopicArn output). Encrypted with SNS's AWS-managed key,
    // publishing over TLS only.
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', {
      displayName: 'Atomic counter alarms',
      enforceSSL: true,
      masterKey: kms.Alias.fromAliasName(this, 'SnsKey', 'alias/aws/sns'),
    });
    for (const alarm of this.dashboard.alarms) alarm.addAlarmAction(new cloudwatchActions.SnsAction(this.alarmTopic));
    // The library adds no outputs to a stack; the example's own, for calling the API.
    new CfnOutput(this, 'ApiUrl', { value: this.api.url, description: 'Base URL of the counter API (ends in /prod/)' });
    new CfnOutput(this, 'ApiKeyId', {
      value: this.api.apiKey.keyId,
      description: 'Id of the API key: `aws apigateway get-api-key --api-key <id> --include-value`',
    });
    new CfnOutput(this, 'DashboardName', { value: this.dashboard.dashboard.dashboardName, description: 'CloudWatch dashboard of the counters' });
    new CfnOutput(this, 'Backends', { value: this.api.backends.join(','), description: 'Backends served at /{backend}/{id}' });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn, description: 'SNS topic of the dashboard\'s alarms: subscribe to it' });

    acknowledgeNagFindings({ api: this.api, counters, copiedSecrets });
  }

  /**
   * The secret a SaaS backend reads its credentials from: an existing one by
   * name (nothing secret in the template), or, on the documented opt-in, a
   * new one holding the file's JSON (then in the template as plain text).
   */
  private secretFor(id: string, description: string, source: CredentialSource<object>): secretsmanager.ISecret | undefined {
    switch (source.kind) {
      case 'secretName':
        if (source.kmsKeyArn === undefined) return secretsmanager.Secret.fromSecretNameV2(this, id, source.secretName);
        // Imported with its customer-managed key: the counters' read grant
        // then includes kms:Decrypt on that key, through Secrets Manager only.
        return secretsmanager.Secret.fromSecretAttributes(this, id, {
          secretPartialArn: this.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: source.secretName, arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
          encryptionKey: kms.Key.fromKeyArn(this, `${id}Key`, source.kmsKeyArn),
        });
      case 'plaintextFile':
        return new secretsmanager.Secret(this, id, {
          description: `${description}, copied from ${source.file} at synth (-c allowPlaintextSecretsFromFiles=true)`,
          secretStringValue: SecretValue.unsafePlainText(source.secretJson),
        });
      default:
        return undefined;
    }
  }
}
