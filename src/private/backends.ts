/**
 * Every backend's contract, in one typed table: a backend in `BACKENDS`
 * (src/runtime/store.ts) without a contract here, or a contract without one
 * of its fields, does not compile. Tests and tools that go over every backend
 * iterate this table instead of keeping a list. Not part of the published API.
 */
import type { BackendContract } from './backend-contract';
import { DOCDB_CONTRACT } from '../backends/docdb/docdb-contract';
import { DYNAMO_CONTRACT } from '../backends/dynamo/dynamo-contract';
import { MOMENTO_CONTRACT } from '../backends/momento/momento-contract';
import { REDIS_CONTRACT } from '../backends/redis/redis-contract';
import { TIDB_CONTRACT } from '../backends/tidb/tidb-contract';
import type { BackendName } from '../runtime/store';

/** Each backend's contract, by its route segment (in `BACKENDS` order). */
export const BACKEND_CONTRACTS: { readonly [B in BackendName]: BackendContract<B> } = {
  dynamo: DYNAMO_CONTRACT,
  redis: REDIS_CONTRACT,
  momento: MOMENTO_CONTRACT,
  docdb: DOCDB_CONTRACT,
  tidb: TIDB_CONTRACT,
};

/** The contracts as a list, in `BACKENDS` order. */
export const ALL_BACKEND_CONTRACTS: readonly BackendContract[] = Object.values(BACKEND_CONTRACTS);
