import {
  AttributeValue,
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';
import { DYNAMO_ATTRIBUTES, DYNAMO_DEFAULTS, DYNAMO_KEYS, dynamoKeyedBudgetMs } from '../dynamo-env';
import { DynamoConfig } from './dynamo-config';
import { isNotApplied, isRetryableReason, toDynamoCounterError } from './dynamo-errors';

type Item = Record<string, AttributeValue>;

const RETRY_ATTEMPTS = DYNAMO_DEFAULTS.retryAttempts;
const A = DYNAMO_ATTRIBUTES;
const NAMES = { '#c': A.COUNTER };

function num(n: number | string): AttributeValue {
  return { N: String(n) };
}

/** The counter attribute of an item as a number; undefined when absent. */
function counterOf(item: Item | undefined): number | undefined {
  const n = item?.[A.COUNTER]?.N;
  return n === undefined ? undefined : Number(n);
}

/**
 * The condition under which a change `by` may be applied, evaluated by
 * DynamoDB on the stored value: `lowest ≤ counter ≤ highest` from
 * `allowedPrevious` (conditional bounds, or the safe integers). A missing
 * counter reads 0, so `attribute_not_exists` joins in only when 0 is an
 * allowed previous value; otherwise a missing counter fails the condition.
 */
function boundCondition(by: number, maximum: number | undefined): { expression: string; values: Item } {
  const { lowest, highest } = allowedPrevious(by, maximum);
  const range = '#c BETWEEN :lo AND :hi';
  return {
    expression: zeroAllowed(by, maximum) ? `attribute_not_exists(#c) OR ${range}` : range,
    values: { ':lo': num(lowest), ':hi': num(highest) },
  };
}

/** The partition key of a key record: a control character first, so it is never a counter id. */
function recordIdOf(key: string): string {
  return DYNAMO_KEYS.RECORD_PREFIX + key;
}

/** Name of the marker attribute a keyed change leaves on its counter item. */
export function markerName(key: string, expiresAtMs: number): string {
  return DYNAMO_KEYS.MARKER_PREFIX + key + DYNAMO_KEYS.MARKER_SEPARATOR + expiresAtMs.toString(36);
}

/** The key record expiry a marker name carries; undefined for any other attribute. */
export function markerExpiry(name: string): number | undefined {
  if (!name.startsWith(DYNAMO_KEYS.MARKER_PREFIX)) return undefined;
  const at = name.lastIndexOf(DYNAMO_KEYS.MARKER_SEPARATOR);
  if (at < DYNAMO_KEYS.MARKER_PREFIX.length) return undefined;
  const ms = parseInt(name.slice(at + 1), 36);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Markers on `item` whose key expired more than the sweep grace ago (never `keep`). */
function staleMarkers(item: Item, keep: string, now: number): string[] {
  const stale: string[] = [];
  for (const name of Object.keys(item)) {
    if (name === keep) continue;
    const expiry = markerExpiry(name);
    if (expiry !== undefined && expiry + DYNAMO_DEFAULTS.markerSweepGraceMs < now) stale.push(name);
    if (stale.length >= DYNAMO_DEFAULTS.markerSweepBatch) break;
  }
  return stale;
}

/**
 * DynamoDB.
 *
 * Unkeyed: one `UpdateItem` — `ADD #c :by` under a `ConditionExpression`
 * that DynamoDB evaluates atomically with the update (the bounds, or the
 * safe-integer range). `ADD` creates a missing item, so the first change of
 * an id needs no special case. A failed condition is the answer (409 or
 * 400), with the current value from `ReturnValuesOnConditionCheckFailure`.
 *
 * Keyed (`Idempotency-Key`): one `TransactWriteItems` applies the change and
 * records the key, all or nothing:
 *
 *   Update counter: SET #c = if_not_exists(#c, 0) + by,
 *                       #marker = if_not_exists(#c, 0) + by   (bound condition)
 *   Put key record {boundId, by, expiresAt}: attribute_not_exists(id) OR expired
 *
 * Both right-hand sides read the value *before* the update, so the marker
 * holds the value this change produced. A transaction returns no values, so
 * a consistent `GetItem` of the counter then reads the marker; the value is
 * copied into the key record (`result`) and only then is the marker removed.
 * A later request with the key finds the record: `result`, or while that is
 * not written yet, the marker. No step after the transaction changes the
 * counter, so a crash anywhere after it loses nothing and counts nothing
 * twice. A transaction that a concurrent write cancelled applied nothing and
 * is sent again within a time budget (503 past it).
 */
export class DynamoCounterStore implements CounterStore {
  /** Builds the container's client (no request is sent until `connect`). */
  static async create(config: DynamoConfig): Promise<DynamoCounterStore> {
    return new DynamoCounterStore(new DynamoDBClient({
      region: config.region ?? 'us-east-1',
      endpoint: config.endpoint,
      ...(config.endpointCredentials ? { credentials: config.endpointCredentials } : {}),
      // UpdateItem ADD is not idempotent: an SDK retry after a timeout could
      // count one request twice. The store retries itself, only when the
      // write certainly did not happen (see `send`).
      maxAttempts: 1,
      // Options object rather than a NodeHttpHandler instance: the SDK builds
      // the handler itself, so the bundle needs no @smithy import of its own.
      requestHandler: {
        connectionTimeout: DYNAMO_DEFAULTS.connectTimeoutMs,
        requestTimeout: config.requestTimeoutMs,
        throwOnRequestTimeout: true,
        httpAgent: { keepAlive: true, maxSockets: 50 },
        httpsAgent: { keepAlive: true, maxSockets: 50 },
      },
    }), config);
  }

  private readonly keyedBudgetMs: number;

  constructor(private readonly client: DynamoDBClient, private readonly config: DynamoConfig) {
    this.keyedBudgetMs = dynamoKeyedBudgetMs(config.requestTimeoutMs);
  }

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    if (change.idempotency) return this.applyKeyed(id, change, change.idempotency);
    return { counter: await this.applyUnkeyed(id, change), replayed: false };
  }

  async read(id: string): Promise<number> {
    const out = await this.send(() => this.client.send(new GetItemCommand({
      TableName: this.config.tableName,
      Key: { [A.ID]: { S: id } },
      ProjectionExpression: '#c',
      ExpressionAttributeNames: NAMES,
      ConsistentRead: true,
    })));
    return counterOf(out.Item) ?? 0;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /**
   * Init phase. DynamoDB has no connection to open without a request against
   * the table, so none is sent; but the SDK's first-call work (middleware
   * stack, endpoint rules, credentials, signing, response parsing: about
   * 20 ms, 3 ms on later calls) runs now, on an UpdateItem that a last
   * middleware answers locally after signing and before the HTTP handler.
   * The table is not touched.
   */
  async connect(): Promise<void> {
    const command = new UpdateItemCommand({
      TableName: this.config.tableName,
      Key: { [A.ID]: { S: 'init-phase-dry-run' } },
      UpdateExpression: 'ADD #c :one',
      ExpressionAttributeNames: NAMES,
      ExpressionAttributeValues: { ':one': { N: '1' } },
      ReturnValues: 'UPDATED_NEW',
    });
    const answer = new TextEncoder().encode(`{"Attributes":{"${A.COUNTER}":{"N":"0"}}}`);
    command.middlewareStack.add(
      () => async () => ({
        response: { statusCode: 200, reason: 'OK', headers: { 'content-type': 'application/x-amz-json-1.0' }, body: answer },
        output: {},
      }) as never,
      // Innermost: after the deserializer, so parsing is warmed up too.
      { step: 'deserialize', priority: 'low', name: 'initPhaseDryRun' },
    );
    await this.client.send(command);
  }

  /** One conditional `UpdateItem ADD`: one round trip. */
  private async applyUnkeyed(id: string, { by, maximum }: CounterChange): Promise<number> {
    const bound = boundCondition(by, maximum);
    try {
      const out = await this.send(() => this.client.send(new UpdateItemCommand({
        TableName: this.config.tableName,
        Key: { [A.ID]: { S: id } },
        UpdateExpression: 'ADD #c :by',
        ConditionExpression: bound.expression,
        ExpressionAttributeNames: NAMES,
        ExpressionAttributeValues: { ':by': num(by), ...bound.values },
        ReturnValues: 'UPDATED_NEW',
        // The rejection carries the current item: no second read for the answer.
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      })));
      const counter = counterOf(out.Attributes);
      if (counter === undefined) throw new Error('UpdateItem returned no counter attribute');
      return counter;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw rejectionOf(by, maximum, counterOf(err.Item) ?? 0);
      throw err;
    }
  }

  /** The transaction, then the read of its marker (see the class comment). */
  private async applyKeyed(id: string, { by, maximum }: CounterChange, idempotency: IdempotencyOptions): Promise<ChangeResult> {
    const deadline = Date.now() + this.keyedBudgetMs;
    const recordId = recordIdOf(idempotency.key);
    const bound = boundCondition(by, maximum);
    for (let attempt = 1; ; attempt++) {
      const now = Date.now();
      if (attempt > 1 && now >= deadline) throw this.outOfBudget(attempt - 1);
      const expiresAtMs = now + idempotency.retentionSeconds * 1000;
      const marker = markerName(idempotency.key, expiresAtMs);
      try {
        await this.send(() => this.client.send(new TransactWriteItemsCommand({
          TransactItems: [
            {
              Update: {
                TableName: this.config.tableName,
                Key: { [A.ID]: { S: id } },
                // Every action reads the item as it was before the update:
                // the marker gets the value this change produces.
                UpdateExpression: 'SET #c = if_not_exists(#c, :zero) + :by, #m = if_not_exists(#c, :zero) + :by',
                ConditionExpression: bound.expression,
                ExpressionAttributeNames: { ...NAMES, '#m': marker },
                ExpressionAttributeValues: { ':zero': num(0), ':by': num(by), ...bound.values },
                ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
              },
            },
            {
              Put: {
                TableName: this.config.tableName,
                Item: {
                  [A.ID]: { S: recordId },
                  [A.BOUND_ID]: { S: id },
                  [A.BY]: num(by),
                  [A.EXPIRES_AT]: num(Math.ceil(expiresAtMs / 1000)),
                  [A.EXPIRES_AT_MS]: num(expiresAtMs),
                },
                // A record past its retention is a key seen for the first time.
                ConditionExpression: 'attribute_not_exists(#id) OR #e < :now',
                ExpressionAttributeNames: { '#id': A.ID, '#e': A.EXPIRES_AT_MS },
                ExpressionAttributeValues: { ':now': num(now) },
                ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
              },
            },
          ],
        })), deadline);
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw err;
        const [counterReason, keyReason] = err.CancellationReasons ?? [];
        // The key first: a recorded key replays even when the counter is now out of bounds.
        if (keyReason?.Code === 'ConditionalCheckFailed') {
          const record = keyReason.Item ?? await this.getItem(recordId, deadline);
          const outcome = record && await this.replay(id, by, idempotency.key, record, deadline);
          if (outcome) return outcome;
          continue; // the record expired meanwhile: the key is new again
        }
        if (isRetryableReason(counterReason) || isRetryableReason(keyReason)) {
          await this.backOff(attempt, deadline);
          continue;
        }
        if (counterReason?.Code === 'ConditionalCheckFailed') {
          const replayed = await this.recordedAfterAll(id, by, idempotency.key, deadline);
          if (replayed) return replayed;
          throw rejectionOf(by, maximum, counterOf(counterReason.Item) ?? 0);
        }
        throw new Error(`DynamoDB cancelled the transaction: ${(err.CancellationReasons ?? []).map((r) => r.Code).join(', ')}`, { cause: err });
      }
      // Applied, and the key recorded with it. Learn the value this change produced.
      return { counter: await this.resolve(id, idempotency.key, expiresAtMs, deadline), replayed: false };
    }
  }

  /**
   * A live key record found: the same (id, by) replays the value its change
   * produced, anything else is a reuse (422). Undefined when the record has
   * expired (the caller then treats the key as new).
   */
  private async replay(id: string, by: number, key: string, record: Item, deadline: number): Promise<ChangeResult | undefined> {
    const expiresAtMs = Number(record[A.EXPIRES_AT_MS]?.N);
    if (!(expiresAtMs >= Date.now())) return undefined;
    const binding = { id: record[A.BOUND_ID]?.S ?? '', by: Number(record[A.BY]?.N) };
    if (!sameBinding(binding, id, by)) throw new IdempotencyKeyReusedError();
    const result = record[A.RESULT]?.N;
    if (result !== undefined) return { counter: Number(result), replayed: true };
    // Its change is applied, its value still only in the marker (in flight, or its request died).
    return { counter: await this.resolve(id, key, expiresAtMs, deadline), replayed: true };
  }

  /**
   * The counter was out of bounds when the transaction was evaluated, and the
   * key was not recorded then (its cancellation reason said so). The key is
   * read once more anyway, so the answer does not rest on how DynamoDB
   * reports a cancelled transaction: recorded now, it was recorded by a
   * concurrent request with the same key, and this one replays it (or is a
   * reuse); still absent, it was absent when the counter was out of bounds
   * too (a key is never removed within its retention), and the rejection
   * stands (undefined). Past the deadline the reasons are taken as they are.
   */
  private async recordedAfterAll(id: string, by: number, key: string, deadline: number): Promise<ChangeResult | undefined> {
    if (Date.now() >= deadline) return undefined;
    const record = await this.getItem(recordIdOf(key), deadline);
    return record && this.replay(id, by, key, record, deadline);
  }

  /**
   * The value a recorded keyed change produced: the marker on the counter
   * item, else (after the marker was removed) the key record's `result`.
   * Finding the marker, it copies the value into the record and then removes
   * the marker (and markers left behind by changes that never finished).
   */
  private async resolve(id: string, key: string, expiresAtMs: number, deadline: number): Promise<number> {
    const recordId = recordIdOf(key);
    const marker = markerName(key, expiresAtMs);
    const unread = () => new BackendUnavailableError(
      'DynamoDB: the keyed change is applied and recorded, but its value could not be read in time; the same Idempotency-Key answers it',
      { retryAfterSeconds: 1 },
    );
    for (let round = 1; round <= 3; round++) {
      if (Date.now() >= deadline) break;
      const item = await this.getItem(id, deadline);
      const value = item?.[marker]?.N;
      if (value !== undefined) {
        await this.finish({ id, recordId, marker, value, expiresAtMs, stale: staleMarkers(item!, marker, Date.now()) }, deadline);
        return Number(value);
      }
      if (Date.now() >= deadline) break;
      const record = await this.getItem(recordId, deadline);
      if (Number(record?.[A.EXPIRES_AT_MS]?.N) === expiresAtMs && record?.[A.RESULT]?.N !== undefined) return Number(record[A.RESULT].N);
      // Neither: not expected while the key is retained. Look again shortly.
      if (round < 3) await this.backOff(round, deadline, unread);
    }
    throw unread();
  }

  /**
   * Copies the value into the key record, then removes the marker (and any
   * stale ones): in that order, so that a record without `result` always has
   * its marker. A keyed change answers 200 only once both are done; if
   * either fails (or the budget is spent) it answers 503 although the change
   * is applied, and the client's retry with the same key replays the value
   * and finishes the tidying up.
   */
  private async finish(found: FoundMarker, deadline: number): Promise<void> {
    const { id, recordId, marker, value, expiresAtMs, stale } = found;
    const unfinished = () => new BackendUnavailableError(
      'DynamoDB: the keyed change is applied and recorded, but its key record could not be completed in time; the same Idempotency-Key answers it',
      { retryAfterSeconds: 1 },
    );
    // A failed condition: the record's retention window ended and the key was
    // used anew (its result is not ours to write), or the counter item was
    // deleted (nothing to remove). Nothing left to do either way.
    const ignoreCondition = (err: unknown) => {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    };
    if (Date.now() >= deadline) throw unfinished();
    await this.send(() => this.client.send(new UpdateItemCommand({
      TableName: this.config.tableName,
      Key: { [A.ID]: { S: recordId } },
      UpdateExpression: 'SET #r = :v',
      ConditionExpression: '#e = :e',
      ExpressionAttributeNames: { '#r': A.RESULT, '#e': A.EXPIRES_AT_MS },
      ExpressionAttributeValues: { ':v': { N: value }, ':e': num(expiresAtMs) },
    })), deadline).catch(ignoreCondition);
    if (Date.now() >= deadline) throw unfinished();
    const names: Record<string, string> = {};
    [marker, ...stale].forEach((name, i) => { names[`#m${i}`] = name; });
    await this.send(() => this.client.send(new UpdateItemCommand({
      TableName: this.config.tableName,
      Key: { [A.ID]: { S: id } },
      UpdateExpression: `REMOVE ${Object.keys(names).join(', ')}`,
      // Never create an item that someone deleted meanwhile.
      ConditionExpression: 'attribute_exists(#id)',
      ExpressionAttributeNames: { ...names, '#id': A.ID },
    })), deadline).catch(ignoreCondition);
  }

  private async getItem(id: string, deadline: number): Promise<Item | undefined> {
    const out = await this.send(() => this.client.send(new GetItemCommand({
      TableName: this.config.tableName,
      Key: { [A.ID]: { S: id } },
      ConsistentRead: true,
    })), deadline);
    return out.Item;
  }

  /**
   * Jittered exponential back-off (0 to 2^attempt ms, at most 32); past the
   * deadline it throws instead: by default the 503 of a transaction that was
   * never applied.
   */
  private async backOff(attempt: number, deadline: number, expired: () => Error = () => this.outOfBudget(attempt)): Promise<void> {
    const delay = Math.random() * Math.min(DYNAMO_DEFAULTS.conflictBackoffCapMs, 2 ** attempt);
    if (Date.now() + delay >= deadline) throw expired();
    await sleep(delay);
  }

  private outOfBudget(attempts: number): BackendUnavailableError {
    return new BackendUnavailableError(
      `DynamoDB: a keyed change was cancelled by concurrent writes ${attempts} time(s) within its ${this.keyedBudgetMs} ms budget; nothing was applied`,
      { retryAfterSeconds: 1 },
    );
  }

  /**
   * Sends with a small retry budget for the cases where the request was
   * certainly not applied (connection refused, throttled, a transaction
   * conflict), and turns "DynamoDB cannot answer" into a 503. A timeout is
   * *not* retried: the write may have happened, so the client decides (503 +
   * Retry-After). With a deadline (keyed changes), no retry starts past it.
   */
  private async send<T>(call: () => Promise<T>, deadline?: number): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        // A condition's rejection or a cancelled transaction is an answer, mapped by the caller.
        if (err instanceof ConditionalCheckFailedException || err instanceof TransactionCanceledException) throw err;
        if (isNotApplied(err) && attempt < RETRY_ATTEMPTS) {
          const delay = DYNAMO_DEFAULTS.retryBaseMs * 2 ** attempt * (0.5 + Math.random());
          if (deadline === undefined || Date.now() + delay < deadline) {
            await sleep(delay);
            continue;
          }
        }
        throw toDynamoCounterError(err);
      }
    }
  }
}

/** A keyed change's marker, read from its counter item. */
interface FoundMarker {
  readonly id: string;
  readonly recordId: string;
  readonly marker: string;
  /** The marker's value: what the change produced. */
  readonly value: string;
  /** The key record's `expiresAtMs`: which retention window of the key. */
  readonly expiresAtMs: number;
  /** Left-over markers to remove at the same time. */
  readonly stale: readonly string[];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
