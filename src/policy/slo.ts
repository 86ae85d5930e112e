/**
 * Request-type thresholds and SLOs (paper Table IV), and a request's SLO and TTFT deadline under a cluster's
 * settings. The Table IV defaults live in src/model (the profile generator needs them too); re-exported here so
 * policy callers have one import. The live actors (intake, gateway, instance manager) and the simulator call
 * these same functions, with the cluster config's `slo:` and `thresholds:` (SloSettings).
 */
import { inputClassOf, type LengthClass, type RequestType } from '../../protocols/request-types.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import { DEFAULT_THRESHOLDS, TBT_SLO_MS, TTFT_SLO_MS, promptTtftSloMs } from '../model/request-types.ts';
import type { ClassThresholds } from '../model/types.ts';

export { DEFAULT_THRESHOLDS, DEFAULT_REQUEST_TYPES, TTFT_SLO_MS, TBT_SLO_MS, FLAT_TTFT_SLO_TOKENS, promptTtftSloMs } from '../model/request-types.ts';
export type { ClassThresholds, RequestTypeSpec } from '../model/types.ts';

/**
 * A cluster's SLOs and class thresholds: the shape of the cluster config's `slo:` and `thresholds:` sections
 * (actors/common/config.ts), so a ClusterConfig is one.
 */
export interface SloSettings {
  slo: {
    /** p99 TTFT SLO by input class, ms. */
    ttftMs: Readonly<Record<LengthClass, number>>;
    /** p99 TBT SLO, ms (every class). */
    tbtMs: number;
  };
  thresholds: {
    /** exclusive upper bounds of input S and M, inclusive of L, tokens. */
    input: Readonly<Record<LengthClass, number>>;
    /** exclusive upper bounds of output S and M, tokens (L is unbounded). */
    output: Readonly<{ S: number; M: number }>;
  };
}

/** Table IV's SLOs and thresholds (the cluster config's defaults). */
export const DEFAULT_SLO_SETTINGS: SloSettings = Object.freeze({
  slo: Object.freeze({ ttftMs: TTFT_SLO_MS, tbtMs: TBT_SLO_MS }),
  thresholds: Object.freeze({
    input: Object.freeze({ ...DEFAULT_THRESHOLDS.inputUpper }),
    output: Object.freeze({ S: DEFAULT_THRESHOLDS.outputUpper.S, M: DEFAULT_THRESHOLDS.outputUpper.M }),
  }),
});

/** A request's SLO: p99 TTFT and TBT, ms. */
export interface RequestSlo {
  ttftMs: number;
  tbtMs: number;
}

/** The settings' class thresholds, as classifyRequest takes them. */
export function thresholdsOf(s: Pick<SloSettings, 'thresholds'>): ClassThresholds {
  const { input, output } = s.thresholds;
  return {
    inputUpper: { S: input.S, M: input.M, L: input.L },
    outputUpper: { S: output.S, M: output.M, L: Number.POSITIVE_INFINITY },
  };
}

/** The settings with every SLO multiplied by `scale` (the simulator's sloScale); the same object at 1. */
export function scaledSlo<T extends SloSettings>(s: T, scale: number): T {
  if (scale === 1) return s;
  const t = s.slo.ttftMs;
  return { ...s, slo: { ttftMs: { S: t.S * scale, M: t.M * scale, L: t.L * scale }, tbtMs: s.slo.tbtMs * scale } };
}

/** The SLO (p99 TTFT of its input class, TBT) of a type under these settings. */
export function sloOf(t: RequestType, s: Pick<SloSettings, 'slo'>): RequestSlo {
  return { ttftMs: s.slo.ttftMs[inputClassOf(t)], tbtMs: s.slo.tbtMs };
}

/**
 * The SLO of a request of type `t` with `inputTokens` prompt tokens: its type's, the TTFT scaled with a prompt
 * past Table IV's 8,192 tokens (promptTtftSloMs: the L class's prefill pace instead of its flat TTFT).
 */
export function requestSloOf(t: RequestType, inputTokens: number, s: Pick<SloSettings, 'slo'>): RequestSlo {
  const base = sloOf(t, s);
  return { ttftMs: promptTtftSloMs(base.ttftMs, inputTokens), tbtMs: base.tbtMs };
}

/** A request past classification: its type, SLO and TTFT deadline are set. */
export type ClassifiedRequest = InferenceRequest & Required<Pick<InferenceRequest, 'type' | 'slo' | 'ttftDeadlineMs'>>;

/**
 * The request as classification leaves it: its type, its SLO (requestSloOf) and its TTFT deadline (arrival +
 * TTFT SLO) travel with it from here on (every later stage reads them from the request, never from config).
 */
export function withSlo(req: InferenceRequest, type: RequestType, s: Pick<SloSettings, 'slo'>): ClassifiedRequest {
  const slo = requestSloOf(type, req.inputTokens, s);
  // a copy, then its new members (Node 20's V8 adds a member to a spread's copy on its slow path: ~2 us per request)
  const out = Object.assign({}, req) as ClassifiedRequest;
  out.type = type;
  out.slo = slo;
  out.ttftDeadlineMs = req.arrivalMs + slo.ttftMs;
  return out;
}
