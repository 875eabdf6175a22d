// The published (jsii) API, by name. Everything else under src/ (src/private/,
// the environment contracts, the runtime) is the library's own plumbing.
// test/constructs/public-api-surface.test.ts holds the list; change both together.
export { AtomicCounterApi } from './atomic-counter-api';
export type { AtomicCounterApiProps, UsagePlanLimits } from './atomic-counter-api';
export { AtomicCounterDashboard } from './atomic-counter-dashboard';
export type { AtomicCounterDashboardProps } from './atomic-counter-dashboard';
export { CounterBase } from './counter-base';
export type { CounterOptions, ExistingEndpoint, FunctionPlacementOptions, ICounter } from './counter-base';
export { DynamoCounter } from './backends/dynamo/dynamo-counter';
export type { DynamoCounterProps } from './backends/dynamo/dynamo-counter';
export { RedisCounter, RedisEngine } from './backends/redis/redis-counter';
export type { RedisCounterProps } from './backends/redis/redis-counter';
export { MomentoCounter } from './backends/momento/momento-counter';
export type { MomentoCounterProps } from './backends/momento/momento-counter';
export { DocDbCounter } from './backends/docdb/docdb-counter';
export type { DocDbCounterProps } from './backends/docdb/docdb-counter';
export { TiDbCounter } from './backends/tidb/tidb-counter';
export type { TiDbCounterProps } from './backends/tidb/tidb-counter';
