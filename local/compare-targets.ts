/**
 * What `npm run compare` drives (local/compare.ts): a backend's bundled
 * handlers in this process (through its lifecycle session), or a deployed
 * API over HTTP; the counting proxy that approximates engine round trips;
 * and the caveats the report prints for each.
 */
import { uniqueNamespace } from './backends/fixture';
import { BackendSession } from './backends/lifecycle';
import type { CompareOptions } from './compare';
import { ProxyHandler, ProxyResult, proxyEvent } from './lambda-container';
import { oneLine } from './server';
import { BackendName } from '../src/runtime/store';

/** What a POST carries besides the id: a step (`?by=`, default 1) and an `Idempotency-Key`. */
export interface PostOptions {
  readonly by?: number;
  readonly key?: string;
}

export interface Answer {
  status: number;
  /** The value a change produced (absent on a sharded counter's change), or the value read. */
  counter?: number;
  /** `shards` of a sharded counter's answer (docs/sharding.md). */
  shards?: number;
  /** `by` of the body (200 and the 409s carry the step they judged). */
  by?: number;
  /** `code` of an error body. */
  code?: string;
  /** The `Idempotent-Replayed` header ('true' / 'false'), when the answer has one. */
  replayed?: string;
}

/** One backend as the workload sees it: changes in a mode, reads. */
export interface Target {
  /** Engine description for the report. */
  readonly engine: string;
  /** Modes this target can run; a deployed API has exactly one. */
  readonly modes: { conditional: boolean; maximum?: number }[];
  post(conditional: boolean, id: string, caller: number, options?: PostOptions): Promise<Answer>;
  get(id: string): Promise<Answer>;
  close(): Promise<void>;
}

/** The handler's answer as the workload needs it. */
function answerOf(res: ProxyResult): Answer {
  let body: any;
  try {
    body = JSON.parse(res.body);
  } catch {
    body = undefined;
  }
  const header = Object.entries(res.headers ?? {}).find(([name]) => name.toLowerCase() === 'idempotent-replayed');
  return {
    status: res.statusCode,
    counter: typeof body?.counter === 'number' ? body.counter : undefined,
    shards: typeof body?.shards === 'number' ? body.shards : undefined,
    by: typeof body?.by === 'number' ? body.by : undefined,
    code: typeof body?.code === 'string' ? body.code : undefined,
    replayed: header?.[1],
  };
}

function postEvent(backend: string, id: string, options: PostOptions = {}): unknown {
  return proxyEvent(
    'POST', backend, id,
    options.key === undefined ? {} : { 'Idempotency-Key': options.key },
    options.by === undefined ? {} : { by: String(options.by) },
  );
}

export const GENERAL_CAVEATS_LOCAL = [
  'Local engines are not the cloud services: the figures compare the code paths (bundled handler, client, protocol, engine) on one machine, not DynamoDB, ElastiCache, Momento, DocumentDB or TiDB Cloud as deployed.',
  'The load generator, the handler containers and the in-process engines (Momento, MongoDB wire) share one Node.js process and event loop; external engines (DynamoDB Local, Redis, MariaDB) share the same cores. There is no network hop.',
  'Ids are fresh for every run, so every counter starts at 0.',
];
export const GENERAL_CAVEATS_HTTP = [
  'Driven over HTTP: figures include the network, API Gateway, Lambda (cold starts included) and the usage plan\'s throttle (429s count as errors).',
  'Ids are fresh for every run, so every counter starts at 0.',
];

/** What each store is and is not, as the report should say it. */
export const BACKEND_CAVEATS: Record<BackendName, { local: string[]; cloud: string[] }> = {
  dynamo: {
    cloud: [
      'UpdateItem ADD (+ ConditionExpression): atomic per item. A hot id is one partition: about 1,000 writes/s in the cloud ' +
        '(in-process runs play that limit, scaled down, at a throttling proxy: the "hot id past one item" scenario).',
      'Keyed (Idempotency-Key): one TransactWriteItems writes the change, a marker on the counter item holding the value produced, and the key-record item (if absent or expired), ' +
        'folding earlier markers into their records; then one consistent GetItem reads the marker: 2 calls uncontended, +1 per transaction conflict; a replay is 1. ' +
        'While a transaction is under way on the item, a plain update is refused (TransactionConflictException) and retried (docs/dynamo.md).',
    ],
    local: ['DynamoDB Local is a Java emulator on SQLite: no partitions, no throttling (the hot id scenario adds a per-key write limit at a proxy), no replication.'],
  },
  redis: {
    cloud: [
      'Lua script on the primary: atomic. Replication to the replica is asynchronous: a failover can lose increments the primary acknowledged.',
      'Keyed: one Lua script over the counter and its key record: one round trip, contended or not.',
    ],
    local: ['One local redis-server: no replica, no TLS, no failover.'],
  },
  momento: {
    cloud: [
      'Items carry a TTL and can expire or be evicted: a Momento counter is not durable storage.',
      'Conditional mode is a compare-and-swap loop (no server-side "increment below"): under contention on one id an accepted increment can cost several round trips (the tail latency of conditional-hot); once the maximum is reached a rejection is one read.',
      'Keyed: a key-record item binds the key (setIfAbsent); one compare-and-swap (setIfEqual) writes the change together with the key\'s entry in the counter\'s item; ' +
        'the outcome is then copied to the record: 4 calls uncontended, 2 more per race lost. A weaker guarantee than exactly-once (see the retry note).',
    ],
    local: ['The engine is an in-process gRPC server speaking Momento\'s protocol, in the load generator\'s process.'],
  },
  docdb: {
    cloud: [
      'findOneAndUpdate upsert with a unique index on the id: atomic per document on the primary.',
      'Keyed: one multi-document transaction (the key record upserted, the counter\'s findOneAndUpdate, the value into the record, commit): ' +
        '4 round trips uncontended; a conflicting transaction is aborted and run again after a back-off.',
    ],
    local: ['The engine is an in-process MongoDB-wire server (bson + mingo), not DocumentDB: each command runs in one event-loop turn in memory; DocumentDB storage, replication and locking are not exercised.'],
  },
  tidb: {
    cloud: [
      'One INSERT … ON DUPLICATE KEY UPDATE statement: atomic per row. TiDB is distributed (TiKV regions, Percolator transactions): hot-row contention behaves differently from a single server.',
      'Keyed: one multi-statement batch on a dedicated connection (BEGIN, the key row claimed, the change, the value into the key row, COMMIT): 1 round trip, a replay too; '
        + 'no lock is held across client round trips; deadlocks and conflicts run it again.',
    ],
    local: ['MariaDB/MySQL stands in for TiDB (same protocol and SQL for the statement used).'],
  },
};

/**
 * A guarantee weaker than exactly-once, printed beside the backend's retry
 * verdict: the scenario's retries come within milliseconds, so a PASS cannot
 * show the limit.
 */
export const RETRY_GUARANTEE: Partial<Record<BackendName, string>> = {
  momento: 'Momento keys are weaker than exactly-once, because Momento is a cache: a key record evicted after its entry has left the counter\'s item makes the key new again ' +
    '(a retry counts again); a counter item that expires (its TTL) or is evicted takes the counter and its pending entries with it; ' +
    'and a rejected (409) key stays bound to its id and step for the retention. ' +
    'This run\'s retries come within milliseconds on an engine that never evicts, so its PASS cannot show any of that (docs/momento.md).',
};

export async function inProcessTarget(session: BackendSession, options: CompareOptions): Promise<Target> {
  const { backend, engine } = session;
  // A fresh namespace per run: counters start at 0 even on a persistent engine.
  const namespace = uniqueNamespace(`cmp_${backend}`);
  const load = (conditional: boolean) =>
    session.containers({ conditional, maximum: options.max, shards: options.shards }, options.containers, namespace);
  const containers: Record<'true' | 'false', ProxyHandler[]> = { false: await load(false), true: await load(true) };
  return {
    engine: `${engine.name} (${engine.origin})`,
    modes: [{ conditional: false }, { conditional: true, maximum: options.max }],
    post: async (conditional, id, caller, post) => {
      const set = containers[String(conditional) as 'true' | 'false'];
      return answerOf(await set[caller % set.length](postEvent(backend, id, post)));
    },
    get: async (id) => answerOf(await containers.false[0](proxyEvent('GET', backend, id))),
    // The figures are in the report: the session leaves nothing behind on a shared engine.
    close: () => session.close(),
  };
}

/**
 * A deployed API (or `npm run local`) over HTTP. Its mode is fixed at deploy
 * time: a probe increment on a throw-away id tells which, and only that
 * mode's scenarios run.
 */
export async function httpTarget(backend: BackendName, baseUrl: string, apiKey: string, probeId: string): Promise<Target | string> {
  const request = async (method: string, id: string, options: PostOptions = {}): Promise<Answer & { body?: any }> => {
    const search = options.by === undefined ? '' : `?by=${options.by}`;
    const res = await fetch(`${baseUrl.replace(/\/+$/, '')}/${backend}/${encodeURIComponent(id)}${search}`, {
      method,
      headers: { 'x-api-key': apiKey, ...(options.key === undefined ? {} : { 'Idempotency-Key': options.key }) },
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    const answer = answerOf({ statusCode: res.status, body: text, headers: Object.fromEntries(res.headers.entries()) });
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { ...answer, body };
  };
  let probe;
  try {
    probe = await request('POST', probeId);
  } catch (err) {
    return `cannot reach ${baseUrl}: ${oneLine(err)}`;
  }
  if (probe.status !== 200) {
    const detail = probe.body?.error ?? probe.body?.message ?? '';
    return `the API answered ${probe.status} to a probe increment${detail ? `: ${detail}` : ''}`;
  }
  const conditional = probe.body.useConditionalWrites === true;
  return {
    engine: `deployed API at ${new URL(baseUrl).host}`,
    modes: [{ conditional, maximum: conditional ? Number(probe.body.maxCounterValue) : undefined }],
    post: (_c, id, _caller, options) => request('POST', id, options),
    get: (id) => request('GET', id),
    close: async () => undefined,
  };
}
