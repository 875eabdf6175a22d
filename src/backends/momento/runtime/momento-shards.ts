import { rejectionOf, ThrottledError } from '../../../runtime/errors';
import { AGAIN, Deadline, retry } from '../../../runtime/retry';
import { isSharded, KnownWidths, slotName as slotItem, slotOrder } from '../../../runtime/shards';
import { allowedPrevious, ChangeResult, CounterChange } from '../../../runtime/store';
import { MOMENTO_DEFAULTS } from '../momento-env';
import { CAS_BACKOFF, MomentoCache } from './momento-cache';
import { MomentoConfig } from './momento-config';
import type { CasOptions } from './momento-counter-store';
import { CounterItem, Entry, liveEntries, nextItemText, SlotZero } from './momento-item';
import { KeyedTarget, MomentoKeyedChange } from './momento-keyed-change';

/**
 * Sharded counters on Momento (docs/sharding.md; how and why here:
 * docs/momento.md, "Sharded counters"). Momento has no write over several
 * items, so the bound is kept without one:
 *
 * - slot 0 (the id's own item) holds its value c0, the width W and the
 *   grant ledger g_i: the share of the maximum granted so far to each slot
 *   i > 0, only ever raised. The pool P = maximum − c0 − Σ g_i is read and
 *   spent inside that one item;
 * - slot i > 0 holds only its value c_i, kept at c_i ≤ g_i by every
 *   conditional write to it.
 *
 * So c0 + Σ g_i ≤ maximum and c_i ≤ g_i: the total stays ≤ maximum whatever
 * the writers of different items do, each keeping its own item's condition
 * with a compare-and-swap. Every conditional or keyed change reads every
 * slot (one `getBatch`) and writes one: an increment to a slot with
 * g_i − c_i ≥ by, or, when none has, first a grant from the pool (one
 * compare-and-swap on slot 0) to one slot; a decrement to a slot with
 * c_i ≥ −by. Grants are never taken back, so without decrements P and every
 * g_i − c_i only shrink: a read of every slot showing no room is a proof
 * that nothing can take the step later (the 409 of the contract).
 */
export class MomentoShards {
  private readonly widths = new KnownWidths();

  constructor(
    private readonly cache: MomentoCache,
    private readonly config: MomentoConfig,
    private readonly keyed: MomentoKeyedChange,
    /** The store's `increment` of one item (undefined: the item needs a compare-and-swap instead). */
    private readonly increment: (item: string, by: number) => Promise<number | undefined>,
  ) {}

  /** True when a change or read of `id` takes the sharded path: configured with N > 1, or known to be wider than 1. */
  isSharded(id: string, shards: number | undefined): boolean {
    return isSharded(shards, this.widths.get(id));
  }

  /** Remembers a width read on slot 0 (the unsharded paths find it on the item they read anyway). */
  remember(id: string, width: number): void {
    this.widths.remember(id, width);
  }

  /** The total: slots 0…max(N, W)−1, in one `getBatch` (two when this container did not know W yet). */
  async read(id: string, shards: number): Promise<number> {
    const { slots } = await this.snapshot(id, shards);
    return slots.reduce((sum, slot) => sum + slot.value, 0);
  }

  async apply(id: string, change: CounterChange, deadline: Deadline): Promise<ChangeResult> {
    const { by, maximum, idempotency } = change;
    const shards = change.shards ?? 1;
    if (this.widths.get(id) < shards) await this.raiseWidth(id, shards, deadline);
    if (maximum === undefined && !idempotency && shards > 1) {
      const done = await this.incrementSlot(id, shards, by, deadline);
      if (done) return done;
    }
    if (!idempotency) return this.change(id, shards, by, maximum, deadline, {});
    /** The snapshot behind the view the keyed protocol read first (used by the first attempt). */
    let first: Snapshot | undefined;
    const active = activeSlots(shards);
    const target: KeyedTarget = {
      sharded: true,
      // A new record binds the key to a random active slot; the change
      // rebinds it when that slot cannot take it (`change`).
      slot: active[Math.floor(Math.random() * active.length)],
      read: async () => viewOf(first = await this.snapshot(id, shards)),
      change: (options) => this.change(id, shards, by, maximum, deadline, options, first),
    };
    return this.keyed.apply(id, by, idempotency, deadline, target);
  }

  /**
   * Unconditional, no key: Momento's atomic `increment` on a random slot
   * among 1…N−1, one call. Slot 0 is left out: it is a document (width,
   * ledger), which `increment` refuses. A throttled slot is skipped for
   * another one (once). Undefined: the slot is a document (pending keyed
   * changes) or the step left the safe integers; the compare-and-swap path
   * takes the change.
   */
  private async incrementSlot(id: string, shards: number, by: number, deadline: Deadline): Promise<ChangeResult | undefined> {
    const tries = slotOrder(shards - 1).slice(0, 2).map((i) => i + 1);
    for (const [n, slot] of tries.entries()) {
      // After a width raise, or a throttled slot: every call of a request
      // starts before its deadline (the worst case, momento-env.ts).
      deadline.check(() => this.cache.giveUp(n + 1));
      try {
        const value = await this.increment(slotItem(id, slot), by);
        return value === undefined ? undefined : { shard: slot, replayed: false };
      } catch (err) {
        if (!(err instanceof ThrottledError) || n === tries.length - 1) throw err;
      }
    }
    return undefined;
  }

  /**
   * Raises the width on slot 0 to `shards` ("absent or below N"): a
   * compare-and-swap that turns an unsharded item into slot 0 (its value
   * and pending keyed changes kept, new slots with no grant), or widens the
   * ledger. Once per container and id (`KnownWidths`).
   */
  private raiseWidth(id: string, shards: number, deadline: Deadline): Promise<void> {
    return retry(async (attempt) => {
      const item = await this.cache.getItem(id);
      const width = item.shard?.width ?? 1;
      if (width >= shards) {
        this.widths.remember(id, width);
        return undefined;
      }
      deadline.check(() => this.cache.giveUp(attempt));
      const grants = [...item.shard?.grants ?? [], ...new Array<number>(shards - width).fill(0)];
      const text = nextItemText(item, liveEntries(item), undefined, item.value, undefined, { width: shards, grants });
      if (!await this.write(id, item, text, 'width')) return AGAIN;
      this.widths.remember(id, shards);
      return undefined;
    }, this.retryOptions(deadline));
  }

  /**
   * Every slot 0…max(N, W)−1, each read on its own (Momento has no
   * snapshot over items), in one `getBatch`; when slot 0 names a width this
   * container did not know, the slots above it in a second one.
   */
  private async snapshot(id: string, shards: number): Promise<Snapshot> {
    const count = Math.max(shards, this.widths.get(id));
    let slots = await this.cache.getItems(slotRange(id, 0, count));
    const width = slots[0].shard?.width ?? 1;
    if (width > count) slots = [...slots, ...await this.cache.getItems(slotRange(id, count, width))];
    if (width > 1) this.widths.remember(id, width);
    return { slots, zero: ledgerOf(slots) };
  }

  /**
   * The compare-and-swap loop of a sharded change: snapshot → (keyed: the
   * replay check on every slot's entries) → choose a slot (`plan`) → grant
   * first when the plan needs one → write the slot on the exact text read.
   * A lost race is retried (contention is never a rejection); a 409 is
   * answered only from a snapshot in which no slot could take the change.
   */
  private change(
    id: string, shards: number, by: number, maximum: number | undefined, deadline: Deadline, options: CasOptions, first?: Snapshot,
  ): Promise<ChangeResult> {
    const { keyed, writing } = options;
    let settled = options.settled;
    let pending = first;
    /** Slots the datastore throttled during this request: skipped for others. */
    const throttled = new Set<number>();
    let throttle: ThrottledError | undefined;
    return retry(async (attempt) => {
      const snap = pending ?? await this.snapshot(id, shards);
      pending = undefined;
      if (keyed) {
        const view = viewOf(snap);
        const replay = await keyed.check(view, liveEntries(view), attempt);
        if (replay) return replay;
      }
      let chosen = plan(snap, shards, by, maximum, throttled, keyed?.slot());
      if (!chosen && keyed) {
        // The key's slot cannot take it: bind the key to one that can, if
        // no other request with the key can be writing the old one.
        const free = plan(snap, shards, by, maximum, throttled);
        if (free && await keyed.rebind(free.slot)) chosen = plan(snap, shards, by, maximum, throttled, keyed.slot());
      }
      if (!chosen) {
        // Skipped slots are no proof: when they could have taken it, the
        // answer is the throttle's 429 (nothing applied), not a 409.
        if (throttle && plan(snap, shards, by, maximum, new Set())) throw throttle;
        throw rejectionOf(by, maximum);
      }
      const { slot, grant } = chosen;
      const item = snap.slots[slot];
      const live = liveEntries(item);
      // Unkeyed: settled entries are asked for once per request, when the
      // chosen slot holds enough (any, unconditional: as unsharded).
      if (!settled && live.size > 0 && (maximum === undefined || live.size >= MOMENTO_DEFAULTS.pendingEntriesPruneAt)) {
        settled = await this.cache.settledEntries(id, live, deadline.at, true);
      }
      deadline.check(() => this.cache.giveUp(attempt));
      let zero = snap.zero;
      /** The item the call under way writes (a throttle names it). */
      let writingTo = 0;
      try {
        if (grant !== undefined) {
          // The grant: g_slot raised on slot 0, conditional on the exact
          // text read, so P is spent only once. Slot `slot` is then written
          // on its own text as read: a grant never changes it.
          zero = { width: zero.width, grants: zero.grants.map((g, i) => (i === slot - 1 ? grant : g)) };
          const slotZero = snap.slots[0];
          const text = nextItemText(slotZero, liveEntries(slotZero), undefined, slotZero.value, undefined, zero);
          if (!await this.write(id, slotZero, text, 'grant')) return AGAIN;
        }
        // After a grant too (it stays: a grant is never taken back).
        if (grant !== undefined) deadline.check(() => this.cache.giveUp(attempt));
        const next = item.value + by;
        const text = nextItemText(item, live, settled, next, keyed, slot === 0 ? zero : undefined);
        writingTo = slot;
        writing?.(true);
        if (!await this.write(slotItem(id, slot), item, text, 'slot')) {
          writing?.(false); // not stored, certainly
          return AGAIN;
        }
        if (keyed) return { ...await keyed.applied(next), shard: slot };
        return { shard: slot, replayed: false };
      } catch (err) {
        if (!(err instanceof ThrottledError)) throw err;
        // Nothing applied (a throttle refuses the call): the next attempt
        // takes another slot, or answers this 429 when none is left.
        writing?.(false);
        throttled.add(writingTo);
        throttle = err;
        return AGAIN;
      }
    }, this.retryOptions(deadline));
  }

  /** `setIfAbsent` for an item read missing, else `setIfEqual` on the exact text read. */
  private write(name: string, read: CounterItem, text: string, what: string): Promise<boolean> {
    const ttl = this.config.ttlSeconds;
    return read.raw === undefined
      ? this.cache.setIfAbsent(name, text, ttl, `${what} (sharded)`)
      : this.cache.setIfEqual(name, text, read.raw, ttl, `${what} (sharded)`);
  }

  private retryOptions(deadline: Deadline) {
    return {
      backoff: CAS_BACKOFF,
      maxAttempts: this.config.casMaxAttempts,
      deadline,
      retryable: () => false,
      exhausted: (attempts: number) => this.cache.giveUp(attempts),
    };
  }
}

/** Thrown by an unsharded path that read slot 0 of a widened id (shards lowered to 1): the change goes to the sharded path with N = 1. */
export class WidenedId extends Error {
  constructor(readonly width: number) {
    super(`Momento id is sharded over ${width} slots`);
    this.name = 'WidenedId';
  }
}

/**
 * Slot i's item: slot 0 is the id's own item; slot i > 0 is the id, the
 * unit separator and i (ids never contain control characters, so no id
 * names a slot).
 */
export { slotItem };

function slotRange(id: string, from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => slotItem(id, from + i));
}

/** Every slot as read by one `getBatch`, and slot 0's width and ledger. */
interface Snapshot {
  /** Index = slot; a missing slot reads as value 0. */
  readonly slots: readonly CounterItem[];
  readonly zero: SlotZero;
}

/**
 * Slot 0's ledger, over every slot read. Where slot 0 lacks it (it expired,
 * its TTL being its own, or the width is being raised) or names fewer slots
 * than were read, each such slot's grant is taken to be its value: it gets
 * no headroom, and its value is kept out of the pool.
 */
function ledgerOf(slots: readonly CounterItem[]): SlotZero {
  const own = slots[0].shard;
  const grants = slots.slice(1).map((slot, i) => own?.grants[i] ?? Math.max(0, slot.value));
  return { width: Math.max(own?.width ?? 1, slots.length), grants };
}

/** Where a change goes: a slot, and for an increment that needs one first, slot `slot`'s new grant. */
interface Plan {
  readonly slot: number;
  readonly grant?: number;
}

/** The slots changes are spread over: 1…N−1 (slot 0 holds the ledger and takes what must go there), or 0 when N = 1. */
function activeSlots(shards: number): number[] {
  return shards > 1 ? Array.from({ length: shards - 1 }, (_, i) => i + 1) : [0];
}

/**
 * Chooses the slot for a change from a snapshot, or none (rejected):
 *
 * - unconditional: a random slot among 1…N−1 (slot 0 when N = 1) whose
 *   value stays a safe integer;
 * - conditional increment: a random slot i > 0 (any read, so headroom left
 *   above a lowered N is used) with g_i − c_i ≥ by; else, when the pool
 *   P ≥ by, a grant to a random slot among 1…N−1 of an even share of P
 *   (at least by), or slot 0 itself when N = 1; else none;
 * - conditional decrement: a random slot (any read) with c_i ≥ −by; else none.
 *
 * `skip`: slots throttled in this request. `bound`: a keyed change, whose
 * key is bound to that slot: only it is considered.
 */
function plan(snap: Snapshot, shards: number, by: number, maximum: number | undefined, skip: ReadonlySet<number>, bound?: number): Plan | undefined {
  const { slots, zero } = snap;
  const values = slots.map((s) => s.value);
  const pick = (candidates: number[]): Plan | undefined => {
    const open = candidates.filter((i) => !skip.has(i) && (bound === undefined || i === bound));
    return open.length === 0 ? undefined : { slot: open[Math.floor(Math.random() * open.length)] };
  };
  const active = activeSlots(shards);
  if (maximum === undefined) {
    const { lowest, highest } = allowedPrevious(by);
    return pick((bound === undefined ? active : [bound]).filter((i) => values[i] >= lowest && values[i] <= highest));
  }
  const every = values.map((_, i) => i);
  if (by < 0) return pick(every.filter((i) => values[i] >= -by));
  const grantOf = (i: number) => zero.grants[i - 1];
  const withRoom = pick(every.filter((i) => i > 0 && grantOf(i) - values[i] >= by));
  if (withRoom) return withRoom;
  // Grants are kept ≥ values here: a value above its grant (unconditional
  // writes, a raised `by` in another mode) counts against the pool whole.
  const pool = maximum - values[0] - every.slice(1).reduce((sum, i) => sum + Math.max(grantOf(i), values[i]), 0);
  if (pool < by || skip.has(0)) return undefined;
  // Slot 0 takes it from the pool directly when N = 1 or the key is bound there.
  if (shards === 1 || bound === 0) return { slot: 0 };
  const target = pick(bound === undefined ? active : [bound]);
  if (!target) return undefined;
  const share = Math.min(pool, Math.max(by, Math.ceil(pool / shards)));
  return { slot: target.slot, grant: Math.max(grantOf(target.slot), values[target.slot]) + share };
}

/**
 * Every slot read as one item, for the keyed protocol's replay check: their
 * entries (a key's entry is in the slot its change went to), and a drop
 * history that proves "nothing dropped" only when every slot's does: the
 * watermark is the highest (undefined when any slot's is unknown), and the
 * epoch names every slot's (undefined when any structured history is
 * unknown: a decimal slot may have been a document between two reads).
 */
function viewOf(snap: Snapshot): CounterItem {
  const entries = new Map<string, Entry>();
  for (const slot of snap.slots) for (const [key, entry] of slot.entries) entries.set(key, entry);
  const unknown = snap.slots.some((s) => s.raw !== undefined && s.epoch === undefined);
  const marks = snap.slots.map((s) => s.dropMark);
  return {
    value: snap.slots.reduce((sum, s) => sum + s.value, 0),
    entries,
    epoch: unknown ? undefined : snap.slots.map((s) => s.epoch ?? '-').join('|'),
    drops: snap.slots.reduce((sum, s) => sum + s.drops, 0),
    dropMark: marks.some((m) => m === undefined) ? undefined : Math.max(...marks as number[]),
  };
}
