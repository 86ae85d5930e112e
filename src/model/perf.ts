/**
 * The performance and power model of one continuous-batching engine step (roofline + communication +
 * overhead), and the PerfModel built from it. Pure, allocation-light: the simulator and the profile generator
 * call it millions of times.
 *
 * Step time at TP t and SM clock f (fmax = GPU max clock), all per GPU:
 *   compute  = FLOPs / (t * peak * computeEff * kernelEff * f/fmax)           -- linear layers + attention
 *   memory   = bytes / (HBM * memEff * kernelEff) * (1 + beta*(fmax/f - 1))   -- weights + KV cache read/written
 *   kernels  = smooth max(compute, memory)                                    -- roofline, p-norm with p = 3
 *   comm     = 2*layers * (alpha(t) + 2(t-1)/t * tokens*hidden*2 B / (NVLink * commEff))
 *   overhead = cpu + perSeq*decodeSeqs (CPU side, clock independent) + perLayer*layers*fmax/f (GPU side)
 * computeEff, memEff, beta: the GPU family's (hardware); kernelEff, cpu, perSeq, perLayer, alpha: the engine's.
 * Bytes: the weights the step touches (the input-embedding table is gathered, not streamed, unless tied to the
 * LM head) and the KV cache the step reads and writes.
 *
 * Power per GPU = loadedIdle(f) + activeStaticW*u_gpu + (computeW*u_sm + memoryW*u_mem + otherW*u_o)*D(f),
 * where u_sm = compute/total and u_mem = memory/total are the step's average SM (tensor) and HBM utilisation
 * (both can be high at the roofline ridge), u_o = (comm transfer + GPU fixed)/total, u_gpu = (kernels + comm
 * transfer + GPU fixed)/total the fraction of the step the GPU executes at all (the CPU-side overhead and the
 * all-reduce latency alpha(t), a wait for the other ranks and the engine's per-step sync rather than GPU work, draw
 * loaded idle: ML.ENERGY v2's TP8 runs draw 200-260 W per H100 where busy collectives would put them near 280), and
 * D(f) = (f/fmax) * (V(f)/Vmax)^2 follows the voltage/frequency curve (voltage floor below the knee). The
 * memory-streaming term scales with it too: what streaming draws above loaded idle is mostly SM, L2 and fabric
 * activity on the core clock (the DynamoLLM prototype's measured power falls ~45% from 1980 to 800 MHz at the same
 * load, decode-heavy types included). Loaded idle = idle + loadedIdleExtraW*(f/fmax)^k.
 * Power cap: when the step would draw more than the GPU's TDP, the GPU lowers its clock until it fits (the
 * measured H200 prefill ran at ~1.5 GHz under its 700 W cap); the model finds that effective clock by bisection,
 * and the step time is the time at that clock.
 */
import { getGpuSpec, getModelSpec, headDimOf, kvBytesPerToken } from './catalog.ts';
import type { EngineParams, FamilyParams, ModelParams } from './params.ts';
import type { GpuFamily, GpuSpec, ModelSpec, PerfModel, StepBatch } from './types.ts';
import { CALIBRATION } from './calibration.ts';
import type { Profile } from './profile-types.ts';

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
  /** the GPU-side part of overheadMs (per-layer small kernels, launches; scales ~1/f). */
  gpuFixedMs: number;
  totalMs: number;
  /** the SM clock the step ran at: the asked clock, or lower where the power cap throttled it. */
  effClockMhz: number;
  /** power per GPU during the step, W (at effClockMhz, capped at TDP). */
  powerW: number;
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

/** Parameters streamed per step (billions x 1e9): all but an untied input-embedding table (gathered, not streamed). */
function streamedParams(m: ModelSpec, tokens: number): number {
  const embedding = m.tiedEmbeddings ? 0 : m.vocab * m.hiddenSize;
  if (m.experts <= 1) return m.paramsB * 1e9 - embedding;
  // MoE: the non-expert part always, each expert only if some token routes to it.
  const expertParams = m.paramsB - m.activeParamsB;
  const perExpert = expertParams / (m.experts - m.activeExperts);
  const shared = m.activeParamsB - perExpert * m.activeExperts;
  const touched = m.experts * (1 - Math.pow(1 - m.activeExperts / m.experts, Math.max(tokens, 1)));
  return (shared + perExpert * touched) * 1e9 - embedding;
}

/** Bytes moved through HBM per GPU in one step: the weights the step touches and the KV cache it reads and writes. */
export function stepBytesPerGpu(m: ModelSpec, b: StepBatch, tp: number): number {
  const tokens = b.prefillTokens + b.decodeSeqs;
  const kv = kvBytesPerToken(m) * (b.decodeContextTokens + (b.prefillContextTokens ?? 0) + b.prefillTokens);
  return (streamedParams(m, tokens) * m.dtypeBytes + kv) / tp;
}

/** V(f)/V(fmax) on the voltage/frequency curve: floor vMinFrac below vfKneeMhz, linear up to 1 at max clock. */
export function voltageFrac(gpu: GpuSpec, power: FamilyParams, clockMhz: number): number {
  const knee = Math.min(power.vfKneeMhz, gpu.maxClockMhz - 1);
  const x = Math.min(1, Math.max(0, (clockMhz - knee) / (gpu.maxClockMhz - knee)));
  return power.vMinFrac + (1 - power.vMinFrac) * x;
}

/** Dynamic (switching) power relative to max clock: (f/fmax) * (V(f)/Vmax)^2. */
export function dynamicPowerScale(gpu: GpuSpec, power: FamilyParams, clockMhz: number): number {
  const v = voltageFrac(gpu, power, clockMhz);
  return (clockMhz / gpu.maxClockMhz) * v * v;
}

/** Loaded-idle power per GPU at a clock: weights resident, engine up, nothing executing. */
export function loadedIdleW(gpu: GpuSpec, fam: FamilyParams, clockMhz: number): number {
  return gpu.idlePowerW + fam.loadedIdleExtraW * Math.pow(clockMhz / gpu.maxClockMhz, fam.idleClockExp);
}

/** The step at one clock, uncapped: times and power. */
function stepAt(m: ModelSpec, g: GpuSpec, fam: FamilyParams, e: EngineParams, b: StepBatch, tp: number, clockMhz: number, flops: number, bytes: number): StepBreakdown {
  const fr = clockMhz / g.maxClockMhz;
  const tokens = b.prefillTokens + b.decodeSeqs;
  const computeMs = (flops / (tp * g.peakBf16Tflops * 1e12 * fam.computeEff * e.kernelEff * fr)) * 1e3;
  const memoryMs = (bytes / (g.hbmGBps * 1e9 * fam.memEff * e.kernelEff)) * 1e3 * (1 + fam.memClockBeta * (1 / fr - 1));
  const kernelMs = Math.pow(Math.pow(computeMs, ROOFLINE_P) + Math.pow(memoryMs, ROOFLINE_P), 1 / ROOFLINE_P);
  let commMs = 0, commWaitMs = 0;
  if (tp > 1) {
    const arBytes = tokens * m.hiddenSize * m.dtypeBytes;
    commWaitMs = 2 * m.layers * lookupByTp(e.allReduceLatencyUs, tp, 'allReduceLatencyUs') * 1e-3;
    commMs = commWaitMs + 2 * m.layers * ((2 * (tp - 1)) / tp) * (arBytes / (g.nvlinkGBps * 1e9 * e.commEff)) * 1e3;
  }
  const gpuFixedMs = (e.perLayerUs * m.layers * 1e-3) / fr;
  const overheadMs = e.cpuOverheadMs + gpuFixedMs + e.perSeqOverheadMs * b.decodeSeqs;
  const totalMs = kernelMs + commMs + overheadMs;
  const uSm = computeMs / totalMs, uMem = memoryMs / totalMs;
  const busyCommMs = commMs - commWaitMs;
  const uO = (busyCommMs + gpuFixedMs) / totalMs, uGpu = (kernelMs + busyCommMs + gpuFixedMs) / totalMs;
  const powerW = loadedIdleW(g, fam, clockMhz) + fam.activeStaticW * uGpu + (fam.computeW * uSm + fam.memoryW * uMem + fam.otherW * uO) * dynamicPowerScale(g, fam, clockMhz);
  return { computeMs, memoryMs, kernelMs, commMs, overheadMs, gpuFixedMs, totalMs, effClockMhz: clockMhz, powerW };
}

const ZERO_STEP = { computeMs: 0, memoryMs: 0, kernelMs: 0, commMs: 0, overheadMs: 0, gpuFixedMs: 0, totalMs: 0 };

/** One step at a clock with the power cap applied (the GPU throttles its clock to stay within TDP). */
export function stepBreakdown(m: ModelSpec, g: GpuSpec, p: ModelParams, b: StepBatch, tp: number, clockMhz: number): StepBreakdown {
  const tokens = b.prefillTokens + b.decodeSeqs;
  if (tokens === 0) return { ...ZERO_STEP, effClockMhz: clockMhz, powerW: loadedIdleW(g, p.family, clockMhz) };
  const flops = stepFlops(m, b), bytes = stepBytesPerGpu(m, b, tp);
  const at = (f: number) => stepAt(m, g, p.family, p.engine, b, tp, f, flops, bytes);
  const s = at(clockMhz);
  if (s.powerW <= g.tdpW) return s;
  // throttled: the highest clock whose power fits the cap (power rises with clock); 10 halvings ~ 1 MHz.
  let lo = g.minClockMhz, hi = clockMhz;
  if (at(lo).powerW > g.tdpW) return { ...at(lo), powerW: g.tdpW };
  for (let i = 0; i < 11; i++) {
    const mid = (lo + hi) / 2;
    if (at(mid).powerW > g.tdpW) hi = mid;
    else lo = mid;
  }
  return { ...at(lo), powerW: g.tdpW };
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

/** The fitted parameters of an engine generation on a GPU family (default: the default engine, Hopper). */
export function paramsFor(engine?: string, family: GpuFamily = 'hopper'): ModelParams {
  const name = engine ?? CALIBRATION.defaultEngine;
  const e = (CALIBRATION.engines as Record<string, EngineParams>)[name];
  if (!e) throw new ModelInputError(`unknown engine calibration '${name}'; known: ${Object.keys(CALIBRATION.engines).join(', ')}`);
  const f = (CALIBRATION.families as Record<string, FamilyParams>)[family];
  if (!f) throw new ModelInputError(`no calibration for GPU family '${family}'; known: ${Object.keys(CALIBRATION.families).join(', ')}`);
  return { engine: e, family: f };
}

/**
 * The engine generation a profile was generated with: source.engine; for profiles made before it was recorded,
 * the name in source.calibration ("... engine 'vllm-2023' ..."); else the default. The emulator and the
 * simulator's step model run this one, so they agree with the profile the controllers decide with.
 */
export function engineOfProfile(p: Pick<Profile, 'source'>): string {
  if (p.source.engine) return p.source.engine;
  const m = /engine '([^']+)'/.exec(p.source.calibration ?? '');
  return m?.[1] ?? CALIBRATION.defaultEngine;
}

/** The PerfModel a profile was generated from (its model, GPU and engine generation). */
export function perfModelOfProfile(p: Pick<Profile, 'model' | 'gpu' | 'source'>): DetailedPerfModel {
  return createPerfModel(p.model, p.gpu, { engine: engineOfProfile(p) });
}

export function createPerfModel(modelId: string, gpuId: string, opts: PerfModelOptions = {}): DetailedPerfModel {
  const model = getModelSpec(modelId);
  const gpu = getGpuSpec(gpuId);
  return perfModelOf(model, gpu, opts.params ?? paramsFor(opts.engine, gpu.family));
}

/** The PerfModel of any model and GPU spec (catalog or not: the measured H200 slice has its own shapes). */
export function perfModelOf(model: ModelSpec, gpu: GpuSpec, params: ModelParams): DetailedPerfModel {
  const checkTpClock = (tp: number, clockMhz: number) => {
    if (!Number.isInteger(tp) || tp < 1 || tp > gpu.gpusPerServer) throw new ModelInputError(`tp must be an integer in [1, ${gpu.gpusPerServer}], got ${tp}`);
    if (!(clockMhz >= gpu.minClockMhz && clockMhz <= gpu.maxClockMhz)) {
      throw new ModelInputError(`clock ${clockMhz} MHz outside ${gpu.id}'s supported range [${gpu.minClockMhz}, ${gpu.maxClockMhz}]`);
    }
  };
  // one-entry memo: callers ask for a step's time and then its power (or the reverse) with the same batch
  let lastKey: number[] = [], last: StepBreakdown | undefined;
  const breakdown = (batch: StepBatch, tp: number, clockMhz: number): StepBreakdown => {
    const key = [batch.prefillTokens, batch.prefillContextTokens ?? 0, batch.prefillSeqs ?? 1, batch.decodeSeqs, batch.decodeContextTokens, tp, clockMhz];
    if (last && key.every((v, i) => v === lastKey[i])) return last;
    checkTpClock(tp, clockMhz);
    checkBatch(batch);
    last = stepBreakdown(model, gpu, params, batch, tp, clockMhz);
    lastKey = key;
    return last;
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
      return breakdown(batch, tp, clockMhz).powerW;
    },
    idlePowerW(tp, clockMhz, loaded) {
      checkTpClock(tp, clockMhz);
      return loaded ? loadedIdleW(gpu, params.family, clockMhz) : gpu.idlePowerW;
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
