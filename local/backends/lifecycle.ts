import { BackendFixture, uniqueNamespace } from './fixture';
import { fixtureFor } from './index';
import type { BackendName } from '../../src/runtime/store';
import { Engine } from '../engines/engine';
import { ContainerMode, loadCounterContainers, ProxyHandler } from '../lambda-container';

/**
 * One backend's lifecycle, the same for the local server, the comparison,
 * the bench and the test kit: acquire the engine (or take the caller's) →
 * prepare namespaces → load handler containers → close (containers first,
 * while the engine still answers; then the namespaces; then the engine, if
 * it was acquired here).
 */
export interface BackendSession {
  readonly backend: BackendName;
  readonly fixture: BackendFixture;
  readonly engine: Engine;
  /** True when the engine was acquired here (and is stopped by `close`). */
  readonly ownEngine: boolean;
  /** Prepares a namespace (a fresh one by default; each once) and returns the handler environment for it. */
  prepare(namespace?: string): Promise<Record<string, string>>;
  /** Loads `n` containers of the counter bundle in a mode, on a namespace (a fresh one by default). */
  containers(mode: ContainerMode, n?: number, namespace?: string): Promise<ProxyHandler[]>;
  /**
   * Closes every container loaded here, disposes the prepared namespaces
   * (when `dispose`), stops an engine acquired here. Runs every step, then
   * throws the first failure. Idempotent.
   */
  close(): Promise<void>;
}

export interface BackendSessionOptions {
  /** An engine the caller acquired: used as it is, never stopped here. */
  readonly engine?: Engine;
  /** Remove the prepared namespaces on close (a shared engine keeps nothing). @default true */
  readonly dispose?: boolean;
  /** Prefix of generated namespace names. @default `ns_<backend>` */
  readonly namespacePrefix?: string;
}

/** Acquires (or takes) a backend's engine and returns its session. */
export async function openBackend(backend: BackendName, options: BackendSessionOptions = {}): Promise<BackendSession> {
  const fixture = fixtureFor(backend);
  const engine = options.engine ?? await fixture.acquire();
  const ownEngine = options.engine === undefined;
  const dispose = options.dispose ?? true;
  const fresh = () => uniqueNamespace(options.namespacePrefix ?? `ns_${backend}`);
  /** Prepared namespaces and their environments (each prepared once). */
  const namespaces = new Map<string, Promise<Record<string, string>>>();
  const loaded: ProxyHandler[] = [];
  let closed: Promise<void> | undefined;

  const prepare = (namespace = fresh()) => {
    let env = namespaces.get(namespace);
    if (!env) namespaces.set(namespace, (env = fixture.prepare(engine, namespace)));
    return env;
  };

  return {
    backend,
    fixture,
    engine,
    ownEngine,
    prepare,
    async containers(mode, n = 1, namespace = fresh()) {
      const handlers = loadCounterContainers(fixture.entry, await prepare(namespace), mode, n);
      loaded.push(...handlers);
      return handlers;
    },
    close() {
      closed ??= (async () => {
        const failures: unknown[] = [];
        const attempt = async (step: () => Promise<unknown> | undefined) => {
          try {
            await step();
          } catch (err) {
            failures.push(err);
          }
        };
        await Promise.all(loaded.map((h) => attempt(() => h.close?.())));
        if (dispose && fixture.dispose) for (const namespace of namespaces.keys()) await attempt(() => fixture.dispose!(engine, namespace));
        if (ownEngine) await attempt(() => engine.stop());
        if (failures.length) throw failures[0];
      })();
      return closed;
    },
  };
}
