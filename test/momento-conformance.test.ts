import { describeConformance } from './kit/conformance';

describeConformance('momento');
