import { CounterError } from './errors';
import { CounterStore } from './store';

export type StoreFactory = () => CounterStore | Promise<CounterStore>;

/**
 * The one store of a Lambda container, through its life: created (its
 * secret read, its connection opened) in the init phase, reused by every
 * invocation, dropped and created afresh after a failure or a credential
 * rotation.
 *
 * - `connectAtInit`: creation and connect start at once; a failure is never
 *   thrown or left unhandled: the store is dropped (some clients stay
 *   unusable after a failed first connect, e.g. the MongoDB driver keeps its
 *   closed topology) and the next request creates a fresh one.
 * - A request that arrives while that connect is under way shares its
 *   outcome: if it failed with a classified error (a 503 for an unreachable
 *   engine), the first such request answers it, once, instead of meeting a
 *   store the init is closing (a 500, "Pool is closed"). Anything else lets
 *   the request try on a fresh store.
 * - A creation that fails is forgotten, so the next request retries it; one
 *   that `close` overtook is not installed.
 */
export class ContainerStore {
  /** The creation under way or done; undefined when there is no store. */
  private pending: Promise<CounterStore> | undefined;
  /** What `pending` resolved to, while it stands: a request skips awaiting it. */
  private current: CounterStore | undefined;
  /** Why the init-phase connect failed, until a request answers it. */
  private initError: unknown;
  /** True until the init-phase connect has settled. */
  private initPending: boolean;
  /** The init-phase connect: true once connected, false if it failed or was not started. Never rejects. */
  private readonly initDone: Promise<boolean>;

  constructor(private readonly create: StoreFactory, connectAtInit = true) {
    this.initPending = connectAtInit;
    this.initDone = connectAtInit ? this.connectAtInit() : Promise.resolve(false);
    void this.initDone.then(() => {
      this.initPending = false;
    });
  }

  /** Resolves once the init-phase connect has settled: `true` when it connected. Never rejects. */
  ready(): Promise<boolean> {
    return this.initDone;
  }

  /** The store for a request: the current one, or a fresh one (see the class comment for a failed init). */
  async acquire(): Promise<CounterStore> {
    if (this.initPending && !(await this.initDone) && this.initError instanceof CounterError) {
      const err = this.initError;
      this.initError = undefined;
      throw err;
    }
    return this.current ?? this.get();
  }

  /** Drops the store (closing it once its creation settles); the next `acquire` creates a fresh one. */
  async close(): Promise<void> {
    const pending = this.pending;
    this.pending = undefined;
    this.current = undefined;
    const s = await pending?.catch(() => undefined);
    await s?.close?.();
  }

  private get(): Promise<CounterStore> {
    if (!this.pending) {
      const pending: Promise<CounterStore> = Promise.resolve()
        .then(this.create)
        .then((s) => {
          if (this.pending === pending) this.current = s;
          return s;
        }, (err) => {
          if (this.pending === pending) this.pending = undefined;
          throw err;
        });
      this.pending = pending;
    }
    return this.pending;
  }

  private connectAtInit(): Promise<boolean> {
    return this.get().then(async (s) => {
      try {
        await s.connect?.();
        return true;
      } catch (err) {
        this.initError = err;
        const pending = this.pending;
        if (pending && (await pending.catch(() => undefined)) === s) {
          this.pending = undefined;
          this.current = undefined;
          await s.close?.().catch(() => undefined);
        }
        return false;
      }
    }).catch((err) => {
      this.initError ??= err;
      return false;
    });
  }
}
