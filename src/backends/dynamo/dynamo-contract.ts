import { DYNAMO_BUNDLES, dynamoWorstCase } from './dynamo-env';
import type { BackendContract } from '../../private/backend-contract';

/** What the library knows about the DynamoDB backend (`BackendContract`). */
export const DYNAMO_CONTRACT = {
  name: 'dynamo',
  metricPrefix: 'Dynamo',
  bundles: DYNAMO_BUNDLES,
  sharded: true,
  worstCase: dynamoWorstCase,
} as const satisfies BackendContract<'dynamo'>;
