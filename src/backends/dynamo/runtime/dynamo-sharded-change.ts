import {
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  TransactionCanceledException,
  TransactGetItemsCommand,
  TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf, ThrottledError, THROTTLED_MESSAGE } from '../../../runtime/errors';
import { AGAIN, Deadline, retry, sleep, jitteredDelay } from '../../../runtime/retry';
import { ChangeResult, CounterChange, IdempotencyOptions, sameBinding } from '../../../runtime/store';
import { DYNAMO_ATTRIBUTES, DYNAMO_DEFAULTS } from '../dynamo-env';
import { THROTTLED_RETRY_AFTER_SECONDS } from './dynamo-errors';
import { keyRecordPut, markerOfKey, recordIdOf, unread } from './dynamo-keyed-change';
import { boundCondition, CONFLICT_BACKOFF, DynamoTable, Item, num } from './dynamo-table';
import { KnownWidths, rebalance, slotOrder, counterIdOf, slotName as slotIdOf } from '../../../runtime/shards';

const A = DYNAMO_ATTRIBUTES;

/** Slots a conditional change tries on the fast path before the rebalance. */
const FAST_SLOTS = 2;

/** Item ids of slots, and back (slot 0 is the counter's own item). */
export { slotIdOf, counterIdOf };

/** One slot as a consistent read found it: the raw numbers, to write the rebalance's conditions with. */
interface SlotRead {
  readonly exists: boolean;
  readonly counter?: string;
  readonly headroom?: string;
  /** Slot 0 only. */
  readonly width?: string;
}

const valueOf = (slot: SlotRead) => Number(slot.counter ?? 0);

/** Names every sharded expression uses. */
const NAMES = { '#id': A.ID, '#c': A.COUNTER, '#h': A.HEADROOM, '#w': A.WIDTH };

/**
 * A sharded counter on DynamoDB (docs/dynamo.md, "Sharded counters"): the
 * id's value is spread over slot items 0…W−1 (slot 0 is the id's own item,
 * so an unsharded counter is a one-slot counter already), W on slot 0.
 *
 * - Unconditional: `ADD` to one random slot of the N configured.
 * - Conditional (escrow): each slot holds `counter` c and `headroom` h,
 *   c ≥ 0, h ≥ 0, Σ(c + h) ≤ maximum. Fast path: one `UpdateItem` on one
 *   slot, `ADD c by, h −by`, on the condition `h ≥ by` (increment) or
 *   `c ≥ −by` (decrement); up to two slots are tried. Slow path: one
 *   `TransactGetItems` of every slot (a snapshot), `rebalance` (shards.ts),
 *   and one `TransactWriteItems` writing every slot on the condition that
 *   each still holds what was read: either the total (read atomically, since
 *   no slot changed between the read and the commit) cannot take the change,
 *   and that is a 409, or the change and the new shares commit together.
 * - A keyed change writes its key record in the same transaction as its
 *   slot write (or as the rebalance); the record keeps the slot, which a
 *   replay answers. No counter value is answered, so no marker is needed.
 * - A throttled slot: the next slot is tried at once.
 */
export class DynamoShardedCounter {
  private readonly widths = new KnownWidths();

  constructor(private readonly table: DynamoTable) {}

  /** The width this container knows `id` to have at least (1 for an id it never saw sharded). */
  knownWidth(id: string): number {
    return this.widths.get(id);
  }

  /** Remembers that `id` is at least `width` wide (found by an unsharded change or read). */
  remember(id: string, width: number): void {
    this.widths.remember(id, width);
  }

  async apply(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult> {
    return retry(() => this.attempt(id, change, deadline), {
      backoff: CONFLICT_BACKOFF,
      deadline,
      retryable: () => false,
      exhausted: (attempts) => new BackendUnavailableError(
        `DynamoDB: a sharded change's rebalance found its slots changed ${attempts} time(s) within its budget; nothing was applied`,
        { retryAfterSeconds: 1 },
      ),
    });
  }

  /** The total over every slot the id has: one `BatchGetItem` (two when a wider writer raised the width unseen). */
  async read(id: string, shards: number, deadline: Deadline): Promise<number> {
    const slots = await this.readAll(id, shards, deadline);
    return slots.reduce((sum, slot) => sum + valueOf(slot), 0);
  }

  private async attempt(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult | typeof AGAIN> {
    const shards = change.shards ?? 1;
    const conditional = change.maximum !== undefined;
    let refused = 0;
    let throttled: ThrottledError | undefined;
    for (const slot of slotOrder(shards)) {
      if (conditional && refused >= FAST_SLOTS) break;
      try {
        const result = await this.fastPath(id, slot, change, deadline);
        if (result === 'refused') {
          refused++;
          continue;
        }
        return result;
      } catch (err) {
        if (!(err instanceof ThrottledError)) throw err;
        throttled = err;
      }
    }
    // Every slot tried was throttled (or, conditional, none that was not could take it).
    if (throttled && (!conditional || refused === 0)) throw throttled;
    if (!conditional) throw new Error('unreachable: an unconditional change found no slot and no throttle');
    return this.slowPath(id, change, deadline);
  }

  /**
   * One slot's write: `UpdateItem`, or with a key, a `TransactWriteItems`
   * of the slot's update and the key record. 'refused': the slot's share
   * cannot take the change (conditional mode).
   */
  private async fastPath(id: string, slot: number, change: CounterChange, deadline: Deadline): Promise<ChangeResult | 'refused' | typeof AGAIN> {
    const { by, maximum } = change;
    const shards = change.shards ?? 1;
    let update: { expression: string; condition: string; values: Item };
    if (maximum === undefined) {
      // Before the first write to a slot past the stored width: raise it, so
      // a reader or a rebalance configured with fewer slots still reads this one.
      if (slot > 0 && this.widths.get(id) < shards) await this.raiseWidth(id, shards, deadline);
      const bound = boundCondition(by, undefined);
      update = { expression: 'ADD #c :by', condition: bound.expression, values: { ':by': num(by), ...bound.values } };
    } else {
      update = {
        expression: 'ADD #c :by, #h :minusBy',
        // Headroom left for an increment; value left for a decrement. Either
        // way c + h (the slot's share) is unchanged.
        condition: by > 0 ? '#h >= :by' : '#c >= :minusBy',
        values: { ':by': num(by), ':minusBy': num(-by) },
      };
    }
    const names: Record<string, string> = maximum === undefined ? { '#c': A.COUNTER } : { '#c': A.COUNTER, '#h': A.HEADROOM };
    const slotUpdate = {
      TableName: this.table.tableName,
      Key: { [A.ID]: { S: slotIdOf(id, slot) } },
      UpdateExpression: update.expression,
      ConditionExpression: update.condition,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: update.values,
    };
    if (!change.idempotency) {
      try {
        await this.table.send(() => this.table.client.send(new UpdateItemCommand({
          ...slotUpdate,
          ...(maximum === undefined ? { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const } : {}),
        })), deadline, { throttledAttempts: 1 });
        return { shard: slot, replayed: false };
      } catch (err) {
        if (!(err instanceof ConditionalCheckFailedException)) throw err;
        if (maximum === undefined) throw rejectionOf(by, undefined, Number(err.Item?.[A.COUNTER]?.N ?? 0));
        return 'refused';
      }
    }
    const record = this.recordPut(id, change, change.idempotency, slot);
    const items: TransactWriteItem[] = [{ Update: { ...slotUpdate, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' } }, record];
    const outcome = await this.transact(id, change, change.idempotency, items, deadline);
    if (outcome === 'slot') {
      if (maximum === undefined) throw rejectionOf(by, undefined);
      return 'refused';
    }
    return outcome ?? { shard: slot, replayed: false };
  }

  /**
   * The rebalance: every slot read as one snapshot (`TransactGetItems`), the
   * change and the new shares (`rebalance`) written in one
   * `TransactWriteItems` whose every slot is conditioned on what was read.
   * AGAIN when a slot changed in between. Unconditional mode only comes
   * here when throttled slots were skipped: it never does (see `attempt`).
   */
  private async slowPath(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult | typeof AGAIN> {
    const { by } = change;
    const maximum = change.maximum!;
    const shards = change.shards ?? 1;
    const slots = await this.readSnapshot(id, shards, deadline);
    if (slots === AGAIN) return AGAIN;
    const values = slots.map(valueOf);
    const next = rebalance(values, shards, maximum, by);
    if (!next) {
      // A key recorded by a concurrent request with the same key replays
      // even though the counter is at its bound now.
      if (change.idempotency) {
        const replayed = await this.recorded(id, change, change.idempotency, deadline);
        if (replayed) return replayed;
      }
      throw rejectionOf(by, maximum, values.reduce((a, b) => a + b, 0));
    }
    const width = Math.max(slots.length, shards);
    const items: TransactWriteItem[] = slots.map((read, i) => {
      const attributes: Item = { ':c': num(next[i].value), ':h': num(next[i].share - next[i].value) };
      const sets = ['#c = :c', '#h = :h'];
      const conditions: string[] = [];
      if (!read.exists) {
        conditions.push('attribute_not_exists(#id)');
      } else {
        conditions.push(read.counter === undefined ? 'attribute_not_exists(#c)' : '#c = :oc');
        conditions.push(read.headroom === undefined ? 'attribute_not_exists(#h)' : '#h = :oh');
        if (read.counter !== undefined) attributes[':oc'] = num(read.counter);
        if (read.headroom !== undefined) attributes[':oh'] = num(read.headroom);
      }
      const names: Record<string, string> = { '#c': A.COUNTER, '#h': A.HEADROOM };
      if (!read.exists) names['#id'] = A.ID;
      if (i === 0) {
        names['#w'] = A.WIDTH;
        sets.push('#w = :w');
        attributes[':w'] = num(width);
        if (read.exists) {
          conditions.push(read.width === undefined ? 'attribute_not_exists(#w)' : '#w = :ow');
          if (read.width !== undefined) attributes[':ow'] = num(read.width);
        }
      }
      return {
        Update: {
          TableName: this.table.tableName,
          Key: { [A.ID]: { S: slotIdOf(id, i) } },
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: conditions.join(' AND '),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: attributes,
        },
      };
    });
    const changed = next.findIndex((s, i) => s.value !== values[i]);
    if (change.idempotency) items.push(this.recordPut(id, change, change.idempotency, changed));
    const outcome = await this.transact(id, change, change.idempotency, items, deadline, slots.length);
    if (outcome === 'slot') return AGAIN;
    if (outcome) return outcome;
    this.widths.remember(id, width);
    return { shard: changed, replayed: false };
  }

  /**
   * Sends a transaction whose key record (if any) is its item at
   * `recordAt` (1 on the fast path, W on the slow path). Undefined: it
   * committed. 'slot': a slot's condition failed (and the key is new).
   * A result: the key was recorded already, and this is its replay.
   * AGAIN: the key's record expired meanwhile, or a transaction conflict.
   */
  private async transact(
    id: string, change: CounterChange, key: IdempotencyOptions | undefined, items: TransactWriteItem[], deadline: Deadline, recordAt = 1,
  ): Promise<ChangeResult | 'slot' | typeof AGAIN | undefined> {
    try {
      const command = new TransactWriteItemsCommand({ TransactItems: items });
      await this.table.send(() => this.table.client.send(command), deadline, { throttledAttempts: 1 });
      return undefined;
    } catch (err) {
      if (!(err instanceof TransactionCanceledException)) throw err;
      const reasons = err.CancellationReasons ?? [];
      const recordReason = key ? reasons[recordAt] : undefined;
      if (key && recordReason?.Code === 'ConditionalCheckFailed') {
        const record = recordReason.Item ?? await this.table.getItem(recordIdOf(key.key), deadline);
        return (record && await this.replay(id, change, key, record, deadline)) ?? AGAIN;
      }
      if (reasons.some((r, i) => i !== recordAt && r.Code === 'ConditionalCheckFailed')) return 'slot';
      if (reasons.some((r) => r.Code === 'TransactionConflict')) return AGAIN;
      throw new Error(`DynamoDB cancelled the transaction: ${reasons.map((r) => r.Code).join(', ')}`, { cause: err });
    }
  }

  /** The key record a keyed sharded change writes: bound to the id and step, keeping its slot. */
  private recordPut(id: string, change: CounterChange, key: IdempotencyOptions, slot: number): TransactWriteItem {
    const now = Date.now();
    const binding = { [A.BOUND_ID]: { S: id }, [A.BY]: num(change.by), [A.SHARD]: num(slot) };
    return keyRecordPut(this.table.tableName, key.key, binding, now, now + key.retentionSeconds * 1000);
  }

  /**
   * A live record: the same id and step replay its slot, anything else is a
   * reuse (422). Undefined when expired. A key first used while the counter
   * was unsharded replays its value: the record's `result`, or until a fold
   * writes it, the marker on slot 0 (one `GetItem`).
   */
  private async replay(
    id: string, change: CounterChange, key: IdempotencyOptions, record: Item, deadline: Deadline,
  ): Promise<ChangeResult | undefined> {
    const expiresAtMs = Number(record[A.EXPIRES_AT_MS]?.N);
    if (!(expiresAtMs >= Date.now())) return undefined;
    if (!sameBinding({ id: record[A.BOUND_ID]?.S ?? '', by: Number(record[A.BY]?.N) }, id, change.by)) throw new IdempotencyKeyReusedError();
    const shard = record[A.SHARD]?.N;
    if (shard !== undefined) return { shard: Number(shard), replayed: true };
    const value = record[A.RESULT]?.N
      ?? markerOfKey(await this.table.getItem(id, deadline), key.key, expiresAtMs)?.value
      // Folded between the two reads: the record has it now.
      ?? (await this.table.getItem(recordIdOf(key.key), deadline))?.[A.RESULT]?.N;
    if (value === undefined) throw unread();
    // A window that ended while it was being read may have lent its marker to the next one.
    if (Date.now() > expiresAtMs) return undefined;
    return { counter: Number(value), replayed: true };
  }

  private async recorded(id: string, change: CounterChange, key: IdempotencyOptions, deadline: Deadline): Promise<ChangeResult | undefined> {
    if (deadline.expired) return undefined;
    const record = await this.table.getItem(recordIdOf(key.key), deadline);
    return record && this.replay(id, change, key, record, deadline);
  }

  /**
   * Raises the width on slot 0 to `shards` unless it is that wide already
   * (one conditional `UpdateItem`, once per container and id).
   */
  private async raiseWidth(id: string, shards: number, deadline: Deadline): Promise<void> {
    try {
      await this.table.send(() => this.table.client.send(new UpdateItemCommand({
        TableName: this.table.tableName,
        Key: { [A.ID]: { S: id } },
        UpdateExpression: 'SET #w = :w',
        ConditionExpression: 'attribute_not_exists(#w) OR #w < :w',
        ExpressionAttributeNames: { '#w': A.WIDTH },
        ExpressionAttributeValues: { ':w': num(shards) },
      })), deadline);
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
    this.widths.remember(id, shards);
  }

  /**
   * Every slot of the id, read strongly consistently: slots 0…max(N, known
   * width)−1 in one `BatchGetItem`; if slot 0 says the id is wider, the
   * rest in a second one.
   */
  private async readAll(id: string, shards: number, deadline: Deadline): Promise<SlotRead[]> {
    let count = Math.max(shards, this.widths.get(id));
    let slots = await this.readSlots(id, 0, count, deadline);
    const width = Number(slots[0].width ?? 1);
    if (width > count) {
      slots = [...slots, ...await this.readSlots(id, count, width, deadline)];
      count = width;
    }
    this.widths.remember(id, Math.max(width, 1));
    return slots;
  }

  /**
   * Every slot of the id as one serializable snapshot: one
   * `TransactGetItems` of slots 0…max(N, known width)−1 (again, whole,
   * when slot 0 says the id is wider). The rebalance's 409 rests on it: the
   * total it sums existed at one instant. AGAIN when DynamoDB cancelled it
   * because a transaction was writing one of the slots.
   */
  private async readSnapshot(id: string, shards: number, deadline: Deadline): Promise<SlotRead[] | typeof AGAIN> {
    let count = Math.max(shards, this.widths.get(id));
    for (;;) {
      let out;
      try {
        out = await this.table.send(() => this.table.client.send(new TransactGetItemsCommand({
          TransactItems: Array.from({ length: count }, (_, i) => ({
            Get: {
              TableName: this.table.tableName,
              Key: { [A.ID]: { S: slotIdOf(id, i) } },
              ProjectionExpression: '#id, #c, #h, #w',
              ExpressionAttributeNames: NAMES,
            },
          })),
        })), deadline);
      } catch (err) {
        if (err instanceof TransactionCanceledException) return AGAIN;
        throw err;
      }
      const slots = (out.Responses ?? []).map(({ Item: item }) => ({
        exists: item !== undefined,
        counter: item?.[A.COUNTER]?.N,
        headroom: item?.[A.HEADROOM]?.N,
        width: item?.[A.WIDTH]?.N,
      }));
      if (slots.length !== count) throw new Error(`TransactGetItems answered ${slots.length} items for ${count}`);
      const width = Number(slots[0].width ?? 1);
      this.widths.remember(id, width);
      if (width <= count) return slots;
      count = width;
    }
  }

  /** Slots from…to−1 in one `BatchGetItem` (plus one per round DynamoDB leaves keys unprocessed, which it does when throttled). */
  private async readSlots(id: string, from: number, to: number, deadline: Deadline): Promise<SlotRead[]> {
    const found = new Map<string, Item>();
    let keys: Item[] = Array.from({ length: to - from }, (_, i) => ({ [A.ID]: { S: slotIdOf(id, from + i) } }));
    for (let round = 1; keys.length > 0; round++) {
      const requested = keys;
      const out = await this.table.send(() => this.table.client.send(new BatchGetItemCommand({
        RequestItems: {
          [this.table.tableName]: {
            Keys: requested,
            ConsistentRead: true,
            ProjectionExpression: '#id, #c, #h, #w',
            ExpressionAttributeNames: NAMES,
          },
        },
      })), deadline);
      for (const item of out.Responses?.[this.table.tableName] ?? []) found.set(item[A.ID].S!, item);
      keys = out.UnprocessedKeys?.[this.table.tableName]?.Keys ?? [];
      if (keys.length === 0) break;
      const delay = jitteredDelay(round, { baseMs: 1.5 * DYNAMO_DEFAULTS.retryBaseMs, capMs: 1000 });
      if (round >= DYNAMO_DEFAULTS.retryAttempts || deadline.remainingMs() <= delay) {
        throw new ThrottledError(THROTTLED_MESSAGE, { retryAfterSeconds: THROTTLED_RETRY_AFTER_SECONDS });
      }
      await sleep(delay);
    }
    return Array.from({ length: to - from }, (_, i) => {
      const item = found.get(slotIdOf(id, from + i));
      return {
        exists: item !== undefined,
        counter: item?.[A.COUNTER]?.N,
        headroom: item?.[A.HEADROOM]?.N,
        width: item?.[A.WIDTH]?.N,
      };
    });
  }
}
