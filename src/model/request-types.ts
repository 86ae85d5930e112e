/**
 * The nine request types with their token thresholds and SLOs (paper Table IV), and the representative
 * lengths used to profile each type.
 */
import { REQUEST_TYPES, requestTypeOf, type LengthClass, type RequestType } from '../../protocols/request-types.ts';
import type { ClassThresholds, RequestTypeSpec } from './types.ts';

/**
 * Table IV: input S < 256, M < 1024, L <= 8192 tokens; output S < 100, M < 350, L >= 350 (unbounded).
 * inputUpper/outputUpper are exclusive upper bounds for S and M; L's input bound (8192) is inclusive.
 */
export const DEFAULT_THRESHOLDS: ClassThresholds = Object.freeze({
  inputUpper: Object.freeze({ S: 256, M: 1024, L: 8192 }),
  outputUpper: Object.freeze({ S: 100, M: 350, L: Number.POSITIVE_INFINITY }),
}) as ClassThresholds;

/** TTFT SLO (p99) by input class, ms (Table IV). */
export const TTFT_SLO_MS: Readonly<Record<LengthClass, number>> = Object.freeze({ S: 250, M: 400, L: 2000 });
/** TBT SLO (p99), ms, all classes (Table IV). */
export const TBT_SLO_MS = 100;

/** The longest prompt Table IV's flat TTFT SLOs cover: its L class ends at 8,192 tokens. */
export const FLAT_TTFT_SLO_TOKENS = 8192;

/**
 * One request's TTFT SLO, ms: its input class's (`classSloMs`, Table IV) up to FLAT_TTFT_SLO_TOKENS prompt tokens;
 * beyond, the same prefill pace as the L class's longest prompt (2 s per 8,192 tokens, ~4.1k tokens/s), so a 32k
 * prompt has 8 s and a 128k one 31 s. Table IV's flat 2 s cannot be met past ~20-30k tokens on an idle TP8 H100
 * instance at max clock (prefill grows faster than linearly with the prompt); a user who sends a book waits longer
 * for its first token than one who sends a page, and this SLO asks for the same prefill throughput from both.
 * Prompts within the table's range are unchanged (S/M prompts never reach it).
 */
export function promptTtftSloMs(classSloMs: number, inputTokens: number): number {
  return inputTokens > FLAT_TTFT_SLO_TOKENS ? (classSloMs * inputTokens) / FLAT_TTFT_SLO_TOKENS : classSloMs;
}

/**
 * Representative (input, output) tokens per type: the mean over the Azure LLM inference trace 2023
 * (conversation, 19,366 rows; rows with input > 8192 dropped) of the rows of that type.
 * Counts: SS 693, SM 1898, SL 10, MS 3680, MM 2016, ML 1498, LS 2921, LM 1699, LL 4950.
 */
const REPRESENTATIVE: Readonly<Record<RequestType, [number, number]>> = Object.freeze({
  SS: [181, 55], SM: [168, 170], SL: [181, 766],
  MS: [446, 78], MM: [455, 122], ML: [985, 421],
  LS: [2978, 61], LM: [2160, 152], LL: [1111, 428],
});

export const DEFAULT_REQUEST_TYPES: RequestTypeSpec[] = REQUEST_TYPES.map((type) => ({
  type,
  inputTokens: REPRESENTATIVE[type][0],
  outputTokens: REPRESENTATIVE[type][1],
  ttftSloMs: TTFT_SLO_MS[type[0] as LengthClass],
  tbtSloMs: TBT_SLO_MS,
}));

export class RequestLengthError extends Error {
  override name = 'RequestLengthError';
  readonly retryable = false;
}

function classOf(n: number, upper: Record<LengthClass, number>, lastInclusive: boolean): LengthClass | undefined {
  if (n < upper.S) return 'S';
  if (n < upper.M) return 'M';
  if (lastInclusive ? n <= upper.L : n < upper.L) return 'L';
  return undefined;
}

/**
 * The request type of a request with these (predicted) lengths. Inputs above the L bound (8192 by default)
 * are an error: no pool of the paper serves them. Output has no upper bound.
 */
export function classifyLengths(inputTokens: number, outputTokens: number, thresholds: ClassThresholds = DEFAULT_THRESHOLDS): RequestType {
  if (!(inputTokens >= 0) || !(outputTokens >= 0)) {
    throw new RequestLengthError(`token counts must be >= 0, got input=${inputTokens} output=${outputTokens}`);
  }
  const i = classOf(inputTokens, thresholds.inputUpper, true);
  if (!i) throw new RequestLengthError(`input of ${inputTokens} tokens exceeds the longest class (<= ${thresholds.inputUpper.L})`);
  const o = classOf(outputTokens, { ...thresholds.outputUpper, L: Number.POSITIVE_INFINITY }, true) as LengthClass;
  return requestTypeOf(i, o);
}

/**
 * Representative (input, output) tokens per type from a workload's requests: the mean of the rows of each type
 * (rounded), so a profile describes the lengths that workload sends (the defaults are the conversation trace's).
 * Rows whose input exceeds the longest class are dropped (counted); a type with no row keeps `base`'s lengths.
 */
export function representativeTypes(
  rows: Iterable<{ inputTokens: number; outputTokens: number }>,
  base: RequestTypeSpec[] = DEFAULT_REQUEST_TYPES,
  thresholds: ClassThresholds = DEFAULT_THRESHOLDS,
): { types: RequestTypeSpec[]; counts: Record<RequestType, number>; dropped: number } {
  const sum = new Map<RequestType, { n: number; i: number; o: number }>();
  let dropped = 0;
  for (const r of rows) {
    let t: RequestType;
    try {
      t = classifyLengths(r.inputTokens, r.outputTokens, thresholds);
    } catch (err) {
      if (err instanceof RequestLengthError) { dropped++; continue; }
      throw err;
    }
    const s = sum.get(t) ?? { n: 0, i: 0, o: 0 };
    s.n++; s.i += r.inputTokens; s.o += r.outputTokens;
    sum.set(t, s);
  }
  const counts = Object.fromEntries(REQUEST_TYPES.map((t) => [t, sum.get(t)?.n ?? 0])) as Record<RequestType, number>;
  const types = base.map((spec) => {
    const s = sum.get(spec.type);
    if (!s) return { ...spec };
    return { ...spec, inputTokens: Math.max(1, Math.round(s.i / s.n)), outputTokens: Math.max(1, Math.round(s.o / s.n)) };
  });
  return { types, counts, dropped };
}
