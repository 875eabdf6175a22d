/**
 * What the library knows about one backend, in one typed object per backend
 * (`src/backends/<b>/<b>-contract.ts`), collected in `BACKEND_CONTRACTS`
 * (`src/private/backends.ts`). A counter passes its own contract to what
 * builds it (`CounterBase`, `createCounterFunction`), so nothing looks a
 * backend up by name, and a backend whose contract lacks a field does not
 * compile. Plain values and functions only: no aws-cdk-lib, so the local
 * fixtures and the tests can import it cheaply. Not part of the published API.
 */
import type { BackendName } from '../runtime/store';
import type { WorstCase } from '../timeouts';

/** A function's environment as the checks read it: unset and token values alike. */
export type EnvironmentMap = Readonly<Record<string, string | undefined>>;

/**
 * Bundle entries of a backend's handlers: the path below `src/` (and below
 * `assets/`, where projen's esbuild step writes `index.js`), without `.ts`.
 */
export interface BackendBundles {
  /** The counter function's handler. */
  readonly counter: string;
  /** The setup custom resource's handler, for a backend that has a setup step. */
  readonly setup?: string;
}

/** One backend's facts. */
export interface BackendContract<B extends BackendName = BackendName> {
  /** Route segment (`/{name}/{id}`), the `backend` of every log line and answer. */
  readonly name: B;
  /**
   * How the backend is spelled in its metric names: `<metricPrefix>AtomicCounter`
   * and `<metricPrefix>AtomicCounterChange` (`counterMetricNameOf`).
   */
  readonly metricPrefix: string;
  /** Its handlers' bundle entries (`<B>_BUNDLES` of its env contract). */
  readonly bundles: BackendBundles;
  /**
   * The store's worst-case answer time, from its counter function's
   * environment (its `<b>-env.ts`): checked at synth against the function
   * timeout, so a slow datastore answers 503 before Lambda's timeout turns
   * it into a 502. Undefined when a value is a token (not checkable).
   */
  readonly worstCase: (environment: EnvironmentMap) => WorstCase | undefined;
  /**
   * Whether the backend's store implements sharded counters (`shards` > 1,
   * docs/sharding.md); a counter of a backend without it refuses `shards`
   * at synth.
   */
  readonly sharded: boolean;
}
