/**
 * The fault contract, written once and run for every backend by its
 * conformance file: a datastore that cannot be reached, or that accepts a
 * connection and never answers, is a `503 BACKEND_UNAVAILABLE` with the fixed
 * public body and `Retry-After`, answered within the store's documented worst
 * case (its `<b>WorstCase` in `src/backends/<b>/<b>-env.ts`, computed from the
 * same environment the handler gets) — never a 500, never a hang until the
 * function timeout. Backend-specific faults (a hung engine mid-run, a
 * restart, rotation, stale connections) stay in each backend's fault file.
 */
import { call } from './conformance';
import { fixtureFor } from '../../local/backends';
import { LOCAL_AWS_ENV } from '../../local/engines/dynamodb-local';
import { freePort } from '../../local/engines/engine';
import { startSilentServer } from '../../local/engines/fault-proxy';
import { loadBundledHandler } from '../../local/lambda-container';
import { DOCDB_DEFAULTS, DOCDB_ENV, docdbWorstCase } from '../../src/backends/docdb/docdb-env';
import { DYNAMO_ENV, dynamoWorstCase } from '../../src/backends/dynamo/dynamo-env';
import { MOMENTO_ENV, momentoWorstCase } from '../../src/backends/momento/momento-env';
import { REDIS_ENV, redisWorstCase } from '../../src/backends/redis/redis-env';
import { TIDB_DEFAULTS, TIDB_ENV, tidbWorstCase } from '../../src/backends/tidb/tidb-env';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import type { BackendName } from '../../src/runtime/store';
import { WorstCase } from '../../src/timeouts';

/** Scheduling slack on a shared machine: bounds are asserted as worst case + SLACK. */
export const FAULT_SLACK_MS = 1500;

/**
 * How long this process was kept from running while `work` ran: the sum of
 * how late a 20 ms timer fired, tick by tick. On a machine busy with other
 * work the handler's own timers fire late by as much, so a bound is
 * asserted as worst case + slack + this delay. A handler that ignores its
 * timeout waits on the network, which delays no timer: it still fails.
 */
export async function withSchedulingDelay<T>(work: () => Promise<T>): Promise<{ result: T; delayMs: number }> {
  const tickMs = 20;
  let delayMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    delayMs += Math.max(0, now - last - tickMs);
    last = now;
  }, tickMs);
  try {
    const result = await work();
    delayMs += Math.max(0, performance.now() - last - tickMs);
    return { result, delayMs };
  } finally {
    clearInterval(timer);
  }
}

/** How one backend's handler is pointed at an arbitrary endpoint, with short timeouts, and its worst case. */
export interface FaultTarget {
  /** Handler environment (mode variables excluded) whose datastore is at `host:port`. */
  env(host: string, port: number): Record<string, string>;
  /** The store's documented worst case for that environment. */
  worstCase(env: Record<string, string>): WorstCase | undefined;
}

export const FAULT_TARGETS: Record<BackendName, FaultTarget> = {
  dynamo: {
    env: (host, port) => ({
      ...LOCAL_AWS_ENV,
      [DYNAMO_ENV.TABLE_NAME]: 'fault',
      [DYNAMO_ENV.ENDPOINT]: `http://${host}:${port}`,
      [DYNAMO_ENV.REQUEST_TIMEOUT_MS]: '1000',
    }),
    worstCase: dynamoWorstCase,
  },
  redis: {
    env: (host, port) => ({
      [REDIS_ENV.URL]: `redis://${host}:${port}`,
      [REDIS_ENV.KEY_PREFIX]: 'fault:',
      [REDIS_ENV.CONNECT_TIMEOUT_MS]: '500',
      [REDIS_ENV.COMMAND_TIMEOUT_MS]: '500',
    }),
    worstCase: redisWorstCase,
  },
  momento: {
    env: (host, port) => ({
      [MOMENTO_ENV.LOCAL_ENDPOINT]: `${host}:${port}`,
      [MOMENTO_ENV.CACHE_NAME]: 'fault',
      [MOMENTO_ENV.CLIENT_TIMEOUT_MS]: '1000',
      [MOMENTO_ENV.CAS_BUDGET_MS]: '1500',
    }),
    worstCase: momentoWorstCase,
  },
  docdb: {
    env: (host, port) => ({
      [DOCDB_ENV.URI]: `mongodb://${host}:${port}/?directConnection=true`,
      [DOCDB_ENV.DATABASE]: 'fault',
      [DOCDB_ENV.COLLECTION]: DOCDB_DEFAULTS.collection,
      [DOCDB_ENV.SERVER_SELECTION_TIMEOUT_MS]: '500',
      [DOCDB_ENV.CONNECT_TIMEOUT_MS]: '500',
      [DOCDB_ENV.SOCKET_TIMEOUT_MS]: '500',
      [DOCDB_ENV.OPERATION_TIMEOUT_MS]: '1500',
    }),
    worstCase: docdbWorstCase,
  },
  tidb: {
    env: (host, port) => ({
      [TIDB_ENV.URL]: `mysql://root@${host}:${port}/`,
      [TIDB_ENV.DATABASE]: 'fault',
      [TIDB_ENV.TABLE]: TIDB_DEFAULTS.table,
      [TIDB_ENV.TLS]: 'false',
      [TIDB_ENV.CONNECT_TIMEOUT_MS]: '500',
      [TIDB_ENV.QUERY_TIMEOUT_MS]: '500',
    }),
    worstCase: tidbWorstCase,
  },
};

const MODES: Array<{ label: string; env: Record<string, string> }> = [
  { label: 'unconditional', env: { USE_CONDITIONAL_WRITES: 'false' } },
  { label: 'conditional', env: { USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '10' } },
];

/** Runs the fault contract for one backend (called from its conformance file). */
export function describeFaultContract(backend: BackendName): void {
  const target = FAULT_TARGETS[backend];
  const entry = fixtureFor(backend).entry;

  async function expectUnavailable(where: { host: string; port: number }, what: string): Promise<void> {
    for (const mode of MODES) {
      const env = { ...target.env(where.host, where.port), ...mode.env, ATOMIC_COUNTER_LOG: 'off' };
      const worst = target.worstCase(env);
      if (!worst) throw new Error(`${backend}: no worst case for ${JSON.stringify(env)}`);
      const handler = loadBundledHandler(entry, env);
      // Twice each: the first request of a container and one after a failure.
      for (const method of ['POST', 'POST', 'GET']) {
        const t0 = performance.now();
        const { result: res, delayMs } = await withSchedulingDelay(() => call(handler, method, backend, 'fault'));
        const ms = performance.now() - t0;
        const label = `${backend} ${what} (${mode.label}, ${method})`;
        expect({ label, status: res.status }).toEqual({ label, status: 503 });
        expect(res.body).toEqual({ code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend });
        expect(res.headers['Retry-After']).toBe('1');
        const bound = worst.totalMs + FAULT_SLACK_MS + delayMs;
        expect({ label, withinWorstCase: ms < bound, ms: Math.round(ms), worstCaseMs: worst.totalMs, schedulingDelayMs: Math.round(delayMs) })
          .toEqual({ label, withinWorstCase: true, ms: Math.round(ms), worstCaseMs: worst.totalMs, schedulingDelayMs: Math.round(delayMs) });
      }
    }
  }

  describe(`${backend} fault contract (bundled handler)`, () => {
    test('engine unreachable (connection refused) → 503, fixed body, Retry-After, within the store\'s worst case', async () => {
      const port = await freePort(); // nothing listens there
      await expectUnavailable({ host: '127.0.0.1', port }, 'refused');
    }, 90_000);

    test('engine that accepts and never answers → 503, fixed body, Retry-After, within the store\'s worst case', async () => {
      const silent = await startSilentServer();
      try {
        await expectUnavailable(silent, 'silent');
        expect(silent.accepted).toBeGreaterThan(0); // the handler did reach the silent endpoint
      } finally {
        await silent.close();
      }
    }, 90_000);
  });
}
