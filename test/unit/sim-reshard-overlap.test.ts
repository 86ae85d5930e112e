/**
 * The simulator's pool epoch (src/sim/pool-leader.ts, the pool machine on its instances' statuses) under its two
 * re-shard executions. A one-server pool at 1xTP8 whose load wants 2xTP4: live (units: each TP4 engine starts on
 * GPUs the TP8 holds, so it drains it first and the pool would be dark for an engine start) the machine keeps
 * 1xTP8; under the paper's NVLink re-shard (the simulator's overlap: the TP8 serves until the TP4s are up) it takes it.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import type { PoolMachineConfig } from '../../src/sim/pool-leader.ts';
import { epochDecision } from '../helpers/sim-pool.ts';

const profile = profileFor('llama2-70b', 'h100');
const cfg = (o: Partial<PoolMachineConfig>): PoolMachineConfig => ({
  pool: 'pool-MM', holder: 'sim', profile, headroom: 0.2, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 300_000,
  initialTp: 8, moveQueueAbove: 8, retryAfterS: 1, planner: 'heuristic', ...o,
});
// short and medium requests at a rate 1xTP8 cannot carry within SLO, 2xTP4 can (the week's MM pool at its peak)
const load = { SS: 1.2, SM: 2.25, MS: 3.75, MM: 3 };
const one = [{ id: 'mm-0', tp: 8, ready: true, clockMhz: 1980, load }];

describe('simulated pool epoch: a re-shard that drains the only instance', () => {
  it('is kept live (units) and taken where the old instance serves until the new layout is up (overlap)', () => {
    const types = ['SS', 'SM', 'MS', 'MM'] as const;
    const live = epochDecision(cfg({}), [...types], one, 8, 600_000, 8);
    expect(live).toMatchObject({ take: false, target: [{ tp: 4, count: 2 }] });
    const overlap = epochDecision(cfg({ reshardKeepsServing: true }), [...types], one, 8, 600_000, 8);
    expect(overlap).toMatchObject({ take: true, target: [{ tp: 4, count: 2 }] });
  });
});
