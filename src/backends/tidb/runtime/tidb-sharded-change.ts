import { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { InternalError, rejectionOf } from '../../../runtime/errors';
import { KnownWidths, rebalance, slotOrder } from '../../../runtime/shards';
import { ChangeResult, CounterChange } from '../../../runtime/store';
import { TIDB_COLUMNS } from '../tidb-env';
import { claimStatement, recordShardStatement, recordStatement, REFUSED, replayOf, TiDbKeyedChange, Widened } from './tidb-keyed-change';
import {
  hexLiteral, readSlotsStatement, SlotWrite, slotIdOf, slotTakeStatement, slotUpsertStatement, raiseWidthStatement,
  upsertOutcome, writeSlotsStatement,
} from './tidb-sql';

const C = TIDB_COLUMNS;

/** Slots a keyed conditional change tries on the fast path before the rebalance. */
const FAST_SLOTS = 2;

/** One slot row as read: a missing slot has value 0 and no headroom. */
interface SlotRow {
  readonly exists: boolean;
  readonly value: number;
  readonly headroom?: number;
  /** Slot 0 only: the id's width (1 when never sharded). */
  readonly width: number;
}

/**
 * A sharded counter on TiDB (docs/tidb.md, "Sharded counters"): the id's
 * value is spread over slot rows 0…W−1 (slot 0 is the id's own row, so an
 * unsharded counter is a one-slot counter already; slot i is the row
 * `<id>\u001f<i>`), the width W on slot 0. Everything runs on the keyed
 * change's connections (multi-statements on): request values enter the SQL
 * only as hex literals and validated integers, and a change that needs
 * several statements sends them as one batch.
 *
 * - Unconditional: the bounded upsert of one random slot of the N
 *   configured, one statement; the first time a container writes a slot at
 *   or above the width it knows, slot 0's width is raised in the same batch
 *   (before the slot's write, so a reader never misses the slot).
 * - Conditional (escrow): each slot holds its value c and its headroom h,
 *   c ≥ 0, h ≥ 0, Σ(c + h) ≤ maximum. Fast path: one conditional
 *   single-row UPDATE (`h ≥ by`; a decrement `c ≥ −by`) of a random slot;
 *   when refused, one snapshot of every slot answers a 409 (the total read
 *   at one instant) or names a slot that can take the change. Slow path:
 *   one pessimistic transaction that locks every slot
 *   (`SELECT … FOR UPDATE`), decides with `rebalance` (shards.ts) on the
 *   total it read under the locks, and writes the change and the new shares
 *   with one multi-row upsert: two round trips (the lock-and-read, then the
 *   writes and COMMIT), so a 409 is a proof.
 * - Keyed: the key record is claimed, and recorded with the slot that took
 *   the change, in the same transaction as the slot write (the fast path:
 *   the keyed batch of an unsharded change, aimed at the slot) or as the
 *   rebalance.
 */
export class TiDbShardedChange {
  private readonly widths = new KnownWidths();

  constructor(private readonly table: string, private readonly connections: TiDbKeyedChange) {}

  /** The width this container knows `id` to have at least (1 for an id it never saw sharded). */
  knownWidth(id: string): number {
    return this.widths.get(id);
  }

  /** Remembers that `id` is at least `width` wide (found by an unsharded change or read). */
  remember(id: string, width: number): void {
    this.widths.remember(id, width);
  }

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    const shards = change.shards ?? 1;
    if (change.maximum === undefined) return this.unconditional(id, change, shards);
    return change.idempotency ? this.keyedConditional(id, change, shards) : this.conditional(id, change, shards, change.maximum);
  }

  /** The total over every slot the id has: one `SELECT … WHERE id IN (…)` (again over all of them when slot 0 says the id is wider). */
  async read(id: string, shards: number): Promise<number> {
    const slots = await this.connections.session((send) => this.snapshot(send, id, shards));
    return slots.reduce((sum, slot) => sum + slot.value, 0);
  }

  /**
   * A conditional change without a key. A container that knows the id to
   * be N wide first tries one random slot (the fast path). Then one
   * snapshot of every slot (one statement, no lock): if the total cannot
   * take the change, that is the 409, and a proof (the total existed at one
   * instant, during this request); else a slot the snapshot showed able to
   * take it is tried, and only then the locked rebalance. At the bound a
   * rejection costs 2 round trips and locks nothing.
   */
  private async conditional(id: string, change: CounterChange, shards: number, maximum: number): Promise<ChangeResult> {
    const tried = new Set<number>();
    // Until a rebalance has run at N, the slots ≥ the old width have no headroom: no blind try.
    if (this.widths.get(id) >= shards) {
      const slot = slotOrder(shards)[0];
      tried.add(slot);
      const result = await this.fastPath(id, slot, change);
      if (result !== REFUSED) return result;
    }
    const slots = await this.connections.session((send) => this.snapshot(send, id, shards));
    const values = slots.map((slot) => slot.value);
    if (!rebalance(values, shards, maximum, change.by)) throw rejectionOf(change.by, maximum, values.reduce((a, b) => a + b, 0));
    const canTake = (slot: SlotRow) => (change.by > 0 ? (slot.headroom ?? 0) >= change.by : slot.value >= -change.by);
    const able = slotOrder(shards).find((i) => !tried.has(i) && canTake(slots[i]));
    if (able !== undefined) {
      const result = await this.fastPath(id, able, change);
      if (result !== REFUSED) return result;
    }
    return this.rebalanced(id, change, shards);
  }

  /**
   * A conditional change with a key: up to two slots on the fast path (each
   * try claims the key with the slot's write, one batch), then the locked
   * rebalance, which claims it with the rebalance. (No snapshot first: a
   * replay must answer even at the bound, and a snapshot of the slots
   * cannot tell a key recorded meanwhile.)
   */
  private async keyedConditional(id: string, change: CounterChange, shards: number): Promise<ChangeResult> {
    if (this.widths.get(id) >= shards) {
      for (const slot of slotOrder(shards).slice(0, FAST_SLOTS)) {
        const result = await this.fastPath(id, slot, change);
        if (result !== REFUSED) return result;
      }
    }
    return this.rebalanced(id, change, shards);
  }

  /**
   * Every slot the id has, as one statement read them (one snapshot, no
   * lock): slots 0…max(N, known width)−1, again over all of them when slot
   * 0 says the id is wider.
   */
  private async snapshot(send: (statements: string[]) => Promise<unknown[]>, id: string, shards: number): Promise<SlotRow[]> {
    let count = Math.max(shards, this.widths.get(id));
    for (;;) {
      const [rows] = await send([readSlotsStatement(this.table, id, 0, count, false)]) as [RowDataPacket[]];
      const slots = slotsOf(id, 0, count, rows);
      this.widths.remember(id, slots[0].width);
      if (slots[0].width <= count) return slots;
      count = slots[0].width;
    }
  }

  private async unconditional(id: string, change: CounterChange, shards: number): Promise<ChangeResult> {
    const slot = slotOrder(shards)[0];
    // Before the first write to a slot past the width this container knows:
    // raise it, so a reader or a writer configured with fewer slots reads this one.
    const raiseWidthTo = slot > 0 && this.widths.get(id) < shards ? shards : undefined;
    let result: ChangeResult;
    if (change.idempotency) {
      result = this.settled(await this.connections.apply(id, change, change.idempotency, { slot, raiseWidthTo }));
    } else {
      const statements = [
        ...(raiseWidthTo ? [raiseWidthStatement(this.table, id, raiseWidthTo)] : []),
        slotUpsertStatement(this.table, slotIdOf(id, slot), change.by),
      ];
      result = await this.connections.session(async (send) => {
        const results = await send(statements);
        const outcome = upsertOutcome(results[results.length - 1] as ResultSetHeader);
        return outcome.applied ? { shard: slot, replayed: false } : rejectionOf(change.by, undefined, outcome.value);
      });
    }
    if (raiseWidthTo) this.widths.remember(id, raiseWidthTo);
    return result;
  }

  /** One slot's conditional write (with its key record, keyed); REFUSED when the slot cannot take it. */
  private async fastPath(id: string, slot: number, change: CounterChange): Promise<ChangeResult | typeof REFUSED> {
    if (change.idempotency) {
      const answer = await this.connections.apply(id, change, change.idempotency, { slot });
      return answer === REFUSED ? REFUSED : this.settled(answer);
    }
    return this.connections.session(async (send) => {
      const [result] = await send([slotTakeStatement(this.table, hexLiteral(slotIdOf(id, slot)), change.by)]) as [ResultSetHeader];
      return result.affectedRows === 1 ? { shard: slot, replayed: false } : REFUSED;
    });
  }

  /**
   * The slow path: one pessimistic transaction over every slot. Round trip
   * 1 claims the key (keyed), locks and reads slots 0…max(N, known width)−1
   * (and the key record: a replay or a reuse rolls back there); if slot 0 says the id is wider, the rest are
   * locked in one more. `rebalance` then decides on the total read under the
   * locks. Round trip 2 writes the slots that change, records the key with
   * the slot that took the change, and commits; or, for a rejection or a
   * replay, rolls back (a rejected change records no key).
   */
  private async rebalanced(id: string, change: CounterChange, shards: number): Promise<ChangeResult> {
    const { by, idempotency } = change;
    const maximum = change.maximum!;
    const keyed = idempotency !== undefined;
    return this.connections.session<ChangeResult>(async (send) => {
      let count = Math.max(shards, this.widths.get(id));
      // The slot ids are plain literals, even where the key turns out to be
      // a replay: a list of constants is a batch of point gets on TiDB
      // (`Batch_Point_Get`), where an id behind a user variable might not be.
      const results = await send([
        'BEGIN /*T! PESSIMISTIC */',
        ...(keyed ? [claimStatement(this.table, id, change, idempotency)] : []),
        readSlotsStatement(this.table, id, 0, count, true),
        ...(keyed ? [recordStatement(this.table, idempotency)] : []),
      ]);
      if (keyed && (results[1] as ResultSetHeader).affectedRows === 0) {
        // The key is recorded (and locked) already: its replay, or a reuse; nothing to write.
        const record = results[3] as RowDataPacket[];
        await send(['ROLLBACK']);
        if (record.length !== 1) return new InternalError(`The record of an Idempotency-Key vanished under its row lock (${record.length} rows)`);
        return replayOf(record[0], id, change);
      }
      let slots = slotsOf(id, 0, count, results[keyed ? 2 : 1] as RowDataPacket[]);
      if (slots[0].width > count) {
        // Widened by a writer with more slots than this container knew of: lock the rest too.
        const [rest] = await send([readSlotsStatement(this.table, id, count, slots[0].width, true)]) as [RowDataPacket[]];
        slots = [...slots, ...slotsOf(id, count, slots[0].width, rest)];
        count = slots[0].width;
      }
      const values = slots.map((s) => s.value);
      const next = rebalance(values, shards, maximum, by);
      if (!next) {
        await send(['ROLLBACK']);
        this.widths.remember(id, count);
        return rejectionOf(by, maximum, values.reduce((a, b) => a + b, 0));
      }
      const writes: SlotWrite[] = [];
      next.forEach((s, slot) => {
        const headroom = s.share - s.value;
        const width = slot === 0 ? count : undefined;
        const read = slots[slot];
        if (read.exists && read.value === s.value && read.headroom === headroom && (slot > 0 || read.width === width)) return;
        if (!read.exists && s.value === 0 && headroom === 0 && slot > 0) return;
        writes.push({ slot, value: s.value, headroom, ...(width === undefined ? {} : { width }) });
      });
      const shard = next.findIndex((s, i) => s.value !== values[i]);
      await send([
        writeSlotsStatement(this.table, id, writes),
        ...(keyed ? [recordShardStatement(this.table, idempotency.key, shard)] : []),
        'COMMIT',
      ]);
      this.widths.remember(id, count);
      return { shard, replayed: false };
    });
  }

  /** A keyed batch's answer on a sharded path, where no id is found widened (the batch aimed at a slot). */
  private settled(answer: ChangeResult | Widened | typeof REFUSED): ChangeResult {
    if (answer instanceof Widened || answer === REFUSED) throw new InternalError(`A sharded keyed change answered ${String(answer)}`);
    return answer;
  }
}

/** Slots from…to−1 of `id` as `rows` (any order, missing slots absent) found them. */
function slotsOf(id: string, from: number, to: number, rows: RowDataPacket[]): SlotRow[] {
  const byId = new Map(rows.map((r) => [bytes(r[C.ID]), r]));
  return Array.from({ length: to - from }, (_, i) => {
    const row = byId.get(slotIdOf(id, from + i));
    if (row === undefined) return { exists: false, value: 0, width: 1 };
    return {
      exists: true,
      value: Number(row[C.VALUE]),
      ...(row[C.HEADROOM] === null ? {} : { headroom: Number(row[C.HEADROOM]) }),
      width: row[C.WIDTH] === null ? 1 : Number(row[C.WIDTH]),
    };
  });
}

/** A VARBINARY column's bytes as the UTF-8 text they were written from. */
function bytes(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}
