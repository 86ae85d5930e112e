/**
 * dynamollm's energy above the oracle split by cause (src/sim/report.ts gapCauses, printed under simulate's
 * breakdown): instance GPU-hours held beyond the oracle's at the oracle's energy per instance GPU-hour, the
 * difference of that rate over dynamollm's hours, and the GPUs in no instance. The three sum to the difference.
 */
import { describe, expect, it } from 'vitest';
import { breakdownTable, gapCauses } from '../../src/sim/report.ts';
import type { SimResult } from '../../src/sim/types.ts';

const result = (policy: string, gpuHours: number, b: [number, number, number, number]): SimResult =>
  ({ policy, gpuHours, energyKWh: b.reduce((a, v) => a + v, 0), energyBreakdown: { unallocatedKWh: b[0], startingKWh: b[1], instanceIdleKWh: b[2], instanceBusyKWh: b[3] } }) as unknown as SimResult;

describe('the gap to the oracle by cause', () => {
  // the synthetic week's parts (docs/SIMULATION.md): the rate per instance GPU-hour is nearly the oracle's
  const dyn = result('dynamollm', 20_182, [2317, 24, 607, 5088]);
  const orc = result('oracle', 17_718, [2487, 0, 1012, 3957]);
  it('sums to the difference; capacity held is most of it when the rates per GPU-hour agree', () => {
    const g = gapCauses(dyn, orc)!;
    expect(g.capacityKWh + g.efficiencyKWh + g.noInstanceKWh).toBeCloseTo(dyn.energyKWh - orc.energyKWh, 9);
    expect(g.oracleKWhPerGpuH).toBeCloseTo((1012 + 3957) / 17_718, 12);
    expect(g.capacityKWh).toBeCloseTo((20_182 - 17_718) * g.oracleKWhPerGpuH, 9);
    expect(g.capacityKWh).toBeGreaterThan(600);
    expect(Math.abs(g.efficiencyKWh)).toBeLessThan(100);
    expect(g.noInstanceKWh).toBe(-170);
    expect(breakdownTable([dyn, orc]).at(-1)).toMatch(/^dynamollm - oracle by cause, kWh: capacity held in instances \+691\.03 .* instance efficiency \+\d+\.\d\d .* GPUs in no instance -170\.00$/);
  });
  it('the same hours at a higher rate are efficiency alone', () => {
    const g = gapCauses(result('dynamollm', 100, [0, 0, 10, 40]), result('oracle', 100, [0, 0, 10, 30]))!;
    expect(g).toMatchObject({ capacityKWh: 0, noInstanceKWh: 0 });
    expect(g.efficiencyKWh).toBeCloseTo(10, 9);
    expect(gapCauses(result('dynamollm', 0, [0, 0, 0, 0]), orc)).toBeUndefined();
  });
});
