/**
 * The verdicts on compare scenarios: `judge`, the counter contract's checks
 * (no lost update, no overshoot, every 200 a distinct value, the stored value
 * equal to the increments accepted, no error) on per-id tallies;
 * `judgeSteps` (mixed steps on one id, with the serial-path check
 * `chainProblem`, which the conformance kit uses too) and `judgeRetries`
 * (every request sent twice with one Idempotency-Key).
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

// ------------------------------------------------------- steps (?by=N)

/** One accepted change as its answer reports it. */
export interface Transition {
  readonly by: number;
  readonly counter: number;
}

/** The steps of the mixed-step scenarios. */
export const MIXED_STEPS = [1, 5, -3, 100, -50] as const;

/** Request i's step: every step in turn, shifted every 8 requests so concurrent callers do not send one step in lockstep. */
export function mixedStep(i: number): number {
  return MIXED_STEPS[(i * 7 + Math.floor(i / 8)) % MIXED_STEPS.length];
}

/**
 * True when the transitions `(counter − by) → counter` can be chained into
 * one path from `start` to `end` that uses each exactly once: what a serial
 * order of atomic changes produces. A lost update (two changes from the same
 * value) or a value nobody produced leaves an edge that no path can use.
 * Hierholzer's algorithm builds the path; the degrees are checked first so
 * the failure says why. (Shared with the conformance kit's steps contract.)
 */
export function chainProblem(start: number, end: number, transitions: readonly Transition[]): string | undefined {
  const out = new Map<number, number[]>();
  const balance = new Map<number, number>();
  for (const { by, counter } of transitions) {
    const from = counter - by;
    (out.get(from) ?? out.set(from, []).get(from)!).push(counter);
    balance.set(from, (balance.get(from) ?? 0) + 1);
    balance.set(counter, (balance.get(counter) ?? 0) - 1);
  }
  if (transitions.length === 0) return start === end ? undefined : `no transitions, but ${start} ≠ ${end}`;
  for (const [value, b] of balance) {
    const expected = start === end ? 0 : value === start ? 1 : value === end ? -1 : 0;
    if (b !== expected) return `value ${value} is left ${b > 0 ? b : -b} time(s) more ${b > 0 ? 'than it is reached' : 'than it is left'} (expected balance ${expected})`;
  }
  if (start !== end && (balance.get(start) ?? 0) !== 1) return `the path does not start at ${start}`;
  // Hierholzer, iterative.
  const stack = [start];
  const path: number[] = [];
  while (stack.length > 0) {
    const v = stack[stack.length - 1];
    const next = out.get(v);
    if (next && next.length > 0) stack.push(next.pop()!);
    else path.push(stack.pop()!);
  }
  if (path.length !== transitions.length + 1) return `only ${path.length - 1} of ${transitions.length} transitions chain from ${start}`;
  if (path[0] !== end) return `the chain ends at ${path[0]}, not at ${end}`;
  return undefined;
}

/**
 * True for the 200 of an applied change: it carries the value produced, or,
 * on a sharded counter (docs/sharding.md), `shards` instead.
 */
export function isApplied(a: { readonly status: number; readonly counter?: number; readonly shards?: number }): boolean {
  return a.status === 200 && (a.counter !== undefined || a.shards !== undefined);
}

/** One answer of a steps or retry scenario, next to what was sent. */
export interface SentAnswer {
  /** The step sent (`?by=`). */
  readonly sent: number;
  /** HTTP status (0: the call threw). */
  readonly status: number;
  /** `by` of the answer's body (200 and 409 carry it). */
  readonly by?: number;
  /** The value the change produced; absent on a sharded counter (its answer carries `shards`). */
  readonly counter?: number;
  /** `shards` of a sharded counter's 200. */
  readonly shards?: number;
  /** `code` of an error answer. */
  readonly code?: string;
  /** The `Idempotent-Replayed` header: 'true', 'false', or absent. */
  readonly replayed?: string;
}

export interface StepsVerdict {
  /** 200 answers. */
  readonly accepted: number;
  /** 409 answers, by code. */
  readonly rejectedBy: Record<string, number>;
  readonly errors: number;
  /** Σ by of the 200 answers: what the store must hold (the id started at 0). */
  readonly expectedFinal: number;
  /** Why the 200s' transitions do not chain from 0 to the stored value; undefined when they do (or were not checked). */
  readonly chain?: string;
  /** False when the 200s carry no counter (a sharded counter): no chain to check, the sum of the steps still is. */
  readonly chainChecked: boolean;
  /** Answers whose `by` is not the step sent. */
  readonly byMismatches: number;
  /** Conditional: answers (200 or 409) and the stored value outside [0, maximum]. */
  readonly outOfRange: number;
  /** Conditional: 409s whose code does not match the step's direction (LIMIT_REACHED up, FLOOR_REACHED down). */
  readonly wrongCodes: number;
  readonly reasons: string[];
}

/**
 * The mixed-step scenario's checks (one hot id that started at 0): the stored
 * value is the sum of the accepted steps; every answer carries the step sent;
 * the 200s' transitions `(counter − by) → counter` chain into one path from 0
 * to the stored value (a serial order exists); conditional: every answered
 * and stored value within [0, maximum] and every rejection coded by its
 * direction. A 409 in unconditional mode and any error fail.
 */
export function judgeSteps(conditional: boolean, maximum: number | undefined, answers: readonly SentAnswer[], final: number): StepsVerdict {
  const reasons: string[] = [];
  const ok = answers.filter(isApplied);
  const rejected = answers.filter((a) => a.status === 409);
  const errors = answers.length - ok.length - rejected.length;
  const rejectedBy: Record<string, number> = {};
  for (const r of rejected) rejectedBy[r.code ?? '?'] = (rejectedBy[r.code ?? '?'] ?? 0) + 1;
  const expectedFinal = ok.reduce((n, a) => n + a.sent, 0);
  const byMismatches = [...ok, ...rejected].filter((a) => a.by !== a.sent).length;
  // The chain uses the step SENT: an answer with another `by` is already counted above.
  // A sharded counter's 200s carry no value: the chain needs one from every 200.
  const withCounter = ok.filter((a) => a.counter !== undefined);
  const chainChecked = withCounter.length === ok.length;
  const chain = chainChecked ? chainProblem(0, final, ok.map((a) => ({ by: a.sent, counter: a.counter! })))
    : withCounter.length > 0 ? `${withCounter.length} of ${ok.length} 200s carry a counter: unsharded and sharded answers mixed on one id` : undefined;
  let outOfRange = 0;
  let wrongCodes = 0;
  if (conditional) {
    const outside = (v: number | undefined) => v !== undefined && (v < 0 || v > maximum!);
    outOfRange = answers.filter((a) => outside(a.counter)).length + (outside(final) ? 1 : 0);
    wrongCodes = rejected.filter((a) => a.code !== (a.sent > 0 ? 'LIMIT_REACHED' : 'FLOOR_REACHED')).length;
  }
  if (final !== expectedFinal) reasons.push(`stored ${final}, but the accepted steps sum to ${expectedFinal}`);
  if (chain !== undefined) reasons.push(`the 200s do not chain into one serial path from 0 to ${final}: ${chain}`);
  if (byMismatches > 0) reasons.push(`${byMismatches} answer(s) carried another by than the one sent`);
  if (outOfRange > 0) reasons.push(`${outOfRange} answered or stored value(s) outside [0, ${maximum}]`);
  if (wrongCodes > 0) reasons.push(`${wrongCodes} rejection(s) with the wrong code for their direction`);
  if (!conditional && rejected.length > 0) reasons.push(`${rejected.length} rejection(s) in unconditional mode`);
  if (errors > 0) reasons.push(`${errors} error answer(s)`);
  return { accepted: ok.length, rejectedBy, errors, expectedFinal, chain, chainChecked, byMismatches, outOfRange, wrongCodes, reasons };
}

// ------------------------------------------------- retries (Idempotency-Key)

export interface RetryVerdict {
  /** Keys sent (each twice). */
  readonly keys: number;
  /** Keys whose change applied (answered 200). */
  readonly applied: number;
  /** Keys the run should apply: all (unconditional), min(keys, maximum − start) (conditional). */
  readonly expectedApplied: number;
  /** Answers with `Idempotent-Replayed: true`. */
  readonly replays: number;
  /** Applied keys whose answers carry different counters (a replay with another value), or a 200 beside another status. */
  readonly splitKeys: number;
  /** Applied keys without exactly one `Idempotent-Replayed: false` answer (0: never applied fresh; 2: applied twice). */
  readonly notOnceFresh: number;
  /** Values carried by more than one key. */
  readonly duplicates: number;
  /** Conditional: the stored value's and the answers' excess over the maximum (count of values above it). */
  readonly overshoot: number;
  readonly errors: number;
  readonly reasons: string[];
}

/**
 * The retry scenario's checks (one hot id at `start` before the keys, +1 per
 * key, every key sent twice concurrently): the stored value is `start` plus
 * the number of keys applied (and, conditional, min(keys, maximum − start)
 * keys apply: a rejected key that should have fitted is a lost update); both
 * answers of an applied key are 200 with the same counter, exactly one of
 * them fresh (`Idempotent-Replayed: false`); no value is carried by two keys;
 * conditional: nothing above the maximum, a key not applied was rejected
 * LIMIT_REACHED twice. Any error fails.
 */
export function judgeRetries(
  conditional: boolean, maximum: number | undefined, byKey: ReadonlyMap<string, readonly SentAnswer[]>, final: number, start = 0,
): RetryVerdict {
  const reasons: string[] = [];
  let applied = 0;
  let replays = 0;
  let splitKeys = 0;
  let notOnceFresh = 0;
  let errors = 0;
  let wrongRejections = 0;
  let overshoot = 0;
  let missingAnswers = 0;
  const values: number[] = [];
  for (const answers of byKey.values()) {
    if (answers.length !== 2) missingAnswers++;
    replays += answers.filter((a) => a.replayed === 'true').length;
    errors += answers.filter((a) => a.status !== 200 && a.status !== 409).length;
    const ok = answers.filter(isApplied);
    if (ok.length === 0) {
      // Not applied: both rejected at the maximum (a 409 in unconditional mode is wrong).
      wrongRejections += answers.filter((a) => a.status === 409 && (!conditional || a.code !== 'LIMIT_REACHED')).length;
      continue;
    }
    applied++;
    // Sharded: both answers carry no counter (undefined twice is one value); the total read back is checked below.
    if (ok.length !== answers.length || new Set(ok.map((a) => a.counter)).size > 1) splitKeys++;
    if (ok.filter((a) => a.replayed === 'false').length !== 1) notOnceFresh++;
    if (ok[0].counter !== undefined) values.push(ok[0].counter);
    if (conditional) overshoot += ok.filter((a) => a.counter !== undefined && a.counter > maximum!).length;
  }
  if (conditional && final > maximum!) overshoot++;
  const duplicates = values.length - new Set(values).size;
  const keys = byKey.size;
  const expectedApplied = conditional ? Math.max(0, Math.min(keys, maximum! - start)) : keys;
  if (final !== start + applied) reasons.push(`stored ${final}, but ${applied} key(s) applied${start ? ` from ${start}` : ''}`);
  if (applied !== expectedApplied) {
    reasons.push(applied < expectedApplied
      ? `${expectedApplied - applied} key(s) not applied that should have been (lost update)`
      : `${applied - expectedApplied} key(s) applied beyond the maximum`);
  }
  if (splitKeys > 0) reasons.push(`${splitKeys} key(s) whose two answers differ (another counter, or a 200 beside a rejection)`);
  if (notOnceFresh > 0) reasons.push(`${notOnceFresh} applied key(s) without exactly one Idempotent-Replayed: false answer`);
  if (duplicates > 0) reasons.push(`${duplicates} value(s) carried by more than one key`);
  if (overshoot > 0) reasons.push(`${overshoot} answered or stored value(s) above the maximum`);
  if (wrongRejections > 0) reasons.push(`${wrongRejections} rejection(s) that are not LIMIT_REACHED at the maximum`);
  if (missingAnswers > 0) reasons.push(`${missingAnswers} key(s) without exactly two answers`);
  if (errors > 0) reasons.push(`${errors} error answer(s)`);
  return { keys, applied, expectedApplied, replays, splitKeys, notOnceFresh, duplicates, overshoot, errors, reasons };
}
