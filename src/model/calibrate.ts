/**
 * Fitting the model's free parameters to public data (pure). Predictions for each data set, their error
 * (MAPE), and a derivative-free coordinate search in log-parameter space.
 *
 * - Engine 'vllm-2023' (the paper's era: SplitwiseSim's H100 Llama2-70B profile, an older vLLM-like engine
 *   with ~20-30 ms decode steps): cpu/GPU fixed overhead, per-sequence overhead, compute efficiency by TP,
 *   memory efficiency and all-reduce latency by TP, fitted to splitwise TTFT and TBT.
 * - Engine 'vllm-2025' (ML.ENERGY v3, recent vLLM, ~7 ms steps for 8B): the same parameters fitted to ML.ENERGY
 *   median ITL of H100 dense bf16 models.
 * - Power (shared by both engines): per-GPU W at full compute / memory / other activity, fitted to ML.ENERGY
 *   and Argonne H100 per-GPU power; loaded-idle extra from the paper (880 vs 550 W per 8 GPUs).
 * - Clock shape (stage 4, joint with the vllm-2023 engine and the power W): the CPU/GPU split of step overhead,
 *   memClockBeta, activeStaticW, the voltage knee and floor cannot be identified from max-clock data; they are
 *   fitted to the paper's Tables I-II (paper-fit.ts) and the DynamoLLM prototype's shapes vs clock, with every
 *   public-data MAPE kept under MAPE_GUARD. idleClockExp stays hand-set (1).
 */
import type { ArgonnePowerPoint, CalibrationData, MlEnergyPoint, SplitwisePoint } from './calib-data.ts';
import type { EngineParams, ModelParams, PowerParams } from './params.ts';
import { createPerfModel } from './perf.ts';
import { paperLoss, prototypeLoss } from './paper-fit.ts';

/** ML.ENERGY does not report prompt lengths; we assume this mean prompt (tokens) for LM-Arena chat. */
export const MLENERGY_ASSUMED_PROMPT = 512;

export interface Pair {
  label: string;
  measured: number;
  predicted: number;
}

export function mape(pairs: Pair[]): number {
  if (pairs.length === 0) return 0;
  return (100 * pairs.reduce((s, p) => s + Math.abs(p.predicted - p.measured) / Math.abs(p.measured), 0)) / pairs.length;
}

/** Splitwise rows whose batch (prompt + output) KV cache does not fit the instance are not valid points. */
export function splitwiseUsable(pts: SplitwisePoint[], params: ModelParams): SplitwisePoint[] {
  const pm = createPerfModel('llama2-70b', 'h100', { params });
  return pts.filter((p) => p.batch * (p.prompt + p.outTokens) <= pm.kvCapacityTokens(p.tp));
}

export function splitwisePairs(pts: SplitwisePoint[], params: ModelParams): { ttft: Pair[]; tbt: Pair[] } {
  const pm = createPerfModel('llama2-70b', 'h100', { params });
  const ttft: Pair[] = [], tbt: Pair[] = [];
  for (const p of pts) {
    const label = `llama2-70b tp${p.tp} prompt=${p.prompt} bs=${p.batch} out=${p.outTokens}`;
    const pre = pm.stepTimeMs({ prefillTokens: p.prompt * p.batch, prefillSeqs: p.batch, decodeSeqs: 0, decodeContextTokens: 0 }, p.tp, 1980);
    const dec = pm.stepTimeMs({ prefillTokens: 0, decodeSeqs: p.batch, decodeContextTokens: p.batch * (p.prompt + p.outTokens / 2) }, p.tp, 1980);
    ttft.push({ label, measured: p.ttftMs, predicted: pre });
    tbt.push({ label, measured: p.tbtMs, predicted: dec });
  }
  return { ttft, tbt };
}

function mlBatch(p: MlEnergyPoint) {
  return { prefillTokens: 0, decodeSeqs: p.batch, decodeContextTokens: p.batch * (MLENERGY_ASSUMED_PROMPT + p.avgOutput / 2) };
}

export function mlEnergyUsable(pts: MlEnergyPoint[], params: ModelParams): MlEnergyPoint[] {
  return pts.filter((p) => {
    const pm = createPerfModel(p.modelId, 'h100', { params });
    return p.batch * (MLENERGY_ASSUMED_PROMPT + p.avgOutput) <= pm.kvCapacityTokens(p.tp);
  });
}

export function mlEnergyTbtPairs(pts: MlEnergyPoint[], params: ModelParams): Pair[] {
  return pts.map((p) => {
    const pm = createPerfModel(p.modelId, 'h100', { params });
    return { label: `${p.source} tp${p.tp} bs=${p.batch.toFixed(1)}`, measured: p.medianItlMs, predicted: pm.stepTimeMs(mlBatch(p), p.tp, 1980) };
  });
}

export function powerPairs(ml: MlEnergyPoint[], arg: ArgonnePowerPoint[], params: ModelParams): Pair[] {
  const out: Pair[] = [];
  for (const p of ml) {
    const pm = createPerfModel(p.modelId, 'h100', { params });
    out.push({ label: `ML.ENERGY ${p.source} tp${p.tp} bs=${p.batch.toFixed(1)}`, measured: p.powerPerGpuW, predicted: pm.stepPowerW(mlBatch(p), p.tp, 1980) });
  }
  for (const p of arg) {
    const pm = createPerfModel(p.modelId, 'h100', { params });
    // one batch: a prefill of batch x inOut tokens, then inOut decode steps; time-weighted power
    const pre = { prefillTokens: p.batch * p.inOut, prefillSeqs: p.batch, decodeSeqs: 0, decodeContextTokens: 0 };
    const dec = { prefillTokens: 0, decodeSeqs: p.batch, decodeContextTokens: p.batch * 1.5 * p.inOut };
    const tp = pm.stepTimeMs(pre, 1, 1980), td = pm.stepTimeMs(dec, 1, 1980) * p.inOut;
    const w = (pm.stepPowerW(pre, 1, 1980) * tp + pm.stepPowerW(dec, 1, 1980) * td) / (tp + td);
    out.push({ label: `Argonne ${p.source} vLLM bs=${p.batch}`, measured: p.powerPerGpuW, predicted: w });
  }
  return out;
}

/** A parameter the search may move: read/write into a params object, with bounds. */
interface Knob {
  get(p: ModelParams): number;
  set(p: ModelParams, v: number): void;
  lo: number;
  hi: number;
}

function engineKnob(k: keyof EngineParams, lo: number, hi: number): Knob {
  return { get: (p) => p.engine[k] as number, set: (p, v) => ((p.engine[k] as number) = v), lo, hi };
}
function tableKnob(k: 'computeEff' | 'allReduceLatencyUs', tp: string, lo: number, hi: number): Knob {
  return { get: (p) => p.engine[k][tp]!, set: (p, v) => (p.engine[k][tp] = v), lo, hi };
}
function powerKnob(k: keyof PowerParams, lo: number, hi: number): Knob {
  return { get: (p) => p.power[k], set: (p, v) => (p.power[k] = v), lo, hi };
}

function clone(p: ModelParams): ModelParams {
  return structuredClone(p);
}

/** Coordinate search: multiplicative steps, halving when no knob improves. Deterministic. */
export function coordinateSearch(start: ModelParams, knobs: Knob[], loss: (p: ModelParams) => number, iters = 40): { params: ModelParams; loss: number } {
  let best = clone(start);
  let bestLoss = loss(best);
  let step = 0.5;
  for (let it = 0; it < iters && step > 0.005; it++) {
    let improved = false;
    for (const k of knobs) {
      for (const dir of [1 + step, 1 / (1 + step)]) {
        const cand = clone(best);
        const v = Math.min(k.hi, Math.max(k.lo, k.get(best) * dir));
        k.set(cand, v);
        const l = loss(cand);
        if (l < bestLoss - 1e-9) {
          best = cand;
          bestLoss = l;
          improved = true;
        }
      }
    }
    if (!improved) step /= 2;
  }
  return { params: best, loss: bestLoss };
}

const ENGINE_KNOBS = (tps: string[], artps: string[]): Knob[] => [
  engineKnob('cpuOverheadMs', 0.05, 50),
  engineKnob('gpuFixedMs', 0.01, 20),
  engineKnob('perSeqOverheadMs', 0.0005, 2),
  engineKnob('memEff', 0.3, 0.95),
  ...tps.map((t) => tableKnob('computeEff', t, 0.05, 0.85)),
  ...artps.map((t) => tableKnob('allReduceLatencyUs', t, 1, 300)),
];

export interface FitResult {
  params: { engines: Record<string, EngineParams>; power: PowerParams };
  losses: Record<string, number>;
}

/** Fit both engines and the power model. */
export function fitAll(data: CalibrationData, start: { engines: Record<string, EngineParams>; power: PowerParams }, opts: { jointIters?: number } = {}): FitResult {
  // 1. vllm-2023 on splitwise TTFT + TBT
  const p23 = { engine: structuredClone(start.engines['vllm-2023']!), power: start.power };
  const sw = splitwiseUsable(data.splitwise, p23);
  const lossSw = (p: ModelParams) => {
    const { ttft, tbt } = splitwisePairs(sw, p);
    return mape(ttft) + mape(tbt);
  };
  const f23 = coordinateSearch(p23, ENGINE_KNOBS(['2', '4', '8'], ['2', '4', '8']), lossSw);
  // 2. vllm-2025 on ML.ENERGY median ITL
  const p25 = { engine: structuredClone(start.engines['vllm-2025']!), power: start.power };
  const ml = mlEnergyUsable(data.mlEnergy, p25);
  const lossMl = (p: ModelParams) => mape(mlEnergyTbtPairs(ml, p));
  const f25 = coordinateSearch(p25, ENGINE_KNOBS(['1', '2', '4'], ['2', '4']), lossMl);
  // 3. power with the vllm-2025 engine (the power data come from recent vLLM runs)
  const pw = { engine: f25.params.engine, power: structuredClone(start.power) };
  const lossPw = (p: ModelParams) => mape(powerPairs(ml, data.argonne, p));
  const fpw = coordinateSearch(pw, [powerKnob('computeW', 50, 900), powerKnob('memoryW', 50, 900), powerKnob('otherW', 1, 600)], lossPw);
  // 4. clock shape, jointly: the vllm-2023 engine (the paper's era) and the power model, on the public max-clock
  //    data (kept within MAPE_GUARD) plus the paper's Tables I-II (energy ratios across clocks/TP normalised per
  //    row, the '-' pattern, the row optimum) and the prototype's TTFT and power shapes vs clock. Max-clock data
  //    cannot tell CPU-side from GPU-side step overhead, nor clock-independent active power from dynamic power,
  //    nor locate the voltage knee: the clock shapes can.
  const joint = { engine: f23.params.engine, power: fpw.params.power };
  const proto = data.prototype;
  const parts = (p: ModelParams) => {
    const { ttft, tbt } = splitwisePairs(sw, p);
    const m = { ttft: mape(ttft), tbt: mape(tbt), power: mape(powerPairs(ml, data.argonne, { engine: f25.params.engine, power: p.power })) };
    const paper = paperLoss(p);
    const pr = proto ? prototypeLoss(p, proto) : undefined;
    return { m, paper, pr };
  };
  const lossJoint = (p: ModelParams) => {
    const { m, paper, pr } = parts(p);
    const guard = Object.values(m).reduce((s, v) => s + Math.max(0, v - MAPE_GUARD) * 0.2, 0);
    return (m.ttft + m.tbt + m.power) / 100 + guard + PAPER_WEIGHT * paper.loss + (pr ? PROTOTYPE_WEIGHT * pr.loss : 0);
  };
  const fj = coordinateSearch(joint, [
    ...ENGINE_KNOBS(['2', '4', '8'], ['2', '4', '8']),
    engineKnob('memClockBeta', 0.02, 1),
    powerKnob('computeW', 50, 900), powerKnob('memoryW', 20, 900), powerKnob('otherW', 1, 600),
    powerKnob('activeStaticW', 1, 450), powerKnob('vfKneeMhz', 900, 1700), powerKnob('vMinFrac', 0.55, 0.95),
  ], lossJoint, opts.jointIters ?? 30);
  const fin = parts(fj.params);
  return {
    params: { engines: { 'vllm-2023': fj.params.engine, 'vllm-2025': f25.params.engine }, power: fj.params.power },
    losses: {
      splitwiseTtftPlusTbtMape: fin.m.ttft + fin.m.tbt, mlEnergyTbtMape: f25.loss, powerMape: fin.m.power,
      paperShape: fin.paper.shape, paperFeasibilityMiss: fin.paper.feasibility, paperArgminMatches: fin.paper.argminMatches,
      prototypeTtftShape: fin.pr?.ttft ?? NaN, prototypePowerShape: fin.pr?.power ?? NaN, jointLoss: fj.loss,
    },
  };
}

/** each public-data MAPE is kept below this (%) during the joint clock-shape fit (issue 3 target: 15%). */
export const MAPE_GUARD = 13;
/** weight of the paper-table loss in the joint fit (its scale: ~0.1-1). */
export const PAPER_WEIGHT = 3;
/** weight of the prototype shape loss in the joint fit. */
export const PROTOTYPE_WEIGHT = 0.5;
