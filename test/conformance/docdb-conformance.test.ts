import { MongoEngine } from '../../local/engines/mongo';
import { describeConformance, hammer, useBackend } from '../kit/conformance';
import { describeFaultContract } from '../kit/fault-contract';

// Against MONGODB_URI when set (a real mongod or DocumentDB), else our
// in-process MongoDB-wire server (local/engines/mongo-wire-server.ts).
describeConformance('docdb');
describeFaultContract('docdb');

/**
 * The kit's first-increment race cannot collide on the in-process server (it
 * runs each command in one step), so it would pass without the store's
 * duplicate-key retry. Here the server injects the race a real server has:
 * concurrent upserts of a missing `_id` all find nothing and all insert; all
 * but one get E11000, and the store must still answer 200 for each.
 */
describe('docdb: the first-increment race, injected by the wire server', () => {
  const ctx = useBackend('docdb');
  const RACE = 50;

  test.each([
    ['unconditional', { conditional: false }],
    ['conditional, maximum 1000', { conditional: true, maximum: 1000 }],
  ])(`%s: ${RACE} concurrent first increments that collide on insert all answer 200, counters 1…${RACE}`, async (_label, mode) => {
    const server = (ctx().engine as MongoEngine).server;
    if (!server) throw new Error('docdb: the injected race needs the in-process MongoDB-wire server; unset MONGODB_URI');
    const handlers = await ctx().containers(mode, 8);
    // Every container connected first, so the upserts arrive together, and a
    // window wide enough for a loaded machine: the race must happen.
    for (const handler of handlers) await handler({ httpMethod: 'GET', pathParameters: { id: 'warm-up' } });
    const collisionsBefore = server.injectedUpsertCollisions;
    server.upsertRace = { windowMs: 200 };
    try {
      const result = await hammer(handlers, 'docdb', 'raced', RACE, RACE);
      expect(result.statuses).toEqual({ 200: RACE });
      expect([...result.counters].sort((a, b) => a - b)).toEqual(Array.from({ length: RACE }, (_, i) => i + 1));
    } finally {
      server.upsertRace = undefined;
    }
    // The race did happen: without collisions this test would prove nothing.
    expect(server.injectedUpsertCollisions - collisionsBefore).toBeGreaterThan(0);
  });
});
