/**
 * The performance and power model of one continuous-batching engine step (roofline + communication +
 * overhead), and the PerfModel built from it. Pure.
 *
 * Step time at TP t and SM clock f (fmax = GPU max clock):
 *   compute  = FLOPs / (t * peak * eff_c(t) * f/fmax)            -- prefill and big batches; slows ~1/f
 *   memory   = bytes/GPU / (HBM * eff_m) * (1 + beta*(fmax/f-1))  -- weight + KV streaming; barely clock-bound
 *   kernels  = smooth max(compute, memory)                       -- roofline, p-norm with p = 3
 *   comm     = 2*layers * (alpha(t) + 2(t-1)/t * tokens*hidden*2 B / (NVLink * eff))
 *   overhead = cpu + gpuFixed*fmax/f + perSeq*decodeSeqs
 * Power per GPU = loadedIdle(f) + activeStaticW*u_g + (computeW*u_c + memoryW*u_m + otherW*u_o) * D(f), capped at TDP,
 * where u_c, u_m, u_o are the fractions of the step spent compute-bound, memory-bound and in collectives / GPU-side
 * fixed kernels, u_g = u_c + u_m + u_o the fraction the GPU executes at all (the CPU-side overhead draws loaded
 * idle), and D(f) = (f/fmax) * (V(f)/Vmax)^2 follows the voltage/frequency curve (voltage floor below the knee).
 * With compute-bound time ~1/f this gives energy per unit of work the known U-shape in f (race-to-idle vs DVFS).
 */
import { getGpuSpec, getModelSpec, headDimOf, kvBytesPerToken } from './catalog.ts';
import type { EngineParams, ModelParams, PowerParams } from './params.ts';
import type { GpuSpec, ModelSpec, PerfModel, StepBatch } from './types.ts';
import { CALIBRATION } from './calibration.ts';

export class ModelInputError extends Error {
  override name = 'ModelInputError';
  readonly retryable = false;
}

const ROOFLINE_P = 3;
/** fraction of GPU memory the engine may use (vLLM gpu_memory_utilization default). */
const GPU_MEMORY_UTILIZATION = 0.9;
/** activation / CUDA graph / workspace reserve per GPU, GiB. */
const ACTIVATION_RESERVE_GIB = 4;

export interface StepBreakdown {
  computeMs: number;
  memoryMs: number;
  kernelMs: number;
  commMs: number;
  /** all fixed per-step time: CPU (cpuOverheadMs + per-sequence) and GPU-side (gpuFixedMs below). */
  overheadMs: number;
  /** the GPU-side part of overheadMs (small kernels, launches; scales ~1/f). */
  gpuFixedMs: number;
  totalMs: number;
}

function lookupByTp(table: Record<string, number>, tp: number, what: string): number {
  const v = table[String(tp)];
  if (v !== undefined) return v;
  // geometric interpolation between the fitted degrees for unlisted TP (e.g. 3, 6): only for completeness
  const keys = Object.keys(table).map(Number).sort((a, b) => a - b);
  if (keys.length === 0) throw new ModelInputError(`no ${what} calibration`);
  if (tp <= keys[0]!) return table[String(keys[0])]!;
  if (tp >= keys[keys.length - 1]!) return table[String(keys[keys.length - 1])]!;
  for (let i = 0; i + 1 < keys.length; i++) {
    const a = keys[i]!, b = keys[i + 1]!;
    if (tp > a && tp < b) {
      const w = Math.log(tp / a) / Math.log(b / a);
      return table[String(a)]! * (1 - w) + table[String(b)]! * w;
    }
  }
  return table[String(keys[0])]!;
}

function checkBatch(b: StepBatch): void {
  for (const [k, v] of Object.entries(b)) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new ModelInputError(`StepBatch.${k} must be a finite number >= 0, got ${v}`);
  }
}

/** FLOPs of one step (linear layers incl. LM head, plus attention). */
export function stepFlops(m: ModelSpec, b: StepBatch): number {
  const tokens = b.prefillTokens + b.decodeSeqs;
  const qDim = m.heads * headDimOf(m);
  const linear = 2 * m.activeParamsB * 1e9 * tokens;
  const n = b.prefillTokens;
  const seqs = Math.max(1, b.prefillSeqs ?? 1);
  const prefillAttn = 4 * m.layers * qDim * (n * (b.prefillContextTokens ?? 0) + (n * n) / (2 * seqs));
  const decodeAttn = 4 * m.layers * qDim * b.decodeContextTokens;
  return linear + prefillAttn + decodeAttn;
}

/** Bytes streamed from HBM per GPU in one step: the weights the step touches and the KV cache it reads. */
export function stepBytesPerGpu(m: ModelSpec, b: StepBatch, tp: number): number {
  const tokens = b.prefillTokens + b.decodeSeqs;
  let weightParams = m.paramsB * 1e9;
  if (m.experts > 1) {
    // MoE: the non-expert part always, each expert only if some token routes to it.
    const expertParams = m.paramsB - m.activeParamsB;
    const perExpert = expertParams / (m.experts - m.activeExperts);
    const shared = m.activeParamsB - perExpert * m.activeExperts;
    const touched = m.experts * (1 - Math.pow(1 - m.activeExperts / m.experts, Math.max(tokens, 1)));
    weightParams = (shared + perExpert * touched) * 1e9;
  }
  const kv = kvBytesPerToken(m) * (b.decodeContextTokens + (b.prefillContextTokens ?? 0) + b.prefillTokens);
  return (weightParams * m.dtypeBytes + kv) / tp;
}

export function stepBreakdown(m: ModelSpec, g: GpuSpec, e: EngineParams, b: StepBatch, tp: number, clockMhz: number): StepBreakdown {
  const fr = clockMhz / g.maxClockMhz;
  const tokens = b.prefillTokens + b.decodeSeqs;
  if (tokens === 0) {
    return { computeMs: 0, memoryMs: 0, kernelMs: 0, commMs: 0, overheadMs: 0, gpuFixedMs: 0, totalMs: 0 };
  }
  const computeMs = (stepFlops(m, b) / (tp * g.peakBf16Tflops * 1e12 * lookupByTp(e.computeEff, tp, 'computeEff') * fr)) * 1e3;
  const memoryMs = (stepBytesPerGpu(m, b, tp) / (g.hbmGBps * 1e9 * e.memEff)) * 1e3 * (1 + e.memClockBeta * (1 / fr - 1));
  const kernelMs = Math.pow(Math.pow(computeMs, ROOFLINE_P) + Math.pow(memoryMs, ROOFLINE_P), 1 / ROOFLINE_P);
  let commMs = 0;
  if (tp > 1) {
    const bytes = tokens * m.hiddenSize * m.dtypeBytes;
    const perAr = lookupByTp(e.allReduceLatencyUs, tp, 'allReduceLatencyUs') * 1e-3 + ((2 * (tp - 1)) / tp) * (bytes / (g.nvlinkGBps * 1e9 * e.commEff)) * 1e3;
    commMs = 2 * m.layers * perAr;
  }
  const gpuFixedMs = e.gpuFixedMs / fr;
  const overheadMs = e.cpuOverheadMs + gpuFixedMs + e.perSeqOverheadMs * b.decodeSeqs;
  return { computeMs, memoryMs, kernelMs, commMs, overheadMs, gpuFixedMs, totalMs: kernelMs + commMs + overheadMs };
}

/** V(f)/V(fmax) on the voltage/frequency curve: floor vMinFrac below vfKneeMhz, linear up to 1 at max clock. */
export function voltageFrac(gpu: GpuSpec, power: PowerParams, clockMhz: number): number {
  const knee = Math.min(power.vfKneeMhz, gpu.maxClockMhz - 1);
  const x = Math.min(1, Math.max(0, (clockMhz - knee) / (gpu.maxClockMhz - knee)));
  return power.vMinFrac + (1 - power.vMinFrac) * x;
}

/** Dynamic (switching) power relative to max clock: (f/fmax) * (V(f)/Vmax)^2. */
export function dynamicPowerScale(gpu: GpuSpec, power: PowerParams, clockMhz: number): number {
  const v = voltageFrac(gpu, power, clockMhz);
  return (clockMhz / gpu.maxClockMhz) * v * v;
}

export interface PerfModelOptions {
  /** which fitted engine generation to use (see calibration.ts); default CALIBRATION.defaultEngine. */
  engine?: string;
  /** override all parameters (calibration fits use this). */
  params?: ModelParams;
}

export interface DetailedPerfModel extends PerfModel {
  readonly params: ModelParams;
  breakdown(batch: StepBatch, tp: number, clockMhz: number): StepBreakdown;
}

export function paramsFor(engine?: string): ModelParams {
  const name = engine ?? CALIBRATION.defaultEngine;
  const e = (CALIBRATION.engines as Record<string, EngineParams>)[name];
  if (!e) throw new ModelInputError(`unknown engine calibration '${name}'; known: ${Object.keys(CALIBRATION.engines).join(', ')}`);
  return { engine: e, power: CALIBRATION.power };
}

export function createPerfModel(modelId: string, gpuId: string, opts: PerfModelOptions = {}): DetailedPerfModel {
  const model = getModelSpec(modelId);
  const gpu = getGpuSpec(gpuId);
  const params = opts.params ?? paramsFor(opts.engine);
  const { engine, power } = params;

  const checkTpClock = (tp: number, clockMhz: number) => {
    if (!Number.isInteger(tp) || tp < 1 || tp > gpu.gpusPerServer) throw new ModelInputError(`tp must be an integer in [1, ${gpu.gpusPerServer}], got ${tp}`);
    if (!(clockMhz >= gpu.minClockMhz && clockMhz <= gpu.maxClockMhz)) {
      throw new ModelInputError(`clock ${clockMhz} MHz outside ${gpu.id}'s supported range [${gpu.minClockMhz}, ${gpu.maxClockMhz}]`);
    }
  };

  const dynScale = (clockMhz: number) => dynamicPowerScale(gpu, power, clockMhz);
  const loadedIdle = (clockMhz: number) => gpu.idlePowerW + power.loadedIdleExtraW * Math.pow(clockMhz / gpu.maxClockMhz, power.idleClockExp);

  const breakdown = (batch: StepBatch, tp: number, clockMhz: number) => {
    checkTpClock(tp, clockMhz);
    checkBatch(batch);
    return stepBreakdown(model, gpu, engine, batch, tp, clockMhz);
  };

  const weightsGiBPerGpu = (model.paramsB * 1e9 * model.dtypeBytes) / 2 ** 30;

  return {
    model,
    gpu,
    params,
    breakdown,
    stepTimeMs(batch, tp, clockMhz) {
      return breakdown(batch, tp, clockMhz).totalMs;
    },
    stepPowerW(batch, tp, clockMhz) {
      const bd = breakdown(batch, tp, clockMhz);
      const idle = loadedIdle(clockMhz);
      if (bd.totalMs === 0) return idle;
      // split kernel time between compute- and memory-bound in proportion to the two roofline terms
      const cShare = bd.computeMs / (bd.computeMs + bd.memoryMs || 1);
      const uc = (bd.kernelMs * cShare) / bd.totalMs;
      const um = (bd.kernelMs * (1 - cShare)) / bd.totalMs;
      const uo = (bd.commMs + bd.gpuFixedMs) / bd.totalMs;
      const dyn = (power.computeW * uc + power.memoryW * um + power.otherW * uo) * dynScale(clockMhz);
      return Math.min(gpu.tdpW, idle + power.activeStaticW * (uc + um + uo) + dyn);
    },
    idlePowerW(tp, clockMhz, loaded) {
      checkTpClock(tp, clockMhz);
      return loaded ? loadedIdle(clockMhz) : gpu.idlePowerW;
    },
    kvCapacityTokens(tp) {
      checkTpClock(tp, gpu.maxClockMhz);
      const free = gpu.memGiB * GPU_MEMORY_UTILIZATION - weightsGiBPerGpu / tp - ACTIVATION_RESERVE_GIB;
      if (free <= 0) return 0;
      return Math.floor((free * 2 ** 30 * tp) / kvBytesPerToken(model));
    },
    ttftMs(promptTokens, tp, clockMhz) {
      if (!(promptTokens >= 1)) throw new ModelInputError(`promptTokens must be >= 1, got ${promptTokens}`);
      return breakdown({ prefillTokens: promptTokens, decodeSeqs: 0, decodeContextTokens: 0 }, tp, clockMhz).totalMs;
    },
    supportedClocks() {
      const out: number[] = [];
      for (let f = gpu.maxClockMhz; f >= gpu.minClockMhz; f -= gpu.clockStepMhz) out.push(f);
      return out.reverse();
    },
  };
}
