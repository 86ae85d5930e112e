/** Policy AwaitedRecords (src/policy/awaited-records.ts): which request records a cluster manager's predictor waits for, and until when. */
import { describe, expect, it } from 'vitest';
import { AwaitedRecords, RECORD_GRACE_MS, RECORD_WAIT_MAX_MS, recordDueMs } from '../../src/policy/awaited-records.ts';

describe('AwaitedRecords', () => {
  it('wants records only while one is awaited; an ok record teaches once', () => {
    const a = new AwaitedRecords<{ n: number }>();
    expect(a.recordsWanted()).toBe(false);
    a.await('r1', { n: 1 }, 10_000);
    expect(a.recordsWanted()).toBe(true);
    expect(a.take('other', 'ok')).toBeUndefined();
    expect(a.take('r1', 'ok')).toEqual({ n: 1 });
    expect(a.take('r1', 'ok')).toBeUndefined();
    expect(a.recordsWanted()).toBe(false);
  });

  it('keeps a request awaited past a record of another outcome (its id may still end ok), until its record is past due', () => {
    const a = new AwaitedRecords<{ n: number }>();
    a.await('r1', { n: 1 }, 10_000);
    a.await('r2', { n: 2 }, 20_000);
    expect(a.take('r1', 'failed')).toBeUndefined();
    expect(a.expire(9_999)).toBe(0);
    expect(a.expire(10_000)).toBe(1);
    expect(a.take('r1', 'ok')).toBeUndefined();
    expect(a.recordsWanted()).toBe(true);
    expect(a.expire(20_000)).toBe(1);
    expect(a.recordsWanted()).toBe(false);
  });

  it('awaits at most `max`, the oldest forgotten first; a request classified again is awaited anew', () => {
    const a = new AwaitedRecords<number>(2);
    a.await('a', 1, 100);
    a.await('b', 2, 100);
    a.await('a', 3, 500); // again: now the newest
    a.await('c', 4, 100);
    expect(a.size).toBe(2);
    expect(a.take('b', 'ok')).toBeUndefined();
    expect(a.take('a', 'ok')).toBe(3);
    expect(a.take('c', 'ok')).toBe(4);
  });

  it('a record is due its time budget after classification, plus the grace, the budget capped', () => {
    expect(recordDueMs({ arrivalMs: 1000, giveUpAtMs: 61_000 }, 5000)).toBe(5000 + 60_000 + RECORD_GRACE_MS);
    // budgets on the gateway's clock: a skewed clock does not matter, a negative one counts as none
    expect(recordDueMs({ arrivalMs: 9e12, giveUpAtMs: 9e12 - 5 }, 5000)).toBe(5000 + RECORD_GRACE_MS);
    expect(recordDueMs({ arrivalMs: 0, giveUpAtMs: 1e15 }, 5000)).toBe(5000 + RECORD_WAIT_MAX_MS + RECORD_GRACE_MS);
  });
});
