import { useBackend } from '../kit/conformance';
import { describeShardsContract } from '../kit/shards-contract';

const ctx = useBackend('tidb');
describeShardsContract('tidb', ctx);
