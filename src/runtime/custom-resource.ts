/**
 * Setup custom resources run through aws-cdk-lib's `custom-resources.Provider`
 * framework: the onEvent handler returns the physical id (and data), or
 * throws, and the framework fails the deployment with the thrown message.
 */
import { writeWarning } from './log';

export interface SetupEvent {
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly PhysicalResourceId?: string;
  readonly ResourceProperties: Record<string, unknown>;
  readonly OldResourceProperties?: Record<string, unknown>;
  /** The stack's ARN (CloudFormation sends it with every request). */
  readonly StackId?: string;
}

export interface SetupResult {
  PhysicalResourceId: string;
  Data?: Record<string, string>;
}

export interface SetupHandlerOptions {
  /** Idempotent: creates what is missing, succeeds when everything exists. */
  readonly setup: (properties: Record<string, unknown>) => Promise<Record<string, string> | void>;
  /** A stable id for what the resource manages (e.g. "docdb:counters/counters"). */
  readonly physicalId: (properties: Record<string, unknown>) => string;
}

/** Whether the stack `stackId` is rolling an update back; undefined when that cannot be told. */
export type RollbackProbe = (stackId: string) => Promise<boolean | undefined>;

/** The stack statuses in which CloudFormation sends the Updates of a rollback. */
const ROLLBACK_STATUSES = new Set(['UPDATE_ROLLBACK_IN_PROGRESS']);

/** Minimal shape of `@aws-sdk/client-cloudformation` used here. */
interface CloudFormationModule {
  CloudFormationClient: new (config: Record<string, unknown>) => {
    send(command: unknown): Promise<{ Stacks?: { StackStatus?: string }[] }>;
    destroy(): void;
  };
  DescribeStacksCommand: new (input: { StackName: string }) => unknown;
}

/**
 * Asks CloudFormation for the stack's status (`DescribeStacks` on the
 * stack's own ARN; the construct grants exactly that). The client is the
 * one the Lambda Node.js runtime ships (the bundles keep `@aws-sdk/*`
 * external); where it is not installed (local runs) the answer is unknown.
 */
export const describeStackRollback: RollbackProbe = async (stackId) => {
  let sdk: CloudFormationModule;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    sdk = require('@aws-sdk/client-cloudformation') as CloudFormationModule;
  } catch {
    return undefined;
  }
  // Bounded: in a VPC without a route to CloudFormation the call must not outlast the setup function.
  const client = new sdk.CloudFormationClient({ maxAttempts: 2, requestHandler: { connectionTimeout: 2000, requestTimeout: 5000 } });
  try {
    const out = await client.send(new sdk.DescribeStacksCommand({ StackName: stackId }));
    const status = out.Stacks?.[0]?.StackStatus;
    return status === undefined ? undefined : ROLLBACK_STATUSES.has(status);
  } catch {
    return undefined;
  } finally {
    client.destroy();
  }
};

/**
 * Create and Update run `setup`; Delete leaves the data in place (a counter
 * store is data, and deleting it on a stack update that replaces the
 * resource would lose every counter).
 *
 * An Update sent by a rollback asks for the properties the stack had before
 * the failed update: properties this resource already applied, whose store
 * exists (setup only ever adds, and Delete keeps data). If the setup fails
 * then (typically: the SaaS or the cluster is unreachable, which may be why
 * the update failed), the rollback would stop in `UPDATE_ROLLBACK_FAILED`.
 * So a failed Update first asks whether the stack is rolling back
 * (`rollbackProbe`), and if it is, succeeds with a warning instead; a
 * forward Update still fails the deployment with the setup's error.
 */
export function createSetupHandler(
  options: SetupHandlerOptions, rollbackProbe: RollbackProbe = describeStackRollback,
): (event: SetupEvent) => Promise<SetupResult> {
  return async (event) => {
    const properties = event.ResourceProperties ?? {};
    const physicalId = options.physicalId(properties);
    if (event.RequestType === 'Delete') {
      return { PhysicalResourceId: event.PhysicalResourceId ?? physicalId };
    }
    try {
      const data = (await options.setup(properties)) ?? undefined;
      return { PhysicalResourceId: physicalId, ...(data ? { Data: data } : {}) };
    } catch (err) {
      if (event.RequestType !== 'Update' || !event.StackId || (await rollbackProbe(event.StackId)) !== true) throw err;
      writeWarning(physicalId.split(':')[0], `setup skipped during the stack's rollback to properties it already applied (${physicalId}): ${(err as Error).message}`);
      return { PhysicalResourceId: physicalId, Data: { RollbackSetup: 'skipped' } };
    }
  };
}
