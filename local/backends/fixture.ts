import type { BackendName } from '../../src/runtime/store';
import type { Engine } from '../engines/engine';

/** A bare client doing the store's single operation, for overhead figures. */
export interface BareClient {
  increment(id: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * What the test kit, the bench, the local server and the comparison need to
 * know about one backend. One file per backend in this folder; registered in
 * `index.ts`.
 */
export interface BackendFixture {
  readonly backend: BackendName;
  /** The counter handler's bundle (below `assets/`). */
  readonly entry: string;
  /** Finds or starts the engine (URL from env → default port → started). */
  acquire(): Promise<Engine>;
  /**
   * Creates an isolated namespace on the engine (a table, a key prefix, a
   * database, a cache) and returns the handler environment that points at
   * it, mode variables excluded. Runs the backend's setup step if it has one.
   * Idempotent: preparing the same namespace twice is fine.
   */
  prepare(engine: Engine, namespace: string): Promise<Record<string, string>>;
  /**
   * Removes what `prepare` created on a shared engine (a database, keys
   * under a prefix), so repeated test runs leave nothing behind. Engines the
   * harness starts itself vanish with their process and need none.
   */
  dispose?(engine: Engine, namespace: string): Promise<void>;
  /**
   * Every counter id stored in a namespace (any order): lets a test check
   * that nothing was written besides what it wrote. Throws when the engine
   * cannot list them (say so rather than check nothing).
   */
  keys(engine: Engine, namespace: string): Promise<string[]>;
  /** A bare client loop doing the same single operation (`bench`). */
  bareClient(engine: Engine, env: Record<string, string>): Promise<BareClient>;
  /** Server-side port whose established connections the leak test counts. */
  serverPort?(engine: Engine): number | undefined;
  /**
   * Starts counting, on the engine side, the calls one prepared environment
   * sends: top-level commands or requests as the engine receives them (a
   * proxy in front of it, or the local server's own count), never TCP
   * chunks. The round-trip figures of `npm run compare` come from it.
   */
  callCounter?(engine: Engine, env: Record<string, string>): Promise<CallCounter>;
}

/** Engine-side call counting for one environment (`BackendFixture.callCounter`). */
export interface CallCounter {
  /** The handler environment to use: `env` rerouted through the counting point. */
  readonly env: Record<string, string>;
  /** Calls the engine received from this environment since the last `reset`. */
  count(): number;
  reset(): void;
  close(): Promise<void>;
}

/** Short unique namespace names: letters, digits and underscores only. */
export function uniqueNamespace(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Port of a URL like scheme://host:port/… */
export function urlPort(url: string, fallback: number): number {
  const port = new URL(url).port;
  return port ? Number(port) : fallback;
}
