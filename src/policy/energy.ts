/**
 * Instance power as a function of offered load for a MIX of request types, at one (TP, clock): the curve
 * that sharding, clock choice, dispatch and the MILP all evaluate, so heuristics and the optimum price
 * energy identically and their gap is purely algorithmic.
 *
 * Model (modelled, from the profile): an instance carrying total load L with type shares w_t is at
 * utilisation u = L * k, k = sum_t w_t / maxLoad_t (u = 1 is the SLO throughput cap). Its power is the
 * busy-time-weighted average of the single-type powers at the same utilisation:
 *   P(L) = sum_t c_t * P_t(u * maxLoad_t),   c_t = (w_t / maxLoad_t) / k.
 * For one type this is exactly the profile's P_t(L). Every P_t is piecewise linear in load (the profile
 * interpolates linearly between grid loads), so P is piecewise linear in L with breakpoints at the images
 * of every type's grid loads; `MixCurve` stores those breakpoints, which makes the MILP exact for it.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { interpolate, maxLoadOf, idlePowerOf } from '../model/profile.ts';
import type { LoadByType } from './types.ts';

export interface MixCurve {
  tp: number;
  clockMhz: number;
  /** SLO throughput cap of one instance for this mix, req/s (utilisation 1, before any headroom). */
  cap: number;
  /** ascending loads (req/s per instance) from 0 to cap, and instance power (W) at each. */
  breaks: number[];
  powerW: number[];
}

export function totalLoad(l: LoadByType): number {
  let s = 0;
  for (const t of REQUEST_TYPES) s += l[t] ?? 0;
  return s;
}

export function typesOf(l: LoadByType): RequestType[] {
  return REQUEST_TYPES.filter((t) => (l[t] ?? 0) > 0);
}

export function maxClockOf(p: Profile): number {
  return p.clocksMhz[p.clocksMhz.length - 1]!;
}

/**
 * Power-vs-load curve of one instance at (tp, clock) for the type mix of `mix` (only its proportions
 * matter). Returns null when some type of the mix cannot meet its SLO at any load there (maxLoad 0).
 * With an empty mix the curve is the single point (0, loaded-idle power) with cap 0.
 */
export function mixCurve(
  p: Profile,
  mix: LoadByType,
  tp: number,
  clockMhz: number,
  maxLoad: (t: RequestType, tp: number, clockMhz: number) => number = (t, k, f) => maxLoadOf(p, t, k, f),
): MixCurve | null {
  const total = totalLoad(mix);
  const idle = idlePowerOf(p, tp, clockMhz);
  if (!(total > 0)) return { tp, clockMhz, cap: 0, breaks: [0], powerW: [idle] };
  const types = typesOf(mix);
  const m = new Map<RequestType, number>();
  let k = 0;
  for (const t of types) {
    const ml = maxLoad(t, tp, clockMhz);
    if (!(ml > 0)) return null;
    m.set(t, ml);
    k += (mix[t]! / total) / ml;
  }
  const cap = 1 / k;
  const pts = new Set<number>([0, cap]);
  for (const t of types) {
    const ml = m.get(t)!;
    for (const g of p.loads[t] ?? []) if (g < ml) pts.add(g / (k * ml));
  }
  const breaks = [...pts].filter((x) => x <= cap).sort((a, b) => a - b);
  const powerW = breaks.map((L) => {
    const u = Math.min(1, L * k);
    let w = 0;
    for (const t of types) {
      const ml = m.get(t)!;
      const c = (mix[t]! / total / ml) / k;
      const grid = p.loads[t]!;
      w += c * interpolate(p, t, tp, clockMhz, Math.min(u * ml, grid[grid.length - 1]!)).powerW;
    }
    return w;
  });
  return { tp, clockMhz, cap, breaks, powerW };
}

/**
 * Instance power (W) of `mix` at its own total load, at (tp, clock): the same value as
 * powerAt(mixCurve(...), totalLoad(mix)) without building the whole curve (a few interpolations).
 * Infinity when the mix is infeasible there (a type with maxLoad 0, or utilisation > 1).
 */
export function mixPowerAt(
  p: Profile,
  mix: LoadByType,
  tp: number,
  clockMhz: number,
  maxLoad: (t: RequestType, tp: number, clockMhz: number) => number = (t, k, f) => maxLoadOf(p, t, k, f),
): number {
  const total = totalLoad(mix);
  if (!(total > 0)) return idlePowerOf(p, tp, clockMhz);
  const types = typesOf(mix);
  const ml = types.map((t) => maxLoad(t, tp, clockMhz));
  if (ml.some((m) => !(m > 0))) return Infinity;
  let k = 0;
  types.forEach((t, i) => (k += mix[t]! / total / ml[i]!));
  const u = total * k;
  if (u > 1 + 1e-12) return Infinity;
  let w = 0;
  types.forEach((t, i) => {
    const grid = p.loads[t]!;
    w += ((mix[t]! / total / ml[i]!) / k) * interpolate(p, t, tp, clockMhz, Math.min(u * ml[i]!, ml[i]!, grid[grid.length - 1]!)).powerW;
  });
  return w;
}

/** Instance power (W) at load L on a curve; Infinity above the cap (infeasible). */
export function powerAt(c: MixCurve, L: number): number {
  if (L <= 0) return c.powerW[0]!;
  if (L > c.cap * (1 + 1e-12)) return Infinity;
  const b = c.breaks;
  for (let i = 1; i < b.length; i++) {
    if (L <= b[i]!) {
      const w = (L - b[i - 1]!) / (b[i]! - b[i - 1]!);
      return c.powerW[i - 1]! * (1 - w) + c.powerW[i]! * w;
    }
  }
  return c.powerW[c.powerW.length - 1]!;
}

/** Scale a load vector by a factor (e.g. the share one instance receives). */
export function scaleLoad(l: LoadByType, f: number): LoadByType {
  const out: LoadByType = {};
  for (const t of REQUEST_TYPES) if ((l[t] ?? 0) > 0) out[t] = l[t]! * f;
  return out;
}

/** Utilisation of one instance at (tp, clock): sum_t load_t / maxLoad_t; Infinity if a loaded type is infeasible. */
export function utilisationOf(
  p: Profile,
  tp: number,
  clockMhz: number,
  load: LoadByType,
  maxLoad: (t: RequestType, tp: number, clockMhz: number) => number = (t, k, f) => maxLoadOf(p, t, k, f),
): number {
  let u = 0;
  for (const t of typesOf(load)) {
    const ml = maxLoad(t, tp, clockMhz);
    if (!(ml > 0)) return Infinity;
    u += load[t]! / ml;
  }
  return u;
}

/**
 * Max load (req/s per instance) meeting the SLO scaled by `sloScale` (1 = the profile's own SLO; 10 = the
 * paper's relaxed 10x variant): the highest grid load whose p99 TTFT and TBT are within the scaled SLO.
 * sloScale 1 uses the profile's maxLoad table unchanged.
 */
export function maxLoadFn(p: Profile, sloScale = 1): (t: RequestType, tp: number, clockMhz: number) => number {
  if (sloScale === 1) return (t, tp, f) => maxLoadOf(p, t, tp, f);
  let byScale = scaledCache.get(p);
  if (!byScale) {
    byScale = new Map();
    scaledCache.set(p, byScale);
  }
  let m = byScale.get(sloScale);
  if (!m) {
    m = new Map();
    const spec = new Map(p.requestTypes.map((s) => [s.type, s]));
    for (const c of [...p.cells].sort((a, b) => a.load - b.load)) {
      const s = spec.get(c.type);
      if (!s) continue;
      const k = `${c.type}|${c.tp}|${c.clockMhz}`;
      const ok = c.ttftP99Ms <= s.ttftSloMs * sloScale && c.tbtP99Ms <= s.tbtSloMs * sloScale;
      // max load = the highest load of the contiguous feasible prefix of the grid
      if (!m.has(k)) m.set(k, { max: 0, broken: false });
      const e = m.get(k)!;
      if (!ok) e.broken = true;
      else if (!e.broken && c.load > e.max) e.max = c.load;
    }
    byScale.set(sloScale, m);
  }
  const mm = m;
  return (t, tp, f) => mm.get(`${t}|${tp}|${f}`)?.max ?? 0;
}
const scaledCache = new WeakMap<Profile, Map<number, Map<string, { max: number; broken: boolean }>>>();

/**
 * A request's share of one increment of its instance's energy counter (`deltaJ`: the energy since the reading before,
 * J) when `running` requests run at the reading, the request among them: an even split. The instance manager
 * attributes each reading so (RequestRecord.energyJ where the engine gives no figure of its own), and a gateway
 * estimates the energy of a leg whose instance died before reporting it by the same rule (meteredLegJ).
 */
export function requestShareJ(deltaJ: number, running: number): number {
  return running > 0 && deltaJ > 0 ? deltaJ / running : 0;
}

/** One reading of an instance's energy counter (InstanceTelemetry), at `atMs` on the reader's clock. */
export interface EnergyReading {
  atMs: number;
  /** the instance's cumulative energy, J. */
  energyJ: number;
  /** its power at the reading, W. */
  powerW: number;
  /** requests running on it at the reading. */
  running: number;
}

/**
 * One instance process's readings, summed as the instance attributes them: `shareJ` is what one request that ran
 * through every reading so far was given (requestShareJ of each increment). A request's share from one reading to
 * another is the difference of the two sums, so a reader keeps O(1) per instance, whatever the request's length.
 */
export interface ShareMeter {
  shareJ: number;
  last?: EnergyReading;
  /** ms between the last two readings (the instance's reading interval), 0 before two. */
  gapMs: number;
}

export const newShareMeter = (): ShareMeter => ({ shareJ: 0, gapMs: 0 });

/** The meter after reading `r` (the same process's counter: a restarted one starts a new meter). */
export function meterReading(m: ShareMeter, r: EnergyReading): void {
  if (m.last) {
    m.shareJ += requestShareJ(r.energyJ - m.last.energyJ, r.running);
    m.gapMs = r.atMs - m.last.atMs;
  }
  m.last = r;
}

/**
 * The energy (J, an estimate) of one request that ran on the meter's instance from `fromMs` (when the meter's sum
 * was `startShareJ`) to `toMs` (the reader's clock, not before the meter's last reading), which the instance did not
 * report (it died): the readings in between give it what the instance gave it (`shareJ` - `startShareJ`), and the
 * increment its next reading would have carried is estimated from the last reading's power over the time since it
 * (within the span, at most one reading interval), shared among the requests running then, this one counted.
 */
export function meteredLegJ(m: ShareMeter, startShareJ: number, fromMs: number, toMs: number): number {
  let j = Math.max(0, m.shareJ - startShareJ);
  const last = m.last;
  if (last && m.gapMs > 0) {
    const spanMs = Math.min(toMs - Math.max(fromMs, last.atMs), m.gapMs);
    if (spanMs > 0) j += requestShareJ((last.powerW * spanMs) / 1000, last.atMs > fromMs ? Math.max(1, last.running) : last.running + 1);
  }
  return j;
}
