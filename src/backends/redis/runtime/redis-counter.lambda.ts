import { readRedisConfig } from './redis-config';
import { RedisCounterStore } from './redis-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// pipeline then reads the auth secret and opens the connection while the
// init phase runs (see createCounterHandler).
const config = readRedisConfig(process.env);

export const handler = createCounterHandler({
  backend: 'redis',
  createStore: () => RedisCounterStore.create(config),
});
