import { CancellationReason, TransactionCanceledException, TransactWriteItem, TransactWriteItemsCommand } from '@aws-sdk/client-dynamodb';
import { BackendUnavailableError, IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { ChangeResult, CounterChange, IdempotencyOptions, sameBinding } from '../../../runtime/store';
import { DYNAMO_ATTRIBUTES, DYNAMO_DEFAULTS, DYNAMO_KEYS } from '../dynamo-env';
import { isRetryableReason } from './dynamo-errors';
import { boundCondition, CONFLICT_BACKOFF, COUNTER_NAMES, counterOf, DynamoTable, Item, NOT_WIDENED, num, Widened, widthOf } from './dynamo-table';

const A = DYNAMO_ATTRIBUTES;
const K = DYNAMO_KEYS;
const D = DYNAMO_DEFAULTS;

/** The partition key of a key record: a control character first, so it is never a counter id. */
export function recordIdOf(key: string): string {
  return K.RECORD_PREFIX + key;
}

/**
 * The key record's write in a keyed change's transaction (sharded or not):
 * `binding` (the id and step, and what else the record keeps) with the end
 * of its retention, on the condition that no live record holds the key (a
 * record past its retention is a key seen for the first time). A failed
 * condition returns the record (`ALL_OLD`).
 */
export function keyRecordPut(tableName: string, key: string, binding: Item, now: number, expiresAtMs: number): TransactWriteItem {
  return {
    Put: {
      TableName: tableName,
      Item: {
        [A.ID]: { S: recordIdOf(key) },
        ...binding,
        [A.EXPIRES_AT]: num(Math.ceil(expiresAtMs / 1000)),
        [A.EXPIRES_AT_MS]: num(expiresAtMs),
      },
      ConditionExpression: 'attribute_not_exists(#id) OR #e < :now',
      ExpressionAttributeNames: { '#id': A.ID, '#e': A.EXPIRES_AT_MS },
      ExpressionAttributeValues: { ':now': num(now) },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    },
  };
}

/** Name of the marker attribute a keyed change leaves on its counter item. */
export function markerName(key: string): string {
  return K.MARKER_PREFIX + key;
}

/**
 * A marker found on a counter item: the value a keyed change produced, not
 * yet folded into its key record.
 */
export interface Marker {
  /** The attribute's name. */
  readonly name: string;
  readonly key: string;
  /** The value the change produced (DynamoDB's number string). */
  readonly value: string;
  /**
   * Markers of earlier releases carry their record's `expiresAtMs` in their
   * name; they are not counted in `markerBytes`.
   */
  readonly legacyExpiresAtMs?: number;
}

/** The marker an attribute is, or undefined for any other attribute. */
export function markerOf(name: string, value: { N?: string } | undefined): Marker | undefined {
  if (!name.startsWith(K.MARKER_PREFIX) || value?.N === undefined) return undefined;
  const rest = name.slice(K.MARKER_PREFIX.length);
  const at = rest.indexOf(K.MARKER_SEPARATOR);
  if (at < 0) return rest ? { name, key: rest, value: value.N } : undefined;
  const legacyExpiresAtMs = parseInt(rest.slice(at + 1), 36);
  if (at === 0 || !Number.isSafeInteger(legacyExpiresAtMs)) return undefined;
  return { name, key: rest.slice(0, at), value: value.N, legacyExpiresAtMs };
}

/**
 * The marker of `key` on a counter item: under its name, or under an earlier
 * release's, which carries the record's `expiresAtMs`.
 */
export function markerOfKey(item: Item | undefined, key: string, expiresAtMs: number): Marker | undefined {
  const own = markerName(key);
  const legacy = K.MARKER_PREFIX + key + K.MARKER_SEPARATOR + expiresAtMs.toString(36);
  return markerOf(own, item?.[own]) ?? markerOf(legacy, item?.[legacy]);
}

/** Every marker on a counter item. */
export function markersOn(item: Item | undefined): Marker[] {
  return Object.entries(item ?? {}).flatMap(([name, value]) => markerOf(name, value) ?? []);
}

/** Bytes `markerBytes` counts for a marker: its name, and the largest number DynamoDB stores. */
export function markerWeight(marker: Pick<Marker, 'name' | 'legacyExpiresAtMs'>): number {
  return marker.legacyExpiresAtMs === undefined ? Buffer.byteLength(marker.name) + D.markerValueBytes : 0;
}

/** A marker this transaction folds into its key record (or, when the record is gone, only removes). */
interface Fold {
  readonly marker: Marker;
  readonly writeRecord: boolean;
}

/** What one attempt of a keyed change sends besides the change itself. */
interface Plan {
  readonly folds: readonly Fold[];
  /**
   * This key's marker is on the item from a retention window that has ended
   * (its record expired, was deleted, or was reused elsewhere): the value to
   * overwrite. Undefined: the marker must not exist.
   */
  readonly staleOwn?: string;
  /**
   * `markerBytes` disagrees with the markers on the item (an item edited by
   * hand, say): the transaction sets it afresh, on the condition that it is
   * still what was read.
   */
  readonly recount?: { readonly read?: string; readonly bytes: number };
}

/** One keyed change's fixed parts. */
interface Change {
  readonly id: string;
  readonly by: number;
  readonly maximum?: number;
  readonly key: string;
  readonly recordId: string;
  readonly own: string;
  readonly bound: ReturnType<typeof boundCondition>;
  readonly retentionMs: number;
  readonly deadline: Deadline;
}

/**
 * Markers of this container's own keyed changes (and legacy ones it came
 * across), per counter id, to fold into their records in its next keyed
 * transaction on the same id. Bounded: what is forgotten is folded by the
 * `markerBytes` cap instead.
 */
class RememberedMarkers {
  private readonly byId = new Map<string, Map<string, Marker>>();

  /**
   * Takes up to `foldsPerTransaction` markers of `id` out, one per key (a
   * transaction writes each key record once), none of `exceptKey` (the
   * change's own record).
   */
  take(id: string, exceptKey: string): Marker[] {
    const markers = this.byId.get(id);
    if (!markers) return [];
    const taken: Marker[] = [];
    const keys = new Set([exceptKey]);
    for (const marker of markers.values()) {
      if (taken.length >= D.foldsPerTransaction) break;
      if (keys.has(marker.key)) continue;
      keys.add(marker.key);
      taken.push(marker);
      markers.delete(marker.name);
    }
    if (markers.size === 0) this.byId.delete(id);
    return taken;
  }

  /** Remembers markers of `id` to fold later (the most recently used ids are kept). */
  add(id: string, markers: readonly Marker[]): void {
    if (markers.length === 0) return;
    const known = this.byId.get(id) ?? new Map<string, Marker>();
    this.byId.delete(id);
    this.byId.set(id, known);
    for (const marker of markers) {
      if (known.size >= 2 * D.foldsPerTransaction) break;
      known.set(marker.name, marker);
    }
    for (const oldest of this.byId.keys()) {
      if (this.byId.size <= D.rememberedIds) break;
      this.byId.delete(oldest);
    }
  }
}

/**
 * A change with an `Idempotency-Key`: one `TransactWriteItems` applies the
 * change, leaves its value in a marker on the counter item and records the
 * key, all or nothing; one consistent `GetItem` then reads the marker, and
 * the value is answered. Folding the marker into the key record is left to
 * a later transaction: this container's next keyed change on the id, or any
 * keyed change that would take the markers past their cap. The protocol,
 * its atomicity argument and what a crash after each step leaves:
 * docs/dynamo.md, "Exactly-once increments".
 */
export class DynamoKeyedChange {
  private readonly remembered = new RememberedMarkers();

  /**
   * @param budgetMs a request's time budget: a marker older than that whose
   * value a replay had to read was left by a request that has ended without
   * folding it (it died, most likely), and the replaying container adopts it.
   */
  constructor(private readonly table: DynamoTable, private readonly budgetMs: number) {}

  /**
   * `Widened` (nothing written) when the counter item carries a width: the
   * id was written sharded, and the change belongs to the sharded path.
   */
  async apply(
    id: string, { by, maximum }: CounterChange, { key, retentionSeconds }: IdempotencyOptions, deadline: Deadline,
  ): Promise<ChangeResult | Widened> {
    const c: Change = {
      id,
      by,
      maximum,
      key,
      deadline,
      recordId: recordIdOf(key),
      own: markerName(key),
      bound: boundCondition(by, maximum),
      retentionMs: retentionSeconds * 1000,
    };
    let plan: Plan = { folds: this.remembered.take(id, key).map((marker) => ({ marker, writeRecord: true })) };
    try {
      return await retry(async () => {
        const now = Date.now();
        const expiresAtMs = now + retentionSeconds * 1000;
        try {
          await this.table.send(() => this.table.client.send(this.transaction(c, plan, now, expiresAtMs)), deadline);
        } catch (err) {
          if (!(err instanceof TransactionCanceledException)) throw err;
          const outcome = await this.cancelled(c, plan, err);
          if (outcome instanceof Widened || 'replayed' in outcome) return outcome;
          plan = outcome;
          return AGAIN;
        }
        plan = { folds: [] };
        return { counter: await this.producedValue(c, expiresAtMs), replayed: false };
      }, {
        backoff: CONFLICT_BACKOFF,
        deadline,
        retryable: () => false,
        exhausted: (attempts) => new BackendUnavailableError(
          `DynamoDB: a keyed change's transaction was cancelled ${attempts} time(s) within its budget; nothing was applied`,
          { retryAfterSeconds: 1 },
        ),
      });
    } finally {
      // Folds that did not commit (or may not have: a lost reply) are still
      // to do; one that did fails its condition next time and is dropped.
      this.remembered.add(id, plan.folds.map((f) => f.marker));
    }
  }

  /**
   * The change, the marker and the key record, plus the folds of the plan:
   * each fold writes a marker's value into its key record and removes the
   * marker in the same atomic step.
   */
  private transaction(c: Change, plan: Plan, now: number, expiresAtMs: number): TransactWriteItemsCommand {
    const names: Record<string, string> = { ...COUNTER_NAMES, ...NOT_WIDENED.names, '#mk': c.own, '#mb': A.MARKER_BYTES };
    const values: Item = { ':zero': num(0), ':by': num(c.by), ...c.bound.values };
    const conditions = [NOT_WIDENED.expression, c.bound.expression];
    if (plan.staleOwn === undefined) {
      conditions.push('attribute_not_exists(#mk)');
    } else {
      conditions.push('#mk = :stale');
      values[':stale'] = num(plan.staleOwn);
    }
    const removed: string[] = [];
    let bytes = plan.staleOwn === undefined ? markerWeight({ name: c.own }) : 0;
    plan.folds.forEach(({ marker }, i) => {
      names[`#f${i}`] = marker.name;
      values[`:f${i}`] = num(marker.value);
      // Only a marker still holding the value read is folded (or counted off).
      conditions.push(`#f${i} = :f${i}`);
      removed.push(`#f${i}`);
      bytes -= markerWeight(marker);
    });
    let markerBytes: string;
    if (plan.recount) {
      conditions.push(plan.recount.read === undefined ? 'attribute_not_exists(#mb)' : '#mb = :mbRead');
      if (plan.recount.read !== undefined) values[':mbRead'] = num(plan.recount.read);
      values[':mb'] = num(plan.recount.bytes);
      markerBytes = ':mb';
    } else {
      // markerBytes + bytes ≤ cap, evaluated by DynamoDB with the write.
      conditions.push('(attribute_not_exists(#mb) OR #mb <= :mbMax)');
      values[':mbMax'] = num(D.markerBytesCap - bytes);
      values[':mbDelta'] = num(bytes);
      markerBytes = 'if_not_exists(#mb, :zero) + :mbDelta';
    }
    const items: TransactWriteItem[] = [
      {
        Update: {
          TableName: this.table.tableName,
          Key: { [A.ID]: { S: c.id } },
          // Every action reads the item as it was before the update: the
          // marker gets the value this change produces.
          UpdateExpression: `SET #c = if_not_exists(#c, :zero) + :by, #mk = if_not_exists(#c, :zero) + :by, #mb = ${markerBytes}`
            + (removed.length ? ` REMOVE ${removed.join(', ')}` : ''),
          ConditionExpression: conditions.join(' AND '),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        },
      },
      keyRecordPut(this.table.tableName, c.key, { [A.BOUND_ID]: { S: c.id }, [A.BY]: num(c.by) }, now, expiresAtMs),
    ];
    for (const { marker, writeRecord } of plan.folds) {
      if (!writeRecord) continue;
      items.push({
        Update: {
          TableName: this.table.tableName,
          Key: { [A.ID]: { S: recordIdOf(marker.key) } },
          UpdateExpression: 'SET #r = :v',
          // The record of the marker's window, still without its value. A
          // marker is written with its record and removed only with its
          // value written, so a record bound to this counter without a
          // result belongs to the marker of its key found here.
          ConditionExpression: marker.legacyExpiresAtMs === undefined
            ? '#b = :id AND attribute_not_exists(#r)'
            : '#e = :e AND attribute_not_exists(#r)',
          ExpressionAttributeNames: marker.legacyExpiresAtMs === undefined ? { '#b': A.BOUND_ID, '#r': A.RESULT } : { '#e': A.EXPIRES_AT_MS, '#r': A.RESULT },
          ExpressionAttributeValues: marker.legacyExpiresAtMs === undefined
            ? { ':id': { S: c.id }, ':v': num(marker.value) }
            : { ':e': num(marker.legacyExpiresAtMs), ':v': num(marker.value) },
        },
      });
    }
    return new TransactWriteItemsCommand({ TransactItems: items });
  }

  /**
   * A cancelled transaction applied nothing. Its reasons, one per item in
   * order (the counter, the key record, then each fold's record), say what
   * to answer, or what to send next.
   */
  private async cancelled(c: Change, plan: Plan, err: TransactionCanceledException): Promise<ChangeResult | Plan | Widened> {
    const reasons = err.CancellationReasons ?? [];
    const [counterReason, recordReason] = reasons;
    const counterFailed = counterReason?.Code === 'ConditionalCheckFailed';
    const item = counterFailed ? counterReason.Item : undefined;
    // The key first: a recorded key replays even when the counter is now out of bounds.
    if (recordReason?.Code === 'ConditionalCheckFailed') {
      const record = recordReason.Item ?? await this.table.getItem(c.recordId, c.deadline);
      const replayed = record && await this.replay(c, record, counterFailed ? item : undefined);
      if (replayed) return replayed;
      // The record expired meanwhile: the key is new again.
      return counterFailed ? this.replan(c, plan, item) : plan;
    }
    if (reasons.some(isRetryableReason)) return plan;
    if (counterFailed) {
      const ownValue = item?.[c.own]?.N;
      if (ownValue !== undefined && ownValue !== plan.staleOwn) {
        // This key's marker is on the item while its record's condition did
        // not report a live record: either it was not reported, or the
        // marker outlived its record's retention.
        const record = await this.table.getItem(c.recordId, c.deadline);
        const replayed = record && await this.replay(c, record, item);
        if (replayed) return replayed;
      }
      // Written sharded since (its width): the bound and the value are on every slot, not on this item.
      const width = widthOf(item);
      if (width !== undefined) return new Widened(width);
      if (!c.bound.holds(item)) {
        const replayed = await this.recordedAfterAll(c);
        if (replayed) return replayed;
        throw rejectionOf(c.by, c.maximum, counterOf(item) ?? 0);
      }
      // Within bounds: the markers' cap, a fold or this key's stale marker failed the condition.
      return this.replan(c, plan, item);
    }
    if (counterReason?.Code === 'ValidationError') {
      // The item would pass DynamoDB's 400 KB limit (markers an earlier
      // release left behind): fold what is on it first.
      const current = await this.table.getItem(c.id, c.deadline);
      if (markersOn(current).some((m) => m.key !== c.key)) return this.replan(c, { folds: [] }, current, true);
    }
    const foldReasons = reasons.slice(2);
    const writing = plan.folds.filter((f) => f.writeRecord);
    const gone = new Set(writing.filter((_, i) => foldReasons[i]?.Code === 'ConditionalCheckFailed').map((f) => f.marker.name));
    if (gone.size > 0) {
      // Those records are no longer the markers' (expired and reused or
      // deleted): the markers are only removed.
      return { ...plan, folds: plan.folds.map((f) => (gone.has(f.marker.name) ? { ...f, writeRecord: false } : f)) };
    }
    throw new Error(`DynamoDB cancelled the transaction: ${reasons.map((r: CancellationReason) => r.Code).join(', ')}`, { cause: err });
  }

  /**
   * The next attempt's plan, from the counter item as the cancelled
   * transaction saw it (`ALL_OLD`): folds that are still to do, this key's
   * stale marker, and, when this change would take the markers past their
   * cap (or `everything`), every marker on the item up to the per-transaction
   * limit.
   */
  private replan(c: Change, plan: Plan, item: Item | undefined, everything = false): Plan {
    const onItem = new Map(markersOn(item).filter((m) => m.key !== c.key).map((m) => [m.name, m]));
    const staleOwn = item?.[c.own]?.N;
    const writeRecord = new Map(plan.folds.map((f) => [f.marker.name, f.writeRecord]));
    let folds = plan.folds.filter((f) => onItem.get(f.marker.name)?.value === f.marker.value);
    const read = item?.[A.MARKER_BYTES]?.N;
    const counted = [...onItem.values()].reduce((sum, m) => sum + markerWeight(m), 0) + (staleOwn === undefined ? 0 : markerWeight({ name: c.own }));
    const own = staleOwn === undefined ? markerWeight({ name: c.own }) : 0;
    const after = (fs: readonly Fold[]) => Number(read ?? 0) + own - fs.reduce((sum, f) => sum + markerWeight(f.marker), 0);
    if (everything || after(folds) > D.markerBytesCap) {
      // New markers first (they count towards the cap), each key once per transaction.
      const all = [...onItem.values()].sort((a, b) => markerWeight(b) - markerWeight(a));
      const keys = new Set<string>();
      folds = [];
      for (const marker of all) {
        if (folds.length >= D.foldsPerTransaction) break;
        if (keys.has(marker.key)) continue;
        keys.add(marker.key);
        folds.push({ marker, writeRecord: writeRecord.get(marker.name) ?? true });
      }
    }
    if (after(folds) > D.markerBytesCap && Number(read ?? 0) !== counted) {
      // The count is off (the item was edited by hand): count afresh.
      const remaining = counted - folds.reduce((sum, f) => sum + markerWeight(f.marker), 0) + own;
      return { folds, staleOwn, recount: { read, bytes: remaining } };
    }
    return { folds, staleOwn };
  }

  /**
   * A live key record found: the same (id, by) replays the value its change
   * produced (or, recorded by a sharded change, its slot), anything else is
   * a reuse (422). Undefined when the record has expired (the key is then
   * new). The value is the record's `result`, or while that is not written
   * yet, the marker on the counter item (`item` when the cancelled
   * transaction returned it, else read).
   */
  private async replay(c: Change, record: Item, item: Item | undefined): Promise<ChangeResult | undefined> {
    const expiresAtMs = Number(record[A.EXPIRES_AT_MS]?.N);
    if (!(expiresAtMs >= Date.now())) return undefined;
    if (!sameBinding({ id: record[A.BOUND_ID]?.S ?? '', by: Number(record[A.BY]?.N) }, c.id, c.by)) throw new IdempotencyKeyReusedError();
    const result = record[A.RESULT]?.N;
    if (result !== undefined) return { counter: Number(result), replayed: true };
    // Recorded by a sharded change (the counter was sharded then): its answer was its slot, never a value.
    const shard = record[A.SHARD]?.N;
    if (shard !== undefined) return { shard: Number(shard), replayed: true };
    // Its change is applied, its value still only in the marker: a record
    // bound here without a result has its marker on this item (written
    // together, removed only once the value is in the record).
    const marker = markerOfKey(item, c.key, expiresAtMs) ?? markerOfKey(await this.table.getItem(c.id, c.deadline), c.key, expiresAtMs);
    // Folded between the two reads: the record has it now.
    const value = marker?.value ?? (await this.table.getItem(c.recordId, c.deadline))?.[A.RESULT]?.N;
    if (value === undefined) throw unread();
    // A window that ended while it was being read may have lent its marker to the next one.
    if (Date.now() > expiresAtMs) return undefined;
    // Its request has ended without folding it (it died after its
    // transaction, most likely), or it is an earlier release's: this
    // container folds it next time. A younger marker is left to its own
    // request's container.
    const ended = Date.now() - (expiresAtMs - c.retentionMs) > this.budgetMs;
    if (marker && (ended || marker.legacyExpiresAtMs !== undefined)) this.remembered.add(c.id, [marker]);
    return { counter: Number(value), replayed: true };
  }

  /**
   * The counter was out of bounds when the transaction was evaluated, and
   * the key was not recorded then (its cancellation reason said so). The key
   * is read once more anyway, so the answer does not rest on how DynamoDB
   * reports a cancelled transaction: recorded now, it was recorded by a
   * concurrent request with the same key, and this one replays it (or is a
   * reuse); still absent, it was absent when the counter was out of bounds
   * too (a key is never removed within its retention), and the rejection
   * stands (undefined). Past the deadline the reasons are taken as they are.
   */
  private async recordedAfterAll(c: Change): Promise<ChangeResult | undefined> {
    if (c.deadline.expired) return undefined;
    const record = await this.table.getItem(c.recordId, c.deadline);
    return record && this.replay(c, record, undefined);
  }

  /**
   * The value this change produced, from its marker (remembered, to be
   * folded by this container's next keyed change on the id), or, if a
   * transaction folded the marker already, from the key record.
   */
  private async producedValue(c: Change, expiresAtMs: number): Promise<number> {
    c.deadline.check(unread);
    const item = await this.table.getItem(c.id, c.deadline);
    const value = item?.[c.own]?.N;
    if (value !== undefined) {
      // Read after the window ended, the marker could be a later window's.
      if (Date.now() > expiresAtMs) throw unread();
      this.remembered.add(c.id, [
        { name: c.own, key: c.key, value },
        ...markersOn(item).filter((m) => m.legacyExpiresAtMs !== undefined),
      ]);
      return Number(value);
    }
    const record = await this.table.getItem(c.recordId, c.deadline);
    const result = record?.[A.RESULT]?.N;
    if (result !== undefined && Number(record?.[A.EXPIRES_AT_MS]?.N) === expiresAtMs) return Number(result);
    throw unread();
  }
}

/** A keyed change applied and recorded whose value could not be read in time (503: the same key answers it). */
export function unread(): BackendUnavailableError {
  return new BackendUnavailableError(
    'DynamoDB: the keyed change is applied and recorded, but its value could not be read in time; the same Idempotency-Key answers it',
    { retryAfterSeconds: 1 },
  );
}
