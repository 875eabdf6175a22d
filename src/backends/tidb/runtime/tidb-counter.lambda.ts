import { readTiDbConfig } from './tidb-config';
import { TiDbCounterStore } from './tidb-counter-store';
import { createCounterHandler } from '../../../runtime/handler';
import { preloadSecretsManager } from '../../../runtime/secrets';

// Init phase: configuration is read and validated once per container; the
// pipeline then reads the secret and opens the pool's first connection while
// the init phase runs (see createCounterHandler).
const config = readTiDbConfig(process.env);
// On AWS, load the Secrets Manager client now, in the init phase, not on the first request.
if (config.secretArn) preloadSecretsManager();

export const handler = createCounterHandler({
  backend: 'tidb',
  createStore: () => TiDbCounterStore.create(config),
});
