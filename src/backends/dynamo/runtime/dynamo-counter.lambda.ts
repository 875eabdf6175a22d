import { readDynamoConfig } from './dynamo-config';
import { DynamoCounterStore } from './dynamo-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// pipeline then creates the store and warms its client up while the init
// phase runs (see createCounterHandler).
const config = readDynamoConfig(process.env);

export const handler = createCounterHandler({
  backend: 'dynamo',
  createStore: () => DynamoCounterStore.create(config),
});
