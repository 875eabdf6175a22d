import { describeConformance } from '../kit/conformance';
import { describeFaultContract } from '../kit/fault-contract';

// The kit's default sizes (32 callers × 1000 unconditional; 32 callers, 500
// attempts, maximum 100 conditional; first race 50; 8 containers; 5000 leak
// invocations) run in ~20 s on the in-process server, so none is reduced.
// The conditional case is a contended compare-and-swap: see
// momento-contention.test.ts for its cost and the 20 × 50 / maximum 300 case.
describeConformance('momento');
describeFaultContract('momento');
