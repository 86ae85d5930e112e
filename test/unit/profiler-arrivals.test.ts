import { describe, expect, it } from 'vitest';
import { conditionedArrivals, rng } from '../../src/telemetry/profiler.ts';

describe('profiler arrivals (count-conditioned Poisson)', () => {
  it('offers exactly the expected count per window, sorted, inside the window, reproducibly', () => {
    const a = conditionedArrivals(2.5, 3, 11, rng(1));
    expect(a).toHaveLength(20);
    expect(a.every((t) => t >= 3 && t < 11)).toBe(true);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(conditionedArrivals(2.5, 3, 11, rng(1))).toEqual(a);
    expect(conditionedArrivals(0, 0, 10, rng(1))).toEqual([]);
  });
  it('spreads arrivals uniformly (gaps look exponential: mean ~1/rate, coefficient of variation ~1)', () => {
    const a = conditionedArrivals(10, 0, 1000, rng(3));
    const gaps = a.slice(1).map((t, i) => t - a[i]!);
    const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((s, g) => s + (g - mean) ** 2, 0) / gaps.length);
    expect(mean).toBeCloseTo(0.1, 2);
    expect(sd / mean).toBeGreaterThan(0.9);
    expect(sd / mean).toBeLessThan(1.1);
  });
});
