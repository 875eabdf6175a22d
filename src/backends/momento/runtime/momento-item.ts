import { randomBytes } from 'crypto';
import type { KeyedWrite } from './momento-counter-store';
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
  /**
   * Slot 0 of a sharded id (docs/momento.md, "Sharded counters"): the width
   * and the grant ledger. Absent on an unsharded item and on slots i > 0.
   */
  readonly shard?: SlotZero;
}

/**
 * What slot 0 of a sharded id holds besides its own value: the width W
 * (only ever raised) and `grants[i − 1]`, the share of the maximum granted
 * so far to slot i (1 ≤ i < W; only ever raised, never taken back).
 */
export interface SlotZero {
  readonly width: number;
  readonly grants: readonly number[];
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
  /** The change went to a slot of a sharded id: `counter` is that slot's value, and a replay answers without it. */
  readonly sharded?: true;
  /** A sharded id: the slot this use of the key writes to (absent: slot 0). */
  readonly slot?: number;
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
export function itemText(
  value: number, entries: ReadonlyMap<string, Entry>, epoch: string, drops: number, dropMark?: number, shard?: SlotZero,
): string {
  const k = [...entries].map(([key, [by, counter, exp]]) => [key, by, counter, exp]);
  // A watermark of 0 (nothing ever dropped) is left out: the document of a
  // counter that never dropped an entry keeps its earlier shape.
  // Slot 0 of a sharded id, never a decimal, keeps its drop history while
  // it is known even without entries (a keyed change reading every slot
  // then needs no extra record read for it); an unknown one is left out
  // (`d` 0 without `x` would read as "nothing dropped").
  const keep = entries.size > 0 || (shard !== undefined && dropMark !== undefined);
  const history = keep ? { k, e: epoch, d: drops, ...(dropMark ? { x: dropMark } : {}) } : {};
  // Slot 0 of a sharded id is always a document, under `c` rather than `v`:
  // `increment` refuses it and an unsharded writer of this version sees the
  // width, while a writer of an earlier version refuses it as "not a
  // counter" (500) rather than rewrite it without the width and the ledger.
  if (shard) return JSON.stringify({ c: value, w: shard.width, g: shard.grants, ...history });
  if (entries.size === 0) return String(value);
  return JSON.stringify({ v: value, ...history });
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
  const { v, c, w, g, k, e, d, x } = parsed ?? {};
  const shard = parseSlotZero(c, w, g);
  const value = shard ? c : v;
  if (Number.isSafeInteger(value)) {
    if (shard && k === undefined && e === undefined && d === undefined && x === undefined) {
      // Slot 0 without pending keyed changes: no drop history, as a decimal.
      return { raw: text, value: value as number, entries: NO_ENTRIES, drops: 0, shard };
    }
    if (Array.isArray(k) && k.every(isEntryRow) && typeof e === 'string' && Number.isSafeInteger(d) && (x === undefined || Number.isSafeInteger(x))) {
      const entries = new Map<string, Entry>();
      for (const [key, by, counter, exp] of k as Array<[string, number, number, number]>) entries.set(key, [by, counter, exp]);
      // No `x`: nothing dropped when `d` is 0; unknown otherwise.
      const dropMark = x !== undefined ? x as number : d === 0 ? 0 : undefined;
      return { raw: text, value: value as number, entries, epoch: e, drops: d as number, dropMark, ...(shard ? { shard } : {}) };
    }
  }
  // Not ours: something else wrote this key. Never overwrite it.
  throw new Error(`Momento item "${id}" does not hold a counter`);
}

/** Slot 0's width and ledger, when the document has them (`c`, `w`, `g`): W ≥ 2 and one non-negative grant per slot 1…W−1. */
function parseSlotZero(c: unknown, w: unknown, g: unknown): SlotZero | undefined {
  if (c === undefined || !Number.isSafeInteger(w) || (w as number) < 2 || !Array.isArray(g)) return undefined;
  if (g.length !== (w as number) - 1 || !g.every((x) => Number.isSafeInteger(x) && x >= 0)) return undefined;
  return { width: w as number, grants: g as number[] };
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
  if (r.sharded !== undefined && r.sharded !== true) return undefined;
  if (r.slot !== undefined && !(Number.isSafeInteger(r.slot) && (r.slot as number) >= 0)) return undefined;
  return {
    id: r.id,
    by: r.by as number,
    exp: r.exp as number,
    ...(r.counter !== undefined ? { counter: r.counter as number } : {}),
    ...(r.joined !== undefined ? { joined: r.joined as string } : {}),
    ...(r.sharded === true ? { sharded: true as const } : {}),
    ...(r.slot !== undefined ? { slot: r.slot as number } : {}),
  };
}

export function parseKeyRecord(text: string, key: string): KeyRecord {
  const recorded = tryParseKeyRecord(text);
  if (!recorded) throw new Error(`Momento key record of Idempotency-Key "${key}" is not one this store wrote`);
  return { raw: text, ...recorded };
}

/** A key record's text: the binding, its expiry, then what is known of its use. */
export function keyRecordText(record: Omit<KeyRecord, 'raw'>): string {
  const { id, by, exp, counter, joined, sharded, slot } = record;
  const sharding = { ...(slot !== undefined ? { slot } : {}) };
  const outcome = { ...(counter !== undefined ? { counter } : {}), ...(joined !== undefined ? { joined } : {}), ...(sharded ? { sharded } : {}) };
  return JSON.stringify({ id, by, exp, ...sharding, ...outcome });
}

/**
 * The text a compare-and-swap writes on an item read as `item` (the
 * counter's item or one slot of a sharded id): the new value, the item's
 * live entries but the settled ones, the key's entry for a keyed change,
 * and the drop history; a plain decimal when no entry is left (but on slot
 * 0 of a sharded id, which keeps `shard`, its width and ledger).
 */
export function nextItemText(
  item: CounterItem, live: ReadonlyMap<string, Entry>, settled: ReadonlySet<string> | undefined, next: number, keyed?: KeyedWrite, shard?: SlotZero,
): string {
  const entries = new Map([...live].filter(([key, [, , exp]]) => !settled?.has(settledId(key, exp))));
  const drops = entries.size < live.size ? item.drops + 1 : item.drops;
  const dropMark = nextDropMark(item, live, entries, keyed);
  if (keyed) entries.set(...keyed.entry(next));
  // A plain decimal needs no epoch: draw one only for a structured item.
  return entries.size === 0 && !shard ? String(next) : itemText(next, entries, item.epoch ?? newEpoch(), drops, dropMark, shard);
}

/**
 * The drop watermark the write carries (`CounterItem.dropMark`): the one
 * read, raised to the expiry of every entry this write drops. A missing
 * item starts at 0; an item whose history is unknown gets the keyed
 * writer's bound (an unkeyed writer leaves it unknown).
 */
function nextDropMark(item: CounterItem, live: ReadonlyMap<string, Entry>, kept: ReadonlyMap<string, Entry>, keyed?: KeyedWrite): number | undefined {
  const read = item.raw === undefined ? 0 : item.epoch === undefined ? undefined : item.dropMark;
  let mark = read ?? keyed?.unknownDropMark();
  if (mark === undefined) return undefined;
  for (const [key, [, , exp]] of live) if (!kept.has(key)) mark = Math.max(mark, exp);
  return mark;
}
