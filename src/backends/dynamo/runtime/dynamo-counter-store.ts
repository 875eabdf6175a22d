import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
  UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { CounterStore } from '../../../runtime/store';
import { DYNAMO_ATTRIBUTES, DYNAMO_DEFAULTS } from '../dynamo-env';
import { DynamoConfig } from './dynamo-config';
import { isNotApplied, toDynamoCounterError } from './dynamo-errors';

const RETRY_ATTEMPTS = DYNAMO_DEFAULTS.retryAttempts;

const KEY = DYNAMO_ATTRIBUTES.ID;
const NAMES = { '#c': DYNAMO_ATTRIBUTES.COUNTER };

/**
 * DynamoDB: `UpdateItem ADD` is atomic on the item and creates it when
 * missing, so the first-increment race needs no special case. Conditional
 * mode adds a `ConditionExpression` evaluated atomically with the update.
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

  constructor(private readonly client: DynamoDBClient, private readonly config: DynamoConfig) {}

  async increment(id: string): Promise<number> {
    const out = await this.update({
      TableName: this.config.tableName,
      Key: { [KEY]: { S: id } },
      UpdateExpression: 'ADD #c :one',
      ExpressionAttributeNames: NAMES,
      ExpressionAttributeValues: { ':one': { N: '1' } },
      ReturnValues: 'UPDATED_NEW',
    });
    return out;
  }

  async incrementBelow(id: string, maximum: number): Promise<number> {
    try {
      return await this.update({
        TableName: this.config.tableName,
        Key: { [KEY]: { S: id } },
        UpdateExpression: 'ADD #c :one',
        ConditionExpression: 'attribute_not_exists(#c) OR #c < :max',
        ExpressionAttributeNames: NAMES,
        ExpressionAttributeValues: { ':one': { N: '1' }, ':max': { N: String(maximum) } },
        ReturnValues: 'UPDATED_NEW',
        // The rejection carries the current item: no second read for the 409.
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      });
    } catch (err) {
      throw toDynamoCounterError(err, maximum);
    }
  }

  async read(id: string): Promise<number> {
    const out = await this.send(() => this.client.send(new GetItemCommand({
      TableName: this.config.tableName,
      Key: { [KEY]: { S: id } },
      ProjectionExpression: '#c',
      ExpressionAttributeNames: NAMES,
      ConsistentRead: true,
    })));
    const n = out.Item?.[DYNAMO_ATTRIBUTES.COUNTER]?.N;
    return n === undefined ? 0 : Number(n);
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
      Key: { [KEY]: { S: 'init-phase-dry-run' } },
      UpdateExpression: 'ADD #c :one',
      ExpressionAttributeNames: NAMES,
      ExpressionAttributeValues: { ':one': { N: '1' } },
      ReturnValues: 'UPDATED_NEW',
    });
    const answer = new TextEncoder().encode(`{"Attributes":{"${DYNAMO_ATTRIBUTES.COUNTER}":{"N":"0"}}}`);
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

  private async update(input: UpdateItemCommandInput): Promise<number> {
    const out = await this.send(() => this.client.send(new UpdateItemCommand(input)));
    const n = out.Attributes?.[DYNAMO_ATTRIBUTES.COUNTER]?.N;
    if (n === undefined) throw new Error('UpdateItem returned no counter attribute');
    return Number(n);
  }

  /**
   * Sends with a small retry budget for the cases where the request was
   * certainly not applied (connection refused, throttled), and turns
   * "DynamoDB cannot answer" into a 503. A timeout is *not* retried: the
   * write may have happened, so the client decides (503 + Retry-After).
   */
  private async send<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        // The condition's rejection is an answer, mapped by the caller.
        if (err instanceof ConditionalCheckFailedException) throw err;
        if (isNotApplied(err) && attempt < RETRY_ATTEMPTS) {
          await sleep(DYNAMO_DEFAULTS.retryBaseMs * 2 ** attempt * (0.5 + Math.random()));
          continue;
        }
        throw toDynamoCounterError(err);
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
