/**
 * The one retry / back-off / deadline helper every store uses
 * (src/runtime/retry.ts). Timing here is about the helper's own bounds, with
 * wide margins: nothing depends on the machine being idle.
 */
import { AGAIN, Deadline, jitteredDelay, retry, withinDeadline } from '../../src/runtime/retry';

class Conflict extends Error {}
class GaveUp extends Error {
  constructor(readonly attempts: number, readonly last: unknown) {
    super(`gave up after ${attempts}`);
  }
}

const policy = {
  backoff: { baseMs: 1, capMs: 2 },
  retryable: (err: unknown) => err instanceof Conflict,
  exhausted: (attempts: number, last: unknown) => new GaveUp(attempts, last),
};

describe('retry', () => {
  test('retries a retryable failure until an attempt succeeds', async () => {
    const seen: number[] = [];
    const value = await retry(async (n) => {
      seen.push(n);
      if (n < 4) throw new Conflict();
      return 'done';
    }, policy);
    expect(value).toBe('done');
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  test('an attempt returning AGAIN is retried like a retryable failure', async () => {
    let calls = 0;
    const value = await retry(async () => (++calls < 3 ? AGAIN : calls), policy);
    expect(value).toBe(3);
  });

  test('a failure that is not retryable is thrown as it is, after one attempt', async () => {
    let calls = 0;
    const boom = new Error('boom');
    await expect(retry(async () => {
      calls++;
      throw boom;
    }, policy)).rejects.toBe(boom);
    expect(calls).toBe(1);
  });

  test('maxAttempts bounds the attempts, and exhausted says how many ran and why', async () => {
    let calls = 0;
    const last = new Conflict('last');
    const err = await retry(async () => {
      calls++;
      throw calls === 5 ? last : new Conflict();
    }, { ...policy, maxAttempts: 5 }).catch((e) => e);
    expect(calls).toBe(5);
    expect(err).toBeInstanceOf(GaveUp);
    expect(err.attempts).toBe(5);
    expect(err.last).toBe(last);
  });

  test('AGAIN on the last attempt gives up with AGAIN as the last failure', async () => {
    const err = await retry(async () => AGAIN, { ...policy, maxAttempts: 2 }).catch((e) => e);
    expect(err.attempts).toBe(2);
    expect(err.last).toBe(AGAIN);
  });

  test('no back-off sleeps past the deadline: an expired deadline gives up after the attempt under way', async () => {
    let calls = 0;
    const deadline = new Deadline(Date.now() - 1);
    const err = await retry(async () => {
      calls++;
      throw new Conflict();
    }, { ...policy, deadline }).catch((e) => e);
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(GaveUp);
  });

  test('a deadline ends an endless run of conflicts (no attempt count given)', async () => {
    let calls = 0;
    const err = await retry(async () => {
      calls++;
      throw new Conflict();
    }, { ...policy, backoff: { baseMs: 1, capMs: 5 }, deadline: Deadline.after(100) }).catch((e) => e);
    expect(err).toBeInstanceOf(GaveUp);
    expect(err.attempts).toBe(calls);
    expect(calls).toBeGreaterThan(1);
  });
});

describe('jitteredDelay', () => {
  test('full jitter within [0, min(cap, base · 2^n))', () => {
    for (let n = 1; n <= 10; n++) {
      for (let i = 0; i < 200; i++) {
        const d = jitteredDelay(n, { baseMs: 2, capMs: 16 });
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(Math.min(16, 2 * 2 ** n));
      }
    }
  });

  test('spreads: not every delay is the same', () => {
    const delays = new Set(Array.from({ length: 50 }, () => jitteredDelay(4, { baseMs: 1, capMs: 16 })));
    expect(delays.size).toBeGreaterThan(10);
  });
});

describe('Deadline', () => {
  test('after(undefined) never expires', () => {
    const d = Deadline.after(undefined);
    expect(d.expired).toBe(false);
    expect(d.remainingMs()).toBe(Infinity);
  });

  test('expire() runs the hooks once and check() then throws', () => {
    const d = Deadline.after(60_000);
    const hook = jest.fn();
    d.onExpire(hook);
    expect(() => d.check(() => new Error('late'))).not.toThrow();
    d.expire();
    d.expire();
    expect(hook).toHaveBeenCalledTimes(1);
    expect(d.remainingMs()).toBe(0);
    expect(() => d.check(() => new Error('late'))).toThrow('late');
  });

  test('a hook registered on an expired deadline runs at once; an unregistered hook never runs', () => {
    const d = Deadline.after(60_000);
    const removed = jest.fn();
    d.onExpire(removed)();
    d.expire();
    const late = jest.fn();
    d.onExpire(late);
    expect(late).toHaveBeenCalledTimes(1);
    expect(removed).not.toHaveBeenCalled();
  });

  test('hooks run when the moment passes, without anyone calling expire()', async () => {
    const d = Deadline.after(20);
    const fired = new Promise<void>((resolve) => d.onExpire(resolve));
    await fired;
    expect(d.expired).toBe(true);
  });
});

describe('withinDeadline', () => {
  test('answers the work when it finishes first', async () => {
    await expect(withinDeadline(Deadline.after(60_000), Promise.resolve(7), () => new Error('late'))).resolves.toBe(7);
  });

  test('rejects with onTimeout() once the deadline passes, and expires the deadline the work holds', async () => {
    let seen: Deadline | undefined;
    const never = new Promise<number>(() => undefined);
    const err = await withinDeadline(Deadline.after(30), (d) => {
      seen = d;
      return never;
    }, () => new Error('no answer in time')).catch((e) => e);
    expect(err.message).toBe('no answer in time');
    expect(seen!.expired).toBe(true);
  });

  test('a late failure of abandoned work is not an unhandled rejection', async () => {
    const late = new Promise<number>((_, reject) => setTimeout(() => reject(new Error('late failure')), 40));
    await expect(withinDeadline(Deadline.after(10), late, () => new Error('timeout'))).rejects.toThrow('timeout');
    await new Promise((resolve) => setTimeout(resolve, 60));
  });

  test('a deadline that never expires simply awaits the work', async () => {
    await expect(withinDeadline(Deadline.after(undefined), Promise.reject(new Error('own failure')), () => new Error('timeout'))).rejects.toThrow('own failure');
  });
});
