import { ConfigError, CounterModeConfig, Env, readModeConfig } from './config';
import { ContainerStore, StoreFactory } from './container-store';
import { COMMON_ENV, IDEMPOTENCY_DEFAULTS } from '../counter-env';
import { BackendUnavailableError, CounterError, CredentialsRejectedError, FloorReachedError, LimitReachedError } from './errors';
import { errorResponse, HttpResponse, jsonResponse } from './http';
import { RequestLogLine, writeLogLine } from './log';
import { CounterEvent, CounterRequest, parseRequest } from './request';
import { invalidateSecret } from './secrets';
import { FUNCTION_TIMEOUT_MARGIN_MS, secretReadWorstCaseMs } from '../timeouts';
import { BackendName, CounterChange } from './store';

export type { StoreFactory } from './container-store';

/**
 * A Lambda proxy handler: API Gateway event in, HTTP answer out. `close`
 * releases the container's store (local runs and tests; Lambda never calls it).
 */
export type CounterHandler = ((event: CounterEvent, context?: LambdaContextLike) => Promise<HttpResponse>) & {
  close(): Promise<void>;
  /**
   * The init-phase connect (see `connectAtInit`): resolves `true` once the
   * store is created and connected, `false` if that failed (the first
   * request retries) or was not started. Never rejects.
   */
  ready(): Promise<boolean>;
};

/** The part of Lambda's context object the pipeline reads. */
export interface LambdaContextLike {
  getRemainingTimeInMillis?(): number;
}

export interface CounterHandlerOptions {
  readonly backend: BackendName;
  /** Creates the store (and its client). Called once per container, on first use. */
  readonly createStore: StoreFactory;
  /** @default - read from the environment at creation (USE_CONDITIONAL_WRITES, MAX_COUNTER_VALUE) */
  readonly mode?: CounterModeConfig;
  /** @default process.env */
  readonly env?: Env;
  /**
   * Create the store (reading its secret) and open its connection as soon as
   * the handler is created, i.e. in Lambda's init phase, instead of on the
   * first request, which then awaits what is already under way.
   * @default true
   */
  readonly connectAtInit?: boolean;
}

/**
 * The pipeline shared by every backend: parse → store → answer → one log
 * line. The container's store (`ContainerStore`) is created while the
 * module loads, in Lambda's init phase, and reused by every invocation; if
 * that fails nothing is thrown or left unhandled: the next request tries again.
 */
export function createCounterHandler(options: CounterHandlerOptions): CounterHandler {
  const { backend } = options;
  const mode = options.mode ?? readModeConfig(options.env ?? process.env);
  const shards = mode.shards ?? 1;
  const retentionSeconds = mode.idempotencyRetentionSeconds ?? IDEMPOTENCY_DEFAULTS.retentionSeconds;
  const container = new ContainerStore(options.createStore, options.connectAtInit ?? true);

  /**
   * Credential rotation: the store says the datastore rejected its
   * credentials (nothing was applied). Drop the cached secret and the store;
   * retry once on a fresh store when the secret may be re-read now (at most
   * once per SECRET_REFRESH_MIN_INTERVAL_MS) and the function has time left
   * for a second pass; without the time, answer 503 so the client's retry
   * lands on the fresh store.
   */
  const recoverFromRejection = async (err: CredentialsRejectedError, passMs: number, context?: LambdaContextLike): Promise<boolean> => {
    if (!err.secretArn || !invalidateSecret(err.secretArn)) return false;
    await container.close();
    const remaining = context?.getRemainingTimeInMillis?.();
    // The second pass costs a secret read plus about what the first one took.
    if (remaining !== undefined && remaining < passMs + secretReadWorstCaseMs() + FUNCTION_TIMEOUT_MARGIN_MS) {
      throw new BackendUnavailableError('Credentials rejected; secret dropped, no time left to retry in this invocation', { cause: err });
    }
    return true;
  };

  const serve = async (request: CounterRequest, log: RequestLogLine): Promise<HttpResponse> => {
    const s = await container.acquire();
    if (shards > 1 && s.sharded !== true) {
      throw new ConfigError(`${COMMON_ENV.SHARDS}=${shards}, but the ${backend} store does not implement sharded counters`);
    }
    if (request.operation === 'read') {
      const counter = await s.read(request.id, shards);
      log.counter = counter;
      return jsonResponse(200, { id: request.id, counter, backend, ...(shards > 1 ? { shards } : {}) });
    }
    const change: CounterChange = {
      by: request.by,
      ...(mode.conditionalWrites ? { maximum: mode.maxCounterValue } : {}),
      ...(request.requestKey !== undefined ? { idempotency: { key: request.requestKey, retentionSeconds } } : {}),
      ...(shards > 1 ? { shards } : {}),
    };
    const { counter, replayed, shard } = await s.apply(request.id, change);
    // A sharded change knows its slot, not the total (docs/openapi.json).
    if (counter !== undefined) log.counter = counter;
    if (shard !== undefined) log.shard = shard;
    // A replay applied nothing now: the original's line already counted it.
    log.accepted = !replayed;
    if (request.requestKey !== undefined) log.replayed = replayed;
    return jsonResponse(200, {
      id: request.id,
      ...(counter !== undefined ? { counter } : { shards }),
      by: request.by,
      backend,
      useConditionalWrites: mode.conditionalWrites,
      ...(mode.conditionalWrites ? { maxCounterValue: mode.maxCounterValue } : {}),
    }, request.requestKey !== undefined ? { 'Idempotent-Replayed': String(replayed) } : {});
  };

  const handle = async (event: CounterEvent, context?: LambdaContextLike): Promise<HttpResponse> => {
    const started = performance.now();
    let request: CounterRequest | undefined;
    const log: RequestLogLine = { level: 'INFO', backend, accepted: false, statusCode: 200, durationMs: 0 };
    let response: HttpResponse;
    try {
      request = parseRequest(event);
      log.id = request.id;
      log.operation = request.operation;
      if (request.operation === 'increment') log.by = request.by;
      try {
        response = await serve(request, log);
      } catch (err) {
        if (!(err instanceof CredentialsRejectedError && await recoverFromRejection(err, performance.now() - started, context))) throw err;
        log.credentialsRefreshed = true;
        response = await serve(request, log);
      }
    } catch (err) {
      response = errorResponse(err, {
        id: request?.id,
        ...(request?.operation === 'increment' ? { by: request.by } : {}),
        backend,
        useConditionalWrites: mode.conditionalWrites,
      });
      log.statusCode = response.statusCode;
      log.code = err instanceof CounterError ? err.code : 'INTERNAL';
      if (err instanceof LimitReachedError || err instanceof FloorReachedError) {
        if (err.counter !== undefined) log.counter = err.counter;
      } else if (response.statusCode >= 500) {
        log.level = err instanceof BackendUnavailableError ? 'WARN' : 'ERROR';
        log.error = describe(err);
      }
    }
    log.statusCode = response.statusCode;
    log.durationMs = Math.round((performance.now() - started) * 100) / 100;
    writeLogLine(log);
    return response;
  };

  return Object.assign(handle, { close: () => container.close(), ready: () => container.ready() });
}

/** Class and message of an error and its first cause: enough to debug, no stack. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (cause: ${err.cause.name}: ${err.cause.message})` : '';
  return `${err.name}: ${err.message}${cause}`;
}
