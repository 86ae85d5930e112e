/**
 * `planner: milp`: a pool's split from Eq. 1 solved exactly (HiGHS) at max clock (the frequency is the instance's
 * decision), taken by the heuristic's rule: the gain over the epoch pays the overhead table's cost of moving the
 * current instances (placed canonically, packed in TP order), or the current split cannot carry the load. The solve
 * itself is I/O (a worker thread live, a synchronous HiGHS in the simulator): the pool machine asks for it with its
 * 'solve' effect (milpSolveInput's Eq. 1) and decides here on the outcome fed back ('planned'). On a solve error
 * (timeout, worker failure) or an infeasible MILP the heuristic's decision stands (inputs.planner says which ran).
 */
import type { Eq1Input, Eq1Result } from './milp.ts';
import { maxClockOf } from './energy.ts';
import { overheadTable, reconfigurationCost } from './sharding.ts';
import type { InstanceConfig, TpDegree } from './types.ts';
import type { PoolShardDecision, PoolShardInput } from './pool-shards.ts';

/** What the solver answered: its result, or why there is none (a timeout, a worker that failed). */
export type MilpSolveOutcome = { result: Eq1Result } | { error: string };

/** The Eq. 1 the MILP solves for a pool's re-shard epoch; undefined when the pool has no load (nothing to solve: the heuristic stands). */
export function milpSolveInput(i: PoolShardInput): Eq1Input | undefined {
  if (!Object.values(i.load).some((x) => (x ?? 0) > 0)) return undefined;
  return { profile: i.profile, pools: [{ id: 'pool', loadByType: i.load }], gpus: i.gpus, epochS: i.epochS, clocks: [maxClockOf(i.profile)] };
}

const fmt = (c: InstanceConfig[]) => c.map((x) => `${x.count}xTP${x.tp}`).join('+') || 'none';

/** The heuristic's decision standing in for the MILP's, and why. */
export function milpFallback(h: PoolShardDecision, why: string): PoolShardDecision {
  return { ...h, summary: `${h.summary} [heuristic: ${why}]`, inputs: { ...h.inputs, planner: 'heuristic', milpFallback: why } };
}

/**
 * The re-shard decision from the MILP's outcome for input `i`, whose heuristic decision is `h` (policy planPoolShards
 * of the same input: its current split, energy and feasibility are the rule's baseline).
 */
export function milpShardDecision(i: PoolShardInput, h: PoolShardDecision, outcome: MilpSolveOutcome): PoolShardDecision {
  if ('error' in outcome) return milpFallback(h, outcome.error);
  const r = outcome.result;
  if (!r.feasible) return milpFallback(h, `MILP ${r.status}`);
  const counts = new Map<TpDegree, number>();
  for (const g of r.config) if (g.count > 0) counts.set(g.tp, (counts.get(g.tp) ?? 0) + g.count);
  const target: InstanceConfig[] = [...counts].sort((a, b) => b[0] - a[0]).map(([tp, count]) => ({ tp, count }));
  const current = h.inputs.current as InstanceConfig[];
  const same = fmt([...current].sort((a, b) => b.tp - a.tp)) === fmt(target);
  // canonical placement of the current instances (packed in TP order) for the overhead-table cost
  let next = 0;
  const placed = [...current].sort((a, b) => b.tp - a.tp).flatMap((c) => Array.from({ length: c.count }, (_, k) => ({ id: `c${c.tp}-${k}`, tp: c.tp, gpus: Array.from({ length: c.tp }, () => next++) })));
  const costJ = same ? 0 : reconfigurationCost(i.profile, placed, target, overheadTable(), i.gpusPerServer ?? 8).costJ;
  const gain = Number(h.inputs.currentEnergyJ) - r.energy;
  const currentFeasible = h.inputs.currentFeasible === true;
  const take = !same && (!currentFeasible || gain > costJ);
  const reason = same ? 'the MILP optimum is the current split' : !currentFeasible ? 'the current split cannot carry the load within SLO'
    : take ? `saves ${gain.toFixed(0)} J over ${i.epochS} s > reconfiguration cost ${costJ.toFixed(0)} J` : `gain ${gain.toFixed(0)} J does not pay the reconfiguration cost ${costJ.toFixed(0)} J`;
  return {
    take,
    target,
    summary: `${fmt(current)} -> ${fmt(target)} (MILP): ${reason}`,
    inputs: {
      ...h.inputs, planner: 'milp', targetEnergyJ: r.energy, costJ, feasible: r.feasible,
      milp: { status: r.status, solveMs: r.solveMs, variables: r.variables, config: r.config },
      heuristic: { target: h.target, targetEnergyJ: h.inputs.targetEnergyJ, take: h.take },
    },
  };
}
