import { Annotations, Stack, Token } from 'aws-cdk-lib';
import { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { IConstruct } from 'constructs';
import type { PropsValidation } from './private/props';

/**
 * Synth-time checks of account- and region-level facts that CloudFormation
 * would otherwise report late, after the slow resources were created. Each
 * gives a problem for the construct's `PropsValidation` (never throws), so
 * one error lists it with every other problem of the props.
 */

/**
 * Regions whose CloudFormation registry has `AWS::DocDB::DBCluster`,
 * `AWS::DocDB::DBInstance` and `AWS::DocDB::DBSubnetGroup`: from the region
 * schemas shipped with cfn-lint 1.51.0 (`cfnlint/data/schemas/providers/<region>.py`),
 * read 2026-12-01. cfn-lint reports E3006 for these types in every other region.
 */
export const DOCDB_REGIONS: readonly string[] = [
  'af-south-1', 'ap-east-1', 'ap-northeast-1', 'ap-northeast-2', 'ap-northeast-3', 'ap-south-1', 'ap-south-2',
  'ap-southeast-1', 'ap-southeast-2', 'ap-southeast-5', 'ap-southeast-7', 'ca-central-1', 'cn-north-1',
  'cn-northwest-1', 'eu-central-1', 'eu-isoe-west-1', 'eu-north-1', 'eu-south-1', 'eu-south-2', 'eu-west-1',
  'eu-west-2', 'eu-west-3', 'eusc-de-east-1', 'il-central-1', 'me-central-1', 'mx-central-1', 'sa-east-1',
  'us-east-1', 'us-east-2', 'us-gov-east-1', 'us-gov-west-1', 'us-iso-east-1', 'us-iso-west-1',
  'us-isob-east-1', 'us-isob-west-1', 'us-isof-east-1', 'us-isof-south-1', 'us-west-2',
];

/**
 * Regions cfn-lint 1.51.0 knows (same source and date) that do NOT offer
 * DocumentDB. A region in neither list is newer than that data: synth warns.
 */
export const NON_DOCDB_REGIONS: readonly string[] = [
  'ap-east-2', 'ap-southeast-3', 'ap-southeast-4', 'ap-southeast-6', 'ca-west-1', 'eu-central-2', 'me-south-1', 'us-west-1',
];

/**
 * Records a problem when the stack's region is known (not a token) and
 * DocumentDB is not offered there; warns for a region the list does not
 * know. An environment-agnostic stack is not checked (its region is decided
 * at deploy time).
 */
export function checkDocDbRegion(check: PropsValidation, scope: IConstruct): PropsValidation {
  const region = Stack.of(scope).region;
  if (Token.isUnresolved(region) || DOCDB_REGIONS.includes(region)) return check;
  if (NON_DOCDB_REGIONS.includes(region)) {
    return check.problem(`Amazon DocumentDB is not offered in ${region} (CloudFormation has no AWS::DocDB::DBCluster there); deploy this stack to a region that offers it, e.g. us-east-1, eu-west-1 or ap-southeast-1`);
  }
  Annotations.of(scope).addWarningV2('@cdk-atomic-counter/docdb:region',
    `DocumentDB availability in ${region} is unknown to this library (its region list dates from 2026-12); the deployment fails if ${region} does not offer DocumentDB`);
  return check;
}

/**
 * Secrets Manager reads a secret id ending in `-` plus six characters as a
 * full ARN's random suffix, so a *name* of that shape (e.g. `app/db-abc123`)
 * breaks partial-ARN lookups (`Secret.fromSecretNameV2`, IAM grants).
 * The problem with `name`, naming `what`; undefined when there is none.
 */
export function secretNameProblem(what: string, name: string): string | undefined {
  if (Token.isUnresolved(name) || !/-.{6}$/.test(name)) return undefined;
  return `${what}: the secret name "${name}" ends in "-" plus six characters, which Secrets Manager takes for the random suffix of a full ARN (lookups by name then fail); rename the secret, e.g. without the last hyphen`;
}

/** Lambda's limit on the total size of a function's environment variables. */
export const LAMBDA_ENVIRONMENT_LIMIT_BYTES = 4096;

/**
 * Size Lambda counts for an environment (the UTF-8 bytes of every key and
 * value), or undefined when a value is a token resolved only at deploy time.
 * Tokens (ARNs, endpoints) are counted at a generous estimate.
 */
export function environmentSize(environment: { [key: string]: string }): number {
  let bytes = 0;
  for (const [key, value] of Object.entries(environment)) {
    bytes += Buffer.byteLength(key, 'utf8');
    // An unresolved token: an ARN or a host name, counted at 256 bytes.
    bytes += Token.isUnresolved(value) ? Math.max(256, Buffer.byteLength(value, 'utf8')) : Buffer.byteLength(value, 'utf8');
  }
  return bytes;
}

/**
 * The problem, if any, with `environment` against Lambda's 4 KB limit, naming
 * `what` (e.g. "the counter function") and its largest variable.
 */
export function environmentSizeProblem(what: string, environment: { [key: string]: string }): string | undefined {
  const bytes = environmentSize(environment);
  if (bytes <= LAMBDA_ENVIRONMENT_LIMIT_BYTES) return undefined;
  const largest = Object.entries(environment)
    .map(([key, value]) => ({ key, bytes: Buffer.byteLength(key) + Buffer.byteLength(value) }))
    .sort((a, b) => b.bytes - a.bytes)[0];
  return `${what}: its environment variables take about ${bytes} bytes, over Lambda's limit of ${LAMBDA_ENVIRONMENT_LIMIT_BYTES} (the largest is ${largest.key}, ${largest.bytes} bytes)`;
}

/**
 * The problem with a secret imported by name or partial ARN
 * (`Secret.fromSecretNameV2`, `fromSecretPartialArn`) whose name looks like a
 * full ARN (see `secretNameProblem`), for `PropsValidation`; undefined when
 * there is none. A secret created in the stack or imported by its complete
 * ARN is not affected.
 */
export function importedSecretNameProblem(prop: string, secret: ISecret | undefined): string | undefined {
  if (secret === undefined || secret.secretFullArn !== undefined) return undefined;
  return secretNameProblem(`\`${prop}\``, secret.secretName);
}
