import { describeConformance } from './kit/conformance';

describeConformance('dynamo');
