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
 * file is the server: connections, dispatch, the test hooks. Not implemented:
 * cursors spanning batches (everything is returned in the first batch with
 * cursor id 0), transactions, pipeline updates, compression, TLS.
 */
import * as net from 'net';
import { CommandError, RoleGrant, UserStore, authorize } from './mongo-wire-auth';
import { buildCommands, CommandHandler, CommandHost, Connection, PRE_AUTH_COMMANDS } from './mongo-wire-commands';
import { Doc, errorReply, isPlainObject, sameValue } from './mongo-wire-documents';
import { FailCommandOptions, FailPoint } from './mongo-wire-faults';
import { decodeMessage, encodeReply, takeMessages, WireRequest } from './mongo-wire-protocol';
import { Storage } from './mongo-wire-storage';

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
  /** Databases, collections and documents (in memory). */
  public readonly storage = new Storage();
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
  private nextConnectionId = 1;
  private nextRequestId = 1;
  private readonly commands: Record<string, CommandHandler>;

  private constructor(opts: MongoWireServerOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.authEnabled = opts.username !== undefined || opts.password !== undefined;
    if (this.authEnabled) this.users.create('admin', opts.username ?? '', opts.password ?? '', [{ role: 'root', db: 'admin' }]);
    this.server = net.createServer((socket) => this.accept(socket));
    this.commands = buildCommands(this);
  }

  public get port(): number { return this._port; }
  public get uri(): string { return `mongodb://${this.host}:${this.port}/?directConnection=true`; }
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

  /** Stops listening and destroys every client socket. */
  public async stop(): Promise<void> {
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
    if (request.kind === 'query') return reply(this.runCommand(conn, { ...request.query, $db: request.db }));
    this.dispatch(conn, request.body, (doc) => {
      if (request.expectsReply) reply(doc);
    });
  }

  // ------------------------------------------------------------ dispatch

  /** Runs an OP_MSG command, through the `failCommand` fail point, and sends its reply. */
  private dispatch(conn: Connection, body: Doc, send: (reply: Doc) => void): void {
    const action = this.failPoint.take(Object.keys(body)[0] ?? '');
    const later = (delayMs: number, fn: () => void) => (delayMs > 0 ? void setTimeout(fn, delayMs) : fn());
    switch (action.kind) {
      case 'none':
        if (this.upsertRace && this.isUpsertOfMissingId(body)) {
          const { windowMs } = this.upsertRace;
          return void setTimeout(() => send(this.runCommand(conn, body, true)), windowMs);
        }
        return send(this.runCommand(conn, body));
      case 'error':
        return later(action.delayMs, () => send(errorReply(action.error)));
      case 'close':
        return later(action.delayMs, () => conn.socket.destroy());
      case 'delay':
        // The command runs once the delay is over, even if the client gave up.
        return later(action.delayMs, () => send(this.runCommand(conn, body)));
    }
  }

  /** A `findAndModify` upsert with an `_id` in its query that no document has yet. */
  private isUpsertOfMissingId(body: Doc): boolean {
    const name = body.findAndModify ?? body.findandmodify;
    if (typeof name !== 'string' || !body.upsert || !isPlainObject(body.query) || body.query._id === undefined) return false;
    const db = typeof body.$db === 'string' ? body.$db : 'admin';
    const coll = this.storage.databases.get(db)?.get(name);
    return !coll?.docs.some((d) => sameValue(d._id, body.query._id));
  }

  private runCommand(conn: Connection, body: Doc, upsertSawNothing = false): Doc {
    const name = Object.keys(body)[0] ?? '';
    try {
      const handler = Object.prototype.hasOwnProperty.call(this.commands, name) ? this.commands[name] : undefined;
      if (!handler) throw new CommandError(59, 'CommandNotFound', `no such command: '${name}'`);
      const db = typeof body.$db === 'string' ? body.$db : 'admin';
      if (this.authEnabled && !PRE_AUTH_COMMANDS.has(name)) {
        // The user's current roles: a dropped user's sessions lose their rights.
        const user = conn.user && this.users.current(conn.user);
        authorize(user, name, db);
      }
      // A standalone server rejects transactions; silently ignoring them would hide bugs.
      if (body.txnNumber !== undefined || body.startTransaction) {
        throw new CommandError(20, 'IllegalOperation', 'Transaction numbers are only allowed on a replica set member or mongos');
      }
      return handler(body, { db, conn, upsertSawNothing });
    } catch (e) {
      if (e instanceof CommandError) return errorReply(e);
      // mingo rejects unknown operators and bad arguments by throwing.
      return { ok: 0, errmsg: (e as Error).message, code: 2, codeName: 'BadValue' };
    }
  }
}
