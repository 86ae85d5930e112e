/**
 * The pool machine's 'planned' event as the MILP worker answers a 'solve' effect: an optimal Eq. 1 whose split is
 * `target` (energy 0 J: the split saves the whole epoch's energy, so the machine's rule, policy milpShardDecision, takes
 * it unless it is the current split or leaves the pool dark).
 */
import type { PoolEvent } from '../../src/policy/machines/pool.ts';
import type { InstanceConfig } from '../../src/policy/types.ts';

export function milpSolved(target: InstanceConfig[], energyJ = 0): Extract<PoolEvent, { type: 'planned' }> {
  return {
    type: 'planned',
    solved: { result: { status: 'Optimal', feasible: true, energy: energyJ, solveMs: 1, variables: 2, config: target.map((c) => ({ pool: 'pool', tp: c.tp, clockMhz: 1980, count: c.count, loadPerInstance: 0, powerW: 0 })) } },
  };
}
