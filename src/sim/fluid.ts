/**
 * Fluid-fidelity accounting helper (not a decision): how the pool's least-outstanding dispatch shapes each
 * instance's busy time.
 *
 * The profile's power cells are per instance under Poisson arrivals at a mean load: the engine idles (loaded-idle
 * power) while no request is in it, a fraction exp(-x) of the time at occupancy x = sum_t l_t E_t (M/G/inf). That
 * holds when instances receive independent streams (a random split of the pool's arrivals). The baselines'
 * dispatch is least outstanding work (join the shortest queue): an arrival goes to an EMPTY instance whenever one
 * exists, so instances idle far less often. Measured on the batching core (conversation trace, first 15 min,
 * x0.678, 12 TP8 instances at max clock, x = 2.26 each): busy 88.5% under a random split, 97.3% under
 * least-outstanding dispatch (98.7% with the same requests at Poisson times), 1 - exp(-x) = 89.6%. Fluid read the
 * independent-split figure, which was most of its gap to step (fluid 9% low on single-pool).
 */
import { rng } from './trace.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { idlePowerOf, interpolate, maxLoadOf, powerSeries, seriesPowerW, type PowerSeries } from '../model/profile.ts';
import { occupancyS } from './decide.ts';

const memo = new Map<number, number>();
const STEP = Math.log(1.05);

/**
 * Busy fraction of an instance in a pool of `n` identical instances that receive Poisson arrivals at `occupancy`
 * (x = sum_t l_t E_t per instance) and share them by least outstanding requests (ties to the lowest index).
 * Each instance is an infinite server (every request in it is served at once, for its own time E: the light-load
 * batching regime of the profile's busy model), so only x matters (time scales out); service times are one
 * deterministic E (a per-type mixture or exponential times gave the same figure to 0.7 points at n = 12 and 24).
 * A seeded Monte Carlo of the occupancy counts (20,000 arrivals after 2,000 of warm-up), memoised on n and x on a
 * 5% grid. n = 1 is 1 - exp(-x) exactly; the result never falls below it.
 *
 * What it leaves out (measured, n = 12, x = 2.26): the core's service slows with its batch and its dispatch counts
 * a waiting request twice, which spread the counts a little (core busy 98.7% vs 99.6% here at Poisson times);
 * the trace's own within-minute bursts (97.3%). Both make this read high by about 1-2% of power at such loads.
 */
export function leastLoadedBusyFraction(n: number, occupancy: number): number {
  if (!(occupancy > 0)) return 0;
  const indep = 1 - Math.exp(-occupancy);
  if (n <= 1) return indep;
  const j = Math.round(Math.log(occupancy) / STEP);
  const x = Math.exp(j * STEP);
  // past ~n + 6 sqrt(n) requests in the pool on average no instance is ever empty in practice
  if (x * n > n + 6 * Math.sqrt(n) + 10 && Math.exp(-x) < 1e-4) return Math.max(indep, 1 - 1e-6);
  const key = n * 1e6 + j; // one x per grid step j (|j| < 10^5 for any finite x)
  let b = memo.get(key);
  if (b === undefined) {
    b = simulateBusy(n, x);
    if (memo.size > 100_000) memo.clear();
    memo.set(key, b);
  }
  return Math.max(indep, b);
}

function simulateBusy(n: number, x: number): number {
  const r = rng(12345);
  // time unit: the service time E = 1, so the pool's arrival rate is n x
  const lam = n * x;
  const counts = new Int32Array(n);
  // deterministic service: departures leave in arrival order, a FIFO ring of (time, instance)
  const cap = 1 << Math.ceil(Math.log2(Math.max(16, lam * 4 + 64)));
  const dt = new Float64Array(cap), di = new Int32Array(cap);
  let head = 0, tail = 0;
  const arrivals = 20_000, warm = 2_000;
  let t = 0, busyN = 0, busyArea = 0, t0 = 0;
  let nextArr = -Math.log(1 - r()) / lam;
  for (let a = 0; a < arrivals; ) {
    const dep = head !== tail ? dt[head]! : Infinity;
    const tn = dep <= nextArr ? dep : nextArr;
    if (a >= warm) busyArea += busyN * (tn - t);
    t = tn;
    if (dep <= nextArr) {
      const i = di[head]!;
      head = (head + 1) & (cap - 1);
      if (--counts[i]! === 0) busyN--;
      continue;
    }
    let best = 0;
    for (let i = 1; i < n; i++) if (counts[i]! < counts[best]!) best = i;
    if (counts[best]!++ === 0) busyN++;
    dt[tail] = t + 1;
    di[tail] = best;
    tail = (tail + 1) & (cap - 1);
    if (tail === head) throw new Error('leastLoadedBusyFraction: ring overflow');
    a++;
    if (a === warm) t0 = t;
    nextArr = t - Math.log(1 - r()) / lam;
  }
  return busyArea / ((t - t0) * n);
}

/**
 * Per-(TP, clock) constants of fluid's per-tick reads, computed once: the power read (decide.mixedPowerW), the
 * SLO utilisation (src/policy utilisationOf) and the latency cells (src/model interpolate) the tick takes per
 * group and type. Every read below repeats the arithmetic of the function it stands for, in the same order,
 * so the results are the same bit for bit (test/unit/sim-fluid.test.ts checks each against the original); the
 * week's fluid run made ~10^7 of these calls, each re-deriving its constants from the profile.
 */
export interface FluidConfig {
  tp: number;
  clockMhz: number;
  idleW: number;
  /** per type (REQUEST_TYPES order): decide.occupancyS. */
  e: Float64Array;
  /** maxLoadOf at this (tp, clock) and at (tp, max clock). */
  ml: Float64Array;
  mlMax: Float64Array;
  // typePowerW's constants
  series: PowerSeries[];
  top: Float64Array;
  g1: Float64Array;
  pTop: Float64Array;
  kTop: Float64Array;
  bTopOk: Uint8Array;
  dp1: Float64Array;
  den1: Float64Array;
  // interpolate's latency rows at the two bracketing grid clocks, per type: [ttftP50, ttftP99, tbtP50, tbtP99]
  grid: (readonly number[])[];
  lat0: Float64Array[][];
  lat1: Float64Array[][];
  wc: number;
}

const cfgMemo = new WeakMap<Profile, Map<number, FluidConfig | null>>();
const LAT_METRICS = ['ttftP50Ms', 'ttftP99Ms', 'tbtP50Ms', 'tbtP99Ms'] as const;

/** The fast-path constants for (tp, clock), or null where some type cannot be read there (the caller then takes the general path, fluidGroup). */
export function fluidConfig(p: Profile, tp: number, clockMhz: number, maxClockMhz: number): FluidConfig | null {
  let m = cfgMemo.get(p);
  if (!m) {
    m = new Map();
    cfgMemo.set(p, m);
  }
  const key = tp * 1e6 + clockMhz;
  let c = m.get(key);
  if (c !== undefined && c !== null && (c.tp !== tp || c.clockMhz !== clockMhz)) c = undefined; // key collision guard
  if (c === undefined) {
    c = buildConfig(p, tp, clockMhz, maxClockMhz);
    m.set(key, c);
  }
  return c;
}

function buildConfig(p: Profile, tp: number, clockMhz: number, maxClockMhz: number): FluidConfig | null {
  try {
    const n = REQUEST_TYPES.length;
    const idleW = idlePowerOf(p, tp, clockMhz);
    const c: FluidConfig = {
      tp, clockMhz, idleW, e: new Float64Array(n), ml: new Float64Array(n), mlMax: new Float64Array(n), series: [], top: new Float64Array(n),
      g1: new Float64Array(n), pTop: new Float64Array(n), kTop: new Float64Array(n), bTopOk: new Uint8Array(n), dp1: new Float64Array(n),
      den1: new Float64Array(n), grid: [], lat0: [], lat1: [], wc: 0,
    };
    const cl = p.clocksMhz;
    let c0 = cl.length - 1, c1 = c0, wc = 0;
    for (let i = 0; i < cl.length; i++) {
      if (clockMhz === cl[i]) { c0 = c1 = i; break; }
      if (clockMhz < cl[i]!) { c0 = i - 1; c1 = i; wc = (clockMhz - cl[i - 1]!) / (cl[i]! - cl[i - 1]!); break; }
    }
    if (c0 < 0) return null;
    c.wc = wc;
    for (let k = 0; k < n; k++) {
      const t = REQUEST_TYPES[k]!;
      const grid = p.loads[t];
      if (!grid) return null;
      const e = occupancyS(p, t, tp, clockMhz);
      c.e[k] = e;
      c.ml[k] = maxLoadOf(p, t, tp, clockMhz);
      c.mlMax[k] = maxLoadOf(p, t, tp, maxClockMhz);
      c.series.push(powerSeries(p, t, tp, clockMhz));
      const top = grid[grid.length - 1]!;
      const g1 = grid.find((g) => g > 0) ?? top;
      c.top[k] = top;
      c.g1[k] = g1;
      const bTop = 1 - Math.exp(-top * e);
      const pTop = interpolate(p, t, tp, clockMhz, top).powerW;
      c.pTop[k] = pTop;
      c.bTopOk[k] = bTop > 1e-9 ? 1 : 0;
      c.kTop[k] = (pTop - idleW) / bTop;
      c.dp1[k] = interpolate(p, t, tp, clockMhz, g1).powerW - idleW;
      c.den1[k] = 1 - Math.exp(-g1 * e);
      c.grid.push(grid);
      const rows = (ci: number) => LAT_METRICS.map((mt) => Float64Array.from(grid, (l) => interpolate(p, t, tp, cl[ci]!, l)[mt]));
      c.lat0.push(rows(c0));
      c.lat1.push(rows(c1));
    }
    return c;
  } catch {
    return null;
  }
}

/** decide.typePowerW (type k at load l), the same arithmetic. */
function typePowerFast(c: FluidConfig, k: number, l: number): number {
  const top = c.top[k]!, e = c.e[k]!, idleW = c.idleW;
  if (l > top && top > 0) return c.bTopOk[k] ? idleW + c.kTop[k]! * (1 - Math.exp(-l * e)) : c.pTop[k]!;
  if (l >= c.g1[k]!) return seriesPowerW(c.series[k]!, Math.min(l, top));
  return idleW + c.dp1[k]! * ((1 - Math.exp(-l * e)) / c.den1[k]!);
}

/**
 * decide.mixedPowerW at loads `pl` (per type, REQUEST_TYPES order; a type counts where its load is > 0) and the
 * occupancy x = sum l_t E_t (decide.occupancyOf), into out[0] (power, W) and out[1] (x).
 */
export function mixedPowerFast(c: FluidConfig, pl: Float64Array, out: Float64Array): void {
  let x = 0;
  let any = false;
  for (let k = 0; k < pl.length; k++) if (pl[k]! > 0) { x += pl[k]! * c.e[k]!; any = true; }
  out[1] = x;
  if (!any || !(x > 0)) { out[0] = c.idleW; return; }
  let w = 0;
  for (let k = 0; k < pl.length; k++) if (pl[k]! > 0) w += ((pl[k]! * c.e[k]!) / x) * typePowerFast(c, k, x / c.e[k]!);
  out[0] = w;
}

/** src/policy utilisationOf at loads `l` (a type counts where its load is > 0), the same arithmetic. */
export function utilisationFast(c: FluidConfig, l: Float64Array): number {
  let u = 0;
  for (let k = 0; k < l.length; k++) {
    if (!(l[k]! > 0)) continue;
    const ml = c.ml[k]!;
    if (!(ml > 0)) return Infinity;
    u += l[k]! / ml;
  }
  return u;
}

/**
 * interpolate(p, type k, tp, clock, load)'s ttftP50/ttftP99/tbtP50/tbtP99 into out[0..3], the same arithmetic;
 * false (out untouched) where interpolate would throw (load off the grid): the caller then calls it.
 */
export function latencyFast(c: FluidConfig, k: number, load: number, out: Float64Array): boolean {
  const loads = c.grid[k]!;
  const n = loads.length;
  if (!(load >= 0 && load <= loads[n - 1]!)) return false;
  let l0 = n - 1, l1 = l0, wl = 0;
  for (let i = 0; i < n; i++) {
    if (load === loads[i]) { l0 = l1 = i; break; }
    if (load < loads[i]!) { l0 = i - 1; l1 = i; wl = (load - loads[i - 1]!) / (loads[i]! - loads[i - 1]!); break; }
  }
  const r0 = c.lat0[k]!, r1 = c.lat1[k]!, wc = c.wc;
  for (let m = 0; m < 4; m++) {
    const a = r0[m]!, b = r1[m]!;
    const v0 = a[l0]! * (1 - wl) + a[l1]! * wl;
    const v1 = b[l0]! * (1 - wl) + b[l1]! * wl;
    out[m] = v0 * (1 - wc) + v1 * wc;
  }
  return true;
}
