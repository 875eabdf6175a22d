import { createPool, Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { LimitReachedError } from '../../../runtime/errors';
import { CounterStore } from '../../../runtime/store';
import { TIDB_COLUMNS } from '../tidb-env';
import { poolOptions, resolveEndpoint, TiDbEndpoint } from './tidb-client';
import { TiDbConfig } from './tidb-config';
import { errno, RETRYABLE_SERVER_ERRORS, toTiDbCounterError } from './tidb-errors';

const ID = TIDB_COLUMNS.ID;
const VALUE = TIDB_COLUMNS.VALUE;

/** Attempts for a statement the server certainly rolled back (deadlock, write conflict). */
const RETRY_ATTEMPTS = 3;
/** A pooled connection idle longer than this is pinged before use (it may have died while the container was frozen). */
const STALE_AFTER_MS = 20_000;

/**
 * The SQL of the store. Each increment is ONE autocommit statement: the
 * upsert takes the row lock (InnoDB, and TiDB in pessimistic mode), so
 * concurrent increments of one id are serialised by the server, and the first
 * increment of a new id cannot race (the loser of the insert sees the
 * duplicate key and takes the update branch under the lock).
 *
 * `LAST_INSERT_ID(expr)` stores the value the statement produced in the
 * connection's session and in the OK packet's insert id, so the new value
 * comes back without a second query (and without the race of a trailing
 * SELECT, which could read a value another caller produced). The expression
 * in the VALUES branch is evaluated even when the row exists; the update
 * branch's own `LAST_INSERT_ID(…)` is evaluated later and wins.
 */
export function counterSql(table: string) {
  const t = '`' + table + '`';
  return {
    increment:
      `INSERT INTO ${t} (${ID}, ${VALUE}) VALUES (?, LAST_INSERT_ID(1)) ` +
      `ON DUPLICATE KEY UPDATE ${VALUE} = LAST_INSERT_ID(${VALUE} + 1)`,
    /**
     * Conditional: below the maximum the row is updated (changed rows: 2);
     * at or above it the value is set to itself (changed rows: 0) and
     * `LAST_INSERT_ID(value)` reports the current value for the 409 answer.
     * A new row (changed rows: 1) holds 1, always allowed since maximum ≥ 1.
     */
    incrementBelow:
      `INSERT INTO ${t} (${ID}, ${VALUE}) VALUES (?, LAST_INSERT_ID(1)) ` +
      `ON DUPLICATE KEY UPDATE ${VALUE} = IF(${VALUE} < ?, LAST_INSERT_ID(${VALUE} + 1), LAST_INSERT_ID(${VALUE}))`,
    read: `SELECT ${VALUE} FROM ${t} WHERE ${ID} = ?`,
  };
}

/**
 * What an upsert's OK packet means, with CLIENT_FOUND_ROWS off (the pool
 * clears it): affectedRows 1 = inserted, 2 = updated, 0 = row left as it was.
 * With the flag on, an unchanged row reports 1 and would pass for an insert.
 */
export function upsertOutcome(result: ResultSetHeader): { applied: boolean; value: number } {
  const value = Number(result.insertId);
  if (result.affectedRows === 1 || result.affectedRows === 2) return { applied: true, value };
  if (result.affectedRows === 0) return { applied: false, value };
  throw new Error(`Unexpected affectedRows ${result.affectedRows} from a single-row upsert`);
}

/**
 * TiDB (MySQL protocol): one `INSERT … ON DUPLICATE KEY UPDATE` per
 * increment over a pool created once per container. Parameters are always
 * bound (server-side prepared statements); the table name is a validated
 * identifier.
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

  private constructor(private readonly config: TiDbConfig, endpoint: TiDbEndpoint) {
    this.pool = createPool(poolOptions(config, endpoint));
    // An idle connection that dies emits 'error' on itself; the pool drops it.
    this.pool.pool.on('connection', (c) => c.on('error', () => undefined));
    this.sql = counterSql(config.table);
  }

  async increment(id: string): Promise<number> {
    const { value } = upsertOutcome(await this.run<ResultSetHeader>(this.sql.increment, [id]));
    return value;
  }

  async incrementBelow(id: string, maximum: number): Promise<number> {
    const outcome = upsertOutcome(await this.run<ResultSetHeader>(this.sql.incrementBelow, [id, maximum]));
    if (!outcome.applied) throw new LimitReachedError(maximum, outcome.value);
    return outcome.value;
  }

  async read(id: string): Promise<number> {
    const rows = await this.run<RowDataPacket[]>(this.sql.read, [id]);
    return rows.length === 0 ? 0 : Number(rows[0][VALUE]);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /**
   * Opens the pool's first connection now (init phase) and puts it back; a
   * statement that starts meanwhile waits for it instead of opening another.
   */
  async connect(): Promise<void> {
    this.warming ??= this.connection().then(release);
    try {
      await this.warming;
    } finally {
      this.warming = undefined;
    }
  }

  /**
   * Runs one statement on a pooled connection. A connection that times out
   * or breaks is destroyed (the pool opens a fresh one next time), never put
   * back. Only errors after which the server certainly rolled the statement
   * back are retried; a broken connection mid-statement is a 503, because the
   * increment may or may not have been applied and only the client can decide.
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
        release(conn);
        return result as unknown as T;
      } catch (err) {
        const n = errno(err);
        if (n !== undefined && !(err as { fatal?: boolean }).fatal) release(conn);
        else conn.destroy();
        // Retries share one statement's time budget, so the 503 bound holds.
        if (n !== undefined && RETRYABLE_SERVER_ERRORS.has(n) && attempt < RETRY_ATTEMPTS && Date.now() - started < this.config.queryTimeoutMs / 2) {
          await sleep(10 * 2 ** attempt * (0.5 + Math.random()));
          continue;
        }
        throw toTiDbCounterError(err, this.config.secretArn);
      }
    }
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
      const lastActive = (conn.connection as unknown as { lastActiveTime?: number }).lastActiveTime;
      if (lastActive === undefined || Date.now() - lastActive < STALE_AFTER_MS) return conn;
      try {
        await withTimeout(conn.ping(), this.config.queryTimeoutMs);
        return conn;
      } catch (err) {
        conn.destroy();
        if (attempt >= 2) throw toTiDbCounterError(err, this.config.secretArn);
      }
    }
  }
}

function release(conn: PoolConnection): void {
  conn.release();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer from TiDB within ${ms} ms`), { code: 'PROTOCOL_SEQUENCE_TIMEOUT', fatal: true })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
