/**
 * The scale model of DynamoDB's per-partition write limit, for a proxy in
 * front of DynamoDB Local (which never throttles): a token bucket per
 * partition key value, refilled at `unitsPerSecond` write units and holding
 * at most `burstSeconds` of them, as DynamoDB documents its capacity
 * ("token bucket" refilled every second; a partition sustains about 1,000
 * write units per second, past which it throttles with the reason
 * `TableWriteKeyRangeThroughputExceeded`). Scaled down so that a 2-core
 * machine can push one id past it: 100 units per second per key, say.
 *
 * A write costs ceil(item KB) units, 1 for a counter's small items; in a
 * `TransactWriteItems` every item costs 2 (DynamoDB's two-phase commit
 * reads and writes each). A write whose condition fails still costs its
 * units, as on DynamoDB. Reads are not limited (a partition's read limit is
 * three times its write limit, and the tests never come near it).
 */

/** What a bucket is measured against; injected in tests so that refills are exact. */
export type Clock = () => number;

/** One token bucket: `ratePerSecond` tokens per second, at most `capacity` held, full at the start. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(readonly ratePerSecond: number, readonly capacity: number, private readonly clock: Clock = Date.now) {
    this.tokens = capacity;
    this.last = clock();
  }

  /** The tokens held now (refilled for the time passed since the last look). */
  available(): number {
    const now = this.clock();
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
      this.last = now;
    }
    return this.tokens;
  }

  /** Takes `units` tokens when that many are held (true); otherwise takes none (false). */
  take(units: number): boolean {
    if (this.available() + 1e-9 < units) return false;
    this.tokens -= units;
    return true;
  }

  /** Milliseconds until `units` tokens are held (0: now). */
  waitMs(units: number): number {
    const missing = units - this.available();
    return missing <= 0 ? 0 : Math.ceil((missing / this.ratePerSecond) * 1000);
  }
}

export interface WriteLimitOptions {
  /** Write units per second per partition key value (DynamoDB: about 1,000). */
  readonly unitsPerSecond: number;
  /** Seconds of unused units a key's bucket holds. @default 1 */
  readonly burstSeconds?: number;
  /** The table's partition key attribute. @default 'id' */
  readonly partitionKey?: string;
  readonly clock?: Clock;
}

/** One write a call makes: the partition key value (as JSON) and its units. */
export interface KeyedWrite {
  readonly key: string;
  readonly units: number;
}

/** The partition key value a write action names (its `Key`, or its `Item`'s key attribute). */
function keyOf(action: any, partitionKey: string): string | undefined {
  const value = action?.Key?.[partitionKey] ?? action?.Item?.[partitionKey];
  return value === undefined ? undefined : `${action.TableName}\u0000${JSON.stringify(value)}`;
}

/**
 * The writes of one DynamoDB call, per partition key value, with their
 * units: `PutItem`, `UpdateItem`, `DeleteItem` 1 each; `BatchWriteItem` 1
 * per request; `TransactWriteItems` 2 per item (ConditionCheck included).
 * Reads and everything else: none.
 */
export function writesOf(operation: string, input: any, partitionKey = 'id'): KeyedWrite[] {
  const one = (action: any, units: number): KeyedWrite[] => {
    const key = keyOf(action, partitionKey);
    return key === undefined ? [] : [{ key, units }];
  };
  switch (operation) {
    case 'PutItem':
    case 'UpdateItem':
    case 'DeleteItem':
      return one(input, 1);
    case 'TransactWriteItems':
      return (input?.TransactItems ?? []).flatMap((t: any) => one(t.Update ?? t.Put ?? t.Delete ?? t.ConditionCheck, 2));
    case 'BatchWriteItem':
      return Object.entries(input?.RequestItems ?? {}).flatMap(([TableName, requests]) => (requests as any[]).flatMap((r) =>
        one({ TableName, Key: r.DeleteRequest?.Key, Item: r.PutRequest?.Item }, 1)));
    default:
      return [];
  }
}

/**
 * Per-key token buckets. `admit` takes a call's units from every key it
 * writes, all or none (a call DynamoDB throttles writes nothing and, for
 * the model, costs nothing), and names the keys that were short.
 */
export class WriteRateLimit {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly clock: Clock;
  readonly partitionKey: string;

  constructor(readonly options: WriteLimitOptions) {
    if (!(options.unitsPerSecond > 0)) throw new RangeError('unitsPerSecond must be positive');
    this.clock = options.clock ?? Date.now;
    this.partitionKey = options.partitionKey ?? 'id';
  }

  private bucket(key: string): TokenBucket {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      const rate = this.options.unitsPerSecond;
      bucket = new TokenBucket(rate, rate * (this.options.burstSeconds ?? 1), this.clock);
      this.buckets.set(key, bucket);
    }
    return bucket;
  }

  /** The keys (of `writes`) whose buckets could not pay; empty when the call was admitted and paid. */
  admit(writes: readonly KeyedWrite[]): Set<string> {
    const owed = new Map<string, number>();
    for (const w of writes) owed.set(w.key, (owed.get(w.key) ?? 0) + w.units);
    const short = new Set([...owed].filter(([key, units]) => this.bucket(key).available() + 1e-9 < units).map(([key]) => key));
    if (short.size === 0) for (const [key, units] of owed) this.bucket(key).take(units);
    return short;
  }
}

const ERROR_PREFIX = 'com.amazonaws.dynamodb.v20120810#';
/** DynamoDB's throttling reason for a partition key past its write rate. */
export const KEY_RANGE_WRITE_REASON = 'TableWriteKeyRangeThroughputExceeded';

/**
 * DynamoDB's answer to a throttled call (HTTP 400, JSON 1.0 error): a
 * single-item write gets `ProvisionedThroughputExceededException` with its
 * `ThrottlingReasons`; a transaction is cancelled with the reason
 * `ThrottlingError` for each throttled item (`None` for the others).
 */
export function throttledAnswer(operation: string, input: any, short: ReadonlySet<string>, partitionKey = 'id'): unknown {
  const firstAction = input?.TransactItems?.[0] ? Object.values(input.TransactItems[0])[0] as any : undefined;
  const tableName = input?.TableName ?? Object.keys(input?.RequestItems ?? {})[0] ?? firstAction?.TableName;
  const resource = `arn:aws:dynamodb:us-east-1:000000000000:table/${tableName ?? 'unknown'}`;
  if (operation === 'TransactWriteItems') {
    const reasons = (input?.TransactItems ?? []).map((t: any) => {
      const key = keyOf(t.Update ?? t.Put ?? t.Delete ?? t.ConditionCheck, partitionKey);
      return key !== undefined && short.has(key)
        ? { Code: 'ThrottlingError', Message: `Throughput exceeds the current capacity for the item's partition (${KEY_RANGE_WRITE_REASON})` }
        : { Code: 'None' };
    });
    return {
      __type: `${ERROR_PREFIX}TransactionCanceledException`,
      Message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r: { Code: string }) => r.Code).join(', ')}]`,
      CancellationReasons: reasons,
    };
  }
  return {
    __type: `${ERROR_PREFIX}ProvisionedThroughputExceededException`,
    message: `The level of configured provisioned throughput for the table was exceeded (${KEY_RANGE_WRITE_REASON}). Consider increasing your provisioning level with the UpdateTable API.`,
    ThrottlingReasons: [{ reason: KEY_RANGE_WRITE_REASON, resource }],
  };
}
