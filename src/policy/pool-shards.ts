/**
 * A pool's re-shard decision (policy planSharding at max clock, Eq. 1 with the frequency fixed) and the
 * staggered steps that carry it out; the pool machine (machines/pool.ts) and the MILP variant of the
 * actors (actors/common/policy.ts planPoolShardsMilp) call these.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { DEFAULT_HEADROOM, type InstanceConfig, type TpDegree } from './types.ts';
import { planSharding, overheadTable, staggerSteps, type OverheadTable, type StaggerUnit } from './sharding.ts';
import type { CurrentInstance } from './reshard-matching.ts';

export interface PoolShardInput {
  profile: Profile;
  load: Partial<Record<RequestType, number>>;
  /** GPUs granted to the pool. */
  gpus: number;
  /** live instances' TP degrees. */
  current: number[];
  /** pool epoch, s (the gain is counted over it). */
  epochS: number;
  gpusPerServer?: number;
  /** SLO capacity kept free; default DEFAULT_HEADROOM. */
  headroom?: number;
  /** reconfiguration costs (instance start, tau, resync); default overheadTable()'s. */
  overhead?: Partial<Pick<OverheadTable, 'tauMs' | 'resyncS' | 'instanceStartS' | 'clockChangeMs'>>;
}

export interface PoolShardDecision {
  take: boolean;
  target: InstanceConfig[];
  summary: string;
  inputs: Record<string, unknown>;
}

/**
 * Re-shard decision of a pool (policy planSharding): the TP2/TP4/TP8 split of its GPUs that minimises
 * energy at max clock (Eq. 1, frequency fixed), taken only when the gain over the epoch pays the overhead
 * table's cost. undefined when the current layout has an instance outside the profile (e.g. TP1).
 */
export function planPoolShards(i: PoolShardInput): PoolShardDecision | undefined {
  const counts = new Map<number, number>();
  for (const tp of i.current) counts.set(tp, (counts.get(tp) ?? 0) + 1);
  if ([...counts.keys()].some((tp) => !i.profile.tpDegrees.includes(tp) || ![2, 4, 8].includes(tp))) return undefined;
  const current: InstanceConfig[] = [...counts].map(([tp, count]) => ({ tp: tp as TpDegree, count }));
  const overhead = overheadTable(i.overhead);
  const d = planSharding({ profile: i.profile, loadByType: i.load, gpus: i.gpus, current, epochS: i.epochS, overhead, gpusPerServer: i.gpusPerServer ?? 8, headroom: i.headroom ?? DEFAULT_HEADROOM });
  const fmt = (c: InstanceConfig[]) => c.map((x) => `${x.count}xTP${x.tp}`).join('+') || 'none';
  return {
    take: d.take,
    target: d.target,
    summary: `${fmt(current)} -> ${fmt(d.target)}: ${d.reason}`,
    inputs: {
      planner: 'heuristic',
      loadByType: i.load, gpus: i.gpus, current, epochS: i.epochS, currentEnergyJ: d.currentEnergyJ, targetEnergyJ: d.targetEnergyJ,
      costJ: d.costJ, feasible: d.feasible, currentFeasible: d.currentFeasible, overhead: { tauMs: overhead.tauMs, resyncS: overhead.resyncS, instanceStartS: overhead.instanceStartS },
    },
  };
}

/**
 * The staggered steps of a re-shard (policy staggerSteps over matchReshard's placement that keeps the most
 * weights in place): one unit at a time; starts and re-shards before stops (capacity is added before it
 * is removed), larger instances first. GPUs are global indices: server k of the pool's grants = k * gps.
 */
export function reshardSteps(current: CurrentInstance[], target: InstanceConfig[], gpusPerServer: number): StaggerUnit[][] {
  return staggerSteps(current, target, 1, undefined, gpusPerServer);
}

export type { StaggerUnit } from './sharding.ts';

/**
 * The first unit of a staggered re-shard that would leave the pool with no instance serving: a unit whose
 * GPUs are held by the instances it replaces, or by others, drains those first (a vLLM engine holds its GPUs'
 * memory: the new one cannot start beside it) and, when nothing else serves at that moment, the pool is dark
 * until the new instance is ready (an engine start, tens of seconds to minutes). Units run one at a time, in
 * order; a unit's new instance serves from the next unit on. undefined when every unit keeps one serving.
 */
export function darkReshardUnit(current: CurrentInstance[], units: StaggerUnit[]): StaggerUnit | undefined {
  let serving = current.map((c) => ({ id: c.id, gpus: c.gpus }));
  let k = 0;
  for (const u of units) {
    const replaced = new Set(u.from);
    const remaining = serving.filter((x) => !replaced.has(x.id));
    if (u.kind !== 'stop') {
      // as the pool machine runs a unit: it starts first only on GPUs no instance holds
      const stopFirst = serving.some((x) => x.gpus.some((g) => u.gpus.includes(g)));
      if (stopFirst && remaining.length === 0) return u;
      remaining.push({ id: `new${k++}`, gpus: u.gpus });
    }
    serving = remaining;
  }
  return undefined;
}
