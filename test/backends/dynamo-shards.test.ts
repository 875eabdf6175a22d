/**
 * Sharded counters on DynamoDB Local through the bundled handler: the
 * shared contract (test/kit/shards-contract.ts) with shards 1 and 8, both
 * modes; then what DynamoDB holds (the slot items, the escrow invariant,
 * the width) and the calls a change and a read send (counted by a proxy).
 */
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { uniqueNamespace } from '../../local/backends/fixture';
import { LOCAL_AWS_ENV } from '../../local/engines/dynamodb-local';
import { startDynamoProxy } from '../../local/engines/dynamodb-proxy';
import { loadCounterContainers } from '../../local/lambda-container';
import { DYNAMO_ATTRIBUTES as A, DYNAMO_BUNDLES, DYNAMO_ENV, DYNAMO_KEYS } from '../../src/backends/dynamo/dynamo-env';
import { call, useBackend } from '../kit/conformance';
import { describeShardsContract, shardsEnv } from '../kit/shards-contract';

const ctx = useBackend('dynamo');
describeShardsContract('dynamo', ctx);

/** Every item of a table, by id. */
async function scan(env: Record<string, string>): Promise<Map<string, Record<string, any>>> {
  const raw = new DynamoDBClient({
    endpoint: env[DYNAMO_ENV.ENDPOINT],
    region: LOCAL_AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: LOCAL_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: LOCAL_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
  try {
    const items = (await raw.send(new ScanCommand({ TableName: env[DYNAMO_ENV.TABLE_NAME] }))).Items ?? [];
    return new Map(items.map((item) => [item[A.ID].S!, item]));
  } finally {
    raw.destroy();
  }
}

const slot = (id: string, i: number) => (i === 0 ? id : `${id}${DYNAMO_KEYS.SLOT_SEPARATOR}${i}`);

describe('dynamo sharded counters: what the table holds, and the calls sent', () => {
  test('shards 1: the items are today\'s {id, counter}, nothing else (no slot, no headroom, no width)', async () => {
    const namespace = uniqueNamespace('t_dynamo_layout');
    const env = await ctx().prepare(namespace);
    const [unconditional] = await ctx().containers({ conditional: false, env: shardsEnv(1) }, 1, namespace);
    const [conditional] = await ctx().containers({ conditional: true, maximum: 5, env: shardsEnv(1) }, 1, namespace);
    for (let i = 0; i < 3; i++) expect((await call(unconditional, 'POST', 'dynamo', 'u')).body.counter).toBe(i + 1);
    for (let i = 0; i < 6; i++) await call(conditional, 'POST', 'dynamo', 'c');
    const items = await scan(env);
    expect([...items.keys()].sort()).toEqual(['c', 'u']);
    expect(items.get('u')).toEqual({ [A.ID]: { S: 'u' }, [A.COUNTER]: { N: '3' } });
    expect(items.get('c')).toEqual({ [A.ID]: { S: 'c' }, [A.COUNTER]: { N: '5' } });
  });

  test('shards 8, conditional (maximum 100): slots id, id␟1…id␟7; every slot 0 ≤ counter, 0 ≤ headroom; Σ(counter + headroom) ≤ 100; width 8; keys() lists the id once', async () => {
    const namespace = uniqueNamespace('t_dynamo_layout');
    const env = await ctx().prepare(namespace);
    const handlers = await ctx().containers({ conditional: true, maximum: 100, env: shardsEnv(8) }, 4, namespace);
    const answers = await Promise.all(Array.from({ length: 160 }, (_, i) => call(handlers[i % 4], 'POST', 'dynamo', 'x', { by: i % 5 === 4 ? -1 : 1 })));
    const accepted = answers.filter((a) => a.status === 200).reduce((sum, a) => sum + a.body.by, 0);
    const items = await scan(env);
    const slots = Array.from({ length: 8 }, (_, i) => items.get(slot('x', i)));
    expect(items.size).toBe(8);
    let total = 0;
    let shares = 0;
    for (const item of slots) {
      const c = Number(item?.[A.COUNTER]?.N ?? 0);
      const h = Number(item?.[A.HEADROOM]?.N ?? 0);
      expect(c).toBeGreaterThanOrEqual(0);
      expect(h).toBeGreaterThanOrEqual(0);
      total += c;
      shares += c + h;
    }
    expect(shares).toBeLessThanOrEqual(100);
    expect(total).toBe(accepted);
    expect(slots[0]?.[A.WIDTH]).toEqual({ N: '8' });
    expect((await call(handlers[0], 'GET', 'dynamo', 'x')).body).toEqual({ id: 'x', counter: total, backend: 'dynamo', shards: 8 });
    expect(await ctx().fixture.keys(ctx().engine, namespace)).toEqual(['x']);
  });

  test('calls: a GET is one consistent BatchGetItem of 8 slots; an unconditional change one UpdateItem (plus one for the width, once per container); a keyed one one TransactWriteItems', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_dynamo_calls'));
    const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
    try {
      const proxied = { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url };
      const [handler] = loadCounterContainers(DYNAMO_BUNDLES.counter, proxied, { conditional: false, env: shardsEnv(8) });
      for (let i = 0; i < 20; i++) await call(handler, 'POST', 'dynamo', 'n');
      // At most one width raise, then one UpdateItem each.
      expect(proxy.count('UpdateItem')).toBeLessThanOrEqual(21);
      expect(proxy.count('UpdateItem')).toBeGreaterThanOrEqual(20);
      expect(proxy.count()).toBe(proxy.count('UpdateItem'));
      proxy.reset();
      expect((await call(handler, 'GET', 'dynamo', 'n')).body.counter).toBe(20);
      expect(proxy.calls.map((c) => c.operation)).toEqual(['BatchGetItem']);
      const request = proxy.calls[0].input.RequestItems[env[DYNAMO_ENV.TABLE_NAME]];
      expect(request.ConsistentRead).toBe(true);
      expect(request.Keys).toHaveLength(8);
      proxy.reset();
      expect((await call(handler, 'POST', 'dynamo', 'n', { key: 'k1' })).status).toBe(200);
      expect(proxy.calls.map((c) => c.operation)).toEqual(['TransactWriteItems']);
      expect(proxy.calls[0].input.TransactItems).toHaveLength(2);
    } finally {
      await proxy.close();
    }
  });

  test('calls, conditional: the rebalance reads every slot as one snapshot (TransactGetItems, never BatchGetItem) and writes them in one TransactWriteItems; a 409 writes nothing', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_dynamo_calls'));
    const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
    try {
      const proxied = { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url };
      const [handler] = loadCounterContainers(DYNAMO_BUNDLES.counter, proxied, { conditional: true, maximum: 3, env: shardsEnv(8) });
      // A brand-new id: no slot has headroom, so two refusals, then the rebalance.
      expect((await call(handler, 'POST', 'dynamo', 'm')).status).toBe(200);
      expect(proxy.calls.map((c) => c.operation)).toEqual(['UpdateItem', 'UpdateItem', 'TransactGetItems', 'TransactWriteItems']);
      expect(proxy.calls[2].input.TransactItems).toHaveLength(8);
      expect(proxy.calls[3].input.TransactItems).toHaveLength(8);
      for (let i = 0; i < 3; i++) await call(handler, 'POST', 'dynamo', 'm');
      proxy.reset();
      expect((await call(handler, 'POST', 'dynamo', 'm')).status).toBe(409);
      const operations = proxy.calls.map((c) => c.operation);
      expect(operations.filter((o) => o === 'TransactGetItems')).toHaveLength(1);
      expect(operations).not.toContain('BatchGetItem');
      expect(operations).not.toContain('TransactWriteItems');
      expect((await call(handler, 'GET', 'dynamo', 'm')).body.counter).toBe(3);
    } finally {
      await proxy.close();
    }
  });

  test('figures: calls per accepted change, conditional (maximum 1000), 8 shards, 1,200 unit increments from 8 callers', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_dynamo_calls'));
    const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
    try {
      const proxied = { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url };
      const handlers = loadCounterContainers(DYNAMO_BUNDLES.counter, proxied, { conditional: true, maximum: 1000, env: shardsEnv(8) }, 4);
      let next = 0;
      const statuses: Record<number, number> = {};
      await Promise.all(Array.from({ length: 8 }, async (_, caller) => {
        while (next < 1200) {
          next++;
          const answer = await call(handlers[caller % 4], 'POST', 'dynamo', 'f');
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        }
      }));
      expect(statuses).toEqual({ 200: 1000, 409: 200 });
      const byOperation: Record<string, number> = {};
      for (const c of proxy.calls) byOperation[c.operation] = (byOperation[c.operation] ?? 0) + 1;
      // eslint-disable-next-line no-console
      console.log(`calls for 1,000 accepted + 200 rejected conditional unit increments at 8 shards: ${JSON.stringify(byOperation)}, `
        + `${(proxy.calls.length / 1200).toFixed(2)} per request`);
      // Rebalances are rounds, not one per change.
      expect(byOperation.TransactWriteItems ?? 0).toBeLessThan(200);
    } finally {
      await proxy.close();
    }
  });
});
