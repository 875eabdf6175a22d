import { cache, control } from '@gomomento/generated-types';
import { MomentoLocalProvider } from '@gomomento/sdk';
/**
 * A small in-process gRPC server speaking Momento's cache protocol, for tests
 * and local runs. The real `@gomomento/sdk` connects to it with
 * `CredentialProvider.forMomentoLocal({ hostname, port })`.
 *
 * Why this exists: there is no Momento emulator we can install offline, and
 * the counter's Momento backend only needs a handful of scalar RPCs. Serving
 * them with the SDK's own generated service definitions (same protobuf
 * classes, same `@grpc/grpc-js` version) means the SDK goes through its real
 * code path: serialization, interceptors, retries and error mapping.
 *
 * Implemented RPCs (everything else answers UNIMPLEMENTED, which the SDK
 * reports as an error):
 *   /cache_client.Scs/{Get,GetBatch,Set,SetIf,Increment,Delete}
 *   /control_client.ScsControl/{CreateCache,ListCaches,DeleteCache}
 *
 * Limits, as the service's defaults: an item (key and value) larger than
 * `maxItemSizeBytes` (1 MB) is refused with RESOURCE_EXHAUSTED and the
 * `err: item_size_limit_exceeded` trailer, which the SDK reports as
 * LIMIT_EXCEEDED_ERROR. The per-cache request and throughput rates are not
 * enforced; `faults.rateLimited` answers every data call with the service's
 * rate-limit error instead.
 *
 * Atomicity: every handler runs synchronously on an in-memory Map within one
 * event-loop turn, so each call is atomic with respect to every other call.
 * That is what makes conditional writes (SetIf) and Increment behave like the
 * real service under concurrency.
 */
import * as grpc from '@grpc/grpc-js';

const pb = cache.cache_client;
const ctl = control.control_client;

export interface MomentoLocalServerOptions {
  /** Interface to bind. Default 127.0.0.1. */
  readonly host?: string;
  /** Port to bind; 0 (default) picks a free port — read `port` afterwards. */
  readonly port?: number;
  /**
   * If set, every call whose `authorization` metadata differs is rejected
   * with UNAUTHENTICATED (the SDK's AuthenticationError). `forMomentoLocal`
   * sends an empty token, so leave this unset for normal use.
   */
  readonly authToken?: string;
  /** Largest item (key + value bytes) a write may store. @default 1 MB, the service's default limit */
  readonly maxItemSizeBytes?: number;
}

/** Momento's default per-cache limit on an item's size. */
export const MOMENTO_MAX_ITEM_SIZE_BYTES = 1024 * 1024;

/** One stored item. `expiresAt` is epoch ms; Infinity means no expiry. */
interface Item {
  value: Buffer;
  expiresAt: number;
}

/** A failure to answer with a specific gRPC status code. */
class RpcError extends Error {
  constructor(readonly code: grpc.status, message: string, readonly trailer?: Record<string, string>) {
    super(message);
  }
}

function statusOf(e: unknown): Partial<grpc.StatusObject> {
  if (!(e instanceof RpcError)) return { code: grpc.status.INTERNAL, details: (e as Error).message };
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(e.trailer ?? {})) metadata.set(k, v);
  return { code: e.code, details: e.message, metadata };
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Map key for a byte key: 'latin1' maps every byte to one char and back, so
 * distinct byte strings never collide (utf8 would merge invalid sequences).
 */
const keyOf = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1');

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/** ttl_milliseconds 0 (unset) means "no expiry"; the SDK always sends its default TTL. */
const expiryOf = (ttlMs: number): number => (ttlMs > 0 ? Date.now() + ttlMs : Infinity);

const DATA_CALLS = new Set(['Get', 'GetBatch', 'Set', 'SetIf', 'Increment', 'Delete']);

type Handler<Req, Res> = (request: Req, metadata: grpc.Metadata) => Res;

export class MomentoLocalServer {
  /** Binds, starts serving and resolves once the real port is known. */
  public static async start(opts: MomentoLocalServerOptions = {}): Promise<MomentoLocalServer> {
    const server = new MomentoLocalServer(opts);
    await server.bind(opts.port ?? 0);
    return server;
  }

  public readonly host: string;
  /** The bound port (never 0: the SDK would treat port 0 as 8080). */
  public get port(): number {
    return this.boundPort;
  }
  /** RPC counts by method name ('Get', 'SetIf', …), including failed calls; for benchmarks. */
  public readonly rpcCounts: Record<string, number> = {};
  /** Data calls by the cache they name (the engine-side call count of one namespace), including failed calls. */
  public readonly callsByCache = new Map<string, number>();
  /**
   * When set, every data call is appended here with the moment it arrived
   * and the moment it was answered (`performance.now()`): with `delayMs`,
   * calls a client sent together overlap, so the sequential depth of a
   * request can be read off (`sequentialDepth`).
   */
  public callLog?: ServedCall[];
  /**
   * Fault injection for day-two tests: `hang` leaves every data call
   * unanswered (the connection stays up: only the client's deadline ends the
   * call); `delayMs` answers each data call this much later (the call itself
   * is still applied atomically when it arrives); `rateLimited` refuses
   * every data call as the service does past the account's operations rate
   * (RESOURCE_EXHAUSTED with the `err: operations_rate_limit_exceeded`
   * trailer, which the SDK reports as LIMIT_EXCEEDED_ERROR), applying nothing;
   * `rateLimitedKeys` refuses that way only the single-item calls naming one
   * of these keys (a hot item throttled on its own: the slots of a sharded
   * counter skip it).
   */
  public faults: { hang?: boolean; delayMs?: number; rateLimited?: boolean; rateLimitedKeys?: ReadonlySet<string> } = {};

  private readonly server = new grpc.Server();
  private authToken?: string;
  /** cache name → (key → item) */
  private readonly caches = new Map<string, Map<string, Item>>();
  private boundPort = 0;
  private readonly maxItemSizeBytes: number;

  private constructor(opts: MomentoLocalServerOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.authToken = opts.authToken;
    this.maxItemSizeBytes = opts.maxItemSizeBytes ?? MOMENTO_MAX_ITEM_SIZE_BYTES;
    this.server.addService(pb.UnimplementedScsService.definition, {
      Get: this.unary('Get', (req: cache.cache_client._GetRequest, md) => this.get(req, md)),
      GetBatch: this.getBatch.bind(this),
      Set: this.unary('Set', (req: cache.cache_client._SetRequest, md) => this.set(req, md)),
      SetIf: this.unary('SetIf', (req: cache.cache_client._SetIfRequest, md) => this.setIf(req, md)),
      Increment: this.unary('Increment', (req: cache.cache_client._IncrementRequest, md) => this.increment(req, md)),
      Delete: this.unary('Delete', (req: cache.cache_client._DeleteRequest, md) => this.delete(req, md)),
    });
    this.server.addService(ctl.UnimplementedScsControlService.definition, {
      CreateCache: this.unary('CreateCache', (req: control.control_client._CreateCacheRequest) => this.createCache(req)),
      ListCaches: this.unary('ListCaches', () => this.listCaches()),
      DeleteCache: this.unary('DeleteCache', (req: control.control_client._DeleteCacheRequest) => this.deleteCache(req)),
    });
  }

  /** Changes the token the server accepts from now on (a key rotation); undefined = no check. */
  public setAuthToken(token: string | undefined): void {
    this.authToken = token;
  }

  /** The live keys of a cache (utf8), for tests that check nothing else was written; undefined for a missing cache. */
  public keys(cacheName: string): string[] | undefined {
    const store = this.caches.get(cacheName);
    if (!store) return undefined;
    return [...store.keys()].filter((k) => this.lookup(store, k)).map((k) => Buffer.from(k, 'latin1').toString('utf8'));
  }

  public resetRpcCounts(): void {
    for (const name of Object.keys(this.rpcCounts)) delete this.rpcCounts[name];
  }

  /** Graceful shutdown; forced if clients keep calls open for more than 2 s. */
  public async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private async bind(port: number): Promise<void> {
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${this.host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, actual) =>
        err ? reject(err) : resolve(actual),
      );
    });
    // grpc-js ≥ 1.10 starts serving on bind; start() is deprecated and not needed.
  }

  /**
   * Wraps a synchronous handler: counts the call, checks auth, and turns a
   * thrown RpcError into that gRPC status (anything else becomes INTERNAL).
   * The handler itself never awaits, so the whole call is one atomic step.
   */
  private unary<Req, Res>(name: string, handler: Handler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.rpcCounts[name] = (this.rpcCounts[name] ?? 0) + 1;
      const dataCall = DATA_CALLS.has(name);
      const served = dataCall ? this.served(name, call.metadata) : undefined;
      if (dataCall && this.faults.hang) return; // never answered
      const delay = dataCall ? this.faults.delayMs ?? 0 : 0;
      const reply: typeof callback = (...args) => {
        if (served) served.end = performance.now();
        callback(...args);
      };
      const answer: typeof callback = delay > 0 ? (...args) => setTimeout(() => reply(...args), delay) : reply;
      try {
        this.checkAuth(call.metadata);
        if (dataCall) this.checkRate((call.request as { cache_key?: Uint8Array }).cache_key);
        answer(null, handler(call.request, call.metadata));
      } catch (e) {
        answer(statusOf(e));
      }
    };
  }

  /**
   * GetBatch is server-streaming: one `_GetResponse` per requested key, in
   * the request's order (the SDK pairs results with keys by position), read
   * in one event-loop turn like every other call.
   */
  private getBatch(call: grpc.ServerWritableStream<cache.cache_client._GetBatchRequest, cache.cache_client._GetResponse>): void {
    this.rpcCounts.GetBatch = (this.rpcCounts.GetBatch ?? 0) + 1;
    const served = this.served('GetBatch', call.metadata);
    if (this.faults.hang) return;
    let responses: cache.cache_client._GetResponse[];
    try {
      this.checkAuth(call.metadata);
      this.checkRate();
      const store = this.storeFor(call.metadata);
      responses = call.request.items.map((item) => this.getFrom(store, item.cache_key));
    } catch (e) {
      // grpc-js turns an 'error' event on a server stream into the call's status.
      call.emit('error', statusOf(e));
      return;
    }
    const send = () => {
      for (const r of responses) call.write(r);
      call.end();
      if (served) served.end = performance.now();
    };
    const delay = this.faults.delayMs ?? 0;
    if (delay > 0) setTimeout(send, delay);
    else send();
  }

  /** Counts a data call against its cache and logs it (`callLog`); the returned entry gets its end when answered. */
  private served(method: string, metadata: grpc.Metadata): ServedCall | undefined {
    const cacheName = metadata.get('cache')[0]?.toString() ?? '';
    this.callsByCache.set(cacheName, (this.callsByCache.get(cacheName) ?? 0) + 1);
    if (!this.callLog) return undefined;
    const entry: ServedCall = { method, cache: cacheName, start: performance.now() };
    this.callLog.push(entry);
    return entry;
  }

  private checkAuth(metadata: grpc.Metadata): void {
    if (this.authToken === undefined) return;
    // Metadata keys are lower-cased by grpc-js; the SDK sends 'Authorization'.
    const sent = metadata.get('authorization')[0]?.toString() ?? '';
    if (sent !== this.authToken) {
      throw new RpcError(grpc.status.UNAUTHENTICATED, 'Invalid signature');
    }
  }

  private checkRate(key?: Uint8Array): void {
    const limitedKey = key !== undefined && this.faults.rateLimitedKeys?.has(Buffer.from(key).toString('utf8'));
    if (this.faults.rateLimited || limitedKey) {
      throw new RpcError(grpc.status.RESOURCE_EXHAUSTED, 'Request rate limit exceeded for this account', { err: 'operations_rate_limit_exceeded' });
    }
  }

  // ---- data plane --------------------------------------------------------

  /** Data calls name their cache in the `cache` metadata header. */
  private storeFor(metadata: grpc.Metadata): Map<string, Item> {
    const name = metadata.get('cache')[0]?.toString();
    if (!name) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Unable to find cache name in metadata');
    const store = this.caches.get(name);
    // Avoid the phrase "Store with name: … doesn't exist": the SDK would map
    // that to StoreNotFoundError instead of CacheNotFoundError.
    if (!store) throw new RpcError(grpc.status.NOT_FOUND, `Cache not found: ${name}`);
    return store;
  }

  /** Live item for a key; expired items are dropped lazily here. */
  private lookup(store: Map<string, Item>, key: string): Item | undefined {
    const item = store.get(key);
    if (item && item.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return item;
  }

  private get(req: cache.cache_client._GetRequest, metadata: grpc.Metadata) {
    return this.getFrom(this.storeFor(metadata), req.cache_key);
  }

  private getFrom(store: Map<string, Item>, cacheKey: Uint8Array) {
    const item = this.lookup(store, keyOf(cacheKey));
    return item
      ? new pb._GetResponse({ result: pb.ECacheResult.Hit, cache_body: item.value })
      : new pb._GetResponse({ result: pb.ECacheResult.Miss });
  }

  private set(req: cache.cache_client._SetRequest, metadata: grpc.Metadata) {
    const store = this.storeFor(metadata);
    this.checkItemSize(req.cache_key, req.cache_body);
    store.set(keyOf(req.cache_key), { value: Buffer.from(req.cache_body), expiresAt: expiryOf(req.ttl_milliseconds) });
    return new pb._SetResponse({ result: pb.ECacheResult.Ok });
  }

  private setIf(req: cache.cache_client._SetIfRequest, metadata: grpc.Metadata) {
    const store = this.storeFor(metadata);
    this.checkItemSize(req.cache_key, req.cache_body);
    const key = keyOf(req.cache_key);
    const current = this.lookup(store, key)?.value;
    const equals = (check: Uint8Array) => current !== undefined && sameBytes(current, check);
    let ok: boolean;
    switch (req.condition) {
      case 'present': ok = current !== undefined; break;
      case 'absent': ok = current === undefined; break;
      case 'equal': ok = equals(req.equal.value_to_check); break;
      // "not equal" also holds for a missing key (SDK docs: stored if absent or different).
      case 'not_equal': ok = !equals(req.not_equal.value_to_check); break;
      case 'present_and_not_equal':
        ok = current !== undefined && !equals(req.present_and_not_equal.value_to_check);
        break;
      case 'absent_or_equal':
        ok = current === undefined || equals(req.absent_or_equal.value_to_check);
        break;
      default:
        throw new RpcError(grpc.status.INVALID_ARGUMENT, 'SetIf requires a condition');
    }
    if (!ok) return new pb._SetIfResponse({ not_stored: new pb._SetIfResponse._NotStored() });
    store.set(key, { value: Buffer.from(req.cache_body), expiresAt: expiryOf(req.ttl_milliseconds) });
    return new pb._SetIfResponse({ stored: new pb._SetIfResponse._Stored() });
  }

  /**
   * Adds `amount` to the decimal integer stored at the key (a missing key
   * counts as 0) and stores the result as its decimal string, like Momento:
   * `get` afterwards returns e.g. "42". A value that is not an int64 fails
   * with FAILED_PRECONDITION, the status (and message) real Momento answers;
   * the SDK reports it as CacheIncrement.Error / FAILED_PRECONDITION_ERROR.
   *
   * TTL: the request's ttl is applied on every increment (like any other
   * scalar write), not only when the key is created.
   */
  private increment(req: cache.cache_client._IncrementRequest, metadata: grpc.Metadata) {
    const store = this.storeFor(metadata);
    const key = keyOf(req.cache_key);
    const current = this.lookup(store, key);
    let base = 0n;
    if (current) {
      const text = current.value.toString('utf8');
      if (!/^[+-]?\d{1,19}$/.test(text)) {
        throw new RpcError(grpc.status.FAILED_PRECONDITION, 'failed to parse value into long');
      }
      base = BigInt(text);
    }
    if (base < INT64_MIN || base > INT64_MAX) {
      throw new RpcError(grpc.status.FAILED_PRECONDITION, 'failed to parse value into long');
    }
    const next = base + BigInt(req.amount);
    if (next < INT64_MIN || next > INT64_MAX) {
      throw new RpcError(grpc.status.FAILED_PRECONDITION, 'increment would overflow');
    }
    store.set(key, { value: Buffer.from(next.toString(), 'utf8'), expiresAt: expiryOf(req.ttl_milliseconds) });
    return new pb._IncrementResponse({ value: Number(next) });
  }

  /** The service refuses an item over its size limit before looking at the key's current value. */
  private checkItemSize(key: Uint8Array, value: Uint8Array): void {
    if (key.length + value.length > this.maxItemSizeBytes) {
      throw new RpcError(grpc.status.RESOURCE_EXHAUSTED, `item size limit exceeded: ${key.length + value.length} bytes, limit ${this.maxItemSizeBytes}`, { err: 'item_size_limit_exceeded' });
    }
  }

  private delete(req: cache.cache_client._DeleteRequest, metadata: grpc.Metadata) {
    this.storeFor(metadata).delete(keyOf(req.cache_key));
    return new pb._DeleteResponse();
  }

  // ---- control plane -----------------------------------------------------

  private createCache(req: control.control_client._CreateCacheRequest) {
    if (this.caches.has(req.cache_name)) {
      // The SDK turns ALREADY_EXISTS into CreateCache.AlreadyExists (not an error).
      throw new RpcError(grpc.status.ALREADY_EXISTS, `Cache with name: ${req.cache_name} already exists`);
    }
    this.caches.set(req.cache_name, new Map());
    return new ctl._CreateCacheResponse();
  }

  private listCaches() {
    // Limits are left unset: the SDK reads missing limits as 0.
    const caches = [...this.caches.keys()].map((cache_name) => new ctl._Cache({ cache_name }));
    return new ctl._ListCachesResponse({ cache: caches, next_token: '' });
  }

  private deleteCache(req: control.control_client._DeleteCacheRequest) {
    if (!this.caches.delete(req.cache_name)) {
      throw new RpcError(grpc.status.NOT_FOUND, `Cache not found: ${req.cache_name}`);
    }
    return new ctl._DeleteCacheResponse();
  }
}

/** One data call as the server saw it (`MomentoLocalServer.callLog`). */
export interface ServedCall {
  readonly method: string;
  readonly cache: string;
  /** Arrival, `performance.now()`. */
  readonly start: number;
  /** Answer sent; unset while unanswered. */
  end?: number;
}

/**
 * The longest chain of calls in which each one arrived after the previous
 * one was answered: how many calls a request made one after another. Calls
 * sent together overlap at the server (given a `delayMs` longer than the
 * gap between their arrivals) and count once.
 */
export function sequentialDepth(calls: readonly ServedCall[]): number {
  const done = calls.filter((c) => c.end !== undefined).sort((a, b) => a.end! - b.end!);
  const depth: number[] = [];
  done.forEach((c, i) => {
    let before = 0;
    for (let j = 0; j < i; j++) if (done[j].end! <= c.start) before = Math.max(before, depth[j]);
    depth.push(before + 1);
  });
  return Math.max(0, ...depth);
}

/**
 * A local-server credential provider that sends a fixed token, as a real key
 * would, so a server started with `authToken` can accept or reject it.
 */
export class TokenProvider extends MomentoLocalProvider {
  constructor(hostname: string, port: number, private readonly token: string) {
    super({ hostname, port });
  }
  getAuthToken(): string {
    return this.token;
  }
}
