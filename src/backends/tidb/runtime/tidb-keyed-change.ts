import { PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { BackendUnavailableError, CounterError, IdempotencyKeyReusedError, InternalError, rejectionOf } from '../../../runtime/errors';
import { Backoff, Deadline } from '../../../runtime/retry';
import { allowedPrevious, ChangeResult, CounterChange, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';
import { keysTableOf, TIDB_COLUMNS, TIDB_KEY_COLUMNS } from '../tidb-env';
import { poolOptions, TiDbEndpoint } from './tidb-client';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, RETRYABLE_TRANSACTION_ERRORS, toTiDbCounterError } from './tidb-errors';
import { answerBy, TiDbPool } from './tidb-pool';
import { boundedValue, hexLiteral, integerLiteral, quoted, raiseWidthStatement, slotIdOf, slotTakeStatement, updateOutcome } from './tidb-sql';

const ID = TIDB_COLUMNS.ID;
const VALUE = TIDB_COLUMNS.VALUE;
const K = TIDB_KEY_COLUMNS;

/** Attempts for a keyed change's transaction the server certainly rolled back (it is short: more contention is expected). */
const TRANSACTION_ATTEMPTS = 10;
/** The wait between them. */
const TRANSACTION_BACKOFF: Backoff = { baseMs: 10, capMs: 160 };

/** User variables of the batch (session-scoped, assigned before every read of them). */
const CLAIMED = '@atomic_counter_claimed';
const APPLIED = '@atomic_counter_applied';

/** Positions of the batch's statements whose answers are read (the same in a sharded change's batch). */
export const BATCH = { CLAIM: 1, CHANGE: 3, RECORD: 7, COMMIT: 8 } as const;

/** `literal` while `condition` holds, else NULL: `= NULL` matches nothing, so a statement switched off by a variable reads and locks no row. */
function when(condition: string, literal: string): string {
  return `IF(${condition}, ${literal}, NULL)`;
}

/**
 * Where a keyed change of a sharded counter goes (docs/tidb.md, "Sharded
 * counters"): one slot, and in unconditional mode the width to raise slot 0
 * to in the same transaction (when this container does not know the id to
 * be that wide yet).
 */
export interface SlotTarget {
  readonly slot: number;
  readonly raiseWidthTo?: number;
}

/**
 * The statement that claims an Idempotency-Key: insert its record, or take
 * over an expired one; an unexpired one is left as it is, locked (changed
 * rows 0). `expires_at` is assigned last: the conditions before it read the
 * old value whether the server evaluates assignments left to right (MySQL,
 * MariaDB) or against the old row.
 */
export function claimStatement(table: string, id: string, change: CounterChange, key: IdempotencyOptions): string {
  const k = quoted(keysTableOf(table));
  const idX = hexLiteral(id);
  const by = integerLiteral(change.by);
  const expired = `${K.EXPIRES} <= UTC_TIMESTAMP(6)`;
  const expiry = `UTC_TIMESTAMP(6) + INTERVAL ${integerLiteral(key.retentionSeconds)} SECOND`;
  return `INSERT INTO ${k} (${K.KEY}, ${K.ID}, ${K.STEP}, ${K.VALUE}, ${K.EXPIRES}) VALUES (${hexLiteral(key.key)}, ${idX}, ${by}, 0, ${expiry}) ` +
    `ON DUPLICATE KEY UPDATE ${K.ID} = IF(${expired}, ${idX}, ${K.ID}), ${K.STEP} = IF(${expired}, ${by}, ${K.STEP}), ` +
    `${K.EXPIRES} = IF(${expired}, ${expiry}, ${K.EXPIRES})`;
}

/** The key record, a current read under the lock of the claim (a replay's answer). */
export function recordStatement(table: string, key: IdempotencyOptions): string {
  return `SELECT ${K.ID}, ${K.STEP}, ${K.VALUE}, ${K.SHARD} FROM ${quoted(keysTableOf(table))} WHERE ${K.KEY} = ${hexLiteral(key.key)} FOR UPDATE`;
}

/** A sharded change's key record, once the change applied: the slot that took it (its replay's answer). */
export function recordShardStatement(table: string, key: string, shard: number): string {
  return `UPDATE ${quoted(keysTableOf(table))} SET ${K.SHARD} = ${integerLiteral(shard)} WHERE ${K.KEY} = ${hexLiteral(key)}`;
}

/**
 * The statements of one keyed change, sent as ONE multi-statement batch:
 * one transaction in one round trip (docs/tidb.md, "Exactly-once
 * increments"). Request values enter only as hex literals (id, key) and
 * validated integers (step, bounds, retention); the table names are
 * validated identifiers.
 *
 *     0 BEGIN PESSIMISTIC
 *     1 claim the key (insert, or take over an expired record; an unexpired one is left as it is, locked)
 *     2 @claimed = changed rows of 1
 *     3 the change, only if claimed (else it matches no row: no lock, no write)
 *     4 @applied = changed rows of 3
 *     5 applied: the produced value (sharded: the slot) into the key record
 *     6 claimed but rejected: the claim removed again (the key stays unbound)
 *     7 the key record, a current read under the lock of 1 (the replay's answer)
 *     (sharded, unconditional, `raiseWidthTo`: applied, slot 0's width raised)
 *     8 COMMIT
 *
 * Unsharded (no `target`), the change writes nothing on a row whose id is
 * sharded and reports its width instead (`boundedValue`). With a `target`
 * the change is the slot's (docs/tidb.md, "Sharded counters"): the bounded
 * change of the slot row (unconditional), or the fast path's headroom
 * condition (conditional; a missing slot has no headroom: no row, no write).
 */
export function keyedBatch(table: string, id: string, change: CounterChange, key: IdempotencyOptions, target?: SlotTarget): string[] {
  const t = quoted(table);
  const k = quoted(keysTableOf(table));
  const idX = hexLiteral(id);
  const keyX = hexLiteral(key.key);
  const by = integerLiteral(change.by);
  const { lowest, highest } = allowedPrevious(change.by, change.maximum);
  const bounded = boundedValue(integerLiteral(lowest), integerLiteral(highest), by, target === undefined);
  const rowX = target === undefined ? idX : hexLiteral(slotIdOf(id, target.slot));
  let theChange: string;
  if (target !== undefined && change.maximum !== undefined) {
    theChange = slotTakeStatement(table, when(`${CLAIMED} > 0`, rowX), change.by);
  } else if (zeroAllowed(change.by, change.maximum)) {
    theChange = `INSERT INTO ${t} (${ID}, ${VALUE}) SELECT ${rowX}, ${by} FROM DUAL WHERE ${CLAIMED} > 0 ` +
      `ON DUPLICATE KEY UPDATE ${VALUE} = ${bounded}`;
  } else {
    theChange = `UPDATE ${t} SET ${VALUE} = ${bounded} WHERE ${ID} = ${when(`${CLAIMED} > 0`, rowX)}`;
  }
  const recorded = target === undefined
    ? `${K.VALUE} = (SELECT ${VALUE} FROM ${t} WHERE ${ID} = ${idX})`
    : `${K.SHARD} = ${integerLiteral(target.slot)}`;
  const raise = target?.raiseWidthTo === undefined ? [] : [raiseWidthStatement(table, id, target.raiseWidthTo, `${APPLIED} > 0`)];
  return [
    'BEGIN /*T! PESSIMISTIC */',
    claimStatement(table, id, change, key),
    `SET ${CLAIMED} = ROW_COUNT()`,
    theChange,
    `SET ${APPLIED} = ROW_COUNT()`,
    `UPDATE ${k} SET ${recorded} WHERE ${K.KEY} = ${when(`${APPLIED} > 0`, keyX)}`,
    `DELETE FROM ${k} WHERE ${K.KEY} = ${when(`${CLAIMED} > 0 AND ${APPLIED} = 0`, keyX)}`,
    recordStatement(table, key),
    ...raise,
    'COMMIT',
  ];
}

/** An id found sharded by an unsharded change, which wrote nothing: the change goes to the sharded path. */
export class Widened {
  constructor(readonly width: number) {}
}

/** A conditional sharded change's slot had no headroom for it (fast path): nothing written, the key not recorded. */
export const REFUSED = 'refused';

/** A live key record's answer: its replay, or a reuse (422). A sharded change's record replays its slot. */
export function replayOf(row: RowDataPacket, id: string, change: CounterChange): ChangeResult | CounterError {
  const recorded = { id: text(row[K.ID]), by: Number(row[K.STEP]) };
  if (!sameBinding(recorded, id, change.by)) return new IdempotencyKeyReusedError();
  const shard = row[K.SHARD];
  return shard === null || shard === undefined ? { counter: Number(row[K.VALUE]), replayed: true } : { shard: Number(shard), replayed: true };
}

/** The answer a batch's results give: a replay, a change, or the error to answer with. */
export function batchAnswer(
  results: unknown[], id: string, change: CounterChange, target?: SlotTarget,
): ChangeResult | CounterError | Widened | typeof REFUSED {
  const claim = results[BATCH.CLAIM] as ResultSetHeader;
  const rows = results[BATCH.RECORD] as RowDataPacket[];
  if (claim.affectedRows === 0) {
    if (rows.length !== 1) return new InternalError(`The record of an Idempotency-Key vanished under its row lock (${rows.length} rows)`);
    return replayOf(rows[0], id, change);
  }
  const changed = results[BATCH.CHANGE] as ResultSetHeader;
  if (changed.affectedRows === 0) {
    if (rows.length !== 0) return new InternalError('A rejected keyed change left its key recorded');
    // A slot without the headroom (or value) the change needs: the rebalance decides.
    if (target !== undefined && change.maximum !== undefined) return REFUSED;
    // Rejected: the row was set to itself (its value reported in the insert
    // id), or there was no row (insert id 0: the counter reads 0); or, for an
    // unsharded change, the id is sharded (its width reported).
    const outcome = updateOutcome(changed);
    if (outcome.widened !== undefined) return new Widened(outcome.widened);
    return rejectionOf(change.by, change.maximum, outcome.value);
  }
  if (target !== undefined) return { shard: target.slot, replayed: false };
  // Applied: the record holds the counter's value read under the counter's
  // row lock this transaction holds, the value this change produced.
  if (rows.length !== 1) return new InternalError(`A keyed change was applied but its record reads ${rows.length} rows`);
  return { counter: Number(rows[0][K.VALUE]), replayed: false };
}

/**
 * Session settings of the keyed connections, each sent on its own and
 * ignored where the server does not know it: they bound how long a
 * transaction a vanished client left open keeps its locks (docs/tidb.md,
 * "Abandoned transactions").
 */
export function sessionSettings(queryTimeoutMs: number): string[] {
  const seconds = Math.max(1, Math.ceil(queryTimeoutMs / 1000));
  return [
    `SET SESSION innodb_lock_wait_timeout = ${seconds}`,
    `SET SESSION tidb_idle_transaction_timeout = ${seconds}`,
    `SET SESSION idle_transaction_timeout = ${seconds}`,
  ];
}

/**
 * TiDB, the keyed change (`Idempotency-Key`): one pessimistic transaction
 * sent as one multi-statement batch on connections of its own (the only
 * ones with multi-statements on), every attempt within one query timeout.
 * The protocol, why it is exactly-once and its round trips: docs/tidb.md,
 * "Exactly-once increments".
 */
export class TiDbKeyedChange {
  /** Connections of their own: multi-statements on, the session settings below. */
  private readonly pool: TiDbPool;

  constructor(private readonly config: TiDbConfig, endpoint: TiDbEndpoint) {
    this.pool = new TiDbPool(
      { ...poolOptions(config, endpoint), multipleStatements: true },
      config.queryTimeoutMs, config.secretArn, sessionSettings(config.queryTimeoutMs),
    );
  }

  /**
   * Opens the first keyed connection now (init phase, beside the plain
   * one), so a container's first keyed change does not pay a connect.
   */
  async connect(): Promise<void> {
    await this.pool.connect();
  }

  /**
   * The keyed change of an unsharded counter (no `target`) or of one slot
   * of a sharded one: one batch, one round trip. `Widened`: the id is
   * sharded, nothing was applied and no key recorded. `REFUSED`: the slot
   * could not take the conditional change (nothing applied, no key).
   */
  async apply(id: string, change: CounterChange, key: IdempotencyOptions, target?: SlotTarget): Promise<ChangeResult | Widened | typeof REFUSED> {
    const batch = keyedBatch(this.config.table, id, change, key, target);
    return this.session(async (send) => batchAnswer(await send(batch), id, change, target));
  }

  /**
   * Runs `work` on one connection of this pool (multi-statements on), every
   * attempt within one query timeout: `send` sends statements as one batch
   * (one round trip) and answers one result per statement. A failed attempt
   * leaves no transaction open (`abandon`) and is run again when the server
   * certainly rolled it back. A `CounterError` returned by `work` is thrown
   * once the connection is back in the pool: `work` ends its own
   * transaction before it answers one (a rejection is not retried).
   */
  async session<T>(work: (send: (statements: string[]) => Promise<unknown[]>) => Promise<T | CounterError>): Promise<T> {
    const policy = {
      backoff: TRANSACTION_BACKOFF,
      maxAttempts: TRANSACTION_ATTEMPTS,
      retryable: (err: unknown) => RETRYABLE_TRANSACTION_ERRORS.has(errno(err) ?? -1),
    };
    const result = await this.pool.retrying<T | CounterError>(this.config.queryTimeoutMs, policy, async (conn, deadline) => {
      try {
        const answer = await work(async (statements) => {
          const [results] = await answerBy(deadline, conn.query(statements.join(';\n')));
          // One statement answers its result alone; several, an array of them.
          return statements.length === 1 ? [results] : results as unknown as unknown[];
        });
        this.pool.release(conn);
        return answer;
      } catch (err) {
        await this.abandon(conn, err, deadline);
        throw err;
      }
    }).catch((err) => {
      throw this.keyedError(err);
    });
    if (result instanceof CounterError) throw result;
    return result;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /**
   * After a failed batch (the server stops a batch at its first error, so
   * the transaction may still be open): a server error left the connection
   * usable, so the transaction is rolled back explicitly (a lock wait timeout
   * rolls back only the statement) and the connection goes back to the pool;
   * a dead or timed-out connection (or no time left for the ROLLBACK) is
   * destroyed, and the server rolls back on its own.
   */
  private async abandon(conn: PoolConnection, err: unknown, deadline: Deadline): Promise<void> {
    if (errno(err) === undefined || (err as { fatal?: boolean }).fatal || deadline.expired) {
      this.pool.destroy(conn);
      return;
    }
    try {
      await answerBy(deadline, conn.query('ROLLBACK'));
      this.pool.release(conn);
    } catch {
      this.pool.destroy(conn);
    }
  }

  /** The answer to a keyed change that failed. */
  private keyedError(err: unknown): unknown {
    const n = errno(err);
    // Contention that outlasted the retries: rolled back, nothing applied, the client may retry.
    if (n !== undefined && RETRYABLE_TRANSACTION_ERRORS.has(n) && !RETRYABLE_SERVER_ERRORS.has(n)) {
      return new BackendUnavailableError('TiDB: the keyed change kept conflicting with concurrent ones', { cause: err });
    }
    return toTiDbCounterError(err, this.config.secretArn, this.config.table);
  }
}

/** A VARBINARY column's bytes as the UTF-8 text they were written from. */
function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

