/**
 * The measured H200 step slice (profiles/measured/h200.steps.json, made on the lent GPU by
 * test/bench/device/h200_measure.py) and the model's prediction of it (pure).
 *
 * The harness is not a serving engine: decode steps are CUDA-graph replays timed with CUDA events (no CPU-side
 * overhead), with unfused PyTorch element-wise kernels (norms, rotary, softmax) between cuBLAS GEMMs. So it is
 * predicted with an engine of its own: no CPU overhead, kernelEff 1 (cuBLAS, the family's best), and ONE fitted
 * number, its GPU-side fixed time per layer, anchored on a single row (Llama-3.1-8B, batch 1, context 512).
 * Everything else is predicted from the Hopper family calibration (fitted to H100 public data only) with the
 * H200 datasheet bandwidth: how step time grows with batch and context, the 70B-sized layers, prefill under
 * the power cap, and power. Prefill runs eagerly (Python launches each kernel); at 512 tokens the launches,
 * not the GPU, set the time, which this engine does not model: that row is reported and not counted.
 */
import { getGpuSpec } from './catalog.ts';
import type { EngineParams, FamilyParams } from './params.ts';
import { stepBreakdown } from './perf.ts';
import type { ModelSpec, StepBatch } from './types.ts';

export class MeasuredSliceError extends Error {
  override name = 'MeasuredSliceError';
  readonly retryable = false;
}

export interface MeasuredShape {
  name: string;
  layers: number;
  hiddenSize: number;
  heads: number;
  kvHeads: number;
  ffnSize: number;
  vocab: number;
  paramsB: number;
}

export interface MeasuredRow {
  kind: 'decode' | 'prefill';
  shape: string;
  batch: number;
  context: number; // decode: context tokens per sequence; prefill: prompt tokens
  stepMs: number;
  powerW: number;
  smMhz: number | null;
}

export interface MeasuredSlice {
  version: 1;
  kind: 'step-slice';
  gpu: string;
  source: { kind: 'measured'; generatedBy: string; date: string; method: string; notes: string; device: Record<string, unknown> };
  shapes: Record<string, MeasuredShape>;
  ceilings: { copyGBps: number; bf16Tflops: number } | null;
  idle: { what: string; powerW: number; smMhz: number }[];
  rows: MeasuredRow[];
}

export function parseMeasuredSlice(x: unknown): MeasuredSlice {
  const s = x as MeasuredSlice;
  if (!s || s.version !== 1 || s.kind !== 'step-slice' || s.source?.kind !== 'measured') throw new MeasuredSliceError('not a v1 measured step slice (source.kind must be "measured")');
  if (!Array.isArray(s.rows) || s.rows.length === 0) throw new MeasuredSliceError('no rows');
  for (const r of s.rows) {
    if (!s.shapes[r.shape]) throw new MeasuredSliceError(`row names unknown shape '${r.shape}'`);
    if (!(r.stepMs > 0 && r.powerW > 0 && r.batch >= 1 && r.context >= 1)) throw new MeasuredSliceError(`bad row ${JSON.stringify(r)}`);
  }
  getGpuSpec(s.gpu);
  return s;
}

export function shapeSpec(s: MeasuredShape): ModelSpec {
  return { id: s.name, name: s.name, layers: s.layers, hiddenSize: s.hiddenSize, heads: s.heads, kvHeads: s.kvHeads, ffnSize: s.ffnSize, vocab: s.vocab, experts: 1, activeExperts: 1, paramsB: s.paramsB, activeParamsB: s.paramsB, dtypeBytes: 2, maxContext: 131072 };
}

const HARNESS: EngineParams = { cpuOverheadMs: 0, perSeqOverheadMs: 0, perLayerUs: 0, kernelEff: 1, allReduceLatencyUs: { '2': 10 }, commEff: 0.7 };

function batchOf(r: MeasuredRow): StepBatch {
  return r.kind === 'decode' ? { prefillTokens: 0, decodeSeqs: r.batch, decodeContextTokens: r.batch * r.context } : { prefillTokens: r.context * r.batch, prefillSeqs: r.batch, decodeSeqs: 0, decodeContextTokens: 0 };
}

export interface MeasuredComparison {
  anchor: string;
  perLayerUs: number;
  rows: { label: string; counted: boolean; stepMs: number; modelStepMs: number; powerW: number; modelPowerW: number; smMhz: number | null; modelClockMhz: number }[];
  stepMape: number;
  powerMape: number;
  within15: { step: number; power: number; of: number };
}

/** The model's prediction of every row (see the file comment for what is anchored and what is predicted). */
export function compareMeasured(slice: MeasuredSlice, family: FamilyParams): MeasuredComparison {
  const g = getGpuSpec(slice.gpu);
  const anchorRow = slice.rows.find((r) => r.kind === 'decode' && r.batch === 1 && r.context === 512) ?? slice.rows[0]!;
  const am = shapeSpec(slice.shapes[anchorRow.shape]!);
  const bare = stepBreakdown(am, g, { engine: HARNESS, family }, batchOf(anchorRow), 1, g.maxClockMhz).totalMs;
  const perLayerUs = Math.max(0, ((anchorRow.stepMs - bare) / am.layers) * 1000);
  const engine = { ...HARNESS, perLayerUs };
  const rows = slice.rows.map((r) => {
    const s = stepBreakdown(shapeSpec(slice.shapes[r.shape]!), g, { engine, family }, batchOf(r), 1, g.maxClockMhz);
    const counted = r !== anchorRow && !(r.kind === 'prefill' && r.context < 1024);
    return { label: `${r.kind} ${r.shape} bs=${r.batch} ${r.kind === 'decode' ? 'ctx' : 'prompt'}=${r.context}`, counted, stepMs: r.stepMs, modelStepMs: s.totalMs, powerW: r.powerW, modelPowerW: s.powerW, smMhz: r.smMhz, modelClockMhz: s.effClockMhz };
  });
  const c = rows.filter((r) => r.counted);
  const ape = (a: number, b: number) => Math.abs(b - a) / a;
  return {
    anchor: `${anchorRow.kind} ${anchorRow.shape} bs=${anchorRow.batch} ctx=${anchorRow.context}`,
    perLayerUs,
    rows,
    stepMape: (100 * c.reduce((s, r) => s + ape(r.stepMs, r.modelStepMs), 0)) / c.length,
    powerMape: (100 * c.reduce((s, r) => s + ape(r.powerW, r.modelPowerW), 0)) / c.length,
    within15: { step: c.filter((r) => ape(r.stepMs, r.modelStepMs) <= 0.15).length, power: c.filter((r) => ape(r.powerW, r.modelPowerW) <= 0.15).length, of: c.length },
  };
}
