/* eslint-disable @typescript-eslint/member-ordering -- the store first, then the static helpers the commands use on it */
/**
 * The in-process MongoDB-wire server's storage: databases of collections of
 * committed documents, in memory, with unique indexes enforced (E11000),
 * which is what the DocumentDB counter's conditional upsert relies on.
 * Every document write goes through a transaction (mongo-wire-transactions.ts):
 * this file only holds what is committed, and the helpers that read it.
 */
import { find, Query } from 'mingo';
import { CommandError } from './mongo-wire-auth';
import { applyUpdate, Doc, equalityFields, getPath, isOperatorUpdate, isPlainObject, keyString } from './mongo-wire-documents';

export interface IndexSpec {
  v: number;
  key: Doc;
  name: string;
  unique?: boolean;
  sparse?: boolean;
  /** A TTL index: documents expire this many seconds after the date in the indexed field. */
  expireAfterSeconds?: number;
}

export interface Collection {
  /** Committed documents, in insertion order. */
  docs: Doc[];
  /** The same documents by `keyString(_id)`: point reads and commits do not scan. */
  byId: Map<string, Doc>;
  indexes: IndexSpec[];
}

/** What one reader sees of a collection: the committed documents, or a transaction's view of them. */
export interface DocView {
  /** Every visible document. */
  all(): Doc[];
  /** The visible document whose `_id` has this `keyString`, if any. */
  get(idKey: string): Doc | undefined;
}

export class Storage {
  public readonly databases = new Map<string, Map<string, Collection>>();

  public collection(db: string, name: unknown, create: boolean): Collection | undefined {
    if (typeof name !== 'string' || name === '') throw new CommandError(73, 'InvalidNamespace', `Invalid namespace specified '${db}.${String(name)}'`);
    let colls = this.databases.get(db);
    if (!colls && create) this.databases.set(db, (colls = new Map()));
    let coll = colls?.get(name);
    if (!coll && create) colls!.set(name, (coll = { docs: [], byId: new Map(), indexes: [{ v: 2, key: { _id: 1 }, name: '_id_' }] }));
    return coll;
  }

  /** The committed documents of a collection, as a view. */
  public static committed(coll: Collection): DocView {
    return { all: () => coll.docs, get: (idKey) => coll.byId.get(idKey) };
  }

  /**
   * Matching documents (the stored objects themselves), optionally sorted. A
   * filter with an `_id` equality reads that one document instead of scanning.
   */
  public static matching(view: DocView | undefined, filter: Doc = {}, sort?: Doc): Doc[] {
    if (!view) return [];
    const query = new Query(filter);
    const id = idEquality(filter);
    const candidates = id === undefined ? view.all() : [view.get(id)].filter((d): d is Doc => d !== undefined);
    const hits = candidates.filter((d) => query.test(d));
    return sort && Object.keys(sort).length ? find(hits, {}).sort(sort).all() as Doc[] : hits;
  }

  /** Applies a projection, keeping the stored field order (mingo puts included fields first). */
  public static project(doc: Doc, projection?: Doc): Doc {
    if (!projection || !Object.keys(projection).length) return doc;
    const projected = find([doc], {}, projection).all()[0] as Doc;
    const out: Doc = {};
    for (const k of [...Object.keys(doc), ...Object.keys(projected)]) if (k in projected && !(k in out)) out[k] = projected[k];
    return out;
  }

  /** Index key of `doc`: missing fields count as null, as in MongoDB; sparse indexes skip them. */
  public static indexKey(doc: Doc, idx: IndexSpec): Doc | undefined {
    const key: Doc = {};
    let present = false;
    for (const field of Object.keys(idx.key)) {
      const v = getPath(doc, field);
      if (v !== undefined) present = true;
      key[field] = v === undefined ? null : v;
    }
    return idx.sparse && !present ? undefined : key;
  }

  /** The unique indexes of a collection (`_id_` is always one). */
  public static uniqueIndexes(coll: Collection): IndexSpec[] {
    return coll.indexes.filter((idx) => idx.name === '_id_' || idx.unique);
  }

  /**
   * Throws E11000 if `candidate` would duplicate a unique key of another
   * document in `docs` (`replacing` excluded).
   */
  public static checkUnique(ns: string, docs: Iterable<Doc>, indexes: IndexSpec[], candidate: Doc, replacing?: Doc): void {
    for (const idx of indexes) {
      if (idx.name !== '_id_' && !idx.unique) continue;
      const key = Storage.indexKey(candidate, idx);
      if (!key) continue;
      const wanted = keyString(Object.values(key));
      for (const other of docs) {
        if (other === replacing || other === candidate) continue;
        const otherKey = Storage.indexKey(other, idx);
        if (otherKey && keyString(Object.values(otherKey)) === wanted) throw duplicateKey(ns, idx, key);
      }
    }
  }

  /** Builds the document an upsert inserts: filter equality fields, then the update. */
  public static upsertDoc(filter: Doc, u: unknown, arrayFilters?: Doc[]): Doc {
    const seed = equalityFields(filter);
    return applyUpdate(isPlainObject(u) && isOperatorUpdate(u) ? seed : { _id: seed._id }, u, true, arrayFilters).doc;
  }
}

/** `keyString` of the `_id` a filter pins by equality (`{_id: v}` or `{_id: {$eq: v}}`), else undefined. */
export function idEquality(filter: Doc): string | undefined {
  if (!Object.prototype.hasOwnProperty.call(filter, '_id')) return undefined;
  const v = filter._id;
  if (v instanceof RegExp) return undefined;
  if (isPlainObject(v) && Object.keys(v).some((k) => k.startsWith('$'))) {
    return Object.keys(v).length === 1 && '$eq' in v && !isPlainObject(v.$eq) ? keyString(v.$eq) : undefined;
  }
  return isPlainObject(v) || Array.isArray(v) ? undefined : keyString(v);
}

export function duplicateKey(ns: string, idx: IndexSpec, key: Doc): CommandError {
  const shown = Object.entries(key).map(([k, v]) => `${k}: ${keyString(v)}`).join(', ');
  return new CommandError(11000, 'DuplicateKey', `E11000 duplicate key error collection: ${ns} index: ${idx.name} dup key: { ${shown} }`,
    { keyPattern: idx.key, keyValue: key });
}
