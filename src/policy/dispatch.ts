/**
 * Pool manager dispatch (paper Sec. IV-B): send each request to the healthy instance where it adds the
 * least predicted energy, among those that stay under the throughput their SLO allows (maxLoad at their
 * TP and the max clock, since the instance manager raises the clock when needed). Pure.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import { idlePowerOf, interpolate, latencyWithinSlo, maxLoadOf, powerSeries, seriesPowerW, type PowerSeries } from '../model/profile.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { maxClockOf, totalLoad } from './energy.ts';
import type { InstanceView, LoadByType } from './types.ts';

export interface DispatchOptions {
  /** load one request adds to an instance's EWMA load, req/s (1 / the EWMA window in s). Default 0.1. */
  requestRate?: number;
  /** fraction of SLO throughput kept free, 0..1. Default 0. */
  headroom?: number;
  /**
   * judge headroom also from the instance's instantaneous state (running + queued vs the concurrency its SLO
   * allows, instantHeadroom). Default true; false = EWMA rate only.
   */
  instantaneous?: boolean;
  /**
   * cache-aware routing (the simulator's --prefix-routing; policy preferPrefixHolder): among the instances the
   * chosen tier found eligible (and, at capacity, among all), the one it names wins; undefined: the energy choice.
   */
  prefer?: (eligibleIds: string[]) => string | undefined;
}

/**
 * Per (profile, tp, clock): what dispatch reads for every instance on every request (max load, max
 * concurrency and the power series of each type, loaded-idle power), filled lazily from src/model/profile
 * (so an unprofiled type / TP / clock throws exactly where the plain calls would) and kept for the profile's
 * life. Indexed by the type's position in REQUEST_TYPES.
 */
interface Point {
  tp: number;
  clockMhz: number;
  ml: (number | undefined)[];
  conc: (number | undefined)[];
  series: (PowerSeries | undefined)[];
  idle?: number;
  /** prefillRateOf at this point. */
  prefillRate?: number;
}
const points = new WeakMap<Profile, Map<number, Map<number, Point>>>();
const TYPE_INDEX = new Map<RequestType, number>(REQUEST_TYPES.map((t, i) => [t, i]));

function pointOf(p: Profile, tp: number, clockMhz: number): Point {
  let byTp = points.get(p);
  if (!byTp) {
    byTp = new Map();
    points.set(p, byTp);
  }
  let byClock = byTp.get(tp);
  if (!byClock) {
    byClock = new Map();
    byTp.set(tp, byClock);
  }
  let pt = byClock.get(clockMhz);
  if (!pt) byClock.set(clockMhz, (pt = { tp, clockMhz, ml: [], conc: [], series: [] }));
  return pt;
}
/** maxLoadOf(p, REQUEST_TYPES[i], pt.tp, pt.clockMhz), memoised on the point. */
function mlAt(p: Profile, pt: Point, i: number): number {
  const v = pt.ml[i];
  return v !== undefined ? v : (pt.ml[i] = maxLoadOf(p, REQUEST_TYPES[i]!, pt.tp, pt.clockMhz));
}
function mlOfType(p: Profile, pt: Point, t: RequestType): number {
  const i = TYPE_INDEX.get(t);
  return i === undefined ? maxLoadOf(p, t, pt.tp, pt.clockMhz) : mlAt(p, pt, i);
}
function concOfType(p: Profile, pt: Point, t: RequestType): number {
  const i = TYPE_INDEX.get(t);
  if (i === undefined) return maxConcurrencyOf(p, t, pt.tp, pt.clockMhz);
  const v = pt.conc[i];
  return v !== undefined ? v : (pt.conc[i] = maxConcurrencyOf(p, t, pt.tp, pt.clockMhz));
}
/** energy.ts utilisationOf(p, tp, clock, load) with the point's max loads: same order, same arithmetic. */
function utilisationAt(p: Profile, pt: Point, load: LoadByType): number {
  let u = 0;
  for (let i = 0; i < REQUEST_TYPES.length; i++) {
    const l = load[REQUEST_TYPES[i]!];
    if (!((l ?? 0) > 0)) continue;
    const ml = mlAt(p, pt, i);
    if (!(ml > 0)) return Infinity;
    u += l! / ml;
  }
  return u;
}

/**
 * Requests one instance can hold in flight (running + queued) for type t at (tp, clock) within the SLO:
 * Little's law at the profile's SLO max load, N = maxLoad x (TTFT p50 + TBT p50 x (output - 1)) at that load,
 * plus the Poisson burst the profile itself was measured under (2 sqrt(N): its arrivals are Poisson, so at
 * maxLoad the in-flight count exceeds N + 2 sqrt(N) only ~2% of the time), at least 1 (an idle instance can
 * always take one). 0 when the type is infeasible at (tp, clock). Memoised per profile.
 */
export function maxConcurrencyOf(p: Profile, t: RequestType, tp: number, clockMhz: number): number {
  // nested maps, not a string key: this runs for every instance on every dispatch
  let byType = concMemo.get(p);
  if (!byType) {
    byType = new Map();
    concMemo.set(p, byType);
  }
  let byTp = byType.get(t);
  if (!byTp) {
    byTp = new Map();
    byType.set(t, byTp);
  }
  let byClock = byTp.get(tp);
  if (!byClock) {
    byClock = new Map();
    byTp.set(tp, byClock);
  }
  let n = byClock.get(clockMhz);
  if (n === undefined) {
    const ml = maxLoadOf(p, t, tp, clockMhz);
    if (!(ml > 0)) n = 0;
    else {
      const c = latencyWithinSlo(p, t, tp, clockMhz, ml);
      const out = p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100;
      const N = (ml * (c.ttftP50Ms + c.tbtP50Ms * Math.max(0, out - 1))) / 1000;
      n = Math.max(1, N + 2 * Math.sqrt(N));
    }
    byClock.set(clockMhz, n);
  }
  return n;
}
const concMemo = new WeakMap<Profile, Map<RequestType, Map<number, Map<number, number>>>>();

/**
 * Whether an instance, in its state at this instant, can take one more request of `type` within its SLO at
 * `clockMhz`: sum over its in-flight requests (running + queued, by type; InstanceView.inflightByType when
 * given, else running + queued apportioned by its EWMA load mix, else all of the request's type) of
 * 1 / maxConcurrencyOf, plus the new request's share, <= 1. Queued requests count twice (they have not even
 * started: the same weight as the overflow rule). Headroom is not applied here: the burst allowance is the
 * instantaneous margin.
 */
export function instantHeadroom(view: InstanceView, type: RequestType, profile: Profile, clockMhz: number): boolean {
  const pt = pointOf(profile, view.tp, clockMhz);
  const nNew = concOfType(profile, pt, type);
  if (!(nNew > 0)) return false;
  if (view.pendingPrefillTokens !== undefined && view.pendingPrefillTokens > 0 && !prefillWaitFits(view.pendingPrefillTokens, type, profile, pt)) return false;
  let u = 1 / nNew;
  const inflight = view.running + 2 * view.queued;
  if (inflight <= 0) return u <= 1 + 1e-12;
  const by = view.inflightByType;
  if (by && Object.keys(by).length) {
    const cnt = Object.values(by).reduce((a, b) => a + (b ?? 0), 0) || 1;
    for (const [t, c] of Object.entries(by) as [RequestType, number][]) {
      if (!(c > 0)) continue;
      const n = concOfType(profile, pt, t);
      u += n > 0 ? (inflight * (c / cnt)) / n : Infinity;
    }
  } else {
    const L = totalLoad(view.load);
    if (L > 0) {
      for (const [t, l] of Object.entries(view.load) as [RequestType, number][]) {
        if (!(l > 0)) continue;
        const n = concOfType(profile, pt, t);
        u += n > 0 ? (inflight * (l / L)) / n : Infinity;
      }
    } else u += inflight / nNew;
  }
  return u <= 1 + 1e-12;
}

/** Share of a request's TTFT SLO that the prompts already waiting at an instance may take before its own prefill. */
export const PREFILL_WAIT_SHARE = 0.5;

/**
 * Whether a new prompt of `type` would start within PREFILL_WAIT_SHARE of its TTFT SLO behind the instance's
 * pending prefill (prompt tokens admitted but not prefilled). The in-flight cap counts requests, but what a new
 * prompt waits for is the prefill work ahead of it: a burst of long prompts at one instance holds short ones
 * behind their chunks while peers idle. Rate: the profile's unloaded prefill throughput at (tp, clock), the
 * fastest over its types (I / TTFT at load 0), so the estimate errs towards allowing.
 */
function prefillWaitFits(pendingTokens: number, type: RequestType, profile: Profile, pt: Point): boolean {
  const rate = prefillRateAt(profile, pt);
  const spec = profile.requestTypes.find((x) => x.type === type);
  if (!spec || !(rate > 0)) return true;
  return pendingTokens / rate <= PREFILL_WAIT_SHARE * spec.ttftSloMs;
}
/** Share of the time left to a prompt's TTFT deadline that the prefill ahead of it (its own included) may take. */
export const PREFILL_CLOCK_SHARE = 0.8;

/** One prompt of an instance's prefill backlog, in the order it will be prefilled. */
export interface PrefillBacklogItem {
  /** prompt tokens still to prefill. */
  tokens: number;
  /** time left until its TTFT deadline, ms (negative: overdue). */
  slackMs: number;
}

/**
 * The lowest clock at which an instance prefills its backlog in time: for every prompt j (in prefill order),
 * busyMs + (tokens of prompts 0..j) / prefill rate <= PREFILL_CLOCK_SHARE x slack_j. The profile's max clock
 * when no clock does, its min clock when the backlog is empty. `busyMs`: what is left of the step in progress
 * (committed work, the same at any clock). The input length is known exactly on arrival (only the output length
 * is predicted), so a prompt far longer than its type's representative one (a 7k-token prompt in the long
 * class, whose profile cell is ~3k) is seen before its prefill starts: the instance raises its clock for it
 * instead of prefilling it at a clock chosen for the mean load (paper Sec. IV-D: an instance that predicts an
 * SLO miss raises its frequency). Callers take max(this, the load-based clock). Pure.
 */
export function prefillClockFloor(profile: Profile, tp: number, backlog: readonly PrefillBacklogItem[], busyMs = 0, clocks: readonly number[] = profile.clocksMhz): number {
  const cs = [...clocks].sort((a, b) => a - b);
  if (!cs.length) throw new RangeError('prefillClockFloor: no clocks');
  if (!backlog.length) return cs[0]!;
  for (const c of cs) {
    const rate = prefillRateAt(profile, pointOf(profile, tp, c));
    if (!(rate > 0)) continue;
    let cum = 0, ok = true;
    for (const b of backlog) {
      cum += Math.max(0, b.tokens);
      if (busyMs + cum / rate > PREFILL_CLOCK_SHARE * b.slackMs) {
        ok = false;
        break;
      }
    }
    if (ok) return c;
  }
  return cs[cs.length - 1]!;
}

/** prefillRateOf at a point, computed once per point. */
function prefillRateAt(profile: Profile, pt: Point): number {
  return (pt.prefillRate ??= prefillRateOf(profile, pt.tp, pt.clockMhz));
}

/** Prompt tokens per ms an idle instance prefills at (tp, clock): max over the profile's types of I / TTFT(load 0). */
export function prefillRateOf(p: Profile, tp: number, clockMhz: number): number {
  let r = 0;
  for (const t of p.requestTypes) {
    const ttft = interpolate(p, t.type, tp, clockMhz, 0).ttftP50Ms;
    if (ttft > 0) r = Math.max(r, t.inputTokens / ttft);
  }
  return r;
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
  // an instance's rate score does not depend on the tier: computed at most once per call
  const scores = new Map<InstanceView, Score | null>();
  if (opts.instantaneous === false) return chooseByRate(req, healthy, profile, opts, scores);
  const later = healthy.filter((v) => instantHeadroom(v, req.type, profile, fmax));
  if (opts.prefer) {
    // cache-aware routing: the preferred instance among all those that take the request within its SLO at max
    // clock (the second tier's test; the first tier's instances pass it too), so that a holder of the prompt's
    // prefix whose clock is low now still gets its session's next turn (its manager raises the clock as for the
    // second tier); the profile prices the prompt uncached, the cached part only makes it cheaper
    const d = opts.requestRate ?? 0.1, h = opts.headroom ?? 0;
    const ok = later.filter((v) => {
      let sc = scores.get(v);
      if (sc === undefined) scores.set(v, (sc = memoScoreOf(req, v, profile, fmax, d, h)));
      return sc !== null;
    });
    const id = ok.length ? opts.prefer(ok.map((v) => v.id)) : undefined;
    const v = id !== undefined ? ok.find((x) => x.id === id) : undefined;
    if (v) return { id: v.id, marginalEnergyJ: scores.get(v)!.e, utilisationAfter: scores.get(v)!.u };
    // nothing cached anywhere (or no preference): the energy choice alone
    opts = { ...opts, prefer: undefined };
  }
  const now = healthy.filter((v) => instantHeadroom(v, req.type, profile, profileClockOf(profile, v.clockMhz) ?? fmax));
  const d1 = now.length ? chooseByRate(req, now, profile, opts, scores) : null;
  if (d1 && 'id' in d1) return d1;
  const d2 = later.length ? chooseByRate(req, later, profile, opts, scores) : null;
  if (d2 && 'id' in d2) return d2;
  return { reject: 'all_at_capacity', retryable: true, detail: `all ${healthy.length} healthy instances at their SLO cap (rate or in-flight) for ${req.type}` };
}

/** How far a GPU's applied clock may lie from the profile clock it was set to, MHz (an H100 applies 1400 as 1395, 1000 as 990: its 15-MHz steps). */
export const APPLIED_CLOCK_SLACK_MHZ = 15;

/**
 * The profile clock an instance runs at: its reported clock (the GPU's applied one, off the profile's grid by up
 * to APPLIED_CLOCK_SLACK_MHZ) taken to the nearest profile clock; undefined when none is that near. The
 * simulator's instances report the profile clock itself; a live one at 990 MHz, read as off the grid, would be
 * priced and admitted as if at max clock, and take requests the same instance at 1000 MHz refuses.
 */
export function profileClockOf(p: Profile, clockMhz: number): number | undefined {
  let best: number | undefined;
  for (const c of p.clocksMhz) if (Math.abs(c - clockMhz) <= APPLIED_CLOCK_SLACK_MHZ && (best === undefined || Math.abs(c - clockMhz) < Math.abs(best - clockMhz))) best = c;
  return best;
}

/** An instance's marginal energy (J/request) and utilisation after taking the request; null: over its rate cap. */
interface Score {
  e: number;
  u: number;
}

/**
 * An instance's score depends on its EWMA load, TP and clock, not on its queue: the live pool leader hands
 * the same load object (InstanceStatus.loadByType) for every request until the instance's next status, so
 * the score is remembered on that object, per (profile, tp, clock, rate, headroom, type), and used only while
 * the object still holds the same numbers (compared on every use: a caller may mutate it in place).
 */
interface ScoreSlot {
  profile: Profile;
  tp: number;
  clockMhz: number;
  d: number;
  h: number;
  /** the load's value per REQUEST_TYPES entry when the scores were computed. */
  snap: (number | undefined)[];
  byType: (Score | null | undefined)[];
}
const scoreMemo = new WeakMap<object, ScoreSlot[]>();
/** slots kept per load object (one per (tp, clock, ...) it was scored under; normally 1). */
const SLOTS_PER_LOAD = 4;

function sameLoad(snap: (number | undefined)[], load: LoadByType): boolean {
  for (let i = 0; i < REQUEST_TYPES.length; i++) if (!Object.is(snap[i], load[REQUEST_TYPES[i]!])) return false;
  return true;
}

function memoScoreOf(req: { type: RequestType }, inst: InstanceView, profile: Profile, fmax: number, d: number, h: number): Score | null {
  const ti = TYPE_INDEX.get(req.type);
  const load = inst.load;
  if (ti === undefined || typeof load !== 'object' || load === null) return scoreOf(req, inst, profile, fmax, d, h);
  let slots = scoreMemo.get(load);
  let slot: ScoreSlot | undefined;
  if (slots) {
    for (const x of slots) {
      if (x.profile === profile && x.tp === inst.tp && Object.is(x.clockMhz, inst.clockMhz) && Object.is(x.d, d) && Object.is(x.h, h)) { slot = x; break; }
    }
  }
  if (slot && !sameLoad(slot.snap, load)) {
    slot.snap = REQUEST_TYPES.map((t) => load[t]);
    slot.byType = [];
  }
  const hit = slot?.byType[ti];
  if (hit !== undefined) return hit;
  const s = scoreOf(req, inst, profile, fmax, d, h);
  if (!slot) {
    slot = { profile, tp: inst.tp, clockMhz: inst.clockMhz, d, h, snap: REQUEST_TYPES.map((t) => load[t]), byType: [] };
    if (!slots) scoreMemo.set(load, (slots = []));
    if (slots.length >= SLOTS_PER_LOAD) slots.shift();
    slots.push(slot);
  }
  slot.byType[ti] = s;
  return s;
}

function scoreOf(req: { type: RequestType }, inst: InstanceView, profile: Profile, fmax: number, d: number, h: number): Score | null {
  const top = pointOf(profile, inst.tp, fmax);
  const ml = mlOfType(profile, top, req.type);
  if (!(ml > 0)) return null;
  const uBefore = utilisationAt(profile, top, inst.load);
  const uAfter = uBefore + d / ml;
  if (!(uAfter <= 1 - h + 1e-12)) return null;
  const after: LoadByType = { ...inst.load, [req.type]: (inst.load[req.type] ?? 0) + d };
  return { e: marginalEnergy(profile, inst, after, fmax, d), u: uAfter };
}

/** Least marginal energy among `healthy` under the SLO rate cap (EWMA load at max clock, with headroom). */
function chooseByRate(req: { type: RequestType }, healthy: InstanceView[], profile: Profile, opts: DispatchOptions, scores: Map<InstanceView, Score | null>): DispatchDecision {
  const d = opts.requestRate ?? 0.1;
  const h = opts.headroom ?? 0;
  const fmax = maxClockOf(profile);
  let best: { id: string; e: number; u: number } | null = null;
  for (const inst of healthy) {
    let s = scores.get(inst);
    if (s === undefined) scores.set(inst, (s = memoScoreOf(req, inst, profile, fmax, d, h)));
    if (!s) continue;
    const { e, u: uAfter } = s;
    if (!best || e < best.e - 1e-9 || (Math.abs(e - best.e) <= 1e-9 && (uAfter < best.u - 1e-12 || (Math.abs(uAfter - best.u) <= 1e-12 && inst.id < best.id)))) {
      best = { id: inst.id, e, u: uAfter };
    }
  }
  if (!best) return { reject: 'all_at_capacity', retryable: true, detail: `all ${healthy.length} healthy instances at their SLO throughput cap for ${req.type}` };
  const preferred = opts.prefer?.(healthy.filter((v) => scores.get(v)).map((v) => v.id));
  if (preferred !== undefined && preferred !== best.id) {
    const v = healthy.find((x) => x.id === preferred && scores.get(x));
    if (v) return { id: v.id, marginalEnergyJ: scores.get(v)!.e, utilisationAfter: scores.get(v)!.u };
  }
  return { id: best.id, marginalEnergyJ: best.e, utilisationAfter: best.u };
}

/** (P(after) - P(before)) / rate: J per request added, at the instance's clock if it can carry the new load there, else at max clock. */
function marginalEnergy(p: Profile, inst: InstanceView, after: LoadByType, fmax: number, d: number): number {
  const at = profileClockOf(p, inst.clockMhz);
  const clock = at !== undefined && utilisationAt(p, pointOf(p, inst.tp, at), after) <= 1 ? at : fmax;
  const pt = pointOf(p, inst.tp, clock);
  const cb = mixOf(p, inst.load, pt);
  const ca = mixOf(p, after, pt);
  if (!ca) return Infinity;
  const before = cb ? mixPowerOnCurve(cb, totalLoad(inst.load)) : mixPowerOnCurve(ca, 0);
  return (mixPowerOnCurve(ca, totalLoad(after)) - before) / d;
}

/**
 * The parameters of energy.ts mixCurve(p, mix, tp, clock) without its breakpoint powers (built lazily by
 * mixPowerOnCurve): the same checks in the same order (so the same throws), the same arithmetic.
 * null where mixCurve is null (a type of the mix with maxLoad 0).
 */
interface MixParams {
  total: number;
  /** empty mix: the curve is the single point (0, idle). */
  idle: number;
  types: RequestType[];
  ml: number[];
  /** per type: the profile's power at (type, tp, clock) over its load grid. */
  series: PowerSeries[];
  /** per type: its busy-time weight c_t = (w_t / maxLoad_t) / k (mixCurve's expression). */
  weight: number[];
  k: number;
  cap: number;
}

function mixOf(p: Profile, mix: LoadByType, pt: Point): MixParams | null {
  const total = totalLoad(mix);
  const idle = pt.idle ?? (pt.idle = idlePowerOf(p, pt.tp, pt.clockMhz));
  const types: RequestType[] = [];
  const ml: number[] = [];
  const series: PowerSeries[] = [];
  const weight: number[] = [];
  if (!(total > 0)) return { total, idle, types, ml, series, weight, k: 0, cap: 0 };
  let k = 0;
  for (let i = 0; i < REQUEST_TYPES.length; i++) {
    const t = REQUEST_TYPES[i]!;
    if (!((mix[t] ?? 0) > 0)) continue; // typesOf's order
    const m = mlAt(p, pt, i);
    if (!(m > 0)) return null;
    types.push(t);
    ml.push(m);
    k += (mix[t]! / total) / m;
  }
  for (let j = 0; j < types.length; j++) {
    const t = types[j]!;
    const i = TYPE_INDEX.get(t)!;
    series.push(pt.series[i] ?? (pt.series[i] = powerSeries(p, t, pt.tp, pt.clockMhz)));
    weight.push((mix[t]! / total / ml[j]!) / k);
  }
  return { total, idle, types, ml, series, weight, k, cap: 1 / k };
}

/** Power of the curve at one of its breakpoints (mixCurve's powerW entry for load x), same arithmetic. */
function mixPointW(c: MixParams, x: number): number {
  if (!c.types.length) return c.idle;
  const u = Math.min(1, x * c.k);
  let w = 0;
  for (let i = 0; i < c.types.length; i++) {
    const s = c.series[i]!, ml = c.ml[i]!;
    w += c.weight[i]! * seriesPowerW(s, Math.min(u * ml, s.loads[s.loads.length - 1]!));
  }
  return w;
}

/**
 * powerAt(mixCurve(p, mix, tp, clock), L), bit for bit, evaluating only the two breakpoints around L (the
 * whole curve is ~100 breakpoints x types interpolations; dispatch needs one point of it). The breakpoints
 * are mixCurve's: {0, cap} and every type's grid loads g < maxLoad mapped to g / (k maxLoad), those <= cap.
 */
function mixPowerOnCurve(c: MixParams, L: number): number {
  if (L <= 0) return mixPointW(c, 0);
  if (L > c.cap * (1 + 1e-12)) return Infinity;
  // powerAt's segment: hi = the least breakpoint >= L, lo = the greatest one < L (0 always is one)
  let lo = 0, hi = Number.POSITIVE_INFINITY;
  const cap = c.cap;
  if (cap >= L) hi = cap;
  else if (cap > lo) lo = cap;
  for (let i = 0; i < c.types.length; i++) {
    const ml = c.ml[i]!;
    const km = c.k * ml;
    // the grid ascends and so do its images (division is monotone): stop at the first one >= L
    for (const g of c.series[i]!.loads) {
      if (!(g < ml)) break;
      const x = g / km;
      if (x > cap) break;
      if (x >= L) { if (x < hi) hi = x; break; }
      if (x > lo) lo = x;
    }
  }
  if (hi === Number.POSITIVE_INFINITY) {
    // past every breakpoint (L within the cap's tolerance above it, or NaN): powerAt's last point, the
    // greatest breakpoint, which is the cap
    return mixPointW(c, cap);
  }
  const w = (L - lo) / (hi - lo);
  return mixPointW(c, lo) * (1 - w) + mixPointW(c, hi) * w;
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
 * looks at every view, healthy or not (as the live adapter always has). `capped`: the profile found every healthy
 * instance at its SLO cap (chooseInstance 'all_at_capacity'; not set for a missing profile or a type outside it):
 * a request that may spill (InferenceRequest.spill) is refused then, so that the next pool of its chain takes it.
 * Throws NoInstanceError on no views.
 */
export function dispatchRequest(
  req: { type?: RequestType },
  views: DispatchView[],
  profile: Profile | undefined,
  types: readonly RequestType[],
  opts: DispatchOptions = {},
): { id: string; atCapacity: boolean; capped: boolean } {
  if (!views.length) throw new NoInstanceError('no instance to dispatch to');
  const type = req.type ?? types[0] ?? 'LL';
  let capped = false;
  if (profile) {
    try {
      const d = chooseInstance({ type }, views as InstanceView[], profile, opts);
      if ('id' in d) return { id: d.id, atCapacity: false, capped: false };
      capped = d.reject === 'all_at_capacity';
    } catch {
      // a type or TP outside the profile: the overflow choice below
    }
  }
  const preferred = opts.prefer?.(views.map((v) => v.id));
  return { id: (preferred !== undefined && views.some((v) => v.id === preferred) ? preferred : undefined) ?? leastOutstandingPerGpu(views).id, atCapacity: true, capped };
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
