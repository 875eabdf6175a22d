import { TIDB_BUNDLES, tidbWorstCase } from './tidb-env';
import type { BackendContract } from '../../private/backend-contract';

/** What the library knows about the TiDB (TiDB Cloud) backend (`BackendContract`). */
export const TIDB_CONTRACT = {
  name: 'tidb',
  metricPrefix: 'TiDb',
  bundles: TIDB_BUNDLES,
  sharded: true,
  worstCase: tidbWorstCase,
} as const satisfies BackendContract<'tidb'>;
