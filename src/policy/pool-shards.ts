/**
 * A pool's re-shard decision (policy planSharding at max clock, Eq. 1 with the frequency fixed) and the
 * staggered steps that carry it out; the pool machine (machines/pool.ts) calls these, and the MILP variant
 * (./pool-shards-milp.ts) decides against this heuristic's baseline.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { InstanceStatus } from '../../protocols/control.ts';
import type { Profile } from '../model/profile-types.ts';
import { GPUS } from '../model/catalog.ts';
import { DEFAULT_HEADROOM, type InstanceConfig, type TpDegree } from './types.ts';
import { scaleLoad } from './energy.ts';
import { planSharding, overheadTable, RESHARD_MARGIN, staggerSteps, type OverheadTable, type StaggerUnit } from './sharding.ts';
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
  /**
   * with `peak`: the instances of the measured load's split that the peak does not need are left out (their
   * GPUs stay granted, in no instance). Default false: every granted GPU in an instance.
   */
  allowIdleGpus?: boolean;
  /** the load the split must carry (the burst guard, guardedPoolLoad: >= `load` per type); priced at `load`. */
  peak?: Partial<Record<RequestType, number>>;
  /** share of the pool's prompt tokens its instances served from their prefix caches (poolPrefixReuse); absent: none measured. */
  prefixReuse?: number;
  /** hold against near ties (planSharding `margin`); default RESHARD_MARGIN. */
  margin?: number;
}

/**
 * Measured prefix reuse at which a pool splits its GPUs into its largest TP degree only. The profile prices every
 * prompt as uncached, so it credits small instances (TP2/TP4) with their throughput per GPU and nothing for the
 * prefill a large KV cache saves: an instance's cache is its GPUs' memory less its copy of the weights, so one TP8
 * instance of Llama3.1-70B on H100s holds ~1.3M tokens, two TP4 ~0.9M together, four TP2 ~0.1M. Where a pool
 * reuses a fifth or more of its prompt tokens (sessions that resend their history, shared system prompts), the
 * prefill it re-computes in smaller caches outweighs what their split saves (measured on the long-context hour,
 * docs/SIMULATION.md), and each re-shard between splits empties the caches it replaces.
 */
export const PREFIX_REUSE_LARGEST_TP = 0.2;

/** The pool's measured prefix reuse: prompt tokens served from cache over those looked up, summed over its instances' statuses (cumulative per process). */
export function poolPrefixReuse(statuses: readonly Pick<InstanceStatus, 'prefixCacheTokens'>[]): { prefixReuse: number } | Record<string, never> {
  let lookup = 0, hit = 0;
  for (const st of statuses) {
    lookup += st.prefixCacheTokens?.lookup ?? 0;
    hit += st.prefixCacheTokens?.hit ?? 0;
  }
  return lookup > 0 ? { prefixReuse: Math.min(1, hit / lookup) } : {};
}

/**
 * Each type's pool's measured prefix reuse (poolPrefixReuse over the pool's instances' statuses), for the cluster
 * machine's epoch (`prefixReuse`); types of pools with no lookups are absent. The live cluster manager passes the
 * statuses it hears, the simulator its instances' engine counters in the same shape.
 */
export function prefixReuseByType(pools: readonly { types: readonly RequestType[]; statuses: readonly Pick<InstanceStatus, 'prefixCacheTokens'>[] }[]): Partial<Record<RequestType, number>> {
  const out: Partial<Record<RequestType, number>> = {};
  for (const p of pools) {
    const r = poolPrefixReuse(p.statuses);
    if (r.prefixReuse !== undefined) for (const t of p.types) out[t] = r.prefixReuse;
  }
  return out;
}

/** The TP degrees a pool may split into: its largest one that fits a server and the pool when the pool reuses prefixes (PREFIX_REUSE_LARGEST_TP); else undefined (all). */
export function prefixAwareTps(profile: Profile, gpus: number, gpusPerServer: number, prefixReuse: number | undefined): TpDegree[] | undefined {
  if (prefixReuse === undefined || prefixReuse < PREFIX_REUSE_LARGEST_TP) return undefined;
  const fits = ([2, 4, 8] as const).filter((tp) => profile.tpDegrees.includes(tp) && tp <= gpusPerServer && tp <= gpus);
  return fits.length ? [fits[fits.length - 1]!] : undefined;
}

/**
 * The pool's burst window, in re-shard epochs: the burst guard keeps in instances what the highest minute of the
 * last three epochs needs. A window of one or two epochs forgets a burst before a bursty load repeats it (the coding
 * hour: a TTFT p99 past its SLO with two), while a window of six (the cluster's 30-min recent window) holds instances
 * for a minute the diurnal load left long ago (docs/SIMULATION.md, the synthetic week).
 */
export const POOL_BURST_WINDOW_EPOCHS = 3;

/** The burst guard's window, ms, of a pool whose re-shard epoch is `poolEpochMs` (the live pool leader's and the simulator's). */
export function poolBurstWindowMs(poolEpochMs: number): number {
  return POOL_BURST_WINDOW_EPOCHS * poolEpochMs;
}

/** A minute of a pool's arrivals: the requests its instances admitted in [atMs, atMs + POOL_LOAD_BUCKET_MS), by type. */
export interface PoolLoadSample { atMs: number; counts: Partial<Record<RequestType, number>> }

/** The burst window's bucket: a minute, the unit of the cluster forecaster's highest minute. */
export const POOL_LOAD_BUCKET_MS = 60_000;

/**
 * The pool's recent window of arrivals with `counts` (requests admitted since the last record, by type) added to
 * the minute of `now`, and minutes that ended windowMs or more before now dropped (a new array; windowMs <= 0
 * keeps none). Minutes count from `originMs` (the pool's first traffic: its first minute is the first minute of its
 * traffic, wherever that falls on the wall clock, as in the simulator, whose clock starts with its first arrival). Bounded: windowMs / POOL_LOAD_BUCKET_MS + 1 minutes. The counts come from the instances'
 * cumulative admission counters (status admittedByType), so the window holds what arrived, not an instance's
 * short-window rate estimate (whose per-instance maxima, summed and maximised over a window, read a load the pool
 * never had).
 */
export function recordPoolArrivals(window: readonly PoolLoadSample[], counts: Partial<Record<RequestType, number>>, now: number, windowMs: number, originMs = 0): PoolLoadSample[] {
  if (!(windowMs > 0)) return [];
  const bucket = originMs + Math.floor((now - originMs) / POOL_LOAD_BUCKET_MS) * POOL_LOAD_BUCKET_MS;
  const kept = window.filter((x) => x.atMs + POOL_LOAD_BUCKET_MS > now - windowMs && x.atMs <= now);
  const add = Object.entries(counts).filter(([, n]) => (n ?? 0) > 0) as [RequestType, number][];
  if (!add.length) return kept;
  const at = kept.findIndex((x) => x.atMs === bucket);
  const cur = at >= 0 ? { ...kept[at]!.counts } : {};
  for (const [t, n] of add) cur[t] = (cur[t] ?? 0) + n;
  if (at >= 0) kept[at] = { atMs: bucket, counts: cur };
  else {
    kept.push({ atMs: bucket, counts: cur });
    kept.sort((a, b) => a.atMs - b.atMs);
  }
  return kept;
}

/** GPUs per server of a pool's grants for the global GPU numbering of its re-shard (largest granted index + 1). */
export function grantGpusPerServer(a: { grants: readonly { gpuIds: readonly number[] }[] } | undefined): number {
  let m = 1;
  for (const g of a?.grants ?? []) for (const x of g.gpuIds) m = Math.max(m, x + 1);
  return m;
}

/**
 * The pool's arrivals since its re-shard epoch last read them: the requests its instances admitted (the increments of
 * their statuses' cumulative admittedByType, admittedBetween, wherever they came from: the pool's dispatch or the
 * gateway's own), counted from `sinceMs` to `lastMs`, when the last status was counted (with or without arrivals);
 * `last`: the span and counts of the last reading (a forced epoch right after one reads them too, epochArrivalLoad).
 * An instance stopped within the epoch keeps its arrivals in the count, where a sum of the instances' load estimates
 * loses them with it.
 */
export interface EpochArrivals { sinceMs: number; lastMs: number; counts: Partial<Record<RequestType, number>>; last?: { spanMs: number; counts: Partial<Record<RequestType, number>> } }

/** `acc` with `counts` (requests admitted since the last record, by type) added, up to `now`; counting starts at the first record with arrivals (a new object). */
export function addEpochArrivals(acc: EpochArrivals | undefined, counts: Partial<Record<RequestType, number>>, now: number): EpochArrivals | undefined {
  const add = Object.entries(counts).filter(([, n]) => (n ?? 0) > 0) as [RequestType, number][];
  if (!acc && !add.length) return undefined;
  const out: EpochArrivals = acc ? { ...acc, lastMs: Math.max(acc.lastMs, now), counts: { ...acc.counts } } : { sinceMs: now, lastMs: now, counts: {} };
  for (const [t, n] of add) out.counts[t] = (out.counts[t] ?? 0) + n;
  return out;
}

/**
 * The pool's load for its re-shard epoch, req per modelled s by type: its arrivals since the last reading over the
 * span they were counted in, to the last status counted (`timeScale`: modelled s per wall s, as the instances' loads),
 * and the counter restarted there. The span ends at the last status, not at the epoch's timer: a replica whose event
 * loop stalled reads the statuses of the stall after its timer, and they count in the next epoch. A reading less than
 * half an epoch after the last one (a forced re-shard) takes the last reading's arrivals and span too. `load` is
 * undefined, and the count goes on, where nothing has been counted yet (no status with admission counters since this
 * replica led) or the count began less than half an epoch ago with no reading before (a pool the simulator's cluster
 * epoch created between two of its pool epochs): the caller reads its instances' estimates.
 */
export function epochArrivalLoad(acc: EpochArrivals | undefined, epochMs: number, timeScale = 1): { load?: Partial<Record<RequestType, number>>; next: EpochArrivals | undefined } {
  if (!acc || !(acc.lastMs > acc.sinceMs)) return { next: acc };
  let span = acc.lastMs - acc.sinceMs;
  if (span < epochMs / 2 && !acc.last) return { next: acc };
  const counts = { ...acc.counts };
  if (span < epochMs / 2 && acc.last) {
    span += acc.last.spanMs;
    for (const [t, n] of Object.entries(acc.last.counts) as [RequestType, number][]) counts[t] = (counts[t] ?? 0) + n;
  }
  const load: Partial<Record<RequestType, number>> = {};
  for (const [t, n] of Object.entries(counts) as [RequestType, number][]) if (n > 0) load[t] = n / (span / 1000) / timeScale;
  return { load, next: { sinceMs: acc.lastMs, lastMs: acc.lastMs, counts: {}, last: { spanMs: acc.lastMs - acc.sinceMs, counts: acc.counts } } };
}

/**
 * Requests an instance admitted between its previous status and this one (increments of its cumulative
 * admittedByType), by type; undefined when there is no earlier status of the same process to count from (a first
 * status, a restart, a status out of order, an instance manager without the counter).
 */
export function admittedBetween(prev: Pick<InstanceStatus, 'startedMs' | 'seq' | 'admittedByType'> | undefined, st: Pick<InstanceStatus, 'startedMs' | 'seq' | 'admittedByType'>): Partial<Record<RequestType, number>> | undefined {
  if (!prev?.admittedByType || !st.admittedByType || prev.startedMs !== st.startedMs || st.seq <= prev.seq) return undefined;
  const out: Partial<Record<RequestType, number>> = {};
  for (const [t, n] of Object.entries(st.admittedByType) as [RequestType, number][]) {
    const d = n - (prev.admittedByType[t] ?? 0);
    if (d > 0) out[t] = d;
  }
  return out;
}

/**
 * The window's highest minute, req per modelled s by type: the minute with the most arrivals, with its whole mix (not
 * the per-type maxima across minutes: types peak in different minutes, and their sum is a load the pool never had).
 * The minute under way counts with what has arrived so far, over a whole minute. `timeScale`: as epochArrivalLoad's
 * (engines k times faster than real time serve k modelled seconds a wall second), so the peak is in the unit of the
 * epoch's measured load it floors.
 */
export function windowPeak(window: readonly PoolLoadSample[], timeScale = 1): Partial<Record<RequestType, number>> {
  let best: PoolLoadSample | undefined;
  let top = 0;
  for (const x of window) {
    const tot = Object.values(x.counts).reduce((a, v) => a + (v ?? 0), 0);
    if (tot > top) {
      top = tot;
      best = x;
    }
  }
  const out: Partial<Record<RequestType, number>> = {};
  if (best) for (const [t, n] of Object.entries(best.counts) as [RequestType, number][]) out[t] = n / (POOL_LOAD_BUCKET_MS / 1000) / timeScale;
  return out;
}

/**
 * The pool's burst guard: per type, the larger of what its instances measure now and `floor`, the highest
 * minute of its recent window (windowPeak). The measured load is an EWMA of the last seconds: a quiet minute
 * of a bursty trace reads near zero while the next burst is minutes away; the window remembers the burst.
 * `guarded` is false when the floor is empty (no window: the plan then keeps every granted GPU in an instance).
 */
export function guardedPoolLoad(measured: Partial<Record<RequestType, number>>, floor: Partial<Record<RequestType, number>> | undefined): { load: Partial<Record<RequestType, number>>; guarded: boolean } {
  const load: Partial<Record<RequestType, number>> = { ...measured };
  const guarded = floor !== undefined && Object.values(floor).some((v) => (v ?? 0) > 0);
  if (!guarded) return { load, guarded };
  for (const [t, v] of Object.entries(floor) as [RequestType, number][]) if (v > (load[t] ?? 0)) load[t] = v;
  return { load, guarded };
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
 * table's cost plus the hold against near ties (RESHARD_MARGIN), or at once when the current split cannot carry the
 * load within SLO. undefined when the current layout has an instance outside the profile (e.g. TP1).
 */
export function planPoolShards(i: PoolShardInput): PoolShardDecision | undefined {
  const counts = new Map<number, number>();
  for (const tp of i.current) counts.set(tp, (counts.get(tp) ?? 0) + 1);
  if ([...counts.keys()].some((tp) => !i.profile.tpDegrees.includes(tp) || ![2, 4, 8].includes(tp))) return undefined;
  const current: InstanceConfig[] = [...counts].map(([tp, count]) => ({ tp: tp as TpDegree, count }));
  const overhead = overheadTable(i.overhead);
  let common = { profile: i.profile, loadByType: i.load, gpus: i.gpus, current, epochS: i.epochS, overhead, gpusPerServer: i.gpusPerServer ?? 8, headroom: i.headroom ?? DEFAULT_HEADROOM, margin: i.margin ?? RESHARD_MARGIN };
  // the split of every granted GPU for the measured load (the paper's pool manager); then, with a burst guard, the
  // instances of that split the guard's peak does not need are left out (its shape kept: the TP degrees and at most
  // its counts), each GPU left out charged its unloaded idle power
  let d = planSharding(common);
  // a pool that reuses prefixes keeps its largest KV caches: the largest TP degree only, where that carries the load
  // (the profile prices uncached prompts: that split is sized for the share of the prompt work its caches do not serve)
  let tps = prefixAwareTps(i.profile, i.gpus, i.gpusPerServer ?? 8, i.prefixReuse);
  let uncached = 1;
  if (tps) {
    const large = planSharding({ ...common, tps, loadByType: scaleLoad(i.load, 1 - i.prefixReuse!) });
    if (large.feasible) [common, d, uncached] = [{ ...common, tps, loadByType: scaleLoad(i.load, 1 - i.prefixReuse!) } as typeof common, large, 1 - i.prefixReuse!];
    else tps = undefined;
  }
  let trimmed = false;
  if (i.peak && i.allowIdleGpus && d.feasible) {
    const max: Partial<Record<TpDegree, number>> = {};
    for (const c of d.target) max[c.tp] = c.count;
    const t = planSharding({ ...common, peakLoadByType: scaleLoad(i.peak, uncached), allowIdleGpus: true, idleGpuW: unloadedIdleW(i.profile), maxCounts: max });
    if (t.feasible) {
      d = t;
      trimmed = true;
    }
  }
  const fmt = (c: InstanceConfig[]) => c.map((x) => `${x.count}xTP${x.tp}`).join('+') || 'none';
  return {
    take: d.take,
    target: d.target,
    summary: `${fmt(current)} -> ${fmt(d.target)}: ${d.reason}${trimmed ? `; burst guard: carries the recent window's highest minute (${totalOf(i.peak!).toFixed(2)} req/s), ${i.gpus - gpusOf(d.target)} of ${i.gpus} GPUs in no instance` : ''}${tps ? `; prefix reuse ${(100 * i.prefixReuse!).toFixed(0)}%: TP${tps[0]} only (largest KV caches)` : ''}`,
    inputs: {
      planner: 'heuristic',
      loadByType: i.load, ...(i.peak ? { peakLoadByType: i.peak } : {}), ...(i.prefixReuse !== undefined ? { prefixReuse: i.prefixReuse } : {}), gpus: i.gpus, allowIdleGpus: i.allowIdleGpus === true, trimmed, current, epochS: i.epochS, currentEnergyJ: d.currentEnergyJ, targetEnergyJ: d.targetEnergyJ,
      costJ: d.costJ, margin: common.margin, feasible: d.feasible, currentFeasible: d.currentFeasible, overhead: { tauMs: overhead.tauMs, resyncS: overhead.resyncS, instanceStartS: overhead.instanceStartS },
    },
  };
}

/**
 * The staggered steps of a re-shard (policy staggerSteps over matchReshard's placement that keeps the most
 * weights in place): one unit at a time; starts and re-shards before stops (capacity is added before it
 * is removed), larger instances first. GPUs are global indices: server k of the pool's grants = k * gps.
 * With `granted` (the pool's GPUs, global indices), a unit placed on GPUs an instance still holds when it runs
 * moves to granted GPUs of its server that nothing holds then (startOnFreeGpus): its engine starts beside the
 * ones it replaces instead of after they drain. Of instances alike in weights, the re-shard stops the least busy,
 * the busiest first (stopsByLoad, on `current`'s inFlight).
 */
export function reshardSteps(current: CurrentInstance[], target: InstanceConfig[], gpusPerServer: number, granted?: readonly number[]): StaggerUnit[][] {
  const units = stopsByLoad(current, staggerSteps(current, target, 1, undefined, gpusPerServer).flat(), gpusPerServer);
  return (granted ? startOnFreeGpus(current, units, granted, gpusPerServer) : units).map((u) => [u]);
}

/**
 * Which of several interchangeable instances a re-shard stops, and in what order, by the requests each holds
 * (`inFlight`, queued and running when the re-shard is planned). A stop unit waits until its instance has
 * drained (its requests done) before its engine stops, and the next unit waits for it; the instances not yet
 * drained take the pool's new arrivals meanwhile.
 * - Instances of one TP on one server that the placement keeps as they are or stops whole (their GPUs going to
 *   no new instance) are alike in weights: of those, the least busy are kept, so the new layout begins with the
 *   fewest requests queued on it.
 * - The stop units run busiest first: the longest drain begins at once, while the others still serve.
 * Without `inFlight` (or on ties) the units are staggerSteps' as they are. Both executors run these units (the
 * live pool machine, the simulator's 'units' execution), so which instance stops when does not hang on which
 * instance the dispatch happened to fill.
 */
export function stopsByLoad(current: readonly CurrentInstance[], units: StaggerUnit[], gpusPerServer: number): StaggerUnit[] {
  const work = new Map(current.map((c) => [c.id, c.inFlight ?? 0]));
  const of = (id: string) => work.get(id) ?? 0;
  const serverOf = (c: CurrentInstance) => Math.floor(c.gpus[0]! / gpusPerServer);
  const touched = new Set(units.flatMap((u) => u.from));
  const newGpus = new Set(units.filter((u) => u.kind !== 'stop').flatMap((u) => u.gpus));
  // kept as they are: in no unit, on GPUs no new instance takes
  const kept = current.filter((c) => !touched.has(c.id) && !c.gpus.some((g) => newGpus.has(g)));
  const out = units.map((u) => ({ ...u }));
  for (const u of out) {
    if (u.kind !== 'stop' || u.from.length !== 1) continue;
    const x = current.find((c) => c.id === u.from[0]);
    if (!x || x.gpus.some((g) => newGpus.has(g))) continue;
    // the busiest kept instance like it (same TP, same server) that is busier than it stops in its place
    const y = kept.filter((c) => c.tp === x.tp && serverOf(c) === serverOf(x) && of(c.id) > of(x.id)).sort((a, b) => of(b.id) - of(a.id))[0];
    if (!y) continue;
    Object.assign(u, { gpus: [...y.gpus], from: [y.id] });
    kept.splice(kept.indexOf(y), 1, x);
  }
  // the stop units in the slots they hold, busiest first (stable)
  const load = (u: StaggerUnit) => u.from.reduce((n, id) => n + of(id), 0);
  const slots = out.flatMap((u, i) => (u.kind === 'stop' ? [i] : []));
  const stops = slots.map((i) => out[i]!).sort((a, b) => load(b) - load(a));
  slots.forEach((i, k) => (out[i] = stops[k]!));
  return out;
}

/**
 * The units, in order, each unit that is not a stop placed on an aligned block of its server (alignedBlock): the
 * GPUs an instance id names (instanceIdOf, `g<first>x<tp>`) and the ones a cluster's credentials are made for
 * (possibleInstances), so a unit whose GPUs are not one (matchReshard keeps weights in place: a TP4 on [0,1,2,3]
 * splits into TP2s on [0,2] and [1,3]) is moved to one. A unit on GPUs an instance holds when it runs, or not on an
 * aligned block, goes to a block of granted GPUs of its server that nothing holds then (its engine starts beside
 * the ones it replaces, instead of after they drain: weights placed to stay where they are, the paper's NVLink
 * re-shard, buy nothing to a pool that starts engines anew, vLLM loading its shard on start); without one, a unit
 * not on an aligned block goes to one of the GPUs free once the instances it replaces are gone (they drain first).
 * A unit no aligned block takes keeps its GPUs (the pool machine does not execute such a re-shard). As the
 * executors run units: a unit's new instance holds its GPUs from then on, and the instances it replaces (`from`)
 * or stops are gone after it.
 */
export function startOnFreeGpus(current: CurrentInstance[], units: StaggerUnit[], granted: readonly number[], gpusPerServer: number): StaggerUnit[] {
  const holder = new Map<number, string>();
  for (const c of current) for (const g of c.gpus) holder.set(g, c.id);
  const out: StaggerUnit[] = [];
  const todo = units.map((u) => ({ ...u }));
  for (const [k, unit] of todo.entries()) {
    let u = unit;
    if (u.kind !== 'stop') {
      const server = Math.floor(u.gpus[0]! / gpusPerServer);
      const base = server * gpusPerServer;
      const aligned = isAlignedBlock(u.gpus.map((g) => g - base), u.tp);
      if (!aligned || u.gpus.some((g) => holder.has(g))) {
        const onServer = [...new Set(granted)].filter((g) => Math.floor(g / gpusPerServer) === server).sort((a, b) => a - b);
        const replaced = new Set(u.from);
        const block = alignedBlock(onServer.filter((g) => !holder.has(g)), u.tp, base)
          ?? (aligned ? undefined : alignedBlock(onServer.filter((g) => !holder.has(g) || replaced.has(holder.get(g)!)), u.tp, base));
        if (block) u = { ...u, gpus: block };
        else if (!aligned) {
          u = swapStopped(u, k, todo, onServer, holder, current, base);
          if (!isAlignedBlock(u.gpus.map((g) => g - base), u.tp)) u = moveAside(u, k, out, onServer, holder, current, base);
        }
      }
    }
    out.push(u);
    const gone = new Set(u.from);
    for (const [g, id] of [...holder]) if (gone.has(id)) holder.delete(g);
    if (u.kind !== 'stop') for (const g of u.gpus) holder.set(g, `unit-${k}`);
  }
  return out;
}

/**
 * A unit `k` that no aligned block takes, placed on an aligned block whose other holders (instances the re-shard
 * keeps) each move first to a free aligned block of their TP outside it (a re-shard unit of one instance, pushed to
 * `out`, `holder` edited): free GPUs split across blocks are joined. The unit unchanged when no such moves exist.
 */
function moveAside(u: StaggerUnit, k: number, out: StaggerUnit[], onServer: number[], holder: Map<number, string>, current: CurrentInstance[], base: number): StaggerUnit {
  const inst = new Map(current.map((c) => [c.id, c]));
  const mine = new Set(u.from);
  for (let b0 = base; b0 + u.tp <= base + Math.max(...onServer.map((g) => g - base + 1)); b0 += u.tp) {
    const block = Array.from({ length: u.tp }, (_, i) => b0 + i);
    if (!block.every((g) => onServer.includes(g))) continue;
    const held = [...new Set(block.map((g) => holder.get(g)).filter((id): id is string => id !== undefined && !mine.has(id)))];
    if (held.some((id) => !inst.has(id) || !inst.get(id)!.gpus.every((g) => block.includes(g)))) continue;
    const taken = new Set(block);
    const moves: StaggerUnit[] = [];
    for (const id of held) {
      const c = inst.get(id)!;
      const to = alignedBlock(onServer.filter((g) => !holder.has(g) && !taken.has(g)), c.tp, base);
      if (!to) break;
      for (const g of to) taken.add(g);
      moves.push({ kind: 'reshard', tp: c.tp, gpus: to, from: [id], savingJ: 0 });
    }
    if (moves.length !== held.length) continue;
    for (const [m, v] of moves.entries()) {
      out.push(v);
      for (const g of inst.get(v.from[0]!)!.gpus) holder.delete(g);
      for (const g of v.gpus) holder.set(g, `unit-${k}-move-${m}`);
    }
    return { ...u, gpus: block };
  }
  return u;
}

/**
 * A unit `k` that no aligned block takes on free GPUs or on its own instances' GPUs, placed on an aligned block of
 * GPUs free or held by its own instances or by instances a later stop unit of the re-shard stops (`todo`, edited):
 * the unit replaces the instances that block holds, and each later stop that stopped one of them stops instead one
 * of the unit's former instances of the same TP (the same instances retired, the new one on GPUs its id names).
 * The unit unchanged when there is no such block or no such exchange.
 */
function swapStopped(u: StaggerUnit, k: number, todo: StaggerUnit[], onServer: number[], holder: Map<number, string>, current: CurrentInstance[], base: number): StaggerUnit {
  const stopOf = new Map<string, StaggerUnit>();
  for (const v of todo.slice(k + 1)) if (v.kind === 'stop' && v.from.length === 1) stopOf.set(v.from[0]!, v);
  const mine = new Set(u.from);
  const block = alignedBlock(onServer.filter((g) => !holder.has(g) || mine.has(holder.get(g)!) || stopOf.has(holder.get(g)!)), u.tp, base);
  if (!block) return u;
  const takes = [...new Set(block.map((g) => holder.get(g)).filter((id): id is string => id !== undefined))];
  const into = takes.filter((id) => !mine.has(id));
  const out = u.from.filter((id) => !takes.includes(id));
  const inst = new Map(current.map((c) => [c.id, c]));
  if (into.length !== out.length) return u;
  const pairs: [StaggerUnit, CurrentInstance][] = [];
  const left = [...out];
  for (const id of into) {
    const j = left.findIndex((o) => inst.get(o)?.tp === inst.get(id)?.tp);
    if (j < 0) return u;
    pairs.push([stopOf.get(id)!, inst.get(left.splice(j, 1)[0]!)!]);
  }
  for (const [stop, o] of pairs) Object.assign(stop, { from: [o.id], gpus: [...o.gpus], tp: o.tp });
  return { ...u, gpus: block, from: takes };
}

/** The first `tp` consecutive GPUs of `free` (sorted) starting at `base` plus a multiple of `tp`; undefined when there is none. */
function alignedBlock(free: number[], tp: number, base = 0): number[] | undefined {
  const has = new Set(free);
  for (const g of free) {
    if ((g - base) % tp !== 0) continue;
    const b = Array.from({ length: tp }, (_, i) => g + i);
    if (b.every((x) => has.has(x))) return b;
  }
  return undefined;
}

/**
 * Whether a server's GPUs `local` (its own indices, any order) are the aligned block of `tp` an instance id names:
 * `tp` consecutive GPUs from a multiple of `tp` (instanceIdOf's `g<first>x<tp>` names these and no other GPUs).
 */
export function isAlignedBlock(local: readonly number[], tp: number): boolean {
  const s = [...local].sort((a, b) => a - b);
  return s.length === tp && s[0]! % tp === 0 && s.every((g, i) => g === s[0]! + i);
}

/**
 * The aligned blocks of `tp` (isAlignedBlock) among a server's GPUs `free`, lowest first, disjoint: the instances a
 * pool's reconciliation starts there.
 */
export function alignedGroups(free: readonly number[], tp: number): number[][] {
  const left = [...new Set(free)].sort((a, b) => a - b);
  const out: number[][] = [];
  for (let b = alignedBlock(left, tp); b; b = alignedBlock(left, tp)) {
    out.push(b);
    for (const x of b) left.splice(left.indexOf(x), 1);
  }
  return out;
}

export type { StaggerUnit } from './sharding.ts';

/** One step of a re-shard unit: retire (drain its instances, stop them, wait until they are gone) or start (its new instance, wait until it serves). */
export type UnitStep = 'retire' | 'start';

/**
 * The steps of a re-shard unit, in order, as every executor runs them (the live pool machine, the simulator's
 * 'units' execution, darkReshardUnit's look ahead). `held`: whether an instance holds a GPU when the unit begins
 * (the unit's own `from` included). A stop unit retires its instances. A unit whose GPUs nothing holds starts its
 * new instance first and retires the ones it replaces once it serves (capacity added before it is removed).
 * Otherwise the replaced instances retire first: a vLLM engine holds its GPUs' memory until its process has
 * exited, so the new one starts on their GPUs only after that.
 */
export function unitSteps(u: Pick<StaggerUnit, 'kind' | 'gpus' | 'from'>, held: (gpu: number) => boolean): UnitStep[] {
  if (u.kind === 'stop') return ['retire'];
  if (!u.gpus.some(held)) return u.from.length ? ['start', 'retire'] : ['start'];
  return ['retire', 'start'];
}

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
      const stopFirst = unitSteps(u, (g) => serving.some((x) => x.gpus.includes(g)))[0] === 'retire';
      if (stopFirst && remaining.length === 0) return u;
      remaining.push({ id: `new${k++}`, gpus: u.gpus });
    }
    serving = remaining;
  }
  return undefined;
}

/** Power of a GPU of the profile's kind with nothing loaded, W (the catalog's idle power; 0 for a GPU it does not list). */
function unloadedIdleW(p: Profile): number {
  return GPUS[p.gpu]?.idlePowerW ?? 0;
}

const totalOf = (l: Partial<Record<RequestType, number>>) => Object.values(l).reduce((a, v) => a + (v ?? 0), 0);
const gpusOf = (c: InstanceConfig[]) => c.reduce((n, x) => n + x.tp * x.count, 0);
