/**
 * Issue 19, item 1: two deployments that share a SaaS backend (one Momento
 * API key, one TiDB cluster and database) keep apart. Two stacks are
 * synthesized with the constructs' defaults; each deployment's counter
 * function environment and setup properties are taken from its template and
 * run, through the bundled handlers, against ONE local engine: the same
 * counter id and the same `Idempotency-Key` in both deployments are counted
 * by each on its own, with no replay and no 422 across them.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { createPool, RowDataPacket } from 'mysql2/promise';
import { runTiDbSetup, tidbEnv } from '../../local/backends/tidb';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { MomentoCounter, TiDbCounter } from '../../src';
import { MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { keysTableOf, TIDB_COLUMNS, TIDB_ENV } from '../../src/backends/tidb/tidb-env';
import type { BackendName } from '../../src/runtime/store';
import { call, CONFORMANCE_BUDGETS, useBackend } from '../kit/conformance';
import { environmentOf } from '../kit/template';

const ENV = { account: '123456789012', region: 'eu-west-1' };
const SHARED_SECRETS = {
  momento: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-api-key-AbCdEf',
  tidb: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidb-connection-AbCdEf',
};

/** What a deployment's template tells its counter function and setup resource. */
interface Deployment {
  readonly name: string;
  readonly counterEnv: Record<string, string>;
  readonly setupProperties: Record<string, unknown>;
}

/**
 * Two stacks of one app (staging and production), each with one counter of
 * `backend` on the shared credentials and the default store name, and what
 * their templates give the counter function and the setup resource.
 */
function synthesizeTwo(backend: 'momento' | 'tidb'): [Deployment, Deployment] {
  const app = new App();
  const stacks = ['CounterStaging', 'CounterProduction'].map((stackName) => {
    const stack = new Stack(app, stackName, { env: ENV });
    const credentialsSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Shared', SHARED_SECRETS[backend]);
    if (backend === 'momento') new MomentoCounter(stack, 'Counter', { credentialsSecret });
    else new TiDbCounter(stack, 'Counter', { credentialsSecret });
    return stack;
  });
  const [a, b] = stacks.map((stack): Deployment => {
    const template = Template.fromStack(stack);
    const counterEnv = environmentOf(template, backend === 'momento' ? /^Atomic counter on Momento/ : /^Atomic counter on TiDB/) as Record<string, string>;
    const [setup] = Object.values<any>(template.findResources(backend === 'momento' ? 'Custom::MomentoSetup' : 'Custom::TiDbSetup'));
    const { ServiceToken: _serviceToken, ...setupProperties } = setup.Properties;
    return { name: stack.stackName, counterEnv, setupProperties };
  });
  return [a, b];
}

/** The environment minus the secret ARN: locally the engine's URL or endpoint stands in for it. */
function withoutSecret(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => name !== MOMENTO_ENV.API_KEY_SECRET_ARN && name !== TIDB_ENV.SECRET_ARN));
}

/**
 * The same traffic through both deployments' handlers: the same counter id
 * and the same keys. Each deployment counts only its own changes.
 */
async function expectIsolated(backend: BackendName, a: ProxyHandler, b: ProxyHandler): Promise<void> {
  const post = (h: ProxyHandler, id: string, key?: string) => call(h, 'POST', backend, id, { key });
  for (let i = 0; i < 3; i++) expect((await post(a, 'shared')).status).toBe(200);
  for (let i = 0; i < 5; i++) expect((await post(b, 'shared')).status).toBe(200);
  expect((await call(a, 'GET', backend, 'shared')).body.counter).toBe(3);
  expect((await call(b, 'GET', backend, 'shared')).body.counter).toBe(5);

  // One key, one id, in both: each applies it once, to its own counter.
  const firstA = await post(a, 'shared', 'same-key');
  const firstB = await post(b, 'shared', 'same-key');
  expect([firstA.status, firstA.body.counter, firstA.headers['Idempotent-Replayed']]).toEqual([200, 4, 'false']);
  expect([firstB.status, firstB.body.counter, firstB.headers['Idempotent-Replayed']]).toEqual([200, 6, 'false']);
  // A retry in each replays that deployment's own answer.
  const retryA = await post(a, 'shared', 'same-key');
  const retryB = await post(b, 'shared', 'same-key');
  expect([retryA.status, retryA.body.counter, retryA.headers['Idempotent-Replayed']]).toEqual([200, 4, 'true']);
  expect([retryB.status, retryB.body.counter, retryB.headers['Idempotent-Replayed']]).toEqual([200, 6, 'true']);

  // One key bound to different ids in the two: no 422 across them.
  expect([(await post(a, 'only-in-a', 'other-key')).status, (await post(b, 'only-in-b', 'other-key')).status]).toEqual([200, 200]);
  expect((await call(a, 'GET', backend, 'only-in-b')).body.counter).toBe(0);
  expect((await call(b, 'GET', backend, 'only-in-a')).body.counter).toBe(0);
  expect((await call(a, 'GET', backend, 'shared')).body.counter).toBe(4);
  expect((await call(b, 'GET', backend, 'shared')).body.counter).toBe(6);
}

describe('Momento: two deployments on one API key (one local Momento server)', () => {
  const counters = useBackend('momento');

  test('each deployment has its own cache; counters and Idempotency-Keys never cross', async () => {
    const [a, b] = synthesizeTwo('momento');
    expect(a.counterEnv[MOMENTO_ENV.CACHE_NAME]).not.toBe(b.counterEnv[MOMENTO_ENV.CACHE_NAME]);
    const session = counters();
    const handlers: ProxyHandler[] = [];
    for (const d of [a, b]) {
      // The fixture runs the bundled setup handler for the cache the template names, on the one server.
      const cache = d.setupProperties.CacheName as string;
      expect(cache).toBe(d.counterEnv[MOMENTO_ENV.CACHE_NAME]);
      const local = await session.prepare(cache);
      // Budgets for counting, not the deployed timeouts: this test is about isolation, not about a slow machine.
      const env = { ...withoutSecret(d.counterEnv), ...local, ...CONFORMANCE_BUDGETS.momento };
      [handlers[handlers.length]] = loadCounterContainers(session.fixture.entry, env, { conditional: false });
    }
    await expectIsolated('momento', handlers[0], handlers[1]);
    // Each cache holds that deployment's counters only.
    expect((await session.fixture.keys(session.engine, a.counterEnv[MOMENTO_ENV.CACHE_NAME])).sort()).toEqual(['only-in-a', 'shared']);
    expect((await session.fixture.keys(session.engine, b.counterEnv[MOMENTO_ENV.CACHE_NAME])).sort()).toEqual(['only-in-b', 'shared']);
  }, 120_000);
});

describe('TiDB: two deployments on one cluster and database (one MariaDB)', () => {
  const counters = useBackend('tidb');

  test('each deployment has its own tables; counters and Idempotency-Keys never cross', async () => {
    const [a, b] = synthesizeTwo('tidb');
    const tables = [a, b].map((d) => d.counterEnv[TIDB_ENV.TABLE]);
    expect(tables[0]).not.toBe(tables[1]);
    const session = counters();
    // One database both deployments use (as they would the secret's), dropped with the session.
    const database = `iso_${Date.now().toString(36)}`;
    await session.prepare(database);
    const handlers: ProxyHandler[] = [];
    for (const d of [a, b]) {
      const env = {
        ...withoutSecret(d.counterEnv),
        ...tidbEnv(session.engine, database),
        [TIDB_ENV.TABLE]: d.counterEnv[TIDB_ENV.TABLE],
        ...CONFORMANCE_BUDGETS.tidb,
      };
      // The bundled setup handler, with the properties CloudFormation would send: it creates the derived tables.
      await runTiDbSetup(env, { ...d.setupProperties, Database: database });
      [handlers[handlers.length]] = loadCounterContainers(session.fixture.entry, env, { conditional: false });
    }
    await expectIsolated('tidb', handlers[0], handlers[1]);

    const pool = createPool({ ...mysqlConnectionOptions(session.engine.url), database });
    try {
      const rows = async (sql: string) => (await pool.query<RowDataPacket[]>(sql))[0];
      for (const [table, own] of [[tables[0], 'only-in-a'], [tables[1], 'only-in-b']]) {
        const ids = (await rows(`SELECT ${TIDB_COLUMNS.ID} AS id FROM \`${table}\``)).map((r) => Buffer.from(r.id).toString('utf8')).sort();
        expect(ids).toEqual([own, 'shared']);
        // Two key records each: same-key and other-key, in that deployment's own keys table.
        expect((await rows(`SELECT COUNT(*) AS n FROM \`${keysTableOf(table)}\``))[0].n).toBe(2);
      }
    } finally {
      await pool.end();
    }
  }, 120_000);
});
