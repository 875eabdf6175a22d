import { REDIS_BUNDLES, redisWorstCase } from './redis-env';
import type { BackendContract } from '../../private/backend-contract';

/** What the library knows about the Redis (ElastiCache) backend (`BackendContract`). */
export const REDIS_CONTRACT = {
  name: 'redis',
  metricPrefix: 'Redis',
  bundles: REDIS_BUNDLES,
  sharded: false,
  worstCase: redisWorstCase,
} as const satisfies BackendContract<'redis'>;
