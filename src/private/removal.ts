/**
 * Removal policies of what a counter creates around its store (issue 19,
 * item 7): a clean `cdk destroy` whatever the store's policy, and a clean
 * rollback of a failed first deployment. Construct plumbing, not part of
 * the published API.
 */
import { Annotations, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { IConstruct } from 'constructs';

/**
 * What the library keeps by default (data and logs): kept when it leaves
 * the stack or is replaced, but deleted when the deployment that created it
 * rolls back (CloudFormation's `RetainExceptOnCreate`), so a failed first
 * deployment leaves nothing behind to clean up by hand.
 */
export const KEEP_UNLESS_CREATE_FAILED = RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE;

/**
 * A resource that only serves a store (its subnet group, security group,
 * parameter group): kept while the store is kept, since a retained cluster
 * still uses it and CloudFormation could not delete it (`cdk destroy` would
 * fail); deleted once the store is (SNAPSHOT deletes the store after its
 * final snapshot). SNAPSHOT is a store's policy only.
 */
export function dependentRemovalPolicy(store: RemovalPolicy): RemovalPolicy {
  return store === RemovalPolicy.SNAPSHOT ? RemovalPolicy.DESTROY : store;
}

/**
 * A secret holding a store's credentials follows the store: kept with a
 * retained store or its final snapshot (a restored snapshot needs the
 * password), deleted with a destroyed one. With SNAPSHOT, a failed first
 * deployment deletes the secret too (its cluster was empty).
 */
export function credentialsRemovalPolicy(store: RemovalPolicy): RemovalPolicy {
  return store === RemovalPolicy.SNAPSHOT ? KEEP_UNLESS_CREATE_FAILED : store;
}

/**
 * Warns at synth when a retained store lives in a VPC created in the same
 * stack: `cdk destroy` keeps the store and its network interfaces, so
 * CloudFormation cannot delete the VPC's subnets and the destroy fails.
 */
export function warnRetainedStoreInOwnVpc(scope: IConstruct, store: RemovalPolicy, vpc: ec2.IVpc, what: string): void {
  const retained = store === RemovalPolicy.RETAIN || store === RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE;
  if (!retained || !(vpc instanceof ec2.Vpc) || Stack.of(vpc) !== Stack.of(scope)) return;
  Annotations.of(scope).addWarningV2('cdk-atomic-counter:retainedStoreInOwnVpc',
    `the ${what} is retained (removalPolicy ${store}) in a VPC created in the same stack: cdk destroy keeps the ${what} and its network interfaces, ` +
    'so deleting the VPC\'s subnets fails and the destroy stops. Keep the VPC in another stack, or use RemovalPolicy.SNAPSHOT (the default).');
}
