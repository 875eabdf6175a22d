import { PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { BackendUnavailableError, CounterError, IdempotencyKeyReusedError, InternalError, rejectionOf } from '../../../runtime/errors';
import { Backoff, Deadline, retry } from '../../../runtime/retry';
import { ChangeResult, CounterChange, IdempotencyOptions, sameBinding } from '../../../runtime/store';
import { keysTableOf, TIDB_KEY_COLUMNS } from '../tidb-env';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, RETRYABLE_TRANSACTION_ERRORS, toTiDbCounterError } from './tidb-errors';
import { answerBy, TiDbPool } from './tidb-pool';
import { changeStatement, counterSql } from './tidb-sql';

const K = TIDB_KEY_COLUMNS;

/** Attempts for a keyed change's transaction the server certainly rolled back (it is short: more contention is expected). */
const TRANSACTION_ATTEMPTS = 10;
/** The wait between them. */
const TRANSACTION_BACKOFF: Backoff = { baseMs: 10, capMs: 160 };

/** What a statement of a keyed transaction may answer. */
type Step = <T>(sql: string, params?: (string | number)[]) => Promise<T>;

/**
 * TiDB, the keyed change (`Idempotency-Key`): one short pessimistic
 * transaction that records the key together with the change, every attempt
 * within one query timeout. The protocol and why it is exactly-once:
 * docs/tidb.md, "Exactly-once increments".
 */
export class TiDbKeyedChange {
  constructor(
    private readonly config: TiDbConfig,
    private readonly pool: TiDbPool,
    private readonly sql: ReturnType<typeof counterSql>,
  ) {}

  async apply(id: string, change: CounterChange, key: IdempotencyOptions): Promise<ChangeResult> {
    const statement = changeStatement(this.sql, id, change);
    let first: PoolConnection | undefined = await this.pool.take();
    const deadline = Deadline.after(this.config.queryTimeoutMs);
    const result = await retry<ChangeResult | CounterError>(async () => {
      const conn = first ?? await this.pool.take();
      first = undefined;
      const step: Step = async <T>(sql: string, params?: (string | number)[]) => {
        const [answer] = await answerBy(deadline, params ? conn.execute(sql, params) : conn.query(sql));
        return answer as unknown as T;
      };
      try {
        const answer = await this.transaction(step, id, change, key, statement);
        this.pool.release(conn);
        return answer;
      } catch (err) {
        await this.abandon(conn, err, deadline);
        throw err;
      }
    }, {
      backoff: TRANSACTION_BACKOFF,
      maxAttempts: TRANSACTION_ATTEMPTS,
      deadline,
      retryable: (err) => RETRYABLE_TRANSACTION_ERRORS.has(errno(err) ?? -1),
      exhausted: (_, last) => last as Error,
    }).catch((err) => {
      throw this.keyedError(err);
    });
    if (result instanceof CounterError) throw result;
    return result;
  }

  /** Nothing of its own to close: the pool is the store's. */
  async close(): Promise<void> {}

  /**
   * The statements of one attempt. Returns the answer (a replay, a change,
   * or the error to answer with once the transaction is rolled back); throws
   * a driver error with the transaction possibly still open.
   */
  private async transaction(
    step: Step, id: string, change: CounterChange, key: IdempotencyOptions,
    statement: ReturnType<typeof changeStatement>,
  ): Promise<ChangeResult | CounterError> {
    const by = String(change.by);
    const retention = key.retentionSeconds;
    await step(this.sql.begin);
    const claim = await step<ResultSetHeader>(this.sql.claimKey, [key.key, id, by, retention, id, by, retention]);
    if (claim.affectedRows === 0) {
      const rows = await step<RowDataPacket[]>(this.sql.recordedKey, [key.key]);
      await step(this.sql.rollback);
      if (rows.length !== 1) return new InternalError(`The record of an Idempotency-Key vanished under its row lock (${rows.length} rows)`);
      const recorded = { id: text(rows[0][K.ID]), by: Number(rows[0][K.STEP]) };
      if (!sameBinding(recorded, id, change.by)) return new IdempotencyKeyReusedError();
      return { counter: Number(rows[0][K.VALUE]), replayed: true };
    }
    const outcome = statement.outcome(await step<ResultSetHeader>(statement.sql, statement.params));
    if (!outcome.applied) {
      await step(this.sql.rollback);
      return rejectionOf(change.by, change.maximum, outcome.value);
    }
    await step(this.sql.recordValue, [String(outcome.value), key.key]);
    await step(this.sql.commit);
    return { counter: outcome.value, replayed: false };
  }

  /**
   * After a failed attempt: a server error left the connection usable, so
   * the transaction is rolled back explicitly (a lock wait timeout rolls back
   * only the statement) and the connection goes back to the pool; a dead or
   * timed-out connection (or no time left for the ROLLBACK) is destroyed,
   * and the server rolls back on its own.
   */
  private async abandon(conn: PoolConnection, err: unknown, deadline: Deadline): Promise<void> {
    if (errno(err) === undefined || (err as { fatal?: boolean }).fatal || deadline.expired) {
      this.pool.destroy(conn);
      return;
    }
    try {
      await answerBy(deadline, conn.query(this.sql.rollback));
      this.pool.release(conn);
    } catch {
      this.pool.destroy(conn);
    }
  }

  /** The answer to a keyed change that failed. */
  private keyedError(err: unknown): unknown {
    const n = errno(err);
    if (n === 1146 && String((err as Error).message).includes(keysTableOf(this.config.table))) {
      return new InternalError(`The table ${keysTableOf(this.config.table)} does not exist: run the setup again (deploy the construct) to create it`, { cause: err });
    }
    // Contention that outlasted the retries: rolled back, nothing applied, the client may retry.
    if (n !== undefined && RETRYABLE_TRANSACTION_ERRORS.has(n) && !RETRYABLE_SERVER_ERRORS.has(n)) {
      return new BackendUnavailableError('TiDB: the keyed change kept conflicting with concurrent ones', { cause: err });
    }
    return toTiDbCounterError(err, this.config.secretArn);
  }
}

/** A VARBINARY column's bytes as the UTF-8 text they were written from. */
function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

