import { describe, expect, it } from 'vitest';
import { p99Of } from '../../actors/instance-manager/status.ts';

describe("the instance telemetry's p99 of recent samples", () => {
  it('orders the samples as numbers, not as text', () => {
    // as text 100 < 2 < 9: a string sort would give 9 here
    expect(p99Of([10, 9, 100, 2])).toBe(100);
    expect(p99Of([0.5, 12.25, 3])).toBe(12.25);
  });

  it('takes the sample at floor(0.99 n) of the sorted samples, and none for no samples', () => {
    const samples = Array.from({ length: 500 }, (_, i) => (i * 7919) % 500); // 0..499 shuffled
    expect(p99Of(samples)).toBe(495);
    expect(p99Of([42])).toBe(42);
    expect(p99Of([])).toBeUndefined();
  });

  it('leaves the caller\'s samples in their order', () => {
    const samples = [3, 1, 2];
    p99Of(samples);
    expect(samples).toEqual([3, 1, 2]);
  });
});
