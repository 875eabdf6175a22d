import { ResultSetHeader } from 'mysql2/promise';
import { InternalError } from '../../../runtime/errors';
import { counterIdOf, slotName as slotIdOf } from '../../../runtime/shards';
import { allowedPrevious, CounterChange, zeroAllowed } from '../../../runtime/store';
import { TIDB_COLUMNS } from '../tidb-env';

const ID = TIDB_COLUMNS.ID;
const VALUE = TIDB_COLUMNS.VALUE;
const HEADROOM = TIDB_COLUMNS.HEADROOM;
const WIDTH = TIDB_COLUMNS.WIDTH;

/**
 * Added to every value a statement reports through `LAST_INSERT_ID(expr)`.
 * The function (and the OK packet's insert id) is an *unsigned* 64-bit
 * integer on TiDB, MySQL and MariaDB alike: `LAST_INSERT_ID(-3)` is
 * 18446744073709551613, and storing it in the signed value column fails
 * (out of range). Counter values are safe integers (|v| < 2^53), so
 * `v + 2^53` is always in [1, 2^54): positive, exact, and never 0 (TiDB
 * reports the statement's `LAST_INSERT_ID(expr)` in the OK packet only when
 * it is > 0). The store subtracts the offset again.
 */
export const REPORT_OFFSET = 9007199254740992n;

/**
 * Reported instead of a value by an unsharded statement that found its id
 * widened (sharded by another container, docs/sharding.md "Down to 1"):
 * `WIDENED_OFFSET + width`, above every reported value (< 2^54), so the
 * store tells the two apart from the same OK packet, and nothing was written.
 */
export const WIDENED_OFFSET = 2n * REPORT_OFFSET;

/**
 * The SQL of the store. An unkeyed change is ONE autocommit statement: the
 * upsert (or update) takes the row lock (InnoDB, and TiDB in pessimistic
 * mode), so concurrent changes of one id are serialised by the server, and
 * the first change of a new id cannot race (the loser of the insert sees the
 * duplicate key and takes the update branch under the lock).
 *
 * The bound check is `value BETWEEN lowest AND highest` (`allowedPrevious`:
 * the previous values from which the change may apply), evaluated by the
 * server on the locked row. Applied: the row is set to `value + by`
 * (changed rows 2, or 1 for a new row). Rejected: it is set to itself
 * (changed rows 0), nothing written.
 *
 * The value the statement produced comes back in the OK packet's insert id
 * through `LAST_INSERT_ID(expr)` (offset by `REPORT_OFFSET`), without a second
 * query and without the race of a trailing SELECT. The expression in the
 * VALUES branch is evaluated even when the row exists; the update branch's
 * own `LAST_INSERT_ID(…)` is evaluated later and wins.
 *
 * Integers are bound as decimal strings and cast to `SIGNED` (mysql2 would
 * send a JS number as a DOUBLE), so every comparison and sum is BIGINT.
 *
 * `schema` 'unsharded': the same statements without the width check, for a
 * table an earlier setup made (schema 2 or older, no `width` column) until
 * the current setup has run: no id of it can be sharded.
 */
export function counterSql(table: string, schema: 'current' | 'unsharded' = 'current') {
  const t = quoted(table);
  const current = schema === 'current';
  const bounded = boundedValue('CAST(? AS SIGNED)', 'CAST(? AS SIGNED)', 'CAST(? AS SIGNED)', current);
  return {
    /**
     * When 0 is an allowed previous value (every unconditional change, an
     * upward conditional one with by ≤ maximum): a new row holds `by`.
     * Parameters: id, by, lowest, highest, by.
     */
    upsert:
      `INSERT INTO ${t} (${ID}, ${VALUE}) VALUES (?, ${reported('CAST(? AS SIGNED)')}) ` +
      `ON DUPLICATE KEY UPDATE ${VALUE} = ${bounded}`,
    /**
     * When 0 is not allowed (a conditional decrement, a step above the
     * maximum): a missing counter (0) must stay missing, so no insert
     * branch at all. A missing row matches nothing: changed rows 0 and no
     * `LAST_INSERT_ID` call, insert id 0 (never a reported value, which is
     * ≥ 1). Parameters: lowest, highest, by, id.
     */
    update: `UPDATE ${t} SET ${VALUE} = ${bounded} WHERE ${ID} = ?`,
    /** The row's width comes along: a widened id (width > 1) is read over its slots instead. */
    read: `SELECT ${VALUE}${current ? `, ${WIDTH}` : ''} FROM ${t} WHERE ${ID} = ?`,
  };
}

/** A request value as SQL: a hex literal of its UTF-8 bytes, whatever the bytes are (no quoting, no escaping). */
export function hexLiteral(value: string): string {
  return `X'${Buffer.from(value, 'utf8').toString('hex')}'`;
}

/** An integer as SQL: only a safe integer passes, in parentheses (a leading minus never meets another operator). */
export function integerLiteral(n: number): string {
  if (!Number.isSafeInteger(n)) throw new InternalError(`Not a safe integer: ${n}`);
  return `(${n})`;
}

/** Slot rows' ids, and back (docs/tidb.md, "Sharded counters"; slot 0 is the id's own row). */
export { slotIdOf, counterIdOf };

/**
 * The fast path of a conditional sharded change on the slot row `rowX` (a
 * hex literal, or an expression that is NULL when switched off): an
 * increment takes `by` from the slot's headroom (`headroom ≥ by`), a
 * decrement needs `value ≥ −by` and gives the step back to the headroom
 * (value + headroom, the slot's share, is unchanged either way). A missing
 * slot, or one no rebalance gave headroom (NULL), matches nothing: changed
 * rows 0, nothing written.
 */
export function slotTakeStatement(table: string, rowX: string, by: number): string {
  const step = integerLiteral(by);
  const condition = by > 0 ? `${HEADROOM} >= ${step}` : `${VALUE} >= ${integerLiteral(-by)}`;
  return `UPDATE ${quoted(table)} SET ${VALUE} = ${VALUE} + ${step}, ${HEADROOM} = COALESCE(${HEADROOM}, 0) - ${step} ` +
    `WHERE ${ID} = ${rowX} AND ${condition}`;
}

/**
 * An unconditional sharded change of one slot row: today's upsert (the
 * safe-integer bound on the slot) without the unsharded width check, since
 * a sharded writer may write slot 0 of a widened id. Reports like the upsert.
 */
export function slotUpsertStatement(table: string, rowId: string, by: number): string {
  const { lowest, highest } = allowedPrevious(by);
  const step = integerLiteral(by);
  return `INSERT INTO ${quoted(table)} (${ID}, ${VALUE}) VALUES (${hexLiteral(rowId)}, ${reported(step)}) ` +
    `ON DUPLICATE KEY UPDATE ${VALUE} = ${boundedValue(integerLiteral(lowest), integerLiteral(highest), step)}`;
}

/**
 * Raises the width kept on slot 0 to `width` unless it is that wide already
 * ("absent or below": the width never goes down); creates slot 0 (value 0)
 * if the id has no row yet. `condition` (SQL) switches it off in a batch.
 */
export function raiseWidthStatement(table: string, id: string, width: number, condition = 'TRUE'): string {
  const w = integerLiteral(width);
  return `INSERT INTO ${quoted(table)} (${ID}, ${VALUE}, ${WIDTH}) SELECT ${hexLiteral(id)}, 0, ${w} FROM DUAL WHERE ${condition} ` +
    `ON DUPLICATE KEY UPDATE ${WIDTH} = GREATEST(COALESCE(${WIDTH}, 1), ${w})`;
}

/**
 * Slots from…to−1 of `id`, one statement (`WHERE id IN (…)` over literals:
 * point reads of the primary key). `lock`: `FOR UPDATE`, the slow path's
 * read inside its transaction; without it one statement reads one
 * snapshot (a GET).
 */
export function readSlotsStatement(table: string, id: string, from: number, to: number, lock: boolean): string {
  const ids = Array.from({ length: to - from }, (_, i) => hexLiteral(slotIdOf(id, from + i))).join(', ');
  return `SELECT ${ID}, ${VALUE}, ${HEADROOM}, ${WIDTH} FROM ${quoted(table)} WHERE ${ID} IN (${ids})${lock ? ' FOR UPDATE' : ''}`;
}

/** One slot's new state in a rebalance: `width` on slot 0 only (NULL elsewhere). */
export interface SlotWrite {
  readonly slot: number;
  readonly value: number;
  readonly headroom: number;
  readonly width?: number;
}

/** The rebalance's writes, one multi-row upsert: every written slot takes the value, headroom and width given. */
export function writeSlotsStatement(table: string, id: string, writes: readonly SlotWrite[]): string {
  const rows = writes.map((w) => `(${hexLiteral(slotIdOf(id, w.slot))}, ${integerLiteral(w.value)}, ${integerLiteral(w.headroom)}, ` +
    `${w.width === undefined ? 'NULL' : integerLiteral(w.width)})`);
  return `INSERT INTO ${quoted(table)} (${ID}, ${VALUE}, ${HEADROOM}, ${WIDTH}) VALUES ${rows.join(', ')} ` +
    `ON DUPLICATE KEY UPDATE ${VALUE} = VALUES(${VALUE}), ${HEADROOM} = VALUES(${HEADROOM}), ${WIDTH} = VALUES(${WIDTH})`;
}

/** A validated identifier (database or table name), backtick-quoted. */
export function quoted(identifier: string): string {
  return '`' + identifier + '`';
}

/** `expr`'s value, reported through the OK packet's insert id (offset by `REPORT_OFFSET`). */
function reported(expr: string): string {
  const offset = String(REPORT_OFFSET);
  return `CAST(LAST_INSERT_ID(${expr} + ${offset}) AS SIGNED) - ${offset}`;
}

/**
 * The new value of a change on the locked row: `value + by` when the previous
 * value is within `[lowest, highest]`, else the value itself (nothing
 * written); either way reported through the insert id. The three operands
 * are SQL expressions (placeholders or validated integer literals).
 *
 * `unsharded`: the change of an unsharded writer, which must not take slot
 * 0 for the whole counter once the id is wider than one slot: on such a row
 * it writes nothing and reports `WIDENED_OFFSET + width` instead. A row of
 * an id never sharded has no width (NULL, not > 1): the same change as
 * before, in the same statement.
 */
export function boundedValue(lowest: string, highest: string, by: string, unsharded = false): string {
  const bounded = `IF(${VALUE} BETWEEN ${lowest} AND ${highest}, ${reported(`${VALUE} + ${by}`)}, ${reported(VALUE)})`;
  if (!unsharded) return bounded;
  const widened = `${WIDENED_OFFSET} + ${WIDTH}`;
  // value + (reported − itself) = value: the call reports, the row keeps its value.
  return `IF(${WIDTH} > 1, ${VALUE} + (CAST(LAST_INSERT_ID(${widened}) AS SIGNED) - (${widened})), ${bounded})`;
}

/** A counter value from an insert id that carries `value + REPORT_OFFSET`. */
export function reportedValue(insertId: number | string | bigint): number {
  const value = Number(BigInt(insertId) - REPORT_OFFSET);
  if (!Number.isSafeInteger(value)) throw new InternalError(`The stored counter value ${value} is outside JavaScript's safe integers`);
  return value;
}

/** The width an unsharded statement reported (`WIDENED_OFFSET + width`), or undefined for a reported value. */
export function reportedWidth(insertId: number | string | bigint): number | undefined {
  const n = BigInt(insertId);
  return n > WIDENED_OFFSET ? Number(n - WIDENED_OFFSET) : undefined;
}

export interface Outcome {
  readonly applied: boolean;
  /** The value after the change (applied), or the value that stopped it (rejected; 0 for a missing counter). */
  readonly value: number;
  /** Not applied because the id is sharded (this wide): the change goes to the sharded path. */
  readonly widened?: number;
}

/** A statement that left its row unchanged: rejected at `value`, or (unsharded statements) the id is `widened`. */
function unchanged(insertId: number | string | bigint): Outcome {
  const widened = reportedWidth(insertId);
  return widened === undefined ? { applied: false, value: reportedValue(insertId) } : { applied: false, value: 0, widened };
}

/**
 * What the upsert's OK packet means, with CLIENT_FOUND_ROWS off (the pool
 * clears it): affectedRows 1 = inserted, 2 = updated, 0 = row left as it was.
 * With the flag on, an unchanged row reports 1 and would pass for an insert.
 */
export function upsertOutcome(result: ResultSetHeader): Outcome {
  if (result.affectedRows === 1 || result.affectedRows === 2) return { applied: true, value: reportedValue(result.insertId) };
  if (result.affectedRows === 0) return unchanged(result.insertId);
  throw new Error(`Unexpected affectedRows ${result.affectedRows} from a single-row upsert`);
}

/** The update's: 1 = changed; 0 = left as it was, or no row at all (insert id 0: the counter reads 0). */
export function updateOutcome(result: ResultSetHeader): Outcome {
  if (result.affectedRows === 1) return { applied: true, value: reportedValue(result.insertId) };
  if (result.affectedRows === 0) return Number(result.insertId) === 0 ? { applied: false, value: 0 } : unchanged(result.insertId);
  throw new Error(`Unexpected affectedRows ${result.affectedRows} from a single-row update`);
}

/** The one statement of a change, chosen by whether 0 is an allowed previous value. */
export function changeStatement(sql: ReturnType<typeof counterSql>, id: string, change: CounterChange): {
  sql: string;
  params: string[];
  outcome: (result: ResultSetHeader) => Outcome;
} {
  const { lowest, highest } = allowedPrevious(change.by, change.maximum);
  const bounds = [String(lowest), String(highest), String(change.by)];
  return zeroAllowed(change.by, change.maximum)
    ? { sql: sql.upsert, params: [id, String(change.by), ...bounds], outcome: upsertOutcome }
    : { sql: sql.update, params: [...bounds, id], outcome: updateOutcome };
}
