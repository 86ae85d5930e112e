/**
 * Fluid fidelity (./engine.ts): per tick, each instance's offered load by type is read against the profile (power
 * and latency percentiles interpolated from profile cells; ./fluid.ts holds the precomputed constants), the SLO
 * cap spills a pool's excess to the next longer pool.
 */
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import { interpolate, latencyWithinSlo, maxLoadOf, idlePowerOf } from '../model/profile.ts';
import { SATURATED_MS } from '../model/generate.ts';
import { sloOf } from '../policy/slo.ts';
import type { LoadByType } from '../policy/types.ts';
import { countArrivals } from '../policy/machines/instance.ts';
import * as decide from './decide.ts';
import { fluidConfig, latencyFast, leastLoadedBusyFraction, mixedPowerFast, utilisationFast, type FluidConfig } from './fluid.ts';
import { overContext, type TraceRecord } from './trace.ts';
import { SimSleepStandby } from './sleep-standby.ts';
import { TYPE_INDEX, LOAD_WINDOW_S, type RequestTypeSpecLike, type SimInstance, type FluidGroup, type SimPool } from './state.ts';

/**
 * fluid: window of the arrival-rate smoothing that latency is read at, s; default 60. The profile's p99 cells
 * were generated with Poisson arrivals at a MEAN load, so they already hold the Poisson bursts: reading them at
 * a raw 5-s count would count those bursts twice (a TP8 instance provisioned at 80% of its SLO load sees
 * 5-s counts over 100% in many ticks). 60 s = the forecasts' per-minute granularity.
 */
const FLUID_LATENCY_WINDOW_S = Number(process.env.SIM_FLUID_LATENCY_WINDOW_S ?? 60);
/** window of the arrival-rate smoothing that instance power is read at, s (a request occupies its instance for its whole service time, not one tick). */
const FLUID_POWER_WINDOW_S = 5; // measured: 5..120 s move the conversation hour's fluid energy by < 1%

export abstract class SimFluidModel extends SimSleepStandby {
  /**
   * Advance every instance over one tick with the tick's arrivals (binned per pool and true type). Load is
   * shared in proportion to SLO capacity (what the dispatcher approximates); instances of a pool with the
   * same (TP, clock) get the same share, so the work is O(pools x distinct configs x types) per tick.
   */
  protected fluidTick(dtS: number, counts: Map<SimPool, Float64Array>): void {
    const fPow = Math.exp(-dtS / FLUID_POWER_WINDOW_S);
    const fLat = Math.exp(-dtS / FLUID_LATENCY_WINDOW_S);
    const fx = this.fluidScratch;
    for (const pool of this.pools) {
      const c = counts.get(pool);
      // a new pool starts at its first tick's rate (not from zero: the trace starts warm)
      const fresh = !pool.smooth;
      const sm = (pool.smooth ??= new Float64Array(9));
      for (let k = 0; k < 9; k++) sm[k] = fresh ? (c ? c[k] / dtS : 0) : sm[k] * fPow + (1 - fPow) * (c ? c[k] / dtS : 0);
      const ls = (pool.latSmooth ??= new Float64Array(9));
      for (let k = 0; k < 9; k++) ls[k] = fresh ? (c ? c[k] / dtS : 0) : ls[k] * fLat + (1 - fLat) * (c ? c[k] / dtS : 0);
      let total = 0;
      if (c) for (let k = 0; k < 9; k++) total += c[k];
      // groups of active instances by (TP, clock), in the order of their first instance
      const groups = fx.groups;
      let ng = 0;
      for (const i of pool.instances) {
        if (i.state !== 'active') continue;
        let g: FluidGroup | undefined;
        for (let j = 0; j < ng; j++) if (groups[j]!.tp === i.tp && groups[j]!.clock === i.clockMhz) { g = groups[j]; break; }
        if (!g) {
          let cap = 1;
          if (c && total > 0) {
            let u = 0;
            for (let k = 0; k < 9; k++) if (c[k] > 0) u += c[k] / total / Math.max(1e-9, this.maxLoadAtMax(k, i.tp));
            cap = 1 / u;
          }
          g = groups[ng] ??= { tp: i.tp, clock: 0, insts: [], cap: 0 };
          g.tp = i.tp;
          g.clock = i.clockMhz;
          g.insts.length = 0;
          g.cap = cap;
          ng++;
        }
        g.insts.push(i);
      }
      if (!ng) continue;
      let capSum = 0;
      for (let j = 0; j < ng; j++) capSum += groups[j]!.cap * groups[j]!.insts.length;
      for (let j = 0; j < ng; j++) {
        const g = groups[j]!;
        const share = capSum > 0 ? g.cap / capSum : 0;
        const cfg = fluidConfig(this.p, g.tp, g.clock, this.maxClock);
        if (cfg) this.fluidGroupFast(cfg, g, share, dtS, c, total, sm, ls);
        else this.fluidGroup(g, share, dtS, c, total, sm, ls);
      }
    }
  }

  /** maxLoadOf(type k, tp, max clock), tabulated per TP (the fluid tick and spill ask it per type per tick). */
  protected maxLoadAtMax(k: number, tp: number): number {
    let a = this.mlMaxByTp.get(tp);
    if (!a) {
      a = new Float64Array(9).fill(NaN);
      for (let j = 0; j < 9; j++) {
        try {
          a[j] = maxLoadOf(this.p, REQUEST_TYPES[j], tp, this.maxClock);
        } catch {
          // left NaN: asked again below, where it throws as it did untabulated
        }
      }
      this.mlMaxByTp.set(tp, a);
    }
    const v = a[k]!;
    return v === v ? v : maxLoadOf(this.p, REQUEST_TYPES[k], tp, this.maxClock);
  }
  protected readonly mlMaxByTp = new Map<number, Float64Array>();

  protected readonly fluidScratch = { tps: [] as number[], nByTp: [] as number[], groups: [] as FluidGroup[], pl: new Float64Array(9), l: new Float64Array(9), pw: new Float64Array(2), lat: new Float64Array(4), outTok: null as Float64Array | null };

  /** One (TP, clock) group's tick, on the precomputed constants of ./fluid.ts (the same arithmetic as fluidGroup). */
  protected fluidGroupFast(cfg: FluidConfig, g: FluidGroup, share: number, dtS: number, c: Float64Array | undefined, total: number, sm: Float64Array, ls: Float64Array): void {
    const fx = this.fluidScratch;
    const pl = fx.pl, l = fx.l, pw = fx.pw;
    // latency is read at the smoothed rate (see FLUID_LATENCY_WINDOW_S); the tick's counts weight it
    for (let k = 0; k < 9; k++) {
      l[k] = ls[k] > 1e-9 ? ls[k] * share : 0;
      pl[k] = sm[k] > 1e-9 ? sm[k] * share : 0;
    }
    mixedPowerFast(cfg, pl, pw);
    let w = pw[0]!;
    const n = g.insts.length;
    let busy = 1 - Math.exp(-pw[1]!);
    if (!this.useDispatchPolicy && n > 1) {
      // see fluidGroup: the busy fraction of least-outstanding dispatch
      const x = pw[1]!;
      const bi = 1 - Math.exp(-x);
      if (bi > 1e-9) {
        busy = leastLoadedBusyFraction(n, x);
        w = cfg.idleW + ((w - cfg.idleW) / bi) * busy;
      }
    }
    // the idle part (the energy breakdown): the share of the tick no request is in service, at idle power
    const idleJ = (1 - Math.min(1, busy)) * cfg.idleW * dtS;
    for (const inst of g.insts) {
      inst.energyJ += w * dtS;
      inst.idleJ = (inst.idleJ ?? 0) + idleJ;
      if (c) this.fluidArrivals(inst, c, share);
    }
    if (!c || total === 0) return;
    const u = utilisationFast(cfg, l);
    const outTok = (fx.outTok ??= Float64Array.from(REQUEST_TYPES, (t) => Math.max(1, this.p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100)));
    const lat = fx.lat;
    for (let k = 0; k < 9; k++) {
      const cnt = c[k] * share * n;
      if (cnt <= 0) continue;
      const t = REQUEST_TYPES[k];
      const m = cfg.ml[k]!;
      const leq = this.fluidReadLoad(k, cnt, g.tp, g.clock, u, m);
      if (leq === undefined) continue;
      if (!latencyFast(cfg, k, leq, lat) || (leq <= m && this.bendsPastSlo(k, lat[1]!, lat[3]!))) {
        const cell = leq <= m ? latencyWithinSlo(this.p, t, g.tp, g.clock, leq) : interpolate(this.p, t, g.tp, g.clock, leq);
        lat[0] = cell.ttftP50Ms; lat[1] = cell.ttftP99Ms; lat[2] = cell.tbtP50Ms; lat[3] = cell.tbtP99Ms;
      }
      this.fluidLatency(k, cnt, lat[0]!, lat[1]!, lat[2]!, lat[3]!, outTok[k]!);
    }
  }

  /** fluid: an instance's share of its pool's arrivals in a tick, counted into its machine's load window (policy countArrivals). */
  protected fluidArrivals(inst: SimInstance, c: Float64Array, share: number): void {
    const w = inst.window;
    if (w) for (let k = 0; k < 9; k++) if (c[k] > 0) countArrivals(w, REQUEST_TYPES[k], c[k] * share);
  }

  /** One (TP, clock) group's tick, read from the profile directly (where ./fluid.ts has no constants for it). */
  protected fluidGroup(g: FluidGroup, share: number, dtS: number, c: Float64Array | undefined, total: number, sm: Float64Array, ls: Float64Array): void {
    // latency is read at the smoothed rate (see FLUID_LATENCY_WINDOW_S); the tick's counts weight it
    const load: LoadByType = {};
    for (let k = 0; k < 9; k++) if (ls[k] > 1e-9) load[REQUEST_TYPES[k]] = ls[k] * share;
    const pload: LoadByType = {};
    for (let k = 0; k < 9; k++) if (sm[k] > 1e-9) pload[REQUEST_TYPES[k]] = sm[k] * share;
    let w = decide.mixedPowerW(this.p, g.tp, g.clock, pload);
    const x = decide.occupancyOf(this.p, g.tp, g.clock, pload);
    const idleW = idlePowerOf(this.p, g.tp, g.clock);
    let busy = 1 - Math.exp(-x);
    if (!this.useDispatchPolicy && g.insts.length > 1) {
      // least-outstanding dispatch (the baselines) sends an arrival to an empty instance whenever one exists:
      // instances idle far less than the profile's independent-Poisson busy fraction 1 - exp(-x) assumes
      // (src/sim/fluid.ts). Keep the profile's power while busy, take the busy fraction of the dispatch.
      // Approximation: each (TP, clock) group is its own least-loaded pool (step balances per GPU across them).
      const bi = busy;
      if (bi > 1e-9) {
        busy = leastLoadedBusyFraction(g.insts.length, x);
        w = idleW + ((w - idleW) / bi) * busy;
      }
    }
    // the idle part (the energy breakdown): the share of the tick no request is in service, at idle power
    const idleJ = (1 - Math.min(1, busy)) * idleW * dtS;
    for (const inst of g.insts) {
      inst.energyJ += w * dtS;
      inst.idleJ = (inst.idleJ ?? 0) + idleJ;
      if (c) this.fluidArrivals(inst, c, share);
    }
    if (!c || total === 0) return;
    const n = g.insts.length;
    // latency: each type read at the instance's utilisation mapped onto that type's load axis
    const u = decide.utilisation(this.p, g.tp, g.clock, load);
    for (let k = 0; k < 9; k++) {
      const cnt = c[k] * share * n;
      if (cnt <= 0) continue;
      const t = REQUEST_TYPES[k];
      const m = maxLoadOf(this.p, t, g.tp, g.clock);
      const leq = this.fluidReadLoad(k, cnt, g.tp, g.clock, u, m);
      if (leq === undefined) continue;
      const cell = leq <= m ? latencyWithinSlo(this.p, t, g.tp, g.clock, leq) : interpolate(this.p, t, g.tp, g.clock, leq);
      const outTok = Math.max(1, this.p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100);
      this.fluidLatency(k, cnt, cell.ttftP50Ms, cell.ttftP99Ms, cell.tbtP50Ms, cell.tbtP99Ms, outTok);
    }
  }

  /**
   * Whether a latency read inside the SLO load limit is past the type's SLO: the interpolation blended a saturated
   * grid cell in (a coarse load grid whose next point is past saturation); latencyWithinSlo then reads it.
   */
  protected bendsPastSlo(k: number, ttftP99: number, tbtP99: number): boolean {
    const spec = (this.specByK ??= REQUEST_TYPES.map((t) => this.p.requestTypes.find((x) => x.type === t)))[k];
    return !!spec && (ttftP99 > spec.ttftSloMs || tbtP99 > spec.tbtSloMs);
  }
  protected specByK: (RequestTypeSpecLike | undefined)[] | undefined;

  /**
   * The load to read latency at for `cnt` requests of type k on a (tp, clock) instance at utilisation u (load u x m,
   * m its SLO max load): the load itself within the SLO limit; past it, the load where the grid holds no saturated
   * cell at or above it, else the highest grid load below the first one the profile generator found saturated
   * (latencies SATURATED_MS: interpolating toward it blends the sentinel in), and the grid's last load past the grid
   * (whose last load is where every configuration missed the SLO, not saturation): a lower bound of the latency.
   * (No SLO capacity to map u onto, m = 0 or u not finite, reads as a load past the grid.) undefined where the
   * instance is saturated: a load at or past the first saturated grid load, where the queue grows without bound and
   * no steady-state latency exists.
   * Those requests are counted here as saturated (ledger `saturated`: SLO misses, above every modelled latency in
   * the percentiles).
   */
  protected fluidReadLoad(k: number, cnt: number, tp: number, clock: number, u: number, m: number): number | undefined {
    if (Number.isFinite(u) && m > 0 && u <= 1) return u * m;
    const t = REQUEST_TYPES[k];
    const loads = this.p.loads[t]!;
    const load = Number.isFinite(u) && m > 0 ? u * m : Infinity;
    const cs = this.p.clocksMhz;
    const j = cs.findIndex((f) => f >= clock);
    const clocks = cs[j] === clock ? [clock] : [cs[j - 1]!, cs[j]!];
    const satFrom = loads.findIndex((x) => clocks.some((f) => {
      const c = interpolate(this.p, t, tp, f, x);
      return c.ttftP99Ms >= SATURATED_MS || c.tbtP99Ms >= SATURATED_MS;
    }));
    if (!(satFrom >= 0 && load >= loads[satFrom]!)) {
      // below the first saturated grid load: at most the highest grid load below it (or the grid's last)
      const top = satFrom > 0 ? loads[satFrom - 1]! : loads[loads.length - 1]!;
      return Math.min(load, top);
    }
    this.saturated[k] += cnt;
    this.done[k] += cnt;
    return undefined;
  }

  /** Latency and SLO accounting of `cnt` requests of type k read at one profile cell: the cell at their instance's load. */
  protected fluidLatency(k: number, cnt: number, ttftP50: number, ttftP99: number, tbtP50: number, tbtP99: number, outTok: number): void {
    const t = REQUEST_TYPES[k];
    // profile percentiles spread over the requests: 50% at p50, 49% between, 1% at p99
    this.ttftHist[t].add(ttftP50, 0.5 * cnt);
    this.ttftHist[t].add((ttftP50 + ttftP99) / 2, 0.49 * cnt);
    this.ttftHist[t].add(ttftP99, 0.01 * cnt);
    this.tbt[t].add(tbtP50, 0.5 * cnt * outTok);
    this.tbt[t].add((tbtP50 + tbtP99) / 2, 0.49 * cnt * outTok);
    this.tbt[t].add(tbtP99, 0.01 * cnt * outTok);
    this.done[k] += cnt;
    // attainment from the same three points that feed the histograms (and so the p99 verdict): a point's
    // requests meet the SLO when its TTFT and its TBT are inside. u > 1 (load over the SLO max load) is no miss by
    // itself: for most types that limit is the p99 TBT (long prefills stalling decodes), not a throughput limit,
    // and the cell read at the load says what the requests see (a throughput limit is a saturated cell:
    // fluidSaturated).
    const { ttftMs: ttSlo, tbtMs: tbSlo } = sloOf(t, this.sloSettings);
    const midT = (ttftP50 + ttftP99) / 2, midB = (tbtP50 + tbtP99) / 2;
    const ok = (ttftP50 <= ttSlo && tbtP50 <= tbSlo ? 0.5 : 0) + (midT <= ttSlo && midB <= tbSlo ? 0.49 : 0) + (ttftP99 <= ttSlo && tbtP99 <= tbSlo ? 0.01 : 0);
    this.sloOk[k] += cnt * ok;
  }

  /**
   * Dispatch's SLO cap in fluid: a pool accepts up to (1 - headroom) of its SLO throughput at max clock (sum over
   * its active instances), judged on its accepted rate smoothed over LOAD_WINDOW_S, the estimate step's dispatch
   * caps each instance with; the excess of each type's tick count goes on to the next longer pool with an active
   * instance (which caps it in turn). What the last pool cannot take either goes back to the pool each request came
   * to first, which takes it at its cap: step's walk (policy spillPasses: every pool having refused it, the
   * request's own pool queues it), not the last pool's. Without the spill fluid kept every pool's overflow at home
   * while step spilled it (conv hour, multi-pool: the ML pool's overflow to the LS pool kept the LS pool 24% busier
   * in step than in fluid); with the last pool keeping it, the coding hour's LS bursts piled onto the LL pool's one
   * TP2 instance (u up to 18, TTFT p99 of six types past 5,000 s).
   */
  protected fluidSpill(dtS: number, counts: Map<SimPool, Float64Array>, hasActive: Set<SimPool>): void {
    const f = Math.exp(-dtS / LOAD_WINDOW_S);
    const serving = this.pools.filter((p) => hasActive.has(p));
    const n = serving.length;
    // from[j][i]: the tick's counts in serving[j] that came first to serving[i] (i < j), per type
    const from = this.spillScratch(n);
    for (let j = 0; j < n; j++) {
      const pool = serving[j]!;
      const c = counts.get(pool);
      const acc = (pool.accepted ??= new Float64Array(9));
      if (!c) {
        for (let k = 0; k < 9; k++) acc[k] *= f;
        continue;
      }
      const next = serving[j + 1];
      const u = this.spillUtilisation(pool, acc, c, f, dtS);
      const keep = u > 1 - this.headroom ? (1 - this.headroom) / u : 1;
      if (keep < 1) {
        const rows = from[j]!;
        const out = next ? (counts.get(next) ?? (counts.set(next, new Float64Array(9)), counts.get(next)!)) : undefined;
        for (let k = 0; k < 9; k++) {
          if (!(c[k] > 0)) continue;
          const excess = c[k] * (1 - keep);
          let own = c[k];
          for (let i = 0; i < j; i++) {
            const x = rows[i]![k]!;
            if (!(x > 0)) continue;
            own -= x;
            const part = x * (1 - keep);
            if (out) from[j + 1]![i]![k] += part;
            else this.spillHome(serving[i]!, counts, k, part, f, dtS);
          }
          // the excess of the pool's own arrivals moves on; the last pool keeps its own (their home)
          if (out) {
            out[k] += excess;
            from[j + 1]![j]![k] += Math.max(0, own) * (1 - keep);
            c[k] -= excess;
          } else c[k] -= excess - Math.max(0, own) * (1 - keep);
        }
      }
      for (let k = 0; k < 9; k++) acc[k] = acc[k] * f + (1 - f) * (c[k] / dtS);
    }
  }

  /** A pool's utilisation of its SLO throughput at max clock on its accepted rate with the tick's counts `c` (Infinity: a type it cannot serve). */
  private spillUtilisation(pool: SimPool, acc: Float64Array, c: Float64Array, f: number, dtS: number): number {
    // active instances per TP, in the order of their first instance
    const tps = this.fluidScratch.tps, nByTp = this.fluidScratch.nByTp;
    let nt = 0;
    for (const i of pool.instances) {
      if (i.state !== 'active') continue;
      let j = 0;
      while (j < nt && tps[j] !== i.tp) j++;
      if (j === nt) {
        tps[nt] = i.tp;
        nByTp[nt++] = 0;
      }
      nByTp[j]++;
    }
    let u = 0;
    for (let k = 0; k < 9; k++) {
      const e = acc[k] * f + (1 - f) * (c[k] / dtS);
      if (!(e > 0)) continue;
      let cap = 0;
      for (let j = 0; j < nt; j++) cap += nByTp[j]! * this.maxLoadAtMax(k, tps[j]!);
      u += cap > 0 ? e / cap : Infinity;
    }
    return u;
  }

  /** Overflow no pool took goes back to the pool it came to first (already walked this tick: its accepted rate takes it too). */
  private spillHome(home: SimPool, counts: Map<SimPool, Float64Array>, k: number, x: number, f: number, dtS: number): void {
    const c = counts.get(home) ?? (counts.set(home, new Float64Array(9)), counts.get(home)!);
    c[k] += x;
    home.accepted![k] += (1 - f) * (x / dtS);
  }

  /** fluidSpill's origin rows, zeroed: n x n rows of 9 types. */
  private spillScratch(n: number): Float64Array[][] {
    const s = this.spillRows;
    while (s.length < n) s.push([]);
    for (let j = 0; j < n; j++) {
      const rows = s[j]!;
      while (rows.length < n) rows.push(new Float64Array(9));
      for (let i = 0; i < j; i++) rows[i]!.fill(0);
    }
    return s;
  }
  private readonly spillRows: Float64Array[][] = [];

  protected arriveFluid(r: TraceRecord, counts: Map<SimPool, Float64Array>, hasActive: Set<SimPool>): void {
    this.requests++;
    if (overContext(r, this.maxContext)) {
      this.refusedOverContext++;
      return;
    }
    const c = this.classifier.classify(r, '');
    if (!c) {
      this.unservable++;
      return;
    }
    if (c.pred !== c.type) this.misclassified++;
    let pool = this.route.get(c.pred);
    if (!pool || !hasActive.has(pool)) {
      const from = pool?.order ?? -1;
      pool = this.pools.find((p) => p.order > from && hasActive.has(p)) ?? this.pools.find((p) => hasActive.has(p));
    }
    if (!pool) {
      this.rejected++;
      return;
    }
    let a = counts.get(pool);
    if (!a) counts.set(pool, (a = new Float64Array(9)));
    a[TYPE_INDEX[c.type]]++;
  }
}
