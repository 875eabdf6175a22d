/**
 * Issue 19, item 7: an Update that a rollback sends to a setup custom
 * resource asks for properties already applied, and must not fail the
 * rollback (UPDATE_ROLLBACK_FAILED) when the datastore cannot be reached;
 * a forward Update still fails the deployment with the setup's error.
 */
import { createSetupHandler, RollbackProbe, SetupEvent, SetupHandlerOptions } from '../../src/runtime/custom-resource';
import { setLogSink } from '../../src/runtime/log';

const STACK_ID = 'arn:aws:cloudformation:eu-west-1:123456789012:stack/Counter/0a1b2c3d';

/** A setup whose datastore is unreachable, counting its runs. */
function unreachableSetup(): SetupHandlerOptions & { runs: number } {
  const setup = {
    runs: 0,
    physicalId: (p: Record<string, unknown>) => `tidb:db/${String(p.Table)}`,
    setup: async () => {
      setup.runs++;
      throw new Error('connect ETIMEDOUT 203.0.113.10:4000');
    },
  };
  return setup;
}

/** A probe answering `status`, recording the stacks it was asked about. */
function probe(answer: boolean | undefined): RollbackProbe & { asked: string[] } {
  const asked: string[] = [];
  return Object.assign(async (stackId: string) => {
    asked.push(stackId);
    return answer;
  }, { asked });
}

const update = (extra: Partial<SetupEvent> = {}): SetupEvent => ({
  RequestType: 'Update',
  PhysicalResourceId: 'tidb:db/counters_new',
  ResourceProperties: { Table: 'counters_old', Schema: '2' },
  OldResourceProperties: { Table: 'counters_new', Schema: '3' },
  StackId: STACK_ID,
  ...extra,
});

let lines: string[];
let restore: ReturnType<typeof setLogSink>;
beforeEach(() => {
  lines = [];
  restore = setLogSink((line) => lines.push(line));
});
afterEach(() => setLogSink(restore));

test('an Update during the stack\'s rollback succeeds with the old properties\' physical id when the setup cannot run, and says so in a WARN line', async () => {
  const setup = unreachableSetup();
  const rollingBack = probe(true);
  const result = await createSetupHandler(setup, rollingBack)(update());
  expect(result).toEqual({ PhysicalResourceId: 'tidb:db/counters_old', Data: { RollbackSetup: 'skipped' } });
  expect(setup.runs).toBe(1); // tried first: a reachable store gets the old properties applied
  expect(rollingBack.asked).toEqual([STACK_ID]);
  expect(lines.map((l) => JSON.parse(l))).toEqual([{ level: 'WARN', backend: 'tidb', message: expect.stringMatching(/rollback.*ETIMEDOUT/) }]);
});

test('a forward Update fails the deployment with the setup\'s error', async () => {
  await expect(createSetupHandler(unreachableSetup(), probe(false))(update())).rejects.toThrow(/ETIMEDOUT/);
});

test('when the stack\'s status cannot be read, a failed Update fails (never a silent skip)', async () => {
  await expect(createSetupHandler(unreachableSetup(), probe(undefined))(update())).rejects.toThrow(/ETIMEDOUT/);
  await expect(createSetupHandler(unreachableSetup(), probe(true))(update({ StackId: undefined }))).rejects.toThrow(/ETIMEDOUT/);
});

test('a Create always fails with the setup\'s error, and a successful Update never asks for the stack\'s status', async () => {
  const asked = probe(true);
  await expect(createSetupHandler(unreachableSetup(), asked)({ RequestType: 'Create', ResourceProperties: { Table: 't' }, StackId: STACK_ID }))
    .rejects.toThrow(/ETIMEDOUT/);
  const ok = createSetupHandler({ physicalId: () => 'tidb:db/t', setup: async () => ({ Table: 't' }) }, asked);
  expect(await ok(update())).toEqual({ PhysicalResourceId: 'tidb:db/t', Data: { Table: 't' } });
  expect(asked.asked).toEqual([]);
});
