/**
 * The policy functions the simulator calls outside the managers' machines (the oracle's Eq. 1, its clock,
 * cache-aware routing): re-exports of src/policy, not copies.
 * The only function of its own here is `mixedPowerW`, the fluid simulator's power read (an accounting
 * helper, not a decision).
 */
import type { Profile } from '../model/profile-types.ts';
import { interpolate, idlePowerOf } from '../model/profile.ts';
import { utilisationOf, typesOf } from '../policy/energy.ts';
import type { LoadByType } from '../policy/types.ts';
import type { RequestType } from '../../protocols/request-types.ts';

export { chooseClock } from '../policy/frequency.ts';
export { chooseInstance, dispatchRequest, leastOutstandingPerGpu, prefillClockFloor } from '../policy/dispatch.ts';
export { solveEq1 } from '../policy/milp.ts';
export { preferPrefixHolder, prefixHitShare } from '../policy/prefix.ts';

/** Utilisation of one instance (sum of load_t / SLO max load_t): src/policy's own function. */
export const utilisation = utilisationOf;

/**
 * Time a request of type t occupies an instance at (tp, clock) at light load, s: TTFT + TBT x (output - 1)
 * of the profile's lowest non-zero grid load (the M/G/inf service time the profile generator uses).
 */
export function occupancyS(p: Profile, t: RequestType, tp: number, clockMhz: number): number {
  const key = `${t}|${tp}|${clockMhz}`;
  let m = occCache.get(p);
  if (!m) {
    m = new Map();
    occCache.set(p, m);
  }
  let e = m.get(key);
  if (e === undefined) {
    const grid = p.loads[t]!;
    const c = interpolate(p, t, tp, clockMhz, grid.find((g) => g > 0) ?? grid[grid.length - 1]!);
    const out = p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100;
    e = Math.max(1e-3, (c.ttftP50Ms + c.tbtP50Ms * Math.max(0, out - 1)) / 1000);
    m.set(key, e);
  }
  return e;
}
const occCache = new WeakMap<Profile, Map<string, number>>();

/** Occupancy of an instance carrying `load` (mean number of requests in it at light load): sum_t l_t E_t. */
export function occupancyOf(p: Profile, tp: number, clockMhz: number, load: LoadByType): number {
  let x = 0;
  for (const t of typesOf(load)) x += load[t]! * occupancyS(p, t, tp, clockMhz);
  return x;
}

/**
 * One type's instance power (W) at load l, from the profile: linear between grid loads, except on the first
 * segment [0, g1], where the profile's own light-load model (busy fraction 1 - exp(-l x E), M/G/inf) is
 * followed instead of a straight line (the power curve is concave there; a chord through a coarse grid, e.g.
 * 0 and 1 req/s, reads a lone request's power far too low). Past the grid top: the top cell's busy power,
 * busy fraction 1 - exp(-l x E) (see below).
 */
function typePowerW(p: Profile, t: RequestType, tp: number, clockMhz: number, l: number, idleW: number, e: number): number {
  const grid = p.loads[t]!;
  const top = grid[grid.length - 1]!;
  const g1 = grid.find((g) => g > 0) ?? top;
  if (l > top && top > 0) {
    // past the grid top (the type misses its SLO alone there, but in a mix it is read at x / E_t, the load
    // that gives the mix's occupancy, which can exceed its own SLO range: LS at TP8 tops at 0.24 req/s, a
    // mixed TP8 instance often reads it near 1): keep the top cell's power WHILE BUSY (the generator's
    // power = busy x step power + (1 - busy) x idle, busy = 1 - exp(-l E)) and let only the busy fraction
    // grow. Holding the top cell's power instead read LS at 1.95 kW where the core draws ~3.2 kW.
    const bTop = 1 - Math.exp(-top * e);
    const pTop = interpolate(p, t, tp, clockMhz, top).powerW;
    return bTop > 1e-9 ? idleW + ((pTop - idleW) / bTop) * (1 - Math.exp(-l * e)) : pTop;
  }
  if (l >= g1) return interpolate(p, t, tp, clockMhz, Math.min(l, top)).powerW;
  const p1 = interpolate(p, t, tp, clockMhz, g1).powerW;
  return idleW + (p1 - idleW) * ((1 - Math.exp(-l * e)) / (1 - Math.exp(-g1 * e)));
}

/**
 * Instance power (W) at a mixed load (the fluid simulator's power read; an accounting helper, not a decision).
 *
 * Occupancy matching: an instance carrying loads l_t is busy as its requests overlap, i.e. by its occupancy
 * x = sum_t l_t E_t (E_t: occupancyS), not by its SLO utilisation. Each type is read at the load that gives
 * that same occupancy on its own (x / E_t), and the readings are weighted by each type's share of the
 * occupancy (l_t E_t / x). For one type this is the profile's P_t(l). Why not src/policy's mixing (the same
 * SLO utilisation for every type): at light load its per-type readings average concave curves at very
 * different occupancies and read a mixed instance far below the batching core (e.g. 2.67 vs 3.32 kW for a
 * TP8 instance with the conversation mix at 0.4 req/s), which made fluid read 20% below step.
 */
export function mixedPowerW(p: Profile, tp: number, clockMhz: number, load: LoadByType): number {
  const types = typesOf(load);
  const idleW = idlePowerOf(p, tp, clockMhz);
  if (types.length === 0) return idleW;
  let x = 0;
  const es: number[] = [];
  for (const t of types) {
    const e = occupancyS(p, t, tp, clockMhz);
    es.push(e);
    x += load[t]! * e;
  }
  if (!(x > 0)) return idleW;
  let w = 0;
  types.forEach((t, i) => {
    w += ((load[t]! * es[i]!) / x) * typePowerW(p, t, tp, clockMhz, x / es[i]!, idleW, es[i]!);
  });
  return w;
}
