import { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { rejectionOf } from '../../../runtime/errors';
import { Backoff } from '../../../runtime/retry';
import { ChangeResult, CounterChange, CounterStore } from '../../../runtime/store';
import { TIDB_COLUMNS } from '../tidb-env';
import { poolOptions, resolveEndpoint, TiDbEndpoint } from './tidb-client';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, toTiDbCounterError, UNKNOWN_COLUMN } from './tidb-errors';
import { REFUSED, TiDbKeyedChange, Widened } from './tidb-keyed-change';
import { answerBy, TiDbPool } from './tidb-pool';
import { TiDbShardedChange } from './tidb-sharded-change';
import { changeStatement, counterSql } from './tidb-sql';

// The SQL is shared with the keyed change, the local fixture and the tests.
export { changeStatement, counterSql, REPORT_OFFSET, reportedValue, upsertOutcome, updateOutcome, type Outcome } from './tidb-sql';

const VALUE = TIDB_COLUMNS.VALUE;
const WIDTH = TIDB_COLUMNS.WIDTH;

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
  /** The statements for a table whose setup has not run to schema 3 yet. */
  private readonly unshardedSql: ReturnType<typeof counterSql>;
  private readonly keyed: TiDbKeyedChange;
  private readonly shards: TiDbShardedChange;
  /** The pipeline refuses `shards` > 1 for a store without this. */
  readonly sharded = true;

  private constructor(private readonly config: TiDbConfig, endpoint: TiDbEndpoint) {
    this.pool = new TiDbPool(poolOptions(config, endpoint), config.queryTimeoutMs, config.secretArn);
    this.sql = counterSql(config.table);
    this.unshardedSql = counterSql(config.table, 'unsharded');
    this.keyed = new TiDbKeyedChange(config, endpoint);
    this.shards = new TiDbShardedChange(config.table, this.keyed);
  }

  /**
   * An unsharded change (`shards` 1, an id this container never saw
   * sharded) is what it always was, one statement (keyed: one batch), and
   * that statement also checks slot 0's width: on an id another container
   * sharded it writes nothing and reports the width, and the change goes to
   * the sharded path with N = 1 (docs/sharding.md, "Down to 1"): one round
   * trip more, once per container and id.
   */
  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    if ((change.shards ?? 1) > 1 || this.shards.knownWidth(id) > 1) return this.shards.apply(id, change);
    if (change.idempotency) {
      const answer = await this.keyed.apply(id, change, change.idempotency);
      if (answer === REFUSED) throw new Error('unreachable: an unsharded keyed change answered REFUSED');
      return answer instanceof Widened ? this.widened(id, change, answer.width) : answer;
    }
    const outcome = await this.onSchema(async (sql) => {
      const statement = changeStatement(sql, id, change);
      return statement.outcome(await this.run<ResultSetHeader>(statement.sql, statement.params));
    });
    if (outcome.widened !== undefined) return this.widened(id, change, outcome.widened);
    if (!outcome.applied) throw rejectionOf(change.by, change.maximum, outcome.value);
    return { counter: outcome.value, replayed: false };
  }

  /** The total. Unsharded: one point read, which also reads the width; an id found sharded is read over its slots. */
  async read(id: string, shards = 1): Promise<number> {
    if (shards > 1 || this.shards.knownWidth(id) > 1) return this.shards.read(id, shards);
    const rows = await this.onSchema((sql) => this.run<RowDataPacket[]>(sql.read, [id]));
    if (rows.length === 0) return 0;
    const width = rows[0][WIDTH] === null || rows[0][WIDTH] === undefined ? 1 : Number(rows[0][WIDTH]);
    if (width <= 1) return Number(rows[0][VALUE]);
    this.shards.remember(id, width);
    return this.shards.read(id, 1);
  }

  /**
   * Runs an unsharded statement; on a table without the width column (its
   * setup has not run to schema 3 yet: the counter function of a stack is
   * deployed after its setup, so only a setup run by hand lags) the same
   * statement without the width check, which the server refused before
   * running it. No id of such a table can be sharded: a sharded change
   * needs the columns, and answers 503 until they exist.
   */
  private async onSchema<T>(statement: (sql: ReturnType<typeof counterSql>) => Promise<T>): Promise<T> {
    try {
      return await statement(this.sql);
    } catch (err) {
      // `run` has made it a 503 already; the server's own error is its cause.
      if (errno((err as Error).cause) !== UNKNOWN_COLUMN) throw err;
      return statement(this.unshardedSql);
    }
  }

  /** An unsharded change that found its id `width` wide (nothing written): the sharded path with N = 1. */
  private async widened(id: string, change: CounterChange, width: number): Promise<ChangeResult> {
    this.shards.remember(id, width);
    return this.shards.apply(id, { ...change, shards: 1 });
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
