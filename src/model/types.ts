/**
 * Contracts of the performance and power model (src/model). Pure data and function types; no I/O.
 * Every other part (emulator core, profiles, policies, simulator) codes against these.
 */
import type { RequestType, LengthClass } from '../../protocols/request-types.ts';

/** A public model architecture. */
export interface ModelSpec {
  id: string; // e.g. 'llama2-70b'
  name: string; // e.g. 'meta-llama/Llama-2-70b-hf'
  layers: number;
  hiddenSize: number;
  heads: number;
  kvHeads: number;
  ffnSize: number; // intermediate size (per expert for MoE)
  vocab: number;
  experts: number; // 1 for dense
  activeExperts: number; // 1 for dense
  paramsB: number; // total parameters, billions
  activeParamsB: number; // parameters touched per token, billions
  dtypeBytes: number; // bytes per parameter (2 for bf16/fp16)
  maxContext: number;
  /** per-head dimension when it is not hiddenSize/heads (e.g. Qwen3); optional, compatible extension. */
  headDim?: number;
  /** the LM head shares the input embedding matrix (Gemma); otherwise the input table is not streamed per step. */
  tiedEmbeddings?: boolean;
}

/** GPU families whose hardware efficiencies and power model are calibrated together (src/model/params.ts). */
export type GpuFamily = 'hopper' | 'ampere';

/** A GPU SKU. */
export interface GpuSpec {
  id: string; // 'h100' | 'h200' | 'a100-80gb' | 'a100-40gb'
  name: string;
  /** which family's calibrated efficiencies and power model apply. */
  family: GpuFamily;
  peakBf16Tflops: number; // dense, at max SM clock
  hbmGBps: number; // HBM bandwidth, GB/s
  memGiB: number;
  nvlinkGBps: number; // per-GPU NVLink bandwidth, GB/s (unidirectional)
  minClockMhz: number;
  maxClockMhz: number;
  clockStepMhz: number; // granularity of supported SM clocks
  idlePowerW: number; // per GPU, nothing loaded
  tdpW: number; // per GPU power cap
  gpusPerServer: number;
}

/** One continuous-batching engine step (iteration). */
export interface StepBatch {
  /** prompt tokens processed this step (sum over prefill chunks). */
  prefillTokens: number;
  /** tokens of context already in KV cache for the prefill chunks (sum), for attention cost. */
  prefillContextTokens?: number;
  /** number of prompts the prefill tokens belong to (attention is quadratic per prompt); default 1. Compatible extension. */
  prefillSeqs?: number;
  /** sequences producing one token this step. */
  decodeSeqs: number;
  /** sum of context lengths (prompt + generated so far) of the decode sequences. */
  decodeContextTokens: number;
}

/** The instance-level performance and power model for one (model, gpu). */
export interface PerfModel {
  readonly model: ModelSpec;
  readonly gpu: GpuSpec;
  /** Duration of one engine step in ms at a TP degree and SM clock (MHz). */
  stepTimeMs(batch: StepBatch, tp: number, clockMhz: number): number;
  /** Power per GPU in W while executing that step at that clock. */
  stepPowerW(batch: StepBatch, tp: number, clockMhz: number): number;
  /** Power per GPU in W with nothing to do; loaded=true means weights resident (model-loaded idle). */
  idlePowerW(tp: number, clockMhz: number, loaded: boolean): number;
  /** KV-cache capacity of an instance in tokens (GPU memory minus weights and activations). */
  kvCapacityTokens(tp: number): number;
  /** TTFT in ms of one prompt alone on an idle instance. */
  ttftMs(promptTokens: number, tp: number, clockMhz: number): number;
  /** Supported SM clocks of the GPU (MHz, ascending). */
  supportedClocks(): number[];
}

/** SLO and token thresholds of one length class (paper Table IV). */
export interface ClassThresholds {
  /** exclusive upper bound of input tokens for S and M; L is <= maxInput. */
  inputUpper: Record<LengthClass, number>;
  outputUpper: Record<LengthClass, number>;
}

export interface RequestTypeSpec {
  type: RequestType;
  /** representative input/output lengths used to profile this type (tokens). */
  inputTokens: number;
  outputTokens: number;
  ttftSloMs: number; // on p99
  tbtSloMs: number; // on p99
}
