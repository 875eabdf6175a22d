/**
 * Reserved concurrency of the counter functions (issue 19, item 4): a cap on
 * how many containers, hence connections, one counter can open against its
 * datastore. Construct plumbing, not part of the published API.
 */
import { Annotations, Stack, Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { PropsValidation } from './props';

/**
 * What Lambda lets an account reserve by default: a new region's account
 * quota is 1,000 concurrent executions and Lambda keeps at least 100 of
 * them unreserved ("You can reserve up to the Unreserved account
 * concurrency value that is shown, minus 100", Lambda developer guide,
 * configuration-concurrency). Synth cannot read the account's quota.
 */
export const DEFAULT_ACCOUNT_RESERVABLE = 1_000 - 100;

/**
 * The reservation a counter function gets: `requested` if given (0: none),
 * else the backend's default (undefined: none).
 */
export function reservedConcurrencyOf(requested: number | undefined, backendDefault: number | undefined): number | undefined {
  const value = requested ?? backendDefault;
  return value === undefined || value === 0 ? undefined : value;
}

/** Records the problem with `reservedConcurrency`, if any. */
export function checkReservedConcurrency(check: PropsValidation, requested: number | undefined): PropsValidation {
  return check.integer('reservedConcurrency', requested, 0);
}

/** Reservations per app and per account and region (a token: `*`). */
const reservedByApp = new WeakMap<IConstruct, Map<string, number>>();

/**
 * Adds a counter's reservation to its account's and region's total in this
 * app, and warns at synth when that total passes what a default account may
 * reserve: the deployment would fail with "Specified ReservedConcurrentExecutions
 * ... decreases account's UnreservedConcurrentExecution below its minimum
 * value" unless the account's quota was raised.
 */
export function recordReservation(scope: IConstruct, reserved: number | undefined): void {
  if (reserved === undefined || Token.isUnresolved(reserved)) return;
  const stack = Stack.of(scope);
  const known = (v: string) => (Token.isUnresolved(v) ? '*' : v);
  const env = `${known(stack.account)}/${known(stack.region)}`;
  let totals = reservedByApp.get(scope.node.root);
  if (!totals) reservedByApp.set(scope.node.root, (totals = new Map()));
  const total = (totals.get(env) ?? 0) + reserved;
  totals.set(env, total);
  if (total > DEFAULT_ACCOUNT_RESERVABLE) {
    Annotations.of(scope).addWarningV2('cdk-atomic-counter:reservedConcurrency',
      `the counters of this app reserve ${total} concurrent executions in ${env === '*/*' ? 'one account and region' : env} (this one ${reserved}): ` +
      `a default account (quota 1,000, of which 100 stay unreserved) can reserve ${DEFAULT_ACCOUNT_RESERVABLE}, so the deployment fails unless the ` +
      'account\'s Lambda concurrency quota is at least the total plus 100. Lower `reservedConcurrency`, or raise the quota (docs/operations.md).');
  }
}
