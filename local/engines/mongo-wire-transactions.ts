/**
 * Transactions of the in-process MongoDB-wire server (mongo-wire-server.ts):
 * sessions, multi-document transactions with snapshot isolation, document
 * locks, and the one-command transactions every write outside a session
 * transaction runs in. Enough of MongoDB's (and DocumentDB's) behaviour for
 * what the DocumentDB counter does with a transaction, and nothing more:
 *
 * - **Snapshot reads.** A transaction reads the documents as they were
 *   committed when it started (its first command), plus its own writes.
 *   Readers outside it see the last committed version only; an abort
 *   discards every write.
 * - **Write locks, first writer wins.** A transaction that writes a document
 *   holds that document (its `_id` and its unique index keys) until it
 *   commits or aborts. Another transaction writing it gets `112
 *   WriteConflict` with the `TransientTransactionError` label, and so does a
 *   transaction writing a document someone committed after its snapshot.
 * - **Writes outside a transaction wait.** A plain write that touches a
 *   document a transaction holds waits until that transaction ends, then
 *   runs (MongoDB: "the write waits until the transaction ends"; DocumentDB:
 *   document-level write locks, with a one-minute bound). The server runs
 *   such a write as a one-command transaction that is either committed whole
 *   or discarded and run again once the lock is free.
 * - **A lifetime.** A transaction still open after `lifetimeMs` (DocumentDB:
 *   one minute, not configurable) is aborted and its locks released.
 *
 * Not modelled: prepared transactions, read concern levels (DocumentDB runs
 * every transaction at snapshot isolation whatever is asked), retryable
 * commits (DocumentDB has none: a commit for a transaction that is no longer
 * in progress answers 251, even one that committed).
 */
import { CommandError } from './mongo-wire-auth';
import { Doc, keyString } from './mongo-wire-documents';
import { Collection, DocView, duplicateKey, Storage } from './mongo-wire-storage';

export type TransactionState = 'open' | 'committed' | 'aborted';

/** One document write staged by a transaction: its new version, or undefined for a delete. */
interface StagedWrite {
  readonly db: string;
  readonly coll: string;
  readonly idKey: string;
  after: Doc | undefined;
}

export class Transaction {
  public state: TransactionState = 'open';
  /** Why it was aborted, for the error a later command gets. */
  public abortReason?: string;
  /** Staged writes by namespace, then by `keyString(_id)`. */
  public readonly staged = new Map<string, Map<string, StagedWrite>>();
  /** Lock names this transaction holds. */
  public readonly held = new Set<string>();
  /** Resolves when the transaction commits or aborts (writers waiting on its locks run again then). */
  public readonly ended: Promise<void>;
  /** @internal */
  public resolveEnded!: () => void;
  /** @internal */
  public timer?: NodeJS.Timeout;

  constructor(
    /** Commit timestamp the transaction reads at. */
    public readonly snapshot: number,
    /** A single command outside a session transaction: never conflicts, waits instead; reads the latest commits. */
    public readonly implicit: boolean,
  ) {
    this.ended = new Promise<void>((resolve) => { this.resolveEnded = resolve; });
  }

  /** This transaction's own writes to one namespace. */
  public writes(ns: string): Map<string, StagedWrite> | undefined {
    return this.staged.get(ns);
  }
}

/**
 * Thrown (inside the server only) when a one-command transaction touches a
 * document a session transaction holds: the command is discarded and run
 * again once `holder` has ended.
 */
export class LockWait extends Error {
  constructor(public readonly holder: Transaction) {
    super('waiting for a transaction lock');
  }
}

export const writeConflict = () => new CommandError(112, 'WriteConflict',
  'WriteConflict error: this operation conflicted with another operation. Please retry your operation or multi-document transaction.',
  { errorLabels: ['TransientTransactionError'] });

/** Commits, aborts, locks and snapshots of one server. */
export class TransactionEngine {
  /** Logical clock: the commit timestamp of the last commit. */
  public clock = 0;
  /** Session transactions still open. */
  public readonly open = new Set<Transaction>();
  private readonly locks = new Map<string, Transaction>();
  /** `_id` lock name → commit timestamp of the document's last write (only while a session transaction may compare). */
  private readonly lastWrite = new Map<string, number>();
  /** The version each commit replaced, kept while an open transaction's snapshot is older. */
  private history: Array<{ ts: number; ns: string; idKey: string; before: Doc | undefined }> = [];

  constructor(private readonly storage: Storage, private readonly lifetimeMs: number) {}

  /** Starts a transaction: a session's (with its lifetime) or one command's. */
  public begin(implicit: boolean): Transaction {
    const txn = new Transaction(this.clock, implicit);
    if (!implicit) {
      this.open.add(txn);
      txn.timer = setTimeout(() => this.abort(txn, 'transaction exceeded its lifetime and was aborted'), this.lifetimeMs);
      txn.timer.unref?.();
    }
    return txn;
  }

  /**
   * What `txn` sees of `db.name`: its snapshot plus its own writes (a
   * one-command transaction: the latest commits plus its own writes; no
   * transaction: the latest commits). A session transaction may not touch a
   * collection that does not exist (DocumentDB: "cannot query/update against
   * non-existing collections"); `create` makes one for a write outside it.
   */
  public view(txn: Transaction | undefined, db: string, name: unknown, create = false): DocView | undefined {
    const inSession = txn !== undefined && !txn.implicit;
    const coll = this.storage.collection(db, name, create && !inSession);
    if (!coll) {
      if (inSession) {
        throw new CommandError(263, 'OperationNotSupportedInTransaction',
          `Cannot create or use the non-existent collection ${db}.${String(name)} in a multi-document transaction`);
      }
      return undefined;
    }
    if (!txn) return Storage.committed(coll);
    const ns = `${db}.${String(name)}`;
    const own = txn.writes(ns);
    const past = txn.implicit ? undefined : this.versionsAt(ns, txn.snapshot);
    if (!own?.size && !past?.size) return Storage.committed(coll);
    return {
      get: (idKey) => {
        const mine = own?.get(idKey);
        if (mine) return mine.after;
        if (past?.has(idKey)) return past.get(idKey);
        return coll.byId.get(idKey);
      },
      all: () => {
        const out: Doc[] = [];
        for (const d of coll.docs) {
          const k = keyString(d._id);
          if (!own?.has(k) && !past?.has(k)) out.push(d);
        }
        for (const [k, d] of past ?? []) if (d && !own?.has(k)) out.push(d);
        for (const w of own?.values() ?? []) if (w.after) out.push(w.after);
        return out;
      },
    };
  }

  /** Stages an insert. Throws E11000 (a visible duplicate), WriteConflict, or LockWait. */
  public insert(txn: Transaction, db: string, name: string, doc: Doc): void {
    const coll = this.writable(txn, db, name);
    const view = this.view(txn, db, name)!;
    this.lock(txn, db, name, coll, [doc]);
    const ns = `${db}.${name}`;
    // The `_id` by lookup, other unique keys by scan (the counter's collections have none).
    if (view.get(keyString(doc._id))) throw duplicateKey(ns, coll.indexes.find((i) => i.name === '_id_')!, { _id: doc._id });
    const secondary = Storage.uniqueIndexes(coll).filter((i) => i.name !== '_id_');
    if (secondary.length) Storage.checkUnique(ns, view.all(), secondary, doc);
    this.checkNotCommittedSince(txn, db, name, coll, doc);
    this.stage(txn, db, name, doc._id, doc);
  }

  /** Stages a replacement of `oldDoc` (as `txn` sees it) by `newDoc` (same `_id`). */
  public replace(txn: Transaction, db: string, name: string, oldDoc: Doc, newDoc: Doc): void {
    const coll = this.writable(txn, db, name);
    const view = this.view(txn, db, name)!;
    this.lock(txn, db, name, coll, [oldDoc, newDoc]);
    this.checkNotCommittedSince(txn, db, name, coll, newDoc, oldDoc);
    const secondary = Storage.uniqueIndexes(coll).filter((i) => i.name !== '_id_');
    if (secondary.length) Storage.checkUnique(`${db}.${name}`, view.all(), secondary, newDoc, oldDoc);
    this.stage(txn, db, name, newDoc._id, newDoc);
  }

  /** Stages a delete of `doc` (as `txn` sees it). */
  public remove(txn: Transaction, db: string, name: string, doc: Doc): void {
    const coll = this.writable(txn, db, name);
    this.lock(txn, db, name, coll, [doc]);
    this.checkNotCommittedSince(txn, db, name, coll, doc, doc, false);
    this.stage(txn, db, name, doc._id, undefined);
  }

  /** Makes every staged write visible at one new timestamp and releases the locks. */
  public commit(txn: Transaction): void {
    if (txn.state !== 'open') throw new Error('commit of a transaction that is not open');
    const writes = [...txn.staged.values()].flatMap((m) => [...m.values()]);
    if (writes.length) {
      const ts = ++this.clock;
      const keepHistory = [...this.open].some((t) => t !== txn);
      for (const w of writes) {
        const coll = this.storage.collection(w.db, w.coll, true)!;
        const before = coll.byId.get(w.idKey);
        if (w.after) {
          if (before) coll.docs[coll.docs.indexOf(before)] = w.after;
          else coll.docs.push(w.after);
          coll.byId.set(w.idKey, w.after);
        } else if (before) {
          coll.docs.splice(coll.docs.indexOf(before), 1);
          coll.byId.delete(w.idKey);
        }
        if (keepHistory) {
          this.history.push({ ts, ns: `${w.db}.${w.coll}`, idKey: w.idKey, before });
          this.lastWrite.set(idLock(w.db, w.coll, w.idKey), ts);
        }
      }
    }
    this.end(txn, 'committed');
  }

  /** Discards every staged write and releases the locks. Ending an ended transaction does nothing. */
  public abort(txn: Transaction, reason = 'transaction aborted'): void {
    if (txn.state !== 'open') return;
    txn.abortReason = reason;
    this.end(txn, 'aborted');
  }

  // ------------------------------------------------------------ internals

  private writable(txn: Transaction, db: string, name: string): Collection {
    if (txn.state !== 'open') throw new CommandError(251, 'NoSuchTransaction', txn.abortReason ?? 'transaction is not in progress');
    const coll = this.storage.collection(db, name, txn.implicit);
    if (!coll) this.view(txn, db, name); // throws the "non-existent collection" error
    return coll!;
  }

  /** Takes the `_id` and unique-key locks of `docs` for `txn`; someone else holds one: conflict (or wait). */
  private lock(txn: Transaction, db: string, name: string, coll: Collection, docs: Doc[]): void {
    const names = new Set<string>();
    for (const doc of docs) {
      names.add(idLock(db, name, keyString(doc._id)));
      for (const idx of Storage.uniqueIndexes(coll)) {
        if (idx.name === '_id_') continue;
        const key = Storage.indexKey(doc, idx);
        if (key) names.add(`${db}.${name}\u0000${idx.name}\u0000${keyString(Object.values(key))}`);
      }
    }
    for (const lock of names) {
      const holder = this.locks.get(lock);
      if (holder && holder !== txn) {
        if (txn.implicit) throw new LockWait(holder);
        throw writeConflict();
      }
    }
    for (const lock of names) {
      this.locks.set(lock, txn);
      txn.held.add(lock);
    }
  }

  /**
   * First committer wins: a session transaction may not write a document
   * (or take a unique key) that someone committed after its snapshot.
   */
  private checkNotCommittedSince(txn: Transaction, db: string, name: string, coll: Collection, doc: Doc, replacing?: Doc, keys = true): void {
    if (txn.implicit) return;
    const committed = this.lastWrite.get(idLock(db, name, keyString(doc._id))) ?? 0;
    if (committed > txn.snapshot) throw writeConflict();
    // A unique key another document took after the snapshot (invisible to it, so not an E11000 yet).
    const secondary = Storage.uniqueIndexes(coll).filter((i) => i.name !== '_id_');
    if (!keys || !secondary.length) return;
    const own = txn.writes(`${db}.${name}`);
    const others = coll.docs.filter((d) => d !== replacing && !own?.has(keyString(d._id)));
    try {
      Storage.checkUnique(`${db}.${name}`, others, secondary, doc, replacing);
    } catch (e) {
      if (e instanceof CommandError && e.code === 11000) throw writeConflict();
      throw e;
    }
  }

  private stage(txn: Transaction, db: string, name: string, id: unknown, after: Doc | undefined): void {
    const ns = `${db}.${name}`;
    let writes = txn.staged.get(ns);
    if (!writes) txn.staged.set(ns, (writes = new Map()));
    const idKey = keyString(id);
    const existing = writes.get(idKey);
    if (existing) {
      // Map order is first-write order; a document written twice keeps its place.
      existing.after = after;
    } else {
      writes.set(idKey, { db, coll: name, idKey, after });
    }
  }

  /** Versions at `snapshot` of the documents of `ns` committed since (undefined: did not exist). */
  private versionsAt(ns: string, snapshot: number): Map<string, Doc | undefined> | undefined {
    let out: Map<string, Doc | undefined> | undefined;
    for (const h of this.history) {
      if (h.ts <= snapshot || h.ns !== ns) continue;
      if (!out) out = new Map();
      // The first change after the snapshot replaced the version the snapshot saw.
      if (!out.has(h.idKey)) out.set(h.idKey, h.before);
    }
    return out;
  }

  private end(txn: Transaction, state: TransactionState): void {
    txn.state = state;
    if (txn.timer) clearTimeout(txn.timer);
    for (const lock of txn.held) if (this.locks.get(lock) === txn) this.locks.delete(lock);
    txn.held.clear();
    txn.staged.clear();
    this.open.delete(txn);
    this.prune();
    txn.resolveEnded();
  }

  /** Drops history and write stamps no open snapshot can ask about. */
  private prune(): void {
    if (!this.open.size) {
      this.history = [];
      this.lastWrite.clear();
      return;
    }
    const oldest = Math.min(...[...this.open].map((t) => t.snapshot));
    if (this.history.length && this.history[0].ts <= oldest) this.history = this.history.filter((h) => h.ts > oldest);
  }
}

function idLock(db: string, coll: string, idKey: string): string {
  return `${db}.${coll}\u0000_id\u0000${idKey}`;
}

/** The state of one logical session (`lsid`) on the server. */
export interface ServerSession {
  /** Highest transaction number started on this session (-1: none). */
  txnNumber: number;
  /** Its transaction, once started (the last one; it may have ended). */
  txn?: Transaction;
}

/** Sessions by `keyString(lsid.id)`. */
export class SessionTable {
  private readonly sessions = new Map<string, ServerSession>();

  constructor(private readonly engine: TransactionEngine) {}

  public get(lsid: unknown): ServerSession {
    const key = keyString((lsid as Doc | undefined)?.id ?? lsid);
    let session = this.sessions.get(key);
    if (!session) this.sessions.set(key, (session = { txnNumber: -1 }));
    return session;
  }

  /** `endSessions`: their open transactions are aborted. */
  public end(lsids: unknown[]): void {
    for (const lsid of lsids) {
      const key = keyString((lsid as Doc | undefined)?.id ?? lsid);
      const session = this.sessions.get(key);
      if (session?.txn) this.engine.abort(session.txn, 'session ended');
      this.sessions.delete(key);
    }
  }

  /**
   * The transaction a command with `txnNumber` (and `autocommit: false`)
   * runs in: a new one with `startTransaction`, else the session's open one
   * with that number. DocumentDB's answer to anything else: 251.
   */
  public transactionFor(session: ServerSession, txnNumber: number, start: boolean): Transaction {
    if (start) {
      if (txnNumber <= session.txnNumber) {
        throw new CommandError(225, 'TransactionTooOld', `Cannot start transaction ${txnNumber} on session because a newer transaction ${session.txnNumber} has already started`);
      }
      if (session.txn) this.engine.abort(session.txn, 'a newer transaction started on the session');
      session.txnNumber = txnNumber;
      session.txn = this.engine.begin(false);
      return session.txn;
    }
    if (txnNumber !== session.txnNumber || !session.txn || session.txn.state !== 'open') {
      throw new CommandError(251, 'NoSuchTransaction', `Given transaction number ${txnNumber} does not match any in-progress transactions.`);
    }
    return session.txn;
  }
}

/** Documents in `coll` whose TTL index says they expired by `now` (the TTL monitor deletes them). */
export function expiredDocs(coll: Collection, now: number): Doc[] {
  const ttl = coll.indexes.filter((i) => typeof i.expireAfterSeconds === 'number' && Object.keys(i.key).length === 1);
  if (!ttl.length) return [];
  return coll.docs.filter((d) => ttl.some((idx) => {
    const v = d[Object.keys(idx.key)[0]];
    const dates = (Array.isArray(v) ? v : [v]).filter((x): x is Date => x instanceof Date);
    // MongoDB: the earliest date of an array counts; a non-date never expires.
    return dates.length > 0 && Math.min(...dates.map((x) => x.getTime())) + idx.expireAfterSeconds! * 1000 <= now;
  }));
}

export { duplicateKey };
