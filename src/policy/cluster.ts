/**
 * Cluster manager decision (paper Sec. IV-A): servers per pool from the forecast peak load per type.
 * Pools are visited from shortest to longest requests in POOL_ORDER (SS<SM<SL<MS<MM<ML<LS<LM<LL: input
 * class first, then output class; every later pool serves requests at least as long in the dominant
 * dimension, so it meets the earlier pool's SLOs at the same server budget or better). Each pool needs
 * D = sum over the load routed to it of load_t / ML_t servers (ML_t = what one server carries of type t at
 * max clock, split into instances of the best of `splitTps`: TP8 alone in the paper; every TP degree when the
 * pools re-shard, since a pool splits its servers into the TP mix that carries its load); it gets floor(D) and
 * the fractional remainder of each type's load is forwarded to the next pool (`longerType`: the pool intake spills
 * that type's requests to, so the plan sizes the pool that takes them); only the last pool (LL) rounds up. A pool
 * that ends with zero servers is merged into the pool that receives its load. Pure.
 */
import { REQUEST_TYPES, inputClassOf, outputClassOf, type LengthClass, type RequestType } from '../../protocols/request-types.ts';
import { PREFIX_REUSE_LARGEST_TP } from './pool-shards.ts';
import type { Profile } from '../model/profile-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import { maxClockOf, totalLoad } from './energy.ts';
import type { ClusterPlan, LoadByType } from './types.ts';

/** "Shorter to longer" order of pools; forwarded load moves right. */
export const POOL_ORDER: readonly RequestType[] = REQUEST_TYPES;

export const poolIdOf = (t: RequestType) => `pool-${t}`;

/**
 * The one rule for where a type's load goes when its pool cannot take it: the type of the next pool in POOL_ORDER
 * (SS -> SM -> SL -> MS -> MM -> ML -> LS -> LM -> LL; input class first, then output class). The cluster plan
 * forwards a pool's load above its floor(D) servers along it and merges a pool with no server into the pool that
 * receives its load (planCluster); intake's chain of pools (machines/cluster.ts routePools: the live intake, the
 * gateway's routing, the simulator's dispatch) spills a request along it. So the pool intake spills a type's requests
 * to is the pool the plan sized for them.
 */
export function longerType(t: RequestType): RequestType | undefined {
  return POOL_ORDER[POOL_ORDER.indexOf(t) + 1];
}

export interface PlanClusterInput {
  /** forecast peak load per type over the coming epoch, req/s. */
  forecastPeak: LoadByType;
  profile: Profile;
  /** servers available to the cluster. */
  totalServers: number;
  /** GPUs per server (8 on a DGX H100). ML per server = TP8 max load x gpusPerServer / 8. */
  gpusPerServer: number;
  /** the plan in force (kept for pool-id stability; not needed for the decision). */
  current?: ClusterPlan;
  /** a type whose peak load (req/s) is below this has its pool merged into the next one. Default 0. */
  minLoadToKeepPool?: number;
  /**
   * the TP degrees a pool may split a server into (its re-shard plan picks among them): a server's capacity for
   * a type is that of the best one (serverCapacity). Default [8]: the paper's TP8 servers (pools that never re-shard).
   */
  splitTps?: readonly number[];
  /**
   * input classes whose types share one pool (sharedPrefixClasses): their shorter-output types are merged into the
   * pool of the class's longer outputs, as a type too small for a pool is. Default none.
   */
  sharedPrefixClasses?: readonly LengthClass[];
}

/** ClusterPlan plus the flags of a capped plan (extends the shared contract compatibly). */
export interface ClusterPlanResult extends ClusterPlan {
  /** servers the forecast needs (before capping). */
  neededServers: number;
  /** true when neededServers > totalServers and pools were trimmed (overloaded; the emergency path applies). */
  capped: boolean;
  /** per request type: the pools its load goes to and the share of its load each gets (sums to 1). */
  routing: Partial<Record<RequestType, { pool: string; share: number }[]>>;
  /** types that no server can serve within SLO at TP8 / max clock (ML = 0); their load is forwarded. */
  unservable: RequestType[];
}

export function planCluster(input: PlanClusterInput): ClusterPlanResult {
  const { profile: p, gpusPerServer } = input;
  if (!(input.totalServers >= 0)) throw new RangeError(`totalServers must be >= 0, got ${input.totalServers}`);
  if (!(gpusPerServer >= 8 && gpusPerServer % 8 === 0)) throw new RangeError(`gpusPerServer must be a multiple of 8 (TP8 instances), got ${gpusPerServer}`);
  const fmax = maxClockOf(p);
  const minKeep = input.minLoadToKeepPool ?? 0;
  const ml = new Map<RequestType, number>();
  for (const t of POOL_ORDER) {
    const typed = p.requestTypes.some((s) => s.type === t);
    ml.set(t, typed ? serverCapacity(p, t, gpusPerServer, input.splitTps ?? [8], fmax) : 0);
  }
  const unservable = POOL_ORDER.filter((t) => !(ml.get(t)! > 0) && (input.forecastPeak[t] ?? 0) > 0);
  // ML of a type that cannot be served is taken from the next servable longer type (conservative)
  const mlEff = (t: RequestType): number => {
    for (let x: RequestType | undefined = t; x; x = longerType(x)) if (ml.get(x)! > 0) return ml.get(x)!;
    return 0;
  };

  const pools: ClusterPlan['pools'] = [];
  const merges: ClusterPlan['merges'] = [];
  const rationale: ClusterPlan['rationale'] = [];
  const kept = new Map<RequestType, Map<string, number>>(); // type -> pool -> load kept there
  // load forwarded to a type's pool, and the types merged into it, from the pools whose longerType it is
  const carried = new Map<RequestType, LoadByType>();
  const mergedInto = new Map<RequestType, RequestType[]>();
  for (let i = 0; i < POOL_ORDER.length; i++) {
    const t = POOL_ORDER[i]!;
    const to = longerType(t);
    const last = to === undefined;
    const pl = input.forecastPeak[t] ?? 0;
    if (!(pl >= 0)) throw new RangeError(`forecastPeak.${t} must be >= 0, got ${pl}`);
    const mergedIn = mergedInto.get(t) ?? [];
    const routed: LoadByType = { ...carried.get(t) };
    if (pl > 0) routed[t] = (routed[t] ?? 0) + pl;
    let D = 0;
    for (const [tt, l] of Object.entries(routed) as [RequestType, number][]) {
      const m = mlEff(tt);
      if (l > 0) D += m > 0 ? l / m : Infinity;
    }
    if (!Number.isFinite(D)) throw new RangeError(`load of a type no pool can serve within SLO (unservable: ${unservable.join(', ')})`);
    const ownTooSmall = !last && pl > 0 && (pl < minKeep || (outputClassOf(t) !== 'L' && (input.sharedPrefixClasses?.includes(inputClassOf(t)) ?? false)));
    let servers = last ? Math.ceil(D - 1e-9) : ownTooSmall ? 0 : Math.floor(D + 1e-9);
    if (!(ml.get(t)! > 0) && !last) servers = 0;
    const keepFrac = D > 0 ? Math.min(1, servers / D) : 0;
    const poolLoad: LoadByType = {};
    const next: LoadByType = {};
    for (const [tt, l] of Object.entries(routed) as [RequestType, number][]) {
      if (keepFrac > 0) poolLoad[tt] = l * keepFrac;
      if (keepFrac < 1) next[tt] = l * (1 - keepFrac);
    }
    rationale.push({ type: t, peakLoad: pl, maxLoadPerServer: ml.get(t)!, servers, forwarded: last ? 0 : pl * (1 - keepFrac) });
    const id = poolIdOf(t);
    if (servers > 0) {
      pools.push({ pool: { id, types: [...mergedIn, t].filter((x, j, a) => a.indexOf(x) === j) }, servers, forecastLoad: poolLoad });
      for (const [tt, l] of Object.entries(poolLoad) as [RequestType, number][]) {
        if (!kept.has(tt)) kept.set(tt, new Map());
        kept.get(tt)!.set(id, l);
      }
      for (const from of mergedIn) merges.push({ from: poolIdOf(from), into: id });
    } else if (!last) {
      mergedInto.set(to, [...(mergedInto.get(to) ?? []), ...mergedIn, ...(pl > 0 ? [t] : [])]);
    } else {
      for (const from of mergedIn) merges.push({ from: poolIdOf(from), into: '(none: no load)' });
    }
    if (!last) {
      const into = { ...carried.get(to) };
      for (const [tt, l] of Object.entries(next) as [RequestType, number][]) into[tt] = (into[tt] ?? 0) + l;
      carried.set(to, into);
    }
  }

  // cap at the servers available: trim the biggest pool first (ties: the longer pool), never below 1 while it has load
  const neededServers = pools.reduce((s, x) => s + x.servers, 0);
  let excess = neededServers - input.totalServers;
  const capped = excess > 0;
  while (excess > 0) {
    let best = -1;
    for (let j = 0; j < pools.length; j++) {
      const s = pools[j]!.servers;
      if (s > 1 && (best < 0 || s >= pools[best]!.servers)) best = j;
    }
    if (best < 0) {
      for (let j = pools.length - 1; j >= 0 && excess > 0; j--) if (pools[j]!.servers > 0) { pools[j]!.servers--; excess--; }
      break;
    }
    pools[best]!.servers--;
    excess--;
  }
  const routing: ClusterPlanResult['routing'] = {};
  for (const t of POOL_ORDER) {
    const pl = input.forecastPeak[t] ?? 0;
    const m = kept.get(t);
    if (!m || !(pl > 0)) continue;
    routing[t] = [...m.entries()].map(([pool, l]) => ({ pool, share: l / pl }));
  }
  const finalPools = pools.filter((x) => x.servers > 0);
  return {
    pools: finalPools,
    merges,
    totalServers: finalPools.reduce((s, x) => s + x.servers, 0),
    rationale,
    neededServers,
    capped,
    routing,
    unservable,
  };
}

/**
 * What one server carries of type t within its SLO at max clock (req/s): its GPUs split into floor(gpusPerServer /
 * tp) instances of the one TP degree of `splitTps` (and of the profile) that carries the most. A type's SLO
 * capacity per GPU differs by TP degree (Llama2-70B LS on H100: TP2 carries ~2.6x what TP8 does per GPU), so a
 * plan sized at TP8 for pools that re-shard to TP2 holds twice the GPUs the load needs.
 */
export function serverCapacity(p: Profile, t: RequestType, gpusPerServer: number, splitTps: readonly number[] = [8], fmax = maxClockOf(p)): number {
  let best = 0;
  for (const tp of splitTps) if (tp <= gpusPerServer && p.tpDegrees.includes(tp)) best = Math.max(best, maxLoadOf(p, t, tp, fmax) * Math.floor(gpusPerServer / tp));
  return best;
}

export interface StartAhead {
  poolId: string;
  /** servers to add to this pool. */
  servers: number;
  /** when to start them, ms from now (the start of the current epoch), so they are ready at the next. */
  startInMs: number;
  /** false when startup takes longer than an epoch: the servers cannot be ready in time. */
  readyInTime: boolean;
}

/**
 * Servers to start ahead of the next epoch (paper Table V: a new instance takes minutes; start it before
 * the predicted peak). startupMs: time from start to serving; epochMs: time to the planned epoch.
 */
export function serversToStartAhead(current: ClusterPlan, planned: ClusterPlan, startupMs: number, epochMs: number): StartAhead[] {
  const cur = new Map(current.pools.map((x) => [x.pool.id, x.servers]));
  const out: StartAhead[] = [];
  for (const x of planned.pools) {
    const add = x.servers - (cur.get(x.pool.id) ?? 0);
    if (add > 0) out.push({ poolId: x.pool.id, servers: add, startInMs: Math.max(0, epochMs - startupMs), readyInTime: startupMs <= epochMs });
  }
  return out;
}

/** Total forecast load (req/s) a plan serves, for reporting. */
export function plannedLoad(plan: ClusterPlan): number {
  return plan.pools.reduce((s, x) => s + totalLoad(x.forecastLoad), 0);
}

/**
 * The input classes whose pools reuse prompt prefixes (a pool's measured reuse >= PREFIX_REUSE_LARGEST_TP, given per
 * type): the turns of one session resend the same growing prefix with outputs of any length, so its requests change
 * type (output class) within their input class. Types of such a class served by one pool keep a session's turns in
 * one set of KV caches; split over pools by output class, each pool's caches see part of the session and recompute
 * the rest.
 */
export function sharedPrefixClasses(reuseByType: Partial<Record<RequestType, number>>): LengthClass[] {
  const out: LengthClass[] = [];
  for (const [t, r] of Object.entries(reuseByType) as [RequestType, number][]) if (r >= PREFIX_REUSE_LARGEST_TP && !out.includes(inputClassOf(t))) out.push(inputClassOf(t));
  return out.sort();
}
