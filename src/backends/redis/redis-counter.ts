import { CfnResource, Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { REDIS_CONTRACT } from './redis-contract';
import { REDIS_DEFAULTS, REDIS_ENV, REDIS_MAXMEMORY_POLICY, REDIS_SECRET_FIELDS } from './redis-env';
import { CounterBase, CounterOptions, ExistingEndpoint } from '../../counter-base';
import { importedSecretNameProblem } from '../../deploy-checks';
import { checkCounterFunction, checkCounterOptions, createCounterFunction, notCreatedYet } from '../../private/counter-resources';
import { counterMetricNameOf } from '../../private/defaults';
import { PropsValidation } from '../../private/props';
import { credentialsRemovalPolicy, dependentRemovalPolicy, warnRetainedStoreInOwnVpc } from '../../private/removal';
import { claimStore } from '../../private/store-names';

/** The engine of a created ElastiCache replication group. */
export enum RedisEngine {
  /** Redis OSS. */
  REDIS = 'redis',
  /** Valkey, the Linux Foundation fork of Redis OSS (same protocol and commands). */
  VALKEY = 'valkey',
}

/** Props of `RedisCounter`. */
export interface RedisCounterProps extends CounterOptions {
  /**
   * The VPC the function runs in, and the created replication group lives in.
   * The construct never creates a VPC.
   */
  readonly vpc: ec2.IVpc;

  /**
   * Subnets of `vpc` for the function and the created cache nodes. With an
   * auth secret the function must reach Secrets Manager: a NAT gateway or
   * a Secrets Manager interface endpoint (see `secretsManagerEndpoint`).
   * @default - the VPC's private subnets with egress; without any, its isolated subnets, and then only with `secretsManagerEndpoint` (else synth fails)
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Create a Secrets Manager interface VPC endpoint (private DNS on) in the
   * function's subnets, so the function can read its AUTH secret without a
   * NAT gateway. Needed when the VPC has no subnets with egress: without it
   * (and without an explicit `vpcSubnets`), synth fails rather than deploy a
   * function that hangs reading its secret. An endpoint costs per hour and AZ.
   * @default false
   */
  readonly secretsManagerEndpoint?: boolean;

  /**
   * An existing Redis/Valkey primary endpoint to use instead of creating a
   * replication group. Give its `securityGroup` to have ingress from
   * `functionSecurityGroup` added, or admit that group yourself.
   *
   * Its `maxmemory-policy` must be `noeviction` (on ElastiCache: a custom
   * parameter group; the default groups use `volatile-lru`, which evicts
   * exactly the `Idempotency-Key` records, since they carry a TTL and the
   * counters do not, and a retry after an eviction counts twice). Two
   * counters on one endpoint need different `keyPrefix`es: synth warns when
   * two counters of one app share one.
   * @default - a replication group is created
   */
  readonly existingEndpoint?: ExistingEndpoint;

  /**
   * AUTH secret of the existing endpoint (only with `existingEndpoint`), JSON
   * `{"authToken": "…"}`, plus `"username"` for an RBAC user. The function
   * gets read access to it; the token never appears in its environment.
   * @default - no AUTH (a created replication group gets a generated token)
   */
  readonly credentialsSecret?: secretsmanager.ISecret;

  /**
   * TLS to the existing endpoint (only with `existingEndpoint`), with
   * certificate and host name verification. A created replication group
   * always uses TLS.
   * @default true
   */
  readonly tls?: boolean;

  /**
   * Engine of the created replication group.
   * @default RedisEngine.REDIS
   */
  readonly engine?: RedisEngine;

  /**
   * Engine version of the created replication group.
   * @default "7.1" for Redis, "8.0" for Valkey
   */
  readonly engineVersion?: string;

  /**
   * Node type of the created replication group.
   * @default "cache.t4g.micro"
   */
  readonly cacheNodeType?: string;

  /**
   * Read replicas of the created replication group's primary. With at least
   * one, automatic failover and Multi-AZ are on. Replication is
   * asynchronous: a failover can lose increments already answered with 200
   * (see `waitForReplicas`).
   * @default 1
   */
  readonly replicas?: number;

  /**
   * What happens to the created replication group when it leaves the stack.
   * The generated AUTH secret follows it: kept with `SNAPSHOT` and `RETAIN`
   * (a restored snapshot needs its token; with `SNAPSHOT` a failed first
   * deployment deletes it), deleted with `DESTROY`. Its subnet group,
   * security group and parameter group are kept with a retained group (it
   * still uses them) and deleted otherwise; synth warns when a retained
   * group meets a VPC created in the same stack.
   * @default RemovalPolicy.SNAPSHOT
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * Replicas that must acknowledge each increment (Redis `WAIT`) before the
   * function answers, narrowing (not closing) the window in which a failover
   * loses answered increments. Costs one replication round trip per
   * increment; a shortfall past `waitTimeout` still answers 200 (the
   * increment is applied) and logs a warning.
   * @default 0 - answer as soon as the primary applied the increment
   */
  readonly waitForReplicas?: number;

  /**
   * How long `WAIT` may block (only with `waitForReplicas`).
   * @default Duration.millis(100)
   */
  readonly waitTimeout?: Duration;

  /**
   * Prefix of every counter key; the id follows verbatim. Idempotency-Key
   * records share it: the prefix, the control characters `\u0001k\u0001`
   * (never part of an id), then the key.
   * @default "counter:"
   */
  readonly keyPrefix?: string;

  /**
   * Bound on opening a connection (TCP + TLS + AUTH) before a 503.
   * @default Duration.seconds(1)
   */
  readonly connectTimeout?: Duration;

  /**
   * Bound on one command before a 503. A timed-out increment may still have
   * been applied (the client cannot know), which the 503 leaves to the caller.
   * @default Duration.seconds(1)
   */
  readonly commandTimeout?: Duration;
}

/** Defaults of `RedisCounter`, in one place (docs/redis.md mirrors them). */
const REDIS_COUNTER_DEFAULTS = {
  engine: RedisEngine.REDIS,
  engineVersion: { [RedisEngine.REDIS]: '7.1', [RedisEngine.VALKEY]: '8.0' },
  cacheNodeType: 'cache.t4g.micro',
  replicas: 1,
  port: 6379,
  removalPolicy: RemovalPolicy.SNAPSHOT,
  authTokenLength: 64,
} as const;

/**
 * An atomic counter on ElastiCache (Redis OSS or Valkey): `INCR` per plain
 * increment, one Lua script (`EVALSHA`) per step, conditional change or
 * change with an `Idempotency-Key` (the key record is written by the same
 * script), `GET` per read, all on the primary endpoint.
 *
 * By default it creates a replication group (a primary and one replica,
 * encrypted in transit and at rest, an AUTH token generated in Secrets
 * Manager) reachable on its port only from the function's security group.
 * Redis needs no setup step: a key exists from its first `INCR`, and the
 * script is loaded by the client on first use (EVAL, then EVALSHA).
 */
export class RedisCounter extends CounterBase {
  /** The function serving this counter's routes. */
  public readonly counterFunction: lambda.Function;
  /** The function's security group: the only source the cache admits. */
  public readonly functionSecurityGroup: ec2.SecurityGroup;
  /** The created replication group's security group. @default - undefined with an existing endpoint */
  public readonly cacheSecurityGroup?: ec2.SecurityGroup;
  /** The created replication group. @default - undefined with an existing endpoint */
  public readonly replicationGroup?: elasticache.CfnReplicationGroup;
  /** The created subnet group. @default - undefined with an existing endpoint */
  public readonly subnetGroup?: elasticache.CfnSubnetGroup;
  /**
   * The created replication group's parameter group (`maxmemory-policy
   * noeviction`). @default - undefined with an existing endpoint
   */
  public readonly parameterGroup?: elasticache.CfnParameterGroup;
  /** The secret holding the AUTH token (generated, or the given `credentialsSecret`). @default - undefined with an existing endpoint without AUTH */
  public readonly credentialsSecret?: secretsmanager.ISecret;
  /** The Secrets Manager interface endpoint. @default - undefined without `secretsManagerEndpoint` */
  public readonly secretsManagerEndpoint?: ec2.InterfaceVpcEndpoint;
  /** Host name of the primary endpoint the function writes to. */
  public readonly endpointHostname: string;
  /** Port of the primary endpoint. */
  public readonly endpointPort: number;

  constructor(scope: Construct, id: string, props: RedisCounterProps) {
    super(scope, id, props, REDIS_CONTRACT.name, counterMetricNameOf(REDIS_CONTRACT));
    const existing = props.existingEndpoint;
    const hasEgress = props.vpc.privateSubnets.length > 0;
    const vpcSubnets = props.vpcSubnets ?? (hasEgress
      ? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }
      : { subnetType: ec2.SubnetType.PRIVATE_ISOLATED });
    const readsSecret = !existing || props.credentialsSecret !== undefined;
    const check = validate(this, props)
      .check(!(readsSecret && !hasEgress && props.vpcSubnets === undefined && !props.secretsManagerEndpoint),
        'the VPC has no private subnets with egress, so the function could not reach Secrets Manager for its AUTH secret; ' +
        'add a NAT gateway, set `secretsManagerEndpoint: true` (an interface endpoint), or choose `vpcSubnets` that reach Secrets Manager');
    // Checked with the props, before anything exists: a created group's endpoint and secret are decided later.
    checkCounterFunction(check, this, REDIS_CONTRACT, props, redisEnvironment(props, existing
      ? {
        host: existing.hostname,
        port: String(existing.port ?? REDIS_COUNTER_DEFAULTS.port),
        tls: props.tls ?? true,
        secretArn: props.credentialsSecret?.secretArn,
      }
      : {
        host: notCreatedYet('the primary endpoint'),
        port: notCreatedYet('the primary endpoint port'),
        tls: true,
        secretArn: notCreatedYet('the AUTH secret'),
      }))
      .throwIfInvalid();

    this.functionSecurityGroup = new ec2.SecurityGroup(this, 'FunctionSecurityGroup', {
      vpc: props.vpc,
      description: 'Redis atomic counter function',
      // Egress is opened below, to the cache port and (with a secret) HTTPS only.
      allowAllOutbound: false,
    });

    let tls: boolean;
    let portEnv: string;
    if (existing) {
      const port = existing.port ?? REDIS_COUNTER_DEFAULTS.port;
      this.endpointHostname = existing.hostname;
      this.endpointPort = port;
      portEnv = String(port);
      this.credentialsSecret = props.credentialsSecret;
      tls = props.tls ?? true;
      this.functionSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), 'Redis endpoint');
      existing.securityGroup?.addIngressRule(this.functionSecurityGroup, ec2.Port.tcp(port), 'Redis from the atomic counter function');
      // A created replication group is this counter's alone; an existing endpoint may serve several.
      const keyPrefix = props.keyPrefix ?? REDIS_DEFAULTS.keyPrefix;
      claimStore(this, ['redis', existing.hostname, String(port), keyPrefix], `keys "${keyPrefix}…" of the Redis endpoint ${existing.hostname}`);
    } else {
      const engine = props.engine ?? REDIS_COUNTER_DEFAULTS.engine;
      const replicas = props.replicas ?? REDIS_COUNTER_DEFAULTS.replicas;
      const port = REDIS_COUNTER_DEFAULTS.port;
      tls = true;
      this.cacheSecurityGroup = new ec2.SecurityGroup(this, 'CacheSecurityGroup', {
        vpc: props.vpc,
        description: `Redis atomic counter cache: port ${port} from the counter function only`,
        allowAllOutbound: false,
      });
      // Ingress on the cache group from the function's group only, and the matching egress rule.
      this.cacheSecurityGroup.connections.allowFrom(this.functionSecurityGroup, ec2.Port.tcp(port), 'Redis from the counter function');

      // AuthToken allows only 16-128 printable characters with the symbols
      // !&#$^<>- : letters and digits avoid the question entirely.
      const secret = new secretsmanager.Secret(this, 'AuthSecret', {
        description: 'AUTH token of the Redis atomic counter replication group',
        generateSecretString: {
          secretStringTemplate: JSON.stringify({}),
          generateStringKey: REDIS_SECRET_FIELDS.AUTH_TOKEN,
          excludePunctuation: true,
          includeSpace: false,
          passwordLength: REDIS_COUNTER_DEFAULTS.authTokenLength,
        },
      });
      this.credentialsSecret = secret;
      // The secret follows its store: a retained or snapshotted group keeps
      // its token (a restored snapshot needs it); SNAPSHOT is not a secret's policy.
      const removalPolicy = props.removalPolicy ?? REDIS_COUNTER_DEFAULTS.removalPolicy;
      secret.applyRemovalPolicy(credentialsRemovalPolicy(removalPolicy));

      this.subnetGroup = new elasticache.CfnSubnetGroup(this, 'SubnetGroup', {
        description: 'Redis atomic counter',
        subnetIds: props.vpc.selectSubnets(vpcSubnets).subnetIds,
      });

      // Never evict: the default groups' volatile-lru evicts exactly the
      // Idempotency-Key records (they carry a TTL, counters do not), and a
      // retry after an eviction would count twice. A full node now refuses
      // writes (OOM), which the handler answers 503 with nothing applied.
      const engineVersion = props.engineVersion ?? REDIS_COUNTER_DEFAULTS.engineVersion[engine];
      this.parameterGroup = new elasticache.CfnParameterGroup(this, 'ParameterGroup', {
        description: 'Redis atomic counter: maxmemory-policy noeviction (Idempotency-Key records must not be evicted)',
        cacheParameterGroupFamily: parameterGroupFamily(engine, engineVersion),
        properties: { [REDIS_MAXMEMORY_POLICY.parameter]: REDIS_MAXMEMORY_POLICY.value },
      });

      // What only serves the group goes with it, or stays while it stays (cdk destroy must not fail).
      for (const dependent of [this.subnetGroup, this.parameterGroup, this.cacheSecurityGroup.node.defaultChild as CfnResource]) {
        dependent.applyRemovalPolicy(dependentRemovalPolicy(removalPolicy));
      }
      warnRetainedStoreInOwnVpc(this, removalPolicy, props.vpc, 'Redis replication group');

      this.replicationGroup = new elasticache.CfnReplicationGroup(this, 'ReplicationGroup', {
        replicationGroupDescription: 'Redis atomic counter',
        engine,
        engineVersion: props.engineVersion ?? REDIS_COUNTER_DEFAULTS.engineVersion[engine],
        cacheNodeType: props.cacheNodeType ?? REDIS_COUNTER_DEFAULTS.cacheNodeType,
        // Cluster mode disabled: one shard, a primary plus `replicas` replicas,
        // so every counter lives on the one primary the function writes to.
        numCacheClusters: 1 + replicas,
        automaticFailoverEnabled: replicas > 0,
        multiAzEnabled: replicas > 0,
        port,
        cacheSubnetGroupName: this.subnetGroup.ref,
        cacheParameterGroupName: this.parameterGroup.ref,
        securityGroupIds: [this.cacheSecurityGroup.securityGroupId],
        atRestEncryptionEnabled: true,
        transitEncryptionEnabled: true,
        // A dynamic reference: CloudFormation resolves it at deploy time, the
        // token never appears in the template.
        authToken: secret.secretValueFromJson(REDIS_SECRET_FIELDS.AUTH_TOKEN).unsafeUnwrap(),
        autoMinorVersionUpgrade: true,
        snapshotRetentionLimit: 1,
      });
      this.replicationGroup.applyRemovalPolicy(removalPolicy);
      this.endpointHostname = this.replicationGroup.attrPrimaryEndPointAddress;
      this.endpointPort = Token.asNumber(this.replicationGroup.attrPrimaryEndPointPort);
      portEnv = this.replicationGroup.attrPrimaryEndPointPort;
    }

    if (this.credentialsSecret) {
      // Secrets Manager's API, through a NAT gateway or an interface endpoint.
      this.functionSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'Secrets Manager (AUTH token)');
    }
    if (props.secretsManagerEndpoint) {
      this.secretsManagerEndpoint = new ec2.InterfaceVpcEndpoint(this, 'SecretsManagerEndpoint', {
        vpc: props.vpc,
        service: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
        subnets: vpcSubnets,
        privateDnsEnabled: true,
        // HTTPS from the counter function only.
        open: false,
      });
      this.secretsManagerEndpoint.connections.allowFrom(this.functionSecurityGroup, ec2.Port.tcp(443), 'Secrets Manager from the Redis counter function');
    }

    this.counterFunction = createCounterFunction(this, REDIS_CONTRACT, props, {
      description: `Atomic counter on ${existing ? 'Redis' : 'ElastiCache'} (INCR; Lua script for steps, bounds and Idempotency-Key)`,
      environment: redisEnvironment(props, { host: this.endpointHostname, port: portEnv, tls, secretArn: this.credentialsSecret?.secretArn }),
      vpc: props.vpc,
      vpcSubnets,
      securityGroups: [this.functionSecurityGroup],
      secret: this.credentialsSecret,
    });
  }
}

/** Where the counter function connects: the primary endpoint, TLS, and the AUTH secret if any. */
interface RedisConnection {
  readonly host: string;
  readonly port: string;
  readonly tls: boolean;
  readonly secretArn?: string;
}

/** The counter function's own environment (its env contract, redis-env.ts). */
function redisEnvironment(props: RedisCounterProps, connection: RedisConnection): { [key: string]: string } {
  const environment: { [key: string]: string } = {
    [REDIS_ENV.HOST]: connection.host,
    [REDIS_ENV.PORT]: connection.port,
    [REDIS_ENV.TLS]: String(connection.tls),
    [REDIS_ENV.KEY_PREFIX]: props.keyPrefix ?? REDIS_DEFAULTS.keyPrefix,
    [REDIS_ENV.CONNECT_TIMEOUT_MS]: String(props.connectTimeout?.toMilliseconds() ?? REDIS_DEFAULTS.connectTimeoutMs),
    [REDIS_ENV.COMMAND_TIMEOUT_MS]: String(props.commandTimeout?.toMilliseconds() ?? REDIS_DEFAULTS.commandTimeoutMs),
  };
  if (connection.secretArn) environment[REDIS_ENV.AUTH_SECRET_ARN] = connection.secretArn;
  if (props.waitForReplicas) {
    environment[REDIS_ENV.WAIT_REPLICAS] = String(props.waitForReplicas);
    environment[REDIS_ENV.WAIT_TIMEOUT_MS] = String(props.waitTimeout?.toMilliseconds() ?? REDIS_DEFAULTS.waitTimeoutMs);
  }
  return environment;
}

/**
 * The ElastiCache parameter group family of an engine version: `redis7`
 * (7.x), `redis6.x`, `redis5.0`, `redis4.0`, …; `valkey7`, `valkey8`, ….
 */
function parameterGroupFamily(engine: RedisEngine, engineVersion: string): string {
  const major = Number.parseInt(engineVersion, 10);
  if (engine === RedisEngine.VALKEY || major >= 7) return `${engine}${major}`;
  return major === 6 ? 'redis6.x' : `redis${engineVersion.split('.').slice(0, 2).join('.')}`;
}

/** Every problem with the props, for one synth-time error. */
function validate(scope: Construct, props: RedisCounterProps): PropsValidation {
  const check = checkCounterOptions(new PropsValidation(scope), props)
    .existingOrCreated(props, 'existingEndpoint', {
      createdOnly: ['engine', 'engineVersion', 'cacheNodeType', 'replicas', 'removalPolicy'],
      existingOnly: ['credentialsSecret', 'tls'],
      created: 'the replication group',
    })
    .integer('existingEndpoint.port', props.existingEndpoint?.port, 1, 65535)
    .integer('replicas', props.replicas, 0, 5)
    .integer('waitForReplicas', props.waitForReplicas, 0)
    .problem(importedSecretNameProblem('credentialsSecret', props.credentialsSecret));
  const version = props.engineVersion;
  // The parameter group's family is read from the version at synth.
  check.check(version === undefined || (!Token.isUnresolved(version) && /^\d+\.\d+/.test(version)),
    `\`engineVersion\` must be a literal "<major>.<minor>" such as "7.1" (the parameter group's family depends on it); got ${version}`);
  const replicas = props.replicas ?? REDIS_COUNTER_DEFAULTS.replicas;
  const wait = props.waitForReplicas ?? 0;
  if (props.existingEndpoint === undefined && !Token.isUnresolved(wait) && !Token.isUnresolved(replicas)) {
    check.check(wait <= replicas, `\`waitForReplicas\` (${wait}) exceeds the replicas created (${replicas}); every WAIT would time out`);
  }
  return check.check(!props.waitTimeout || wait > 0, '`waitTimeout` applies only with `waitForReplicas`');
}
