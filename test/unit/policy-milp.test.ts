import { describe, it, expect, afterAll } from 'vitest';
import highsDefault from 'highs';
import { syntheticProfile, paperProfile, MM_LOADS } from '../fixtures/paper-profile.ts';
import { solveEq1, heuristicPoolPlan, type HighsLike, type LoadByType } from '../../src/policy/index.ts';
import { MilpPlanner, MilpTimeoutError, MilpWorkerExitError } from '../../src/runtime/milp-planner.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';

type Loader = () => Promise<unknown>;
const loadHighs: Loader = typeof highsDefault === 'function' ? (highsDefault as unknown as Loader) : (highsDefault as unknown as { default: Loader }).default;
const highs = (await loadHighs()) as HighsLike;
// a coarse grid keeps each HiGHS solve well under a second on a shared 2-core machine
const profile = syntheticProfile({ clocks: [800, 1400, 1980], loadsPerType: 4 });

/**
 * Bounds on the heuristics' energy gap to the Eq. 1 optimum on these seeded instances (deterministic: the
 * pools are seeded and HiGHS is exact here). Measured: at most 1.56% for both (the paper's split priced at
 * max clock, and the clock-aware split); the bounds leave that a little room and no more, so a heuristic that
 * gets worse fails. On a finer clock grid the paper's split can be far off (a split cheapest at max clock is
 * not the cheapest at the clock finally used); that is what the clock-aware split is for.
 */
const GAP_BOUND_PAPER = 0.02;
const GAP_BOUND_CLOCK_AWARE = 0.02;

describe('Eq. 1 MILP (HiGHS) vs the heuristics', () => {
  it('heuristic (planSharding + chooseClock) >= optimum, gap below the bound, on seeded random pools', () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const gaps: number[] = [];
    const gapsCA: number[] = [];
    for (let trial = 0; trial < 8; trial++) {
      const gpus = 8 * (1 + Math.floor(rnd() * 2));
      const types = REQUEST_TYPES.filter(() => rnd() < 0.3);
      if (!types.length) types.push('MM');
      const load: LoadByType = {};
      for (const t of types) load[t] = 0.3 + rnd() * 2.5;
      const h = heuristicPoolPlan(profile, load, gpus, 300);
      const m = solveEq1(highs, { profile, pools: [{ id: 'p', loadByType: load }], gpus, epochS: 300 });
      if (!h.feasible) { expect(m.feasible).toBe(false); continue; }
      expect(m.feasible).toBe(true);
      expect(h.energyJ).toBeGreaterThanOrEqual(m.energy * (1 - 1e-4));
      const gap = h.energyJ / m.energy - 1;
      gaps.push(gap);
      const hc = heuristicPoolPlan(profile, load, gpus, 300, 0, true);
      expect(hc.energyJ).toBeGreaterThanOrEqual(m.energy * (1 - 1e-4));
      expect(hc.energyJ).toBeLessThanOrEqual(h.energyJ * (1 + 1e-9));
      gapsCA.push(hc.energyJ / m.energy - 1);
      // the MILP's reported configuration is consistent with its constraints
      expect(m.config.reduce((s, c) => s + c.tp * c.count, 0)).toBeLessThanOrEqual(gpus);
      expect(m.config.reduce((s, c) => s + c.count * c.loadPerInstance, 0)).toBeGreaterThanOrEqual(Object.values(load).reduce((a, b) => a + b!, 0) * (1 - 1e-6));
    }
    const show = (name: string, g: number[]) => {
      const mean = g.reduce((a, b) => a + b, 0) / g.length;
      console.log(`${name} vs HiGHS energy gap over ${g.length} feasible pools: mean ${(mean * 100).toFixed(2)}%, max ${(Math.max(...g) * 100).toFixed(2)}%: ${g.map((x) => (x * 100).toFixed(1) + '%').join(' ')}`);
    };
    show('heuristic (paper: split at max clock)', gaps);
    show('heuristic (clock-aware split)', gapsCA);
    expect(gaps.length).toBeGreaterThanOrEqual(5);
    expect(Math.max(...gaps)).toBeLessThan(GAP_BOUND_PAPER);
    expect(Math.max(...gapsCA)).toBeLessThan(GAP_BOUND_CLOCK_AWARE);
  });

  it('on the paper profile the MILP picks the paper optimum for one MM instance', () => {
    const p = paperProfile();
    const m = solveEq1(highs, { profile: p, pools: [{ id: 'mm', loadByType: { MM: MM_LOADS.medium } }], gpus: 8, epochS: 300, tps: [2, 4, 8] });
    expect(m.config).toEqual([expect.objectContaining({ tp: 4, clockMhz: 1600, count: 1 })]);
  });

  it('reports infeasible when the GPUs cannot carry the load', () => {
    const m = solveEq1(highs, { profile, pools: [{ id: 'p', loadByType: { LL: 50 } }], gpus: 8, epochS: 300 });
    expect(m.feasible).toBe(false);
  });
});

describe('MilpPlanner (worker thread)', () => {
  const planner = new MilpPlanner({ deadlineMs: 20_000 });
  afterAll(() => planner.close());

  it('solves in a worker with the same answer as in-thread', async () => {
    const input = { profile, pools: [{ id: 'p', loadByType: { MM: 3, SS: 5 } as LoadByType }], gpus: 16, epochS: 300 };
    const [a, b] = await Promise.all([planner.solve(input), Promise.resolve(solveEq1(highs, input))]);
    expect(a.energy).toBeCloseTo(b.energy, 3);
  }, 30_000);

  it('rejects every pending call when the worker exits, then recovers', async () => {
    // a worker that exits when asked to solve for a pool named 'crash' (test/fixtures/milp-crash-worker.ts)
    const crashy = new MilpPlanner({ deadlineMs: 20_000, workerModule: new URL('../fixtures/milp-crash-worker.ts', import.meta.url) });
    try {
      const input = { profile, pools: [{ id: 'p', loadByType: { MM: 3 } as LoadByType }], gpus: 16, epochS: 300 };
      // the worker handles messages in order: it exits on the first, so the second is pending when it does
      const crash = crashy.solve({ ...input, pools: [{ id: 'crash', loadByType: { MM: 3 } as LoadByType }] });
      const pending = crashy.solve(input);
      await expect(crash).rejects.toBeInstanceOf(MilpWorkerExitError);
      await expect(pending).rejects.toBeInstanceOf(MilpWorkerExitError);
      const again = await crashy.solve(input);
      expect(again.feasible).toBe(true);
    } finally {
      await crashy.close();
    }
  }, 30_000);

  it('rejects with MilpTimeoutError past the deadline', async () => {
    const input = { profile, pools: REQUEST_TYPES.map((t) => ({ id: t, loadByType: { [t]: 2 } as LoadByType })), gpus: 320, epochS: 300 };
    await expect(planner.solve(input, 1)).rejects.toBeInstanceOf(MilpTimeoutError);
  }, 30_000);
});
