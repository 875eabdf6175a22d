import { createPool, Pool, PoolConnection, PoolOptions } from 'mysql2/promise';
import { toTiDbCounterError } from './tidb-errors';
import { Backoff, Deadline, retry, withinDeadline } from '../../../runtime/retry';

/** A pooled connection idle longer than this is pinged before use (it may have died while the container was frozen). */
const STALE_AFTER_MS = 20_000;

/** The error of a statement that got no answer in time: fatal (its connection is destroyed), a 503. */
export function noAnswer(what = 'TiDB'): Error {
  return Object.assign(new Error(`no answer from ${what} in time`), { code: 'PROTOCOL_SEQUENCE_TIMEOUT', fatal: true });
}

/** `work`, or a fatal `noAnswer` once `deadline` passes (the connection it ran on must then be destroyed). */
export function answerBy<T>(deadline: Deadline, work: Promise<T>): Promise<T> {
  return withinDeadline(deadline, work, () => noAnswer());
}

/**
 * One mysql2 pool and the connections lent from it: a connection that timed
 * out or broke is destroyed (the pool opens a fresh one next time), never put
 * back; one idle long enough to have been dropped by a NAT (a frozen Lambda
 * container) is pinged before use.
 */
export class TiDbPool {
  private readonly pool: Pool;
  /** The init-phase connect while it is under way. */
  private warming?: Promise<void>;
  /** Connections taken from the pool and not yet released or destroyed. */
  private readonly lent = new Set<PoolConnection>();

  /**
   * @param sessionSql statements run on every new connection ahead of its
   * first use, each on its own, their errors ignored (a setting the server
   * does not know)
   */
  constructor(options: PoolOptions, private readonly pingTimeoutMs: number, private readonly secretArn?: string, sessionSql: readonly string[] = []) {
    this.pool = createPool(options);
    this.pool.pool.on('connection', (c) => {
      // An idle connection that dies emits 'error' on itself; the pool drops it.
      c.on('error', () => undefined);
      // Queued on the connection before anything the store sends on it.
      for (const sql of sessionSql) c.query(sql, () => undefined);
    });
  }

  /** Opens the first connection now (init phase); a `take` meanwhile waits for it instead of opening another. */
  async connect(): Promise<void> {
    this.warming ??= this.take().then((conn) => this.release(conn));
    try {
      await this.warming;
    } finally {
      this.warming = undefined;
    }
  }

  /**
   * A connection from the pool. If the ping of a stale one fails nothing was
   * sent on it, so a fresh connection is safe.
   */
  async take(): Promise<PoolConnection> {
    if (this.warming) await this.warming.catch(() => undefined);
    for (let attempt = 1; ; attempt++) {
      let conn: PoolConnection;
      try {
        conn = await this.pool.getConnection();
      } catch (err) {
        throw toTiDbCounterError(err, this.secretArn);
      }
      this.lent.add(conn);
      const lastActive = (conn.connection as unknown as { lastActiveTime?: number }).lastActiveTime;
      if (lastActive === undefined || Date.now() - lastActive < STALE_AFTER_MS) return conn;
      try {
        await answerBy(Deadline.after(this.pingTimeoutMs), conn.ping());
        return conn;
      } catch (err) {
        this.destroy(conn);
        if (attempt >= 2) throw toTiDbCounterError(err, this.secretArn);
      }
    }
  }

  /**
   * Runs `attempt` on a connection until it succeeds, throws what `retryable`
   * refuses, or runs out of attempts or budget (then its last error is
   * thrown). The budget starts once the first connection is in hand (taking
   * one has its own bounds: the ping and the connect timeout). `attempt`
   * releases or destroys its connection.
   */
  async retrying<T>(
    budgetMs: number,
    policy: { readonly backoff: Backoff; readonly maxAttempts: number; readonly retryable: (err: unknown) => boolean },
    attempt: (conn: PoolConnection, deadline: Deadline) => Promise<T>,
  ): Promise<T> {
    let first: PoolConnection | undefined = await this.take();
    const deadline = Deadline.after(budgetMs);
    return retry(async () => {
      const conn = first ?? await this.take();
      first = undefined;
      return attempt(conn, deadline);
    }, { ...policy, deadline, exhausted: (_, last) => last as Error });
  }

  /** Puts a connection back into the pool. */
  release(conn: PoolConnection): void {
    this.lent.delete(conn);
    conn.release();
  }

  /** Closes a connection that timed out or broke; the server rolls back whatever it had not committed. */
  destroy(conn: PoolConnection): void {
    this.lent.delete(conn);
    conn.destroy();
  }

  /**
   * Ends the pool. A connection still waiting for an answer (a container
   * dropped mid-request) is destroyed first: `pool.end()` would otherwise
   * queue its QUIT behind a reply that may never come.
   */
  async close(): Promise<void> {
    for (const conn of this.lent) conn.destroy();
    this.lent.clear();
    // A connection still in its handshake makes `end()` reject with the handshake's error: nothing is left to release then.
    await this.pool.end().catch(() => undefined);
  }
}
