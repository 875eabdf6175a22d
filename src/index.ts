export * from './counter-base';
export * from './atomic-counter-api';
export * from './atomic-counter-dashboard';
export * from './backends/dynamo/dynamo-counter';
export * from './backends/momento/momento-counter';
export * from './backends/redis/redis-counter';
export * from './backends/tidb/tidb-counter';
export * from './backends/docdb/docdb-counter';
