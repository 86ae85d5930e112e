/**
 * Calibration data points, parsed from the CSV copies in data/calibration/ (see its SOURCE.md). Pure:
 * takes file text, returns typed points. Every point names its source, workload, model (our catalog id), GPU
 * (our catalog id) and the engine generation that produced it.
 */

export interface SplitwisePoint {
  /** llama2-70b (SplitwiseSim perf_model.csv, mean over repeats). */
  gpu: string;
  tp: number;
  prompt: number;
  batch: number;
  outTokens: number;
  ttftMs: number; // prompt_time: prefill of `batch` prompts of `prompt` tokens
  tbtMs: number; // token_time: one decode iteration at `batch`
}

/** ML.ENERGY v2 (chat/code, 2024 vLLM, saturated offline batches) and v3 (lm-arena-chat and gpqa, 2025 vLLM). */
export interface MlEnergyPoint {
  version: 'v2' | 'v3';
  workload: string; // 'mlenergy-v3-chat' | 'mlenergy-v3-gpqa' | 'mlenergy-v2-chat' | 'mlenergy-v2-code'
  modelId: string;
  source: string;
  gpu: string;
  tp: number;
  batch: number; // average running batch
  avgOutput: number;
  /**
   * v3: median inter-token latency. v2: the steady state's time per output token of a running sequence, Avg BS /
   * token throughput (both steady-state fields; the step gaps it averages include the prefill-only steps between
   * decodes). v2's own 'Avg TPOT' averages every iteration of the run, the drain after the last admission
   * included (small batches, short steps), so it falls below the steady state's as the batch grows: kept as
   * reportedTpotMs, not fitted.
   */
  itlMs: number;
  /** v2: the 'Avg TPOT (s)' column, ms (all iterations of the run, drain included). */
  reportedTpotMs?: number;
  powerPerGpuW: number;
  energyPerTokenJ: number;
}

export interface ArgonnePowerPoint {
  modelId: string;
  source: string;
  gpu: string;
  batch: number;
  inOut: number; // input = output length
  powerPerGpuW: number;
  latencyS: number;
}

/** Argonne LLM-Inference-Bench, whole-batch latency (in = out tokens) or TTFT (out = 1). */
export interface ArgonneLatencyPoint {
  modelId: string;
  source: string;
  gpu: string;
  tp: number;
  batch: number;
  input: number;
  output: number;
  latencyS: number;
  kind: 'latency' | 'ttft';
}

/** Vidur operator profile: one layer's linear projections (QKV, O, MLP up+gate, MLP down), median ms. */
export interface VidurPoint {
  gpu: string;
  source: string;
  tp: number;
  tokens: number;
  heads: number;
  kvHeads: number;
  hidden: number;
  ffn: number;
  linearMs: number;
}

export class CalibrationDataError extends Error {
  override name = 'CalibrationDataError';
  readonly retryable = false;
}

export function parseCsv(text: string): Record<string, string>[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) return [];
  const header = lines[0]!.split(',');
  return lines.slice(1).map((l) => {
    const cells = l.split(',');
    const row: Record<string, string> = {};
    header.forEach((h, i) => (row[h.trim()] = (cells[i] ?? '').trim()));
    return row;
  });
}

function n(row: Record<string, string>, col: string): number {
  const v = Number(row[col]);
  if (!Number.isFinite(v)) throw new CalibrationDataError(`column ${col}: not a number '${row[col]}'`);
  return v;
}

const SPLITWISE_GPUS: Record<string, string> = { 'h100-80gb': 'h100', 'a100-80gb': 'a100-80gb' };

export function splitwisePoints(text: string): SplitwisePoint[] {
  const groups = new Map<string, { p: SplitwisePoint; n: number }>();
  for (const r of parseCsv(text)) {
    const gpu = SPLITWISE_GPUS[r.hardware ?? ''];
    if (r.model !== 'llama2-70b' || !gpu) continue;
    const k = `${gpu}|${r.tensor_parallel}|${r.prompt_size}|${r.batch_size}|${r.token_size}`;
    const g = groups.get(k);
    if (g) {
      g.p.ttftMs += n(r, 'prompt_time');
      g.p.tbtMs += n(r, 'token_time');
      g.n++;
    } else {
      groups.set(k, { p: { gpu, tp: n(r, 'tensor_parallel'), prompt: n(r, 'prompt_size'), batch: n(r, 'batch_size'), outTokens: n(r, 'token_size'), ttftMs: n(r, 'prompt_time'), tbtMs: n(r, 'token_time') }, n: 1 });
    }
  }
  return [...groups.values()].map(({ p, n }) => ({ ...p, ttftMs: p.ttftMs / n, tbtMs: p.tbtMs / n }));
}

/** Public model ids -> our catalog (same architecture). Models not listed are not calibration points. */
export const CATALOG_OF: Record<string, string> = {
  'meta-llama/Llama-3.1-8B-Instruct': 'llama3.1-8b',
  'meta-llama/Meta-Llama-3.1-8B-Instruct': 'llama3.1-8b',
  'meta-llama/Meta-Llama-3-8B': 'llama3.1-8b',
  'meta-llama/Llama-3.1-70B-Instruct': 'llama3.1-70b',
  'meta-llama/Meta-Llama-3.1-70B-Instruct': 'llama3.1-70b',
  'meta-llama/Llama-3.3-70B-Instruct': 'llama3.1-70b',
  'meta-llama/Meta-Llama-3-70B': 'llama3.1-70b',
  'meta-llama/Llama-2-7b-hf': 'llama2-7b',
  'meta-llama/Llama-2-70b-hf': 'llama2-70b',
  'Qwen/Qwen3-8B': 'qwen3-8b',
  'Qwen/Qwen3-14B': 'qwen3-14b',
  'Qwen/Qwen3-32B': 'qwen3-32b',
  'google/gemma-3-12b-it': 'gemma3-12b',
  'google/gemma-3-27b-it': 'gemma3-27b',
  'google/gemma-2-2b-it': 'gemma2-2b',
  'google/gemma-2-9b-it': 'gemma2-9b',
  'google/gemma-2-27b-it': 'gemma2-27b',
  'mistralai/Mistral-7B-Instruct-v0.3': 'mistral-7b',
  'mistralai/Mistral-7B-v0.1': 'mistral-7b',
  'mistralai/Mistral-Nemo-Instruct-2407': 'mistral-nemo-12b',
  'mistralai/Mistral-Large-Instruct-2407': 'mistral-large-123b',
  'microsoft/Phi-3-mini-4k-instruct': 'phi3-mini',
  'microsoft/Phi-3-medium-4k-instruct': 'phi3-medium',
  'codellama/CodeLlama-7b-hf': 'codellama-7b',
  'codellama/CodeLlama-13b-hf': 'codellama-13b',
  'codellama/CodeLlama-34b-hf': 'codellama-34b',
  'codellama/CodeLlama-70b-hf': 'codellama-70b',
  'bigcode/starcoder2-3b': 'starcoder2-3b',
  'bigcode/starcoder2-7b': 'starcoder2-7b',
  'bigcode/starcoder2-15b': 'starcoder2-15b',
};

/** ML.ENERGY v3 tasks we read, and the workload each becomes. */
export const V3_WORKLOADS: Record<string, string> = { 'lm-arena-chat': 'mlenergy-v3-chat', gpqa: 'mlenergy-v3-gpqa' };

/** ML.ENERGY v3: H100, dense, bf16 rows whose model is in our catalog (B200 is not a GPU we model). */
export function mlEnergyV3Points(text: string): MlEnergyPoint[] {
  const out: MlEnergyPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = CATALOG_OF[r.model_id ?? ''], workload = V3_WORKLOADS[r.task ?? ''];
    if (!id || !workload || r.gpu_model !== 'H100' || r.weight_precision !== 'bfloat16') continue;
    out.push({
      version: 'v3', workload, modelId: id, source: r.model_id!, gpu: 'h100', tp: n(r, 'tensor_parallel'), batch: n(r, 'avg_batch_size'),
      avgOutput: n(r, 'avg_output_len'), itlMs: n(r, 'median_itl_ms'), powerPerGpuW: n(r, 'avg_power_watts') / n(r, 'num_gpus'), energyPerTokenJ: n(r, 'energy_per_token_joules'),
    });
  }
  return out;
}

const V2_GPUS: Record<string, string> = { 'NVIDIA H100 80GB HBM3': 'h100', 'NVIDIA A100-SXM4-40GB': 'a100-40gb' };

/**
 * ML.ENERGY v2 (leaderboard-v2 per-configuration JSON, flattened): Energy/req is the instance's (all GPUs);
 * power per GPU = Energy/req x requests/s / TP with requests/s = token throughput / average output tokens.
 */
export function mlEnergyV2Points(text: string): MlEnergyPoint[] {
  const out: MlEnergyPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = CATALOG_OF[r.Model ?? ''], gpu = V2_GPUS[r.GPU ?? ''];
    if (!id || !gpu || n(r, 'PP') !== 1) continue;
    const eReq = n(r, 'Energy/req (J)'), tput = n(r, 'Token tput (tok/s)'), outTok = n(r, 'Avg Output Tokens'), tp = n(r, 'TP');
    out.push({
      version: 'v2', workload: `mlenergy-v2-${r.task}`, modelId: id, source: r.Model!, gpu, tp, batch: n(r, 'Avg BS (reqs)'), avgOutput: outTok,
      itlMs: (n(r, 'Avg BS (reqs)') / tput) * 1000, reportedTpotMs: n(r, 'Avg TPOT (s)') * 1000, powerPerGpuW: (eReq * tput) / outTok / tp, energyPerTokenJ: eReq / outTok,
    });
  }
  return out;
}

const ARGONNE_GPUS: Record<string, string> = { 'Nvidia H100 GPU': 'h100', 'Nvidia A100 GPU': 'a100-40gb' };

/** Argonne power table, vLLM rows on H100/A100 (avg_power is in mW, over all GPUs of the run). */
export function argonnePowerPoints(text: string): ArgonnePowerPoint[] {
  const out: ArgonnePowerPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = CATALOG_OF[r.Model ?? ''], gpu = ARGONNE_GPUS[r.Hardware ?? ''];
    if (!id || !gpu || r.Framework !== 'vLLM') continue;
    out.push({ modelId: id, source: r.Model!, gpu, batch: n(r, 'Batch Size'), inOut: n(r, 'Input Output Length'), powerPerGpuW: n(r, 'avg_power') / 1000 / n(r, 'Num of Hardware'), latencyS: n(r, 'Latency') });
  }
  return out;
}

/** Argonne whole-batch latency (All_results, in = out) for vLLM on H100/A100. */
export function argonneLatencyPoints(text: string): ArgonneLatencyPoint[] {
  const out: ArgonneLatencyPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = CATALOG_OF[r.Model ?? ''], gpu = ARGONNE_GPUS[r.Hardware ?? ''];
    if (!id || !gpu || r.Framework !== 'vLLM') continue;
    const L = n(r, 'Input Output Length');
    out.push({ modelId: id, source: r.Model!, gpu, tp: n(r, 'Num of Hardware'), batch: n(r, 'Batch Size'), input: L, output: L, latencyS: n(r, 'Latency'), kind: 'latency' });
  }
  return out;
}

/** Argonne TTFT (batch 16 of 1024-token prompts, one output token), vLLM on H100/A100. */
export function argonneTtftPoints(text: string): ArgonneLatencyPoint[] {
  const out: ArgonneLatencyPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = CATALOG_OF[r.Model ?? ''], gpu = ARGONNE_GPUS[r.Hardware ?? ''];
    if (!id || !gpu || r.Framework !== 'vLLM') continue;
    out.push({ modelId: id, source: r.Model!, gpu, tp: n(r, 'Num of Hardware'), batch: n(r, 'Batch Size'), input: n(r, 'Input Length'), output: n(r, 'Output Length'), latencyS: n(r, 'TTFT Latency'), kind: 'ttft' });
  }
  return out;
}

const LINEAR_OPS = ['attn_pre_proj', 'attn_post_proj', 'mlp_up_proj', 'mlp_down_proj'];

/** Vidur MLP/projection operator profiles (ms per layer per iteration, median). */
export function vidurPoints(text: string, gpu: string, source: string): VidurPoint[] {
  return parseCsv(text).map((r) => ({
    gpu, source, tp: n(r, 'num_tensor_parallel_workers'), tokens: n(r, 'num_tokens'), heads: n(r, 'n_head'), kvHeads: n(r, 'n_kv_head'),
    hidden: n(r, 'n_embd'), ffn: n(r, 'n_expanded_embd'), linearMs: LINEAR_OPS.reduce((s, o) => s + n(r, `time_stats.${o}.median`), 0),
  }));
}

/** One measured step row of the lent H200 (profiles/measured/, test/bench/device/h200_measure.py). */
export interface MeasuredStepPoint {
  kind: 'decode' | 'prefill';
  shape: { name: string; layers: number; hiddenSize: number; heads: number; kvHeads: number; ffnSize: number; vocab: number };
  batch: number;
  context: number; // decode: tokens of context per sequence; prefill: prompt tokens
  stepMs: number; // median of CUDA-event-timed steps
  powerW: number; // NVML total-energy counter over the power window / its length
  smMhz: number; // mean SM clock read during the window
}

export interface CalibrationData {
  splitwise: SplitwisePoint[];
  mlEnergy: MlEnergyPoint[];
  argonne: ArgonnePowerPoint[];
  argonneLatency: ArgonneLatencyPoint[];
  vidur: VidurPoint[];
  /** optional: only present at calibration time when the shared prototype data is readable. */
  prototype?: PrototypePoint[];
}

/**
 * DynamoLLM prototype characterization (jovans2/jovan-vllm; no license, so it is NOT copied into this repo: it
 * is read from the shared data folder at calibration time only, and used as measured facts for shapes vs clock).
 * `performance` is a TTFT in s; `energy` is power-like (unit undocumented).
 */
export interface PrototypePoint {
  type: string;
  tp: number;
  clockMhz: number;
  load: number; // req/s to one instance
  ttftS?: number;
  energy?: number;
}

export function prototypePoints(energyCsv: string, perfCsv: string): PrototypePoint[] {
  const m = new Map<string, PrototypePoint>();
  const get = (r: Record<string, string>) => {
    const k = `${r.request_type}|${r.parallelization_strategy}|${r.frequency}|${r.load}`;
    let p = m.get(k);
    if (!p) m.set(k, (p = { type: r.request_type!, tp: Number((r.parallelization_strategy ?? '').replace('TP', '')), clockMhz: n(r, 'frequency'), load: n(r, 'load') }));
    return p;
  };
  for (const r of parseCsv(energyCsv)) get(r).energy = n(r, 'energy');
  for (const r of parseCsv(perfCsv)) get(r).ttftS = n(r, 'performance');
  return [...m.values()];
}
