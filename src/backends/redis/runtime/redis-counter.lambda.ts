import { readRedisConfig, RedisCounterStore } from './redis-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// connection (and the auth secret) wait for the first request.
const config = readRedisConfig(process.env);

export const handler = createCounterHandler({
  backend: 'redis',
  createStore: () => new RedisCounterStore(config),
});
