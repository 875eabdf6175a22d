/**
 * The pure part of sharded counters (src/runtime/shards.ts): slot order,
 * the escrow rebalance and its invariants, the width cache. Atomicity is
 * each store's, proved on the real engines.
 */
import { counterIdOf, initialShare, isSharded, KnownWidths, rebalance, slotName, slotOrder } from '../../src/runtime/shards';

describe('slotOrder', () => {
  test('a permutation of 0…n−1', () => {
    for (const n of [1, 2, 8, 64]) {
      expect([...slotOrder(n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    }
  });

  test('spreads: every slot comes first sometimes', () => {
    const firsts = new Set(Array.from({ length: 400 }, () => slotOrder(8)[0]));
    expect(firsts.size).toBe(8);
  });
});

describe('rebalance', () => {
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

  test('rejects exactly when the total cannot take the change (the unsharded rule)', () => {
    expect(rebalance([5, 5], 2, 10, 1)).toBeUndefined();
    expect(rebalance([4, 5], 2, 10, 2)).toBeUndefined();
    expect(rebalance([0, 0], 2, 10, -1)).toBeUndefined();
    expect(rebalance([1, 1], 2, 10, -3)).toBeUndefined();
    expect(rebalance([4, 5], 2, 10, 1)).toBeDefined();
    expect(rebalance([1, 1], 2, 10, -2)).toBeDefined();
  });

  test('invariants over many random layouts: total changes by exactly by, value ≤ share, shares sum to the maximum, no slot below 0, idle slots get no headroom', () => {
    for (let round = 0; round < 2000; round++) {
      const width = 1 + Math.floor(Math.random() * 10);
      const active = 1 + Math.floor(Math.random() * width);
      const maximum = 1 + Math.floor(Math.random() * 200);
      const values = Array.from({ length: width }, () => 0);
      let left = Math.floor(Math.random() * (maximum + 1));
      while (left > 0) {
        const i = Math.floor(Math.random() * width);
        values[i]++;
        left--;
      }
      const by = (Math.random() < 0.5 ? -1 : 1) * (1 + Math.floor(Math.random() * 50));
      const total = sum(values);
      const next = rebalance(values, active, maximum, by);
      const fits = total + by >= 0 && total + by <= maximum;
      expect(next !== undefined).toBe(fits);
      if (!next) continue;
      expect(sum(next.map((s) => s.value))).toBe(total + by);
      expect(sum(next.map((s) => s.share))).toBe(maximum);
      next.forEach((s, i) => {
        expect(s.value).toBeGreaterThanOrEqual(0);
        expect(s.value).toBeLessThanOrEqual(s.share);
        if (i >= active) expect(s.share).toBe(s.value);
      });
      // Headroom is spread evenly: active shares' headroom differs by at most 1.
      const headroom = next.slice(0, active).map((s) => s.share - s.value);
      expect(Math.max(...headroom) - Math.min(...headroom)).toBeLessThanOrEqual(1);
    }
  });

  test('a decrement larger than any one slot takes value from several', () => {
    const next = rebalance([3, 3, 3], 3, 10, -7)!;
    expect(next.map((s) => s.value).sort()).toEqual([0, 0, 2]);
  });

  test('a negative legacy total still takes an increment (as unsharded: the bound is on the result)', () => {
    const next = rebalance([-5, 0], 2, 10, 1)!;
    expect(next.map((s) => s.value)).toEqual([-4, 0]);
  });

  test('a maximum lowered below the total gives no headroom: increments rejected, decrements applied', () => {
    expect(rebalance([6, 6], 2, 10, 1)).toBeUndefined();
    const next = rebalance([6, 6], 2, 10, -1)!;
    next.forEach((s) => expect(s.share).toBe(s.value));
  });
});

describe('initialShare', () => {
  test('splits the maximum over the slots, the remainder to the first ones', () => {
    for (const [shards, maximum] of [[8, 10], [8, 100], [3, 1], [64, 1000], [1, 7]]) {
      const shares = Array.from({ length: shards }, (_, i) => initialShare(i, shards, maximum));
      expect(shares.reduce((a, b) => a + b, 0)).toBe(maximum);
      expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
    }
  });
});

describe('isSharded and KnownWidths', () => {
  test('isSharded: configured with more than one slot, or already wider', () => {
    expect(isSharded(undefined)).toBe(false);
    expect(isSharded(1, 1)).toBe(false);
    expect(isSharded(8)).toBe(true);
    expect(isSharded(1, 2)).toBe(true);
  });

  test('remembers the largest width, forgets the least recently used beyond its capacity', () => {
    const widths = new KnownWidths(2);
    widths.remember('a', 8);
    widths.remember('a', 4);
    expect(widths.get('a')).toBe(8);
    widths.remember('b', 2);
    widths.get('a'); // a is now the most recent
    widths.remember('c', 3);
    expect(widths.get('b')).toBe(1);
    expect(widths.get('a')).toBe(8);
    expect(widths.get('c')).toBe(3);
  });
});

describe('slot names', () => {
  test('slot 0 is the counter\'s own name; slot i is the name, U+001F and i; every slot maps back to its counter', () => {
    expect(slotName('votes', 0)).toBe('votes');
    expect(slotName('votes', 7)).toBe('votes\u001f7');
    for (const slot of [0, 1, 63]) expect(counterIdOf(slotName('a:b/c', slot))).toBe('a:b/c');
    // The Redis width key (`<base>\u001fw`) maps back too.
    expect(counterIdOf('votes\u001fw')).toBe('votes');
  });
});
