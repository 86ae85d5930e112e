/**
 * The model's error against public data, side by side with the measured values (pure). See
 * `dynamollm fidelity`. Targets (issue 3): each MAPE <= 15%; Table I >= 7/9, Table II 3/3, feasibility >= 85%.
 *
 * Paper tables: the paper states loads in cluster tokens/s (input + output tokens; we read it so). A load of
 * X tokens/s of type T is X/(I_T + O_T) req/s for the whole 8-GPU server, shared by 4 TP2 / 2 TP4 / 1 TP8
 * instances, so one instance sees X/(I+O)/(8/tp) req/s. Our choice is the least energy-per-request feasible
 * (TP, clock) among the paper's columns (2.0 GHz -> 1980 MHz); a load beyond the profiled grid is infeasible.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { CalibrationData, PrototypePoint } from './calib-data.ts';
import { mape, mlEnergyTbtPairs, mlEnergyUsable, powerPairs, splitwisePairs, splitwiseUsable, type Pair } from './calibrate.ts';
import { paramsFor } from './perf.ts';
import { interpolate, isFeasible, ProfileRangeError } from './profile.ts';
import type { Profile } from './profile-types.ts';
import { perInstanceLoad } from './paper-fit.ts';
import { columnOf, TABLE_I, TABLE_I_TOKENS_PER_S, TABLE_II } from './paper-tables.ts';

export interface TableChoice {
  label: string;
  paper: string | null; // 'TP4@1200' or null when the paper has no feasible cell
  ours: string | null;
  match: boolean;
}

export interface FeasibilityCell {
  label: string;
  paperFeasible: boolean;
  oursFeasible: boolean;
  paperWh: number | null;
  oursWh: number | null;
}

export interface FidelityReport {
  ttftMape: number;
  tbtMape: number;
  powerMape: number;
  tbtMapeMlEnergy: number;
  tableI: { matched: number; of: number };
  tableII: { matched: number; of: number };
  feasibility: { matched: number; of: number };
  targets: { mapeMax: number; tableIMin: number; tableIIMin: number; feasibilityMinFraction: number; met: boolean };
  rows: {
    ttft: Pair[];
    tbt: Pair[];
    power: Pair[];
    tbtMlEnergy: Pair[];
    tableI: TableChoice[];
    tableII: TableChoice[];
    feasibility: FeasibilityCell[];
  };
  notes: string[];
}

/** Per-instance req/s of `type` at cluster tokens/s on one 8-GPU server at TP `tp`. */
export function instanceLoad(p: Profile, type: RequestType, tokensPerS: number, tp: number): number {
  const t = p.requestTypes.find((x) => x.type === type);
  if (!t) throw new ProfileRangeError(`type ${type} not in profile`);
  return perInstanceLoad(t, tokensPerS, tp);
}

function evalCell(p: Profile, type: RequestType, tp: number, clockMhz: number, load: number): { feasible: boolean; energyJ: number | null } {
  try {
    const feasible = isFeasible(p, type, tp, clockMhz, load);
    return { feasible, energyJ: interpolate(p, type, tp, clockMhz, load).energyPerRequestJ };
  } catch (err) {
    if (err instanceof ProfileRangeError) return { feasible: false, energyJ: null };
    throw err;
  }
}

function choose(p: Profile, type: RequestType, tokensPerS: number, row: (number | null)[], label: string, feas: FeasibilityCell[]): TableChoice {
  let paperBest: { i: number; v: number } | null = null;
  let ours: { name: string; e: number } | null = null;
  row.forEach((v, i) => {
    const { tp, clockMhz } = columnOf(i);
    if (v !== null && (!paperBest || v < paperBest.v)) paperBest = { i, v };
    const c = evalCell(p, type, tp, clockMhz, instanceLoad(p, type, tokensPerS, tp));
    // energy for the same work on the whole server: per-request energy is already per request served
    if (c.feasible && c.energyJ !== null && (!ours || c.energyJ < ours.e)) ours = { name: `TP${tp}@${clockMhz}`, e: c.energyJ };
    feas.push({ label: `${label} TP${tp}@${clockMhz}`, paperFeasible: v !== null, oursFeasible: c.feasible, paperWh: v, oursWh: c.energyJ === null ? null : Number((c.energyJ / 3600).toPrecision(3)) });
  });
  const pb = paperBest as { i: number; v: number } | null;
  const paper = pb ? `TP${columnOf(pb.i).tp}@${columnOf(pb.i).clockMhz}` : null;
  const o = ours as { name: string; e: number } | null;
  return { label, paper, ours: o ? o.name : null, match: paper === (o ? o.name : null) };
}

export function computeFidelity(data: CalibrationData, llama2Profile: Profile): FidelityReport {
  const p23 = paramsFor('vllm-2023');
  const p25 = paramsFor('vllm-2025');
  const { ttft, tbt } = splitwisePairs(splitwiseUsable(data.splitwise, p23), p23);
  const ml = mlEnergyUsable(data.mlEnergy, p25);
  const tbtMl = mlEnergyTbtPairs(ml, p25);
  const power = powerPairs(ml, data.argonne, p25);
  const feasI: FeasibilityCell[] = [];
  const feasII: FeasibilityCell[] = [];
  const tableI = (Object.keys(TABLE_I) as RequestType[]).map((t) => choose(llama2Profile, t, TABLE_I_TOKENS_PER_S, TABLE_I[t], t, feasI));
  const tableII = TABLE_II.map((r) => choose(llama2Profile, 'MM', r.tokensPerS, r.row, `MM ${r.label} (${r.tokensPerS} tok/s)`, feasII));
  const feasibility = [...feasI, ...feasII];
  const rep = {
    ttftMape: round(mape(ttft)),
    tbtMape: round(mape(tbt)),
    powerMape: round(mape(power)),
    tbtMapeMlEnergy: round(mape(tbtMl)),
    tableI: { matched: tableI.filter((c) => c.match).length, of: tableI.length },
    tableII: { matched: tableII.filter((c) => c.match).length, of: tableII.length },
    feasibility: { matched: feasibility.filter((c) => c.paperFeasible === c.oursFeasible).length, of: feasibility.length },
  };
  const targets = { mapeMax: 15, tableIMin: 7, tableIIMin: 3, feasibilityMinFraction: 0.85, met: false };
  targets.met = [rep.ttftMape, rep.tbtMape, rep.powerMape, rep.tbtMapeMlEnergy].every((m) => m <= targets.mapeMax) &&
    rep.tableI.matched >= targets.tableIMin && rep.tableII.matched >= targets.tableIIMin && rep.feasibility.matched >= targets.feasibilityMinFraction * rep.feasibility.of;
  return {
    ...rep,
    targets,
    rows: { ttft, tbt, power, tbtMlEnergy: tbtMl, tableI, tableII, feasibility },
    notes: [
      'ttftMape/tbtMape: SplitwiseSim perf_model.csv, H100 Llama2-70B, TP2/4/8 at max clock, engine calibration vllm-2023',
      'tbtMapeMlEnergy/powerMape: ML.ENERGY v3 lm-arena-chat H100 dense bf16 (+ Argonne H100 vLLM power), engine vllm-2025',
      `paper tables: profile ${llama2Profile.model}.${llama2Profile.gpu}; per-instance load = tokens/s / (input+output tokens) / (8/tp)`,
      'all predicted values are modelled (calibrated), not measured on a GPU',
    ],
  };
}

/**
 * Why the Table I/II argmin targets are hard for any model whose energy per request at a fixed load does not
 * fall as the clock rises (evidence, pure):
 * - `uShapedRows`: paper rows whose least-energy cell (TP*, f*) has, at the same TP, a cell at a LOWER clock that
 *   the paper marks feasible and that costs MORE. Such a model prices that lower-clock cell at or below the
 *   argmin, so it can match the row only by calling those paper-feasible cells infeasible.
 * - `prototype`: in the DynamoLLM prototype's own characterization (measured, H100 Llama2-70B), per (type, TP,
 *   load) series over clocks, the clock at which its `energy` column is least (when the data is readable).
 */
export interface PaperShapeEvidence {
  uShapedRows: { label: string; argmin: string; costlierLowerClockCells: string[] }[];
  prototype?: { series: number; argminClockCounts: Record<number, number> };
}

export function paperShapeEvidence(prototype?: PrototypePoint[]): PaperShapeEvidence {
  const rows: { label: string; row: (number | null)[] }[] = [
    ...(Object.keys(TABLE_I) as RequestType[]).map((t) => ({ label: t, row: TABLE_I[t] })),
    ...TABLE_II.map((r) => ({ label: `MM ${r.label}`, row: r.row })),
  ];
  const uShapedRows: PaperShapeEvidence['uShapedRows'] = [];
  for (const { label, row } of rows) {
    let best = -1;
    row.forEach((v, i) => {
      if (v !== null && (best < 0 || v < row[best]!)) best = i;
    });
    if (best < 0) continue;
    const { tp, clockMhz } = columnOf(best);
    const costlier: string[] = [];
    row.forEach((v, i) => {
      const c = columnOf(i);
      if (v !== null && c.tp === tp && c.clockMhz < clockMhz && v > row[best]!) costlier.push(`TP${c.tp}@${c.clockMhz} ${v} Wh`);
    });
    if (costlier.length) uShapedRows.push({ label, argmin: `TP${tp}@${clockMhz} ${row[best]} Wh`, costlierLowerClockCells: costlier });
  }
  if (!prototype?.length) return { uShapedRows };
  const series = new Map<string, { f: number; e: number }[]>();
  for (const p of prototype) {
    if (p.energy === undefined || !Number.isFinite(p.energy)) continue;
    const k = `${p.type}|${p.tp}|${p.load}`;
    (series.get(k) ?? series.set(k, []).get(k)!).push({ f: p.clockMhz, e: p.energy });
  }
  const argminClockCounts: Record<number, number> = {};
  let n = 0;
  for (const pts of series.values()) {
    if (pts.length < 3) continue;
    n++;
    const m = pts.reduce((a, b) => (b.e < a.e ? b : a));
    argminClockCounts[m.f] = (argminClockCounts[m.f] ?? 0) + 1;
  }
  return { uShapedRows, prototype: { series: n, argminClockCounts } };
}

function round(x: number): number {
  return Number(x.toFixed(2));
}
