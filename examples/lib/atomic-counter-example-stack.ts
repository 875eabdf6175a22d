import { Annotations, CfnOutput, SecretValue, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
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
import { CredentialSource, ExampleConfig } from './config';
import { acknowledgeNagFindings } from './nag-acknowledgements';

export interface AtomicCounterExampleStackProps extends StackProps {
  /** What `.env`, the credential files and the context say (see `loadExampleConfig`). */
  readonly config: ExampleConfig;
}

/**
 * The whole documented system in one stack: a VPC (public and private
 * subnets, one NAT gateway), a counter per backend behind one API (API key,
 * usage plan), each backend's setup custom resource and metric filter, and
 * one dashboard. A SaaS backend without credentials is left out with a
 * synth-time warning.
 */
export class AtomicCounterExampleStack extends Stack {
  public readonly vpc: ec2.Vpc;
  public readonly api: AtomicCounterApi;
  public readonly counters: ICounter[];
  public readonly dashboard: AtomicCounterDashboard;

  constructor(scope: Construct, id: string, props: AtomicCounterExampleStackProps) {
    super(scope, id, props);
    const { config } = props;
    for (const warning of config.warnings) {
      Annotations.of(this).addWarningV2('@cdk-atomic-counter/example:config', warning);
    }

    // Two AZs, public subnets for the one NAT gateway, private subnets with
    // egress for the functions (Secrets Manager, Momento and TiDB Cloud are
    // reached through the NAT) and the cache and database nodes.
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 1,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
      ],
      flowLogs: {
        rejected: {
          destination: ec2.FlowLogDestination.toCloudWatchLogs(new logs.LogGroup(this, 'VpcFlowLogs', {
            retention: logs.RetentionDays.ONE_MONTH,
          })),
          trafficType: ec2.FlowLogTrafficType.REJECT,
        },
      },
    });

    const mode: CounterOptions = { conditionalWrites: config.conditionalWrites, maxCounterValue: config.maxCounterValue };
    const counters: ICounter[] = [
      new DynamoCounter(this, 'Dynamo', mode),
      new RedisCounter(this, 'Redis', { ...mode, vpc: this.vpc }),
    ];
    // The library's defaults: removed with a final snapshot (so `cdk destroy`
    // can delete the VPC), 7 days of point-in-time restore.
    counters.push(new DocDbCounter(this, 'DocDb', { ...mode, vpc: this.vpc }));
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

    this.api = new AtomicCounterApi(this, 'Api', mode);
    for (const counter of counters) this.api.addCounter(counter);

    // The dashboard charts every counter the API serves (`api.counters`).
    this.dashboard = new AtomicCounterDashboard(this, 'Dashboard', { api: this.api });
    // The library adds no outputs to a stack; the example's own, for calling the API.
    new CfnOutput(this, 'ApiUrl', { value: this.api.url, description: 'Base URL of the counter API (ends in /prod/)' });
    new CfnOutput(this, 'ApiKeyId', {
      value: this.api.apiKey.keyId,
      description: 'Id of the API key: `aws apigateway get-api-key --api-key <id> --include-value`',
    });
    new CfnOutput(this, 'DashboardName', { value: this.dashboard.dashboard.dashboardName, description: 'CloudWatch dashboard of the counters' });
    new CfnOutput(this, 'Backends', { value: this.api.backends.join(','), description: 'Backends served at /{backend}/{id}' });

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
        return secretsmanager.Secret.fromSecretNameV2(this, id, source.secretName);
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
