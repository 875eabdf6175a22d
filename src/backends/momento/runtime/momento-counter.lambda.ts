import { readMomentoConfig } from './momento-config';
import { MomentoCounterStore } from './momento-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// pipeline then reads the secret, creates the client and opens its channel
// while the init phase runs (see createCounterHandler).
const config = readMomentoConfig(process.env);

export const handler = createCounterHandler({
  backend: 'momento',
  createStore: () => MomentoCounterStore.create(config),
});
