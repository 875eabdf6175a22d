import { describeConformance } from '../kit/conformance';
import { describeFaultContract } from '../kit/fault-contract';

// The conformance kit (docs/architecture.md, "Tests by layer") for Redis, through the bundled handler against a real redis-server.
describeConformance('redis');
describeFaultContract('redis');
