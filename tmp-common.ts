import { readFileSync } from 'node:fs';
import { steadyState, type SteadyState } from './tmp-gen.ts';
import { createPerfModel } from './src/model/perf.ts';
import { DEFAULT_REQUEST_TYPES } from './src/model/request-types.ts';
import { columnOf, TABLE_I, TABLE_I_TOKENS_PER_S, TABLE_II } from './src/model/paper-tables.ts';
import type { RequestTypeSpec } from './src/model/types.ts';
import type { ModelParams } from './src/model/params.ts';

export const ROWS = [
  ...Object.keys(TABLE_I).map((t) => ({ label: t, type: t, tps: TABLE_I_TOKENS_PER_S, row: (TABLE_I as any)[t] as (number | null)[], t2: false })),
  ...TABLE_II.map((r) => ({ label: `MM-${r.label}`, type: 'MM', tps: r.tokensPerS, row: r.row, t2: true })),
];
export const CUR: Record<string, [number, number]> = Object.fromEntries(DEFAULT_REQUEST_TYPES.map((t) => [t.type, [t.inputTokens, t.outputTokens]]));
export function specs(lens: Record<string, [number, number]>): RequestTypeSpec[] {
  return DEFAULT_REQUEST_TYPES.map((t) => ({ ...t, inputTokens: lens[t.type]![0], outputTokens: lens[t.type]![1] }));
}
export function mkLens(inp: Record<string, number>, out: Record<string, number>) {
  const r: Record<string, [number, number]> = {};
  for (const t of Object.keys(CUR)) r[t] = [inp[t[0]!] ?? CUR[t]![0], out[t[1]!] ?? CUR[t]![1]];
  return r;
}
// per-type input override, keep current outputs
export function withInputs(inp: Record<string, number>, outs?: Record<string, number>) {
  const r: Record<string, [number, number]> = {};
  for (const t of Object.keys(CUR)) r[t] = [inp[t[0]!]!, outs ? outs[t[1]!]! : CUR[t]![1]];
  return r;
}
export type Conv = 'io' | 'o' | 'i';
export function load(t: RequestTypeSpec, tokPerS: number, tp: number, conv: Conv) {
  const tok = conv === 'io' ? t.inputTokens + t.outputTokens : conv === 'o' ? t.outputTokens : t.inputTokens;
  return tokPerS / tok / (8 / tp);
}
export function reqMeanTbtP99(s: SteadyState, O: number): number {
  if (s.saturated) return Infinity;
  const a = s.tbtAtoms;
  if (!a || a.length === 0 || O <= 1) return s.tbtP99Ms;
  let m = 0, w = 0;
  for (const [v, p] of a) { m += v * p; w += p; }
  m /= w;
  let v2 = 0;
  for (const [v, p] of a) v2 += p * (v - m) ** 2;
  const sd = Math.sqrt(v2 / w);
  return m + (2.326 * sd) / Math.sqrt(O - 1);
}
export type Rule = 'tok' | 'req';
export function feasible(s: SteadyState, t: RequestTypeSpec, rule: Rule) {
  if (s.saturated) return false;
  const tbt = rule === 'tok' ? s.tbtP99Ms : reqMeanTbtP99(s, t.outputTokens);
  return s.ttftP99Ms <= t.ttftSloMs && tbt <= t.tbtSloMs;
}
const memo = new Map<string, SteadyState>();
export function ss(pm: any, pmKey: string, t: RequestTypeSpec, tp: number, f: number, l: number) {
  const k = `${pmKey}|${t.inputTokens}|${t.outputTokens}|${t.type}|${tp}|${f}|${l}`;
  let v = memo.get(k);
  if (!v) memo.set(k, (v = steadyState(pm, t, tp, f, l)));
  return v;
}
export function evalSetup(lens: Record<string, [number, number]>, conv: Conv, rule: Rule, params?: ModelParams, pmKey = 'base') {
  const pm = createPerfModel('llama2-70b', 'h100', params ? { params } : { engine: 'vllm-2023' });
  const sp = specs(lens);
  let t1 = 0, t2 = 0, feas = 0;
  const rows: string[] = [];
  for (const r of ROWS) {
    const t = sp.find((x) => x.type === r.type)!;
    let pb: [number, number] | null = null, ob: [number, number] | null = null;
    const fl: string[] = [];
    r.row.forEach((v, i) => {
      const { tp, clockMhz } = columnOf(i);
      const s = ss(pm, pmKey, t, tp, clockMhz, load(t, r.tps, tp, conv));
      const ok = feasible(s, t, rule);
      if (ok === (v !== null)) feas++;
      fl.push(v === null ? (ok ? '+' : '.') : ok ? 'o' : 'x');
      if (v !== null && (!pb || v < pb[0])) pb = [v, i];
      if (ok && (!ob || s.energyPerRequestJ < ob[0])) ob = [s.energyPerRequestJ, i];
    });
    const name = (x: [number, number] | null) => (x ? `TP${columnOf(x[1]).tp}@${columnOf(x[1]).clockMhz}` : '-');
    const m = name(pb) === name(ob);
    if (m) r.t2 ? t2++ : t1++;
    rows.push(`${r.label.padEnd(10)} paper ${name(pb).padEnd(10)} ours ${name(ob).padEnd(10)} ${m ? 'ok  ' : 'DIFF'} ${fl.join('')}`);
  }
  return { t1, t2, feas, rows };
}
// prototype perf points
export const PROTO = readFileSync('/work/shared/data/dynamollm_prototype/characterization_performance.csv', 'utf8').trim().split('\n').slice(1).map((l) => {
  const [ld, tp, f, type, perf] = l.split(',');
  return { load: Number(ld), tp: Number(tp!.slice(2)), f: Number(f), type: type!, ttft: Number(perf) };
});
