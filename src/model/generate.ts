/**
 * Profile generation from the performance and power model (pure): a steady state per (type, TP, clock, load)
 * of the same scheduling the batching core (src/engine/core.ts) runs. See profiles/README.md "How generated
 * profiles are computed".
 *
 * Scheduling (vLLM v1 with chunked prefill, budget DEFAULT_SCHEDULER shared with the core): every step carries all
 * running decodes (one token each) plus prompt tokens while the token budget lasts. The prefill budget of a step is
 * cTok = max_num_batched_tokens - decodes; a prompt of I <= cTok tokens is prefilled whole, a longer one in chunks
 * of cTok tokens over several steps (each chunk attends to the prompt's earlier chunks; a step with a backlog is
 * filled to its budget). The chain below counts waiting "pieces": a whole prompt when it fits (a step takes
 * `cap` = floor(cTok / I) of them), else quarter-budget pieces, k = ceil(4 I / cTok) per prompt, 4 per step; a
 * prompt arriving during a step joins the next one, whose duration includes the decode batch.
 *
 * At offered load lam (req/s) of a type with I input and O output tokens:
 *  - the pieces waiting at a step's start form a Markov chain: n' = n - min(n, cap) + k * Poisson(lam * D(n)),
 *    D(n) = stepTime(prefill min(n, cap) pieces, Bb decodes of mean context I + O/2); solved for its
 *    stationary distribution pi (truncated; mass piling at the top means saturation);
 *  - decodes: B = lam * (O-1) * mean TBT (Little's law), present while the engine is busy: Bb = B / busy;
 *  - the engine idles when no request is in it: idle = exp(-lam * E2E) (M/G/inf occupancy), busy = 1 - idle;
 *  - B, busy and the chain are iterated to a fixed point; no fixed point (decode batch beyond max_num_seqs or
 *    the KV cache, or steps beyond 60 s) means saturation;
 *  - TBT = the duration of the steps a decode takes part in: quantiles of D over pi (atoms blended over 0.5%
 *    of probability at their edges, so profile cells move continuously with load);
 *  - TTFT: a prompt arriving at an idle engine is prefilled at once (its k chunk steps with no decodes); one
 *    arriving at a busy engine (time-weighted state n, PASTA) waits the residual of that step (uniform on
 *    [0, D(n)]) plus the steps that carry the leftover queue, its own k pieces and those of the Poisson(lam * D(n))
 *    other arrivals (whole steps of D(cap) until the last, which carries the rest);
 *  - power = busy x time-weighted step power over pi + idle x loaded-idle power per GPU, the way the core accounts
 *    energy (per-step energy plus idle gaps); energy/request = instance power / lam; at load 0 the lone request's
 *    own energy.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { DEFAULT_REQUEST_TYPES } from './request-types.ts';
import type { PerfModel, RequestTypeSpec, StepBatch } from './types.ts';
import { PROFILE_VERSION, type MaxLoadEntry, type Profile, type ProfileCell } from './profile-types.ts';
import { DEFAULT_SCHEDULER, type SchedulerConfig } from './scheduler.ts';
import { ModelInputError } from './perf.ts';

/** the paper's profiling clocks: 800-1980 MHz in 200 MHz steps plus the max clock. */
export const PAPER_CLOCKS_MHZ = [800, 1000, 1200, 1400, 1600, 1800, 1980];
/** latencies of a saturated cell are reported as this (ms), JSON having no Infinity. */
export const SATURATED_MS = 1e6;
const MAX_STEP_MS = 60_000;
/** largest waiting queue the chain tracks; probability mass reaching it means the queue is unstable. */
const MAX_QUEUE = 400;
/** a prompt longer than a step's prefill budget is tracked in pieces of 1/CHUNK_PIECES of that budget. */
const CHUNK_PIECES = 4;
/** quantiles blend neighbouring atoms within this much probability of an atom's edge. */
const QUANTILE_BLEND = 0.005;

export interface GenerateOptions {
  tpDegrees?: number[]; // default [2, 4, 8]
  clocksMhz?: number[]; // default PAPER_CLOCKS_MHZ (clipped to the GPU's range)
  requestTypes?: RequestTypeSpec[]; // default DEFAULT_REQUEST_TYPES
  /** load-grid points per type below the highest feasible load (default 16). */
  loadSteps?: number;
  /** the engine's scheduler budget (default DEFAULT_SCHEDULER, the batching core's default too). */
  scheduler?: Partial<SchedulerConfig>;
  date?: string; // provenance date; default '1970-01-01' keeps generation deterministic
  calibration?: string;
  /** the fitted engine generation `perf` was built with (recorded as source.engine). */
  engine?: string;
  notes?: string;
}

export interface SteadyState {
  saturated: boolean;
  /** mean step duration while busy, ms. */
  stepMs: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  tbtP50Ms: number;
  tbtP99Ms: number;
  /** per-GPU average power, W */
  gpuPowerW: number;
  energyPerRequestJ: number;
}

/** Poisson pmf for k = 0.. until the tail is below eps (at least one term). */
function poissonPmf(mean: number, eps = 1e-10): number[] {
  const out: number[] = [];
  let p = Math.exp(-mean), cum = 0;
  for (let k = 0; ; k++) {
    out.push(p);
    cum += p;
    if (1 - cum < eps || k > mean + 40 * Math.sqrt(mean + 1) + 20) break;
    p *= mean / (k + 1);
  }
  return out;
}

/** p-quantile of weighted atoms (value, weight; weights sum to 1), blended at atom edges (QUANTILE_BLEND). */
export function atomQuantile(atoms: [number, number][], p: number): number {
  const a = atoms.filter(([, w]) => w > 0).sort((x, y) => x[0] - y[0]);
  if (a.length === 0) return NaN;
  const total = a.reduce((s, [, w]) => s + w, 0);
  let c = 0;
  for (let i = 0; i < a.length; i++) {
    const lo = c, hi = c + a[i][1] / total;
    c = hi;
    if (p > hi && i < a.length - 1) continue;
    const v = a[i][0];
    const d = QUANTILE_BLEND;
    if (i > 0 && p - lo < d) return a[i - 1][0] + (v - a[i - 1][0]) * (0.5 + (p - lo) / (2 * d));
    if (i < a.length - 1 && hi - p < d) return v + (a[i + 1][0] - v) * (0.5 - (hi - p) / (2 * d));
    return v;
  }
  return a[a.length - 1][0];
}

/** p-quantile of a mixture of uniform distributions [lo, lo + width] (width 0 = an atom), weights summing to 1,
 * plus, with probability `waitP`, an exponential wait of mean `waitMs` added to the draw. */
function mixtureQuantile(comps: { w: number; lo: number; width: number }[], p: number, waitP = 0, waitMs = 0): number {
  const base = (t: number) => {
    let s = 0;
    for (const c of comps) s += c.width > 0 ? c.w * Math.min(1, Math.max(0, (t - c.lo) / c.width)) : t >= c.lo ? c.w : 0;
    return s;
  };
  const WAIT_POINTS = 24;
  const cdf = (t: number) => {
    if (!(waitP > 0)) return base(t);
    let s = 0;
    for (let j = 0; j < WAIT_POINTS; j++) s += base(t + waitMs * Math.log(1 - (j + 0.5) / WAIT_POINTS));
    return (1 - waitP) * base(t) + (waitP * s) / WAIT_POINTS;
  };
  let lo = Infinity, hi = 0;
  for (const c of comps) {
    lo = Math.min(lo, c.lo);
    hi = Math.max(hi, c.lo + c.width);
  }
  if (waitP > 0) hi += waitMs * Math.log(WAIT_POINTS * 2);
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (cdf(mid) >= p) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** Erlang C: probability that an arrival waits in an M/M/c queue at offered load a = lam * hold (a < c). */
export function erlangC(c: number, a: number): number {
  if (a <= 0) return 0;
  if (a >= c) return 1;
  let b = 1; // Erlang B by recursion, stable for large c
  for (let k = 1; k <= c; k++) b = (a * b) / (k + a * b);
  return (c * b) / (c - a * (1 - b));
}

/** Steady state of one instance at one load of one type. */
export function steadyState(perf: PerfModel, t: RequestTypeSpec, tp: number, clockMhz: number, load: number, scheduler: Partial<SchedulerConfig> = {}): SteadyState {
  const sched = { ...DEFAULT_SCHEDULER, ...scheduler };
  const I = Math.max(1, t.inputTokens), O = Math.max(1, t.outputTokens);
  if (!(sched.maxNumBatchedTokens >= 2)) throw new ModelInputError(`max_num_batched_tokens must be >= 2, got ${sched.maxNumBatchedTokens}`);
  const ctx = I + O / 2;
  /**
   * Chunking of one prompt with Bb decodes in the step. A prompt that fits the step's prefill budget cTok is one
   * piece (cap = whole prompts per step). A longer one is cut into pieces of a quarter budget (k = ceil(I / s)), a
   * step taking 4 of them: like the engine, a step with a backlog is filled to its budget, the end of one prompt
   * and the start of the next sharing a step. `chunkCtx`: the context each of the prompt's budget-sized chunks
   * attends to (0, cTok, 2 cTok, ...).
   */
  const chunking = (Bb: number) => {
    const cTok = Math.max(1, sched.maxNumBatchedTokens - Bb);
    if (I <= cTok) return { k: 1, s: I, cap: Math.max(1, Math.floor(cTok / I)), ctxMean: 0, chunkCtx: [0] };
    const s = cTok / CHUNK_PIECES;
    const chunkCtx: number[] = [];
    for (let c = 0; c < I; c += cTok) chunkCtx.push(c);
    return { k: Math.ceil(I / s - 1e-9), s, cap: CHUNK_PIECES, ctxMean: (I - cTok) / 2, chunkCtx };
  };
  /** an idle engine prefills the prompt alone: its k chunks, chunk j attending to the j chunks before it. */
  const prefillAloneMs = (): number => {
    const { k, chunkCtx } = chunking(0);
    if (k === 1) return perf.ttftMs(I, tp, clockMhz);
    let ms = 0;
    for (const c of chunkCtx) ms += perf.stepTimeMs({ prefillTokens: Math.min(sched.maxNumBatchedTokens, I - c), prefillSeqs: 1, prefillContextTokens: c, decodeSeqs: 0, decodeContextTokens: 0 }, tp, clockMhz);
    return ms;
  };
  const idleW = perf.idlePowerW(tp, clockMhz, true);
  const decodeOnly = (B: number): StepBatch => ({ prefillTokens: 0, decodeSeqs: B, decodeContextTokens: B * ctx });
  if (load === 0) {
    const ttft = prefillAloneMs();
    const tbt = perf.stepTimeMs(decodeOnly(1), tp, clockMhz);
    const c0 = chunking(0);
    const pPrefill = perf.stepPowerW({ prefillTokens: Math.min(I, sched.maxNumBatchedTokens), prefillSeqs: 1, prefillContextTokens: c0.ctxMean, decodeSeqs: 0, decodeContextTokens: 0 }, tp, clockMhz);
    const pDecode = perf.stepPowerW(decodeOnly(1), tp, clockMhz);
    const energy = (tp * (pPrefill * ttft + pDecode * tbt * (O - 1))) / 1000;
    return { saturated: false, stepMs: tbt, ttftP50Ms: ttft, ttftP99Ms: ttft, tbtP50Ms: tbt, tbtP99Ms: tbt, gpuPowerW: idleW, energyPerRequestJ: energy };
  }
  const lam = load / 1000; // per ms
  const kvCap = perf.kvCapacityTokens(tp);
  const saturated = (B: number): SteadyState => {
    const Bs = Math.min(Math.max(B, 1), sched.maxNumSeqs);
    const ch = chunking(Bs);
    const w = perf.stepPowerW({ prefillTokens: ch.cap * ch.s, prefillSeqs: ch.cap, prefillContextTokens: ch.ctxMean, decodeSeqs: Bs, decodeContextTokens: Bs * ctx }, tp, clockMhz);
    return {
      saturated: true, stepMs: SATURATED_MS, ttftP50Ms: SATURATED_MS, ttftP99Ms: SATURATED_MS, tbtP50Ms: SATURATED_MS, tbtP99Ms: SATURATED_MS,
      gpuPowerW: w, energyPerRequestJ: (w * tp) / load,
    };
  };

  /** One pass of the chain for a decode batch Bb (while busy); returns what the fixed point needs. */
  let warm: Float64Array | null = null; // the last stationary distribution: a close start for the next pass
  const chain = (Bb: number) => {
    const { k: kP, s: pieceTokens, cap, ctxMean, chunkCtx } = chunking(Bb);
    const batchOf = (a: number): StepBatch => ({ prefillTokens: a * pieceTokens, prefillSeqs: Math.max(1, a), prefillContextTokens: a > 0 ? ctxMean : 0, decodeSeqs: Bb, decodeContextTokens: Bb * ctx });
    const dMemo = new Map<number, number>();
    const D = (n: number) => {
      const a = Math.min(n, cap);
      let v = dMemo.get(a);
      if (v === undefined) {
        v = perf.stepTimeMs(batchOf(a), tp, clockMhz);
        if (!(v > 0)) v = perf.stepTimeMs(decodeOnly(1), tp, clockMhz); // an empty batch (Bb = 0, a = 0)
        dMemo.set(a, v);
      }
      return v;
    };
    const pmfMemo = new Map<number, number[]>();
    const arrivals = (n: number) => {
      const a = Math.min(n, cap);
      let v = pmfMemo.get(a);
      if (!v) pmfMemo.set(a, (v = poissonPmf(lam * D(n))));
      return v;
    };
    // a queue at full budget grows (more arrive per step than a step admits), or steps would be minutes long
    if (lam * kP * D(cap) >= cap || lam * D(cap) > 500) return { unstable: true, meanD: NaN, stepPowerW: NaN, ttftBusy: [], meanTtftBusy: NaN, tbtAtoms: [] };
    // stationary distribution by power iteration from the empty queue
    let pi = warm ?? new Float64Array(MAX_QUEUE + 1);
    if (!warm) pi[0] = 1;
    let top = MAX_QUEUE; // highest state with mass
    while (top > 0 && pi[top] === 0) top--;
    // from a warm start, a few hundred sweeps suffice: the fixed point below keeps calling this as B settles
    const sweeps = warm ? 300 : 3000;
    for (let it = 0; it < sweeps; it++) {
      const next = new Float64Array(MAX_QUEUE + 1);
      let nTop = 0;
      for (let n = 0; n <= top; n++) {
        const m = pi[n];
        if (m < 1e-14) continue;
        const base = n - Math.min(n, cap);
        const pmf = arrivals(n);
        for (let k = 0; k < pmf.length; k++) {
          const j = Math.min(MAX_QUEUE, base + k * kP);
          next[j] += m * pmf[k];
          if (j > nTop) nTop = j;
        }
      }
      let diff = 0;
      for (let n = 0; n <= Math.max(top, nTop); n++) diff += Math.abs(next[n] - pi[n]);
      pi = next;
      top = nTop;
      if (diff < 1e-9) break;
    }
    warm = pi;
    let mass = 0, meanD = 0, meanDP = 0;
    for (let n = 0; n <= top; n++) {
      if (pi[n] < 1e-14) continue;
      mass += pi[n];
      meanD += pi[n] * D(n);
    }
    meanD /= mass;
    const unstable = pi[MAX_QUEUE] > 1e-6 || meanD > MAX_STEP_MS;
    // the TTFT components: at a busy engine, time-weighted state n, residual U[0, D(n)], then the step carrying it
    const ttftBusy: { w: number; lo: number; width: number }[] = [];
    let meanTtftBusy = 0;
    for (let n = 0; n <= top && !unstable; n++) {
      if (pi[n] < 1e-12) continue;
      const dn = D(n);
      const tw = (pi[n] * dn) / (mass * meanD);
      meanDP += pi[n] * dn * perf.stepPowerW(batchOf(Math.min(n, cap)), tp, clockMhz);
      const left = n - Math.min(n, cap);
      const extra = Math.ceil((left + kP) / cap) - 1; // whole steps before the one carrying the prompt's last piece
      const pmf = arrivals(n);
      for (let k = 0; k < pmf.length; k++) {
        const w = tw * pmf[k];
        if (w < 1e-12) continue;
        const lo = extra * D(cap) + D(Math.min(cap, left - extra * cap + kP + k * kP));
        ttftBusy.push({ w, lo, width: dn });
        meanTtftBusy += w * (lo + dn / 2);
      }
    }
    const tbtAtoms: [number, number][] = [];
    // a chunked prompt's later chunks attend to more context: the tail of TBT is the last chunks' steps, so a step
    // carrying pieces is spread over the chunk index j (context j x piece) instead of the mean context
    const dAt = new Map<string, number>();
    const Dj = (a: number, j: number) => {
      const key = `${a}|${j}`;
      let v = dAt.get(key);
      if (v === undefined) dAt.set(key, (v = perf.stepTimeMs({ ...batchOf(a), prefillContextTokens: chunkCtx[j]! }, tp, clockMhz)));
      return v;
    };
    for (let n = 0; n <= top; n++) {
      if (pi[n] < 1e-12) continue;
      const a = Math.min(n, cap);
      if (kP === 1 || a === 0) tbtAtoms.push([D(n), pi[n] / mass]);
      else for (let j = 0; j < chunkCtx.length; j++) tbtAtoms.push([Dj(a, j), pi[n] / mass / chunkCtx.length]);
    }
    return { unstable, meanD, stepPowerW: meanDP / (mass * meanD), ttftBusy, meanTtftBusy, tbtAtoms };
  };

  const ttftIdle = prefillAloneMs();
  // KV cache: a request holds up to I + O tokens of KV from admission to its end, so at most kvSeqs run at once;
  // a prompt that finds them all taken waits for one to finish (Erlang C over the requests in the engine, M/G/inf
  // mean lam x hold, hold = its prefill step + (O-1) TBTs; the wait given waiting is exponential, mean hold/(c-a)).
  const kvSeqs = Math.floor(kvCap / (I + O));
  const kvWait = (meanD: number, dPrefill: number) => {
    const hold = dPrefill + (O - 1) * meanD;
    const a = lam * hold;
    if (kvSeqs < 1 || a >= kvSeqs) return null;
    return { p: erlangC(kvSeqs, a), meanMs: hold / (kvSeqs - a) };
  };
  // fixed point on the decode batch: B = lam*(O-1)*meanTBT, busy = 1 - exp(-lam*E2E), Bb = B / busy
  let B = lam * (O - 1) * perf.stepTimeMs(decodeOnly(1), tp, clockMhz);
  let busy = 1 - Math.exp(-lam * (ttftIdle + (O - 1) * perf.stepTimeMs(decodeOnly(1), tp, clockMhz)));
  let c = chain(B / busy);
  let wait = c.unstable ? null : kvWait(c.meanD, c.meanTtftBusy);
  const bad = () => c.unstable || !wait || B > sched.maxNumSeqs;
  for (let it = 0; it < 200; it++) {
    if (bad()) return saturated(B);
    const meanTtft = (1 - busy) * ttftIdle + busy * c.meanTtftBusy + wait!.p * wait!.meanMs;
    const B2 = lam * (O - 1) * c.meanD;
    const busy2 = Math.max(1e-9, 1 - Math.exp(-lam * (meanTtft + (O - 1) * c.meanD)));
    const done = Math.abs(B2 - B) <= 1e-5 * Math.max(1, B) && Math.abs(busy2 - busy) <= 1e-6;
    B = B2;
    busy = busy2;
    c = chain(B / busy);
    wait = c.unstable ? null : kvWait(c.meanD, c.meanTtftBusy);
    if (done) break;
  }
  if (bad()) return saturated(B);
  const comps = [{ w: 1 - busy, lo: ttftIdle, width: 0 }, ...c.ttftBusy.map((x) => ({ ...x, w: x.w * busy }))];
  const gpuPowerW = busy * c.stepPowerW + (1 - busy) * idleW;
  const ttftQ = (p: number) => mixtureQuantile(comps, p, wait!.p, wait!.meanMs);
  return {
    saturated: false,
    stepMs: c.meanD,
    ttftP50Ms: ttftQ(0.5),
    ttftP99Ms: ttftQ(0.99),
    tbtP50Ms: atomQuantile(c.tbtAtoms, 0.5),
    tbtP99Ms: atomQuantile(c.tbtAtoms, 0.99),
    gpuPowerW,
    energyPerRequestJ: (gpuPowerW * tp) / load,
  };
}

export function meetsSlo(s: SteadyState, t: RequestTypeSpec): boolean {
  return !s.saturated && s.ttftP99Ms <= t.ttftSloMs && s.tbtP99Ms <= t.tbtSloMs;
}

/** Highest load meeting the SLO (bisection; feasibility is monotone in load in this model). 0 if none. */
export function maxFeasibleLoad(perf: PerfModel, t: RequestTypeSpec, tp: number, clockMhz: number, scheduler: Partial<SchedulerConfig> = {}): number {
  const ok = (l: number) => meetsSlo(steadyState(perf, t, tp, clockMhz, l, scheduler), t);
  if (!ok(0)) return 0;
  let lo = 0, hi = 0.05;
  while (ok(hi)) {
    lo = hi;
    hi *= 2;
    if (hi > 1e5) return lo;
  }
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** round to 4 significant digits (keeps profiles small; the model is not that precise anyway). */
export function sig4(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  return Number(x.toPrecision(4));
}

/** A "nice" grid step near x (1, 2, 2.5, 5 x 10^k). */
function niceStep(x: number): number {
  const e = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= x) return m * e;
  return 10 * e;
}

export function generateProfile(perf: PerfModel, opts: GenerateOptions = {}): Profile {
  const gpu = perf.gpu;
  const tps = opts.tpDegrees ?? [2, 4, 8];
  const clocks = (opts.clocksMhz ?? PAPER_CLOCKS_MHZ).filter((f) => f >= gpu.minClockMhz && f <= gpu.maxClockMhz);
  const types = opts.requestTypes ?? DEFAULT_REQUEST_TYPES;
  const steps = opts.loadSteps ?? 16;
  const sched = opts.scheduler ?? {};
  const schedUsed = { ...DEFAULT_SCHEDULER, ...sched };
  const cells: ProfileCell[] = [];
  const maxLoad: MaxLoadEntry[] = [];
  const loads: Partial<Record<RequestType, number[]>> = {};
  for (const t of types) {
    const ml = new Map<string, number>();
    let best = 0;
    for (const tp of tps) for (const f of clocks) {
      const m = maxFeasibleLoad(perf, t, tp, f, sched);
      ml.set(`${tp}|${f}`, m);
      best = Math.max(best, m);
      maxLoad.push({ type: t.type, tp, clockMhz: f, maxLoad: sig4(m) });
    }
    const step = niceStep(Math.max(best, 0.01) / steps);
    const grid: number[] = [0];
    // up to the first grid load at which every configuration misses the SLO
    for (let l = step; ; l += step) {
      grid.push(sig4(l));
      if (l > best) break;
    }
    loads[t.type] = grid;
    for (const tp of tps) for (const f of clocks) for (const l of grid) {
      const s = steadyState(perf, t, tp, f, l, sched);
      cells.push({
        type: t.type, tp, clockMhz: f, load: l,
        powerW: sig4(s.gpuPowerW * tp), energyPerRequestJ: sig4(s.energyPerRequestJ),
        ttftP50Ms: sig4(s.ttftP50Ms), ttftP99Ms: sig4(s.ttftP99Ms), tbtP50Ms: sig4(s.tbtP50Ms), tbtP99Ms: sig4(s.tbtP99Ms),
        // consistent with maxLoad by construction (feasibility is monotone in load)
        meetsSlo: l <= ml.get(`${tp}|${f}`)! && meetsSlo(s, t),
      });
    }
  }
  const idlePowerW = tps.flatMap((tp) => clocks.map((f) => ({ tp, clockMhz: f, powerW: sig4(perf.idlePowerW(tp, f, true)) })));
  return {
    version: PROFILE_VERSION,
    model: perf.model.id,
    gpu: gpu.id,
    source: {
      kind: 'model',
      generatedBy: 'dynamollm src/model generateProfile (steady state of the batching core\'s scheduling, profiles/README.md)',
      calibration: opts.calibration,
      ...(opts.engine !== undefined ? { engine: opts.engine } : {}),
      date: opts.date ?? '1970-01-01',
      notes: opts.notes,
    },
    tpDegrees: tps,
    clocksMhz: clocks,
    requestTypes: types.map((t) => ({ ...t })),
    loads,
    cells,
    maxLoad,
    scheduler: { maxNumBatchedTokens: schedUsed.maxNumBatchedTokens, maxNumSeqs: schedUsed.maxNumSeqs },
    idlePowerW,
  };
}

/**
 * What generateProfile needs to produce `p` again from the current model: its TP degrees, clocks, request
 * types, scheduler budget and provenance (the engine generation is engineOfProfile's). A shipped profile equals
 * generateProfile(perfModelOfProfile(p), regenerationOptions(p)) up to rounding; the profile-drift test checks it.
 */
export function regenerationOptions(p: Profile): GenerateOptions {
  return {
    tpDegrees: [...p.tpDegrees], clocksMhz: [...p.clocksMhz], requestTypes: p.requestTypes.map((t) => ({ ...t })),
    scheduler: p.scheduler ? { ...p.scheduler } : {}, date: p.source.date, calibration: p.source.calibration, notes: p.source.notes,
    ...(p.source.engine !== undefined ? { engine: p.source.engine } : {}),
  };
}

export { REQUEST_TYPES };
