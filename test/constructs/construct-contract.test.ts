import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';
import { describeConstructContract } from '../kit/construct-contract';

// The construct contract (test/kit/construct-contract.ts), once per backend the library knows.
for (const { name } of ALL_BACKEND_CONTRACTS) describeConstructContract(name);
