/**
 * Eq. 1 of the paper as a MILP (the oracle the heuristics are measured against; the paper solves it with
 * PuLP in "100s of ms", too slow for second-scale control):
 *   minimise sum over instances of energy, s.t. GPUs <= N, load covered, every instance within its SLO.
 * Formulation: for each pool, TP degree, clock and linear segment s = [b_s, b_s+1] of the instance power
 * curve (`energy.ts`, the same curve the heuristics use), an integer N (instances) and a continuous X
 * (their total load) with b_s*N <= X <= min(b_s+1, cap*(1-headroom))*N. The power curve is linear on a
 * segment, so the energy of the group is exactly epochS*(N*(P_s - slope*b_s) + slope*X) however X is
 * split among its N instances: the MILP is exact for the piecewise-linear profile model, and any heuristic
 * solution is feasible in it (so heuristic >= optimum up to the solver's gap). Only SLO-feasible
 * (tp, clock) cells get variables. Pure given a loaded HiGHS instance.
 */
import type { Profile } from '../model/profile-types.ts';
import { mixCurve, totalLoad, type MixCurve } from './energy.ts';
import type { LoadByType, TpDegree } from './types.ts';

/** The subset of the `highs` module this file uses. */
export interface HighsLike {
  solve(lp: string, options?: Record<string, unknown>): { Status: string; ObjectiveValue: number; Columns: Record<string, { Primal?: number }> };
}

export interface Eq1Input {
  profile: Profile;
  /** one pool's load by type, or several pools sharing the GPU budget (cluster-wide Eq. 1). */
  pools: { id: string; loadByType: LoadByType }[];
  /** GPUs available (all pools together). */
  gpus: number;
  /** epoch, s: energy is reported over it. */
  epochS: number;
  /** fraction of SLO throughput kept free, 0..1. Default 0. */
  headroom?: number;
  tps?: readonly TpDegree[];
  clocks?: number[];
  /** HiGHS time limit, s. Default 10. */
  timeLimitS?: number;
  /** relative MIP gap at which HiGHS stops (the result is within it of the optimum). Default 1e-4. */
  mipRelGap?: number;
}

export interface Eq1Group { pool: string; tp: TpDegree; clockMhz: number; count: number; loadPerInstance: number; powerW: number }

export interface Eq1Result {
  status: string;
  feasible: boolean;
  config: Eq1Group[];
  /** optimal energy over the epoch, J (modelled from the profile). */
  energy: number;
  solveMs: number;
  variables: number;
}

export class MilpError extends Error {
  override name = 'MilpError';
  constructor(message: string, readonly retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const num = (x: number) => (Math.abs(x) < 1e-12 ? '0' : Number(x.toPrecision(12)).toString());

export function buildEq1(input: Eq1Input): { lp: string; cols: { n: string; x: string; pool: string; tp: TpDegree; clockMhz: number; a: number; slope: number }[] } {
  const { profile: p } = input;
  const h = input.headroom ?? 0;
  const tps = input.tps ?? ([2, 4, 8] as TpDegree[]);
  const clocks = input.clocks ?? p.clocksMhz;
  const obj: string[] = [];
  const cons: string[] = [];
  const gpuTerms: string[] = [];
  const ints: string[] = [];
  const cols: { n: string; x: string; pool: string; tp: TpDegree; clockMhz: number; a: number; slope: number }[] = [];
  input.pools.forEach((pool, pi) => {
    const L = totalLoad(pool.loadByType);
    const loadTerms: string[] = [];
    for (const tp of tps) {
      if (!p.tpDegrees.includes(tp)) continue;
      for (const f of clocks) {
        const c: MixCurve | null = mixCurve(p, pool.loadByType, tp, f);
        if (!c || !(L > 0)) continue;
        const cap = c.cap * (1 - h);
        for (let s = 0; s + 1 < c.breaks.length; s++) {
          const b0 = c.breaks[s]!, b1 = c.breaks[s + 1]!;
          if (b0 >= cap) break;
          const slope = (c.powerW[s + 1]! - c.powerW[s]!) / (b1 - b0);
          const a = c.powerW[s]! - slope * b0; // instance power = a + slope * load on this segment
          const hi = Math.min(b1, cap);
          const n = `n_${pi}_${tp}_${f}_${s}`, x = `x_${pi}_${tp}_${f}_${s}`;
          cols.push({ n, x, pool: pool.id, tp, clockMhz: f, a, slope });
          obj.push(`${num(a * input.epochS)} ${n}`, `${num(slope * input.epochS)} ${x}`);
          cons.push(` lo_${n}: ${x} - ${num(b0)} ${n} >= 0`, ` hi_${n}: ${x} - ${num(hi)} ${n} <= 0`);
          gpuTerms.push(`${tp} ${n}`);
          loadTerms.push(x);
          ints.push(n);
        }
      }
    }
    if (L > 0) {
      if (!loadTerms.length) throw new MilpError(`pool ${pool.id}: no (tp, clock) can serve its load mix within SLO`, false);
      cons.push(` load_${pi}: ${loadTerms.join(' + ')} >= ${num(L)}`);
    }
  });
  if (!cols.length) return { lp: '', cols };
  cons.push(` gpus: ${gpuTerms.join(' + ')} <= ${input.gpus}`);
  const lp = ['Minimize', ' obj: ' + joinTerms(obj), 'Subject To', ...cons, 'Bounds', ...cols.map((c) => ` ${c.x} >= 0`), 'General', ' ' + ints.join(' '), 'End'].join('\n');
  return { lp, cols };
}

function joinTerms(ts: string[]): string {
  return ts.map((t, i) => (i === 0 ? t : t.startsWith('-') ? `- ${t.slice(1)}` : `+ ${t}`)).join(' ');
}

export function solveEq1(highs: HighsLike, input: Eq1Input): Eq1Result {
  const t0 = performance.now();
  const { lp, cols } = buildEq1(input);
  if (!cols.length) return { status: 'Empty', feasible: true, config: [], energy: 0, solveMs: performance.now() - t0, variables: 0 };
  let sol;
  try {
    sol = highs.solve(lp, { time_limit: input.timeLimitS ?? 10, mip_rel_gap: input.mipRelGap ?? 1e-4, output_flag: false });
  } catch (err) {
    throw new MilpError(`HiGHS failed: ${(err as Error).message}`, true, { cause: err });
  }
  const solveMs = performance.now() - t0;
  if (sol.Status !== 'Optimal') {
    return { status: sol.Status, feasible: false, config: [], energy: NaN, solveMs, variables: cols.length * 2 };
  }
  const config: Eq1Group[] = [];
  let energy = 0;
  for (const c of cols) {
    const n = Math.round(sol.Columns[c.n]?.Primal ?? 0);
    const x = sol.Columns[c.x]?.Primal ?? 0;
    if (n <= 0) continue;
    const powerW = c.a + (c.slope * x) / n;
    energy += n * powerW * input.epochS;
    config.push({ pool: c.pool, tp: c.tp, clockMhz: c.clockMhz, count: n, loadPerInstance: x / n, powerW });
  }
  return { status: sol.Status, feasible: true, config, energy, solveMs, variables: cols.length * 2 };
}
