import { CfnElement, Stack, Validations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as cr from 'aws-cdk-lib/custom-resources';
import { AtomicCounterApi, DocDbCounter, ICounter, RedisCounter } from 'cdk-atomic-counter';
import { IConstruct } from 'constructs';

/**
 * The AWS Solutions findings this stack accepts, each on the narrowest
 * construct and with the reason. Everything else fails `cdk synth` and the
 * cdk-nag test. (cdk-nag 3: `Validations.of(scope).acknowledge`, one id per
 * finding; an acknowledgement applies to the scope and its children.)
 */
export function acknowledgeNagFindings(parts: {
  readonly api: AtomicCounterApi;
  readonly counters: ICounter[];
  /** Secrets this stack created from the credential files (the plaintext opt-in). */
  readonly copiedSecrets: secretsmanager.ISecret[];
}): void {
  const api = Validations.of(parts.api.restApi);
  const apiKeyReason = 'Every method requires an API key bound to a usage plan (throttle and quota), the documented access model of the counter API (README, HTTP contract; docs/openapi.json): its callers are services holding the key, not end users to authenticate.';
  api.acknowledge(
    { id: 'AwsSolutions-APIG4', reason: apiKeyReason },
    { id: 'AwsSolutions-COG4', reason: apiKeyReason },
    {
      id: 'AwsSolutions-APIG2',
      reason: 'The request validator validates the only request input, the {id} path parameter (and the handler validates its content); POST and GET carry no body, so there is no body model to validate.',
    },
    {
      id: 'AwsSolutions-APIG3',
      reason: 'Abuse is bounded by the API key and the usage plan throttle and quota. A WAF web ACL is an account-level cost and policy decision; associate one with the stage where required.',
    },
  );

  // The account-level API Gateway CloudWatch Logs role (cloudWatchRole: true, the library default).
  const cloudWatchRole = parts.api.restApi.node.tryFindChild('CloudWatchRole');
  if (cloudWatchRole) {
    acknowledge(cloudWatchRole, {
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      reason: 'The AWS-managed policy API Gateway documents for its account-level CloudWatch Logs role, which stage access logging requires: it allows only creating, describing and writing log groups and streams, for API Gateway alone (the role trusts apigateway.amazonaws.com).',
    });
  }

  for (const counter of parts.counters) {
    const scope = constructOf(counter);
    for (const fn of scope.node.findAll().filter((c): c is lambda.Function => c instanceof lambda.Function)) {
      acknowledgeFunction(fn);
    }
    for (const provider of scope.node.findAll().filter((c): c is cr.Provider => c instanceof cr.Provider)) {
      const setup = Stack.of(provider).getLogicalId(provider.onEventHandler.node.defaultChild as CfnElement);
      acknowledge(provider, {
        id: `AwsSolutions-IAM5[Resource::<${setup}.Arn>:*]`,
        reason: 'The custom-resource provider framework may invoke its one setup function, including its versions (":*"); no other function.',
      });
    }
  }

  const redis = parts.counters.find((c): c is RedisCounter => c instanceof RedisCounter);
  if (redis?.replicationGroup) {
    Validations.of(redis.replicationGroup).acknowledge({
      id: 'AwsSolutions-AEC5',
      reason: 'A non-default port adds no protection here: the cache admits only the counter function\'s security group, and requires TLS and an AUTH token.',
    });
  }
  if (redis?.credentialsSecret instanceof secretsmanager.Secret) {
    Validations.of(redis.credentialsSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'The AUTH token reaches ElastiCache by a CloudFormation dynamic reference at deploy time: a rotation schedule would change the secret without changing the cache (ElastiCache rotates tokens through ModifyReplicationGroup, i.e. a stack update). Only the counter function\'s security group reaches the cache.',
    });
  }

  const docdb = parts.counters.find((c): c is DocDbCounter => c instanceof DocDbCounter);
  if (docdb?.cluster) {
    acknowledge(docdb.cluster,
      {
        id: 'AwsSolutions-DOC2',
        reason: 'A non-default port adds no protection here: the cluster admits only the counter functions\' security group, requires TLS and a password from Secrets Manager.',
      },
      {
        id: 'AwsSolutions-DOC3',
        reason: 'The password is generated in Secrets Manager and reaches the cluster by dynamic reference; the rule also wants the user name by reference, which is not a secret.',
      },
      ...['authenticate', 'createIndex', 'dropCollection'].map((event) => ({
        id: `AwsSolutions-DOC5[LogExport::${event}]`,
        reason: 'Audit logs need a custom parameter group (audit_logs) and ship every authentication to CloudWatch; only the counter functions\' security group reaches the cluster, with one secret, and the only DDL is the setup custom resource\'s, logged by its function.',
      })),
    );
    // `cluster.secret` is the attachment; the generated secret is the cluster's child `Secret`.
    const masterSecret = docdb.cluster.node.tryFindChild('Secret');
    if (masterSecret) {
      acknowledge(masterSecret, {
        id: 'AwsSolutions-SMG4',
        reason: 'Only the setup custom resource logs in as the master user, once per deployment; no rotation schedule is set up by this stack. Rotating it needs a rotation function in the VPC; the setup re-reads the secret on every run.',
      });
    }
  }
  if (docdb) {
    Validations.of(docdb.appUserSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'The application user (readWrite on the counter database only) is created by the setup custom resource, which also resets its password on every deployment. The counter function re-reads the secret on an authentication failure, so a rotation set up later is picked up without a restart.',
    });
  }

  for (const secret of parts.copiedSecrets) {
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Holds a credential issued by a SaaS provider (Momento, TiDB Cloud), which Secrets Manager cannot rotate; rotate it by issuing a new key at the provider and updating the secret.',
    });
  }
}

function acknowledgeFunction(fn: lambda.Function): void {
  const acknowledgements = [{
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason: 'AWSLambdaBasicExecutionRole grants only logs:CreateLogGroup, logs:CreateLogStream and logs:PutLogEvents, what every function needs to write its log.',
  }];
  if (fn.isBoundToVpc) {
    acknowledgements.push({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
      reason: 'AWSLambdaVPCAccessExecutionRole grants only the network-interface actions Lambda needs to attach the function to its VPC (EC2 requires Resource "*" for them) and log writing.',
    });
  }
  if (fn.runtime.name === lambda.Runtime.NODEJS_22_X.name) {
    acknowledgements.push({
      id: 'AwsSolutions-L1',
      reason: 'Pinned to nodejs22.x on purpose: the handler bundles target Node.js 22 and are tested on it in CI; Lambda supports it until 2027-04-30. Moving to 24 is a tested library change, not a stack setting.',
    });
  }
  acknowledge(fn, ...acknowledgements);
}

/**
 * `Validations.of(scope).acknowledge`, also for finding ids that contain
 * "::" (e.g. `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:…]`): aws-cdk-lib
 * 2.259 reserves "::" for its `prefix::rule` form and throws on such ids, so
 * those are recorded as the same construct metadata `acknowledge` writes,
 * which is what cdk-nag reads.
 */
function acknowledge(scope: IConstruct, ...acknowledgements: Array<{ id: string; reason: string }>): void {
  for (const { id, reason } of acknowledgements) {
    if (id.includes('::')) {
      scope.node.addMetadata(Validations.ACKNOWLEDGED_RULES_METADATA_KEY, { [id]: reason });
    } else {
      Validations.of(scope).acknowledge({ id, reason });
    }
  }
}

function constructOf(counter: ICounter): IConstruct {
  const candidate = counter as unknown as Partial<IConstruct>;
  if (!candidate.node) throw new Error(`counter "${counter.backend}" is not a construct: cannot scope its cdk-nag acknowledgements`);
  return candidate as IConstruct;
}
