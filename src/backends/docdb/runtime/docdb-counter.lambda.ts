import { createDocDbClient, readDocDbConfig } from './docdb-client';
import { DocDbCounterStore } from './docdb-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// pipeline then reads the secret, builds the client and connects it while the
// init phase runs (see createCounterHandler).
const config = readDocDbConfig(process.env);

// `handler.close()` (local runs and tests only) ends the client's pool and
// monitor: the driver's heartbeat timer would otherwise keep the process alive.
export const handler = createCounterHandler({
  backend: 'docdb',
  // Once per container: the secret is read and the client (with its pool) built here.
  createStore: async () => new DocDbCounterStore(await createDocDbClient(config), config),
});
