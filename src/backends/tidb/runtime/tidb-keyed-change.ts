import { PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { BackendUnavailableError, CounterError, IdempotencyKeyReusedError, InternalError, rejectionOf } from '../../../runtime/errors';
import { Backoff, Deadline } from '../../../runtime/retry';
import { allowedPrevious, ChangeResult, CounterChange, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';
import { keysTableOf, TIDB_COLUMNS, TIDB_KEY_COLUMNS } from '../tidb-env';
import { poolOptions, TiDbEndpoint } from './tidb-client';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, RETRYABLE_TRANSACTION_ERRORS, toTiDbCounterError } from './tidb-errors';
import { answerBy, TiDbPool } from './tidb-pool';
import { boundedValue, quoted, updateOutcome } from './tidb-sql';

const ID = TIDB_COLUMNS.ID;
const VALUE = TIDB_COLUMNS.VALUE;
const K = TIDB_KEY_COLUMNS;

/** Attempts for a keyed change's transaction the server certainly rolled back (it is short: more contention is expected). */
const TRANSACTION_ATTEMPTS = 10;
/** The wait between them. */
const TRANSACTION_BACKOFF: Backoff = { baseMs: 10, capMs: 160 };

/** A request value as SQL: a hex literal of its UTF-8 bytes, whatever the bytes are (no quoting, no escaping). */
export function hexLiteral(value: string): string {
  return `X'${Buffer.from(value, 'utf8').toString('hex')}'`;
}

/** An integer as SQL: only a safe integer passes, in parentheses (a leading minus never meets another operator). */
export function integerLiteral(n: number): string {
  if (!Number.isSafeInteger(n)) throw new InternalError(`Not a safe integer: ${n}`);
  return `(${n})`;
}

/** User variables of the batch (session-scoped, assigned before every read of them). */
const CLAIMED = '@atomic_counter_claimed';
const APPLIED = '@atomic_counter_applied';

/** Positions of the batch's statements whose answers are read. */
export const BATCH = { CLAIM: 1, CHANGE: 3, RECORD: 7, COMMIT: 8 } as const;

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
 *     5 applied: the produced value into the key record
 *     6 claimed but rejected: the claim removed again (the key stays unbound)
 *     7 the key record, a current read under the lock of 1 (the replay's answer)
 *     8 COMMIT
 */
export function keyedBatch(table: string, id: string, change: CounterChange, key: IdempotencyOptions): string[] {
  const t = quoted(table);
  const k = quoted(keysTableOf(table));
  const idX = hexLiteral(id);
  const keyX = hexLiteral(key.key);
  const by = integerLiteral(change.by);
  const retention = integerLiteral(key.retentionSeconds);
  const { lowest, highest } = allowedPrevious(change.by, change.maximum);
  const bounded = boundedValue(integerLiteral(lowest), integerLiteral(highest), by);
  const expired = `${K.EXPIRES} <= UTC_TIMESTAMP(6)`;
  const expiry = `UTC_TIMESTAMP(6) + INTERVAL ${retention} SECOND`;
  // `= NULL` matches nothing, so a statement switched off by a variable reads and locks no row.
  const when = (condition: string, literal: string) => `IF(${condition}, ${literal}, NULL)`;
  const theChange = zeroAllowed(change.by, change.maximum)
    ? `INSERT INTO ${t} (${ID}, ${VALUE}) SELECT ${idX}, ${by} FROM DUAL WHERE ${CLAIMED} > 0 ` +
      `ON DUPLICATE KEY UPDATE ${VALUE} = ${bounded}`
    : `UPDATE ${t} SET ${VALUE} = ${bounded} WHERE ${ID} = ${when(`${CLAIMED} > 0`, idX)}`;
  return [
    'BEGIN /*T! PESSIMISTIC */',
    // `expires_at` is assigned last: the conditions before it read the old
    // value whether the server evaluates assignments left to right (MySQL,
    // MariaDB) or against the old row.
    `INSERT INTO ${k} (${K.KEY}, ${K.ID}, ${K.STEP}, ${K.VALUE}, ${K.EXPIRES}) VALUES (${keyX}, ${idX}, ${by}, 0, ${expiry}) ` +
      `ON DUPLICATE KEY UPDATE ${K.ID} = IF(${expired}, ${idX}, ${K.ID}), ${K.STEP} = IF(${expired}, ${by}, ${K.STEP}), ` +
      `${K.EXPIRES} = IF(${expired}, ${expiry}, ${K.EXPIRES})`,
    `SET ${CLAIMED} = ROW_COUNT()`,
    theChange,
    `SET ${APPLIED} = ROW_COUNT()`,
    `UPDATE ${k} SET ${K.VALUE} = (SELECT ${VALUE} FROM ${t} WHERE ${ID} = ${idX}) WHERE ${K.KEY} = ${when(`${APPLIED} > 0`, keyX)}`,
    `DELETE FROM ${k} WHERE ${K.KEY} = ${when(`${CLAIMED} > 0 AND ${APPLIED} = 0`, keyX)}`,
    `SELECT ${K.ID}, ${K.STEP}, ${K.VALUE} FROM ${k} WHERE ${K.KEY} = ${keyX} FOR UPDATE`,
    'COMMIT',
  ];
}

/** The answer a batch's results give: a replay, a change, or the error to answer with. */
export function batchAnswer(results: unknown[], id: string, change: CounterChange): ChangeResult | CounterError {
  const claim = results[BATCH.CLAIM] as ResultSetHeader;
  const rows = results[BATCH.RECORD] as RowDataPacket[];
  if (claim.affectedRows === 0) {
    if (rows.length !== 1) return new InternalError(`The record of an Idempotency-Key vanished under its row lock (${rows.length} rows)`);
    const recorded = { id: text(rows[0][K.ID]), by: Number(rows[0][K.STEP]) };
    if (!sameBinding(recorded, id, change.by)) return new IdempotencyKeyReusedError();
    return { counter: Number(rows[0][K.VALUE]), replayed: true };
  }
  const changed = results[BATCH.CHANGE] as ResultSetHeader;
  if (changed.affectedRows === 0) {
    // Rejected: the row was set to itself (its value reported in the insert
    // id), or there was no row (insert id 0: the counter reads 0).
    if (rows.length !== 0) return new InternalError('A rejected keyed change left its key recorded');
    return rejectionOf(change.by, change.maximum, updateOutcome(changed).value);
  }
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

  async apply(id: string, change: CounterChange, key: IdempotencyOptions): Promise<ChangeResult> {
    const batch = keyedBatch(this.config.table, id, change, key).join(';\n');
    const policy = {
      backoff: TRANSACTION_BACKOFF,
      maxAttempts: TRANSACTION_ATTEMPTS,
      retryable: (err: unknown) => RETRYABLE_TRANSACTION_ERRORS.has(errno(err) ?? -1),
    };
    const result = await this.pool.retrying<ChangeResult | CounterError>(this.config.queryTimeoutMs, policy, async (conn, deadline) => {
      try {
        const [results] = await answerBy(deadline, conn.query(batch));
        this.pool.release(conn);
        return batchAnswer(results as unknown[], id, change);
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

