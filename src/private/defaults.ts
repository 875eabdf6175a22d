/**
 * Defaults of the constructs, in one place (the README's "Default settings"
 * table mirrors them). Not part of the published API: TypeScript-only values
 * that other jsii languages could not see anyway.
 */
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { BackendContract } from './backend-contract';
import { MODE_DEFAULTS } from '../counter-env';

/** Namespace of every counter metric. */
export const METRIC_NAMESPACE = 'AtomicCounter';

/**
 * `<Backend>AtomicCounter`, e.g. `DynamoAtomicCounter`: the one place counter
 * metric names come from, spelled with the backend's contract's `metricPrefix`.
 */
export function counterMetricNameOf(backend: Pick<BackendContract, 'metricPrefix'>): string {
  return `${backend.metricPrefix}AtomicCounter`;
}

/** The change metric of a counter metric, e.g. `DynamoAtomicCounterChange`: the sum of applied steps. */
export function changeMetricNameOf(counterMetricName: string): string {
  return `${counterMetricName}Change`;
}

/** Name of the counter metric's dimension that identifies the deployment. */
export const DEPLOYMENT_DIMENSION = 'Deployment';

/** Defaults every counter construct shares. */
export const COUNTER_DEFAULTS = {
  ...MODE_DEFAULTS,
  logRetention: logs.RetentionDays.ONE_MONTH,
  memorySize: 256,
  timeoutSeconds: 10,
  maxTimeoutSeconds: 25,
  runtime: lambda.Runtime.NODEJS_24_X,
  architecture: lambda.Architecture.ARM_64,
} as const;

/** The usage plan defaults of `AtomicCounterApi`. */
export const USAGE_PLAN_DEFAULTS = { rateLimit: 100, burstLimit: 200, quotaLimit: 1_000_000, quotaPeriod: apigw.Period.MONTH } as const;
