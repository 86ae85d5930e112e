/**
 * The DynamoLLM paper's (HPCA 2025) Tables I and II, transcribed (Wh, Llama2-70B on H100; null = the
 * configuration violates the SLO). Columns: TP2/TP4/TP8 x 0.8/1.2/1.6/2.0 GHz. Source: the camera-ready paper,
 * as transcribed in shared/data/dynamollm_paper/FACTS.md. Facts quoted for comparison only.
 */
import type { RequestType } from '../../protocols/request-types.ts';

export const PAPER_TP = [2, 4, 8] as const;
/** the paper's clock columns (GHz 0.8/1.2/1.6/2.0); 2.0 GHz is the H100's 1980 MHz max. */
export const PAPER_TABLE_CLOCKS = [800, 1200, 1600, 1980] as const;

type Row = (number | null)[]; // 12 values, TP-major
const _ = null;

export const TABLE_I: Record<RequestType, Row> = {
  SS: [_, 0.77, 0.97, 1.03, 0.94, 0.79, 0.91, 1.01, 1.35, 1.19, 1.29, 1.49],
  SM: [_, 2.78, 3.45, 3.68, 3.39, 2.82, 3.37, 3.81, 4.55, 4.15, 4.43, 4.74],
  SL: [_, _, _, _, 4.84, 4.17, 4.97, 5.52, 6.37, 5.62, 5.59, 6.95],
  MS: [_, _, 1.02, 1.09, _, 1.08, 1.07, 1.20, 1.51, 1.29, 1.34, 1.73],
  MM: [_, _, _, _, _, 4.23, 3.91, 4.08, 5.34, 4.39, 4.56, 5.44],
  ML: [_, _, _, _, _, 4.99, 4.66, 4.53, 6.86, 5.79, 6.52, 7.12],
  LS: [_, _, _, _, _, 1.51, 1.64, 1.76, 2.55, 2.53, 2.83, 2.94],
  LM: [_, _, _, _, _, _, _, _, _, 7.71, 8.81, 9.17],
  LL: [_, _, _, _, _, _, _, _, _, 12.99, 11.89, 13.21],
};
/** Table I's load: "medium load (2000 tokens/s)". */
export const TABLE_I_TOKENS_PER_S = 2000;

/** Table II: MM by load (tokens/s). */
export const TABLE_II: { tokensPerS: number; label: string; row: Row }[] = [
  { tokensPerS: 650, label: 'low', row: [_, _, 3.41, 3.75, 3.44, 2.93, 3.71, 3.73, 4.49, 3.76, 4.52, 4.64] },
  { tokensPerS: 2000, label: 'medium', row: [_, _, _, _, _, 4.23, 3.91, 4.08, 5.34, 4.39, 4.56, 5.44] },
  { tokensPerS: 4000, label: 'high', row: [_, _, _, _, _, _, 4.22, 4.13, 5.86, 5.24, 5.42, 6.62] },
];

/** (tp, clock) of column i. */
export function columnOf(i: number): { tp: number; clockMhz: number } {
  return { tp: PAPER_TP[Math.floor(i / 4)]!, clockMhz: PAPER_TABLE_CLOCKS[i % 4]! };
}
