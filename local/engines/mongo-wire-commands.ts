/**
 * The commands the in-process MongoDB-wire server answers: the handshake,
 * authentication (mongo-wire-auth.ts), the fail point (mongo-wire-faults.ts),
 * collections, indexes, CRUD, findAndModify and aggregate, and the end of a
 * transaction. Every read goes through the reader's view and every document
 * write through a transaction (mongo-wire-transactions.ts): a session's, or
 * the one-command transaction the server wraps a plain write in.
 */
import * as net from 'net';
import { Long } from 'bson';
import { ProcessingMode, aggregate, find } from 'mingo';
import { CommandError, ScramState, UserRecord, UserStore } from './mongo-wire-auth';
import { applyUpdate, badValue, Doc, getPath, isOperatorUpdate, isPlainObject, keyString, sameValue, withIdFirst, writeError } from './mongo-wire-documents';
import { FailPoint } from './mongo-wire-faults';
import { MAX_MESSAGE, MAX_WIRE_VERSION } from './mongo-wire-protocol';
import { Collection, IndexSpec, Storage } from './mongo-wire-storage';
import { LockWait, SessionTable, Transaction, TransactionEngine } from './mongo-wire-transactions';

export interface Connection {
  readonly id: number;
  readonly socket: net.Socket;
  buffer: Buffer;
  /** The user this connection authenticated as. */
  user?: UserRecord;
  scram?: ScramState;
}

export interface Ctx {
  db: string;
  conn: Connection;
  /** The command's query phase already ran (and found nothing): an upsert goes straight to its insert. */
  upsertSawNothing?: boolean;
  /**
   * The transaction the command runs in: the session's (`autocommit: false`)
   * or, for a write outside one, the server's one-command transaction.
   * Undefined for a read outside a transaction (it sees the last commits).
   */
  txn?: Transaction;
}

export type CommandHandler = (cmd: Doc, ctx: Ctx) => Doc;

/** What the commands need of the server. */
export interface CommandHost {
  readonly users: UserStore;
  readonly failPoint: FailPoint;
  readonly storage: Storage;
  readonly transactions: TransactionEngine;
  readonly sessions: SessionTable;
  /** `host:port` the server reports as its replica set member. */
  readonly address: string;
  /** The replica set name it reports (DocumentDB: always `rs0`). */
  readonly replicaSetName: string;
  /** Upserts that collided because of the server's injected upsert race. */
  injectedUpsertCollisions: number;
}

/**
 * A statement's error as a `writeErrors` entry. A wait for a lock is not an
 * error (the server runs the command again); in a session transaction a
 * WriteConflict fails the whole command (MongoDB answers it as a command
 * error with the `TransientTransactionError` label).
 */
function statementError(index: number, e: unknown, txn: Transaction | undefined): Doc {
  if (e instanceof LockWait) throw e;
  if (txn && !txn.implicit && e instanceof CommandError && (e.code === 112 || e.code === 251 || e.code === 263)) throw e;
  return writeError(index, e);
}

export function buildCommands(host: CommandHost): Record<string, CommandHandler> {
  const S = Storage;
  const cursor = (ns: string, firstBatch: Doc[]) => ({ cursor: { firstBatch, id: Long.ZERO, ns }, ok: 1 });
  const tx = host.transactions;
  const hello = (legacy: boolean) => (cmd: Doc, ctx: Ctx): Doc => ({
    // The primary of a one-member replica set, as a DocumentDB instance
    // reports itself (`rs0`): the driver allows transactions only there.
    // No topologyVersion (which would make the driver use streaming `hello`
    // monitoring that this server does not implement).
    [legacy ? 'ismaster' : 'isWritablePrimary']: true,
    secondary: false,
    setName: host.replicaSetName,
    setVersion: 1,
    hosts: [host.address],
    primary: host.address,
    me: host.address,
    ...(cmd.helloOk ? { helloOk: true } : {}),
    ...(host.users.mechanismsFor(cmd.saslSupportedMechs) ? { saslSupportedMechs: host.users.mechanismsFor(cmd.saslSupportedMechs) } : {}),
    maxBsonObjectSize: 16 * 1024 * 1024,
    maxMessageSizeBytes: MAX_MESSAGE,
    maxWriteBatchSize: 100_000,
    localTime: new Date(),
    logicalSessionTimeoutMinutes: 30, // the driver then sends `lsid` with commands (sessions, transactions)
    connectionId: ctx.conn.id,
    minWireVersion: 0,
    maxWireVersion: MAX_WIRE_VERSION,
    readOnly: false,
    ok: 1,
  });

  const commands: Record<string, CommandHandler> = {
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
      const user = ctx.conn.user && host.users.current(ctx.conn.user);
      return { authInfo: { authenticatedUsers: user ? [{ user: user.user, db: user.db }] : [], authenticatedUserRoles: user?.roles ?? [] }, ok: 1 };
    },
    endSessions: (cmd) => {
      host.sessions.end(Array.isArray(cmd.endSessions) ? cmd.endSessions : []);
      return { ok: 1 };
    },
    // Both run with the session's transaction (the server checked `txnNumber`).
    commitTransaction: (_cmd, { txn }) => {
      tx.commit(txn!);
      return { ok: 1 };
    },
    abortTransaction: (_cmd, { txn }) => {
      tx.abort(txn!);
      return { ok: 1 };
    },
    killCursors: (cmd) => ({ cursorsKilled: [], cursorsNotFound: cmd.cursors ?? [], cursorsAlive: [], cursorsUnknown: [], ok: 1 }),
    getMore: (cmd) => { throw new CommandError(43, 'CursorNotFound', `cursor id ${cmd.getMore} not found`); },
    saslStart: (cmd, ctx) => {
      const { reply, state } = host.users.saslStart(cmd, ctx.db);
      ctx.conn.scram = state;
      return reply;
    },
    saslContinue: (cmd, ctx) => {
      const { reply, user } = host.users.saslContinue(cmd, ctx.conn.scram);
      if (user) ctx.conn.user = user;
      return reply;
    },
    createUser: (cmd, { db }) => host.users.command('createUser', cmd, db),
    updateUser: (cmd, { db }) => host.users.command('updateUser', cmd, db),
    dropUser: (cmd, { db }) => host.users.command('dropUser', cmd, db),
    usersInfo: (cmd, { db }) => host.users.command('usersInfo', cmd, db),
    configureFailPoint: (cmd, { db }) => {
      if (db !== 'admin') throw new CommandError(13, 'Unauthorized', 'configureFailPoint may only be run against the admin database.');
      return host.failPoint.configure(cmd);
    },

    listDatabases: (cmd) => {
      const all = [...host.storage.databases].filter(([, colls]) => colls.size > 0).map(([name]) => ({ name, sizeOnDisk: 0, empty: false }));
      const dbs = cmd.filter ? find(all, cmd.filter).all() as Doc[] : all;
      return { databases: cmd.nameOnly ? dbs.map((d) => ({ name: d.name })) : dbs, totalSize: 0, totalSizeMb: 0, ok: 1 };
    },
    listCollections: (cmd, { db }) => {
      const infos = [...(host.storage.databases.get(db) ?? new Map<string, Collection>()).keys()].map((name) => ({
        name, type: 'collection', options: {}, info: { readOnly: false }, idIndex: { v: 2, key: { _id: 1 }, name: '_id_' },
      }));
      const hits = (cmd.filter ? find(infos, cmd.filter).all() : infos) as Doc[];
      return cursor(`${db}.$cmd.listCollections`, cmd.nameOnly ? hits.map((c) => ({ name: c.name, type: c.type })) : hits);
    },
    create: (cmd, { db }) => {
      if (host.storage.collection(db, cmd.create, false)) throw new CommandError(48, 'NamespaceExists', `Collection ${db}.${cmd.create} already exists.`);
      host.storage.collection(db, cmd.create, true);
      return { ok: 1 };
    },
    // Like MongoDB 6.0 (and DocumentDB): dropping a missing collection is an error.
    drop: (cmd, { db }) => {
      const coll = host.storage.collection(db, cmd.drop, false);
      if (!coll) throw new CommandError(26, 'NamespaceNotFound', 'ns not found');
      host.storage.databases.get(db)!.delete(cmd.drop);
      return { ns: `${db}.${cmd.drop}`, nIndexesWas: coll.indexes.length, ok: 1 };
    },
    dropDatabase: (_cmd, { db }) => {
      host.storage.databases.delete(db);
      return { dropped: db, ok: 1 };
    },

    createIndexes: (cmd, { db }) => {
      const existed = !!host.storage.collection(db, cmd.createIndexes, false);
      const coll = host.storage.collection(db, cmd.createIndexes, true)!;
      const before = coll.indexes.length;
      const added: IndexSpec[] = [];
      // Validate everything first so a failing command creates no index at all.
      for (const spec of (cmd.indexes ?? []) as Doc[]) {
        if (!isPlainObject(spec.key) || !Object.keys(spec.key).length || typeof spec.name !== 'string') throw badValue('index specification needs a non-empty key and a name');
        if (spec.expireAfterSeconds !== undefined && !(Number.isInteger(Number(spec.expireAfterSeconds)) && Number(spec.expireAfterSeconds) >= 0)) {
          throw new CommandError(67, 'CannotCreateIndex', 'expireAfterSeconds must be a non-negative integer');
        }
        const idx: IndexSpec = {
          v: 2,
          key: spec.key,
          name: spec.name,
          ...(spec.unique ? { unique: true } : {}),
          ...(spec.sparse ? { sparse: true } : {}),
          ...(spec.expireAfterSeconds !== undefined ? { expireAfterSeconds: Number(spec.expireAfterSeconds) } : {}),
        };
        const all = [...coll.indexes, ...added];
        const sameName = all.find((i) => i.name === idx.name);
        if (sameName && sameValue(sameName, idx)) continue; // identical index already exists: fine
        if (sameName) throw new CommandError(86, 'IndexKeySpecsConflict', `An existing index has the same name as the requested index. Requested index: ${keyString(idx)}, existing index: ${keyString(sameName)}`);
        const sameKey = all.find((i) => sameValue(i.key, idx.key));
        if (sameKey) throw new CommandError(85, 'IndexOptionsConflict', `Index already exists with a different name: ${sameKey.name}`);
        if (idx.unique) for (const d of coll.docs) S.checkUnique(`${db}.${cmd.createIndexes}`, coll.docs, [idx], d);
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
      const coll = host.storage.collection(db, cmd.listIndexes, false);
      if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns does not exist: ${db}.${cmd.listIndexes}`);
      return cursor(`${db}.${cmd.listIndexes}`, coll.indexes.map((i) => ({ ...i })));
    },
    dropIndexes: (cmd, { db }) => {
      const coll = host.storage.collection(db, cmd.dropIndexes, false);
      if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns not found ${db}.${cmd.dropIndexes}`);
      const before = coll.indexes.length;
      const which = cmd.index;
      const drop = (i: IndexSpec) => i.name !== '_id_' && (which === '*' || i.name === which ||
        (Array.isArray(which) && which.includes(i.name)) || (isPlainObject(which) && sameValue(i.key, which)));
      if (which !== '*' && !coll.indexes.some(drop)) throw new CommandError(27, 'IndexNotFound', `index not found with name [${String(which)}]`);
      coll.indexes = coll.indexes.filter((i) => !drop(i));
      return { nIndexesWas: before, ok: 1 };
    },

    insert: (cmd, { db, txn }) => {
      let n = 0;
      const writeErrors: Doc[] = [];
      const docs = (cmd.documents ?? []) as Doc[];
      tx.view(txn, db, cmd.insert, true);
      for (let index = 0; index < docs.length; index++) {
        try {
          tx.insert(txn!, db, cmd.insert, withIdFirst(docs[index]));
          n++;
        } catch (e) {
          writeErrors.push(statementError(index, e, txn));
          if (cmd.ordered !== false) break;
        }
      }
      return { n, ...(writeErrors.length ? { writeErrors } : {}), ok: 1 };
    },
    update: (cmd, { db, txn }) => {
      let n = 0; let nModified = 0;
      const upserted: Doc[] = []; const writeErrors: Doc[] = [];
      const statements = (cmd.updates ?? []) as Doc[];
      for (let index = 0; index < statements.length; index++) {
        const s = statements[index];
        try {
          if (s.multi && isPlainObject(s.u) && !isOperatorUpdate(s.u)) throw new CommandError(9, 'FailedToParse', 'multi update is not supported for replacement-style update');
          const hits = S.matching(tx.view(txn, db, cmd.update, !!s.upsert), s.q);
          if (!hits.length && s.upsert) {
            const doc = S.upsertDoc(s.q ?? {}, s.u, s.arrayFilters);
            tx.insert(txn!, db, cmd.update, doc);
            n++;
            upserted.push({ index, _id: doc._id });
          }
          for (const target of s.multi ? hits : hits.slice(0, 1)) {
            const { doc, changed } = applyUpdate(target, s.u, false, s.arrayFilters);
            n++;
            if (!changed) continue;
            tx.replace(txn!, db, cmd.update, target, doc);
            nModified++;
          }
        } catch (e) {
          writeErrors.push(statementError(index, e, txn));
          if (cmd.ordered !== false) break;
        }
      }
      return { n, nModified, ...(upserted.length ? { upserted } : {}), ...(writeErrors.length ? { writeErrors } : {}), ok: 1 };
    },
    delete: (cmd, { db, txn }) => {
      let n = 0;
      for (const s of (cmd.deletes ?? []) as Doc[]) {
        const hits = S.matching(tx.view(txn, db, cmd.delete), s.q);
        for (const d of s.limit === 1 ? hits.slice(0, 1) : hits) {
          tx.remove(txn!, db, cmd.delete, d);
          n++;
        }
      }
      return { n, ok: 1 };
    },

    find: (cmd, { db, txn }) => {
      const hits = S.matching(tx.view(txn, db, cmd.find), cmd.filter, cmd.sort);
      const page = hits.slice(cmd.skip ?? 0, cmd.limit ? (cmd.skip ?? 0) + Math.abs(cmd.limit) : undefined);
      return cursor(`${db}.${cmd.find}`, page.map((d) => S.project(d, cmd.projection)));
    },
    count: (cmd, { db, txn }) => {
      let hits = S.matching(tx.view(txn, db, cmd.count), cmd.query ?? {});
      hits = hits.slice(cmd.skip ?? 0, cmd.limit ? (cmd.skip ?? 0) + Math.abs(cmd.limit) : undefined);
      return { n: hits.length, ok: 1 };
    },
    distinct: (cmd, { db, txn }) => {
      const values = new Map<string, unknown>();
      for (const d of S.matching(tx.view(txn, db, cmd.distinct), cmd.query ?? {})) {
        const v = getPath(d, cmd.key);
        for (const x of Array.isArray(v) ? v : v === undefined ? [] : [v]) values.set(keyString(x), x);
      }
      return { values: [...values.values()], ok: 1 };
    },
    // countDocuments() is an aggregate ($match, $skip, $limit, $group with $sum).
    aggregate: (cmd, { db, txn }) => {
      if (typeof cmd.aggregate !== 'string') throw badValue('only collection aggregates are supported');
      const docs = tx.view(txn, db, cmd.aggregate)?.all() ?? [];
      const out = aggregate(docs, cmd.pipeline ?? [], { processingMode: ProcessingMode.CLONE_INPUT });
      return cursor(`${db}.${cmd.aggregate}`, out as Doc[]);
    },

    findAndModify: (cmd, { db, upsertSawNothing, txn }) => {
      const name = cmd.findAndModify ?? cmd.findandmodify;
      const view = tx.view(txn, db, name, !!cmd.upsert);
      const target = upsertSawNothing ? undefined : S.matching(view, cmd.query ?? {}, cmd.sort)[0];
      const out = (doc: Doc | undefined) => (doc ? S.project(doc, cmd.fields) : null);
      if (cmd.remove) {
        if (target) tx.remove(txn!, db, name, target);
        return { lastErrorObject: { n: target ? 1 : 0 }, value: out(target), ok: 1 };
      }
      if (cmd.update === undefined) throw new CommandError(9, 'FailedToParse', 'Either an update or remove=true must be specified');
      if (target) {
        const { doc, changed } = applyUpdate(target, cmd.update, false, cmd.arrayFilters);
        if (changed) tx.replace(txn!, db, name, target, doc);
        return { lastErrorObject: { n: 1, updatedExisting: true }, value: out(cmd.new ? doc : target), ok: 1 };
      }
      if (!cmd.upsert) return { lastErrorObject: { n: 0, updatedExisting: false }, value: null, ok: 1 };
      const doc = S.upsertDoc(cmd.query ?? {}, cmd.update, cmd.arrayFilters);
      try {
        tx.insert(txn!, db, name, doc); // e.g. the filter missed because of `value < max`, but `_id` exists: E11000
      } catch (e) {
        if (upsertSawNothing && e instanceof CommandError && e.code === 11000) host.injectedUpsertCollisions++;
        throw e;
      }
      return { lastErrorObject: { n: 1, updatedExisting: false, upserted: doc._id }, value: cmd.new ? out(doc) : null, ok: 1 };
    },
  };
  commands.findandmodify = commands.findAndModify;
  commands.buildinfo = commands.buildInfo;
  return commands;
}

/** Commands that write documents: outside a session transaction the server runs each in a one-command transaction. */
export const WRITE_COMMANDS = new Set(['insert', 'update', 'delete', 'findAndModify', 'findandmodify']);

/** Commands a session transaction may run (DocumentDB: CRUD, findAndModify, count, and the end of the transaction). */
export const TRANSACTION_COMMANDS = new Set([
  ...WRITE_COMMANDS, 'find', 'aggregate', 'count', 'distinct', 'commitTransaction', 'abortTransaction',
]);

/** Commands a client may run before authenticating. */
export const PRE_AUTH_COMMANDS = new Set(['hello', 'isMaster', 'ismaster', 'ping', 'buildInfo', 'buildinfo', 'saslStart', 'saslContinue', 'endSessions']);
