import { MOMENTO_BUNDLES, momentoWorstCase } from './momento-env';
import type { BackendContract } from '../../private/backend-contract';

/** What the library knows about the Momento Cache backend (`BackendContract`). */
export const MOMENTO_CONTRACT = {
  name: 'momento',
  metricPrefix: 'Momento',
  bundles: MOMENTO_BUNDLES,
  sharded: true,
  worstCase: momentoWorstCase,
} as const satisfies BackendContract<'momento'>;
