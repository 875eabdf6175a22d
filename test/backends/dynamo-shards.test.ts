/**
 * Sharded counters on DynamoDB Local through the bundled handler: the
 * shared contract (test/kit/shards-contract.ts) with shards 1 and 8, both
 * modes.
 */
import { useBackend } from '../kit/conformance';
import { describeShardsContract } from '../kit/shards-contract';

const ctx = useBackend('dynamo');
describeShardsContract('dynamo', ctx);
