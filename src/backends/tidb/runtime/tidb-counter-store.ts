import { createPool, Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { BackendUnavailableError, CounterError, IdempotencyKeyReusedError, InternalError, rejectionOf } from '../../../runtime/errors';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, IdempotencyOptions, sameBinding, zeroAllowed } from '../../../runtime/store';
import { keysTableOf, TIDB_COLUMNS, TIDB_KEY_COLUMNS } from '../tidb-env';
import { poolOptions, resolveEndpoint, TiDbEndpoint } from './tidb-client';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, RETRYABLE_TRANSACTION_ERRORS, toTiDbCounterError } from './tidb-errors';

const ID = TIDB_COLUMNS.ID;
const VALUE = TIDB_COLUMNS.VALUE;
const K = TIDB_KEY_COLUMNS;

/** Attempts for a statement the server certainly rolled back (deadlock, write conflict). */
const RETRY_ATTEMPTS = 3;
/** Attempts for a keyed change's transaction the server certainly rolled back (it is short: more contention is expected). */
const TRANSACTION_ATTEMPTS = 10;
/** A pooled connection idle longer than this is pinged before use (it may have died while the container was frozen). */
const STALE_AFTER_MS = 20_000;

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
  const t = '`' + table + '`';
  const k = '`' + keysTableOf(table) + '`';
  const offset = String(REPORT_OFFSET);
  const report = (expr: string) => `CAST(LAST_INSERT_ID(${expr} + ${offset}) AS SIGNED) - ${offset}`;
  const bounded =
    `IF(${VALUE} BETWEEN CAST(? AS SIGNED) AND CAST(? AS SIGNED), ` +
    `${report(`${VALUE} + CAST(? AS SIGNED)`)}, ${report(VALUE)})`;
  const expired = `${K.EXPIRES} <= UTC_TIMESTAMP(6)`;
  return {
    /**
     * When 0 is an allowed previous value (every unconditional change, an
     * upward conditional one with by ≤ maximum): a new row holds `by`.
     * Parameters: id, by, lowest, highest, by.
     */
    upsert:
      `INSERT INTO ${t} (${ID}, ${VALUE}) VALUES (?, ${report('CAST(? AS SIGNED)')}) ` +
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
    /**
     * A keyed change's transaction. `BEGIN PESSIMISTIC` (TiDB's syntax, in its
     * executable-comment form, a plain `BEGIN` elsewhere) makes the
     * transaction pessimistic whatever the cluster's `tidb_txn_mode`.
     */
    begin: 'BEGIN /*T! PESSIMISTIC */',
    commit: 'COMMIT',
    rollback: 'ROLLBACK',
    /**
     * Records the key (placeholder value 0, replaced before COMMIT), or takes
     * over a record whose retention has ended. An unexpired record is left as
     * it is: changed rows 0, and the statement still holds its row lock, so a
     * concurrent request with the same key waits here until this transaction
     * ends. `expires_at` is assigned last: the conditions before it read the
     * old value whether the server evaluates assignments left to right
     * (MySQL, MariaDB) or against the old row. Parameters: key, id, by,
     * retention seconds, id, by, retention seconds.
     */
    claimKey:
      `INSERT INTO ${k} (${K.KEY}, ${K.ID}, ${K.STEP}, ${K.VALUE}, ${K.EXPIRES}) ` +
      'VALUES (?, ?, CAST(? AS SIGNED), 0, UTC_TIMESTAMP(6) + INTERVAL ? SECOND) ' +
      `ON DUPLICATE KEY UPDATE ${K.ID} = IF(${expired}, ?, ${K.ID}), ` +
      `${K.STEP} = IF(${expired}, CAST(? AS SIGNED), ${K.STEP}), ` +
      `${K.EXPIRES} = IF(${expired}, UTC_TIMESTAMP(6) + INTERVAL ? SECOND, ${K.EXPIRES})`,
    /** The unexpired record the claim found, read under the lock the claim holds (a current read). */
    recordedKey: `SELECT ${K.ID}, ${K.STEP}, ${K.VALUE} FROM ${k} WHERE ${K.KEY} = ? FOR UPDATE`,
    /** The value the change produced, into the record, before COMMIT. Parameters: value, key. */
    recordValue: `UPDATE ${k} SET ${K.VALUE} = CAST(? AS SIGNED) WHERE ${K.KEY} = ?`,
  };
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

/** What a statement of a keyed transaction may answer. */
type Step = <T>(sql: string, params?: (string | number)[]) => Promise<T>;

/**
 * TiDB (MySQL protocol): one `INSERT … ON DUPLICATE KEY UPDATE` (or
 * `UPDATE`) per unkeyed change over a pool created once per container; one
 * short pessimistic transaction per keyed change. Parameters are always
 * bound (server-side prepared statements); table names are validated
 * identifiers.
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

  private readonly pool: Pool;
  private readonly sql: ReturnType<typeof counterSql>;
  /** The init-phase connect while it is under way. */
  private warming?: Promise<void>;
  /** Connections taken from the pool and not yet released or destroyed. */
  private readonly lent = new Set<PoolConnection>();

  private constructor(private readonly config: TiDbConfig, endpoint: TiDbEndpoint) {
    this.pool = createPool(poolOptions(config, endpoint));
    // An idle connection that dies emits 'error' on itself; the pool drops it.
    this.pool.pool.on('connection', (c) => c.on('error', () => undefined));
    this.sql = counterSql(config.table);
  }

  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    if (change.idempotency) return this.applyKeyed(id, change, change.idempotency);
    const statement = changeStatement(this.sql, id, change);
    const outcome = statement.outcome(await this.run<ResultSetHeader>(statement.sql, statement.params));
    if (!outcome.applied) throw rejectionOf(change.by, change.maximum, outcome.value);
    return { counter: outcome.value, replayed: false };
  }

  async read(id: string): Promise<number> {
    const rows = await this.run<RowDataPacket[]>(this.sql.read, [id]);
    return rows.length === 0 ? 0 : Number(rows[0][VALUE]);
  }

  /**
   * Ends the pool. A connection still waiting for an answer (a container
   * dropped mid-request) is destroyed first: `pool.end()` would otherwise
   * queue its QUIT behind a reply that may never come. The server rolls back
   * whatever such a connection had not committed.
   */
  async close(): Promise<void> {
    for (const conn of this.lent) conn.destroy();
    this.lent.clear();
    await this.pool.end();
  }

  /**
   * Opens the pool's first connection now (init phase) and puts it back; a
   * statement that starts meanwhile waits for it instead of opening another.
   */
  async connect(): Promise<void> {
    this.warming ??= this.connection().then((conn) => this.release(conn));
    try {
      await this.warming;
    } finally {
      this.warming = undefined;
    }
  }

  /**
   * A keyed change: one transaction on one connection, every statement of
   * it (and of its retries) within one query timeout.
   *
   *     BEGIN PESSIMISTIC
   *     claim the key ── unexpired record found ──▶ read it, ROLLBACK → replay or 422
   *     the change's statement ── rejected ──▶ ROLLBACK → 409/400 (no key recorded)
   *     the produced value into the key record
   *     COMMIT
   *
   * The key record and the counter commit together or not at all. A server
   * error after which the transaction is certainly rolled back (deadlock,
   * write conflict, …) runs it again; a connection that breaks or times out
   * is destroyed (the server rolls back whatever it had not committed) and
   * the request answers 503: if that was during COMMIT the change may have
   * been applied, and the client's retry with the same key then replays it.
   */
  private async applyKeyed(id: string, change: CounterChange, key: IdempotencyOptions): Promise<ChangeResult> {
    const statement = changeStatement(this.sql, id, change);
    let started: number | undefined;
    for (let attempt = 1; ; attempt++) {
      const conn = await this.connection();
      started ??= Date.now();
      const begun = started;
      const left = () => this.config.queryTimeoutMs - (Date.now() - begun);
      const step: Step = async <T>(sql: string, params?: (string | number)[]) => {
        const ms = left();
        if (ms <= 0) throw noAnswer(0);
        const [result] = await withTimeout(params ? conn.execute(sql, params) : conn.query(sql), ms);
        return result as unknown as T;
      };
      let result: ChangeResult | CounterError;
      try {
        result = await this.keyedTransaction(step, id, change, key, statement);
      } catch (err) {
        await this.abandon(conn, err, left);
        const n = errno(err);
        if (n !== undefined && RETRYABLE_TRANSACTION_ERRORS.has(n)) {
          if (attempt < TRANSACTION_ATTEMPTS && Date.now() - begun < this.config.queryTimeoutMs / 2) {
            await sleep(5 * 2 ** Math.min(attempt, 5) * (0.5 + Math.random()));
            continue;
          }
        }
        throw this.keyedError(err);
      }
      this.release(conn);
      if (result instanceof CounterError) throw result;
      return result;
    }
  }

  /**
   * The statements of one attempt. Returns the answer (a replay, a change,
   * or the error to answer with once the transaction is rolled back); throws
   * a driver error with the transaction possibly still open.
   */
  private async keyedTransaction(
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
   * After a failed statement of a keyed transaction: a server error left the
   * connection usable, so the transaction is rolled back explicitly (a lock
   * wait timeout rolls back only the statement) and the connection goes back
   * to the pool; a dead or timed-out connection (or no time left for the
   * ROLLBACK) is destroyed, and the server rolls back on its own.
   */
  private async abandon(conn: PoolConnection, err: unknown, left: () => number): Promise<void> {
    if (errno(err) === undefined || (err as { fatal?: boolean }).fatal || left() <= 0) {
      this.destroy(conn);
      return;
    }
    try {
      await withTimeout(conn.query(this.sql.rollback), left());
      this.release(conn);
    } catch {
      this.destroy(conn);
    }
  }

  /** The answer to a keyed change that failed: a missing records table is a 500 that says so. */
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

  /**
   * Runs one statement on a pooled connection. A connection that times out
   * or breaks is destroyed (the pool opens a fresh one next time), never put
   * back. Only errors after which the server certainly rolled the statement
   * back are retried; a broken connection mid-statement is a 503, because the
   * change may or may not have been applied and only the client can decide.
   */
  private async run<T>(sql: string, params: (string | number)[]): Promise<T> {
    let started: number | undefined;
    for (let attempt = 1; ; attempt++) {
      const conn = await this.connection();
      started ??= Date.now();
      try {
        // The bound covers the implicit PREPARE as well (mysql2's own `timeout`
        // option covers only the EXECUTE).
        const remaining = Math.max(1, this.config.queryTimeoutMs - (Date.now() - started));
        const [result] = await withTimeout(conn.execute(sql, params), remaining);
        this.release(conn);
        return result as unknown as T;
      } catch (err) {
        const n = errno(err);
        if (n !== undefined && !(err as { fatal?: boolean }).fatal) this.release(conn);
        else this.destroy(conn);
        // Retries share one statement's time budget, so the 503 bound holds.
        if (n !== undefined && RETRYABLE_SERVER_ERRORS.has(n) && attempt < RETRY_ATTEMPTS && Date.now() - started < this.config.queryTimeoutMs / 2) {
          await sleep(10 * 2 ** attempt * (0.5 + Math.random()));
          continue;
        }
        throw toTiDbCounterError(err, this.config.secretArn);
      }
    }
  }

  /** Puts a connection back into the pool. */
  private release(conn: PoolConnection): void {
    this.lent.delete(conn);
    conn.release();
  }

  /** Closes a connection that timed out or broke; the pool opens a fresh one next time. */
  private destroy(conn: PoolConnection): void {
    this.lent.delete(conn);
    conn.destroy();
  }

  /**
   * A connection from the pool. One that sat idle long enough to have been
   * closed by the server or a NAT (a frozen Lambda container) is pinged
   * first; if the ping fails nothing was sent, so a fresh connection is safe.
   */
  private async connection(): Promise<PoolConnection> {
    if (this.warming) await this.warming.catch(() => undefined);
    for (let attempt = 1; ; attempt++) {
      let conn: PoolConnection;
      try {
        conn = await this.pool.getConnection();
      } catch (err) {
        throw toTiDbCounterError(err, this.config.secretArn);
      }
      this.lent.add(conn);
      const lastActive = (conn.connection as unknown as { lastActiveTime?: number }).lastActiveTime;
      if (lastActive === undefined || Date.now() - lastActive < STALE_AFTER_MS) return conn;
      try {
        await withTimeout(conn.ping(), this.config.queryTimeoutMs);
        return conn;
      } catch (err) {
        this.destroy(conn);
        if (attempt >= 2) throw toTiDbCounterError(err, this.config.secretArn);
      }
    }
  }
}

/** A VARBINARY column's bytes as the UTF-8 text they were written from. */
function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The error of a statement that got no answer in time: fatal (its connection is destroyed), a 503. */
function noAnswer(ms: number): Error {
  return Object.assign(new Error(`no answer from TiDB within ${ms} ms`), { code: 'PROTOCOL_SEQUENCE_TIMEOUT', fatal: true });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(noAnswer(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
