import { CustomResource, Duration, Token } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { TIDB_CONTRACT } from './tidb-contract';
import { TIDB_DEFAULTS, TIDB_ENV, TIDB_IDENTIFIER, TIDB_MAX_TABLE_LENGTH, TIDB_SCHEMA_VERSION, TIDB_SETUP_PROPERTIES } from './tidb-env';
import { CounterBase, CounterOptions, FunctionPlacementOptions } from '../../counter-base';
import { importedSecretNameProblem } from '../../deploy-checks';
import { checkCounterFunction, checkCounterOptions, checkEgressPlacement, checkSetupFunction, createCounterFunction, createSetupResource, egressPlacement, functionTimeoutMs } from '../../private/counter-resources';
import { counterMetricNameOf } from '../../private/defaults';
import { PropsValidation } from '../../private/props';
import { claimStore, deploymentStoreName, secretIdentity } from '../../private/store-names';

/**
 * How a derived table name is spelled: a lowercase identifier (TiDB and
 * MySQL may fold or keep case depending on the server's settings), short
 * enough for its key records table `<name>_keys`.
 */
const DERIVED_TABLE_NAME = { prefix: 'counters_', separator: '_', maxLength: TIDB_MAX_TABLE_LENGTH } as const;

/** Props of `TiDbCounter`. */
export interface TiDbCounterProps extends CounterOptions, FunctionPlacementOptions {
  /**
   * The connection to the TiDB cluster (TiDB Cloud lives outside the AWS
   * account): a secret holding the JSON object
   * `{"host", "port", "user", "password", "database"}`. The field names of
   * TiDB Cloud's `tidb_info.json` (`pwd`, `db`) are accepted too. Both
   * functions are granted read access to this secret only.
   */
  readonly credentialsSecret: secretsmanager.ISecret;

  /**
   * Connect with TLS 1.2+ and verify the server certificate and host name.
   * TiDB Cloud requires TLS; turn it off only for a self-hosted server on a
   * private network.
   * @default true
   */
  readonly tls?: boolean;

  /**
   * PEM certificate(s) to trust instead of Node's default roots, e.g. the CA
   * of a TiDB Cloud Dedicated cluster (public, not a secret).
   * @default - Node's default roots (TiDB Cloud Serverless/Starter chains to Let's Encrypt)
   */
  readonly tlsCaCertificate?: string;

  /**
   * Database of the counters table; the setup creates it when missing.
   * Letters, digits and underscores only.
   * @default - the secret's `database` (or `db`) field, else `atomic_counter`
   */
  readonly databaseName?: string;

  /**
   * Name of the counters table; the setup creates it when missing, and
   * `<tableName>_keys` beside it for the `Idempotency-Key` records.
   * Letters, digits and underscores only, at most 59 characters (so that
   * `<tableName>_keys` is a valid 64-character identifier). Two counters on
   * one cluster and database must not share a table: synth warns when two
   * counters of one app do.
   *
   * Earlier releases defaulted to `counters` for every deployment: a
   * deployment made with one keeps its counters only by setting
   * `tableName: 'counters'` (README, "Upgrading from a release with shared default names").
   * @default - derived from the deployment: `counters_<stack name and construct path>_<hash>` (lowercase, at most 59 characters), unique per stack name and construct path
   */
  readonly tableName?: string;

  /**
   * Time to establish a connection (TCP, TLS, handshake) before answering 503.
   * @default Duration.seconds(2)
   */
  readonly connectTimeout?: Duration;

  /**
   * Time one statement may take before answering 503.
   * @default Duration.millis(2500)
   */
  readonly queryTimeout?: Duration;
}

/**
 * An atomic counter on TiDB (TiDB Cloud, MySQL protocol): one
 * `INSERT … ON DUPLICATE KEY UPDATE` (or `UPDATE`) statement per change,
 * its bound checked by the server, the new value returned through
 * `LAST_INSERT_ID(expr)`; a change with an `Idempotency-Key` is one short
 * pessimistic transaction that records the key with the change. A setup
 * custom resource creates the database, the counters table and its key
 * records table.
 *
 * Without `vpc` the functions reach TiDB Cloud's public endpoint over TLS;
 * a VPC is for reaching it through a PrivateLink endpoint, and then the
 * subnets need egress to the cluster's endpoint and to Secrets Manager.
 */
export class TiDbCounter extends CounterBase {
  /** The function serving this counter's routes. */
  public readonly counterFunction: lambda.Function;
  /** The secret holding the connection (host, port, user, password, database). */
  public readonly credentialsSecret: secretsmanager.ISecret;
  /** The function behind the setup custom resource. */
  public readonly setupFunction: lambda.Function;
  /** The setup custom resource (`Custom::TiDbSetup`). */
  public readonly setup: CustomResource;
  /** Name of the counters table. */
  public readonly tableName: string;

  constructor(scope: Construct, id: string, props: TiDbCounterProps) {
    super(scope, id, props, TIDB_CONTRACT.name, counterMetricNameOf(TIDB_CONTRACT));
    // One table per deployment unless told otherwise: two stacks on one cluster never share counters or keys.
    this.tableName = props.tableName ?? deploymentStoreName(this.deployment, DERIVED_TABLE_NAME);
    const database = props.databaseName;
    const connectMs = props.connectTimeout?.toMilliseconds() ?? TIDB_DEFAULTS.connectTimeoutMs;
    const queryMs = props.queryTimeout?.toMilliseconds() ?? TIDB_DEFAULTS.queryTimeoutMs;
    const functionMs = functionTimeoutMs(props);
    const check = checkEgressPlacement(checkCounterOptions(new PropsValidation(this), props), props)
      .problem(identifierProblem('tableName', this.tableName) ?? tableLengthProblem(this.tableName))
      .problem(identifierProblem('databaseName', database))
      .problem(importedSecretNameProblem('credentialsSecret', props.credentialsSecret));
    if (![connectMs, queryMs].some(Token.isUnresolved) && functionMs !== undefined) {
      check.check(connectMs >= 100 && queryMs >= 100, '`connectTimeout` and `queryTimeout` must be at least 100 ms');
      // Worst case of one request: a stale connection's ping, a reconnect and
      // the statement (with its retries inside its own budget). Keep it inside
      // the function's timeout so the client gets a 503, not a Lambda timeout.
      check.check(2 * (connectMs + queryMs) < functionMs,
        `2 × (connectTimeout + queryTimeout) = ${2 * (connectMs + queryMs)} ms must stay below the function timeout (${functionMs} ms)`);
    }
    // Only the secret's ARN travels through the environment; the handlers read it once per container.
    const connectionEnv: { [key: string]: string } = {
      [TIDB_ENV.SECRET_ARN]: props.credentialsSecret.secretArn,
      [TIDB_ENV.TABLE]: this.tableName,
      [TIDB_ENV.TLS]: String(props.tls ?? true),
      [TIDB_ENV.CONNECT_TIMEOUT_MS]: String(connectMs),
      [TIDB_ENV.QUERY_TIMEOUT_MS]: String(queryMs),
      ...(database ? { [TIDB_ENV.DATABASE]: database } : {}),
      ...(props.tlsCaCertificate ? { [TIDB_ENV.TLS_CA]: props.tlsCaCertificate } : {}),
    };
    checkSetupFunction(check, connectionEnv);
    checkCounterFunction(check, this, TIDB_CONTRACT, props, connectionEnv).throwIfInvalid();
    this.credentialsSecret = props.credentialsSecret;
    const databaseLabel = database ?? '(the secret\'s database)';
    claimStore(this, ['tidb', secretIdentity(this.credentialsSecret), databaseLabel, this.tableName],
      `TiDB table ${databaseLabel}.${this.tableName} of the cluster in ${this.credentialsSecret.node.path}`);

    const placement = egressPlacement(props);

    // Setup: CREATE DATABASE / CREATE TABLE IF NOT EXISTS for the counters and
    // their key records (idempotent; Delete leaves the data). `Schema` changes
    // with the tables' revision, so an existing stack's next deployment runs
    // the setup again and gets the tables a new version needs.
    ({ setupFunction: this.setupFunction, resource: this.setup } = createSetupResource(this, props, {
      entry: TIDB_CONTRACT.bundles.setup,
      description: 'Creates the TiDB database and counters table (and its key records table) of the atomic counter if they do not exist',
      resourceType: 'Custom::TiDbSetup',
      properties: {
        [TIDB_SETUP_PROPERTIES.TABLE]: this.tableName,
        [TIDB_SETUP_PROPERTIES.SCHEMA]: TIDB_SCHEMA_VERSION,
        ...(database ? { [TIDB_SETUP_PROPERTIES.DATABASE]: database } : {}),
      },
      environment: connectionEnv,
      secret: this.credentialsSecret,
      ...placement,
    }));

    this.counterFunction = createCounterFunction(this, TIDB_CONTRACT, props, {
      description: 'Atomic counter on TiDB (one INSERT ... ON DUPLICATE KEY UPDATE per change, a transaction per keyed change)',
      environment: connectionEnv,
      secret: this.credentialsSecret,
      after: this.setup, // the counter answers only once the table exists
      ...placement,
    });
  }
}

function tableLengthProblem(name: string): string | undefined {
  if (Token.isUnresolved(name) || name.length <= TIDB_MAX_TABLE_LENGTH) return undefined;
  return `\`tableName\` must be at most ${TIDB_MAX_TABLE_LENGTH} characters: the setup also creates \`${name}_keys\` (got ${name.length})`;
}

function identifierProblem(what: string, name: string | undefined): string | undefined {
  if (name === undefined || Token.isUnresolved(name) || TIDB_IDENTIFIER.test(name)) return undefined;
  return `\`${what}\` must be 1-64 letters, digits or underscores (got "${name}")`;
}
