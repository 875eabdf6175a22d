import { Env, readInteger, readOptionalString, readString } from '../../../runtime/config';
import { DYNAMO_DEFAULTS, DYNAMO_ENV } from '../dynamo-env';

/** The counter function's configuration, read and validated once per container. */
export interface DynamoConfig {
  readonly tableName: string;
  /** Local engines only (DynamoDB Local). */
  readonly endpoint?: string;
  readonly region?: string;
  /** Bound on one call; connecting is bounded separately at 1 s. */
  readonly requestTimeoutMs: number;
  /**
   * With an endpoint override (a local engine): the credentials to sign
   * with, read at init like the rest (DynamoDB Local checks none, so
   * placeholders do when the environment has no keys). On AWS the SDK's
   * default chain (the function's role) is used.
   */
  readonly endpointCredentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** Every environment variable the DynamoDB handler reads (names from `dynamo-env.ts`). */
export function readDynamoConfig(env: Env): DynamoConfig {
  return {
    tableName: readString(env, DYNAMO_ENV.TABLE_NAME),
    endpoint: readOptionalString(env, DYNAMO_ENV.ENDPOINT),
    region: readOptionalString(env, 'AWS_REGION') ?? readOptionalString(env, 'AWS_DEFAULT_REGION'),
    requestTimeoutMs: readInteger(env, DYNAMO_ENV.REQUEST_TIMEOUT_MS, DYNAMO_DEFAULTS.requestTimeoutMs, 100),
    endpointCredentials: readOptionalString(env, DYNAMO_ENV.ENDPOINT) === undefined ? undefined : {
      accessKeyId: readOptionalString(env, 'AWS_ACCESS_KEY_ID') ?? 'local',
      secretAccessKey: readOptionalString(env, 'AWS_SECRET_ACCESS_KEY') ?? 'local',
    },
  };
}
