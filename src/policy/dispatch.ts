/**
 * Pool manager dispatch (paper Sec. IV-B): send each request to the healthy instance where it adds the
 * least predicted energy, among those that stay under the throughput their SLO allows (maxLoad at their
 * TP and the max clock, since the instance manager raises the clock when needed). Pure.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { maxLoadOf } from '../model/profile.ts';
import { maxClockOf, mixCurve, powerAt, totalLoad, utilisationOf } from './energy.ts';
import type { InstanceView, LoadByType } from './types.ts';

export interface DispatchOptions {
  /** load one request adds to an instance's EWMA load, req/s (1 / the EWMA window in s). Default 0.1. */
  requestRate?: number;
  /** fraction of SLO throughput kept free, 0..1. Default 0. */
  headroom?: number;
}

export type DispatchDecision =
  | { id: string; marginalEnergyJ: number; utilisationAfter: number }
  | { reject: 'no_healthy_instance' | 'all_at_capacity'; retryable: true; detail: string };

export function chooseInstance(req: { type: RequestType }, instances: InstanceView[], profile: Profile, opts: DispatchOptions = {}): DispatchDecision {
  const d = opts.requestRate ?? 0.1;
  const h = opts.headroom ?? 0;
  const fmax = maxClockOf(profile);
  const healthy = instances.filter((i) => i.healthy);
  if (!healthy.length) return { reject: 'no_healthy_instance', retryable: true, detail: `0 of ${instances.length} instances healthy` };
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
