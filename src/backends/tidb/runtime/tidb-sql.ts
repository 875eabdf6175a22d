import { ResultSetHeader } from 'mysql2/promise';
import { InternalError } from '../../../runtime/errors';
import { allowedPrevious, CounterChange, zeroAllowed } from '../../../runtime/store';
import { TIDB_COLUMNS } from '../tidb-env';

const ID = TIDB_COLUMNS.ID;
const VALUE = TIDB_COLUMNS.VALUE;

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
 */
export function counterSql(table: string) {
  const t = quoted(table);
  const bounded = boundedValue('CAST(? AS SIGNED)', 'CAST(? AS SIGNED)', 'CAST(? AS SIGNED)');
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
    read: `SELECT ${VALUE} FROM ${t} WHERE ${ID} = ?`,
  };
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
 */
export function boundedValue(lowest: string, highest: string, by: string): string {
  return `IF(${VALUE} BETWEEN ${lowest} AND ${highest}, ${reported(`${VALUE} + ${by}`)}, ${reported(VALUE)})`;
}

/** A counter value from an insert id that carries `value + REPORT_OFFSET`. */
export function reportedValue(insertId: number | string | bigint): number {
  const value = Number(BigInt(insertId) - REPORT_OFFSET);
  if (!Number.isSafeInteger(value)) throw new InternalError(`The stored counter value ${value} is outside JavaScript's safe integers`);
  return value;
}

export interface Outcome {
  readonly applied: boolean;
  /** The value after the change (applied), or the value that stopped it (rejected; 0 for a missing counter). */
  readonly value: number;
}

/**
 * What the upsert's OK packet means, with CLIENT_FOUND_ROWS off (the pool
 * clears it): affectedRows 1 = inserted, 2 = updated, 0 = row left as it was.
 * With the flag on, an unchanged row reports 1 and would pass for an insert.
 */
export function upsertOutcome(result: ResultSetHeader): Outcome {
  if (result.affectedRows === 1 || result.affectedRows === 2) return { applied: true, value: reportedValue(result.insertId) };
  if (result.affectedRows === 0) return { applied: false, value: reportedValue(result.insertId) };
  throw new Error(`Unexpected affectedRows ${result.affectedRows} from a single-row upsert`);
}

/** The update's: 1 = changed; 0 = left as it was, or no row at all (insert id 0: the counter reads 0). */
export function updateOutcome(result: ResultSetHeader): Outcome {
  if (result.affectedRows === 1) return { applied: true, value: reportedValue(result.insertId) };
  if (result.affectedRows === 0) return { applied: false, value: Number(result.insertId) === 0 ? 0 : reportedValue(result.insertId) };
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
