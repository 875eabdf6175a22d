import { describeConformance } from '../kit/conformance';
import { describeFaultContract } from '../kit/fault-contract';

describeConformance('dynamo');
describeFaultContract('dynamo');
