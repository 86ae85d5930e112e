import { describe, expect, it } from 'vitest';
import { clampClocks, checkGpuIds, GpuRequestError } from '../../src/gpu/index.ts';

const H100: number[] = [];
for (let c = 210; c <= 1980; c += 15) H100.push(c);

describe('clampClocks', () => {
  it('keeps supported requests as they are', () => {
    expect(clampClocks(H100, 1200, 1200)).toEqual({ minMhz: 1200, maxMhz: 1200 });
    expect(clampClocks(H100, 810, 1980)).toEqual({ minMhz: 810, maxMhz: 1980 });
  });
  it('rounds max down and min up to supported clocks, never faster than asked', () => {
    expect(clampClocks(H100, 1000, 1400)).toEqual({ minMhz: 1005, maxMhz: 1395 });
    expect(clampClocks(H100, 1401, 1401)).toEqual({ minMhz: 1395, maxMhz: 1395 });
  });
  it('clamps to the supported range at both ends', () => {
    expect(clampClocks(H100, 0, 5000)).toEqual({ minMhz: 210, maxMhz: 1980 });
    expect(clampClocks(H100, 100, 100)).toEqual({ minMhz: 210, maxMhz: 210 });
    expect(clampClocks(H100, 3000, 3000)).toEqual({ minMhz: 1980, maxMhz: 1980 });
  });
  it('accepts an unsorted, sparse list and keeps min <= max', () => {
    expect(clampClocks([1980, 800, 1200], 900, 1100)).toEqual({ minMhz: 800, maxMhz: 800 });
    expect(clampClocks([1980, 800, 1200], 900, 1500)).toEqual({ minMhz: 1200, maxMhz: 1200 });
  });
  it('rejects bad requests with a typed, non-retryable error', () => {
    for (const [a, b] of [[1500, 1000], [NaN, 1000], [800, Infinity]] as const) {
      try {
        clampClocks(H100, a, b);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(GpuRequestError);
        expect((err as GpuRequestError).retryable).toBe(false);
      }
    }
    expect(() => clampClocks([], 800, 900)).toThrow(GpuRequestError);
  });
});

describe('checkGpuIds', () => {
  it('accepts distinct non-negative integers and rejects the rest', () => {
    expect(() => checkGpuIds([0, 1, 7])).not.toThrow();
    expect(() => checkGpuIds([])).toThrow(GpuRequestError);
    expect(() => checkGpuIds([0, 0])).toThrow(GpuRequestError);
    expect(() => checkGpuIds([-1])).toThrow(GpuRequestError);
    expect(() => checkGpuIds([1.5])).toThrow(GpuRequestError);
  });
});
