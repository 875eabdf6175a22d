import { DOCDB_BUNDLES, docdbWorstCase } from './docdb-env';
import type { BackendContract } from '../../private/backend-contract';

/** What the library knows about the Amazon DocumentDB backend (`BackendContract`). */
export const DOCDB_CONTRACT = {
  name: 'docdb',
  metricPrefix: 'DocDb',
  bundles: DOCDB_BUNDLES,
  sharded: true,
  worstCase: docdbWorstCase,
} as const satisfies BackendContract<'docdb'>;
