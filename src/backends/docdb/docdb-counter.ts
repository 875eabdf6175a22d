import { CfnResource, CustomResource, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as docdb from 'aws-cdk-lib/aws-docdb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { DOCDB_CONTRACT } from './docdb-contract';
import { DOCDB_DEFAULTS, DOCDB_ENV, DOCDB_SCHEMA_VERSION, DOCDB_SETUP_PROPERTIES } from './docdb-env';
import { CounterBase, CounterOptions, ExistingEndpoint } from '../../counter-base';
import { checkDocDbRegion, importedSecretNameProblem } from '../../deploy-checks';
import { checkCounterFunction, checkCounterOptions, checkSetupFunction, createCounterFunction, createSetupResource, grantSecretValueRead, notCreatedYet } from '../../private/counter-resources';
import { counterMetricNameOf } from '../../private/defaults';
import { PropsValidation } from '../../private/props';
import { credentialsRemovalPolicy, dependentRemovalPolicy, KEEP_UNLESS_CREATE_FAILED, warnRetainedStoreInOwnVpc } from '../../private/removal';
import { claimStore } from '../../private/store-names';

/** Props of `DocDbCounter`. */
export interface DocDbCounterProps extends CounterOptions {
  /** The VPC of the cluster and of the functions (which run in it). */
  readonly vpc: ec2.IVpc;

  /**
   * Subnets for the functions and the created cluster's instances. The
   * functions need a route to Secrets Manager (a NAT gateway or an interface
   * endpoint).
   * @default - the VPC's private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Instance class of the created cluster (only without `existingEndpoint`).
   * @default - db.t4g.medium
   */
  readonly instanceType?: ec2.InstanceType;

  /**
   * Number of instances of the created cluster: one primary, the rest
   * replicas that take over on failover (only without `existingEndpoint`).
   * @default 1
   */
  readonly instances?: number;

  /**
   * Engine version of the created cluster (only without `existingEndpoint`).
   * Pinned, so a deployment does not take whatever AWS defaults to on the
   * day. "5.0.0" is an active version with a long-term-support release, and
   * the newest one AWS's template linter (cfn-lint) accepts.
   * @default "5.0.0"
   */
  readonly engineVersion?: string;

  /**
   * Master user name of the created cluster; its password is generated in
   * Secrets Manager (only without `existingEndpoint`).
   * @default "counteradmin"
   */
  readonly masterUsername?: string;

  /**
   * The application user the counter function logs in as. The setup custom
   * resource creates it (or updates its password and roles) with `readWrite`
   * on the counter database only, from a secret generated for it; only the
   * setup function reads the master (or `credentialsSecret`) credentials.
   * @default "counterapp"
   */
  readonly appUsername?: string;

  /**
   * Rotate the application user's password on this schedule, with AWS's
   * own DocumentDB rotation function in the alternating-users scheme
   * (Secrets Manager's hosted `MongoDBMultiUser` rotation): each rotation
   * logs in with the master secret (`masterarn`), sets a new password on the
   * other of the two users (`<appUsername>` and `<appUsername>_clone`, the
   * second created by the first rotation with the same roles) and makes it
   * current. Connections of the previous user keep working until the next
   * rotation, and a counter container re-reads the secret when its login is
   * refused. The rotation function runs in the functions' subnets, with its
   * own security group that may reach only the cluster's port and HTTPS
   * (Secrets Manager, through a NAT gateway or an interface endpoint).
   * With `existingEndpoint`, `credentialsSecret` must hold the same `host`
   * as `existingEndpoint.hostname` (AWS's function checks it).
   * @default - no rotation (docs/operations.md, "Credential rotation", gives the one-off command)
   */
  readonly applicationUserRotation?: Duration;

  /**
   * How long the created cluster keeps its automated backups (1 to 35
   * days; only without `existingEndpoint`). Backup storage up to the
   * cluster's size costs nothing extra.
   * @default Duration.days(7)
   */
  readonly backupRetention?: Duration;

  /**
   * What happens to the created cluster when it leaves the stack (only
   * without `existingEndpoint`). SNAPSHOT keeps the data as a final snapshot
   * and removes the cluster, so a VPC in the same stack can be deleted too
   * (a retained cluster keeps its network interfaces in the VPC: synth warns
   * when RETAIN meets a VPC of the same stack). The master and application
   * user secrets follow the cluster: retained with SNAPSHOT or RETAIN (a
   * restored snapshot keeps its users and passwords; with SNAPSHOT a failed
   * first deployment deletes them), destroyed with DESTROY. The cluster's
   * subnet group and security group are retained with a retained cluster
   * (it still uses them) and deleted otherwise.
   * @default RemovalPolicy.SNAPSHOT
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * An existing cluster to use instead of creating one (with
   * `credentialsSecret`): its cluster endpoint, port and, to have ingress
   * from `functionSecurityGroup` added, its security group. Two counters on
   * one cluster need different `databaseName`s or `collectionName`s: synth
   * warns when two counters of one app share a collection.
   * @default - a new cluster is created
   */
  readonly existingEndpoint?: ExistingEndpoint;

  /**
   * Credentials of the existing cluster: a secret holding JSON with
   * `username` and `password` of a user that may create users (the master
   * user, say; required with `existingEndpoint`). Only the setup function
   * reads it; the counter function logs in as the application user.
   * @default - the created cluster's generated master credentials
   */
  readonly credentialsSecret?: secretsmanager.ISecret;

  /**
   * Database holding the counters.
   * @default "atomic_counter"
   */
  readonly databaseName?: string;

  /**
   * Collection holding the counters (one document per counter id). The key
   * records of exactly-once changes (`Idempotency-Key`) live next to it, in
   * `<collectionName>_keys`.
   * @default "counters"
   */
  readonly collectionName?: string;
}

/** Cluster defaults (README "Default settings" mirrors this). */
const CLUSTER_DEFAULTS = {
  instances: 1,
  masterUsername: 'counteradmin',
  instanceType: () => ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.MEDIUM),
  removalPolicy: RemovalPolicy.SNAPSHOT,
  backupRetentionDays: 7,
};

/**
 * An atomic counter on Amazon DocumentDB: one `findAndModify` per change
 * (`$inc` by the step, returning the new document; the filter also requires
 * the value the step may start from, so a change past the maximum, below 0
 * or outside the safe integers is rejected with nothing written). A change
 * with an `Idempotency-Key` runs in one transaction that records the key
 * with the change.
 *
 * Creates a TLS-only, encrypted cluster with generated master credentials in
 * Secrets Manager (or uses an existing cluster endpoint and secret), a
 * security group for the functions that is the only source admitted to the
 * cluster's port, and a setup custom resource that creates the database and
 * collection before the counter function exists.
 */
export class DocDbCounter extends CounterBase {
  /** The function serving this counter's routes. */
  public readonly counterFunction: lambda.Function;
  /** The created cluster. @default - undefined with `existingEndpoint` */
  public readonly cluster?: docdb.DatabaseCluster;
  /** The master (administrator) credentials: read by the setup function only. */
  public readonly credentialsSecret: secretsmanager.ISecret;
  /**
   * The application user's generated credentials: the only secret the
   * counter function reads. Its user has `readWrite` on the counter
   * database and nothing else. The JSON has the shape AWS's DocumentDB
   * rotation functions expect: `username`, `password`, `engine` ("mongo"),
   * `host`, `port`, `ssl` (true) and `masterarn` (the master secret).
   */
  public readonly appUserSecret: secretsmanager.ISecret;
  /** The rotation schedule of `appUserSecret`. @default - undefined without `applicationUserRotation` */
  public readonly appUserRotation?: secretsmanager.RotationSchedule;
  /**
   * Security group of the rotation function: the cluster's port and HTTPS only.
   * @default - undefined without `applicationUserRotation`
   */
  public readonly rotationSecurityGroup?: ec2.SecurityGroup;
  /**
   * Security group of the counter and setup functions: the only source the
   * cluster admits. It sends only to the cluster's port and to HTTPS
   * (Secrets Manager); add rules to it for anything else the functions need.
   */
  public readonly functionSecurityGroup: ec2.SecurityGroup;
  /** Host name of the cluster endpoint the functions connect to. */
  public readonly endpointHostname: string;
  /** Port of the cluster endpoint. */
  public readonly endpointPort: number;
  /** Database holding the counters. */
  public readonly databaseName: string;
  /** Collection holding the counters. */
  public readonly collectionName: string;
  /** The function run by the setup custom resource. */
  public readonly setupFunction: lambda.Function;
  /** The setup custom resource (`Custom::DocDbSetup`): database, collections, TTL index, application user. */
  public readonly setup: CustomResource;

  constructor(scope: Construct, id: string, props: DocDbCounterProps) {
    super(scope, id, props, DOCDB_CONTRACT.name, counterMetricNameOf(DOCDB_CONTRACT));
    this.databaseName = props.databaseName ?? DOCDB_DEFAULTS.database;
    this.collectionName = props.collectionName ?? DOCDB_DEFAULTS.collection;
    const check = validate(this, props);
    // A created cluster: DocumentDB must be offered in the stack's region (when known).
    if (!props.existingEndpoint) checkDocDbRegion(check, this);
    // The functions' environments, checked with the props before anything
    // exists (a created cluster's endpoint and the secrets come later).
    const existing = props.existingEndpoint;
    const preview = docdbEnvironments(this, existing
      ? {
        host: existing.hostname,
        port: existing.port ?? DOCDB_DEFAULTS.port,
        masterSecretArn: props.credentialsSecret?.secretArn ?? notCreatedYet('the credentials secret'),
      }
      : { host: notCreatedYet('the cluster endpoint'), port: DOCDB_DEFAULTS.port, masterSecretArn: notCreatedYet('the master secret') },
    notCreatedYet('the application user\'s secret'));
    checkSetupFunction(check, preview.setup);
    checkCounterFunction(check, this, DOCDB_CONTRACT, props, preview.counter).throwIfInvalid();
    const vpcSubnets = props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };

    this.functionSecurityGroup = new ec2.SecurityGroup(this, 'FunctionSecurityGroup', {
      vpc: props.vpc,
      description: 'Atomic counter functions (DocumentDB clients)',
      // Egress only to the cluster's port (below) and to HTTPS: Secrets
      // Manager (and the setup's CloudFormation status call), through a NAT
      // gateway or an interface endpoint.
      allowAllOutbound: false,
    });
    this.functionSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'Secrets Manager over HTTPS');

    if (props.existingEndpoint) {
      this.credentialsSecret = props.credentialsSecret!;
      this.endpointHostname = props.existingEndpoint.hostname;
      this.endpointPort = props.existingEndpoint.port ?? DOCDB_DEFAULTS.port;
      const endpointPort = ec2.Port.tcp(this.endpointPort);
      if (props.existingEndpoint.securityGroup) {
        // Ingress on the cluster's group from the functions' group, and the matching egress rule.
        props.existingEndpoint.securityGroup.connections.allowFrom(this.functionSecurityGroup, endpointPort, 'Atomic counter functions');
      } else {
        // The cluster's group is not known here: its port, to any address in the VPC's routes.
        this.functionSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), endpointPort, 'DocumentDB cluster endpoint');
      }
      // A created cluster is this counter's alone; an existing one may serve several.
      claimStore(this, ['docdb', this.endpointHostname, String(this.endpointPort), this.databaseName, this.collectionName],
        `collection ${this.databaseName}.${this.collectionName} of the DocumentDB cluster ${this.endpointHostname}`);
    } else {
      this.cluster = new docdb.DatabaseCluster(this, 'Cluster', {
        vpc: props.vpc,
        vpcSubnets,
        instanceType: props.instanceType ?? CLUSTER_DEFAULTS.instanceType(),
        instances: props.instances ?? CLUSTER_DEFAULTS.instances,
        engineVersion: props.engineVersion ?? DOCDB_DEFAULTS.engineVersion,
        port: DOCDB_DEFAULTS.port,
        // The password is generated in Secrets Manager and only referenced
        // (dynamic reference) by the cluster; the functions read the secret.
        masterUser: { username: props.masterUsername ?? CLUSTER_DEFAULTS.masterUsername },
        storageEncrypted: true,
        backup: { retention: props.backupRetention ?? Duration.days(CLUSTER_DEFAULTS.backupRetentionDays) },
        // No parameter group: the default one keeps `tls` enabled, so the
        // cluster refuses plaintext connections.
        removalPolicy: props.removalPolicy ?? CLUSTER_DEFAULTS.removalPolicy,
      });
      this.credentialsSecret = this.cluster.secret!;
      const clusterPolicy = props.removalPolicy ?? CLUSTER_DEFAULTS.removalPolicy;
      // The master secret follows its cluster: a snapshot or a retained
      // cluster keeps the password, so it must keep the secret too.
      (this.cluster.node.findChild('Secret') as secretsmanager.Secret).applyRemovalPolicy(credentialsRemovalPolicy(clusterPolicy));
      // aws-cdk-lib gives the cluster's security group the cluster's policy, not its
      // subnet group: a retained cluster would make `cdk destroy` fail deleting it.
      (this.cluster.node.findChild('Subnets') as CfnResource).applyRemovalPolicy(dependentRemovalPolicy(clusterPolicy));
      warnRetainedStoreInOwnVpc(this, clusterPolicy, props.vpc, 'DocumentDB cluster');
      this.endpointHostname = this.cluster.clusterEndpoint.hostname;
      this.endpointPort = DOCDB_DEFAULTS.port;
      // The only way in: the cluster's port, from the functions' security group.
      this.cluster.connections.allowFrom(this.functionSecurityGroup, ec2.Port.tcp(DOCDB_DEFAULTS.port), 'Atomic counter functions');
    }

    // The counter function's own user, created by the setup with readWrite
    // on the counter database only. Its secret lives as long as the data,
    // in the shape AWS's rotation functions read. `host` and `port` are in
    // the template, because CloudFormation regenerates the whole secret
    // string whenever the template changes (a new `appUsername`, say) and
    // would drop keys written only later; a created cluster also attaches
    // the secret, as it does the master secret, so both get `host` the same
    // way (the rotation function requires them to be equal).
    const appSecret = new secretsmanager.Secret(this, 'AppUserSecret', {
      description: `DocumentDB application user of the atomic counter (readWrite on ${this.databaseName})`,
      generateSecretString: {
        secretStringTemplate: Stack.of(this).toJsonString({
          username: props.appUsername ?? DOCDB_DEFAULTS.appUsername,
          engine: 'mongo',
          ssl: true,
          masterarn: this.credentialsSecret.secretArn,
          host: this.endpointHostname,
          port: this.endpointPort,
        }),
        generateStringKey: 'password',
        passwordLength: 32,
        excludeCharacters: APP_PASSWORD_EXCLUDED_CHARACTERS,
      },
      // With an existing cluster the user outlives this stack (kept unless the first deployment fails).
      removalPolicy: props.existingEndpoint
        ? KEEP_UNLESS_CREATE_FAILED
        : credentialsRemovalPolicy(props.removalPolicy ?? CLUSTER_DEFAULTS.removalPolicy),
    });
    // The functions read username and password only (the host comes from their environment), so they
    // use the secret itself; the attachment has to be done before a rotation only (below).
    const attached = this.cluster ? appSecret.attach(this.cluster) : undefined;
    this.appUserSecret = appSecret;

    const environments = docdbEnvironments(this,
      { host: this.endpointHostname, port: this.endpointPort, masterSecretArn: this.credentialsSecret.secretArn }, this.appUserSecret.secretArn);
    const placement = { vpc: props.vpc, vpcSubnets, securityGroups: [this.functionSecurityGroup] };

    // Setup: database and collection, idempotent; a failure fails the deployment.
    ({ setupFunction: this.setupFunction, resource: this.setup } = createSetupResource(this, props, {
      entry: DOCDB_CONTRACT.bundles.setup,
      description: 'Creates the DocumentDB database, collections, TTL index and application user of the atomic counter if missing',
      resourceType: 'Custom::DocDbSetup',
      // The application user's secret ARN is a property too: a new secret re-runs the setup.
      // So does a new schema revision: a library upgrade that changes the setup runs it again.
      properties: {
        [DOCDB_SETUP_PROPERTIES.DATABASE]: this.databaseName,
        [DOCDB_SETUP_PROPERTIES.COLLECTION]: this.collectionName,
        [DOCDB_SETUP_PROPERTIES.APP_USER_SECRET]: this.appUserSecret.secretArn,
        [DOCDB_SETUP_PROPERTIES.SCHEMA]: DOCDB_SCHEMA_VERSION,
      },
      environment: environments.setup,
      secret: this.credentialsSecret,
      timeout: Duration.minutes(2),
      ...placement,
    }));
    // The setup connects only once the instances, the attached secret and the ingress rule exist.
    if (this.cluster) this.setup.node.addDependency(this.cluster);
    if (props.existingEndpoint?.securityGroup) this.setup.node.addDependency(props.existingEndpoint.securityGroup);
    if (props.applicationUserRotation) {
      ({ schedule: this.appUserRotation, securityGroup: this.rotationSecurityGroup } = this.rotateApplicationUser(
        appSecret, props.applicationUserRotation, { vpc: props.vpc, vpcSubnets }, props.existingEndpoint?.securityGroup));
      // AWS's function reads host and port from the secret: after the attachment wrote them.
      if (attached) this.appUserRotation.node.addDependency(attached);
    }
    grantSecretValueRead(this.appUserSecret, this.setupFunction);

    this.counterFunction = createCounterFunction(this, DOCDB_CONTRACT, props, {
      description: 'Atomic counter on DocumentDB (findAndModify $inc; keyed changes in a transaction)',
      environment: environments.counter,
      // The application user's secret only: never the master secret.
      secret: this.appUserSecret,
      // The counter answers only once the collection exists.
      after: this.setup,
      // Bounded so that a burst cannot open more connections than the primary accepts.
      defaultReservedConcurrency: DOCDB_DEFAULT_RESERVED_CONCURRENCY,
      ...placement,
    });
  }

  /**
   * AWS's hosted DocumentDB rotation (alternating users), in the functions'
   * subnets, with a security group of its own that reaches only the
   * cluster's port and HTTPS (Secrets Manager).
   */
  private rotateApplicationUser(
    secret: secretsmanager.Secret, every: Duration, placement: { vpc: ec2.IVpc; vpcSubnets: ec2.SubnetSelection },
    existingGroup: ec2.ISecurityGroup | undefined,
  ): { schedule: secretsmanager.RotationSchedule; securityGroup: ec2.SecurityGroup } {
    const securityGroup = new ec2.SecurityGroup(this, 'RotationSecurityGroup', {
      vpc: placement.vpc,
      description: 'DocumentDB application user rotation (AWS hosted function)',
      allowAllOutbound: false,
    });
    securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'Secrets Manager over HTTPS');
    const port = ec2.Port.tcp(this.endpointPort);
    const cluster = this.cluster?.connections ?? existingGroup?.connections;
    if (cluster) cluster.allowFrom(securityGroup, port, 'Application user rotation');
    else securityGroup.addEgressRule(ec2.Peer.anyIpv4(), port, 'DocumentDB cluster endpoint');
    const schedule = secret.addRotationSchedule('Rotation', {
      automaticallyAfter: every,
      hostedRotation: secretsmanager.HostedRotation.mongoDbMultiUser({
        masterSecret: this.credentialsSecret,
        vpc: placement.vpc,
        vpcSubnets: placement.vpcSubnets,
        securityGroups: [securityGroup],
        excludeCharacters: APP_PASSWORD_EXCLUDED_CHARACTERS,
      }),
    });
    // The first rotation needs the user to exist: after the setup that creates it.
    schedule.node.addDependency(this.setup);
    return { schedule, securityGroup };
  }
}

/**
 * The counter function's default reserved concurrency, from the primary
 * instance's connection limit: 500 connections for the smallest classes
 * (db.t3.medium, db.t4g.medium: the default; AWS DocumentDB developer guide,
 * "Quotas and limits", instance limits), which is also what an existing
 * cluster of unknown class is assumed to be. Each container holds at most 2
 * connections to the primary: one pooled connection (Lambda serves one
 * request at a time and the store runs one operation at a time) and the
 * driver's monitoring connection (the MongoDB driver polls from a FaaS
 * environment, without a second RTT connection). A fifth of the limit is
 * left for the setup, the rotation function and operators:
 * 500 × 0.8 / 2 = 200. Larger classes allow more (README, "Reserved
 * concurrency"), and 200 is also as much as a default account (1,000, of
 * which 900 may be reserved) should give one function.
 */
const DOCDB_DEFAULT_RESERVED_CONCURRENCY = Math.floor((500 * 0.8) / 2);

/** A function's environment variables. */
type Environment = { [key: string]: string };

/** Where the functions connect, and the secret the setup logs in with. */
interface DocDbConnection {
  readonly host: string;
  readonly port: number;
  /** The master (or `credentialsSecret`) secret: the setup's only. */
  readonly masterSecretArn: string;
}

/**
 * The environments of the setup function (master user, manages the
 * application user) and of the counter function (the application user only).
 * Only the secrets' ARNs travel through them; the handlers read the secrets
 * once per container and pass the credentials to the driver.
 */
function docdbEnvironments(counter: DocDbCounter, connection: DocDbConnection, appSecretArn: string): { setup: Environment; counter: Environment } {
  const endpointEnv = {
    [DOCDB_ENV.HOST]: connection.host,
    [DOCDB_ENV.PORT]: String(connection.port),
    [DOCDB_ENV.TLS]: 'true',
    [DOCDB_ENV.REPLICA_SET]: DOCDB_DEFAULTS.replicaSet,
    [DOCDB_ENV.DATABASE]: counter.databaseName,
    [DOCDB_ENV.COLLECTION]: counter.collectionName,
    // DocumentDB's certificate chains to the Amazon RDS CAs, which Lambda's
    // Node.js 20+ runtimes ship but load only through this variable. The
    // driver then verifies the chain and the host name as usual.
    NODE_EXTRA_CA_CERTS: DOCDB_DEFAULTS.caBundlePath,
  };
  return {
    setup: { [DOCDB_ENV.SECRET_ARN]: connection.masterSecretArn, [DOCDB_ENV.APP_SECRET_ARN]: appSecretArn, ...endpointEnv },
    counter: { [DOCDB_ENV.SECRET_ARN]: appSecretArn, ...endpointEnv },
  };
}

/** The characters DocumentDB refuses in passwords, plus the backslash: generated and rotated passwords alike. */
const APP_PASSWORD_EXCLUDED_CHARACTERS = '"@/\\';

/** Suffix AWS's alternating-users rotation adds to the second user's name. */
const ROTATION_CLONE_SUFFIX = '_clone';

/** Every problem with the props, for one synth-time error (the constructor adds the deployment's and the functions'). */
function validate(scope: Construct, props: DocDbCounterProps): PropsValidation {
  const check = checkCounterOptions(new PropsValidation(scope), props)
    .existingOrCreated(props, 'existingEndpoint', {
      createdOnly: ['instanceType', 'instances', 'engineVersion', 'masterUsername', 'backupRetention', 'removalPolicy'],
      requiredWithExisting: ['credentialsSecret'],
      created: 'the cluster',
    })
    .integer('existingEndpoint.port', props.existingEndpoint?.port, 1, 65535)
    .problem(importedSecretNameProblem('credentialsSecret', props.credentialsSecret));
  const fail = (message: string) => check.check(false, message);
  const instances = props.instances;
  if (instances !== undefined && !Token.isUnresolved(instances) && (!Number.isSafeInteger(instances) || instances < 1 || instances > 16)) {
    fail(`\`instances\` must be an integer from 1 to 16 (got ${instances})`);
  }
  const days = props.backupRetention?.toDays({ integral: false });
  if (days !== undefined && !Token.isUnresolved(days) && (!Number.isInteger(days) || days < 1 || days > 35)) {
    fail(`\`backupRetention\` must be a whole number of days from 1 to 35 (got ${days})`);
  }
  const user = props.appUsername;
  if (user !== undefined && !Token.isUnresolved(user) && !/^[A-Za-z][A-Za-z0-9_-]{0,62}$/.test(user)) {
    fail(`\`appUsername\` must start with a letter and hold 1-63 letters, digits, _ or - (got "${user}")`);
  }
  if (user !== undefined && user === (props.masterUsername ?? CLUSTER_DEFAULTS.masterUsername)) fail('`appUsername` must differ from the master user name');
  if (props.applicationUserRotation) {
    const clone = (user ?? DOCDB_DEFAULTS.appUsername) + ROTATION_CLONE_SUFFIX;
    if (!Token.isUnresolved(clone) && clone.length > 63) fail(`\`appUsername\` must be at most ${63 - ROTATION_CLONE_SUFFIX.length} characters with \`applicationUserRotation\` (the rotation adds a user "${clone}")`);
    const rotationDays = props.applicationUserRotation.toHours({ integral: false }) / 24;
    if (!Token.isUnresolved(rotationDays) && (rotationDays < 1 / 6 || rotationDays > 1000)) {
      fail(`\`applicationUserRotation\` must be between 4 hours and 1000 days (Secrets Manager's limits); got ${props.applicationUserRotation.toHumanString()}`);
    }
  }
  const db = props.databaseName;
  if (db !== undefined && !Token.isUnresolved(db) && !/^[^/\\. "$\u0000]{1,63}$/.test(db)) {
    fail(`\`databaseName\` must be 1-63 characters without / \\ . space " $ (got "${db}")`);
  }
  const coll = props.collectionName;
  // 115, so that the keys collection `<collectionName>_keys` stays within the 120 characters allowed before.
  if (coll !== undefined && !Token.isUnresolved(coll) && (!/^[^$\u0000]{1,115}$/.test(coll) || coll.startsWith('system.'))) {
    fail(`\`collectionName\` must be 1-115 characters without $ and not start with "system." (got "${coll}")`);
  }
  return check;
}
