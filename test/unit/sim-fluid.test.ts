/**
 * Fluid fidelity's fast reads (src/sim/fluid.ts) against the functions they stand for: each must return the
 * very same number (toBe, not toBeCloseTo), so a fluid run's energy and SLO figures do not move with them.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import * as decide from '../../src/sim/decide.ts';
import { fluidConfig, latencyFast, mixedPowerFast, utilisationFast } from '../../src/sim/fluid.ts';
import { classifyCached, rng } from '../../src/sim/trace.ts';
import { interpolate } from '../../src/model/profile.ts';
import { classifyLengths } from '../../src/model/request-types.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import type { LoadByType } from '../../src/policy/types.ts';

const asLoad = (a: Float64Array): LoadByType => {
  const l: LoadByType = {};
  a.forEach((v, k) => {
    if (v > 0) l[REQUEST_TYPES[k]!] = v;
  });
  return l;
};

describe('fluid fast reads', () => {
  for (const path of ['profiles/llama2-70b.h100.json', 'profiles/llama2-70b.h100.code.json']) {
    it(`equal mixedPowerW, occupancyOf, utilisationOf and interpolate bit for bit (${path})`, () => {
      const p = profileFor('llama2-70b', 'h100', path);
      const fmax = p.clocksMhz[p.clocksMhz.length - 1]!;
      const r = rng(7);
      const pw = new Float64Array(2), lat = new Float64Array(4);
      let n = 0, pastTop = 0, firstSeg = 0;
      // grid clocks and one between two grid clocks (interpolated rows)
      const clocks = [...p.clocksMhz, (p.clocksMhz[0]! + p.clocksMhz[1]!) / 2 + 7];
      for (const tp of p.tpDegrees)
        for (const clock of clocks) {
          const c = fluidConfig(p, tp, clock, fmax);
          expect(c).not.toBeNull();
          for (let s = 0; s < 60; s++) {
            // a random mix: some types absent, loads from 1e-4 to ~3x the grid top (past-top reads)
            const l = new Float64Array(9);
            for (let k = 0; k < 9; k++) {
              if (r() < 0.4) continue;
              const top = p.loads[REQUEST_TYPES[k]!]!.at(-1)!;
              l[k] = top * Math.exp(Math.log(1e-4) + r() * (Math.log(3) - Math.log(1e-4)));
            }
            const load = asLoad(l);
            mixedPowerFast(c!, l, pw);
            expect(pw[0]).toBe(decide.mixedPowerW(p, tp, clock, load));
            expect(pw[1]).toBe(decide.occupancyOf(p, tp, clock, load));
            expect(utilisationFast(c!, l)).toBe(decide.utilisation(p, tp, clock, load));
            for (let k = 0; k < 9; k++) {
              const t = REQUEST_TYPES[k]!;
              const grid = p.loads[t]!;
              const e = c!.e[k]!;
              if (l[k]! > 0 && pw[1]! / e > grid.at(-1)!) pastTop++;
              if (l[k]! > 0 && pw[1]! / e < grid.find((g) => g > 0)!) firstSeg++;
              // latency at a random load on the grid, and exactly on grid points
              const at = [r() * grid.at(-1)!, grid[Math.floor(r() * grid.length)]!];
              for (const x of at) {
                expect(latencyFast(c!, k, x, lat)).toBe(true);
                const cell = interpolate(p, t, tp, clock, x);
                expect([...lat]).toEqual([cell.ttftP50Ms, cell.ttftP99Ms, cell.tbtP50Ms, cell.tbtP99Ms]);
              }
              expect(latencyFast(c!, k, grid.at(-1)! * 1.01, lat)).toBe(false); // off the grid: the caller asks interpolate (which throws)
            }
            n++;
          }
        }
      expect(n).toBeGreaterThan(100);
      // the reads covered all three branches of the power read
      expect(pastTop).toBeGreaterThan(10);
      expect(firstSeg).toBeGreaterThan(10);
    });
  }

  it('an unprofiled TP or a clock off the profile has no fast constants (the tick takes the original path)', () => {
    const p = profileFor('llama2-70b', 'h100', 'profiles/llama2-70b.h100.json');
    const fmax = p.clocksMhz.at(-1)!;
    expect(fluidConfig(p, 3, fmax, fmax)).toBeNull();
    expect(fluidConfig(p, 8, fmax + 100, fmax)).toBeNull();
  });

  it('classifyCached equals classifyLengths, null where it throws', () => {
    const ref = (i: number, o: number): string | null => {
      try {
        return classifyLengths(i, o);
      } catch {
        return null;
      }
    };
    const r = rng(3);
    let nulls = 0;
    for (let s = 0; s < 5000; s++) {
      const i = Math.floor(r() * 20000), o = Math.floor(r() * 3000);
      const want = ref(i, o);
      if (want === null) nulls++;
      expect(classifyCached(i, o)).toBe(want);
      expect(classifyCached(i, o)).toBe(want); // memoised answer
    }
    expect(nulls).toBeGreaterThan(0); // over-long inputs among them
    expect(classifyCached(-1, 5)).toBeNull();
    for (const [i, o] of [[100.5, 7], [70000, 7], [5, 20000]]) expect(classifyCached(i!, o!)).toBe(ref(i!, o!)); // not memoised, still classified
  });
});
