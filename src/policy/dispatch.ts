/**
 * Pool manager dispatch (paper Sec. IV-B): send each request to the healthy instance where it adds the
 * least predicted energy, among those that stay under the throughput their SLO allows (maxLoad at their
 * TP and the max clock, since the instance manager raises the clock when needed). Pure.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { interpolate, maxLoadOf } from '../model/profile.ts';
import { maxClockOf, mixCurve, powerAt, totalLoad, utilisationOf } from './energy.ts';
import type { InstanceView, LoadByType } from './types.ts';

export interface DispatchOptions {
  /** load one request adds to an instance's EWMA load, req/s (1 / the EWMA window in s). Default 0.1. */
  requestRate?: number;
  /** fraction of SLO throughput kept free, 0..1. Default 0. */
  headroom?: number;
  /**
   * judge headroom also from the instance's instantaneous state (running + queued vs the concurrency its SLO
   * allows, instantHeadroom). Default true; false = EWMA rate only (the pre-session-4 rule).
   */
  instantaneous?: boolean;
}

/**
 * Requests one instance can hold in flight (running + queued) for type t at (tp, clock) within the SLO:
 * Little's law at the profile's SLO max load, N = maxLoad x (TTFT p50 + TBT p50 x (output - 1)) at that load,
 * plus the Poisson burst the profile itself was measured under (2 sqrt(N): its arrivals are Poisson, so at
 * maxLoad the in-flight count exceeds N + 2 sqrt(N) only ~2% of the time), at least 1 (an idle instance can
 * always take one). 0 when the type is infeasible at (tp, clock). Memoised per profile.
 */
export function maxConcurrencyOf(p: Profile, t: RequestType, tp: number, clockMhz: number): number {
  let m = concMemo.get(p);
  if (!m) concMemo.set(p, (m = new Map()));
  const k = `${t}|${tp}|${clockMhz}`;
  let n = m.get(k);
  if (n === undefined) {
    const ml = maxLoadOf(p, t, tp, clockMhz);
    if (!(ml > 0)) n = 0;
    else {
      const c = interpolate(p, t, tp, clockMhz, ml);
      const out = p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100;
      const N = (ml * (c.ttftP50Ms + c.tbtP50Ms * Math.max(0, out - 1))) / 1000;
      n = Math.max(1, N + 2 * Math.sqrt(N));
    }
    m.set(k, n);
  }
  return n;
}
const concMemo = new WeakMap<Profile, Map<string, number>>();

/**
 * Whether an instance, in its state at this instant, can take one more request of `type` within its SLO at
 * `clockMhz`: sum over its in-flight requests (running + queued, by type; InstanceView.inflightByType when
 * given, else running + queued apportioned by its EWMA load mix, else all of the request's type) of
 * 1 / maxConcurrencyOf, plus the new request's share, <= 1. Queued requests count twice (they have not even
 * started: the same weight as the overflow rule). Headroom is not applied here: the burst allowance is the
 * instantaneous margin.
 */
export function instantHeadroom(view: InstanceView, type: RequestType, profile: Profile, clockMhz: number): boolean {
  const nNew = maxConcurrencyOf(profile, type, view.tp, clockMhz);
  if (!(nNew > 0)) return false;
  let u = 1 / nNew;
  const inflight = view.running + 2 * view.queued;
  if (inflight <= 0) return u <= 1 + 1e-12;
  const by = view.inflightByType;
  if (by && Object.keys(by).length) {
    const cnt = Object.values(by).reduce((a, b) => a + (b ?? 0), 0) || 1;
    for (const [t, c] of Object.entries(by) as [RequestType, number][]) {
      if (!(c > 0)) continue;
      const n = maxConcurrencyOf(profile, t, view.tp, clockMhz);
      u += n > 0 ? (inflight * (c / cnt)) / n : Infinity;
    }
  } else {
    const L = totalLoad(view.load);
    if (L > 0) {
      for (const [t, l] of Object.entries(view.load) as [RequestType, number][]) {
        if (!(l > 0)) continue;
        const n = maxConcurrencyOf(profile, t, view.tp, clockMhz);
        u += n > 0 ? (inflight * (l / L)) / n : Infinity;
      }
    } else u += inflight / nNew;
  }
  return u <= 1 + 1e-12;
}

export type DispatchDecision =
  | { id: string; marginalEnergyJ: number; utilisationAfter: number }
  | { reject: 'no_healthy_instance' | 'all_at_capacity'; retryable: true; detail: string };

/**
 * Two tiers, least marginal energy within a tier: (1) instances under their SLO rate cap (EWMA load at max
 * clock, with the headroom) that, at this instant, can take the request at their CURRENT clock
 * (instantHeadroom); (2) failing all of those, the same at max clock (the instance manager raises the clock:
 * emergency ladder level 2 or the next clock epoch). With `instantaneous: false` only the rate cap applies.
 */
export function chooseInstance(req: { type: RequestType }, instances: InstanceView[], profile: Profile, opts: DispatchOptions = {}): DispatchDecision {
  const fmax = maxClockOf(profile);
  const healthy = instances.filter((i) => i.healthy);
  if (!healthy.length) return { reject: 'no_healthy_instance', retryable: true, detail: `0 of ${instances.length} instances healthy` };
  if (opts.instantaneous === false) return chooseByRate(req, healthy, profile, opts);
  const now = healthy.filter((v) => instantHeadroom(v, req.type, profile, profile.clocksMhz.includes(v.clockMhz) ? v.clockMhz : fmax));
  const d1 = now.length ? chooseByRate(req, now, profile, opts) : null;
  if (d1 && 'id' in d1) return d1;
  const later = healthy.filter((v) => instantHeadroom(v, req.type, profile, fmax));
  const d2 = later.length ? chooseByRate(req, later, profile, opts) : null;
  if (d2 && 'id' in d2) return d2;
  return { reject: 'all_at_capacity', retryable: true, detail: `all ${healthy.length} healthy instances at their SLO cap (rate or in-flight) for ${req.type}` };
}

/** Least marginal energy among `healthy` under the SLO rate cap (EWMA load at max clock, with headroom). */
function chooseByRate(req: { type: RequestType }, healthy: InstanceView[], profile: Profile, opts: DispatchOptions): DispatchDecision {
  const d = opts.requestRate ?? 0.1;
  const h = opts.headroom ?? 0;
  const fmax = maxClockOf(profile);
  let best: { id: string; e: number; u: number } | null = null;
  for (const inst of healthy) {
    const ml = maxLoadOf(profile, req.type, inst.tp, fmax);
    if (!(ml > 0)) continue;
    const uBefore = utilisationOf(profile, inst.tp, fmax, inst.load);
    const uAfter = uBefore + d / ml;
    if (!(uAfter <= 1 - h + 1e-12)) continue;
    const after: LoadByType = { ...inst.load, [req.type]: (inst.load[req.type] ?? 0) + d };
    const e = marginalEnergy(profile, inst, after, fmax, d);
    if (!best || e < best.e - 1e-9 || (Math.abs(e - best.e) <= 1e-9 && (uAfter < best.u - 1e-12 || (Math.abs(uAfter - best.u) <= 1e-12 && inst.id < best.id)))) {
      best = { id: inst.id, e, u: uAfter };
    }
  }
  if (!best) return { reject: 'all_at_capacity', retryable: true, detail: `all ${healthy.length} healthy instances at their SLO throughput cap for ${req.type}` };
  return { id: best.id, marginalEnergyJ: best.e, utilisationAfter: best.u };
}

/** (P(after) - P(before)) / rate: J per request added, at the instance's clock if it can carry the new load there, else at max clock. */
function marginalEnergy(p: Profile, inst: InstanceView, after: LoadByType, fmax: number, d: number): number {
  const clock = p.clocksMhz.includes(inst.clockMhz) && utilisationOf(p, inst.tp, inst.clockMhz, after) <= 1 ? inst.clockMhz : fmax;
  const cb = mixCurve(p, inst.load, inst.tp, clock);
  const ca = mixCurve(p, after, inst.tp, clock);
  if (!ca) return Infinity;
  const before = cb ? powerAt(cb, totalLoad(inst.load)) : powerAt(ca, 0);
  return (powerAt(ca, totalLoad(after)) - before) / d;
}

/** No instance to dispatch to at all (an empty pool): the caller retries once instances exist. */
export class NoInstanceError extends Error {
  readonly retryable = true;
  constructor(detail: string) {
    super(detail);
    this.name = 'NoInstanceError';
  }
}

/** One instance for the overflow rule: (running + 2 x queued) / tp, the least wins, ties to the larger TP. */
export interface DispatchView {
  id: string;
  tp: number;
  clockMhz: number;
  healthy: boolean;
  load: LoadByType;
  queued: number;
  running: number;
  /** requests in flight by type, counts (optional; see InstanceView). */
  inflightByType?: LoadByType;
}

/**
 * The pool manager's full dispatch (the live pool leader and the simulator call this): chooseInstance
 * (least marginal energy under the SLO cap) for the request's type (its predicted type, else the pool's
 * first type, else 'LL'); when every instance is at its SLO cap, or the type/TP is outside the profile, or
 * there is no profile, the instance with the least outstanding work per GPU, (running + 2 x queued) / tp,
 * ties to the larger TP (first in `views` order after that), flagged `atCapacity`: the request still goes
 * there and that instance's emergency ladder takes over (the paper's overload path). The overflow choice
 * looks at every view, healthy or not (as the live adapter always has). Throws NoInstanceError on no views.
 */
export function dispatchRequest(
  req: { type?: RequestType },
  views: DispatchView[],
  profile: Profile | undefined,
  types: readonly RequestType[],
  opts: DispatchOptions = {},
): { id: string; atCapacity: boolean } {
  if (!views.length) throw new NoInstanceError('no instance to dispatch to');
  const type = req.type ?? types[0] ?? 'LL';
  if (profile) {
    try {
      const d = chooseInstance({ type }, views as InstanceView[], profile, opts);
      if ('id' in d) return { id: d.id, atCapacity: false };
    } catch {
      // a type or TP outside the profile: the overflow choice below
    }
  }
  return { id: leastOutstandingPerGpu(views).id, atCapacity: true };
}

/** (running + 2 x queued) / tp, least first; ties to the larger TP, then the earlier view. */
export function leastOutstandingPerGpu<V extends { tp: number; queued: number; running: number }>(views: readonly V[]): V {
  let best = views[0]!;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const v of views) {
    const s = (v.running + 2 * v.queued) / v.tp;
    if (s < bestScore || (s === bestScore && v.tp > best.tp)) {
      best = v;
      bestScore = s;
    }
  }
  return best;
}
