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

function dense(m: Omit<ModelSpec, 'experts' | 'activeExperts' | 'activeParamsB' | 'dtypeBytes'>): ModelSpec {
  return { ...m, experts: 1, activeExperts: 1, activeParamsB: m.paramsB, dtypeBytes: 2 };
}

/**
 * Models by id. headDim is given where heads*headDim != hiddenSize (Qwen3, Gemma, Mistral-Nemo). paramsB: the
 * language model's parameters (Gemma 3: without its vision tower). Gemma's local (sliding-window) attention
 * layers are modelled as global ones: the contexts calibrated here are within their 4096-token window.
 */
export const MODELS: Readonly<Record<string, ModelSpec>> = Object.freeze({
  'llama2-7b': dense({ id: 'llama2-7b', name: 'meta-llama/Llama-2-7b-hf', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 32, ffnSize: 11008, vocab: 32000, paramsB: 6.74, maxContext: 4096 }),
  'llama2-13b': dense({ id: 'llama2-13b', name: 'meta-llama/Llama-2-13b-hf', layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 40, ffnSize: 13824, vocab: 32000, paramsB: 13.02, maxContext: 4096 }),
  'llama2-70b': dense({ id: 'llama2-70b', name: 'meta-llama/Llama-2-70b-hf', layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, ffnSize: 28672, vocab: 32000, paramsB: 68.98, maxContext: 4096 }),
  'llama3.1-8b': dense({ id: 'llama3.1-8b', name: 'meta-llama/Llama-3.1-8B-Instruct', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, ffnSize: 14336, vocab: 128256, paramsB: 8.03, maxContext: 131072 }),
  'llama3.1-70b': dense({ id: 'llama3.1-70b', name: 'meta-llama/Llama-3.1-70B-Instruct', layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, ffnSize: 28672, vocab: 128256, paramsB: 70.55, maxContext: 131072 }),
  'qwen3-8b': dense({ id: 'qwen3-8b', name: 'Qwen/Qwen3-8B', layers: 36, hiddenSize: 4096, heads: 32, kvHeads: 8, headDim: 128, ffnSize: 12288, vocab: 151936, paramsB: 8.19, maxContext: 40960 }),
  'qwen3-14b': dense({ id: 'qwen3-14b', name: 'Qwen/Qwen3-14B', layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 8, headDim: 128, ffnSize: 17408, vocab: 151936, paramsB: 14.77, maxContext: 40960 }),
  'qwen3-32b': dense({ id: 'qwen3-32b', name: 'Qwen/Qwen3-32B', layers: 64, hiddenSize: 5120, heads: 64, kvHeads: 8, headDim: 128, ffnSize: 25600, vocab: 151936, paramsB: 32.76, maxContext: 40960 }),
  'codellama-7b': dense({ id: 'codellama-7b', name: 'codellama/CodeLlama-7b-hf', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 32, ffnSize: 11008, vocab: 32016, paramsB: 6.74, maxContext: 16384 }),
  'codellama-13b': dense({ id: 'codellama-13b', name: 'codellama/CodeLlama-13b-hf', layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 40, ffnSize: 13824, vocab: 32016, paramsB: 13.02, maxContext: 16384 }),
  'codellama-34b': dense({ id: 'codellama-34b', name: 'codellama/CodeLlama-34b-hf', layers: 48, hiddenSize: 8192, heads: 64, kvHeads: 8, ffnSize: 22016, vocab: 32000, paramsB: 33.74, maxContext: 16384 }),
  'codellama-70b': dense({ id: 'codellama-70b', name: 'codellama/CodeLlama-70b-hf', layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, ffnSize: 28672, vocab: 32016, paramsB: 68.98, maxContext: 16384 }),
  'mistral-7b': dense({ id: 'mistral-7b', name: 'mistralai/Mistral-7B-Instruct-v0.3', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, ffnSize: 14336, vocab: 32768, paramsB: 7.25, maxContext: 32768 }),
  'mistral-nemo-12b': dense({ id: 'mistral-nemo-12b', name: 'mistralai/Mistral-Nemo-Instruct-2407', layers: 40, hiddenSize: 5120, heads: 32, kvHeads: 8, headDim: 128, ffnSize: 14336, vocab: 131072, paramsB: 12.25, maxContext: 131072 }),
  'mistral-large-123b': dense({ id: 'mistral-large-123b', name: 'mistralai/Mistral-Large-Instruct-2407', layers: 88, hiddenSize: 12288, heads: 96, kvHeads: 8, ffnSize: 28672, vocab: 32768, paramsB: 122.6, maxContext: 131072 }),
  'phi3-mini': dense({ id: 'phi3-mini', name: 'microsoft/Phi-3-mini-4k-instruct', layers: 32, hiddenSize: 3072, heads: 32, kvHeads: 32, ffnSize: 8192, vocab: 32064, paramsB: 3.82, maxContext: 4096 }),
  'phi3-medium': dense({ id: 'phi3-medium', name: 'microsoft/Phi-3-medium-4k-instruct', layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 10, ffnSize: 17920, vocab: 32064, paramsB: 13.96, maxContext: 4096 }),
  'starcoder2-3b': dense({ id: 'starcoder2-3b', name: 'bigcode/starcoder2-3b', layers: 30, hiddenSize: 3072, heads: 24, kvHeads: 2, ffnSize: 12288, vocab: 49152, paramsB: 3.03, maxContext: 16384, tiedEmbeddings: true }),
  'starcoder2-7b': dense({ id: 'starcoder2-7b', name: 'bigcode/starcoder2-7b', layers: 32, hiddenSize: 4608, heads: 36, kvHeads: 4, ffnSize: 18432, vocab: 49152, paramsB: 7.17, maxContext: 16384, tiedEmbeddings: true }),
  'starcoder2-15b': dense({ id: 'starcoder2-15b', name: 'bigcode/starcoder2-15b', layers: 40, hiddenSize: 6144, heads: 48, kvHeads: 4, ffnSize: 24576, vocab: 49152, paramsB: 15.96, maxContext: 16384 }),
  'gemma2-2b': dense({ id: 'gemma2-2b', name: 'google/gemma-2-2b-it', layers: 26, hiddenSize: 2304, heads: 8, kvHeads: 4, headDim: 256, ffnSize: 9216, vocab: 256000, paramsB: 2.61, maxContext: 8192, tiedEmbeddings: true }),
  'gemma2-9b': dense({ id: 'gemma2-9b', name: 'google/gemma-2-9b-it', layers: 42, hiddenSize: 3584, heads: 16, kvHeads: 8, headDim: 256, ffnSize: 14336, vocab: 256000, paramsB: 9.24, maxContext: 8192, tiedEmbeddings: true }),
  'gemma2-27b': dense({ id: 'gemma2-27b', name: 'google/gemma-2-27b-it', layers: 46, hiddenSize: 4608, heads: 32, kvHeads: 16, headDim: 128, ffnSize: 36864, vocab: 256000, paramsB: 27.23, maxContext: 8192, tiedEmbeddings: true }),
  'gemma3-12b': dense({ id: 'gemma3-12b', name: 'google/gemma-3-12b-it', layers: 48, hiddenSize: 3840, heads: 16, kvHeads: 8, headDim: 256, ffnSize: 15360, vocab: 262208, paramsB: 11.77, maxContext: 131072, tiedEmbeddings: true }),
  'gemma3-27b': dense({ id: 'gemma3-27b', name: 'google/gemma-3-27b-it', layers: 62, hiddenSize: 5376, heads: 32, kvHeads: 16, headDim: 128, ffnSize: 21504, vocab: 262208, paramsB: 27.01, maxContext: 131072, tiedEmbeddings: true }),
  'mixtral-8x7b': {
    id: 'mixtral-8x7b', name: 'mistralai/Mixtral-8x7B-v0.1', layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, ffnSize: 14336,
    vocab: 32000, experts: 8, activeExperts: 2, paramsB: 46.7, activeParamsB: 12.9, dtypeBytes: 2, maxContext: 32768,
  },
});

/**
 * GPUs by id. Peak = dense BF16 tensor rate at max SM clock; NVLink = per-GPU, one direction.
 * Clocks: the range nvidia-smi lists as supported graphics clocks, in its step. idlePowerW: nothing loaded
 * (H100: the paper's 8 idle H100s draw 550 W -> ~69 W each; A100: SplitwiseSim's 63 W; H200: 81 W measured by
 * NVML on the lent H200 at 345 MHz idle, profiles/measured/README.md). family: whose calibration applies.
 */
export const GPUS: Readonly<Record<string, GpuSpec>> = Object.freeze({
  h100: { id: 'h100', family: 'hopper', name: 'NVIDIA H100 80GB HBM3 (SXM5)', peakBf16Tflops: 989, hbmGBps: 3350, memGiB: 79.6, nvlinkGBps: 450, minClockMhz: 345, maxClockMhz: 1980, clockStepMhz: 15, idlePowerW: 69, tdpW: 700, gpusPerServer: 8 },
  h200: { id: 'h200', family: 'hopper', name: 'NVIDIA H200 141GB HBM3e (SXM)', peakBf16Tflops: 989, hbmGBps: 4800, memGiB: 140.4, nvlinkGBps: 450, minClockMhz: 345, maxClockMhz: 1980, clockStepMhz: 15, idlePowerW: 81, tdpW: 700, gpusPerServer: 8 },
  'a100-80gb': { id: 'a100-80gb', family: 'ampere', name: 'NVIDIA A100 80GB (SXM4)', peakBf16Tflops: 312, hbmGBps: 2039, memGiB: 80, nvlinkGBps: 300, minClockMhz: 210, maxClockMhz: 1410, clockStepMhz: 15, idlePowerW: 63, tdpW: 400, gpusPerServer: 8 },
  'a100-40gb': { id: 'a100-40gb', family: 'ampere', name: 'NVIDIA A100 40GB (SXM4)', peakBf16Tflops: 312, hbmGBps: 1555, memGiB: 40, nvlinkGBps: 300, minClockMhz: 210, maxClockMhz: 1410, clockStepMhz: 15, idlePowerW: 55, tdpW: 400, gpusPerServer: 8 },
});

export function getModelSpec(id: string): ModelSpec {
  const m = Object.hasOwn(MODELS, id) ? MODELS[id] : undefined;
  if (!m) throw new UnknownIdError(`unknown model '${id}'; known models: ${Object.keys(MODELS).join(', ')}`);
  return m;
}

export function getGpuSpec(id: string): GpuSpec {
  const g = Object.hasOwn(GPUS, id) ? GPUS[id] : undefined;
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

/** The TP degrees an engine serves a model at: vLLM's choices within a server (1, 2, 4, 8). */
export const TP_CHOICES = [1, 2, 4, 8] as const;

/**
 * The TP degrees of TP_CHOICES a model can be sharded at: its attention heads split evenly over the GPUs, and its
 * KV heads either split evenly or each replicated on a whole number of GPUs (vLLM's checks).
 */
export function tpDegreesOf(m: ModelSpec): number[] {
  return TP_CHOICES.filter((tp) => m.heads % tp === 0 && (m.kvHeads % tp === 0 || tp % m.kvHeads === 0));
}
