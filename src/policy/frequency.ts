/**
 * Instance manager decision (paper Sec. IV-C): the GPU clock for the coming epoch (default 5 s). Clocks
 * whose profiled p99 TTFT/TBT would miss the SLO at the current load are dropped (for a type mix: the
 * instance is feasible when sum_t load_t / maxLoad_t(tp, clock) <= 1 - headroom); among the rest, the one
 * with least instance power wins (at a fixed load, least power = least energy per request). Pure.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { maxClockOf, maxLoadFn, mixPowerAt, totalLoad, utilisationOf } from './energy.ts';
import type { ClockDecision, LoadByType, TpDegree } from './types.ts';

export interface ChooseClockInput {
  profile: Profile;
  tp: number;
  /** the instance's offered load by type, req/s. */
  loadByType: LoadByType;
  /** SLO multiplier (1 = Table IV; 10 and 20 = the paper's relaxed variants). Default 1. */
  sloScale?: number;
  /** fraction of the SLO throughput kept free against bursts, 0..1. Default 0. */
  headroom?: number;
  /** candidate clocks, MHz. Default: the profile's clocks. */
  clocks?: number[];
  /**
   * the instance's recent peak load by type, req/s (e.g. the max of its short-window load over the last
   * epochs). When given, a clock is feasible only if it meets the SLO at the element-wise max of this and
   * `loadByType` (provision for the burst, not the mean); power is still read at `loadByType`. Default: none.
   */
  peakLoadByType?: LoadByType;
}

export interface ClockCandidate {
  clockMhz: number;
  utilisation: number;
  feasible: boolean;
  powerW: number;
}

export interface ClockDecisionDetail extends ClockDecision {
  /** predicted energy per request, J (powerW / load); 0 at zero load. */
  energyPerRequestJ: number;
  utilisation: number;
  candidates: ClockCandidate[];
}

export function chooseClock(input: ChooseClockInput): ClockDecisionDetail {
  const { profile: p, tp, loadByType } = input;
  const h = input.headroom ?? 0;
  if (!(h >= 0 && h < 1)) throw new RangeError(`headroom must be in [0, 1), got ${h}`);
  const ml = maxLoadFn(p, input.sloScale ?? 1);
  const clocks = [...(input.clocks ?? p.clocksMhz)].sort((a, b) => a - b);
  const L = totalLoad(loadByType);
  let need: LoadByType = loadByType;
  if (input.peakLoadByType) {
    need = { ...loadByType };
    for (const [t, v] of Object.entries(input.peakLoadByType) as [RequestType, number][]) if (v > (need[t] ?? 0)) need[t] = v;
  }
  const candidates: ClockCandidate[] = clocks.map((f) => {
    const u = utilisationOf(p, tp, f, need, ml);
    const feasible = u <= 1 - h + 1e-12;
    const powerW = feasible ? mixPowerAt(p, loadByType, tp, f, ml) : Infinity;
    return { clockMhz: f, utilisation: u, feasible: feasible && Number.isFinite(powerW), powerW };
  });
  let best: ClockCandidate | null = null;
  for (const c of candidates) if (c.feasible && (!best || c.powerW < best.powerW - 1e-9)) best = c;
  if (!best) {
    const fmax = Math.min(maxClockOf(p), clocks[clocks.length - 1]!);
    const u = utilisationOf(p, tp, fmax, need, ml);
    return {
      clockMhz: fmax,
      powerW: NaN,
      feasible: false,
      reason: `no clock meets the SLO at ${fmt(L)} req/s on TP${tp} (utilisation at ${fmax} MHz: ${fmt(u)} > ${fmt(1 - h)}); max clock, emergency path applies`,
      energyPerRequestJ: NaN,
      utilisation: u,
      candidates,
    };
  }
  const dropped = candidates.filter((c) => !c.feasible).map((c) => c.clockMhz);
  return {
    clockMhz: best.clockMhz,
    powerW: best.powerW,
    feasible: true,
    reason: `least power among clocks meeting the SLO at ${fmt(L)} req/s on TP${tp}` + (dropped.length ? `; dropped ${dropped.join(', ')} MHz (SLO)` : ''),
    energyPerRequestJ: L > 0 ? best.powerW / L : 0,
    utilisation: best.utilisation,
    candidates,
  };
}

export interface BestConfig {
  tp: TpDegree;
  clockMhz: number;
  powerW: number;
  energyPerRequestJ: number;
}

/**
 * The least-energy (TP, clock) for one instance carrying `load` req/s of `type` (or a mix): per TP the
 * instance-manager clock choice, then the TP with least energy per request. This is the paper's Table I/II
 * question ("which configuration serves this load at least energy"). null when nothing is feasible.
 */
export function bestConfig(
  profile: Profile,
  type: RequestType | LoadByType,
  load: number,
  options: { tps?: number[]; clocks?: number[]; sloScale?: number; headroom?: number } = {},
): BestConfig | null {
  const mix: LoadByType = typeof type === 'string' ? { [type]: load } : scaleTo(type, load);
  let best: BestConfig | null = null;
  for (const tp of options.tps ?? profile.tpDegrees) {
    const d = chooseClock({ profile, tp, loadByType: mix, clocks: options.clocks, sloScale: options.sloScale, headroom: options.headroom });
    if (!d.feasible) continue;
    if (!best || d.energyPerRequestJ < best.energyPerRequestJ - 1e-12) {
      best = { tp: tp as TpDegree, clockMhz: d.clockMhz, powerW: d.powerW, energyPerRequestJ: d.energyPerRequestJ };
    }
  }
  return best;
}

function scaleTo(mix: LoadByType, total: number): LoadByType {
  const s = totalLoad(mix);
  const out: LoadByType = {};
  for (const [t, l] of Object.entries(mix) as [RequestType, number][]) if (l > 0) out[t] = (l / s) * total;
  return out;
}

const fmt = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));
