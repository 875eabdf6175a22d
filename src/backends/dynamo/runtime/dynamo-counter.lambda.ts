import { DynamoCounterStore, readDynamoConfig } from './dynamo-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container.
const config = readDynamoConfig(process.env);

export const handler = createCounterHandler({
  backend: 'dynamo',
  createStore: () => new DynamoCounterStore(config),
});
