/**
 * Setup custom resources run through aws-cdk-lib's `custom-resources.Provider`
 * framework: the onEvent handler returns the physical id (and data), or
 * throws, and the framework fails the deployment with the thrown message.
 */
export interface SetupEvent {
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly PhysicalResourceId?: string;
  readonly ResourceProperties: Record<string, unknown>;
  readonly OldResourceProperties?: Record<string, unknown>;
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

/**
 * Create and Update run `setup`; Delete leaves the data in place (a counter
 * store is data, and deleting it on a stack update that replaces the
 * resource would lose every counter).
 */
export function createSetupHandler(options: SetupHandlerOptions): (event: SetupEvent) => Promise<SetupResult> {
  return async (event) => {
    const properties = event.ResourceProperties ?? {};
    if (event.RequestType === 'Delete') {
      return { PhysicalResourceId: event.PhysicalResourceId ?? options.physicalId(properties) };
    }
    const data = (await options.setup(properties)) ?? undefined;
    return { PhysicalResourceId: options.physicalId(properties), ...(data ? { Data: data } : {}) };
  };
}
