/**
 * Default names of stores a SaaS backend keeps outside the stack (a Momento
 * cache, a TiDB table): derived from the deployment's identity, so two
 * deployments that share one API key or one cluster never share counters or
 * `Idempotency-Key` records. Construct plumbing, not part of the published API.
 */
import { createHash } from 'crypto';
import { Annotations, Arn, ArnFormat, Stack, Token } from 'aws-cdk-lib';
import { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { IConstruct } from 'constructs';

/** How one store spells a derived name. */
export interface StoreNameRules {
  /** Fixed start, e.g. `atomic-counter-`. */
  readonly prefix: string;
  /** Stands for every character the store does not allow (and joins the hash). */
  readonly separator: '-' | '_';
  /** Longest name the store (and anything derived from it) accepts. */
  readonly maxLength: number;
}

/** Characters of the hash that keeps two deployments apart when their readable parts are spelled alike. */
const HASH_LENGTH = 8;

/**
 * `<prefix><readable deployment>-<hash>`: the deployment
 * (`<stack name>/<construct path>`, what the metrics carry as `Deployment`)
 * lowercased, every run of other characters than `a-z0-9` turned into one
 * separator, shortened to fit, then the first 8 hex digits of the SHA-256 of
 * the exact deployment string. The hash keeps names apart that the
 * readable part would merge (`A/B` and `a-b`, or two long paths cut at the
 * same length); the readable part tells an operator whose store it is.
 *
 * Stable: the same stack name and construct path always give the same name,
 * whatever else changes in the app. Stack names are unique per account and
 * region only: two deployments in different accounts with the same stack
 * name and path derive the same name (the docs say so).
 */
export function deploymentStoreName(deployment: string, rules: StoreNameRules): string {
  const hash = createHash('sha256').update(deployment, 'utf8').digest('hex').slice(0, HASH_LENGTH);
  const room = rules.maxLength - rules.prefix.length - rules.separator.length - HASH_LENGTH;
  if (room < 1) throw new Error(`store name rules leave no room for the deployment: ${JSON.stringify(rules)}`);
  const readable = deployment.toLowerCase()
    .replace(/[^a-z0-9]+/g, rules.separator)
    .slice(0, room)
    .replace(/^[-_]+|[-_]+$/g, '');
  return `${rules.prefix}${readable ? readable + rules.separator : ''}${hash}`;
}

/**
 * Who a secret is, for comparing two counters' stores at synth: the secret's
 * account, region and name when they are known (imported by ARN or name),
 * else the construct that created it (a secret made in a stack is its own).
 * `*` stands for an account or region decided at deploy time.
 */
export function secretIdentity(secret: ISecret): string {
  const name = secret.secretName;
  if (Token.isUnresolved(name)) return `secret construct ${secret.node.path}`;
  const stack = Stack.of(secret);
  let account = stack.account;
  let region = stack.region;
  if (!Token.isUnresolved(secret.secretArn)) {
    const arn = Arn.split(secret.secretArn, ArnFormat.COLON_RESOURCE_NAME);
    account = arn.account ?? account;
    region = arn.region ?? region;
  }
  const known = (v: string) => (Token.isUnresolved(v) ? '*' : v);
  return `secret ${known(account)}:${known(region)}:${name}`;
}

/** A counter's claim on a store outside its own stack. */
interface Claim {
  readonly scope: IConstruct;
  readonly description: string;
}

/** Claims per app (the root construct), so separate apps (tests) never see each other's. */
const claimsByApp = new WeakMap<IConstruct, Map<string, Claim>>();

/**
 * Records that `scope` keeps its counters in the store `identity` names (the
 * parts that make two stores the same: credentials, cluster, database, name),
 * and warns at synth on both counters when another counter of the same app
 * already claimed it: their counters and their `Idempotency-Key` records
 * would mix, so one could replay the other's answer or refuse a key it never
 * used. Identities holding a token (decided at deploy time) are not compared.
 */
export function claimStore(scope: IConstruct, identity: readonly string[], description: string): void {
  if (identity.some((part) => Token.isUnresolved(part))) return;
  const root = scope.node.root;
  let claims = claimsByApp.get(root);
  if (!claims) claimsByApp.set(root, (claims = new Map()));
  const key = JSON.stringify(identity);
  const earlier = claims.get(key);
  if (!earlier) {
    claims.set(key, { scope, description });
    return;
  }
  const warn = (at: IConstruct, other: IConstruct) => Annotations.of(at).addWarningV2('cdk-atomic-counter:sharedStore',
    `${at.node.path} and ${other.node.path} both keep their counters in ${description}: their counters and Idempotency-Key records mix ` +
    '(one deployment can replay the other\'s answer or get a 422 for a key it never used). Give one of them its own name, or leave the name out to get one derived from the deployment.');
  warn(scope, earlier.scope);
  warn(earlier.scope, scope);
}
