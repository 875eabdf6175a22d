import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DocDbCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';
import { MOMENTO_ENV } from '../../src/backends/momento/momento-env';
import { TIDB_ENV, TIDB_IDENTIFIER, TIDB_MAX_TABLE_LENGTH } from '../../src/backends/tidb/tidb-env';
import { deploymentStoreName } from '../../src/private/store-names';
import { environmentOf } from '../kit/template';

/**
 * Issue 19, item 1: two deployments that share a SaaS backend (one Momento
 * API key, one TiDB cluster) get distinct stores by default, and synth warns
 * when two counters of one app point at the same store anyway.
 */
const ENV = { account: '123456789012', region: 'eu-west-1' };
const MOMENTO_KEY = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-api-key-AbCdEf';
const TIDB_CONNECTION = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidb-connection-AbCdEf';

const importSecret = (stack: Stack, id: string, arn: string) => secretsmanager.Secret.fromSecretCompleteArn(stack, id, arn);

/** One stack with a Momento and a TiDB counter on the shared key and cluster. */
function deployment(app: App, stackName: string, names: { cacheName?: string; tableName?: string } = {}): Stack {
  const stack = new Stack(app, stackName, { env: ENV });
  new MomentoCounter(stack, 'Momento', { credentialsSecret: importSecret(stack, 'Key', MOMENTO_KEY), cacheName: names.cacheName });
  new TiDbCounter(stack, 'TiDb', { credentialsSecret: importSecret(stack, 'Connection', TIDB_CONNECTION), tableName: names.tableName });
  return stack;
}

/** The store names a deployment's functions and setup resources were given. */
function storesOf(stack: Stack): { cache: string; table: string } {
  const t = Template.fromStack(stack);
  const cache = environmentOf(t, /^Atomic counter on Momento/)[MOMENTO_ENV.CACHE_NAME] as string;
  const table = environmentOf(t, /^Atomic counter on TiDB/)[TIDB_ENV.TABLE] as string;
  // The setup resources create exactly what the counter functions use.
  t.hasResourceProperties('Custom::MomentoSetup', { CacheName: cache });
  t.hasResourceProperties('Custom::TiDbSetup', { Table: table });
  expect(environmentOf(t, /Creates the Momento cache/)[MOMENTO_ENV.CACHE_NAME]).toBe(cache);
  expect(environmentOf(t, /TiDB database and counters table/)[TIDB_ENV.TABLE]).toBe(table);
  return { cache, table };
}

function sharedStoreWarnings(stack: Stack): string[] {
  return Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('both keep their counters in'))
    .map((w) => `${w.id}: ${String(w.entry.data)}`);
}

describe('default store names are derived from the deployment', () => {
  test('two stacks on one API key and one cluster get distinct caches and tables', () => {
    const app = new App();
    const stagingStack = deployment(app, 'CounterStaging');
    const productionStack = deployment(app, 'CounterProduction');
    const staging = storesOf(stagingStack);
    const production = storesOf(productionStack);
    expect(staging.cache).not.toBe(production.cache);
    expect(staging.table).not.toBe(production.table);
    expect(staging).toEqual({
      cache: deploymentStoreName('CounterStaging/Momento', { prefix: 'atomic-counter-', separator: '-', maxLength: 64 }),
      table: deploymentStoreName('CounterStaging/TiDb', { prefix: 'counters_', separator: '_', maxLength: 59 }),
    });
    expect(staging.cache).toMatch(/^atomic-counter-counterstaging-momento-[0-9a-f]{8}$/);
    expect(staging.table).toMatch(/^counters_counterstaging_tidb_[0-9a-f]{8}$/);
  });

  test('two counters in one stack get distinct names too', () => {
    const stack = new Stack(new App(), 'One', { env: ENV });
    const key = importSecret(stack, 'Key', MOMENTO_KEY);
    const a = new MomentoCounter(stack, 'A', { credentialsSecret: key });
    const b = new MomentoCounter(stack, 'B', { credentialsSecret: key });
    expect(a.cacheName).not.toBe(b.cacheName);
    expect(sharedStoreWarnings(stack)).toEqual([]);
  });

  test('the name is stable: the same stack name and construct path give the same name in another app', () => {
    expect(storesOf(deployment(new App(), 'Counter'))).toEqual(storesOf(deployment(new App(), 'Counter')));
  });

  test('names that read alike stay apart (the hash is of the exact deployment), and long ones fit the store\'s limit', () => {
    const rules = { prefix: 'counters_', separator: '_', maxLength: TIDB_MAX_TABLE_LENGTH } as const;
    expect(deploymentStoreName('Counter/A-B', rules)).not.toBe(deploymentStoreName('counter/a/b', rules));
    const long = `${'VeryLongStackName'.repeat(8)}/${'Nested'.repeat(20)}/Counter`;
    const longA = deploymentStoreName(long + 'A', rules);
    const longB = deploymentStoreName(long + 'B', rules);
    expect(longA).not.toBe(longB);
    for (const name of [longA, longB, deploymentStoreName('Ä/ø', rules)]) {
      expect(name.length).toBeLessThanOrEqual(TIDB_MAX_TABLE_LENGTH);
      expect(name).toMatch(TIDB_IDENTIFIER);
      expect(name).toMatch(/^counters_([a-z0-9]+_)*[0-9a-f]{8}$/);
    }
    const cache = deploymentStoreName(long, { prefix: 'atomic-counter-', separator: '-', maxLength: 64 });
    expect(cache.length).toBeLessThanOrEqual(64);
    expect(cache).toMatch(/^atomic-counter-([a-z0-9]+-)*[0-9a-f]{8}$/);
  });

  test('the explicit names are used unchanged', () => {
    const stores = storesOf(deployment(new App(), 'Legacy', { cacheName: 'atomic-counter', tableName: 'counters' }));
    expect(stores).toEqual({ cache: 'atomic-counter', table: 'counters' });
  });
});

describe('synth warns when two counters of one app point at the same store', () => {
  test('Momento and TiDB: the same explicit name on the same key or cluster, in two stacks', () => {
    const app = new App();
    const a = deployment(app, 'TeamA', { cacheName: 'shared', tableName: 'shared' });
    const b = deployment(app, 'TeamB', { cacheName: 'shared', tableName: 'shared' });
    for (const stack of [a, b]) {
      const warnings = sharedStoreWarnings(stack);
      expect(warnings).toHaveLength(2);
      expect(warnings.join('\n')).toMatch(/TeamA\/Momento and TeamB\/Momento|TeamB\/Momento and TeamA\/Momento/);
      expect(warnings.join('\n')).toMatch(/Momento cache "shared"/);
      expect(warnings.join('\n')).toMatch(/TiDB table \(the secret's database\)\.shared/);
    }
  });

  test('the same secret imported by name in two environment-agnostic stacks counts as the same key', () => {
    const app = new App();
    for (const name of ['A', 'B']) {
      const stack = new Stack(app, name);
      new MomentoCounter(stack, 'Momento', { credentialsSecret: secretsmanager.Secret.fromSecretNameV2(stack, 'Key', 'momento/api-key'), cacheName: 'votes' });
    }
    expect(sharedStoreWarnings(app.node.findChild('B') as Stack)).toHaveLength(1);
  });

  test('no warning for different keys, different databases, or derived names', () => {
    const app = new App();
    const stack = new Stack(app, 'S', { env: ENV });
    new MomentoCounter(stack, 'M1', { credentialsSecret: importSecret(stack, 'K1', MOMENTO_KEY), cacheName: 'votes' });
    new MomentoCounter(stack, 'M2', { credentialsSecret: importSecret(stack, 'K2', MOMENTO_KEY.replace('momento-api-key', 'other-key')), cacheName: 'votes' });
    const connection = importSecret(stack, 'C', TIDB_CONNECTION);
    new TiDbCounter(stack, 'T1', { credentialsSecret: connection, databaseName: 'one', tableName: 'counters' });
    new TiDbCounter(stack, 'T2', { credentialsSecret: connection, databaseName: 'two', tableName: 'counters' });
    new TiDbCounter(stack, 'T3', { credentialsSecret: connection });
    new TiDbCounter(stack, 'T4', { credentialsSecret: connection });
    expect(sharedStoreWarnings(stack)).toEqual([]);
  });

  test('existing DocumentDB cluster and Redis endpoint: same database and collection, same key prefix', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const master = importSecret(stack, 'Master', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:docdb-master-AbCdEf');
    const existingEndpoint = { hostname: 'cluster.example.internal' };
    new DocDbCounter(stack, 'D1', { vpc, existingEndpoint, credentialsSecret: master });
    new DocDbCounter(stack, 'D2', { vpc, existingEndpoint, credentialsSecret: master });
    new DocDbCounter(stack, 'D3', { vpc, existingEndpoint, credentialsSecret: master, collectionName: 'other' });
    new RedisCounter(stack, 'R1', { vpc, existingEndpoint: { hostname: 'redis.example.internal' } });
    new RedisCounter(stack, 'R2', { vpc, existingEndpoint: { hostname: 'redis.example.internal' } });
    new RedisCounter(stack, 'R3', { vpc, existingEndpoint: { hostname: 'redis.example.internal' }, keyPrefix: 'r3:' });
    const warnings = sharedStoreWarnings(stack);
    expect(warnings.map((w) => w.split(':')[0]).sort()).toEqual(['/S/D1', '/S/D2', '/S/R1', '/S/R2']);
  });
});
