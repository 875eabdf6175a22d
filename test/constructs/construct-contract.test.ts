import type { BackendName } from '../../src/runtime/store';
import { describeConstructContract } from '../kit/construct-contract';

// The construct contract (test/kit/construct-contract.ts), once per counter.
for (const backend of ['dynamo', 'redis', 'momento', 'docdb', 'tidb'] as BackendName[]) describeConstructContract(backend);
