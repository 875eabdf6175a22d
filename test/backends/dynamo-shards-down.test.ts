/**
 * `shards` lowered back to 1 on a live DynamoDB counter that was written
 * sharded (docs/dynamo.md, "Resharding"), through the bundled handler on
 * DynamoDB Local: containers with COUNTER_SHARDS 8 and 1 on one id, under
 * load, the second ones unsharded. The unsharded change, read and keyed
 * change must find the width on the counter item and count every slot:
 * exact totals, the bound on the total, keys applied once and replayed
 * across the change. Every answer is held to docs/openapi.json by `call`.
 */
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { uniqueNamespace } from '../../local/backends/fixture';
import { LOCAL_AWS_ENV } from '../../local/engines/dynamodb-local';
import { startDynamoProxy } from '../../local/engines/dynamodb-proxy';
import { ContainerMode, loadCounterContainers, ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { DYNAMO_ATTRIBUTES as A, DYNAMO_BUNDLES, DYNAMO_ENV, DYNAMO_KEYS } from '../../src/backends/dynamo/dynamo-env';
import { call, useBackend } from '../kit/conformance';
import { shardsEnv } from '../kit/shards-contract';

const ctx = useBackend('dynamo');

/** The counter of every slot item of `id` (slot 0 the id's own item, slot i `<id>␟i`), read with a Scan. */
async function slotValues(env: Record<string, string>, id: string): Promise<number[]> {
  const raw = new DynamoDBClient({
    endpoint: env[DYNAMO_ENV.ENDPOINT],
    region: LOCAL_AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: LOCAL_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: LOCAL_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
  try {
    const items = (await raw.send(new ScanCommand({ TableName: env[DYNAMO_ENV.TABLE_NAME], ConsistentRead: true }))).Items ?? [];
    const values: number[] = [];
    for (const item of items) {
      const itemId = item[A.ID].S!;
      const slot = itemId === id ? 0 : itemId.startsWith(id + DYNAMO_KEYS.SLOT_SEPARATOR) ? Number(itemId.slice(id.length + 1)) : undefined;
      if (slot !== undefined) values[slot] = Number(item[A.COUNTER]?.N ?? 0);
    }
    return Array.from(values, (v) => v ?? 0);
  } finally {
    raw.destroy();
  }
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

interface Load {
  /** Steps of the changes applied now (200, not a replay). */
  applied: number;
  statuses: Record<number, number>;
  /** Totals a concurrent GET read while the load ran. */
  totalsSeen: number[];
  /** Answers of the unsharded containers (shards 1) on the widened id that carried a `counter`. */
  countersAnswered: number;
}

/**
 * `total` unit increments on `id` spread over `groups` of containers, request
 * i keyed when `key(i, h)` says so (h: the index of the container it goes
 * to), while one more caller keeps reading the total through `reader`: a
 * container of its own, so the writers learn that the id is widened from
 * their own writes, not from a read (nor the unkeyed ones from a keyed one,
 * when `key` keeps keys to some containers).
 */
async function load(
  reader: ProxyHandler, groups: ProxyHandler[][], id: string, total: number, key?: (i: number, h: number) => string | undefined,
): Promise<Load> {
  const out: Load = { applied: 0, statuses: {}, totalsSeen: [], countersAnswered: 0 };
  const handlers = groups.flat();
  let running = true;
  const reading = (async () => {
    while (running) out.totalsSeen.push((await call(reader, 'GET', 'dynamo', id)).body.counter);
  })();
  try {
    await runWorkload({
      total,
      concurrency: 12,
      call: async (i, caller) => {
        const h = (caller + i) % handlers.length;
        const answer = await call(handlers[h], 'POST', 'dynamo', id, { key: key?.(i, h) });
        out.statuses[answer.status] = (out.statuses[answer.status] ?? 0) + 1;
        if (answer.status === 200) {
          if (answer.body.counter !== undefined) out.countersAnswered++;
          if (answer.headers['Idempotent-Replayed'] !== 'true') out.applied++;
        }
        return { status: answer.status };
      },
    });
  } finally {
    running = false;
    await reading;
  }
  return out;
}

/** Containers with COUNTER_SHARDS 8 and 1 on one fresh namespace (one more with 1 to read under load), and its environment. */
async function wideAndNarrow(mode: Omit<ContainerMode, 'env'>) {
  const namespace = uniqueNamespace('t_dynamo_down');
  const env = await ctx().prepare(namespace);
  const wide = await ctx().containers({ ...mode, env: shardsEnv(8) }, 3, namespace);
  const [reader, ...narrow] = await ctx().containers({ ...mode, env: shardsEnv(1) }, 4, namespace);
  return { env, wide, narrow, reader };
}

describe('dynamo: shards lowered 8 → 1 on a live counter', () => {
  test('conditional, maximum 300, 650 increments (100 on 8 alone, 100 on 8 and 1 together, 450 on 1 alone, one container of 1 keyed): exactly 300 accepted, no GET above 300, GET = the sum of every slot', async () => {
    const { env, wide, narrow, reader } = await wideAndNarrow({ conditional: true, maximum: 300 });
    const loads = [
      await load(reader, [wide], 'down', 100),
      await load(reader, [wide, narrow], 'down', 100),
      // Slots 1…7 hold values now, and the maximum is reached by the unsharded containers alone: only the total can say when.
      await load(reader, [narrow], 'down', 450, (i, h) => (h === 2 ? `k-${i}` : undefined)),
    ];
    const slots = await slotValues(env, 'down');
    expect(slots.length).toBe(8);
    expect(sum(slots.slice(1))).toBeGreaterThan(0);
    const statuses: Record<number, number> = {};
    for (const l of loads) for (const [status, n] of Object.entries(l.statuses)) statuses[Number(status)] = (statuses[Number(status)] ?? 0) + n;
    expect({ statuses, applied: sum(loads.map((l) => l.applied)) }).toEqual({ statuses: { 200: 300, 409: 350 }, applied: 300 });
    expect(loads[2].statuses).toEqual({ 200: 100, 409: 350 });
    expect(Math.max(...loads.flatMap((l) => l.totalsSeen))).toBeLessThanOrEqual(300);
    // On the widened id a change of the unsharded containers knows its slot, not the total.
    expect(loads[2].countersAnswered).toBe(0);
    expect(sum(slots)).toBe(300);
    // The reader learnt the width from its own GETs only; narrow[0] from its writes.
    for (const handler of [reader, narrow[0]]) {
      expect((await call(handler, 'GET', 'dynamo', 'down')).body).toEqual({ id: 'down', counter: 300, backend: 'dynamo' });
    }
    expect((await call(wide[0], 'GET', 'dynamo', 'down')).body.counter).toBe(300);
  });

  test('unconditional, 900 increments (8 alone, 8 and 1 together, 1 alone, one container of 1 keyed): every GET, shards 1 or 8, reads exactly 900 = the sum of every slot', async () => {
    const { env, wide, narrow, reader } = await wideAndNarrow({ conditional: false });
    const loads = [
      await load(reader, [wide], 'down', 300),
      await load(reader, [wide, narrow], 'down', 300),
      await load(reader, [narrow], 'down', 300, (i, h) => (h === 2 ? `k-${i}` : undefined)),
    ];
    for (const l of loads) expect(l.statuses).toEqual({ 200: 300 });
    expect(loads[2].countersAnswered).toBe(0);
    const slots = await slotValues(env, 'down');
    expect(sum(slots.slice(1))).toBeGreaterThan(0);
    expect(sum(slots)).toBe(900);
    for (const handler of [reader, narrow[0]]) expect((await call(handler, 'GET', 'dynamo', 'down')).body.counter).toBe(900);
    expect((await call(wide[0], 'GET', 'dynamo', 'down')).body.counter).toBe(900);
  });
  test('Idempotency-Key across the change: a key recorded by a sharded change replays on an unsharded container (its slot, no counter), a reuse is 422; a key first used unsharded replays its value on both; a new key on the unsharded container is applied once', async () => {
    const { wide, narrow } = await wideAndNarrow({ conditional: true, maximum: 100 });
    const keyed = (handler: ProxyHandler, id: string, key: string, by = 3) => call(handler, 'POST', 'dynamo', id, { key, by });
    expect(await keyed(wide[0], 'r', 'kw')).toMatchObject({ status: 200, body: { shards: 8, by: 3 }, headers: { 'Idempotent-Replayed': 'false' } });
    const replay = await keyed(narrow[0], 'r', 'kw');
    expect(replay).toMatchObject({ status: 200, body: { shards: 1, by: 3 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(replay.body.counter).toBeUndefined();
    expect(await keyed(narrow[1], 'r', 'kw', 4)).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    expect(await keyed(narrow[1], 'elsewhere', 'kw')).toMatchObject({ status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    // A new key from a container that does not know the id is sharded: its transaction finds the width, the sharded path applies it.
    expect(await keyed(narrow[2], 'r', 'kn', 1)).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await keyed(narrow[0], 'r', 'kn', 1)).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect((await call(narrow[1], 'GET', 'dynamo', 'r')).body.counter).toBe(4);

    // A key first used while the id was unsharded (its value still in its marker, not folded), then the id widened.
    expect(await keyed(narrow[0], 'r2', 'old', 2)).toMatchObject({ status: 200, body: { counter: 2 } });
    for (let i = 0; i < 5; i++) expect((await call(wide[1], 'POST', 'dynamo', 'r2')).status).toBe(200);
    expect((await call(narrow[0], 'GET', 'dynamo', 'r2')).body.counter).toBe(7);
    for (const handler of [narrow[0], wide[2]]) {
      expect(await keyed(handler, 'r2', 'old', 2)).toMatchObject({ status: 200, body: { counter: 2 }, headers: { 'Idempotent-Replayed': 'true' } });
    }
    expect((await call(wide[0], 'GET', 'dynamo', 'r2')).body.counter).toBe(7);
  });

  test('calls of an unsharded container: an id never sharded costs what it always did; a widened id one refused write or one read more, once per container', async () => {
    const env = await ctx().prepare(uniqueNamespace('t_dynamo_down_calls'));
    const [wide] = loadCounterContainers(DYNAMO_BUNDLES.counter, env, { conditional: false, env: shardsEnv(8) });
    for (let i = 0; i < 24; i++) await call(wide, 'POST', 'dynamo', 'w');
    const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT]);
    try {
      const proxied = { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url };
      const [reader, writer, keyedWriter] = loadCounterContainers(DYNAMO_BUNDLES.counter, proxied, { conditional: false, env: shardsEnv(1) }, 3);
      const operations = async (send: () => Promise<unknown>) => {
        proxy.reset();
        await send();
        return proxy.calls.map((c) => c.operation);
      };
      expect(await operations(() => call(writer, 'POST', 'dynamo', 'plain'))).toEqual(['UpdateItem']);
      expect(await operations(() => call(keyedWriter, 'POST', 'dynamo', 'plain', { key: 'p' }))).toEqual(['TransactWriteItems', 'GetItem']);
      expect(await operations(() => call(reader, 'GET', 'dynamo', 'plain'))).toEqual(['GetItem']);
      expect((await call(reader, 'GET', 'dynamo', 'plain')).body.counter).toBe(2);

      expect(await operations(() => call(reader, 'GET', 'dynamo', 'w'))).toEqual(['GetItem', 'BatchGetItem']);
      expect(await operations(() => call(reader, 'GET', 'dynamo', 'w'))).toEqual(['BatchGetItem']);
      expect(proxy.calls[0].input.RequestItems[env[DYNAMO_ENV.TABLE_NAME]].Keys).toHaveLength(8);
      expect(await operations(() => call(writer, 'POST', 'dynamo', 'w'))).toEqual(['UpdateItem', 'UpdateItem']);
      expect(await operations(() => call(writer, 'POST', 'dynamo', 'w'))).toEqual(['UpdateItem']);
      expect(await operations(() => call(keyedWriter, 'POST', 'dynamo', 'w', { key: 'q' }))).toEqual(['TransactWriteItems', 'TransactWriteItems']);
      expect(await operations(() => call(keyedWriter, 'POST', 'dynamo', 'w', { key: 'q2' }))).toEqual(['TransactWriteItems']);
      expect((await call(reader, 'GET', 'dynamo', 'w')).body.counter).toBe(28);
    } finally {
      await proxy.close();
    }
  });
});
