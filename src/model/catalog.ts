/**
 * Catalog of public model architectures and GPU SKUs. Dimensions are the published configs
 * (Hugging Face config.json of each model; NVIDIA datasheets for GPUs). Pure data.
 */
import type { GpuSpec, ModelSpec } from './types.ts';

/** Thrown for an unknown model or GPU id; lists the known ids. */
export class UnknownIdError extends Error {
  override name = 'UnknownIdError';
  readonly retryable = false;
}

function dense(m: Omit<ModelSpec, 'experts' | 'activeExperts' | 'activeParamsB' | 'dtypeBytes'> & { headDim?: number }): ModelSpec {
  return { ...m, experts: 1, activeExperts: 1, activeParamsB: m.paramsB, dtypeBytes: 2 };
}

/** Models by id. headDim is given where heads*headDim != hiddenSize (Qwen3). */
export const MODELS: Readonly<Record<string, ModelSpec>> = Object.freeze({
  'llama2-7b': dense({ id: 'llama2-7b', name: 'meta-llama/Llama-2-7b-hf', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 32, ffnSize: 11008, vocab: 32000, paramsB: 6.74, maxContext: 4096 }),
  'llama2-13b': dense({ id: 'llama2-13b', name: 'meta-llama/Llama-2-13b-hf', layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 40, ffnSize: 13824, vocab: 32000, paramsB: 13.02, maxContext: 4096 }),
  'llama2-70b': dense({ id: 'llama2-70b', name: 'meta-llama/Llama-2-70b-hf', layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, ffnSize: 28672, vocab: 32000, paramsB: 68.98, maxContext: 4096 }),
  'llama3.1-8b': dense({ id: 'llama3.1-8b', name: 'meta-llama/Llama-3.1-8B-Instruct', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, ffnSize: 14336, vocab: 128256, paramsB: 8.03, maxContext: 131072 }),
  'llama3.1-70b': dense({ id: 'llama3.1-70b', name: 'meta-llama/Llama-3.1-70B-Instruct', layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, ffnSize: 28672, vocab: 128256, paramsB: 70.55, maxContext: 131072 }),
  'qwen3-8b': dense({ id: 'qwen3-8b', name: 'Qwen/Qwen3-8B', layers: 36, hiddenSize: 4096, heads: 32, kvHeads: 8, headDim: 128, ffnSize: 12288, vocab: 151936, paramsB: 8.19, maxContext: 40960 }),
  'qwen3-14b': dense({ id: 'qwen3-14b', name: 'Qwen/Qwen3-14B', layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 8, headDim: 128, ffnSize: 17408, vocab: 151936, paramsB: 14.77, maxContext: 40960 }),
  'qwen3-32b': dense({ id: 'qwen3-32b', name: 'Qwen/Qwen3-32B', layers: 64, hiddenSize: 5120, heads: 64, kvHeads: 8, headDim: 128, ffnSize: 25600, vocab: 151936, paramsB: 32.76, maxContext: 40960 }),
  'mixtral-8x7b': {
    id: 'mixtral-8x7b', name: 'mistralai/Mixtral-8x7B-v0.1', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, ffnSize: 14336,
    vocab: 32000, experts: 8, activeExperts: 2, paramsB: 46.7, activeParamsB: 12.9, dtypeBytes: 2, maxContext: 32768,
  },
});

/**
 * GPUs by id. Peak = dense BF16 tensor rate at max SM clock; NVLink = per-GPU, one direction.
 * Clocks: the range nvidia-smi lists as supported graphics clocks, in its step. idlePowerW: nothing loaded
 * (H100: the paper's 8 idle H100s draw 550 W -> ~69 W each; A100: SplitwiseSim's 63 W).
 */
export const GPUS: Readonly<Record<string, GpuSpec>> = Object.freeze({
  h100: { id: 'h100', name: 'NVIDIA H100 80GB HBM3 (SXM5)', peakBf16Tflops: 989, hbmGBps: 3350, memGiB: 79.6, nvlinkGBps: 450, minClockMhz: 345, maxClockMhz: 1980, clockStepMhz: 15, idlePowerW: 69, tdpW: 700, gpusPerServer: 8 },
  h200: { id: 'h200', name: 'NVIDIA H200 141GB HBM3e (SXM)', peakBf16Tflops: 989, hbmGBps: 4800, memGiB: 140.4, nvlinkGBps: 450, minClockMhz: 345, maxClockMhz: 1980, clockStepMhz: 15, idlePowerW: 75, tdpW: 700, gpusPerServer: 8 },
  'a100-80gb': { id: 'a100-80gb', name: 'NVIDIA A100 80GB (SXM4)', peakBf16Tflops: 312, hbmGBps: 2039, memGiB: 80, nvlinkGBps: 300, minClockMhz: 210, maxClockMhz: 1410, clockStepMhz: 15, idlePowerW: 63, tdpW: 400, gpusPerServer: 8 },
});

export function getModelSpec(id: string): ModelSpec {
  const m = MODELS[id];
  if (!m) throw new UnknownIdError(`unknown model '${id}'; known models: ${Object.keys(MODELS).join(', ')}`);
  return m;
}

export function getGpuSpec(id: string): GpuSpec {
  const g = GPUS[id];
  if (!g) throw new UnknownIdError(`unknown gpu '${id}'; known gpus: ${Object.keys(GPUS).join(', ')}`);
  return g;
}

/** Head dimension (hiddenSize/heads unless the model states one). */
export function headDimOf(m: ModelSpec): number {
  return m.headDim ?? m.hiddenSize / m.heads;
}

/** KV-cache bytes per token (K and V, all layers, all KV heads). */
export function kvBytesPerToken(m: ModelSpec): number {
  return 2 * m.layers * m.kvHeads * headDimOf(m) * m.dtypeBytes;
}
