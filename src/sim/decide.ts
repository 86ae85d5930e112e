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
import type { ClockDecision, ClusterPlan, InstanceConfig, InstanceView, LoadByType, ShardPlan, TpDegree } from '../policy/types.ts';

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

/** TODO(policy): planCluster. Paper: pool of type t gets floor(PL/ML) servers, remainder forwarded to the next longer pool. */
export function planCluster(a: { forecastPeak: LoadByType; profile: Profile; totalServers: number; gpusPerServer: number }): ClusterPlan {
  const p = a.profile;
  const f = maxClock(p);
  const rationale: ClusterPlan['rationale'] = [];
  const pools: ClusterPlan['pools'] = [];
  const merges: ClusterPlan['merges'] = [];
  let carry: LoadByType = {};
  let carryTypes: RequestType[] = [];
  REQUEST_TYPES.forEach((t, i) => {
    const pl = a.forecastPeak[t] ?? 0;
    const ml = maxLoadOf(p, t, 8, f);
    const last = i === REQUEST_TYPES.length - 1;
    // carried load is expressed in this type's capacity units (its share of a server)
    let needServers = ml > 0 ? pl / ml : 0;
    for (const [ct, cl] of Object.entries(carry)) needServers += (cl ?? 0) / Math.max(1e-9, maxLoadOf(p, ct as RequestType, 8, f));
    const servers = last ? Math.ceil(needServers - 1e-9) : Math.floor(needServers + 1e-9);
    rationale.push({ type: t, peakLoad: pl, maxLoadPerServer: ml, servers, forwarded: last ? 0 : pl - Math.min(pl, servers * ml) });
    const types = [...carryTypes, t];
    const load: LoadByType = { ...carry, [t]: pl };
    if (servers > 0 || last) {
      pools.push({ pool: { id: `pool-${t}`, types }, servers: Math.max(servers, last ? 1 : 0), forecastLoad: load });
      // a pool's leftover fraction is forwarded upward as load of its own types
      const frac = needServers - servers;
      carry = {};
      carryTypes = [];
      if (frac > 1e-9 && !last) {
        for (const tt of types) carry[tt] = ((load[tt] ?? 0) * frac) / Math.max(needServers, 1e-9);
        carryTypes = [...types];
      }
    } else {
      for (const tt of carryTypes) merges.push({ from: `pool-${tt}`, into: `pool-${REQUEST_TYPES[i + 1]}` });
      merges.push({ from: `pool-${t}`, into: `pool-${REQUEST_TYPES[i + 1]}` });
      carry = load;
      carryTypes = types;
    }
  });
  // never more than the fleet: trim from the largest pools
  let total = pools.reduce((s, x) => s + x.servers, 0);
  while (total > a.totalServers) {
    const big = pools.reduce((m, x) => (x.servers > m.servers ? x : m));
    big.servers--;
    total--;
  }
  return { pools: pools.filter((x) => x.servers > 0), merges, totalServers: total, rationale };
}

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

/** TODO(policy): planSharding. Cheapest TP2/4/8 mix of the pool's GPUs (max clock) that meets the SLO. */
export function planSharding(a: { profile: Profile; loadByType: LoadByType; gpus: number; current: InstanceConfig[]; epochS: number; overheadJ: number }): ShardPlan {
  const p = a.profile;
  const f = maxClock(p);
  let best: InstanceConfig[] = a.current;
  let bestW = Infinity;
  const curW = mixPowerW(p, a.current, a.loadByType, f);
  for (let n8 = 0; n8 * 8 <= a.gpus; n8++)
    for (let n4 = 0; n8 * 8 + n4 * 4 <= a.gpus; n4++) {
      const n2 = Math.floor((a.gpus - n8 * 8 - n4 * 4) / 2);
      const mix = [{ tp: 8 as TpDegree, count: n8 }, { tp: 4 as TpDegree, count: n4 }, { tp: 2 as TpDegree, count: n2 }].filter((c) => c.count > 0);
      const w = mixPowerW(p, mix, a.loadByType, f);
      if (w < bestW) {
        bestW = w;
        best = mix;
      }
    }
  const currentEnergyJ = curW * a.epochS;
  const targetEnergyJ = bestW * a.epochS;
  const same = JSON.stringify(best) === JSON.stringify(a.current);
  const take = !same && Number.isFinite(bestW) && (!Number.isFinite(curW) || currentEnergyJ - targetEnergyJ > a.overheadJ);
  return { target: best, currentEnergyJ, targetEnergyJ, costJ: a.overheadJ, take, reason: same ? 'already optimal' : take ? 'gain pays the overhead' : 'gain below overhead' };
}

/** TODO(policy): chooseClock. Lowest-power clock whose profiled capacity covers the load (x sloScale headroom). */
export function chooseClock(a: { profile: Profile; tp: number; loadByType: LoadByType; sloScale?: number }): ClockDecision {
  const p = a.profile;
  let best: ClockDecision | null = null;
  for (const f of p.clocksMhz) {
    if (utilisation(p, a.tp, f, a.loadByType) > 1) continue;
    const w = mixedPowerW(p, a.tp, f, a.loadByType);
    if (!best || w < best.powerW) best = { clockMhz: f, powerW: w, feasible: true, reason: 'least power meeting the SLO' };
  }
  const fm = maxClock(p);
  return best ?? { clockMhz: fm, powerW: mixedPowerW(p, a.tp, fm, a.loadByType), feasible: false, reason: 'no clock meets the SLO' };
}

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
