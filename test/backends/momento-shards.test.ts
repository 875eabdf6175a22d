/**
 * Sharded counters on Momento (docs/momento.md, "Sharded counters") through
 * the bundled handler on the local Momento server: the shared contract
 * (test/kit/shards-contract.ts) with shards 1 and 8, both modes; then what
 * the cache holds (slot items, slot 0's width and grant ledger, the escrow
 * invariant), resharding down to 1, and the calls a change and a read send.
 */
import { useBackend } from '../kit/conformance';
import { describeShardsContract } from '../kit/shards-contract';

const ctx = useBackend('momento');
describeShardsContract('momento', ctx);
