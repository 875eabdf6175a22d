/**
 * What every sharded store shares (docs/sharding.md): which slot a change
 * tries first, how the bound is split into per-slot shares (escrow), and
 * what a container remembers about an id's width. Pure functions and one
 * bounded cache: each store does its own atomic writes.
 *
 * Vocabulary: an id is stored in slots 0…W−1 (W, the width, lives on slot
 * 0; slot 0 is the record an unsharded counter has always had). Writers
 * spread changes over the first N slots (N = `COUNTER_SHARDS`). In
 * conditional mode each slot holds a value `c` and a share `q` with
 * 0 ≤ c ≤ q and Σq ≤ maximum, so the total stays within [0, maximum]
 * whatever each slot's writer does, as long as each keeps its own slot's
 * condition atomically.
 */
import { allowedPrevious } from './store';

/**
 * Separates an id from its slot number in a slot record's name (key, item,
 * document or row id): a control character no counter id can contain (the
 * request parser refuses them), so no id names another id's slot.
 */
export const SLOT_SEPARATOR = '\u001f';

/** The name of slot `slot` of the counter whose own record (slot 0) is named `base`. */
export function slotName(base: string, slot: number): string {
  return slot === 0 ? base : `${base}${SLOT_SEPARATOR}${slot}`;
}

/** The counter a record name belongs to: a slot's name → its counter's, a counter's own name unchanged. */
export function counterIdOf(name: string): string {
  const at = name.indexOf(SLOT_SEPARATOR);
  return at < 0 ? name : name.slice(0, at);
}

/** True when an id is sharded: configured with several slots, or already wider than one. */
export function isSharded(shards: number | undefined, width = 1): boolean {
  return (shards ?? 1) > 1 || width > 1;
}

/**
 * The slots 0…shards−1 in a random order: a change tries the first and, when
 * that slot cannot take it (its share is used up, or the datastore throttles
 * it), the next. Random so that concurrent writers spread over the slots.
 */
export function slotOrder(shards: number): number[] {
  const order = Array.from({ length: shards }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Every slot of a sharded id rewritten by a rebalance: its value and its share. */
export interface SlotState {
  readonly value: number;
  readonly share: number;
}

/**
 * The slow path of a conditional change (`by`) that no slot could take on
 * its own: given every slot's value (slots 0…W−1, as read inside one atomic
 * operation), decide whether the total can take the change, and if so, the
 * new value and share of every slot.
 *
 * - `undefined`: the total is outside `allowedPrevious(by, maximum)` (the
 *   same rule as an unsharded counter's); the change is rejected, and since
 *   the values were read atomically that is a proof.
 * - Otherwise the change is applied: an increment to slot 0 (it always
 *   exists and is always active), a decrement taken from the slots holding
 *   the most value, largest first (the total is unchanged but for `by`, so
 *   moving value between slots is free). Then the headroom left
 *   (maximum − total − by) is spread evenly over the `active` slots
 *   0…active−1; slots at or above `active` (left over by a smaller `shards`)
 *   get none (share = value), so shares never sit where no writer goes.
 *
 * Every slot satisfies value ≤ share afterwards, the shares sum to exactly
 * `maximum` (unless the stored total already exceeds it: a lowered maximum),
 * and no slot that held a value ≥ 0 goes below 0.
 */
export function rebalance(values: readonly number[], active: number, maximum: number, by: number): SlotState[] | undefined {
  if (active < 1 || values.length < active) throw new RangeError(`rebalance over ${values.length} slots with ${active} active`);
  const total = values.reduce((a, b) => a + b, 0);
  const { lowest, highest } = allowedPrevious(by, maximum);
  if (total < lowest || total > highest) return undefined;
  const next = [...values];
  if (by > 0) {
    next[0] += by;
  } else {
    let owed = -by;
    const largestFirst = next.map((v, i) => ({ v, i })).filter(({ v }) => v > 0).sort((a, b) => b.v - a.v);
    for (const { i } of largestFirst) {
      if (owed === 0) break;
      const take = Math.min(owed, next[i]);
      next[i] -= take;
      owed -= take;
    }
  }
  // Negative only when the maximum was lowered below the stored total: then
  // no slot gets headroom, increments keep coming here and are rejected,
  // and decrements still work slot by slot.
  const headroom = Math.max(0, maximum - next.reduce((a, b) => a + b, 0));
  const each = Math.floor(headroom / active);
  let extra = headroom - each * active;
  return next.map((value, i) => {
    if (i >= active) return { value, share: value };
    const share = value + each + (extra > 0 ? 1 : 0);
    if (extra > 0) extra--;
    return { value, share };
  });
}

/**
 * The shares of a conditional counter at its first sharded write: the
 * maximum split evenly over `shards` slots (the first `maximum mod shards`
 * slots get one more). Slot i's share when nothing has been written yet.
 */
export function initialShare(slot: number, shards: number, maximum: number): number {
  const each = Math.floor(maximum / shards);
  return each + (slot < maximum - each * shards ? 1 : 0);
}

/**
 * Which ids this container knows to be at least a given width, so a change
 * can go to any of their N slots without raising the width first. Bounded
 * (least recently used ids are forgotten: forgetting costs one write to
 * slot 0 that raises nothing).
 */
export class KnownWidths {
  private readonly widths = new Map<string, number>();

  constructor(private readonly capacity = 10_000) {}

  /** The width known for `id` (at least), or 1. */
  get(id: string): number {
    const width = this.widths.get(id);
    if (width === undefined) return 1;
    // Refresh: a Map iterates in insertion order, so re-inserting moves it last.
    this.widths.delete(id);
    this.widths.set(id, width);
    return width;
  }

  /** Remembers that `id` is at least `width` wide. */
  remember(id: string, width: number): void {
    const known = this.widths.get(id) ?? 1;
    this.widths.delete(id);
    this.widths.set(id, Math.max(known, width));
    if (this.widths.size > this.capacity) {
      const oldest = this.widths.keys().next().value;
      if (oldest !== undefined) this.widths.delete(oldest);
    }
  }
}
