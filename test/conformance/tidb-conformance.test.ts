import { describeConformance } from '../kit/conformance';
import { describeFaultContract } from '../kit/fault-contract';

// String ids throughout (the kit's ids: 'hot', 'user-42', unicode, quotes…);
// each test prepares its own database through the bundled setup handler.
describeConformance('tidb');
describeFaultContract('tidb');
