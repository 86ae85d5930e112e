/** The power sums' stale part (src/telemetry/power-sum.ts): readings marked gpuStaleMs stay in the sum and are said apart. */
import { describe, expect, it } from 'vitest';
import { powerSum } from '../../src/telemetry/power-sum.ts';

describe('powerSum', () => {
  it('sums every reading and, of it, those whose GPU read failed', () => {
    expect(powerSum([{ powerW: 600 }, { powerW: 1000, gpuStaleMs: 2000 }, { powerW: 50, gpuStaleMs: 0 }])).toEqual({ powerW: 1650, stalePowerW: 1050 });
    expect(powerSum([{ powerW: 600 }])).toEqual({ powerW: 600, stalePowerW: 0 });
    expect(powerSum([])).toEqual({ powerW: 0, stalePowerW: 0 });
  });
});
