/**
 * A small in-process MongoDB wire-protocol server for tests.
 *
 * Why: no `mongod` can be installed on our machines (no distribution package; the npm
 * launchers download binaries at run time),
 * and the existing in-memory servers accept unique indexes without enforcing them,
 * which hides exactly the failure our DocumentDB counter relies on (an upsert at the
 * maximum colliding with the `_id` index -> E11000). This server speaks enough of
 * the protocol for the real `mongodb` driver (directConnection=true) and keeps every
 * collection in memory.
 *
 * Atomicity: each command is decoded, executed and answered synchronously in one
 * event-loop turn, so commands never interleave — the same guarantee a single
 * document write has on a real server.
 *
 * Built on `bson` (encoding) and `mingo` (query, projection, sort, update and
 * aggregation language), in pieces along the server's seams:
 * `mongo-wire-protocol.ts` (framing), `mongo-wire-commands.ts` (what each
 * command does), `mongo-wire-storage.ts` (collections, indexes, E11000),
 * `mongo-wire-documents.ts` (values and updates), `mongo-wire-auth.ts` (users,
 * SCRAM-SHA-1/256, role checks) and `mongo-wire-faults.ts` (the `failCommand`
 * fail point: injected errors, dropped connections, delayed replies). This
 * `mongo-wire-transactions.ts` (sessions, transactions, locks, snapshots).
 * This file is the server: connections, dispatch, the session rules of a
 * command (DocumentDB's), the TTL monitor, the test hooks. Not implemented:
 * cursors spanning batches (everything is returned in the first batch with
 * cursor id 0), pipeline updates, compression, TLS.
 *
 * It reports itself as the primary of replica set `rs0` (as a DocumentDB
 * instance does): clients connect with `directConnection=true` and, as on
 * DocumentDB before engine 8.0.2, `retryWrites=false` (`uri` carries both).
 */
import * as net from 'net';
import { Timestamp } from 'bson';
import { CommandError, RoleGrant, UserStore, authorize } from './mongo-wire-auth';
import { buildCommands, CommandHandler, CommandHost, Connection, PRE_AUTH_COMMANDS, TRANSACTION_COMMANDS, WRITE_COMMANDS } from './mongo-wire-commands';
import { Doc, errorReply, isPlainObject, keyString } from './mongo-wire-documents';
import { FailCommandOptions, FailPoint } from './mongo-wire-faults';
import { decodeMessage, encodeReply, takeMessages, WireRequest } from './mongo-wire-protocol';
import { Storage } from './mongo-wire-storage';
import { expiredDocs, LockWait, SessionTable, Transaction, TransactionEngine } from './mongo-wire-transactions';

export interface MongoWireServerOptions {
  /** Interface to bind. Default 127.0.0.1. */
  readonly host?: string;
  /** TCP port; 0 (default) picks a free one. */
  readonly port?: number;
  /**
   * If set (with password), authentication is on: this user is created in
   * `admin` with role `root` (like a DocumentDB master user), and clients must
   * authenticate (SCRAM-SHA-1 or SCRAM-SHA-256) as a user the server knows.
   * @default - no authentication
   */
  readonly username?: string;
  readonly password?: string;
  /**
   * A session transaction still open after this long is aborted and its
   * locks released (DocumentDB: one minute, not configurable).
   * @default 60000
   */
  readonly transactionLifetimeMs?: number;
  /**
   * How often the TTL monitor deletes documents a TTL index says expired
   * (MongoDB's runs every 60 s; DocumentDB's timing is not documented).
   * `runTtlMonitor()` runs it at once. 0: never on its own.
   * @default 60000
   */
  readonly ttlMonitorIntervalMs?: number;
}

export class MongoWireServer implements CommandHost {
  /** Starts listening; resolves once the port is bound. */
  public static async start(opts: MongoWireServerOptions = {}): Promise<MongoWireServer> {
    const server = new MongoWireServer(opts);
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.server.listen(opts.port ?? 0, server.host, () => {
        server.server.off('error', reject);
        resolve();
      });
    });
    server._port = (server.server.address() as net.AddressInfo).port;
    return server;
  }

  public readonly host: string;
  private _port = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  /** Databases, collections and committed documents (in memory). */
  public readonly storage = new Storage();
  /** Transactions, their locks and snapshots. */
  public readonly transactions: TransactionEngine;
  /** Logical sessions (`lsid`) and their transactions. */
  public readonly sessions: SessionTable;
  public readonly replicaSetName = 'rs0';
  /** Users and their SCRAM keys; enforced when `authEnabled`. */
  public readonly users = new UserStore();
  /** True when clients must authenticate (the server was started with a user). */
  public readonly authEnabled: boolean;
  /** MongoDB's `failCommand` fail point (also settable with `configureFailPoint`). */
  public readonly failPoint = new FailPoint();
  /**
   * Upsert-race injection. A real server runs an upsert's query and its
   * insert as two steps, so two concurrent upserts of a missing `_id` can
   * both find nothing and both insert: one gets E11000. This server runs each
   * command in one step and never produces that race unless this is set:
   * then a `findAndModify` upsert whose `_id` is missing when it arrives
   * inserts `windowMs` later without looking again, and every other such
   * upsert arriving in between collides. Undefined (the default): off.
   */
  public upsertRace?: { windowMs: number };
  /** Upserts that collided because of `upsertRace` (E11000 answered). */
  public injectedUpsertCollisions = 0;
  /** Commands that waited for a transaction's lock before running (a write outside a transaction). */
  public lockWaits = 0;
  private nextConnectionId = 1;
  private nextRequestId = 1;
  private readonly commands: Record<string, CommandHandler>;
  private readonly ttlTimer?: NodeJS.Timeout;

  private constructor(opts: MongoWireServerOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.authEnabled = opts.username !== undefined || opts.password !== undefined;
    if (this.authEnabled) this.users.create('admin', opts.username ?? '', opts.password ?? '', [{ role: 'root', db: 'admin' }]);
    this.transactions = new TransactionEngine(this.storage, opts.transactionLifetimeMs ?? 60_000);
    this.sessions = new SessionTable(this.transactions);
    this.server = net.createServer((socket) => this.accept(socket));
    this.commands = buildCommands(this);
    const ttlEvery = opts.ttlMonitorIntervalMs ?? 60_000;
    if (ttlEvery > 0) {
      this.ttlTimer = setInterval(() => this.runTtlMonitor(), ttlEvery);
      this.ttlTimer.unref();
    }
  }

  public get port(): number { return this._port; }
  /** `host:port`, as the server reports itself in `hello`. */
  public get address(): string { return `${this.host}:${this.port}`; }
  public get uri(): string { return `mongodb://${this.host}:${this.port}/?directConnection=true&retryWrites=false`; }
  /** Currently open client sockets (for connection-leak tests). */
  public get connectionCount(): number { return this.sockets.size; }

  /** Creates a user (test set-up without a client); roles default to `root` on `admin`. */
  public createUser(username: string, password: string, roles: RoleGrant[] = [{ role: 'root', db: 'admin' }], db = 'admin'): void {
    this.users.create(db, username, password, roles);
  }

  /**
   * Changes a user's password, as a rotation does. Sessions that already
   * authenticated keep working (as on MongoDB and DocumentDB); new ones need
   * the new password.
   */
  public setPassword(username: string, password: string, db = 'admin'): void {
    this.users.update(db, username, { password });
  }

  /** Sets (or, with undefined, clears) the `failCommand` fail point. */
  public failCommand(options: FailCommandOptions | undefined): void {
    this.failPoint.set(options);
  }

  /** Closes every client connection, as a restart or failover of the server does. */
  public dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  /**
   * Deletes every document a TTL index says has expired (as MongoDB's TTL
   * monitor does on its own schedule), skipping documents a transaction
   * holds. Returns how many it deleted.
   */
  public runTtlMonitor(now = Date.now()): number {
    let deleted = 0;
    for (const [db, colls] of this.storage.databases) {
      for (const [name, coll] of colls) {
        for (const doc of expiredDocs(coll, now)) {
          const txn = this.transactions.begin(true);
          try {
            this.transactions.remove(txn, db, name, doc);
            this.transactions.commit(txn);
            deleted++;
          } catch (e) {
            this.transactions.abort(txn);
            if (!(e instanceof LockWait)) throw e;
          }
        }
      }
    }
    return deleted;
  }

  /** Stops listening and destroys every client socket. */
  public async stop(): Promise<void> {
    if (this.ttlTimer) clearInterval(this.ttlTimer);
    for (const t of [...this.transactions.open]) this.transactions.abort(t, 'server stopped');
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ------------------------------------------------------------ connections

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true); // replies are small; Nagle would add ~40 ms per round trip
    this.sockets.add(socket);
    const conn: Connection = { id: this.nextConnectionId++, socket, buffer: Buffer.alloc(0) };
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy()); // client resets are normal at shutdown
    socket.on('data', (chunk: Buffer) => {
      // A message may arrive in many chunks, and one chunk may hold several messages.
      try {
        const { messages, rest } = takeMessages(conn.buffer.length ? Buffer.concat([conn.buffer, chunk]) : chunk);
        conn.buffer = rest;
        for (const message of messages) this.onMessage(conn, decodeMessage(message));
      } catch {
        socket.destroy(); // malformed message: a real server drops the connection too
      }
    });
  }

  private onMessage(conn: Connection, request: WireRequest): void {
    const reply = (doc: Doc) => {
      if (!conn.socket.destroyed) conn.socket.write(encodeReply(request, this.nextRequestId++, doc));
    };
    if (request.kind === 'query') return this.execute(conn, { ...request.query, $db: request.db }, false, reply);
    this.dispatch(conn, request.body, (doc) => {
      if (request.expectsReply) reply(doc);
    });
  }

  // ------------------------------------------------------------ dispatch

  /** Runs an OP_MSG command, through the `failCommand` fail point, and sends its reply. */
  private dispatch(conn: Connection, body: Doc, send: (reply: Doc) => void): void {
    const name = Object.keys(body)[0] ?? '';
    const action = this.failPoint.take(name, typeof body[name] === 'string' ? body[name] : undefined);
    const later = (delayMs: number, fn: () => void) => (delayMs > 0 ? void setTimeout(fn, delayMs) : fn());
    switch (action.kind) {
      case 'none':
        if (this.upsertRace && this.isUpsertOfMissingId(body)) {
          const { windowMs } = this.upsertRace;
          return void setTimeout(() => this.execute(conn, body, true, send), windowMs);
        }
        return this.execute(conn, body, false, send);
      case 'error':
        return later(action.delayMs, () => send(this.stamped(errorReply(action.error))));
      case 'close':
        return later(action.delayMs, () => conn.socket.destroy());
      case 'delay':
        // The command runs once the delay is over, even if the client gave up.
        return later(action.delayMs, () => this.execute(conn, body, false, send));
      case 'after':
        // The command runs and is applied; its reply is lost, or carries a write concern error.
        return later(action.delayMs, () => this.execute(conn, body, false, (reply) => {
          if (action.reply) send({ ...reply, ...action.reply });
          else conn.socket.destroy();
        }));
    }
  }

  /**
   * Runs a command and sends its reply; a write that must wait for a
   * transaction's lock runs again (whole) once that transaction has ended.
   */
  private execute(conn: Connection, body: Doc, upsertSawNothing: boolean, send: (reply: Doc) => void): void {
    const outcome = this.runCommand(conn, body, upsertSawNothing);
    if (outcome instanceof LockWait) {
      this.lockWaits++;
      void outcome.holder.ended.then(() => this.execute(conn, body, upsertSawNothing, send));
      return;
    }
    send(this.stamped(outcome));
  }

  /**
   * Every reply carries `operationTime`, as DocumentDB's do: a driver session
   * with causal consistency (the default for explicit sessions) then asks
   * for `afterClusterTime`, which DocumentDB refuses (303).
   */
  private stamped(reply: Doc): Doc {
    return { ...reply, operationTime: new Timestamp({ t: Math.floor(Date.now() / 1000), i: this.transactions.clock + 1 }) };
  }

  /** A `findAndModify` upsert outside a transaction with an `_id` in its query that no document has yet. */
  private isUpsertOfMissingId(body: Doc): boolean {
    const name = body.findAndModify ?? body.findandmodify;
    if (typeof name !== 'string' || !body.upsert || body.txnNumber !== undefined || !isPlainObject(body.query) || body.query._id === undefined) return false;
    const db = typeof body.$db === 'string' ? body.$db : 'admin';
    const coll = this.storage.databases.get(db)?.get(name);
    return !coll?.byId.has(keyString(body.query._id));
  }

  private runCommand(conn: Connection, body: Doc, upsertSawNothing = false): Doc | LockWait {
    const name = Object.keys(body)[0] ?? '';
    let txn: Transaction | undefined;
    try {
      const handler = Object.prototype.hasOwnProperty.call(this.commands, name) ? this.commands[name] : undefined;
      if (!handler) throw new CommandError(59, 'CommandNotFound', `no such command: '${name}'`);
      const db = typeof body.$db === 'string' ? body.$db : 'admin';
      if (this.authEnabled && !PRE_AUTH_COMMANDS.has(name)) {
        // The user's current roles: a dropped user's sessions lose their rights.
        const user = conn.user && this.users.current(conn.user);
        authorize(user, name, db);
      }
      // DocumentDB supports sessions for transactions, not causal consistency.
      if (isPlainObject(body.readConcern) && body.readConcern.afterClusterTime !== undefined) {
        throw new CommandError(303, 'Location303', "Feature not supported: 'causal consistency'");
      }
      if (body.txnNumber !== undefined) return this.runInSessionTransaction(name, handler, body, { db, conn, upsertSawNothing });
      if (name === 'commitTransaction' || name === 'abortTransaction') {
        throw new CommandError(50768, 'Location50768', `${name} must be run within a transaction`);
      }
      if (!WRITE_COMMANDS.has(name)) return handler(body, { db, conn, upsertSawNothing });
      // A write outside a transaction: all of it or (to wait for a lock) none of it.
      txn = this.transactions.begin(true);
      const reply = handler(body, { db, conn, upsertSawNothing, txn });
      this.transactions.commit(txn);
      return reply;
    } catch (e) {
      if (txn) this.transactions.abort(txn);
      if (e instanceof LockWait) return e;
      return failure(e);
    }
  }

  /**
   * A command with `txnNumber`: DocumentDB has no retryable writes (before
   * 8.0.2), so it must be part of a transaction (`autocommit: false`). Any
   * failure aborts the transaction, as on MongoDB; a write conflict carries
   * the `TransientTransactionError` label, so the driver and the store know
   * the whole transaction may be retried.
   */
  private runInSessionTransaction(
    name: string, handler: CommandHandler, body: Doc, ctx: { db: string; conn: Connection; upsertSawNothing: boolean },
  ): Doc {
    if (body.autocommit !== false) throw new CommandError(301, 'Location301', 'Retryable writes are not supported');
    if (!isPlainObject(body.lsid)) throw new CommandError(50768, 'Location50768', 'txnNumber requires a session id (lsid)');
    if (!TRANSACTION_COMMANDS.has(name)) {
      throw new CommandError(263, 'OperationNotSupportedInTransaction', `Cannot run '${name}' in a multi-document transaction.`);
    }
    const session = this.sessions.get(body.lsid);
    let txn: Transaction;
    try {
      txn = this.sessions.transactionFor(session, Number(body.txnNumber), !!body.startTransaction);
    } catch (e) {
      // A transaction that is gone (aborted, expired, committed): retrying the whole transaction may succeed.
      if (e instanceof CommandError && e.code === 251 && name !== 'commitTransaction') {
        throw new CommandError(e.code, e.codeName, e.message, { errorLabels: ['TransientTransactionError'] });
      }
      throw e;
    }
    const isEnd = name === 'commitTransaction' || name === 'abortTransaction';
    if (!isEnd && body.writeConcern !== undefined) {
      this.transactions.abort(txn);
      throw new CommandError(72, 'InvalidOptions', 'Cannot set write concern after starting a transaction.');
    }
    if (!body.startTransaction && body.readConcern !== undefined) {
      this.transactions.abort(txn);
      throw new CommandError(72, 'InvalidOptions', 'Only the first command in a transaction may specify a readConcern');
    }
    try {
      const reply = handler(body, { ...ctx, txn });
      // A write error (E11000, say) inside a transaction aborts it, as on MongoDB.
      if (Array.isArray(reply.writeErrors) && reply.writeErrors.length) this.transactions.abort(txn, 'a write in the transaction failed');
      return reply;
    } catch (e) {
      if (!isEnd) this.transactions.abort(txn, `a command in the transaction failed: ${(e as Error).message}`);
      throw e;
    }
  }
}

/** A failed command's reply. */
function failure(e: unknown): Doc {
  if (e instanceof CommandError) return errorReply(e);
  // mingo rejects unknown operators and bad arguments by throwing.
  return { ok: 0, errmsg: (e as Error).message, code: 2, codeName: 'BadValue' };
}
