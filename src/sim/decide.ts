/**
 * The simulator's policy layer: every decision the simulated cluster takes is ONE call here, and each of
 * these is meant to be one call into src/policy (the code the live actors run). src/policy had not landed
 * when this was written: functions marked `TODO(policy)` are minimal stand-ins with the contract of
 * src/policy/types.ts, to be replaced by a re-export of the src/policy function of the same name.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { interpolate, maxLoadOf, idlePowerOf } from '../model/profile.ts';
import { utilisationOf, typesOf, totalLoad } from '../policy/energy.ts';
import { planCluster as policyPlanCluster } from '../policy/cluster.ts';
import { planSharding as policyPlanSharding, overheadTable } from '../policy/sharding.ts';
import { chooseClock as policyChooseClock } from '../policy/frequency.ts';
import type { InstanceConfig, InstanceView, LoadByType, ShardPlan, TpDegree } from '../policy/types.ts';

export const TP_DEGREES: TpDegree[] = [2, 4, 8];
const maxClock = (p: Profile) => p.clocksMhz[p.clocksMhz.length - 1];

/** Utilisation of one instance (sum of load_t / SLO max load_t): src/policy's own function. */
export const utilisation = utilisationOf;

/**
 * Instance power (W) at a mixed load, with src/policy/energy.ts's model (busy-time-weighted single-type
 * powers at the same utilisation), extended past the SLO cap (u > 1) up to each type's profile grid so
 * the fluid simulator can price an overloaded instance.
 */
export function mixedPowerW(p: Profile, tp: number, clockMhz: number, load: LoadByType): number {
  const types = typesOf(load);
  if (types.length === 0) return idlePowerOf(p, tp, clockMhz);
  const total = totalLoad(load);
  let k = 0;
  const ml: number[] = [];
  for (const t of types) {
    const m = maxLoadOf(p, t, tp, clockMhz);
    const grid = p.loads[t]!;
    // a type infeasible at this (tp, clock) still runs: use its grid top as its capacity
    ml.push(m > 0 ? m : grid[grid.length - 1]);
    k += load[t]! / total / ml[ml.length - 1];
  }
  const u = total * k;
  let w = 0;
  types.forEach((t, i) => {
    const grid = p.loads[t]!;
    const c = load[t]! / total / ml[i] / k;
    w += c * interpolate(p, t, tp, clockMhz, Math.min(u * ml[i], grid[grid.length - 1])).powerW;
  });
  return w;
}

/** Cluster epoch: src/policy's planCluster, the same function object the cluster manager calls. */
export const planCluster = policyPlanCluster;

function splitLoad(load: LoadByType, share: number): LoadByType {
  const o: LoadByType = {};
  for (const t of REQUEST_TYPES) if (load[t]) o[t] = load[t]! * share;
  return o;
}

function mixPowerW(p: Profile, mix: InstanceConfig[], load: LoadByType, clock: number): number {
  // load spread over instances in proportion to their SLO capacity (what the dispatcher approximates)
  const cap = (tp: number) => 1 / Math.max(1e-9, utilisation(p, tp, clock, load));
  let totalCap = 0;
  for (const c of mix) totalCap += c.count * cap(c.tp);
  if (!(totalCap > 0)) return Infinity;
  let w = 0;
  for (const c of mix) {
    if (c.count === 0) continue;
    const share = cap(c.tp) / totalCap;
    const l = splitLoad(load, share);
    if (utilisation(p, c.tp, clock, l) > 1) return Infinity;
    w += c.count * mixedPowerW(p, c.tp, clock, l);
  }
  return w;
}

/** Pool epoch: src/policy's planSharding (overhead table from the sim's reconfiguration costs). */
export const planSharding = policyPlanSharding;
/** Instance epoch: src/policy's chooseClock. */
export const chooseClock = policyChooseClock;
export { overheadTable };

/** TODO(policy): chooseInstance. Least outstanding work relative to SLO capacity among healthy instances. */
export function chooseInstance(req: { type: RequestType }, instances: InstanceView[], profile: Profile): string | null {
  let best: InstanceView | null = null;
  let bestScore = Infinity;
  for (const v of instances) {
    if (!v.healthy) continue;
    const cap = Math.max(1e-9, maxLoadOf(profile, req.type, v.tp, maxClock(profile)));
    const score = (v.queued + v.running + 1) / cap;
    if (score < bestScore) {
      bestScore = score;
      best = v;
    }
  }
  return best ? best.id : null;
}

/** TODO(policy): solveEq1 / MilpPlanner. Eq. 1 by enumeration: per pool, the cheapest (TP mix, clock) for a known load. */
export function solveEq1(a: { profile: Profile; loadByType: LoadByType; gpus: number }): { mix: InstanceConfig[]; clockMhz: number; powerW: number } {
  const p = a.profile;
  let best = { mix: [{ tp: 8 as TpDegree, count: Math.max(1, Math.floor(a.gpus / 8)) }], clockMhz: maxClock(p), powerW: Infinity };
  for (const f of p.clocksMhz)
    for (const tp of TP_DEGREES) {
      // smallest count of this TP that carries the load: Eq. 1 with N_TP instances sharing the load evenly
      const u = utilisation(p, tp, f, a.loadByType);
      if (!Number.isFinite(u)) continue;
      const n = Math.max(1, Math.ceil(u - 1e-9));
      if (n * tp > a.gpus) continue;
      const w = n * mixedPowerW(p, tp, f, splitLoad(a.loadByType, 1 / n));
      if (w < best.powerW) best = { mix: [{ tp, count: n }], clockMhz: f, powerW: w };
    }
  return best;
}
