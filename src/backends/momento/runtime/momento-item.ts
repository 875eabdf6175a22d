import { randomBytes } from 'crypto';
import { BackendUnavailableError } from '../../../runtime/errors';

/**
 * What the Momento store keeps in the cache, and how it reads it back
 * (docs/momento.md, "What is stored"): a counter's item, decimal or
 * structured, and an Idempotency-Key's record.
 */

/**
 * A key record's item name: this prefix, then the Idempotency-Key verbatim.
 * Counter ids never contain control characters (the request parser rejects
 * them), so no counter id can name a key record.
 */
export const KEY_RECORD_PREFIX = '\u0001k\u0001';

/**
 * A keyed change kept in its counter's item until its key record holds the
 * outcome: [by, the counter it produced, the key record's expiry (epoch ms)].
 */
export type Entry = [by: number, counter: number, expiresAt: number];

/** A counter item as read: its exact text (what a conditional write compares with), value and pending keyed changes. */
export interface CounterItem {
  /** The stored text; undefined for a missing item. */
  readonly raw?: string;
  readonly value: number;
  /** Idempotency-Key → entry, oldest first. */
  readonly entries: ReadonlyMap<string, Entry>;
  /**
   * Drop history, held while the item is structured: a random `epoch` set
   * when it becomes structured, and `drops`, the number of writes since then
   * that dropped settled entries. Equal epoch and drops in two reads prove
   * no entry was dropped between them.
   */
  readonly epoch?: string;
  readonly drops: number;
  /**
   * The drop watermark: no entry whose expiry is above it was ever dropped
   * from this item (structured items only; undefined when unknown: a
   * decimal, or a document written before the watermark existed with drops).
   * A keyed change whose record expiry is above it knows, from this read
   * alone, that none of its own entries was dropped before the read.
   */
  readonly dropMark?: number;
}

/** A key record as read or written: what the key is bound to, until when, and (once known) the counter its change produced. */
export interface KeyRecord {
  /** The stored text, compared by `setIfEqual` when the record is changed. */
  readonly raw: string;
  readonly id: string;
  readonly by: number;
  /** Epoch ms after which the key is new again (checked here, not only by the item's TTL). */
  readonly exp: number;
  readonly counter?: number;
  /** Set by a request that applies under a record it did not create (`MomentoKeyedChange.join`). */
  readonly joined?: string;
}

const DECIMAL = /^-?\d+$/;
const NO_ENTRIES: ReadonlyMap<string, Entry> = new Map();
export const MISSING: CounterItem = { value: 0, entries: NO_ENTRIES, drops: 0, dropMark: 0 };

/** The entries of an item whose retention has not ended. */
export function liveEntries(item: CounterItem): Map<string, Entry> {
  const now = Date.now();
  return new Map([...item.entries].filter(([, [, , exp]]) => exp > now));
}

/** One use of a key: the key and its record's expiry. */
export function settledId(key: string, exp: number): string {
  return `${exp}:${key}`;
}

/**
 * The item's text: the decimal alone when no keyed change is pending, so
 * `increment` works on it again (its drop history goes with it: a later
 * structured item has a new epoch).
 */
export function itemText(value: number, entries: ReadonlyMap<string, Entry>, epoch: string, drops: number, dropMark?: number): string {
  if (entries.size === 0) return String(value);
  const k = [...entries].map(([key, [by, counter, exp]]) => [key, by, counter, exp]);
  // A watermark of 0 (nothing ever dropped) is left out: the document of a
  // counter that never dropped an entry keeps its earlier shape.
  return JSON.stringify({ v: value, k, e: epoch, d: drops, ...(dropMark ? { x: dropMark } : {}) });
}

/** 72 random bits: two epochs of one item never collide in practice. */
export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

export function parseItem(id: string, text: string): CounterItem {
  if (DECIMAL.test(text)) {
    const value = Number(text);
    if (Number.isSafeInteger(value)) return { raw: text, value, entries: NO_ENTRIES, drops: 0 };
    // Only a step past the safe integers puts this here, and the store
    // undoes it at once: retry.
    throw new BackendUnavailableError(`Momento item "${id}" holds ${text}, outside the safe integers (a step past them being undone); retry`);
  }
  const parsed = text.startsWith('{') ? tryParseJson(text) : undefined;
  const { v, k, e, d, x } = parsed ?? {};
  if (Number.isSafeInteger(v) && Array.isArray(k) && k.every(isEntryRow) && typeof e === 'string' && Number.isSafeInteger(d)
    && (x === undefined || Number.isSafeInteger(x))) {
    const entries = new Map<string, Entry>();
    for (const [key, by, counter, exp] of k as Array<[string, number, number, number]>) entries.set(key, [by, counter, exp]);
    // No `x`: nothing dropped when `d` is 0; unknown otherwise.
    const dropMark = x !== undefined ? x as number : d === 0 ? 0 : undefined;
    return { raw: text, value: v as number, entries, epoch: e, drops: d as number, dropMark };
  }
  // Not ours: something else wrote this key. Never overwrite it.
  throw new Error(`Momento item "${id}" does not hold a counter`);
}

function isEntryRow(row: unknown): boolean {
  return Array.isArray(row) && row.length === 4 && typeof row[0] === 'string'
    && Number.isSafeInteger(row[1]) && Number.isSafeInteger(row[2]) && Number.isSafeInteger(row[3]);
}

function tryParseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

export function tryParseKeyRecord(text: string): Omit<KeyRecord, 'raw'> | undefined {
  const r = tryParseJson(text);
  if (!r || typeof r.id !== 'string' || !Number.isSafeInteger(r.by) || !Number.isSafeInteger(r.exp)) return undefined;
  if (r.counter !== undefined && !Number.isSafeInteger(r.counter)) return undefined;
  if (r.joined !== undefined && typeof r.joined !== 'string') return undefined;
  return {
    id: r.id,
    by: r.by as number,
    exp: r.exp as number,
    ...(r.counter !== undefined ? { counter: r.counter as number } : {}),
    ...(r.joined !== undefined ? { joined: r.joined as string } : {}),
  };
}

export function parseKeyRecord(text: string, key: string): KeyRecord {
  const recorded = tryParseKeyRecord(text);
  if (!recorded) throw new Error(`Momento key record of Idempotency-Key "${key}" is not one this store wrote`);
  return { raw: text, ...recorded };
}

/** A key record's text: the binding, its expiry, then what is known of its use. */
export function keyRecordText(record: Omit<KeyRecord, 'raw'>): string {
  const { id, by, exp, counter, joined } = record;
  return JSON.stringify({ id, by, exp, ...(counter !== undefined ? { counter } : {}), ...(joined !== undefined ? { joined } : {}) });
}
