/* eslint-disable @typescript-eslint/member-ordering -- the store first, then the static helpers the commands use on it */
/**
 * The in-process MongoDB-wire server's storage: databases of collections of
 * documents, in memory, with unique indexes enforced (E11000), which is what
 * the DocumentDB counter's conditional upsert relies on.
 */
import { find, Query } from 'mingo';
import { CommandError } from './mongo-wire-auth';
import { applyUpdate, Doc, equalityFields, getPath, isOperatorUpdate, isPlainObject, keyString } from './mongo-wire-documents';

export interface IndexSpec { v: number; key: Doc; name: string; unique?: boolean; sparse?: boolean }

export interface Collection { docs: Doc[]; indexes: IndexSpec[] }

export class Storage {
  public readonly databases = new Map<string, Map<string, Collection>>();

  public collection(db: string, name: unknown, create: boolean): Collection | undefined {
    if (typeof name !== 'string' || name === '') throw new CommandError(73, 'InvalidNamespace', `Invalid namespace specified '${db}.${String(name)}'`);
    let colls = this.databases.get(db);
    if (!colls && create) this.databases.set(db, (colls = new Map()));
    let coll = colls?.get(name);
    if (!coll && create) colls!.set(name, (coll = { docs: [], indexes: [{ v: 2, key: { _id: 1 }, name: '_id_' }] }));
    return coll;
  }

  /** Matching documents (the stored objects themselves), optionally sorted. */
  public static matching(coll: Collection | undefined, filter: Doc = {}, sort?: Doc): Doc[] {
    if (!coll) return [];
    const query = new Query(filter);
    const hits = coll.docs.filter((d) => query.test(d));
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

  /** Throws E11000 if `candidate` would duplicate a unique key of another document (`replacing` excluded). */
  public static checkUnique(ns: string, coll: Collection, candidate: Doc, replacing?: Doc, indexes = coll.indexes): void {
    for (const idx of indexes) {
      if (idx.name !== '_id_' && !idx.unique) continue;
      const key = Storage.indexKey(candidate, idx);
      if (!key) continue;
      const wanted = keyString(Object.values(key));
      for (const other of coll.docs) {
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

  public static replace(coll: Collection, oldDoc: Doc, newDoc: Doc): void {
    coll.docs[coll.docs.indexOf(oldDoc)] = newDoc;
  }
}

export function duplicateKey(ns: string, idx: IndexSpec, key: Doc): CommandError {
  const shown = Object.entries(key).map(([k, v]) => `${k}: ${keyString(v)}`).join(', ');
  return new CommandError(11000, 'DuplicateKey', `E11000 duplicate key error collection: ${ns} index: ${idx.name} dup key: { ${shown} }`,
    { keyPattern: idx.key, keyValue: key });
}
