/**
 * The one place where actors call src/policy: adapts the actors' inputs (wire messages, config) to the
 * pure policy functions. No decision logic of its own beyond the GPU mapping of the re-shard steps.
 */
import { DynError, type InferenceRequest, type RequestType } from '../../protocols/index.ts';
import type { OnlineOutputPredictor } from '../../src/policy/predictor.ts';
import { inputClassOf } from '../../protocols/request-types.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { classifyRequest } from '../../src/policy/classify.ts';
import { dispatchRequest, type DispatchView } from '../../src/policy/dispatch.ts';
import { DEFAULT_HEADROOM, type TpDegree } from '../../src/policy/types.ts';
import { MilpPlanner } from '../../src/runtime/milp-planner.ts';
import type { ClassThresholds } from '../../src/model/types.ts';
import { promptTtftSloMs } from '../../src/policy/slo.ts';
import type { ClusterConfig } from './config.ts';

export function thresholdsOf(c: ClusterConfig): ClassThresholds {
  return {
    inputUpper: { S: c.thresholds.input.S, M: c.thresholds.input.M, L: c.thresholds.input.L },
    outputUpper: { S: c.thresholds.output.S, M: c.thresholds.output.M, L: Number.POSITIVE_INFINITY },
  } as ClassThresholds;
}

/** The SLO (p99 TTFT by input class, TBT) of a type under this config. */
export function sloOf(t: RequestType, c: ClusterConfig): { ttftMs: number; tbtMs: number } {
  return { ttftMs: c.slo.ttftMs[inputClassOf(t)], tbtMs: c.slo.tbtMs };
}

/**
 * The SLO of a request not yet classified, as withSlo will set it: the TTFT SLO of its prompt's input class
 * (promptTtftSloMs past 8,192 tokens; a prompt past the L bound gets the L class's), and the TBT SLO. The output
 * class (which the predictor decides) changes neither.
 */
export function promptSloOf(inputTokens: number, c: ClusterConfig): { ttftMs: number; tbtMs: number } {
  const t = classifyRequest(Math.min(inputTokens, c.thresholds.input.L), 'S', thresholdsOf(c));
  return { ttftMs: promptTtftSloMs(sloOf(t, c).ttftMs, inputTokens), tbtMs: c.slo.tbtMs };
}

/** A request past classification: its type, SLO and TTFT deadline are set. */
export type ClassifiedRequest = InferenceRequest & Required<Pick<InferenceRequest, 'type' | 'slo' | 'ttftDeadlineMs'>>;

/** The request with its classification, or classified here (a request admitted directly: max_tokens as the output). */
export function classified(req: InferenceRequest, c: ClusterConfig): ClassifiedRequest {
  if (req.type && req.slo && req.ttftDeadlineMs !== undefined) return req as ClassifiedRequest;
  return withSlo(req, req.type ?? classifyForRecord(req, c), c);
}

/**
 * The request as classification leaves it: its type, its type's SLO and its TTFT deadline travel with it
 * from here on (every later stage reads them from the request, never from config).
 */
export function withSlo(req: InferenceRequest, type: RequestType, c: ClusterConfig): ClassifiedRequest {
  // a prompt past Table IV's 8,192 tokens gets the L class's prefill pace instead of its flat TTFT (promptTtftSloMs)
  const base = sloOf(type, c);
  const slo = { ...base, ttftMs: promptTtftSloMs(base.ttftMs, req.inputTokens) };
  return { ...req, type, slo, ttftDeadlineMs: req.arrivalMs + slo.ttftMs };
}

/**
 * Intake's classification (paper Sec. IV-A): the input class from the prompt, the output class from the
 * online predictor (a max_tokens below the S bound is S whatever it predicts). The cluster manager's intake
 * and the gateway's own routing (actors/gateway/router.ts) call it. A request no class fits is invalid.
 */
export function classifyIntake(r: InferenceRequest, predictor: OnlineOutputPredictor, c: ClusterConfig): { type: RequestType; predicted: number } {
  const p = predictor.predict({ inputTokens: r.inputTokens, maxTokens: r.maxTokens, model: r.model, tenant: r.tenant });
  try {
    return { type: classifyRequest(r.inputTokens, r.maxTokens < c.thresholds.output.S ? 'S' : p.outputClass, thresholdsOf(c)), predicted: Math.min(p.tokens, r.maxTokens) };
  } catch (err) {
    throw new DynError('invalid_request', (err as Error).message, { retryable: false });
  }
}

/** Type of a request that reached an instance without one (direct admission): max_tokens as the output. */
export function classifyForRecord(req: InferenceRequest, c: ClusterConfig): RequestType {
  try {
    return classifyRequest(Math.min(req.inputTokens, c.thresholds.input.L), req.predictedOutputTokens ?? req.maxTokens, thresholdsOf(c));
  } catch {
    return 'LL';
  }
}

export interface InstanceViewLike {
  id: string;
  tp: number;
  clockMhz: number;
  healthy: boolean;
  load: Partial<Record<RequestType, number>>;
  queued: number;
  running: number;
}

/**
 * Dispatch (policy dispatchRequest, the same function the simulator calls): the instance with least
 * predicted energy under its SLO throughput; when every instance is at its SLO capacity (or there is no
 * profile) the one with the least outstanding work per GPU, where the instance's emergency ladder takes
 * over (the paper's overload path); `atCapacity` says so.
 */
export function pickInstance(req: InferenceRequest, views: InstanceViewLike[], profile: Profile | undefined, types: RequestType[], headroom = DEFAULT_HEADROOM): { id: string; atCapacity: boolean } {
  return dispatchRequest(req, views.map((v) => ({ ...v, tp: v.tp as TpDegree })) as DispatchView[], profile, types, { headroom });
}


let milp: MilpPlanner | undefined;
/** One MILP worker per process (started on the first solve): the pool machine's 'solve' effects (src/policy/pool-shards-milp.ts decides on their outcome). */
export function milpPlanner(): MilpPlanner {
  return (milp ??= new MilpPlanner());
}
export async function closeMilpPlanner(): Promise<void> {
  await milp?.close();
  milp = undefined;
}
