import { describeConformance } from './kit/conformance';
import { describeFaultContract } from './kit/fault-contract';

// Against MONGODB_URI when set (a real mongod or DocumentDB), else our
// in-process MongoDB-wire server (local/engines/mongo-wire-server.ts).
describeConformance('docdb');
describeFaultContract('docdb');
