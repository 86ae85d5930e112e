/**
 * Profile generation from the performance and power model (pure): a steady-state fixed point per
 * (type, TP, clock, load). See profiles/README.md "How generated profiles are computed".
 *
 * At offered load lam (req/s) of a type with I input and O output tokens, the mean engine step T (ms)
 * solves  T = stepTime(prefill = lam*I*T, decode seqs B = lam*O*T, decode context = B*(I + O/2))
 * (Little's law for the decode batch; prompts arriving during a step are prefilled in the next one).
 * No solution below 60 s, or a decode batch whose KV cache does not fit, means saturation.
 *   Prompts are prefilled in chunks of 512 tokens mixed with the decodes (chunked prefill).
 *   TBT p50 = T; TBT p99 = a step that carries a prefill chunk (Tm) once >= 1% of steps do, else a
 *   decode-only step (Td), blended in between.
 *   TTFT = residual of the current step + queueing of prompts + Tm, with queueing from an M/D/1-like
 *   tail: W_p = 0.5*S/(1-rho)*ln(rho/(1-p)), S = chunks*Tm, rho = 1 - T0/T (T0 = the step at vanishing load).
 *   power = busy*stepPower + (1-busy)*loadedIdle per GPU, busy = 1 - exp(-lam * E2E) (Poisson);
 *   energy/request = instance power / lam; at load 0 the lone request's own energy.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { DEFAULT_REQUEST_TYPES } from './request-types.ts';
import type { PerfModel, RequestTypeSpec, StepBatch } from './types.ts';
import { PROFILE_VERSION, type MaxLoadEntry, type Profile, type ProfileCell } from './profile-types.ts';

/** the paper's profiling clocks: 800-1980 MHz in 200 MHz steps plus the max clock. */
export const PAPER_CLOCKS_MHZ = [800, 1000, 1200, 1400, 1600, 1800, 1980];
/** latencies of a saturated cell are reported as this (ms), JSON having no Infinity. */
export const SATURATED_MS = 1e6;
const MAX_STEP_MS = 60_000;
/** prefill chunk (tokens per step per prompt) of the modelled engine (vLLM chunked prefill, 512 in v0.4-0.5). */
export const DEFAULT_PREFILL_CHUNK = 512;

export interface GenerateOptions {
  tpDegrees?: number[]; // default [2, 4, 8]
  clocksMhz?: number[]; // default PAPER_CLOCKS_MHZ (clipped to the GPU's range)
  requestTypes?: RequestTypeSpec[]; // default DEFAULT_REQUEST_TYPES
  /** load-grid points per type below the highest feasible load (default 16). */
  loadSteps?: number;
  /** prefill chunk, tokens (default DEFAULT_PREFILL_CHUNK = 512). */
  prefillChunk?: number;
  date?: string; // provenance date; default '1970-01-01' keeps generation deterministic
  calibration?: string;
  notes?: string;
}

export interface SteadyState {
  saturated: boolean;
  stepMs: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  tbtP50Ms: number;
  tbtP99Ms: number;
  /** per-GPU average power, W */
  gpuPowerW: number;
  energyPerRequestJ: number;
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/** Steady state of one instance at one load of one type. */
export function steadyState(perf: PerfModel, t: RequestTypeSpec, tp: number, clockMhz: number, load: number, chunk = DEFAULT_PREFILL_CHUNK): SteadyState {
  const I = Math.max(1, t.inputTokens), O = Math.max(1, t.outputTokens);
  const ctx = I + O / 2;
  const idleW = perf.idlePowerW(tp, clockMhz, true);
  const decodeOnly = (B: number): StepBatch => ({ prefillTokens: 0, decodeSeqs: B, decodeContextTokens: B * ctx });
  if (load === 0) {
    const ttft = perf.ttftMs(I, tp, clockMhz);
    const tbt = perf.stepTimeMs(decodeOnly(1), tp, clockMhz);
    const pPrefill = perf.stepPowerW({ prefillTokens: I, decodeSeqs: 0, decodeContextTokens: 0 }, tp, clockMhz);
    const pDecode = perf.stepPowerW(decodeOnly(1), tp, clockMhz);
    const energy = (tp * (pPrefill * ttft + pDecode * tbt * (O - 1))) / 1000;
    return { saturated: false, stepMs: tbt, ttftP50Ms: ttft, ttftP99Ms: ttft, tbtP50Ms: tbt, tbtP99Ms: tbt, gpuPowerW: idleW, energyPerRequestJ: energy };
  }
  const lam = load / 1000; // per ms
  const batchAt = (T: number): StepBatch => {
    const B = lam * O * T;
    return { prefillTokens: lam * I * T, decodeSeqs: B, decodeContextTokens: B * ctx };
  };
  const g = (T: number) => perf.stepTimeMs(batchAt(T), tp, clockMhz);
  const saturated = (): SteadyState => ({
    saturated: true, stepMs: SATURATED_MS, ttftP50Ms: SATURATED_MS, ttftP99Ms: SATURATED_MS, tbtP50Ms: SATURATED_MS, tbtP99Ms: SATURATED_MS,
    gpuPowerW: perf.stepPowerW(batchAt(MAX_STEP_MS / 100), tp, clockMhz), energyPerRequestJ: 0,
  });
  // smallest T with g(T) <= T: geometric scan then bisection
  let lo = 0.01, hi = 0.01;
  while (g(hi) > hi) {
    lo = hi;
    hi *= 1.5;
    if (hi > MAX_STEP_MS) break;
  }
  if (hi > MAX_STEP_MS) {
    const s = saturated();
    s.energyPerRequestJ = (s.gpuPowerW * tp) / load;
    return s;
  }
  for (let i = 0; i < 50; i++) {
    const mid = (lo + hi) / 2;
    if (g(mid) > mid) lo = mid;
    else hi = mid;
  }
  const T = hi;
  const B = lam * O * T;
  if (B * (I + O) > perf.kvCapacityTokens(tp)) {
    const s = saturated();
    s.energyPerRequestJ = (s.gpuPowerW * tp) / load;
    return s;
  }
  const T0 = g(0.01) || T;
  const Td = perf.stepTimeMs(decodeOnly(B), tp, clockMhz);
  // chunked prefill: a prompt is split into chunks of `chunk` tokens, one chunk per step, mixed with the decodes
  const chunks = Math.ceil(I / chunk);
  const chunkTokens = Math.max(Math.min(I, chunk), Math.min(lam * I * T, chunk * Math.ceil(lam * chunks * T)));
  const Tm = perf.stepTimeMs({ prefillTokens: chunkTokens, decodeSeqs: B, decodeContextTokens: B * ctx, prefillContextTokens: chunkTokens * Math.max(0, chunks - 1) / 2 }, tp, clockMhz);
  const q = clamp01(lam * chunks * T); // fraction of steps that carry a prefill chunk
  const tbtP99 = Td + (Tm - Td) * clamp01((q - 0.005) / 0.015);
  const rho = Math.min(0.999, Math.max(0, 1 - T0 / T));
  const S = chunks * Tm; // the prompt's own prefill time under this load
  const wq = (p: number) => (rho > 0 ? Math.max(0, ((0.5 * S) / (1 - rho)) * Math.log(rho / (1 - p))) : 0);
  const ttftP50 = T / 2 + wq(0.5) + S;
  const ttftP99 = T + wq(0.99) + S;
  const e2e = ttftP50 + (O - 1) * T;
  const busy = 1 - Math.exp(-lam * e2e);
  const gpuPowerW = busy * perf.stepPowerW(batchAt(T), tp, clockMhz) + (1 - busy) * idleW;
  return {
    saturated: false, stepMs: T, ttftP50Ms: ttftP50, ttftP99Ms: ttftP99, tbtP50Ms: T, tbtP99Ms: tbtP99,
    gpuPowerW, energyPerRequestJ: (gpuPowerW * tp) / load,
  };
}

export function meetsSlo(s: SteadyState, t: RequestTypeSpec): boolean {
  return !s.saturated && s.ttftP99Ms <= t.ttftSloMs && s.tbtP99Ms <= t.tbtSloMs;
}

/** Highest load meeting the SLO (bisection; feasibility is monotone in load in this model). 0 if none. */
export function maxFeasibleLoad(perf: PerfModel, t: RequestTypeSpec, tp: number, clockMhz: number, chunk = DEFAULT_PREFILL_CHUNK): number {
  const ok = (l: number) => meetsSlo(steadyState(perf, t, tp, clockMhz, l, chunk), t);
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
  const chunk = opts.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
  const cells: ProfileCell[] = [];
  const maxLoad: MaxLoadEntry[] = [];
  const loads: Partial<Record<RequestType, number[]>> = {};
  for (const t of types) {
    const ml = new Map<string, number>();
    let best = 0;
    for (const tp of tps) for (const f of clocks) {
      const m = maxFeasibleLoad(perf, t, tp, f, chunk);
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
      const s = steadyState(perf, t, tp, f, l, chunk);
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
      generatedBy: 'dynamollm src/model generateProfile (steady-state fixed point, profiles/README.md)',
      calibration: opts.calibration,
      date: opts.date ?? '1970-01-01',
      notes: opts.notes,
    },
    tpDegrees: tps,
    clocksMhz: clocks,
    requestTypes: types.map((t) => ({ ...t })),
    loads,
    cells,
    maxLoad,
    idlePowerW,
  };
}

export { REQUEST_TYPES };
