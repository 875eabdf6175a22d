import { createDocDbClient, readDocDbConfig } from './docdb-client';
import { DocDbCounterStore } from './docdb-counter-store';
import { createCounterHandler } from '../../../runtime/handler';

// Init phase: configuration is read and validated once per container.
const config = readDocDbConfig(process.env);

let store: DocDbCounterStore | undefined;

const counterHandler = createCounterHandler({
  backend: 'docdb',
  // Once per container: the secret is read and the client (with its pool) built here.
  createStore: async () => (store = new DocDbCounterStore(await createDocDbClient(config), config)),
});

/**
 * The Lambda handler. `close` (never called by Lambda) ends the client's
 * pool and monitor, so a local process that loaded this "container" (tests,
 * the local server, the bench) can exit: the driver's heartbeat timer keeps
 * an event loop alive until the client is closed.
 */
export const handler: typeof counterHandler & { close?: () => Promise<void> } = counterHandler;
handler.close ??= async () => {
  const s = store;
  store = undefined;
  await s?.close();
};
