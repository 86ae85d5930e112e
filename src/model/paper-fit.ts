/**
 * The paper's Tables I-II as a fitting target (pure): for a parameter set, the steady state of every table cell
 * (type, TP, clock) at the table's load, and a loss on (a) the energy ratios across clocks and TP within a row,
 * normalised per row, and (b) the infeasible ('-') pattern. Used by calibrate.ts; fidelity.ts checks the
 * shipped profile against the same tables.
 *
 * Load interpretation (documented in profiles/README.md): the paper's "tokens/s" counts input + output tokens
 * and is the load of one 8-GPU DGX H100 server, shared equally by its 8/tp instances of degree tp.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import { meetsSlo, steadyState } from './generate.ts';
import type { ModelParams } from './params.ts';
import { createPerfModel } from './perf.ts';
import { DEFAULT_REQUEST_TYPES } from './request-types.ts';
import { columnOf, TABLE_I, TABLE_I_TOKENS_PER_S, TABLE_II } from './paper-tables.ts';
import type { RequestTypeSpec } from './types.ts';
import type { PrototypePoint } from './calib-data.ts';

export interface PaperRow {
  label: string;
  type: RequestType;
  tokensPerS: number;
  row: (number | null)[];
}

export const PAPER_ROWS: PaperRow[] = [
  ...(Object.keys(TABLE_I) as RequestType[]).map((t) => ({ label: t, type: t, tokensPerS: TABLE_I_TOKENS_PER_S, row: TABLE_I[t] })),
  ...TABLE_II.map((r) => ({ label: `MM ${r.label}`, type: 'MM' as RequestType, tokensPerS: r.tokensPerS, row: r.row })),
];

/** Per-instance req/s of a type at server tokens/s (input + output) shared by the 8/tp instances of a server. */
export function perInstanceLoad(t: RequestTypeSpec, tokensPerS: number, tp: number, gpusPerServer = 8): number {
  return tokensPerS / (t.inputTokens + t.outputTokens) / (gpusPerServer / tp);
}

export interface CellEval {
  tp: number;
  clockMhz: number;
  feasible: boolean;
  energyJ: number;
  paperWh: number | null;
}

export function evalRow(params: ModelParams, r: PaperRow, modelId = 'llama2-70b', gpuId = 'h100'): CellEval[] {
  const pm = createPerfModel(modelId, gpuId, { params });
  const t = DEFAULT_REQUEST_TYPES.find((x) => x.type === r.type)!;
  return r.row.map((v, i) => {
    const { tp, clockMhz } = columnOf(i);
    const s = steadyState(pm, t, tp, clockMhz, perInstanceLoad(t, r.tokensPerS, tp));
    return { tp, clockMhz, feasible: meetsSlo(s, t), energyJ: s.energyPerRequestJ, paperWh: v };
  });
}

/** 'TP4@1200' of the least-energy cell, or null if none qualifies. */
export function argminOf(cells: CellEval[], usePaper: boolean): string | null {
  let best: CellEval | null = null;
  for (const c of cells) {
    const v = usePaper ? c.paperWh : c.feasible ? c.energyJ : null;
    if (v === null) continue;
    const bv = best ? (usePaper ? best.paperWh! : best.energyJ) : Infinity;
    if (v < bv) best = c;
  }
  return best ? `TP${best.tp}@${best.clockMhz}` : null;
}

export interface PaperLoss {
  loss: number;
  shape: number; // mean squared log-ratio error of energies normalised per row (cells feasible in the paper)
  feasibility: number; // fraction of cells whose feasibility disagrees
  argminMatches: number;
  rows: number;
}

/**
 * Loss on the paper tables: the per-row normalised log-energy error (energy ratios, not absolute Wh: the paper's
 * Wh are per a fixed request count we do not know), the feasibility disagreement and a hinge on the row optimum
 * (the paper's optimum must be cheaper than every other cell feasible in both).
 */
export function paperLoss(params: ModelParams, rows: PaperRow[] = PAPER_ROWS): PaperLoss {
  let shape = 0, nShape = 0, feas = 0, nFeas = 0, hinge = 0, matches = 0;
  for (const r of rows) {
    const cells = evalRow(params, r);
    const both = cells.filter((c) => c.paperWh !== null && c.energyJ > 0);
    if (both.length > 1) {
      const d = both.map((c) => Math.log(c.energyJ) - Math.log(c.paperWh!));
      const mean = d.reduce((a, b) => a + b, 0) / d.length;
      for (const x of d) shape += (x - mean) ** 2;
      nShape += d.length;
      const pBest = both.reduce((a, b) => (b.paperWh! < a.paperWh! ? b : a));
      for (const c of both) if (c !== pBest && c.feasible) hinge += Math.max(0, Math.log(pBest.energyJ / c.energyJ) + 0.02);
    }
    for (const c of cells) {
      nFeas++;
      if (c.feasible !== (c.paperWh !== null)) feas++;
    }
    if (argminOf(cells, false) === argminOf(cells, true)) matches++;
  }
  const s = nShape ? shape / nShape : 0;
  const f = nFeas ? feas / nFeas : 0;
  return { loss: s + f + hinge / rows.length, shape: s, feasibility: f, argminMatches: matches, rows: rows.length };
}

/**
 * Shape loss against the DynamoLLM prototype characterization (measured, H100 Llama2-70B): how TTFT and the
 * power-like 'energy' move with clock at a fixed (type, TP, load), relative to 1980 MHz. Only ratios are used:
 * the prototype's prompt lengths and energy unit are not ours. Points where either side is saturated are skipped.
 */
export function prototypeLoss(params: ModelParams, pts: PrototypePoint[], clocks = [800, 1200, 1600]): { loss: number; ttft: number; power: number; n: number } {
  const pm = createPerfModel('llama2-70b', 'h100', { params });
  const byKey = new Map(pts.map((p) => [`${p.type}|${p.tp}|${p.clockMhz}|${p.load}`, p]));
  let st = 0, nt = 0, sp = 0, np = 0;
  for (const t of DEFAULT_REQUEST_TYPES) for (const tp of [2, 4, 8]) for (const load of [0.5, 1.5]) {
    const ref = byKey.get(`${t.type}|${tp}|1980|${load}`);
    if (!ref) continue;
    const s0 = steadyState(pm, t, tp, 1980, load);
    if (s0.saturated) continue;
    for (const f of clocks) {
      const p = byKey.get(`${t.type}|${tp}|${f}|${load}`);
      if (!p) continue;
      const s = steadyState(pm, t, tp, f, load);
      if (s.saturated) continue;
      // a measured TTFT above 3 s is a queue that is building up, not a shape
      if (p.ttftS !== undefined && ref.ttftS !== undefined && p.ttftS < 3 && ref.ttftS < 3) {
        st += (Math.log(s.ttftP50Ms / s0.ttftP50Ms) - Math.log(p.ttftS / ref.ttftS)) ** 2;
        nt++;
      }
      if (p.energy !== undefined && ref.energy !== undefined) {
        sp += (Math.log(s.gpuPowerW / s0.gpuPowerW) - Math.log(p.energy / ref.energy)) ** 2;
        np++;
      }
    }
  }
  const ttft = nt ? st / nt : 0, power = np ? sp / np : 0;
  return { loss: ttft + power, ttft, power, n: nt + np };
}
