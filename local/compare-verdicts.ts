/**
 * The verdict on one compare scenario: the counter contract's checks (no
 * lost update, no overshoot, every 200 a distinct value, the stored value
 * equal to the increments accepted, no error) on its per-id tallies.
 */

export interface IdTally {
  requests: number;
  accepted: number;
  rejected: number;
  errors: number;
  counters: number[];
  final: number;
}

/**
 * The contract's checks on one scenario's tallies (every id started at 0).
 * Exported for the test that proves a broken run is reported as FAIL.
 */
export function judge(conditional: boolean, maximum: number | undefined, tallies: IdTally[]) {
  const reasons: string[] = [];
  let expectedAccepted = 0;
  let lostUpdates = 0;
  let overshoot = 0;
  let aboveMaximum = 0;
  let duplicates = 0;
  let wrongFinal = 0;
  for (const t of tallies) {
    const expected = conditional ? Math.min(t.requests, maximum!) : t.requests;
    expectedAccepted += expected;
    // Unconditional: what the store holds against what was sent. Conditional:
    // what was accepted against what should have been (a spurious rejection
    // is a lost update too); a stored or answered value above the maximum is
    // overshoot.
    lostUpdates += conditional ? expected - t.accepted : expected - t.final;
    if (conditional) {
      overshoot += Math.max(0, t.final - maximum!);
      aboveMaximum += t.counters.filter((c) => c > maximum!).length;
    }
    duplicates += t.counters.length - new Set(t.counters).size;
    // Each 200 carries the value its own increment produced: the store ends at exactly the number accepted.
    if (t.final !== t.accepted) wrongFinal++;
  }
  const errors = tallies.reduce((n, t) => n + t.errors, 0);
  const rejected = tallies.reduce((n, t) => n + t.rejected, 0);
  if (lostUpdates !== 0) reasons.push(lostUpdates > 0 ? `${lostUpdates} lost update(s)` : `${-lostUpdates} increment(s) more than expected`);
  if (overshoot > 0) reasons.push(`stored values exceed the maximum by ${overshoot}`);
  if (aboveMaximum > 0) reasons.push(`${aboveMaximum} answer(s) carried a value above the maximum`);
  if (duplicates > 0) reasons.push(`${duplicates} duplicate counter value(s) among 200 answers`);
  if (wrongFinal > 0) reasons.push(`${wrongFinal} id(s) whose stored value differs from the increments accepted`);
  if (!conditional && rejected > 0) reasons.push(`${rejected} rejection(s) in unconditional mode`);
  // An error leaves the outcome of its increment unknown: the run cannot be
  // said to be correct, and a backend that errors under this load is a finding.
  if (errors > 0) reasons.push(`${errors} error answer(s)`);
  return { expectedAccepted, lostUpdates, overshoot, aboveMaximum, duplicates, reasons };
}
