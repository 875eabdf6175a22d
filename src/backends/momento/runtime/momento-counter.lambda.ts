import { MomentoCounterStore, readMomentoConfig } from './momento-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container; the
// secret is read and the client created on the first request (lazily, once).
const config = readMomentoConfig(process.env);

export const handler = createCounterHandler({
  backend: 'momento',
  createStore: () => MomentoCounterStore.create(config),
});
