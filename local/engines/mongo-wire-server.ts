/* eslint-disable no-bitwise -- the wire protocol's flag words are bit operations */
/* eslint-disable @typescript-eslint/member-ordering -- collection helpers sit next to the commands that use them */
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
 * aggregation language). Users, SCRAM-SHA-1/256 authentication and role checks
 * live in `mongo-wire-auth.ts`; the `failCommand` fail point (injected errors,
 * dropped connections, delayed replies) in `mongo-wire-faults.ts`. Not implemented: cursors spanning batches (everything is
 * returned in the first batch with cursor id 0), transactions, pipeline updates,
 * compression, TLS.
 */
import * as net from 'net';
import { Document, EJSON, Long, ObjectId, deserialize, serialize } from 'bson';
// Registers every mingo operator ($group, $skip, ... are not in the default set).
import 'mingo/init/system';
import { ProcessingMode, Query, aggregate, find, update as mingoUpdate } from 'mingo';
import { CommandError, RoleGrant, ScramState, UserRecord, UserStore, authorize } from './mongo-wire-auth';
import { FailCommandOptions, FailPoint } from './mongo-wire-faults';

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

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_MSG = 2013;
const FLAG_CHECKSUM = 1 << 0;
const FLAG_MORE_TO_COME = 1 << 1; // client expects no reply (w:0 writes)
const MAX_MESSAGE = 48_000_000;
const MAX_WIRE_VERSION = 17; // MongoDB 6.0

type Doc = Document;

interface IndexSpec { v: number; key: Doc; name: string; unique?: boolean; sparse?: boolean }

interface Collection { docs: Doc[]; indexes: IndexSpec[] }

interface Connection {
  readonly id: number;
  readonly socket: net.Socket;
  buffer: Buffer;
  /** The user this connection authenticated as. */
  user?: UserRecord;
  scram?: ScramState;
}

interface Ctx {
  db: string;
  conn: Connection;
  /** The command's query phase already ran (and found nothing): an upsert goes straight to its insert. */
  upsertSawNothing?: boolean;
}

const badValue = (msg: string) => new CommandError(2, 'BadValue', msg);

// ---------------------------------------------------------------- document helpers

/** Canonical string of a value; numbers compare by value (1 and 1.0 are one key, as in MongoDB). */
const keyString = (v: unknown): string => EJSON.stringify(v === undefined ? null : (v as any), { relaxed: true });
const sameValue = (a: unknown, b: unknown) => keyString(a) === keyString(b);
/** Deep copy that keeps BSON types (ObjectId, Date, Binary...). */
const clone = (d: Doc): Doc => deserialize(serialize(d));

const isPlainObject = (v: unknown): v is Doc =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v as any)._bsontype &&
  !(v instanceof Date) && !(v instanceof RegExp) && !(v instanceof Uint8Array);

function getPath(doc: Doc, path: string): unknown {
  let cur: any = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = cur[part];
  }
  return cur;
}

function setPath(doc: Doc, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur: any = doc;
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(cur[part])) cur[part] = {};
    cur = cur[part];
  }
  cur[parts[parts.length - 1]] = value;
}

/** MongoDB stores `_id` as the first field; generate an ObjectId when it is missing. */
function withIdFirst(doc: Doc): Doc {
  const { _id, ...rest } = doc;
  return { _id: _id === undefined ? new ObjectId() : _id, ...rest };
}

/**
 * The fields an upsert copies from its filter: top-level equality conditions
 * (`{a: 1}`, `{a: {$eq: 1}}`, inside `$and`), as MongoDB does. `{value: {$lt: 10}}`
 * contributes nothing.
 */
function equalityFields(filter: Doc, out: Doc = {}): Doc {
  for (const [k, v] of Object.entries(filter)) {
    if (k === '$and' && Array.isArray(v)) {
      v.forEach((f) => equalityFields(f, out));
    } else if (k.startsWith('$') || v instanceof RegExp) {
      continue;
    } else if (isPlainObject(v) && Object.keys(v).some((x) => x.startsWith('$'))) {
      if ('$eq' in v) setPath(out, k, v.$eq);
    } else {
      setPath(out, k, v);
    }
  }
  return out;
}

const isOperatorUpdate = (u: Doc) => Object.keys(u).length > 0 && Object.keys(u)[0].startsWith('$');

/**
 * Computes the updated version of `doc` without mutating it.
 * `inserting` enables `$setOnInsert` and allows `_id` to be set (upserts).
 */
function applyUpdate(doc: Doc, u: unknown, inserting: boolean, arrayFilters?: Doc[]): { doc: Doc; changed: boolean } {
  if (!isPlainObject(u)) throw badValue('update must be a document (pipeline updates are not supported here)');
  let next: Doc;
  let changed = false;
  if (!isOperatorUpdate(u)) {
    // Replacement: keeps the existing _id (or the filter's _id on upsert).
    if (Object.keys(u).some((k) => k.startsWith('$'))) throw badValue('cannot mix update operators and fields');
    if (!inserting && u._id !== undefined && !sameValue(u._id, doc._id)) throw immutableId();
    next = { ...clone(u), _id: u._id ?? doc._id };
    changed = inserting || !sameValue(withIdFirst(next), doc);
  } else {
    next = clone(doc);
    // mingo applies one operator per call; MongoDB applies them all to one document.
    for (const [op, arg] of Object.entries(u)) {
      if (!op.startsWith('$')) throw badValue(`Unknown modifier: ${op}. Expected a valid update modifier or pipeline-style update`);
      if (op === '$setOnInsert' && !inserting) continue;
      const expr = { [op === '$setOnInsert' ? '$set' : op]: arg } as any;
      if (mingoUpdate(next, expr, arrayFilters).length) changed = true;
    }
    if (!inserting && !sameValue(next._id, doc._id)) throw immutableId();
  }
  if (inserting && next._id === undefined) delete next._id;
  return { doc: withIdFirst(next), changed };
}
const immutableId = () =>
  new CommandError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");

// ---------------------------------------------------------------- the server

export class MongoWireServer {
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
  private readonly databases = new Map<string, Map<string, Collection>>();
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
  private readonly commands: Record<string, (cmd: Doc, ctx: Ctx) => Doc>;

  private constructor(opts: MongoWireServerOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.authEnabled = opts.username !== undefined || opts.password !== undefined;
    if (this.authEnabled) this.users.create('admin', opts.username ?? '', opts.password ?? '', [{ role: 'root', db: 'admin' }]);
    this.server = net.createServer((socket) => this.accept(socket));
    this.commands = this.buildCommands();
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

  // ------------------------------------------------------------ framing

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true); // replies are small; Nagle would add ~40 ms per round trip
    this.sockets.add(socket);
    const conn: Connection = { id: this.nextConnectionId++, socket, buffer: Buffer.alloc(0) };
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy()); // client resets are normal at shutdown
    socket.on('data', (chunk: Buffer) => {
      // A message may arrive in many chunks, and one chunk may hold several messages.
      conn.buffer = conn.buffer.length ? Buffer.concat([conn.buffer, chunk]) : chunk;
      while (conn.buffer.length >= 4) {
        const length = conn.buffer.readInt32LE(0);
        if (length < 16 || length > MAX_MESSAGE) return void socket.destroy();
        if (conn.buffer.length < length) break;
        const message = conn.buffer.subarray(0, length);
        conn.buffer = conn.buffer.subarray(length);
        try {
          this.onMessage(conn, message);
        } catch {
          return void socket.destroy(); // malformed message: a real server drops the connection too
        }
      }
    });
  }

  private onMessage(conn: Connection, msg: Buffer): void {
    const requestId = msg.readInt32LE(4);
    const opCode = msg.readInt32LE(12);
    if (opCode === OP_MSG) {
      const flags = msg.readUInt32LE(16);
      const end = msg.length - (flags & FLAG_CHECKSUM ? 4 : 0);
      let body: Doc | undefined;
      const sequences: Doc = {};
      for (let off = 20; off < end;) {
        const kind = msg[off++];
        const size = msg.readInt32LE(off);
        if (kind === 0) {
          body = deserialize(msg.subarray(off, off + size));
        } else if (kind === 1) {
          // Document sequence: int32 size, cstring identifier, then BSON documents.
          // The driver sends insert `documents`, update `updates`, delete `deletes` this way.
          const nul = msg.indexOf(0, off + 4);
          const docs: Doc[] = [];
          for (let p = nul + 1; p < off + size; p += msg.readInt32LE(p)) docs.push(deserialize(msg.subarray(p, p + msg.readInt32LE(p))));
          sequences[msg.toString('utf8', off + 4, nul)] = docs;
        } else {
          throw new Error(`unknown OP_MSG section kind ${kind}`);
        }
        off += size;
      }
      if (!body) throw new Error('OP_MSG without body');
      this.dispatch(conn, { ...body, ...sequences }, (reply) => {
        if (!(flags & FLAG_MORE_TO_COME)) this.write(conn, OP_MSG, requestId, Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), serialize(reply)]));
      });
    } else if (opCode === OP_QUERY) {
      // Legacy OP_QUERY: only the first handshake (`isMaster`/`hello` on admin.$cmd) uses it.
      const nul = msg.indexOf(0, 20);
      const db = msg.toString('utf8', 20, nul).split('.')[0];
      const docStart = nul + 1 + 8; // skip numberToSkip, numberToReturn
      let query = deserialize(msg.subarray(docStart, docStart + msg.readInt32LE(docStart)));
      if (isPlainObject(query.$query)) query = query.$query;
      const reply = serialize(this.runCommand(conn, { ...query, $db: db }));
      const head = Buffer.alloc(20); // responseFlags, cursorID (int64), startingFrom, numberReturned
      head.writeInt32LE(1, 16);
      this.write(conn, OP_REPLY, requestId, Buffer.concat([head, reply]));
    } else {
      throw new Error(`unsupported opcode ${opCode}`); // e.g. OP_COMPRESSED: we never offer compression
    }
  }

  private write(conn: Connection, opCode: number, responseTo: number, payload: Buffer): void {
    const header = Buffer.alloc(16);
    header.writeInt32LE(16 + payload.length, 0);
    header.writeInt32LE(this.nextRequestId++, 4);
    header.writeInt32LE(responseTo, 8);
    header.writeInt32LE(opCode, 12);
    if (!conn.socket.destroyed) conn.socket.write(Buffer.concat([header, payload]));
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
    const coll = this.databases.get(db)?.get(name);
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

  // ------------------------------------------------------------ storage

  private collection(db: string, name: unknown, create: boolean): Collection | undefined {
    if (typeof name !== 'string' || name === '') throw new CommandError(73, 'InvalidNamespace', `Invalid namespace specified '${db}.${String(name)}'`);
    let colls = this.databases.get(db);
    if (!colls && create) this.databases.set(db, (colls = new Map()));
    let coll = colls?.get(name);
    if (!coll && create) colls!.set(name, (coll = { docs: [], indexes: [{ v: 2, key: { _id: 1 }, name: '_id_' }] }));
    return coll;
  }

  /** Matching documents (the stored objects themselves), optionally sorted. */
  private static matching(coll: Collection | undefined, filter: Doc = {}, sort?: Doc): Doc[] {
    if (!coll) return [];
    const query = new Query(filter);
    const hits = coll.docs.filter((d) => query.test(d));
    return sort && Object.keys(sort).length ? find(hits, {}).sort(sort).all() as Doc[] : hits;
  }

  /** Applies a projection, keeping the stored field order (mingo puts included fields first). */
  private static project(doc: Doc, projection?: Doc): Doc {
    if (!projection || !Object.keys(projection).length) return doc;
    const projected = find([doc], {}, projection).all()[0] as Doc;
    const out: Doc = {};
    for (const k of [...Object.keys(doc), ...Object.keys(projected)]) if (k in projected && !(k in out)) out[k] = projected[k];
    return out;
  }

  /** Index key of `doc`: missing fields count as null, as in MongoDB; sparse indexes skip them. */
  private static indexKey(doc: Doc, idx: IndexSpec): Doc | undefined {
    const key: Doc = {};
    let present = false;
    for (const field of Object.keys(idx.key)) {
      const v = getPath(doc, field);
      if (v !== undefined) present = true;
      key[field] = v === undefined ? null : v;
    }
    return idx.sparse && !present ? undefined : key;
  }

  /** Throws E11000 if `candidate` would duplicate a unique key of another document (`replacing` excluded). */
  private static checkUnique(ns: string, coll: Collection, candidate: Doc, replacing?: Doc, indexes = coll.indexes): void {
    for (const idx of indexes) {
      if (idx.name !== '_id_' && !idx.unique) continue;
      const key = MongoWireServer.indexKey(candidate, idx);
      if (!key) continue;
      const wanted = keyString(Object.values(key));
      for (const other of coll.docs) {
        if (other === replacing || other === candidate) continue;
        const otherKey = MongoWireServer.indexKey(other, idx);
        if (otherKey && keyString(Object.values(otherKey)) === wanted) throw duplicateKey(ns, idx, key);
      }
    }
  }

  /** Builds the document an upsert inserts: filter equality fields, then the update. */
  private static upsertDoc(filter: Doc, u: unknown, arrayFilters?: Doc[]): Doc {
    const seed = equalityFields(filter);
    return applyUpdate(isPlainObject(u) && isOperatorUpdate(u) ? seed : { _id: seed._id }, u, true, arrayFilters).doc;
  }

  private static replace(coll: Collection, oldDoc: Doc, newDoc: Doc): void {
    coll.docs[coll.docs.indexOf(oldDoc)] = newDoc;
  }

  // ------------------------------------------------------------ commands

  private buildCommands(): Record<string, (cmd: Doc, ctx: Ctx) => Doc> {
    const S = MongoWireServer;
    const cursor = (ns: string, firstBatch: Doc[]) => ({ cursor: { firstBatch, id: Long.ZERO, ns }, ok: 1 });
    const hello = (legacy: boolean) => (cmd: Doc, ctx: Ctx): Doc => ({
      // A standalone: no setName, no topologyVersion (which would make the driver use
      // streaming `hello` monitoring that this server does not implement).
      [legacy ? 'ismaster' : 'isWritablePrimary']: true,
      ...(cmd.helloOk ? { helloOk: true } : {}),
      ...(this.users.mechanismsFor(cmd.saslSupportedMechs) ? { saslSupportedMechs: this.users.mechanismsFor(cmd.saslSupportedMechs) } : {}),
      maxBsonObjectSize: 16 * 1024 * 1024,
      maxMessageSizeBytes: MAX_MESSAGE,
      maxWriteBatchSize: 100_000,
      localTime: new Date(),
      logicalSessionTimeoutMinutes: 30, // the driver then sends `lsid` with commands; we ignore it
      connectionId: ctx.conn.id,
      minWireVersion: 0,
      maxWireVersion: MAX_WIRE_VERSION,
      readOnly: false,
      ok: 1,
    });

    const commands: Record<string, (cmd: Doc, ctx: Ctx) => Doc> = {
      hello: hello(false),
      isMaster: hello(true),
      ismaster: hello(true),
      ping: () => ({ ok: 1 }),
      buildInfo: () => ({ version: '6.0.0', versionArray: [6, 0, 0, 0], bits: 64, maxBsonObjectSize: 16 * 1024 * 1024, ok: 1 }),
      getParameter: (cmd) => ({
        ...(cmd.featureCompatibilityVersion || cmd.getParameter === '*' ? { featureCompatibilityVersion: { version: '6.0' } } : {}),
        ok: 1,
      }),
      connectionStatus: (_c, ctx) => {
        const user = ctx.conn.user && this.users.current(ctx.conn.user);
        return { authInfo: { authenticatedUsers: user ? [{ user: user.user, db: user.db }] : [], authenticatedUserRoles: user?.roles ?? [] }, ok: 1 };
      },
      endSessions: () => ({ ok: 1 }),
      killCursors: (cmd) => ({ cursorsKilled: [], cursorsNotFound: cmd.cursors ?? [], cursorsAlive: [], cursorsUnknown: [], ok: 1 }),
      getMore: (cmd) => { throw new CommandError(43, 'CursorNotFound', `cursor id ${cmd.getMore} not found`); },
      saslStart: (cmd, ctx) => {
        const { reply, state } = this.users.saslStart(cmd, ctx.db);
        ctx.conn.scram = state;
        return reply;
      },
      saslContinue: (cmd, ctx) => {
        const { reply, user } = this.users.saslContinue(cmd, ctx.conn.scram);
        if (user) ctx.conn.user = user;
        return reply;
      },
      createUser: (cmd, { db }) => this.users.command('createUser', cmd, db),
      updateUser: (cmd, { db }) => this.users.command('updateUser', cmd, db),
      dropUser: (cmd, { db }) => this.users.command('dropUser', cmd, db),
      usersInfo: (cmd, { db }) => this.users.command('usersInfo', cmd, db),
      configureFailPoint: (cmd, { db }) => {
        if (db !== 'admin') throw new CommandError(13, 'Unauthorized', 'configureFailPoint may only be run against the admin database.');
        return this.failPoint.configure(cmd);
      },

      listDatabases: (cmd) => {
        const all = [...this.databases].filter(([, colls]) => colls.size > 0).map(([name]) => ({ name, sizeOnDisk: 0, empty: false }));
        const dbs = cmd.filter ? find(all, cmd.filter).all() as Doc[] : all;
        return { databases: cmd.nameOnly ? dbs.map((d) => ({ name: d.name })) : dbs, totalSize: 0, totalSizeMb: 0, ok: 1 };
      },
      listCollections: (cmd, { db }) => {
        const infos = [...(this.databases.get(db) ?? new Map<string, Collection>()).keys()].map((name) => ({
          name, type: 'collection', options: {}, info: { readOnly: false }, idIndex: { v: 2, key: { _id: 1 }, name: '_id_' },
        }));
        const hits = (cmd.filter ? find(infos, cmd.filter).all() : infos) as Doc[];
        return cursor(`${db}.$cmd.listCollections`, cmd.nameOnly ? hits.map((c) => ({ name: c.name, type: c.type })) : hits);
      },
      create: (cmd, { db }) => {
        if (this.collection(db, cmd.create, false)) throw new CommandError(48, 'NamespaceExists', `Collection ${db}.${cmd.create} already exists.`);
        this.collection(db, cmd.create, true);
        return { ok: 1 };
      },
      // Like MongoDB 6.0 (and DocumentDB): dropping a missing collection is an error.
      drop: (cmd, { db }) => {
        const coll = this.collection(db, cmd.drop, false);
        if (!coll) throw new CommandError(26, 'NamespaceNotFound', 'ns not found');
        this.databases.get(db)!.delete(cmd.drop);
        return { ns: `${db}.${cmd.drop}`, nIndexesWas: coll.indexes.length, ok: 1 };
      },
      dropDatabase: (_cmd, { db }) => {
        this.databases.delete(db);
        return { dropped: db, ok: 1 };
      },

      createIndexes: (cmd, { db }) => {
        const existed = !!this.collection(db, cmd.createIndexes, false);
        const coll = this.collection(db, cmd.createIndexes, true)!;
        const before = coll.indexes.length;
        const added: IndexSpec[] = [];
        // Validate everything first so a failing command creates no index at all.
        for (const spec of (cmd.indexes ?? []) as Doc[]) {
          if (!isPlainObject(spec.key) || !Object.keys(spec.key).length || typeof spec.name !== 'string') throw badValue('index specification needs a non-empty key and a name');
          const idx: IndexSpec = {
            v: 2, key: spec.key, name: spec.name, ...(spec.unique ? { unique: true } : {}), ...(spec.sparse ? { sparse: true } : {}),
          };
          const all = [...coll.indexes, ...added];
          const sameName = all.find((i) => i.name === idx.name);
          if (sameName && sameValue(sameName, idx)) continue; // identical index already exists: fine
          if (sameName) throw new CommandError(86, 'IndexKeySpecsConflict', `An existing index has the same name as the requested index. Requested index: ${keyString(idx)}, existing index: ${keyString(sameName)}`);
          const sameKey = all.find((i) => sameValue(i.key, idx.key));
          if (sameKey) throw new CommandError(85, 'IndexOptionsConflict', `Index already exists with a different name: ${sameKey.name}`);
          if (idx.unique) for (const d of coll.docs) S.checkUnique(`${db}.${cmd.createIndexes}`, coll, d, undefined, [idx]);
          added.push(idx);
        }
        coll.indexes.push(...added);
        return {
          numIndexesBefore: before,
          numIndexesAfter: coll.indexes.length,
          createdCollectionAutomatically: !existed,
          ...(added.length ? {} : { note: 'all indexes already exist' }),
          ok: 1,
        };
      },
      listIndexes: (cmd, { db }) => {
        const coll = this.collection(db, cmd.listIndexes, false);
        if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns does not exist: ${db}.${cmd.listIndexes}`);
        return cursor(`${db}.${cmd.listIndexes}`, coll.indexes.map((i) => ({ ...i })));
      },
      dropIndexes: (cmd, { db }) => {
        const coll = this.collection(db, cmd.dropIndexes, false);
        if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns not found ${db}.${cmd.dropIndexes}`);
        const before = coll.indexes.length;
        const which = cmd.index;
        const drop = (i: IndexSpec) => i.name !== '_id_' && (which === '*' || i.name === which ||
          (Array.isArray(which) && which.includes(i.name)) || (isPlainObject(which) && sameValue(i.key, which)));
        if (which !== '*' && !coll.indexes.some(drop)) throw new CommandError(27, 'IndexNotFound', `index not found with name [${String(which)}]`);
        coll.indexes = coll.indexes.filter((i) => !drop(i));
        return { nIndexesWas: before, ok: 1 };
      },

      insert: (cmd, { db }) => {
        const ns = `${db}.${cmd.insert}`;
        const coll = this.collection(db, cmd.insert, true)!;
        let n = 0;
        const writeErrors: Doc[] = [];
        const docs = (cmd.documents ?? []) as Doc[];
        for (let index = 0; index < docs.length; index++) {
          try {
            const doc = withIdFirst(docs[index]);
            S.checkUnique(ns, coll, doc);
            coll.docs.push(doc);
            n++;
          } catch (e) {
            writeErrors.push(writeError(index, e));
            if (cmd.ordered !== false) break;
          }
        }
        return { n, ...(writeErrors.length ? { writeErrors } : {}), ok: 1 };
      },
      update: (cmd, { db }) => {
        const ns = `${db}.${cmd.update}`;
        let n = 0; let nModified = 0;
        const upserted: Doc[] = []; const writeErrors: Doc[] = [];
        const statements = (cmd.updates ?? []) as Doc[];
        for (let index = 0; index < statements.length; index++) {
          const s = statements[index];
          try {
            if (s.multi && isPlainObject(s.u) && !isOperatorUpdate(s.u)) throw new CommandError(9, 'FailedToParse', 'multi update is not supported for replacement-style update');
            const coll = this.collection(db, cmd.update, !!s.upsert);
            const hits = S.matching(coll, s.q);
            if (!hits.length && s.upsert) {
              const doc = S.upsertDoc(s.q ?? {}, s.u, s.arrayFilters);
              S.checkUnique(ns, coll!, doc);
              coll!.docs.push(doc);
              n++;
              upserted.push({ index, _id: doc._id });
            }
            for (const target of s.multi ? hits : hits.slice(0, 1)) {
              const { doc, changed } = applyUpdate(target, s.u, false, s.arrayFilters);
              n++;
              if (!changed) continue;
              S.checkUnique(ns, coll!, doc, target);
              S.replace(coll!, target, doc);
              nModified++;
            }
          } catch (e) {
            writeErrors.push(writeError(index, e));
            if (cmd.ordered !== false) break;
          }
        }
        return { n, nModified, ...(upserted.length ? { upserted } : {}), ...(writeErrors.length ? { writeErrors } : {}), ok: 1 };
      },
      delete: (cmd, { db }) => {
        const coll = this.collection(db, cmd.delete, false);
        let n = 0;
        for (const s of (cmd.deletes ?? []) as Doc[]) {
          const hits = S.matching(coll, s.q);
          const gone = new Set(s.limit === 1 ? hits.slice(0, 1) : hits);
          if (coll) coll.docs = coll.docs.filter((d) => !gone.has(d));
          n += gone.size;
        }
        return { n, ok: 1 };
      },

      find: (cmd, { db }) => {
        const hits = S.matching(this.collection(db, cmd.find, false), cmd.filter, cmd.sort);
        const page = hits.slice(cmd.skip ?? 0, cmd.limit ? (cmd.skip ?? 0) + Math.abs(cmd.limit) : undefined);
        return cursor(`${db}.${cmd.find}`, page.map((d) => S.project(d, cmd.projection)));
      },
      count: (cmd, { db }) => {
        let hits = S.matching(this.collection(db, cmd.count, false), cmd.query ?? {});
        hits = hits.slice(cmd.skip ?? 0, cmd.limit ? (cmd.skip ?? 0) + Math.abs(cmd.limit) : undefined);
        return { n: hits.length, ok: 1 };
      },
      distinct: (cmd, { db }) => {
        const values = new Map<string, unknown>();
        for (const d of S.matching(this.collection(db, cmd.distinct, false), cmd.query ?? {})) {
          const v = getPath(d, cmd.key);
          for (const x of Array.isArray(v) ? v : v === undefined ? [] : [v]) values.set(keyString(x), x);
        }
        return { values: [...values.values()], ok: 1 };
      },
      // countDocuments() is an aggregate ($match, $skip, $limit, $group with $sum).
      aggregate: (cmd, { db }) => {
        if (typeof cmd.aggregate !== 'string') throw badValue('only collection aggregates are supported');
        const docs = this.collection(db, cmd.aggregate, false)?.docs ?? [];
        const out = aggregate(docs, cmd.pipeline ?? [], { processingMode: ProcessingMode.CLONE_INPUT });
        return cursor(`${db}.${cmd.aggregate}`, out as Doc[]);
      },

      findAndModify: (cmd, { db, upsertSawNothing }) => {
        const name = cmd.findAndModify ?? cmd.findandmodify;
        const ns = `${db}.${name}`;
        const coll = this.collection(db, name, !!cmd.upsert);
        const target = upsertSawNothing ? undefined : S.matching(coll, cmd.query ?? {}, cmd.sort)[0];
        const out = (doc: Doc | undefined) => (doc ? S.project(doc, cmd.fields) : null);
        if (cmd.remove) {
          if (target) coll!.docs = coll!.docs.filter((d) => d !== target);
          return { lastErrorObject: { n: target ? 1 : 0 }, value: out(target), ok: 1 };
        }
        if (cmd.update === undefined) throw new CommandError(9, 'FailedToParse', 'Either an update or remove=true must be specified');
        if (target) {
          const { doc, changed } = applyUpdate(target, cmd.update, false, cmd.arrayFilters);
          if (changed) {
            S.checkUnique(ns, coll!, doc, target);
            S.replace(coll!, target, doc);
          }
          return { lastErrorObject: { n: 1, updatedExisting: true }, value: out(cmd.new ? doc : target), ok: 1 };
        }
        if (!cmd.upsert) return { lastErrorObject: { n: 0, updatedExisting: false }, value: null, ok: 1 };
        const doc = S.upsertDoc(cmd.query ?? {}, cmd.update, cmd.arrayFilters);
        try {
          S.checkUnique(ns, coll!, doc); // e.g. the filter missed because of `value < max`, but `_id` exists
        } catch (e) {
          if (upsertSawNothing) this.injectedUpsertCollisions++;
          throw e;
        }
        coll!.docs.push(doc);
        return { lastErrorObject: { n: 1, updatedExisting: false, upserted: doc._id }, value: cmd.new ? out(doc) : null, ok: 1 };
      },
    };
    commands.findandmodify = commands.findAndModify;
    commands.buildinfo = commands.buildInfo;
    return commands;
  }
}

/** Commands a client may run before authenticating. */
const PRE_AUTH_COMMANDS = new Set(['hello', 'isMaster', 'ismaster', 'ping', 'buildInfo', 'buildinfo', 'saslStart', 'saslContinue', 'endSessions']);

function duplicateKey(ns: string, idx: IndexSpec, key: Doc): CommandError {
  const shown = Object.entries(key).map(([k, v]) => `${k}: ${keyString(v)}`).join(', ');
  return new CommandError(11000, 'DuplicateKey', `E11000 duplicate key error collection: ${ns} index: ${idx.name} dup key: { ${shown} }`,
    { keyPattern: idx.key, keyValue: key });
}

/** A write error entry for insert/update results (the driver turns these into MongoBulkWriteError / MongoServerError). */
function writeError(index: number, e: unknown): Doc {
  if (e instanceof CommandError) return { index, code: e.code, errmsg: e.message, ...e.extra };
  return { index, code: 2, errmsg: (e as Error).message };
}

/** The reply to a failed command: `{ok: 0, errmsg, code, codeName, ...extra}` (extra: `errorLabels`, key details). */
function errorReply(e: CommandError): Doc {
  return { ok: 0, errmsg: e.message, code: e.code, codeName: e.codeName, ...e.extra };
}
