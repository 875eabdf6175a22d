import { MongoClient, MongoClientOptions } from 'mongodb';
import { ConfigError } from '../../../runtime/config';
import { readJsonSecret, secretField } from '../../../runtime/secrets';
import { DOCDB_DEFAULTS, DOCDB_ENV } from '../docdb-env';
import { DocDbConfig } from './docdb-config';

export interface DocDbCredentials {
  readonly username: string;
  readonly password: string;
}

/**
 * The connection string and driver options for a configuration. Credentials
 * travel in the driver's `auth` option: generated passwords may contain
 * `:`, `?`, `#` or `%`, which would corrupt (or silently change) a URI they
 * were spliced into.
 */
export function connectionFor(
  config: DocDbConfig,
  credentials?: DocDbCredentials,
  secretEndpoint?: { host?: string; port?: number },
): { url: string; options: MongoClientOptions } {
  const host = config.host ?? secretEndpoint?.host;
  const port = config.port ?? secretEndpoint?.port ?? DOCDB_DEFAULTS.port;
  if (!config.uri && !host) throw new ConfigError(`No DocumentDB host: set ${DOCDB_ENV.HOST} or use a secret with a "host" field`);
  const url = config.uri ?? `mongodb://${host!.includes(':') ? `[${host}]` : host}:${port}/`;
  const options: MongoClientOptions = {
    // With DOCDB_URI the string governs TLS and topology; otherwise we do.
    ...(config.uri ? {} : {
      tls: config.tls,
      // DocumentDB is always replica set `rs0`: naming it lets the driver
      // follow the primary across a failover instead of writing to a demoted one.
      ...(config.replicaSet ? { replicaSet: config.replicaSet } : { directConnection: true }),
    }),
    ...(credentials ? { auth: { username: credentials.username, password: credentials.password }, authSource: 'admin' } : {}),
    // DocumentDB supports retryable writes only from engine 8.0.2; before
    // that a write carrying a transaction number is refused. Our increments
    // are not idempotent either: a blind driver retry after a lost reply
    // could count one request twice.
    retryWrites: false,
    // Reads and writes go to the primary: a GET sees every acknowledged increment.
    readPreference: 'primary',
    // An acknowledged increment is on a majority of instances: a failover
    // cannot roll it back after the client was told its value.
    writeConcern: { w: 'majority' },
    serverSelectionTimeoutMS: config.serverSelectionTimeoutMs,
    connectTimeoutMS: config.connectTimeoutMs,
    socketTimeoutMS: config.socketTimeoutMs,
    // A connection idle this long may have been dropped silently by a NAT
    // while the container was frozen: open a new one instead of waiting for
    // the socket timeout on it.
    maxIdleTimeMS: config.maxIdleTimeMs,
    appName: 'cdk-atomic-counter',
  };
  return { url, options };
}

/**
 * Creates the driver client for a configuration: reads the credentials
 * secret (cached once per container) when one is configured. The client
 * connects lazily on its first operation and keeps a pool across invocations.
 */
export async function createDocDbClient(config: DocDbConfig, extra: MongoClientOptions = {}): Promise<MongoClient> {
  let credentials: DocDbCredentials | undefined;
  let endpoint: { host?: string; port?: number } | undefined;
  if (config.secretArn) {
    const secret = await readJsonSecret(config.secretArn);
    credentials = readCredentials(secret);
    endpoint = {
      host: typeof secret.host === 'string' ? secret.host : undefined,
      port: secret.port === undefined ? undefined : Number(secret.port),
    };
  }
  const { url, options } = connectionFor(config, credentials, endpoint);
  return new MongoClient(url, { ...options, ...extra });
}

/** `{username, password}` of a secret (errors name the field, never its value). */
export function readCredentials(secret: Record<string, unknown>): DocDbCredentials {
  return { username: secretField(secret, 'username'), password: secretField(secret, 'password') };
}
