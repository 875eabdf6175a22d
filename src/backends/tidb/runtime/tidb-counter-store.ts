import { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { rejectionOf } from '../../../runtime/errors';
import { Backoff } from '../../../runtime/retry';
import { ChangeResult, CounterChange, CounterStore } from '../../../runtime/store';
import { TIDB_COLUMNS } from '../tidb-env';
import { poolOptions, resolveEndpoint, TiDbEndpoint } from './tidb-client';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, toTiDbCounterError } from './tidb-errors';
import { TiDbKeyedChange } from './tidb-keyed-change';
import { answerBy, TiDbPool } from './tidb-pool';
import { changeStatement, counterSql } from './tidb-sql';

// The SQL is shared with the keyed change, the local fixture and the tests.
export { changeStatement, counterSql, REPORT_OFFSET, reportedValue, upsertOutcome, updateOutcome, type Outcome } from './tidb-sql';

const VALUE = TIDB_COLUMNS.VALUE;

/** Attempts for a statement the server certainly rolled back (deadlock, write conflict). */
const RETRY_ATTEMPTS = 3;
/** The wait between them. */
const STATEMENT_BACKOFF: Backoff = { baseMs: 20, capMs: 200 };

/**
 * TiDB, the plain change: one autocommit statement per change over a pool
 * created once per container, parameters bound (server-side prepared
 * statements). A keyed change is `TiDbKeyedChange`'s. The SQL, why it is
 * atomic and the connection settings: docs/tidb.md.
 */
export class TiDbCounterStore implements CounterStore {
  /**
   * Resolves the endpoint (reads the secret, once per container) and creates
   * the pool; its first connection opens in `connect` (init phase) or on the
   * first statement.
   */
  static async create(config: TiDbConfig): Promise<TiDbCounterStore> {
    return new TiDbCounterStore(config, await resolveEndpoint(config));
  }

  private readonly pool: TiDbPool;
  private readonly sql: ReturnType<typeof counterSql>;
  private readonly keyed: TiDbKeyedChange;

  private constructor(private readonly config: TiDbConfig, endpoint: TiDbEndpoint) {
    this.pool = new TiDbPool(poolOptions(config, endpoint), config.queryTimeoutMs, config.secretArn);
    this.sql = counterSql(config.table);
    this.keyed = new TiDbKeyedChange(config, endpoint);
  }

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    if (change.idempotency) return this.keyed.apply(id, change, change.idempotency);
    const statement = changeStatement(this.sql, id, change);
    const outcome = statement.outcome(await this.run<ResultSetHeader>(statement.sql, statement.params));
    if (!outcome.applied) throw rejectionOf(change.by, change.maximum, outcome.value);
    return { counter: outcome.value, replayed: false };
  }

  async read(id: string): Promise<number> {
    const rows = await this.run<RowDataPacket[]>(this.sql.read, [id]);
    return rows.length === 0 ? 0 : Number(rows[0][VALUE]);
  }

  /** Ends the pool (connections still waiting for an answer are destroyed first). */
  async close(): Promise<void> {
    await this.keyed.close();
    await this.pool.close();
  }

  /** Opens the first connection of both pools now (init phase). */
  async connect(): Promise<void> {
    await Promise.all([this.pool.connect(), this.keyed.connect()]);
  }

  /**
   * Runs one statement on a pooled connection. Only errors after which the
   * server certainly rolled the statement back are retried, all attempts
   * within one query timeout (the 503 bound); a broken connection
   * mid-statement is a 503, because the change may or may not have been
   * applied and only the client can decide.
   */
  private async run<T>(sql: string, params: (string | number)[]): Promise<T> {
    const policy = {
      backoff: STATEMENT_BACKOFF,
      maxAttempts: RETRY_ATTEMPTS,
      retryable: (err: unknown) => RETRYABLE_SERVER_ERRORS.has(errno(err) ?? -1),
    };
    return this.pool.retrying(this.config.queryTimeoutMs, policy, async (conn, deadline) => {
      try {
        // The bound covers the implicit PREPARE as well (mysql2's own `timeout`
        // option covers only the EXECUTE).
        const [result] = await answerBy(deadline, conn.execute(sql, params));
        this.pool.release(conn);
        return result as unknown as T;
      } catch (err) {
        if (errno(err) !== undefined && !(err as { fatal?: boolean }).fatal) this.pool.release(conn);
        else this.pool.destroy(conn);
        throw err;
      }
    }).catch((err) => {
      throw toTiDbCounterError(err, this.config.secretArn, this.config.table);
    });
  }
}
