/**
 * Documents of the in-process MongoDB-wire server (mongo-wire-server.ts):
 * value comparison, field paths, update application (through mingo), and
 * the error shapes replies carry.
 */
import { Document, EJSON, ObjectId, deserialize, serialize } from 'bson';
// Registers every mingo operator ($group, $skip, ... are not in the default set).
import 'mingo/init/system';
import { update as mingoUpdate } from 'mingo';
import { CommandError } from './mongo-wire-auth';

export type Doc = Document;

export const badValue = (msg: string) => new CommandError(2, 'BadValue', msg);

/** Canonical string of a value; numbers compare by value (1 and 1.0 are one key, as in MongoDB). */
export const keyString = (v: unknown): string => EJSON.stringify(v === undefined ? null : (v as any), { relaxed: true });
export const sameValue = (a: unknown, b: unknown) => keyString(a) === keyString(b);
/** Deep copy that keeps BSON types (ObjectId, Date, Binary...). */
export const clone = (d: Doc): Doc => deserialize(serialize(d));

export const isPlainObject = (v: unknown): v is Doc =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v as any)._bsontype &&
  !(v instanceof Date) && !(v instanceof RegExp) && !(v instanceof Uint8Array);

export function getPath(doc: Doc, path: string): unknown {
  let cur: any = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = cur[part];
  }
  return cur;
}

export function setPath(doc: Doc, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur: any = doc;
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(cur[part])) cur[part] = {};
    cur = cur[part];
  }
  cur[parts[parts.length - 1]] = value;
}

/** MongoDB stores `_id` as the first field; generate an ObjectId when it is missing. */
export function withIdFirst(doc: Doc): Doc {
  const { _id, ...rest } = doc;
  return { _id: _id === undefined ? new ObjectId() : _id, ...rest };
}

/**
 * The fields an upsert copies from its filter: top-level equality conditions
 * (`{a: 1}`, `{a: {$eq: 1}}`, inside `$and`), as MongoDB does. `{value: {$lt: 10}}`
 * contributes nothing.
 */
export function equalityFields(filter: Doc, out: Doc = {}): Doc {
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

export const isOperatorUpdate = (u: Doc) => Object.keys(u).length > 0 && Object.keys(u)[0].startsWith('$');

/**
 * Computes the updated version of `doc` without mutating it.
 * `inserting` enables `$setOnInsert` and allows `_id` to be set (upserts).
 */
export function applyUpdate(doc: Doc, u: unknown, inserting: boolean, arrayFilters?: Doc[]): { doc: Doc; changed: boolean } {
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
export const immutableId = () =>
  new CommandError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");

/** A write error entry for insert/update results (the driver turns these into MongoBulkWriteError / MongoServerError). */
export function writeError(index: number, e: unknown): Doc {
  if (e instanceof CommandError) return { index, code: e.code, errmsg: e.message, ...e.extra };
  return { index, code: 2, errmsg: (e as Error).message };
}

/** The reply to a failed command: `{ok: 0, errmsg, code, codeName, ...extra}` (extra: `errorLabels`, key details). */
export function errorReply(e: CommandError): Doc {
  return { ok: 0, errmsg: e.message, code: e.code, codeName: e.codeName, ...e.extra };
}
