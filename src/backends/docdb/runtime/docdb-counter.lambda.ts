import { readDocDbConfig } from './docdb-config';
import { DocDbCounterStore } from './docdb-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// pipeline then reads the secret, builds the client (with its pool) and
// connects it while the init phase runs (see createCounterHandler).
const config = readDocDbConfig(process.env);

export const handler = createCounterHandler({
  backend: 'docdb',
  createStore: () => DocDbCounterStore.create(config),
});
