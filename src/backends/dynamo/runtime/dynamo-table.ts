import {
  AttributeValue,
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError } from '../../../runtime/errors';
import { Backoff, Deadline, retry } from '../../../runtime/retry';
import { allowedPrevious, zeroAllowed } from '../../../runtime/store';
import { DYNAMO_ATTRIBUTES, DYNAMO_DEFAULTS } from '../dynamo-env';
import { isConflict, isNotApplied, isThrottled, toDynamoCounterError } from './dynamo-errors';

export type Item = Record<string, AttributeValue>;

const A = DYNAMO_ATTRIBUTES;

/** `#c` is how every expression names the counter attribute (`counter` is a reserved word). */
export const COUNTER_NAMES = { '#c': A.COUNTER };

export function num(n: number | string): AttributeValue {
  return { N: String(n) };
}

/** The counter attribute of an item as a number; undefined when absent. */
export function counterOf(item: Item | undefined): number | undefined {
  const n = item?.[A.COUNTER]?.N;
  return n === undefined ? undefined : Number(n);
}

/**
 * The width on a counter item (slot 0): present once the id was written
 * sharded (docs/dynamo.md, "Resharding"); undefined on an item never sharded.
 */
export function widthOf(item: Item | undefined): number | undefined {
  const n = item?.[A.WIDTH]?.N;
  return n === undefined ? undefined : Number(n);
}

/**
 * What an unsharded change answers instead of applying itself when its
 * counter item turned out to carry a width: the id was written sharded, so
 * slot 0 is not the total, and the change belongs to the sharded path
 * (`DynamoShardedCounter`). Nothing was written.
 */
export class Widened {
  constructor(readonly width: number) {}
}

/**
 * The condition every unsharded write of a counter item carries besides its
 * own: the item was never written sharded. It costs no call; a write that
 * fails it returns the item (`ALL_OLD`), whose width routes the change.
 */
export const NOT_WIDENED = { expression: 'attribute_not_exists(#w)', names: { '#w': A.WIDTH } } as const;

export interface BoundCondition {
  readonly expression: string;
  readonly values: Item;
  holds(item: Item | undefined): boolean;
}

/**
 * The condition under which a change `by` may be applied, evaluated by
 * DynamoDB on the stored value: `lowest ≤ counter ≤ highest` from
 * `allowedPrevious` (conditional bounds, or the safe integers). A missing
 * counter reads 0, so `attribute_not_exists` joins in only when 0 is an
 * allowed previous value; otherwise a missing counter fails the condition.
 * `holds` evaluates the same condition on an item DynamoDB returned.
 */
export function boundCondition(by: number, maximum: number | undefined): BoundCondition {
  const { lowest, highest } = allowedPrevious(by, maximum);
  const range = '#c BETWEEN :lo AND :hi';
  const zero = zeroAllowed(by, maximum);
  return {
    expression: zero ? `(attribute_not_exists(#c) OR ${range})` : range,
    values: { ':lo': num(lowest), ':hi': num(highest) },
    holds(item) {
      const counter = counterOf(item);
      return counter === undefined ? zero : lowest <= counter && counter <= highest;
    },
  };
}

/**
 * Back-off of a call DynamoDB throttled or whose connection was refused:
 * full jitter below 1.5 × `retryBaseMs` × 2^n, so the longest waits are the
 * ones `dynamoWorstCase` adds up.
 */
const THROTTLED_BACKOFF: Backoff = { baseMs: 1.5 * DYNAMO_DEFAULTS.retryBaseMs, capMs: Infinity };
/**
 * Back-off of a write refused, or a transaction cancelled, because another
 * transaction held the item: DynamoDB holds an item for the few
 * milliseconds a transaction takes, so the waits stay short (0–2, 0–4, …
 * 0–32 ms).
 */
export const CONFLICT_BACKOFF: Backoff = { baseMs: 1, capMs: DYNAMO_DEFAULTS.conflictBackoffCapMs };

/**
 * The counter table as both change paths use it: one client, one table, and
 * the rule for sending a call (below).
 */
export class DynamoTable {
  constructor(readonly client: DynamoDBClient, readonly tableName: string) {}

  /**
   * Sends a call, retrying it only where DynamoDB certainly did not apply it,
   * and turns "DynamoDB cannot answer" into a 503:
   *
   * - throttled or refused (`isNotApplied`): up to `retryAttempts` attempts
   *   (or `throttledAttempts`), then throttling is a `ThrottledError` (429);
   * - refused because a transaction holds the item
   *   (`TransactionConflictException`, "an ongoing transaction for the
   *   item"): again and again after short back-offs, as long as the request's
   *   deadline allows; a hot id's unkeyed changes wait out its keyed ones
   *   instead of answering 503;
   * - a timeout is never retried: the write may have happened, so the client
   *   decides (503 + Retry-After).
   *
   * No attempt starts, and no back-off ends, past the deadline. A condition's
   * rejection and a cancelled transaction are answers, thrown as they are for
   * the caller to read.
   */
  async send<T>(call: () => Promise<T>, deadline: Deadline, options: { throttledAttempts?: number } = {}): Promise<T> {
    try {
      return await retry(() => retry(call, {
        backoff: THROTTLED_BACKOFF,
        maxAttempts: DYNAMO_DEFAULTS.retryAttempts,
        deadline,
        // A sharded change sends a throttled slot's write `throttledAttempts`
        // times (once): it tries another slot instead.
        retryable: (err, attempt) => isNotApplied(err) && !isConflict(err)
          && !(isThrottled(err) && attempt >= (options.throttledAttempts ?? Infinity)),
        exhausted: (_attempts, last) => toDynamoCounterError(last) as Error,
      }), {
        backoff: CONFLICT_BACKOFF,
        deadline,
        retryable: isConflict,
        exhausted: (attempts) => new BackendUnavailableError(
          `DynamoDB: transactions held the item through ${attempts} attempts within the request's budget; nothing was applied`,
          { retryAfterSeconds: 1 },
        ),
      });
    } catch (err) {
      if (isThrottled(err)) throw toDynamoCounterError(err);
      if (err instanceof ConditionalCheckFailedException || err instanceof TransactionCanceledException) throw err;
      throw toDynamoCounterError(err);
    }
  }

  /**
   * A strongly consistent `GetItem`: it reflects every write DynamoDB
   * acknowledged before it, which the keyed protocol's reads rely on (an
   * eventually consistent read may miss the marker the transaction just
   * wrote). DynamoDB Local reads consistently either way, so a test checks
   * the flag on the request itself.
   */
  async getItem(id: string, deadline: Deadline): Promise<Item | undefined> {
    const out = await this.send(() => this.client.send(new GetItemCommand({
      TableName: this.tableName,
      Key: { [A.ID]: { S: id } },
      ConsistentRead: true,
    })), deadline);
    return out.Item;
  }
}
