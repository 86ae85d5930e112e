import { describe, expect, it } from 'vitest';
import { loadHighs, profileFor } from '../../src/sim/index.ts';
import { solveEq1 } from '../../src/policy/milp.ts';

// The oracle (src/sim/control.ts oracleEpoch) solves Eq. 1 per type pool and takes the union when it fits the
// GPU budget: the pools share only that budget, so the union must cost what the joint MILP costs.
describe('oracle Eq. 1 decomposition', () => {
  it('per-pool optima, when they fit the budget, equal the joint optimum', async () => {
    const highs = await loadHighs();
    const profile = profileFor('llama2-70b', 'h100');
    const load = { SS: 0.4, MS: 1.5, LL: 2.0 } as const;
    const pools = Object.entries(load).map(([t, v]) => ({ id: `pool-${t}`, loadByType: { [t]: v } }));
    const common = { profile, gpus: 96, epochS: 300, headroom: 0.2, timeLimitS: 20, mipRelGap: 1e-4 };
    const joint = solveEq1(highs, { ...common, pools });
    const parts = pools.map((p) => solveEq1(highs, { ...common, pools: [p] }));
    expect(joint.feasible).toBe(true);
    expect(parts.every((r) => r.feasible)).toBe(true);
    const gpus = parts.flatMap((r) => r.config).reduce((a, g) => a + g.tp * g.count, 0);
    expect(gpus).toBeLessThanOrEqual(96);
    const sum = parts.reduce((a, r) => a + r.energy, 0);
    expect(Math.abs(sum - joint.energy) / joint.energy).toBeLessThan(2e-3);
  });
});
