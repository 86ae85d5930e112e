/**
 * Pool manager decision (paper Sec. IV-B): split ALL the pool's N GPUs into TP2/TP4/TP8 instances minimising
 * the energy of the coming epoch at max clock (Eq. 1 with the frequency fixed), and take the new split
 * only when the energy it saves over the epoch pays for the reconfiguration (overhead table). Load is
 * spread over instances in proportion to their SLO capacity. Pure.
 */
import type { Profile } from '../model/profile-types.ts';
import { idlePowerOf } from '../model/profile.ts';
import { chooseClock } from './frequency.ts';
import { maxClockOf, mixCurve, powerAt, scaleLoad, totalLoad, type MixCurve } from './energy.ts';
import { canonicalPlacement, matchReshard, type CurrentInstance, type Placement } from './reshard-matching.ts';
import type { InstanceConfig, LoadByType, ShardPlan, TpDegree } from './types.ts';

export const TP_DEGREES: readonly TpDegree[] = [2, 4, 8];

/** Table VI (re-shard cost in tau), rows source, columns target, in TABLE_VI_CONFIGS order. */
export const TABLE_VI_CONFIGS = ['TP2', '4xTP2', 'TP4', 'TP2+TP4', '2xTP4', 'TP8'] as const;
export const TABLE_VI_TAU: readonly (readonly number[])[] = [
  [0, 4, 2, 2, 2, 1],
  [0, 0, 0, 0, 0, 0],
  [2, 2, 0, 2, 2, 1],
  [0, 2, 0, 0, 1, 1],
  [1, 1, 0, 1, 0, 0],
  [1, 1, 1, 1, 1, 0],
];

/**
 * The pool's hold against near ties, a fraction (paper Sec. IV-B takes a new split when its energy gain pays the
 * overhead table's cost; this adds hysteresis on top, as a control loop on a noisy measurement needs). Default 0.1:
 * - a split the planner moves to must carry (1 + RESHARD_MARGIN) x the load (and the burst guard's peak) within SLO,
 *   while the current split is kept as long as it carries 1 x within SLO (left at once when it does not);
 * - a split that carries the load is replaced only when the new one saves more than the re-shard's cost (Table VI
 *   time, or an instance start, x the power it holds) at every load within RESHARD_MARGIN of the measured one (the
 *   measured load, and it x (1 - RESHARD_MARGIN) and x (1 + RESHARD_MARGIN)): a near tie, a saving that a load off by
 *   the margin would turn into a loss or into less than the cost, keeps the current split;
 * - overloaded (no split carries the load), the split of the highest SLO capacity is taken only when that capacity is
 *   more than (1 + RESHARD_MARGIN) x the current split's: a re-shard under overload for a capacity gain within the
 *   measurement's noise moves the pool's load onto instances that start empty while the old ones drain their queues
 *   (on the first synthetic day a one-server pool of the S, M and ML types, no split carrying its 3.8 req/s, went
 *   2xTP4 -> 1xTP8 and its TTFT rose until the next epoch went back: docs/SIMULATION.md; for a mix of that kind,
 *   ML 1.5, SM 1.0, MS 0.8 and MM 0.5 req/s, the profile gives 1xTP8 2.6% more capacity than 2xTP4).
 * Why a tenth: the load both rules read is a minute's arrivals (the burst guard's highest minute) or a few seconds'
 * rate; at 10 req/s a minute holds ~600 requests, whose count alone varies by +-4% (Poisson, one standard deviation)
 * and whose type mix shifts more. Without the margin, a 2.5% difference in one type's load (ML 1.45 against
 * 1.49 req/s on the twin window, docs/SIMULATION.md) flipped a 60-s epoch between 1xTP4 (carrying the peak with no
 * slack, then overloaded at the next epoch) and 2xTP2, and the re-shard count of the window with it (2 against 5).
 */
export const RESHARD_MARGIN = 0.1;

/** The overhead table: what a reconfiguration costs (paper Tables V and VI). */
export interface OverheadTable {
  /** tau: time to move 1/8 of Llama2-70B over NVLink, ms. Default 50 (Table VI). */
  tauMs: number;
  /** engine re-synchronisation after a re-shard, s ("hundreds of ms to a few seconds"). Default 2. */
  resyncS: number;
  /** start of an instance whose weights are not on its server, s. Default 420 (Table V: ~6-8 min naive). */
  instanceStartS: number;
  /** GPU clock change, ms (nvidia-smi, ~50-80 ms). Default 65. */
  clockChangeMs: number;
  /**
   * stop of a drained engine, s: from its stop to its GPUs free. A vLLM process exits in seconds (its API server
   * and engine core shut down, its tensor-parallel workers exit, their CUDA contexts and the KV cache's memory are
   * freed), and a new engine on those GPUs starts only after. Default 5: an estimate, not measured here (no GPU).
   */
  instanceStopS: number;
  /** Table VI for reference (tau). */
  reshardTau: readonly (readonly number[])[];
}

export function overheadTable(o: Partial<OverheadTable> = {}): OverheadTable {
  return { tauMs: 50, resyncS: 2, instanceStartS: 420, clockChangeMs: 65, instanceStopS: 5, reshardTau: TABLE_VI_TAU, ...o };
}

export interface PlanShardingInput {
  profile: Profile;
  /** pool load by type, req/s (whole pool). */
  loadByType: LoadByType;
  /** GPUs of the pool. */
  gpus: number;
  current: InstanceConfig[];
  /** epoch length, s (default pool epoch 300). */
  epochS: number;
  overhead: OverheadTable;
  /** fraction of SLO throughput kept free, 0..1. Default 0. */
  headroom?: number;
  /** TP degrees allowed. Default [2, 4, 8]. */
  tps?: readonly TpDegree[];
  /** at least this many instances even at zero load. Default 1 (when the pool has >= 2 GPUs). */
  minInstances?: number;
  gpusPerServer?: number;
  /** model weight bytes for the re-shard cost. Default Llama2-70B. */
  modelBytes?: number;
  /**
   * Price each candidate split at the clock its instances' managers would pick (least power meeting the
   * SLO at their load share) instead of at max clock. Default false: the paper's pool manager assumes the
   * level below runs at its highest-performance setting (max clock).
   */
  clockAware?: boolean;
  /**
   * Allow splits that leave some of the pool's GPUs in no instance (2a + 4b + 8c <= gpus). Default false:
   * the paper's pool manager "splits its N GPUs into instances" (2a + 4b + 8c == gpus, or the most GPUs the
   * allowed TP degrees can cover); how many GPUs a pool holds is the cluster level's knob, not this one's.
   * Eq. 1 comparisons (heuristicPoolPlan vs solveEq1, whose constraint is <= gpus) opt in.
   */
  allowIdleGpus?: boolean;
  /**
   * the load the split must carry within SLO, req/s by type, when it is above `loadByType` (a burst guard: the
   * peak the pool must stay ready for). Splits are then feasible at this peak and priced at `loadByType`, the
   * load the epoch is expected to run at; the load mix of the capacity is the peak's. Default: loadByType.
   */
  peakLoadByType?: LoadByType;
  /**
   * power of a granted GPU in no instance, W (powered, nothing loaded: the GPU's unloaded idle power). With
   * allowIdleGpus, a split that leaves GPUs out is charged this for each of them over the epoch, so a split
   * using fewer GPUs wins only by what its instances save beyond that. Default 0.
   */
  idleGpuW?: number;
  /** at most this many instances of each TP degree (a scale-in of a chosen split keeps its shape). Default none. */
  maxCounts?: Partial<Record<TpDegree, number>>;
  /**
   * hold against near ties (RESHARD_MARGIN's rules): a split other than the current one is a target only when it
   * carries (1 + margin) x the loads, and a current split that carries the load is left only for a saving above
   * the re-shard's cost at every load within +-margin of the measured one. Default 0 (no hold); the pool's decision (planPoolShards)
   * passes RESHARD_MARGIN.
   */
  margin?: number;
}

export interface ShardPlanDetail extends ShardPlan {
  /** whether the target carries the load within SLO at max clock (false: best effort, overloaded). */
  feasible: boolean;
  currentFeasible: boolean;
  /** load (req/s) each instance of a TP gets (capacity-proportional split). */
  perInstanceLoad: Partial<Record<TpDegree, number>>;
  /** placements of the target (from the re-shard matching of a canonical current placement). */
  placements: Placement[];
  mixesEvaluated: number;
}

interface Eval { cfg: InstanceConfig[]; energyJ: number; feasible: boolean; cap: number; perInstanceLoad: Partial<Record<TpDegree, number>>; }

function countOf(cfg: InstanceConfig[], tp: number): number {
  return cfg.filter((c) => c.tp === tp).reduce((s, c) => s + c.count, 0);
}

function normalise(cfg: InstanceConfig[]): InstanceConfig[] {
  return TP_DEGREES.map((tp) => ({ tp, count: countOf(cfg, tp) })).filter((c) => c.count > 0);
}

/** instance power at load li: on the max-clock curve, or (clock-aware) the least over clocks that carry li. */
type PowerFn = (tp: number, li: number) => number;

/** `L`: the load the epoch's energy is priced at; `Lpeak` (>= L): the load the split must carry within SLO. */
/** whether a split of SLO capacity `cap` carries `k` x the loads (the headroom kept over the measured load, the peak at capacity). */
function carries(cap: number, L: number, Lpeak: number, h: number, k: number): boolean {
  return k * L <= cap * (1 - h) + 1e-9 && k * Lpeak <= cap + 1e-9;
}

function evaluate(cfg: InstanceConfig[], curves: Map<number, MixCurve | null>, L: number, epochS: number, h: number, powerFn?: PowerFn, Lpeak = L): Eval {
  let cap = 0;
  for (const c of cfg) {
    const cu = curves.get(c.tp);
    if (c.count > 0 && cu) cap += c.count * cu.cap;
  }
  // the peak (a highest minute) is carried at the SLO capacity; the headroom is kept over the measured load
  const feasible = carries(cap, L, Lpeak, h, 1) && cfg.every((c) => c.count === 0 || curves.get(c.tp));
  let energyJ = 0;
  const perInstanceLoad: Partial<Record<TpDegree, number>> = {};
  for (const c of cfg) {
    if (!c.count) continue;
    const cu = curves.get(c.tp);
    if (!cu) { energyJ = Infinity; continue; }
    const li = cap > 0 ? (L * cu.cap) / cap : 0;
    perInstanceLoad[c.tp] = li;
    energyJ += c.count * (powerFn ? powerFn(c.tp, li) : powerAt(cu, Math.min(li, cu.cap))) * epochS;
  }
  return { cfg: normalise(cfg), energyJ, feasible, cap, perInstanceLoad };
}

/** Reconfiguration cost, J: re-shard time (or instance start when weights must come from outside) x the new instance's loaded-idle power. */
export function reconfigurationCost(
  profile: Profile,
  current: CurrentInstance[],
  target: InstanceConfig[],
  overhead: OverheadTable,
  gpusPerServer = 8,
  modelBytes?: number,
): { costJ: number; placements: Placement[] } {
  const r = matchReshard(current, target, gpusPerServer, modelBytes);
  const fmax = maxClockOf(profile);
  const curById = new Map(current.map((c) => [c.id, c]));
  let costJ = 0;
  for (const pl of r.placements) {
    const src = pl.from.length === 1 ? curById.get(pl.from[0]!) : undefined;
    const unchanged = src && src.tp === pl.tp && pl.bytesMoved === 0 && src.gpus.every((g, i) => g === pl.gpus[i]);
    if (unchanged) continue;
    const s = pl.fresh ? overhead.instanceStartS : (pl.costTau * overhead.tauMs) / 1000 + overhead.resyncS;
    costJ += s * idlePowerOf(profile, pl.tp, fmax);
  }
  return { costJ, placements: r.placements };
}

export function planSharding(input: PlanShardingInput): ShardPlanDetail {
  const { profile: p, gpus, epochS } = input;
  const h = input.headroom ?? 0;
  const tps = input.tps ?? TP_DEGREES;
  const fmax = maxClockOf(p);
  const L = totalLoad(input.loadByType);
  const mix = input.peakLoadByType && totalLoad(input.peakLoadByType) > 0 ? input.peakLoadByType : input.loadByType;
  const Lpeak = Math.max(L, input.peakLoadByType ? totalLoad(input.peakLoadByType) : 0);
  const curves = new Map<number, MixCurve | null>();
  for (const tp of TP_DEGREES) curves.set(tp, tps.includes(tp) && p.tpDegrees.includes(tp) ? mixCurve(p, mix, tp, fmax) : null);
  let powerFn: PowerFn | undefined;
  if (input.clockAware) {
    const byTp = new Map<number, MixCurve[]>();
    for (const tp of TP_DEGREES) {
      if (!curves.get(tp)) continue;
      byTp.set(tp, p.clocksMhz.map((f) => mixCurve(p, mix, tp, f)).filter((c): c is MixCurve => c !== null));
    }
    powerFn = (tp, li) => {
      let best = Infinity;
      for (const c of byTp.get(tp) ?? []) if (li <= c.cap * (1 - h) + 1e-9) best = Math.min(best, powerAt(c, li));
      return Number.isFinite(best) ? best : powerAt(curves.get(tp)!, Math.min(li, curves.get(tp)!.cap));
    };
  }
  const minInst = input.minInstances ?? (gpus >= 2 ? 1 : 0);
  const idleGpuW = input.allowIdleGpus ? (input.idleGpuW ?? 0) : 0;
  const mc = input.maxCounts;
  const n2 = curves.get(2) ? Math.floor(gpus / 2) : 0;
  const n4 = curves.get(4) ? Math.floor(gpus / 4) : 0;
  const n8 = curves.get(8) ? Math.floor(gpus / 8) : 0;
  const margin = Math.max(0, input.margin ?? 0);
  // the best split that carries (1 + margin) x the loads (a target to move to), and the best that carries 1 x (the
  // fallback when none does)
  let best: Eval | null = null;
  let bestPlain: Eval | null = null;
  let biggest: Eval | null = null;
  let evaluated = 0;
  const better = (a: Eval, b: Eval) => {
    if (a.energyJ < b.energyJ - 1e-6) return true;
    if (a.energyJ > b.energyJ + 1e-6) return false;
    const ga = a.cfg.reduce((s, c) => s + c.tp * c.count, 0), gb = b.cfg.reduce((s, c) => s + c.tp * c.count, 0);
    return ga < gb;
  };
  // GPUs the split must use: all of the pool's (the most the allowed TP degrees can cover), unless opted out
  let useGpus = -1;
  if (!input.allowIdleGpus) {
    for (let c = 0; c <= n8; c++)
      for (let b = 0; b <= n4 && 8 * c + 4 * b <= gpus; b++) {
        const a = Math.min(n2, Math.floor((gpus - 8 * c - 4 * b) / 2));
        useGpus = Math.max(useGpus, 8 * c + 4 * b + 2 * a);
      }
  }
  for (let c = 0; c <= n8; c++) {
    for (let b = 0; b <= n4 && 8 * c + 4 * b <= gpus; b++) {
      for (let a = 0; a <= n2 && 8 * c + 4 * b + 2 * a <= gpus; a++) {
        if (a + b + c < minInst) continue;
        if (mc && (a > (mc[2] ?? Infinity) || b > (mc[4] ?? Infinity) || c > (mc[8] ?? Infinity))) continue;
        if (useGpus >= 0 && 8 * c + 4 * b + 2 * a !== useGpus) continue;
        const e = evaluate([{ tp: 2, count: a }, { tp: 4, count: b }, { tp: 8, count: c }], curves, L, epochS, h, powerFn, Lpeak);
        e.energyJ += (gpus - 8 * c - 4 * b - 2 * a) * idleGpuW * epochS;
        evaluated++;
        if (!biggest || e.cap > biggest.cap + 1e-9 || (Math.abs(e.cap - biggest.cap) <= 1e-9 && better(e, biggest))) biggest = e;
        if (e.feasible && (!bestPlain || better(e, bestPlain))) bestPlain = e;
        if (e.feasible && carries(e.cap, L, Lpeak, h, 1 + margin) && (!best || better(e, best))) best = e;
      }
    }
  }
  best ??= bestPlain;
  const gps = input.gpusPerServer ?? 8;
  const withIdle = (e: Eval): Eval => ({ ...e, energyJ: e.energyJ + Math.max(0, gpus - e.cfg.reduce((n, c) => n + c.tp * c.count, 0)) * idleGpuW * epochS });
  const cur = withIdle(evaluate(normalise(input.current), curves, L, epochS, h, powerFn, Lpeak));
  const feasible = best !== null;
  // overloaded (no split carries the load): the highest-capacity split, unless it carries no more than the margin
  // above the current split's capacity (a near tie: the current split keeps serving, no re-shard for a gain in the
  // measurement's noise)
  const holds = !feasible && biggest !== null && biggest.cap <= cur.cap * (1 + margin) + 1e-9;
  const target = (best ?? (holds ? cur : biggest) ?? cur).cfg;
  const same = JSON.stringify(target) === JSON.stringify(cur.cfg);
  const { costJ, placements } = same ? { costJ: 0, placements: [] as Placement[] } : reconfigurationCost(p, canonicalPlacement(cur.cfg, gps), target, input.overhead, gps, input.modelBytes);
  const tgt = withIdle(evaluate(target, curves, L, epochS, h, powerFn, Lpeak));
  const gain = cur.energyJ - tgt.energyJ;
  let take: boolean, reason: string;
  if (same) { take = false; reason = !feasible ? `overloaded: no split of ${gpus} GPUs carries ${fmt(Lpeak)} req/s within SLO; the current split's capacity (${fmt(cur.cap)} req/s) is within ${fmt(100 * margin)}% of the highest (${fmt(biggest?.cap ?? 0)} req/s): kept` : 'current split is already the best'; }
  else if (!feasible) { take = true; reason = `overloaded: no split of ${gpus} GPUs carries ${fmt(Lpeak)} req/s within SLO; taking the highest-capacity split`; }
  else if (!cur.feasible) { take = true; reason = `current split cannot carry ${fmt(Lpeak)} req/s within SLO`; }
  else {
    // the saving must pay the cost at every load within the margin of the measured one: a near tie (a saving that
    // a load off by the margin would turn into a loss) keeps the current split
    const band = margin > 0 ? [1 - margin, 1 + margin].map((k) => {
      const c = withIdle(evaluate(normalise(input.current), curves, k * L, epochS, h, powerFn, k * Lpeak));
      return c.energyJ - withIdle(evaluate(target, curves, k * L, epochS, h, powerFn, k * Lpeak)).energyJ;
    }) : [];
    const worst = Math.min(gain, ...band);
    const at = margin > 0 ? ` (the least over the load +-${fmt(100 * margin)}%: ${fmt(worst)} J)` : '';
    take = worst > costJ;
    reason = take ? `saves ${fmt(gain)} J over ${epochS} s${at} > reconfiguration cost ${fmt(costJ)} J` : `gain ${fmt(gain)} J over ${epochS} s${at} does not pay the reconfiguration cost ${fmt(costJ)} J`;
  }
  return {
    target,
    currentEnergyJ: cur.energyJ,
    targetEnergyJ: tgt.energyJ,
    costJ,
    take,
    reason,
    feasible,
    currentFeasible: cur.feasible,
    perInstanceLoad: tgt.perInstanceLoad,
    placements,
    mixesEvaluated: evaluated,
  };
}

export interface PoolPlanInstance { tp: TpDegree; count: number; clockMhz: number; loadPerInstance: number; powerW: number; }

/**
 * The pool's full heuristic decision as the live system takes it: planSharding's split (at max clock,
 * ignoring reconfiguration cost), then each instance's clock from chooseClock at its load share.
 * Energy over the epoch, J. Used to compare against the MILP optimum of Eq. 1.
 */
export function heuristicPoolPlan(
  profile: Profile,
  loadByType: LoadByType,
  gpus: number,
  epochS: number,
  headroom = 0,
  clockAware = false,
  allowIdleGpus = true,
): { instances: PoolPlanInstance[]; energyJ: number; feasible: boolean } {
  // default allowIdleGpus: the Eq. 1 MILP this is compared against may leave GPUs unused (<= gpus)
  const plan = planSharding({ profile, loadByType, gpus, current: [], epochS, overhead: overheadTable(), headroom, minInstances: 0, clockAware, allowIdleGpus });
  const L = totalLoad(loadByType);
  const instances: PoolPlanInstance[] = [];
  let energyJ = 0;
  for (const c of plan.target) {
    const li = plan.perInstanceLoad[c.tp] ?? 0;
    const d = chooseClock({ profile, tp: c.tp, loadByType: scaleLoad(loadByType, L > 0 ? li / L : 0), headroom });
    const powerW = d.feasible ? d.powerW : NaN;
    instances.push({ tp: c.tp, count: c.count, clockMhz: d.clockMhz, loadPerInstance: li, powerW });
    energyJ += c.count * powerW * epochS;
  }
  return { instances, energyJ, feasible: plan.feasible };
}

export interface StaggerUnit {
  kind: 'start' | 'reshard' | 'stop';
  tp: number;
  gpus: number[];
  /** current instances this unit replaces or stops. */
  from: string[];
  savingJ: number;
}

/**
 * Staggered execution (paper Sec. IV-B): the reconfiguration from `current` to `target` as ordered
 * batches of at most `maxConcurrent` units, highest saving first (`savingOf`, default: starts and
 * re-shards before stops, so capacity is added before it is removed; larger instances first). The
 * executor keeps old instances serving until their replacements are ready.
 */
export function staggerSteps(
  current: CurrentInstance[],
  target: InstanceConfig[],
  maxConcurrent: number,
  savingOf?: (u: Omit<StaggerUnit, 'savingJ'>) => number,
  gpusPerServer = 8,
): StaggerUnit[][] {
  if (!(maxConcurrent >= 1)) throw new RangeError(`maxConcurrent must be >= 1, got ${maxConcurrent}`);
  const r = matchReshard(current, target, gpusPerServer);
  const curById = new Map(current.map((c) => [c.id, c]));
  const units: Omit<StaggerUnit, 'savingJ'>[] = [];
  const reused = new Set<string>();
  for (const pl of r.placements) {
    pl.from.forEach((id) => reused.add(id));
    const src = pl.from.length === 1 ? curById.get(pl.from[0]!) : undefined;
    if (src && src.tp === pl.tp && pl.bytesMoved === 0 && src.gpus.every((g, i) => g === pl.gpus[i])) continue;
    units.push({ kind: pl.from.length ? 'reshard' : 'start', tp: pl.tp, gpus: pl.gpus, from: pl.from });
  }
  const targetGpus = new Set(r.placements.flatMap((pl) => pl.gpus));
  for (const c of current) {
    if (!reused.has(c.id) || c.gpus.some((g) => !targetGpus.has(g))) {
      if (!reused.has(c.id)) units.push({ kind: 'stop', tp: c.tp, gpus: c.gpus, from: [c.id] });
    }
  }
  const rank = { start: 2, reshard: 1, stop: 0 } as const;
  const scored = units.map((u, i) => ({ ...u, savingJ: savingOf ? savingOf(u) : 0, i }));
  scored.sort((a, b) => b.savingJ - a.savingJ || (savingOf ? 0 : rank[b.kind] - rank[a.kind] || b.tp - a.tp) || a.i - b.i);
  const steps: StaggerUnit[][] = [];
  for (let i = 0; i < scored.length; i += maxConcurrent) steps.push(scored.slice(i, i + maxConcurrent).map(({ i: _i, ...u }) => u));
  return steps;
}

const fmt = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));
