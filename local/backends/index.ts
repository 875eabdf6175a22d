import { BackendFixture } from './fixture';
import type { BackendName } from '../../src/runtime/store';

/**
 * Every backend's fixture, loaded on demand so one backend's client is
 * never imported for another. One line per backend: the type requires all.
 */
const LOADERS: Record<BackendName, () => BackendFixture> = {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  dynamo: () => require('./dynamo').dynamoFixture,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  tidb: () => require('./tidb').tidbFixture,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  docdb: () => require('./docdb').docdbFixture,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  redis: () => require('./redis').redisFixture,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  momento: () => require('./momento').momentoFixture,
};

export function fixtureFor(backend: BackendName): BackendFixture {
  const load = LOADERS[backend] as (() => BackendFixture) | undefined;
  if (!load) throw new Error(`No local fixture for backend "${backend}"`);
  return load();
}

export function availableFixtures(): BackendName[] {
  return Object.keys(LOADERS) as BackendName[];
}
