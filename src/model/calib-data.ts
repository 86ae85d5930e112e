/**
 * Calibration data points, parsed from the CSV copies in data/calibration/ (see its SOURCE.md). Pure:
 * takes file text, returns typed points.
 */

export interface SplitwisePoint {
  /** llama2-70b on h100 (SplitwiseSim perf_model.csv, mean over repeats). */
  tp: number;
  prompt: number;
  batch: number;
  outTokens: number;
  ttftMs: number; // prompt_time: prefill of `batch` prompts of `prompt` tokens
  tbtMs: number; // token_time: one decode iteration at `batch`
}

export interface MlEnergyPoint {
  modelId: string; // our catalog id
  source: string; // model_id in the data
  tp: number;
  batch: number; // avg_batch_size
  avgOutput: number;
  medianItlMs: number;
  powerPerGpuW: number;
}

export interface ArgonnePowerPoint {
  modelId: string;
  source: string;
  batch: number;
  inOut: number; // input = output length
  powerPerGpuW: number;
  latencyS: number;
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

export function splitwisePoints(text: string): SplitwisePoint[] {
  const groups = new Map<string, { p: SplitwisePoint; n: number }>();
  for (const r of parseCsv(text)) {
    if (r.model !== 'llama2-70b' || r.hardware !== 'h100-80gb') continue;
    const k = `${r.tensor_parallel}|${r.prompt_size}|${r.batch_size}|${r.token_size}`;
    const g = groups.get(k);
    if (g) {
      g.p.ttftMs += n(r, 'prompt_time');
      g.p.tbtMs += n(r, 'token_time');
      g.n++;
    } else {
      groups.set(k, { p: { tp: n(r, 'tensor_parallel'), prompt: n(r, 'prompt_size'), batch: n(r, 'batch_size'), outTokens: n(r, 'token_size'), ttftMs: n(r, 'prompt_time'), tbtMs: n(r, 'token_time') }, n: 1 });
    }
  }
  return [...groups.values()].map(({ p, n }) => ({ ...p, ttftMs: p.ttftMs / n, tbtMs: p.tbtMs / n }));
}

/** ML.ENERGY model ids -> our catalog (same architecture). */
const MLENERGY_MODELS: Record<string, string> = {
  'meta-llama/Llama-3.1-8B-Instruct': 'llama3.1-8b',
  'meta-llama/Llama-3.1-70B-Instruct': 'llama3.1-70b',
  'meta-llama/Llama-3.3-70B-Instruct': 'llama3.1-70b',
  'Qwen/Qwen3-8B': 'qwen3-8b',
  'Qwen/Qwen3-14B': 'qwen3-14b',
  'Qwen/Qwen3-32B': 'qwen3-32b',
};

/** H100, dense, bf16 rows of lm-arena-chat whose model is in our catalog. */
export function mlEnergyPoints(text: string): MlEnergyPoint[] {
  const out: MlEnergyPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = MLENERGY_MODELS[r.model_id ?? ''];
    if (!id || r.gpu_model !== 'H100' || r.weight_precision !== 'bfloat16' || r.task !== 'lm-arena-chat') continue;
    out.push({
      modelId: id, source: r.model_id!, tp: n(r, 'tensor_parallel'), batch: n(r, 'avg_batch_size'), avgOutput: n(r, 'avg_output_len'),
      medianItlMs: n(r, 'median_itl_ms'), powerPerGpuW: n(r, 'avg_power_watts') / n(r, 'num_gpus'),
    });
  }
  return out;
}

const ARGONNE_MODELS: Record<string, string> = {
  'meta-llama/Llama-2-7b-hf': 'llama2-7b',
  'meta-llama/Meta-Llama-3-8B': 'llama3.1-8b', // same architecture as Llama-3.1-8B
};

/** H100 vLLM rows of the Argonne power table (avg_power is in mW). */
export function argonnePowerPoints(text: string): ArgonnePowerPoint[] {
  const out: ArgonnePowerPoint[] = [];
  for (const r of parseCsv(text)) {
    const id = ARGONNE_MODELS[r.Model ?? ''];
    if (!id || r.Hardware !== 'Nvidia H100 GPU' || r.Framework !== 'vLLM') continue;
    out.push({ modelId: id, source: r.Model!, batch: n(r, 'Batch Size'), inOut: n(r, 'Input Output Length'), powerPerGpuW: n(r, 'avg_power') / 1000 / n(r, 'Num of Hardware'), latencyS: n(r, 'Latency') });
  }
  return out;
}

export interface CalibrationData {
  splitwise: SplitwisePoint[];
  mlEnergy: MlEnergyPoint[];
  argonne: ArgonnePowerPoint[];
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
