/**
 * Sharded TiDB counters (issue 21, docs/tidb.md "Sharded counters") through
 * the bundled handler on the local MySQL-protocol engine (MariaDB): the
 * shared contract (test/kit/shards-contract.ts) with shards 1 and 8, both
 * modes; then what the table holds (slot rows, the escrow invariant, the
 * width, key records), resharding down to 1 with its guarantees, and the
 * commands a change and a read send (counted at a proxy: the fixture's
 * `callCounter`).
 */
import { createServer } from 'net';
import { createConnection, RowDataPacket } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { tidbFixture } from '../../local/backends/tidb';
import { mysqlConnectionOptions } from '../../local/engines/mysql';
import { ProxyHandler } from '../../local/lambda-container';
import { runWorkload } from '../../local/workload';
import { TIDB_ENV, TIDB_SLOT_SEPARATOR } from '../../src/backends/tidb/tidb-env';
import { Answer, call, useBackend } from '../kit/conformance';
import { describeShardsContract, shardsEnv } from '../kit/shards-contract';

const ctx = useBackend('tidb');
describeShardsContract('tidb', ctx);

interface Row {
  id: string;
  value: number;
  headroom: number | null;
  width: number | null;
}

/** Every row of the namespace's counters table, by id (slot rows under `<id>\u001f<i>`). */
async function table(namespace: string): Promise<Map<string, Row>> {
  const c = await createConnection({ ...mysqlConnectionOptions(ctx().engine.url), database: namespace });
  try {
    const [rows] = await c.query<RowDataPacket[]>('SELECT id, value, headroom, width FROM counters');
    return new Map(rows.map((r) => {
      const id = Buffer.from(r.id).toString('utf8');
      const nullable = (v: unknown) => (v === null ? null : Number(v));
      return [id, { id, value: Number(r.value), headroom: nullable(r.headroom), width: nullable(r.width) }];
    }));
  } finally {
    await c.end();
  }
}

/** The key records of the namespace: key → {id, step, value, shard}. */
async function keyRecords(namespace: string): Promise<Map<string, { id: string; step: number; value: number; shard: number | null }>> {
  const c = await createConnection({ ...mysqlConnectionOptions(ctx().engine.url), database: namespace });
  try {
    const [rows] = await c.query<RowDataPacket[]>('SELECT idempotency_key AS k, counter_id AS id, step, value, shard FROM counters_keys');
    return new Map(rows.map((r) => [Buffer.from(r.k).toString('utf8'), {
      id: Buffer.from(r.id).toString('utf8'), step: Number(r.step), value: Number(r.value), shard: r.shard === null ? null : Number(r.shard),
    }]));
  } finally {
    await c.end();
  }
}

const slot = (id: string, i: number) => (i === 0 ? id : `${id}${TIDB_SLOT_SEPARATOR}${i}`);

/** The escrow invariant over an id's slots: every slot 0 ≤ value, 0 ≤ headroom, and Σ(value + headroom) ≤ maximum. */
function expectEscrow(rows: Map<string, Row>, id: string, width: number, maximum: number): number {
  let total = 0;
  let shares = 0;
  for (let i = 0; i < width; i++) {
    const row = rows.get(slot(id, i));
    if (!row) continue;
    expect(row.value).toBeGreaterThanOrEqual(0);
    expect(row.headroom ?? 0).toBeGreaterThanOrEqual(0);
    total += row.value;
    shares += row.value + (row.headroom ?? 0);
  }
  expect(shares).toBeLessThanOrEqual(maximum);
  return total;
}

const accepted = (answers: Answer[]) => answers.filter((a) => a.status === 200).reduce((sum, a) => sum + a.body.by, 0);

describe('tidb sharded counters: what the table holds', () => {
  test('shards 1: the rows are today\'s (id, value), headroom and width NULL, a key record without a shard', async () => {
    const namespace = uniqueNamespace('t_tidb_layout');
    await ctx().prepare(namespace);
    const [unconditional] = await ctx().containers({ conditional: false, env: shardsEnv(1) }, 1, namespace);
    const [conditional] = await ctx().containers({ conditional: true, maximum: 5, env: shardsEnv(1) }, 1, namespace);
    for (let i = 0; i < 3; i++) expect((await call(unconditional, 'POST', 'tidb', 'u')).body).toMatchObject({ counter: i + 1 });
    for (let i = 0; i < 6; i++) await call(conditional, 'POST', 'tidb', 'c');
    expect(await call(unconditional, 'POST', 'tidb', 'u', { key: 'k1' })).toMatchObject({ status: 200, body: { counter: 4 } });
    const rows = await table(namespace);
    expect([...rows.values()].sort((a, b) => a.id.localeCompare(b.id))).toEqual([
      { id: 'c', value: 5, headroom: null, width: null },
      { id: 'u', value: 4, headroom: null, width: null },
    ]);
    expect((await keyRecords(namespace)).get('k1')).toEqual({ id: 'u', step: 1, value: 4, shard: null });
    expect((await call(unconditional, 'GET', 'tidb', 'u')).body).toEqual({ id: 'u', counter: 4, backend: 'tidb' });
  });

  test('shards 8, conditional (maximum 100), mixed ±1 load: slot rows id, id␟1…id␟7; escrow invariant; width 8 on slot 0 only; keys() lists the id once', async () => {
    const namespace = uniqueNamespace('t_tidb_layout');
    const env = await ctx().prepare(namespace);
    const handlers = await ctx().containers({ conditional: true, maximum: 100, env: shardsEnv(8) }, 4, namespace);
    const answers = await Promise.all(Array.from({ length: 160 }, (_, i) => call(handlers[i % 4], 'POST', 'tidb', 'x', { by: i % 5 === 4 ? -1 : 1 })));
    expect(answers.every((a) => a.status === 200 || a.status === 409)).toBe(true);
    const rows = await table(namespace);
    expect([...rows.keys()].sort()).toEqual(Array.from({ length: 8 }, (_, i) => slot('x', i)).sort());
    expect(expectEscrow(rows, 'x', 8, 100)).toBe(accepted(answers));
    expect(rows.get('x')!.width).toBe(8);
    for (let i = 1; i < 8; i++) expect(rows.get(slot('x', i))!.width).toBeNull();
    expect((await call(handlers[0], 'GET', 'tidb', 'x')).body).toEqual({ id: 'x', counter: accepted(answers), backend: 'tidb', shards: 8 });
    expect(await tidbFixture.keys!(ctx().engine, namespace)).toEqual(['x']);
    expect(env).toBeDefined();
  });

  test('shards 8, unconditional: the width is raised to 8 before a slot above 0 is written; slots hold no headroom; the total is every slot', async () => {
    const namespace = uniqueNamespace('t_tidb_layout');
    await ctx().prepare(namespace);
    const handlers = await ctx().containers({ conditional: false, env: shardsEnv(8) }, 2, namespace);
    const answers = await Promise.all(Array.from({ length: 80 }, (_, i) => call(handlers[i % 2], 'POST', 'tidb', 'u', { by: 2 })));
    expect(answers.every((a) => a.status === 200 && a.body.shards === 8 && a.body.counter === undefined)).toBe(true);
    const rows = await table(namespace);
    expect(rows.get('u')?.width).toBe(8);
    expect([...rows.values()].every((r) => r.headroom === null)).toBe(true);
    expect([...rows.values()].reduce((sum, r) => sum + r.value, 0)).toBe(160);
    // A container with fewer shards reads every slot there is, from the width.
    const [narrow] = await ctx().containers({ conditional: false, env: shardsEnv(2) }, 1, namespace);
    expect((await call(narrow, 'GET', 'tidb', 'u')).body).toMatchObject({ counter: 160, shards: 2 });
  });

  test('a keyed sharded change records its slot on the key, not on the slot row; its replay answers shards, the reuse 422, a rejection records nothing', async () => {
    const namespace = uniqueNamespace('t_tidb_keys');
    await ctx().prepare(namespace);
    const [h] = await ctx().containers({ conditional: true, maximum: 3, env: shardsEnv(4) }, 1, namespace);
    for (let i = 0; i < 3; i++) {
      expect(await call(h, 'POST', 'tidb', 'k', { key: `key-${i}` })).toMatchObject({ status: 200, body: { shards: 4 }, headers: { 'Idempotent-Replayed': 'false' } });
    }
    const records = await keyRecords(namespace);
    expect([...records.keys()].sort()).toEqual(['key-0', 'key-1', 'key-2']);
    for (const record of records.values()) {
      expect(record).toMatchObject({ id: 'k', step: 1, value: 0 });
      expect(record.shard).toBeGreaterThanOrEqual(0);
      expect(record.shard).toBeLessThan(4);
    }
    expect(await call(h, 'POST', 'tidb', 'k', { key: 'key-1' })).toMatchObject({ status: 200, body: { shards: 4 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(h, 'POST', 'tidb', 'k', { key: 'key-1', by: 2 })).toMatchObject({ status: 422 });
    expect(await call(h, 'POST', 'tidb', 'other', { key: 'key-1' })).toMatchObject({ status: 422 });
    // At the maximum: a 409, and the key stays unbound.
    expect(await call(h, 'POST', 'tidb', 'k', { key: 'key-3' })).toMatchObject({ status: 409, body: { code: 'LIMIT_REACHED' } });
    expect((await keyRecords(namespace)).has('key-3')).toBe(false);
    expect(await call(h, 'POST', 'tidb', 'k', { key: 'key-3', by: -1 })).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'false' } });
    expect((await call(h, 'GET', 'tidb', 'k')).body.counter).toBe(2);
  });

  test('a lowered maximum: stored total above it, increments 409, decrements still apply slot by slot', async () => {
    const namespace = uniqueNamespace('t_tidb_lowered');
    await ctx().prepare(namespace);
    const [wide] = await ctx().containers({ conditional: true, maximum: 40, env: shardsEnv(4) }, 1, namespace);
    for (let i = 0; i < 40; i++) expect((await call(wide, 'POST', 'tidb', 'l')).status).toBe(200);
    const [lowered] = await ctx().containers({ conditional: true, maximum: 10, env: shardsEnv(4) }, 1, namespace);
    expect(await call(lowered, 'POST', 'tidb', 'l')).toMatchObject({ status: 409 });
    expect(await call(lowered, 'POST', 'tidb', 'l', { by: -35 })).toMatchObject({ status: 200 });
    expect((await call(lowered, 'GET', 'tidb', 'l')).body.counter).toBe(5);
    expectEscrow(await table(namespace), 'l', 4, 10);
  });
});

describe('tidb sharded counters: resharding down to 1', () => {
  /** Containers configured with 8 and with 1 shard on one namespace. */
  async function widths(conditional: boolean, maximum: number) {
    const namespace = uniqueNamespace('t_tidb_down');
    await ctx().prepare(namespace);
    const eight = await ctx().containers({ conditional, maximum, env: shardsEnv(8) }, 2, namespace);
    const one = await ctx().containers({ conditional, maximum, env: shardsEnv(1) }, 2, namespace);
    return { namespace, eight, one };
  }

  const load = (handlers: ProxyHandler[], id: string, total: number, options: (i: number) => { by?: number; key?: string } = () => ({})) => {
    const answers: Answer[] = [];
    return runWorkload({
      total,
      concurrency: 8,
      call: async (i, caller) => {
        const answer = await call(handlers[caller % handlers.length], 'POST', 'tidb', id, options(i));
        answers.push(answer);
        return { status: answer.status };
      },
    }).then((result) => ({ result, answers }));
  };

  test('conditional (maximum 60): 8 shards take 40, then 1-shard writers take exactly 20 more, all answered as sharded; every width reads 60; then 409 from both', async () => {
    const { namespace, eight, one } = await widths(true, 60);
    const first = await load(eight, 'd', 40);
    expect(first.result.statuses).toEqual({ 200: 40 });
    const second = await load(one, 'd', 50);
    expect(second.result.statuses).toEqual({ 200: 20, 409: 30 });
    // An unsharded writer of a widened id answers like a sharded one, with shards 1.
    for (const a of second.answers.filter((x) => x.status === 200)) expect(a.body).toMatchObject({ shards: 1 });
    expect((await call(one[0], 'GET', 'tidb', 'd')).body).toEqual({ id: 'd', counter: 60, backend: 'tidb' });
    expect((await call(eight[0], 'GET', 'tidb', 'd')).body).toMatchObject({ counter: 60, shards: 8 });
    expect((await call(one[1], 'POST', 'tidb', 'd')).status).toBe(409);
    expect((await call(eight[1], 'POST', 'tidb', 'd')).status).toBe(409);
    const rows = await table(namespace);
    expect(expectEscrow(rows, 'd', 8, 60)).toBe(60);
    expect(rows.get('d')!.width).toBe(8);
    // Lowered to 1, the slots above 0 got no headroom from the 1-shard rebalances.
    for (let i = 1; i < 8; i++) expect(rows.get(slot('d', i))?.headroom ?? 0).toBe(0);
  });

  test('conditional (maximum 100), below the maximum: once 1-shard writers rebalance, slots 1…7 hold no headroom (their share is their value) and slot 0 holds all that is left', async () => {
    const { namespace, eight, one } = await widths(true, 100);
    expect((await load(eight, 'r', 40)).result.statuses).toEqual({ 200: 40 });
    // Sequential: slot 0's own headroom runs out, and the rebalance at 1 shard follows.
    for (let i = 0; i < 20; i++) expect((await call(one[0], 'POST', 'tidb', 'r')).status).toBe(200);
    const rows = await table(namespace);
    expect(expectEscrow(rows, 'r', 8, 100)).toBe(60);
    for (let i = 1; i < 8; i++) expect(rows.get(slot('r', i))?.headroom ?? 0).toBe(0);
    expect(rows.get('r')!.headroom).toBe(100 - 60);
  });

  test('unconditional: a fresh 1-shard container\'s first change and read of a widened id take the slots into account', async () => {
    const { eight, one } = await widths(false, 10);
    expect((await load(eight, 'u', 64)).result.statuses).toEqual({ 200: 64 });
    expect((await call(one[0], 'GET', 'tidb', 'u')).body).toEqual({ id: 'u', counter: 64, backend: 'tidb' });
    expect((await call(one[1], 'POST', 'tidb', 'u', { by: 6 })).body).toMatchObject({ shards: 1, by: 6 });
    expect((await call(one[1], 'GET', 'tidb', 'u')).body.counter).toBe(70);
    expect((await call(eight[0], 'GET', 'tidb', 'u')).body.counter).toBe(70);
  });

  test('Idempotency-Keys across widths: a key recorded by a sharded change replays its sharded answer at 1 shard; a key recorded unsharded replays its value at 8', async () => {
    const { eight, one } = await widths(false, 10);
    expect(await call(one[0], 'POST', 'tidb', 'k', { key: 'before' })).toMatchObject({ status: 200, body: { counter: 1 } });
    expect(await call(eight[0], 'POST', 'tidb', 'k', { key: 'sharded' })).toMatchObject({ status: 200, body: { shards: 8 } });
    await load(eight, 'k', 30);
    expect(await call(one[1], 'POST', 'tidb', 'k', { key: 'sharded' })).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(eight[1], 'POST', 'tidb', 'k', { key: 'before' })).toMatchObject({ status: 200, body: { counter: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
    expect(await call(one[1], 'POST', 'tidb', 'k', { key: 'before' })).toMatchObject({ status: 200, body: { counter: 1 }, headers: { 'Idempotent-Replayed': 'true' } });
    // A fresh key at 1 shard on the widened id: applied once, sharded answer, then replayed.
    expect(await call(one[0], 'POST', 'tidb', 'k', { key: 'after' })).toMatchObject({ status: 200, body: { shards: 1 }, headers: { 'Idempotent-Replayed': 'false' } });
    expect(await call(one[1], 'POST', 'tidb', 'k', { key: 'after' })).toMatchObject({ status: 200, headers: { 'Idempotent-Replayed': 'true' } });
    expect((await call(one[0], 'GET', 'tidb', 'k')).body.counter).toBe(33);
  });

  test('keyed, conditional (maximum 100): 200 keys each sent twice at 8 then at 1 shard: exactly 100 applied, each once', async () => {
    const { eight, one } = await widths(true, 100);
    const a = await load(eight, 'kc', 120, (i) => ({ key: `k${i % 60}` }));
    const b = await load(one, 'kc', 280, (i) => ({ key: `k${60 + (i % 140)}` }));
    const fresh = [...a.answers, ...b.answers].filter((x) => x.status === 200 && x.headers['Idempotent-Replayed'] === 'false').length;
    expect(fresh).toBe(100);
    expect((await call(one[0], 'GET', 'tidb', 'kc')).body.counter).toBe(100);
  });
});

describe('tidb sharded counters: commands per change and per read (warm containers, counted at the engine)', () => {
  async function counted(shards: number, mode: { conditional: boolean; maximum?: number }, namespace = uniqueNamespace('t_tidb_shard_rt')) {
    const env = await ctx().prepare(namespace);
    const counter = await tidbFixture.callCounter!(ctx().engine, env);
    const [handler] = await ctx().containers({ ...mode, env: { ...counter.env, ...shardsEnv(shards) } }, 1, namespace);
    return { namespace, counter, handler };
  }
  const commands = async (counter: { count(): number; reset(): void }, request: () => Promise<unknown>) => {
    counter.reset();
    await request();
    return counter.count();
  };

  test('8 shards, unconditional: a change 1 (the first one, width raise included, 1), a keyed change 1, a read 1', async () => {
    const { counter, handler: h } = await counted(8, { conditional: false });
    try {
      await call(h, 'GET', 'tidb', 'warm');
      const first = await commands(counter, () => call(h, 'POST', 'tidb', 'rt'));
      const figures = {
        first,
        change: await commands(counter, () => call(h, 'POST', 'tidb', 'rt')),
        keyed: await commands(counter, () => call(h, 'POST', 'tidb', 'rt', { key: 'k' })),
        replay: await commands(counter, () => call(h, 'POST', 'tidb', 'rt', { key: 'k' })),
        read: await commands(counter, () => call(h, 'GET', 'tidb', 'rt')),
      };
      expect(figures).toEqual({ first: 1, change: 1, keyed: 1, replay: 1, read: 1 });
    } finally {
      await counter.close();
    }
  });

  test('8 shards, conditional: the first change 3 (snapshot, then the rebalance: lock-and-read, write-and-commit), then 1 while the slots have headroom; a rejection 2 (a fast try, the snapshot), at the bound too; a read 1', async () => {
    // Maximum 80: the first rebalance leaves every slot 9 or 10 of headroom,
    // so the next six changes fit whichever slots the random order picks (at
    // maximum 20, with 2 or 3 per slot, one slot picked three times in six
    // took the slow path: a flaky count, not a slower path).
    const { counter, handler: h } = await counted(8, { conditional: true, maximum: 80 });
    try {
      await call(h, 'GET', 'tidb', 'warm');
      const first = await commands(counter, () => call(h, 'POST', 'tidb', 'rt'));
      const fast: number[] = [];
      for (let i = 0; i < 5; i++) fast.push(await commands(counter, () => call(h, 'POST', 'tidb', 'rt')));
      const keyed = await commands(counter, () => call(h, 'POST', 'tidb', 'rt', { key: 'k' }));
      const rejected = await commands(counter, async () => expect((await call(h, 'POST', 'tidb', 'rt', { by: 5000 })).status).toBe(409));
      const read = await commands(counter, () => call(h, 'GET', 'tidb', 'rt'));
      expect({ first, fast, keyed, rejected, read }).toEqual({ first: 3, fast: [1, 1, 1, 1, 1], keyed: 1, rejected: 2, read: 1 });
      // Up to the bound: every change 1 to 4; once there, a unit increment's 409 is 2, with no lock taken.
      const upTo: number[] = [];
      for (let i = 7; i < 80; i++) upTo.push(await commands(counter, async () => expect((await call(h, 'POST', 'tidb', 'rt')).status).toBe(200)));
      for (const n of upTo) expect(n).toBeLessThanOrEqual(4);
      const atBound = await commands(counter, async () => expect((await call(h, 'POST', 'tidb', 'rt')).status).toBe(409));
      expect(atBound).toBe(2);
      expect((await call(h, 'GET', 'tidb', 'rt')).body.counter).toBe(80);
    } finally {
      await counter.close();
    }
  });

  test('1 shard: unchanged (1 per change, keyed, replay and read) for an id never sharded; a widened id costs one more once per container, then the sharded path', async () => {
    const namespace = uniqueNamespace('t_tidb_shard_rt');
    const { counter, handler: h } = await counted(1, { conditional: false }, namespace);
    try {
      await call(h, 'POST', 'tidb', 'warm');
      await call(h, 'POST', 'tidb', 'warm', { key: 'warm' });
      await call(h, 'GET', 'tidb', 'warm');
      const plain = {
        change: await commands(counter, () => call(h, 'POST', 'tidb', 'plain')),
        keyed: await commands(counter, () => call(h, 'POST', 'tidb', 'plain', { key: 'p' })),
        replay: await commands(counter, () => call(h, 'POST', 'tidb', 'plain', { key: 'p' })),
        read: await commands(counter, () => call(h, 'GET', 'tidb', 'plain')),
      };
      expect(plain).toEqual({ change: 1, keyed: 1, replay: 1, read: 1 });
      // Another container shards `wide` (and `wider`); this one notices from the statement it sends anyway.
      const [eight] = await ctx().containers({ conditional: false, env: shardsEnv(8) }, 1, namespace);
      for (let i = 0; i < 16; i++) await call(eight, 'POST', 'tidb', 'wide');
      for (let i = 0; i < 16; i++) await call(eight, 'POST', 'tidb', 'wider');
      const widened = {
        firstChange: await commands(counter, () => call(h, 'POST', 'tidb', 'wide')),
        change: await commands(counter, () => call(h, 'POST', 'tidb', 'wide')),
        firstRead: await commands(counter, () => call(h, 'GET', 'tidb', 'wider')),
        read: await commands(counter, () => call(h, 'GET', 'tidb', 'wider')),
      };
      expect(widened).toEqual({ firstChange: 2, change: 1, firstRead: 2, read: 1 });
      expect((await call(h, 'GET', 'tidb', 'wide')).body.counter).toBe(18);
    } finally {
      await counter.close();
    }
  });
});

test('the engine unreachable: sharded changes (every path) and reads answer 503 with Retry-After', async () => {
  const namespace = uniqueNamespace('t_tidb_shard_down');
  const env = await ctx().prepare(namespace);
  // A port nothing listens on any more.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const url = new URL(env[TIDB_ENV.URL]);
  url.host = `127.0.0.1:${port}`;
  for (const conditional of [false, true]) {
    const [h] = await ctx().containers({ conditional, maximum: 10, env: { ...shardsEnv(8), [TIDB_ENV.URL]: url.toString() } }, 1, namespace);
    for (const answer of [
      await call(h, 'POST', 'tidb', 'down'),
      await call(h, 'POST', 'tidb', 'down', { key: 'k' }),
      await call(h, 'GET', 'tidb', 'down'),
    ]) {
      expect(answer).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
      expect(answer.headers['Retry-After']).toBeDefined();
    }
  }
  expect(await tidbFixture.keys!(ctx().engine, namespace)).toEqual([]);
});
