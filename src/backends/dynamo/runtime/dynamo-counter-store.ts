import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { rejectionOf } from '../../../runtime/errors';
import { Deadline } from '../../../runtime/retry';
import { isSharded } from '../../../runtime/shards';
import { ChangeResult, CounterChange, CounterStore } from '../../../runtime/store';
import { DYNAMO_ATTRIBUTES, DYNAMO_DEFAULTS, dynamoBudgetMs } from '../dynamo-env';
import { DynamoConfig } from './dynamo-config';
import { DynamoKeyedChange } from './dynamo-keyed-change';
import { DynamoShardedCounter } from './dynamo-sharded-change';
import { boundCondition, COUNTER_NAMES, counterOf, DynamoTable, NOT_WIDENED, num, Widened, widthOf } from './dynamo-table';

const A = DYNAMO_ATTRIBUTES;

/** The counter and the width, as the unsharded change and read name them (`counter` is a reserved word). */
const WIDENED_NAMES = { ...COUNTER_NAMES, ...NOT_WIDENED.names };

/**
 * DynamoDB. A change without a key is one conditional `UpdateItem ADD`
 * (below); a keyed one is `DynamoKeyedChange`; a change or read of a
 * sharded counter (`shards` > 1) is `DynamoShardedCounter`. How and why:
 * docs/dynamo.md.
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
      // write certainly did not happen (DynamoTable.send).
      maxAttempts: 1,
      // Options object rather than a NodeHttpHandler instance: the SDK builds
      // the handler itself, so the bundle needs no @smithy import of its own.
      requestHandler: {
        connectionTimeout: Math.round(config.requestTimeoutMs * DYNAMO_DEFAULTS.connectTimeoutShare),
        requestTimeout: config.requestTimeoutMs,
        throwOnRequestTimeout: true,
        httpAgent: { keepAlive: true, maxSockets: 50 },
        httpsAgent: { keepAlive: true, maxSockets: 50 },
      },
    }), config);
  }

  private readonly table: DynamoTable;
  private readonly keyed: DynamoKeyedChange;
  /** Sharded counters are implemented (`DynamoShardedCounter`). */
  readonly sharded = true;
  private readonly shardedCounter: DynamoShardedCounter;
  private readonly budgetMs: number;

  constructor(private readonly client: DynamoDBClient, config: DynamoConfig) {
    this.table = new DynamoTable(client, config.tableName);
    this.budgetMs = dynamoBudgetMs(config.requestTimeoutMs);
    this.keyed = new DynamoKeyedChange(this.table, this.budgetMs);
    this.shardedCounter = new DynamoShardedCounter(this.table);
  }

  /**
   * An id this container knows to be sharded (configured, or found widened
   * by another container's sharded writes) goes to the sharded path. An
   * unsharded change learns that its id was widened from the write itself
   * (`NOT_WIDENED` in its condition): no extra call for an id never sharded.
   */
  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    const deadline = Deadline.after(this.budgetMs);
    if (isSharded(change.shards, this.shardedCounter.knownWidth(id))) return this.shardedCounter.apply(id, change, deadline);
    const result = change.idempotency
      ? await this.keyed.apply(id, change, change.idempotency, deadline)
      : await this.applyUnkeyed(id, change, deadline);
    if (!(result instanceof Widened)) return result;
    // Lowered to one shard: slot 0 takes the changes, every slot is still counted (docs/dynamo.md, "Resharding").
    this.shardedCounter.remember(id, result.width);
    return this.shardedCounter.apply(id, change, deadline);
  }

  /**
   * The total: one consistent `GetItem` of the counter item, its width
   * projected too; an id found widened is then read as a sharded one (one
   * `BatchGetItem` more, once per container and id: later reads go to the
   * sharded read directly).
   */
  async read(id: string, shards = 1): Promise<number> {
    const deadline = Deadline.after(this.budgetMs);
    if (isSharded(shards, this.shardedCounter.knownWidth(id))) return this.shardedCounter.read(id, shards, deadline);
    const out = await this.table.send(() => this.client.send(new GetItemCommand({
      TableName: this.table.tableName,
      Key: { [A.ID]: { S: id } },
      ProjectionExpression: '#c, #w',
      ExpressionAttributeNames: WIDENED_NAMES,
      ConsistentRead: true,
    })), deadline);
    const width = widthOf(out.Item);
    if (width === undefined) return counterOf(out.Item) ?? 0;
    this.shardedCounter.remember(id, width);
    return this.shardedCounter.read(id, shards, deadline);
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
      TableName: this.table.tableName,
      Key: { [A.ID]: { S: 'init-phase-dry-run' } },
      UpdateExpression: 'ADD #c :one',
      ExpressionAttributeNames: COUNTER_NAMES,
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

  /**
   * One conditional `UpdateItem ADD`: one round trip, plus one per refusal
   * while a keyed change's transaction holds the item. `Widened` (nothing
   * written) when the item carries a width.
   */
  private async applyUnkeyed(id: string, { by, maximum }: CounterChange, deadline: Deadline): Promise<ChangeResult | Widened> {
    const bound = boundCondition(by, maximum);
    try {
      const out = await this.table.send(() => this.client.send(new UpdateItemCommand({
        TableName: this.table.tableName,
        Key: { [A.ID]: { S: id } },
        UpdateExpression: 'ADD #c :by',
        ConditionExpression: `${NOT_WIDENED.expression} AND ${bound.expression}`,
        ExpressionAttributeNames: WIDENED_NAMES,
        ExpressionAttributeValues: { ':by': num(by), ...bound.values },
        ReturnValues: 'UPDATED_NEW',
        // The rejection carries the current item: no second read for the answer.
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      })), deadline);
      const counter = counterOf(out.Attributes);
      if (counter === undefined) throw new Error('UpdateItem returned no counter attribute');
      return { counter, replayed: false };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      const width = widthOf(err.Item);
      if (width !== undefined) return new Widened(width);
      throw rejectionOf(by, maximum, counterOf(err.Item) ?? 0);
    }
  }
}
