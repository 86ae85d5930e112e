/**
 * Fitting the model's free parameters to public data, and measuring its error on data the fit did not see
 * (pure). Every public measurement becomes an observation (`Obs`): a measured number and a prediction from a
 * parameter set. A fit is a deterministic coordinate search, from fixed start values, of the mean over groups
 * (workload x quantity) of the MAPE. Cross-validation refits from the same start values without one model
 * (leave-one-model-out) or without one workload (leave-one-workload-out) and predicts the left-out points.
 *
 * Parameters (params.ts) are per GPU family (hardware: Hopper, Ampere) and per engine generation (software:
 * 'vllm-2023' as SplitwiseSim profiled it; 'vllm-2024' as Argonne ran it (fixed batches, in = out);
 * 'vllm-2024-offline' as ML.ENERGY v2 ran it (saturated offline batches, no chunked prefill: decode steps with
 * prefill-only steps between them, offlineSteadyState); 'vllm', the 2025
 * engine of ML.ENERGY v3 with CUDA graphs and chunked prefill, the default, seen in two workloads (lm-arena-chat
 * and gpqa) so that each one's leave-one-workload-out fold learns the engine from the other); never per
 * model. The clock shape (memClockBeta, the V/f curve, idleClockExp) is not identifiable from max-clock data and is
 * carried in the start values (set from the DynamoLLM prototype's shapes vs clock and the paper, see provenance).
 */
import type { ArgonneLatencyPoint, ArgonnePowerPoint, CalibrationData, MlEnergyPoint, SplitwisePoint, VidurPoint } from './calib-data.ts';
import { getGpuSpec, getModelSpec } from './catalog.ts';
import type { EngineParams, FamilyParams, ModelParams } from './params.ts';
import { perfModelOf, stepBreakdown } from './perf.ts';
import type { GpuSpec, ModelSpec, StepBatch } from './types.ts';

/**
 * ML.ENERGY reports no prompt lengths; we assume these mean prompts (tokens): v3 lm-arena-chat 512; v2 chat 210
 * (ShareGPT first turns, which ML.ENERGY's leaderboard-v2 filtered to <= 800 tokens: ~160 tokens on average as
 * the vLLM paper reports ShareGPT inputs, plus its ~35-token system prompt and the chat template); code 150
 * (short completion prompts: the 40 GB A100 runs of StarCoder2-15B hold ~250 sequences beside 32 GB of weights,
 * which leaves room for ~240 tokens of context per sequence, prompt and output together); v3 gpqa 300 (a GPQA
 * question with its four choices and the instruction; its ~7000-token reasoning outputs make the mean context
 * ~3800 tokens, so the prompt barely matters). Assumptions, not fitted.
 */
export const MLENERGY_ASSUMED_PROMPT = 512;
export const MLENERGY_V2_ASSUMED_PROMPT_CHAT = 210;
export const MLENERGY_ASSUMED_PROMPT_CODE = 150;
export const MLENERGY_ASSUMED_PROMPT_GPQA = 300;

export interface Pair {
  label: string;
  measured: number;
  predicted: number;
}

export function mape(pairs: Pair[]): number {
  if (pairs.length === 0) return 0;
  return (100 * pairs.reduce((s, p) => s + Math.abs(p.predicted - p.measured) / Math.abs(p.measured), 0)) / pairs.length;
}

export interface ParamSet {
  engines: Record<string, EngineParams>;
  families: Record<string, FamilyParams>;
}

export type Quantity = 'ttft' | 'tbt' | 'power' | 'jpt' | 'latency' | 'kernel';

/** One public measurement and how the model predicts it. */
export interface Obs {
  source: string; // data set
  workload: string; // left out together in leave-one-workload-out
  model: string; // catalog id (Vidur: the profiled model's layer shapes)
  gpu: string;
  family: string;
  engine: string | null; // null: kernel-level data (no engine)
  quantity: Quantity;
  label: string;
  measured: number;
  predict(p: ParamSet): number;
}

function mp(p: ParamSet, family: string, engine: string): ModelParams {
  return { family: p.families[family]!, engine: p.engines[engine]! };
}

const decodeBatch = (b: number, ctx: number): StepBatch => ({ prefillTokens: 0, decodeSeqs: b, decodeContextTokens: b * ctx });

/** The average step of a steady chunked-prefill engine: the decodes plus the prompt tokens arriving per step (B*I/O). */
export function averageStep(batch: number, prompt: number, output: number): StepBatch {
  const pre = (batch * prompt) / output;
  return { prefillTokens: pre, prefillSeqs: Math.max(1, batch / output), decodeSeqs: batch, decodeContextTokens: batch * (prompt + output / 2) };
}

/**
 * The steady state of a 2024 vLLM (no chunked prefill) running `batch` sequences offline: a prompt waiting when
 * a sequence finishes is admitted by a prefill-only step before the next decode step. Per decode step, batch/O
 * sequences finish on average, so a prefill step follows with probability 1 - exp(-batch/O) and carries the
 * prompts of the sequences that finished (batch*I/O tokens per decode step on average). Returns the time per
 * decode step (the gap between two tokens of a running sequence: the decode step and the prefill steps between
 * decodes) and the time-weighted power per GPU.
 */
export function offlineSteadyState(m: ModelSpec, g: GpuSpec, p: ModelParams, batch: number, prompt: number, output: number, tp: number, clockMhz: number): { totalMs: number; powerW: number } {
  const dec = stepBreakdown(m, g, p, decodeBatch(batch, prompt + output / 2), tp, clockMhz);
  const nPre = 1 - Math.exp(-batch / output);
  const perPre = (batch * prompt) / output / nPre;
  const seqs = perPre / prompt;
  const pre = stepBreakdown(m, g, p, { prefillTokens: perPre, prefillSeqs: Math.max(1, seqs), decodeSeqs: 0, decodeContextTokens: 0 }, tp, clockMhz);
  const totalMs = dec.totalMs + nPre * pre.totalMs;
  return { totalMs, powerW: (dec.powerW * dec.totalMs + nPre * pre.powerW * pre.totalMs) / totalMs };
}

function kvFits(m: ModelSpec, g: GpuSpec, tp: number, tokens: number): boolean {
  return tokens <= perfModelOf(m, g, { engine: START_ENGINE_PLACEHOLDER, family: START_FAMILY_PLACEHOLDER }).kvCapacityTokens(tp);
}
// kvCapacityTokens depends on memory sizes only; any parameters do
const START_ENGINE_PLACEHOLDER: EngineParams = { cpuOverheadMs: 0, perSeqOverheadMs: 0, perLayerUs: 0, kernelEff: 1, allReduceLatencyUs: { '2': 1 }, commEff: 1 };
const START_FAMILY_PLACEHOLDER: FamilyParams = { memEff: 1, computeEff: 1, memClockBeta: 0, loadedIdleExtraW: 0, computeW: 0, memoryW: 0, otherW: 0, activeStaticW: 0, vfKneeMhz: 1000, vMinFrac: 1, idleClockExp: 1 };

function splitwiseObs(pts: SplitwisePoint[]): Obs[] {
  const m = getModelSpec('llama2-70b');
  const out: Obs[] = [];
  for (const p of pts) {
    const g = getGpuSpec(p.gpu);
    if (!kvFits(m, g, p.tp, p.batch * (p.prompt + p.outTokens))) continue;
    const base = { source: 'SplitwiseSim', workload: 'splitwise', model: 'llama2-70b', gpu: p.gpu, family: g.family, engine: 'vllm-2023' };
    const label = `llama2-70b ${p.gpu} tp${p.tp} prompt=${p.prompt} bs=${p.batch} out=${p.outTokens}`;
    const pre: StepBatch = { prefillTokens: p.prompt * p.batch, prefillSeqs: p.batch, decodeSeqs: 0, decodeContextTokens: 0 };
    const dec = decodeBatch(p.batch, p.prompt + p.outTokens / 2);
    out.push({ ...base, quantity: 'ttft', label, measured: p.ttftMs, predict: (q) => stepBreakdown(m, g, mp(q, g.family, 'vllm-2023'), pre, p.tp, g.maxClockMhz).totalMs });
    out.push({ ...base, quantity: 'tbt', label, measured: p.tbtMs, predict: (q) => stepBreakdown(m, g, mp(q, g.family, 'vllm-2023'), dec, p.tp, g.maxClockMhz).totalMs });
  }
  return out;
}

function mlEnergyObs(pts: MlEnergyPoint[]): Obs[] {
  const out: Obs[] = [];
  for (const p of pts) {
    const m = getModelSpec(p.modelId), g = getGpuSpec(p.gpu);
    const engine = p.version === 'v3' ? 'vllm' : 'vllm-2024-offline';
    const base = { source: `ML.ENERGY ${p.version}`, workload: p.workload, model: p.modelId, gpu: p.gpu, family: g.family, engine };
    const label = `${p.source} ${p.gpu} tp${p.tp} bs=${p.batch.toFixed(1)}`;
    const prompt = p.workload.endsWith('code') ? MLENERGY_ASSUMED_PROMPT_CODE : p.workload.endsWith('gpqa') ? MLENERGY_ASSUMED_PROMPT_GPQA : p.version === 'v2' ? MLENERGY_V2_ASSUMED_PROMPT_CHAT : MLENERGY_ASSUMED_PROMPT;
    const dec = decodeBatch(p.batch, prompt + p.avgOutput / 2);
    const avg = averageStep(p.batch, prompt, p.avgOutput);
    const f = g.maxClockMhz;
    // v3 (chunked prefill): the median inter-token latency is a decode step; power and energy are the average
    // step's, prompts mixed in. v2 (no chunked prefill): decode steps with prefill-only steps between them.
    const steady = (q: ParamSet): { itl: number; avg: { totalMs: number; powerW: number } } => {
      const params = mp(q, g.family, engine);
      if (p.version === 'v3') return { itl: stepBreakdown(m, g, params, dec, p.tp, f).totalMs, avg: stepBreakdown(m, g, params, avg, p.tp, f) };
      const s = offlineSteadyState(m, g, params, p.batch, prompt, p.avgOutput, p.tp, f);
      return { itl: s.totalMs, avg: s };
    };
    out.push({ ...base, quantity: 'tbt', label, measured: p.itlMs, predict: (q) => steady(q).itl });
    out.push({ ...base, quantity: 'power', label, measured: p.powerPerGpuW, predict: (q) => steady(q).avg.powerW });
    out.push({
      ...base, quantity: 'jpt', label, measured: p.energyPerTokenJ, predict: (q) => {
        const s = steady(q).avg;
        return (s.powerW * p.tp * s.totalMs) / 1000 / p.batch;
      },
    });
  }
  return out;
}

function argonnePowerObs(pts: ArgonnePowerPoint[]): Obs[] {
  const out: Obs[] = [];
  for (const p of pts) {
    const m = getModelSpec(p.modelId), g = getGpuSpec(p.gpu);
    if (!kvFits(m, g, 1, p.batch * 2 * p.inOut)) continue;
    // one batch: a prefill of batch x inOut tokens, then inOut decode steps; time-weighted power
    const pre: StepBatch = { prefillTokens: p.batch * p.inOut, prefillSeqs: p.batch, decodeSeqs: 0, decodeContextTokens: 0 };
    const dec = decodeBatch(p.batch, 1.5 * p.inOut);
    out.push({
      source: 'Argonne', workload: 'argonne', model: p.modelId, gpu: p.gpu, family: g.family, engine: 'vllm-2024', quantity: 'power',
      label: `Argonne ${p.source} ${p.gpu} bs=${p.batch} in=out=${p.inOut}`, measured: p.powerPerGpuW,
      predict: (q) => {
        const a = stepBreakdown(m, g, mp(q, g.family, 'vllm-2024'), pre, 1, g.maxClockMhz), b = stepBreakdown(m, g, mp(q, g.family, 'vllm-2024'), dec, 1, g.maxClockMhz);
        const td = b.totalMs * p.inOut;
        return (a.powerW * a.totalMs + b.powerW * td) / (a.totalMs + td);
      },
    });
  }
  return out;
}

function argonneLatencyObs(pts: ArgonneLatencyPoint[]): Obs[] {
  const out: Obs[] = [];
  for (const p of pts) {
    const m = getModelSpec(p.modelId), g = getGpuSpec(p.gpu);
    if (!kvFits(m, g, p.tp, p.batch * (p.input + p.output))) continue;
    const pre: StepBatch = { prefillTokens: p.batch * p.input, prefillSeqs: p.batch, decodeSeqs: 0, decodeContextTokens: 0 };
    const dec = decodeBatch(p.batch, p.input + p.output / 2);
    const base = { source: 'Argonne', workload: 'argonne', model: p.modelId, gpu: p.gpu, family: g.family, engine: 'vllm-2024' };
    const label = `Argonne ${p.source} ${p.gpu} tp${p.tp} bs=${p.batch} in=${p.input} out=${p.output}`;
    if (p.kind === 'ttft') {
      out.push({ ...base, quantity: 'ttft', label, measured: p.latencyS * 1000, predict: (q) => stepBreakdown(m, g, mp(q, g.family, 'vllm-2024'), pre, p.tp, g.maxClockMhz).totalMs });
    } else {
      out.push({
        ...base, quantity: 'latency', label, measured: p.latencyS * 1000,
        predict: (q) => stepBreakdown(m, g, mp(q, g.family, 'vllm-2024'), pre, p.tp, g.maxClockMhz).totalMs + p.output * stepBreakdown(m, g, mp(q, g.family, 'vllm-2024'), dec, p.tp, g.maxClockMhz).totalMs,
      });
    }
  }
  return out;
}

const VIDUR_TOKENS = new Set([1, 8, 32, 128, 512, 1024, 2048, 4096]);

/** Vidur: one layer's linear projections on one GPU at TP t; a roofline at the family's efficiencies (no engine). */
function vidurObs(pts: VidurPoint[]): Obs[] {
  const out: Obs[] = [];
  for (const p of pts) {
    if (!VIDUR_TOKENS.has(p.tokens)) continue;
    const g = getGpuSpec(p.gpu);
    const hd = p.hidden / p.heads;
    const weights = (p.hidden * (p.heads + 2 * p.kvHeads) * hd + p.heads * hd * p.hidden + 3 * p.hidden * p.ffn) / p.tp;
    const flops = 2 * p.tokens * weights;
    const act = p.tokens * (4 * p.hidden + ((p.heads + 2 * p.kvHeads) * hd + p.heads * hd + 3 * p.ffn) / p.tp);
    const bytes = 2 * (weights + act);
    const model = p.source === 'Llama-2-70b' ? 'llama2-70b' : 'llama2-7b';
    out.push({
      source: 'Vidur', workload: 'vidur-kernels', model, gpu: p.gpu, family: g.family, engine: null, quantity: 'kernel',
      label: `Vidur ${p.source} ${p.gpu} tp${p.tp} tokens=${p.tokens}`, measured: p.linearMs,
      predict: (q) => {
        const fam = q.families[g.family]!;
        const c = (flops / (g.peakBf16Tflops * 1e12 * fam.computeEff)) * 1e3, mm = (bytes / (g.hbmGBps * 1e9 * fam.memEff)) * 1e3;
        return Math.cbrt(c * c * c + mm * mm * mm);
      },
    });
  }
  return out;
}

export function buildObservations(data: CalibrationData): Obs[] {
  return [...splitwiseObs(data.splitwise), ...mlEnergyObs(data.mlEnergy), ...argonnePowerObs(data.argonne), ...argonneLatencyObs(data.argonneLatency), ...vidurObs(data.vidur)];
}

/** A parameter the search may move, with bounds and the family or engine whose observations it affects. */
interface Knob {
  target: { family?: string; engine?: string };
  get(p: ParamSet): number;
  set(p: ParamSet, v: number): void;
  lo: number;
  hi: number;
}

const FAMILY_KNOBS: [keyof FamilyParams, number, number][] = [
  ['memEff', 0.3, 0.98], ['computeEff', 0.2, 0.95], ['loadedIdleExtraW', 5, 250], ['computeW', 10, 900], ['memoryW', 10, 900], ['otherW', 1, 600], ['activeStaticW', 1, 500],
];
const ENGINE_KNOBS: [keyof EngineParams, number, number][] = [
  ['cpuOverheadMs', 0.01, 50], ['perSeqOverheadMs', 0.0005, 2], ['perLayerUs', 0.1, 300], ['kernelEff', 0.3, 1.2],
];

function knobsFor(obs: Obs[]): Knob[] {
  const fams = new Set(obs.map((o) => o.family));
  const engines = new Set(obs.map((o) => o.engine).filter((e): e is string => e !== null));
  const knobs: Knob[] = [];
  for (const f of fams) {
    for (const [k, lo, hi] of FAMILY_KNOBS) knobs.push({ target: { family: f }, get: (p) => p.families[f]![k], set: (p, v) => (p.families[f]![k] = v), lo, hi });
  }
  for (const e of engines) {
    for (const [k, lo, hi] of ENGINE_KNOBS) knobs.push({ target: { engine: e }, get: (p) => p.engines[e]![k] as number, set: (p, v) => ((p.engines[e]![k] as number) = v), lo, hi });
    const tps = new Set<string>();
    for (const o of obs) if (o.engine === e) { const m = /tp(\d+)/.exec(o.label); if (m && m[1] !== '1') tps.add(m[1]!); }
    for (const t of tps) knobs.push({ target: { engine: e }, get: (p) => p.engines[e]!.allReduceLatencyUs[t] ?? 20, set: (p, v) => (p.engines[e]!.allReduceLatencyUs[t] = v), lo: 1, hi: 400 });
  }
  return knobs;
}

/** Loss: the mean over groups (workload x quantity) of each group's MAPE (%), so every data set weighs the same. */
function groupIndex(obs: Obs[]): number[] {
  const keys = new Map<string, number>();
  return obs.map((o) => {
    const k = `${o.workload}|${o.quantity}`;
    if (!keys.has(k)) keys.set(k, keys.size);
    return keys.get(k)!;
  });
}

/**
 * Coordinate (pattern) search in log-parameter space: multiplicative steps per knob. Deterministic.
 * Only the observations a knob touches are re-predicted when it moves.
 */
export function fit(obs: Obs[], start: ParamSet, iters = 30): { params: ParamSet; loss: number } {
  const gi = groupIndex(obs);
  const nG = Math.max(...gi, -1) + 1;
  const counts = new Array<number>(nG).fill(0);
  for (const g of gi) counts[g]!++;
  const err = (o: Obs, v: number) => (Number.isFinite(v) ? Math.min(5, Math.abs(v - o.measured) / o.measured) : 5);
  let best = structuredClone(start);
  const cur = obs.map((o) => err(o, o.predict(best)));
  const lossOf = (e: number[]) => {
    const s = new Array<number>(nG).fill(0);
    for (let i = 0; i < e.length; i++) s[gi[i]!]! += e[i]!;
    let t = 0;
    for (let g = 0; g < nG; g++) t += s[g]! / counts[g]!;
    return (100 * t) / Math.max(1, nG);
  };
  let bestLoss = lossOf(cur);
  const knobs = knobsFor(obs);
  const touched = knobs.map((k) => obs.map((o, i) => ((k.target.family && o.family === k.target.family) || (k.target.engine && o.engine === k.target.engine) ? i : -1)).filter((i) => i >= 0));
  // pattern search with one step per knob: a knob's step grows after a move and halves after a failed try
  const steps = knobs.map(() => 0.4);
  for (let it = 0; it < iters && steps.some((st) => st > 0.004); it++) {
    knobs.forEach((k, ki) => {
      const step = steps[ki]!;
      if (step <= 0.004) return;
      let moved = false;
      for (const dir of [1 + step, 1 / (1 + step)]) {
        const cand = structuredClone(best);
        const v = Math.min(k.hi, Math.max(k.lo, k.get(best) * dir));
        if (v === k.get(best)) continue;
        k.set(cand, v);
        const e = cur.slice();
        for (const i of touched[ki]!) e[i] = err(obs[i]!, obs[i]!.predict(cand));
        const l = lossOf(e);
        if (l < bestLoss - 1e-9) {
          best = cand;
          bestLoss = l;
          for (const i of touched[ki]!) cur[i] = e[i]!;
          moved = true;
          break;
        }
      }
      steps[ki] = moved ? Math.min(0.5, step * 1.25) : step / 2;
    });
  }
  return { params: best, loss: bestLoss };
}

export interface Prediction {
  obs: Obs;
  predicted: number;
}

/** Refit without each group (by key) and predict the left-out observations from that fit. */
export function crossValidate(obs: Obs[], start: ParamSet, keyOf: (o: Obs) => string, iters = 30): { key: string; predictions: Prediction[]; params: ParamSet }[] {
  const keys = [...new Set(obs.map(keyOf))].sort();
  return keys.map((key) => {
    const train = obs.filter((o) => keyOf(o) !== key);
    const test = obs.filter((o) => keyOf(o) === key);
    const f = fit(train, start, iters);
    return { key, predictions: test.map((o) => ({ obs: o, predicted: o.predict(f.params) })), params: f.params };
  });
}

export function pairsOf(preds: Prediction[]): Pair[] {
  return preds.map((p) => ({ label: p.obs.label, measured: p.obs.measured, predicted: p.predicted }));
}

/** Rounds of coordinate search for the committed fit and for every cross-validation fold. */
export const FIT_ITERS = 16;

/**
 * Start values of every fit (the committed one and each fold): physically plausible round numbers, not a
 * previous fit, so that a fold never sees the data it leaves out. The clock shape (memClockBeta, vfKneeMhz,
 * vMinFrac, idleClockExp) is not fitted here (see the file comment).
 */
export const START: ParamSet = {
  engines: {
    'vllm-2023': { cpuOverheadMs: 8, perSeqOverheadMs: 0.1, perLayerUs: 2, kernelEff: 0.85, allReduceLatencyUs: { '2': 5, '4': 40, '8': 100 }, commEff: 0.7 },
    'vllm-2024': { cpuOverheadMs: 3, perSeqOverheadMs: 0.1, perLayerUs: 10, kernelEff: 0.9, allReduceLatencyUs: { '2': 12, '4': 20, '8': 25 }, commEff: 0.7 },
    'vllm-2024-offline': { cpuOverheadMs: 3, perSeqOverheadMs: 0.1, perLayerUs: 10, kernelEff: 0.9, allReduceLatencyUs: { '2': 12, '4': 20, '8': 25 }, commEff: 0.7 },
    vllm: { cpuOverheadMs: 0.5, perSeqOverheadMs: 0.02, perLayerUs: 15, kernelEff: 1, allReduceLatencyUs: { '2': 12, '4': 20, '8': 25 }, commEff: 0.7 },
  },
  families: {
    hopper: { memEff: 0.8, computeEff: 0.6, memClockBeta: 1, loadedIdleExtraW: 41, computeW: 450, memoryW: 250, otherW: 150, activeStaticW: 120, vfKneeMhz: 1700, vMinFrac: 0.95, idleClockExp: 1 },
    ampere: { memEff: 0.8, computeEff: 0.6, memClockBeta: 1, loadedIdleExtraW: 20, computeW: 220, memoryW: 120, otherW: 60, activeStaticW: 50, vfKneeMhz: 1200, vMinFrac: 0.95, idleClockExp: 1 },
  },
};

/** In-sample MAPE per (workload | quantity | gpu) group. */
export function groupMapes(obs: Obs[], p: ParamSet): Record<string, { mape: number; n: number }> {
  const g = new Map<string, Pair[]>();
  for (const o of obs) {
    const k = `${o.workload}|${o.quantity}|${o.gpu}`;
    (g.get(k) ?? g.set(k, []).get(k)!).push({ label: o.label, measured: o.measured, predicted: o.predict(p) });
  }
  return Object.fromEntries([...g].map(([k, v]) => [k, { mape: Number(mape(v).toFixed(2)), n: v.length }]));
}

/**
 * Stage 2: the clock shape of a GPU family (memClockBeta, the V/f knee and floor), which max-clock data cannot
 * identify, fitted to a loss on shapes against clock (the DynamoLLM prototype characterization: TTFT and power
 * ratios vs clock at a fixed type, TP and load; paper-fit.ts prototypeLoss). Same pattern search, few rounds: each
 * loss evaluation solves ~300 steady states.
 */
export function fitClockShape(p: ParamSet, family: string, loss: (q: ParamSet) => number, iters = 5): { params: ParamSet; loss: number } {
  const knobs: [keyof FamilyParams, number, number][] = [['memClockBeta', 0.02, 1], ['vfKneeMhz', 900, 1900], ['vMinFrac', 0.5, 0.98]];
  let best = structuredClone(p);
  let bestLoss = loss(best);
  const steps = knobs.map(() => 0.3);
  for (let it = 0; it < iters; it++) {
    knobs.forEach(([k, lo, hi], ki) => {
      let moved = false;
      for (const dir of [1 + steps[ki]!, 1 / (1 + steps[ki]!)]) {
        const cand = structuredClone(best);
        const v = Math.min(hi, Math.max(lo, best.families[family]![k] * dir));
        if (v === best.families[family]![k]) continue;
        cand.families[family]![k] = v;
        const l = loss(cand);
        if (l < bestLoss - 1e-9) {
          best = cand;
          bestLoss = l;
          moved = true;
          break;
        }
      }
      steps[ki] = moved ? steps[ki]! : steps[ki]! / 2;
    });
  }
  return { params: best, loss: bestLoss };
}
