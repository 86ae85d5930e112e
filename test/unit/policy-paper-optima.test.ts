import { describe, it, expect } from 'vitest';
import { paperProfile, MM_LOADS, MEDIUM } from '../fixtures/paper-profile.ts';
import { bestConfig, chooseClock } from '../../src/policy/index.ts';

const p = paperProfile();

describe('paper optima (Tables I and II as a profile)', () => {
  const cases: [string, Parameters<typeof bestConfig>[1], number, number, number][] = [
    ['SS', 'SS', MEDIUM('SS'), 2, 1200],
    ['SL', 'SL', MEDIUM('SL'), 4, 1200],
    ['LL', 'LL', MEDIUM('LL'), 8, 1600],
    ['MM low', 'MM', MM_LOADS.low, 4, 1200],
    ['MM medium', 'MM', MM_LOADS.medium, 4, 1600],
    ['MM high', 'MM', MM_LOADS.high, 4, 2000],
  ];
  for (const [name, type, load, tp, clock] of cases) {
    it(`${name} -> TP${tp} @ ${clock} MHz`, () => {
      expect(bestConfig(p, type, load)).toMatchObject({ tp, clockMhz: clock });
    });
  }

  it('the lowest-power feasible MM configuration (TP8 @ 1.2) is not the energy optimum', () => {
    const d8 = chooseClock({ profile: p, tp: 8, loadByType: { MM: MM_LOADS.medium } });
    expect(d8.clockMhz).toBe(1200);
    expect(bestConfig(p, 'MM', MM_LOADS.medium)!.tp).toBe(4);
  });

  it('chooseClock drops clocks that miss the SLO and falls back to max clock when none is feasible', () => {
    const d = chooseClock({ profile: p, tp: 4, loadByType: { MM: MM_LOADS.high } });
    expect(d.candidates.filter((c) => !c.feasible).map((c) => c.clockMhz)).toEqual([800, 1200]);
    expect(d.clockMhz).toBe(2000);
    const none = chooseClock({ profile: p, tp: 2, loadByType: { LL: MEDIUM('LL') } });
    expect(none).toMatchObject({ feasible: false, clockMhz: 2000 });
  });

  it('headroom can make a clock infeasible', () => {
    expect(chooseClock({ profile: p, tp: 4, loadByType: { MM: MM_LOADS.high } }).feasible).toBe(true);
    const d = chooseClock({ profile: p, tp: 4, loadByType: { MM: MM_LOADS.high }, headroom: 0.2 });
    expect(d.feasible).toBe(false);
  });
});

describe('mix power curve', () => {
  it('mixPowerAt equals the piecewise-linear curve the MILP uses, and reduces to the profile for one type', async () => {
    const { syntheticProfile } = await import('../fixtures/paper-profile.ts');
    const { mixCurve, powerAt, mixPowerAt, scaleLoad, totalLoad } = await import('../../src/policy/index.ts');
    const { interpolate } = await import('../../src/model/profile.ts');
    const s = syntheticProfile();
    const mix = { MM: 1, MS: 0.5, LL: 0.2 };
    for (const tp of [2, 4, 8]) for (const f of s.clocksMhz) {
      const c = mixCurve(s, mix, tp, f);
      if (!c) continue;
      for (const frac of [0.05, 0.4, 0.77, 1]) {
        const L = c.cap * frac;
        expect(mixPowerAt(s, scaleLoad(mix, L / totalLoad(mix)), tp, f)).toBeCloseTo(powerAt(c, L), 6);
      }
    }
    const one = mixCurve(s, { SS: 1 }, 4, 1400)!;
    expect(powerAt(one, 3.3)).toBeCloseTo(interpolate(s, 'SS', 4, 1400, 3.3).powerW, 6);
  });
});
