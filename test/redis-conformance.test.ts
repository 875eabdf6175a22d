import { describeConformance } from './kit/conformance';

// DESIGN.md §5 for Redis, through the bundled handler against a real redis-server.
describeConformance('redis');
