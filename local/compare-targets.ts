/**
 * What `npm run compare` drives (local/compare.ts): a backend's bundled
 * handlers in this process (through its lifecycle session), or a deployed
 * API over HTTP; and the caveats the report prints for each.
 */
import { uniqueNamespace } from './backends/fixture';
import { BackendSession } from './backends/lifecycle';
import type { CompareOptions } from './compare';
import { ProxyHandler, proxyEvent } from './lambda-container';
import { oneLine } from './server';
import { BackendName } from '../src/runtime/store';

export interface Answer {
  status: number;
  counter?: number;
}

/** One backend as the workload sees it: increments in a mode, reads. */
export interface Target {
  /** Engine description for the report. */
  readonly engine: string;
  /** Modes this target can run; a deployed API has exactly one. */
  readonly modes: { conditional: boolean; maximum?: number }[];
  post(conditional: boolean, id: string, caller: number): Promise<Answer>;
  get(id: string): Promise<Answer>;
  close(): Promise<void>;
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
    cloud: ['UpdateItem ADD (+ ConditionExpression): atomic per item. A hot id is one partition: about 1,000 writes/s in the cloud, which no local run shows.'],
    local: ['DynamoDB Local is a Java emulator on SQLite: no partitions, no throttling, no replication.'],
  },
  redis: {
    cloud: ['Lua script on the primary: atomic. Replication to the replica is asynchronous: a failover can lose increments the primary acknowledged.'],
    local: ['One local redis-server: no replica, no TLS, no failover.'],
  },
  momento: {
    cloud: [
      'Items carry a TTL and can expire or be evicted: a Momento counter is not durable storage.',
      'Conditional mode is a compare-and-swap loop (no server-side "increment below"): under contention on one id an accepted increment can cost several round trips (the tail latency of conditional-hot); once the maximum is reached a rejection is one read.',
    ],
    local: ['The engine is an in-process gRPC server speaking Momento\'s protocol, in the load generator\'s process.'],
  },
  docdb: {
    cloud: ['findOneAndUpdate upsert with a unique index on the id: atomic per document on the primary.'],
    local: ['The engine is an in-process MongoDB-wire server (bson + mingo), not DocumentDB: each command runs in one event-loop turn in memory; DocumentDB storage, replication and locking are not exercised.'],
  },
  tidb: {
    cloud: ['One INSERT … ON DUPLICATE KEY UPDATE statement: atomic per row. TiDB is distributed (TiKV regions, Percolator transactions): hot-row contention behaves differently from a single server.'],
    local: ['MariaDB/MySQL stands in for TiDB (same protocol and SQL for the statement used).'],
  },
};

export async function inProcessTarget(session: BackendSession, options: CompareOptions): Promise<Target> {
  const { backend, engine } = session;
  // A fresh namespace per run: counters start at 0 even on a persistent engine.
  const namespace = uniqueNamespace(`cmp_${backend}`);
  const load = (conditional: boolean) => session.containers({ conditional, maximum: options.max }, options.containers, namespace);
  const containers: Record<'true' | 'false', ProxyHandler[]> = { false: await load(false), true: await load(true) };
  const invoke = async (handler: ProxyHandler, method: string, id: string): Promise<Answer> => {
    const res = await handler(proxyEvent(method, backend, id));
    return { status: res.statusCode, counter: JSON.parse(res.body).counter };
  };
  return {
    engine: `${engine.name} (${engine.origin})`,
    modes: [{ conditional: false }, { conditional: true, maximum: options.max }],
    post: (conditional, id, caller) => {
      const set = containers[String(conditional) as 'true' | 'false'];
      return invoke(set[caller % set.length], 'POST', id);
    },
    get: (id) => invoke(containers.false[0], 'GET', id),
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
  const request = async (method: string, id: string): Promise<Answer & { body?: any }> => {
    const res = await fetch(`${baseUrl.replace(/\/+$/, '')}/${backend}/${encodeURIComponent(id)}`, {
      method, headers: { 'x-api-key': apiKey }, signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: res.status, counter: typeof body?.counter === 'number' ? body.counter : undefined, body };
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
    post: (_c, id) => request('POST', id),
    get: (id) => request('GET', id),
    close: async () => undefined,
  };
}
