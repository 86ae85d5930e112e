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
import { DEFAULT_HEADROOM, type InstanceConfig, type TpDegree } from '../../src/policy/types.ts';
import { overheadTable, reconfigurationCost } from '../../src/policy/sharding.ts';
import { planPoolShards, type PoolShardInput, type PoolShardDecision } from '../../src/policy/pool-shards.ts';
import { MilpPlanner } from '../../src/runtime/milp-planner.ts';
import { maxClockOf } from '../../src/policy/energy.ts';
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

export { planPoolShards, reshardSteps, type PoolShardInput, type PoolShardDecision, type StaggerUnit } from '../../src/policy/pool-shards.ts';

let milp: MilpPlanner | undefined;
/** One MILP worker per process (started on the first solve). */
export function milpPlanner(): MilpPlanner {
  return (milp ??= new MilpPlanner());
}
export async function closeMilpPlanner(): Promise<void> {
  await milp?.close();
  milp = undefined;
}

/**
 * `planner: milp`: the pool's split from Eq. 1 solved exactly by HiGHS (worker thread, `deadlineMs`) at
 * max clock (the frequency is the instance's decision), taken by the heuristic's rule (the gain over the
 * epoch pays the overhead table's cost, or the current split cannot carry the load). On a timeout, a
 * worker failure or an infeasible MILP the heuristic's decision stands (inputs.planner says which ran).
 */
export async function planPoolShardsMilp(i: PoolShardInput, deadlineMs: number, planner: MilpPlanner = milpPlanner()): Promise<PoolShardDecision | undefined> {
  const h = planPoolShards(i);
  if (!h) return undefined;
  const fmt = (c: InstanceConfig[]) => c.map((x) => `${x.count}xTP${x.tp}`).join('+') || 'none';
  const fallback = (why: string): PoolShardDecision => ({ ...h, summary: `${h.summary} [heuristic: ${why}]`, inputs: { ...h.inputs, planner: 'heuristic', milpFallback: why } });
  if (!Object.values(i.load).some((x) => (x ?? 0) > 0)) return fallback('no load');
  let r;
  try {
    r = await planner.solve({ profile: i.profile, pools: [{ id: 'pool', loadByType: i.load }], gpus: i.gpus, epochS: i.epochS, clocks: [maxClockOf(i.profile)] }, deadlineMs);
  } catch (err) {
    return fallback((err as Error).message);
  }
  if (!r.feasible) return fallback(`MILP ${r.status}`);
  const counts = new Map<TpDegree, number>();
  for (const g of r.config) if (g.count > 0) counts.set(g.tp, (counts.get(g.tp) ?? 0) + g.count);
  const target: InstanceConfig[] = [...counts].sort((a, b) => b[0] - a[0]).map(([tp, count]) => ({ tp, count }));
  const current = h.inputs.current as InstanceConfig[];
  const same = fmt([...current].sort((a, b) => b.tp - a.tp)) === fmt(target);
  // canonical placement of the current instances (packed in TP order) for the overhead-table cost
  let next = 0;
  const placed = [...current].sort((a, b) => b.tp - a.tp).flatMap((c) => Array.from({ length: c.count }, (_, k) => ({ id: `c${c.tp}-${k}`, tp: c.tp, gpus: Array.from({ length: c.tp }, () => next++) })));
  const costJ = same ? 0 : reconfigurationCost(i.profile, placed, target, overheadTable(), i.gpusPerServer ?? 8).costJ;
  const currentEnergyJ = Number(h.inputs.currentEnergyJ);
  const gain = currentEnergyJ - r.energy;
  const currentFeasible = h.inputs.currentFeasible === true;
  const take = !same && (!currentFeasible || gain > costJ);
  const reason = same ? 'the MILP optimum is the current split' : !currentFeasible ? 'the current split cannot carry the load within SLO'
    : take ? `saves ${gain.toFixed(0)} J over ${i.epochS} s > reconfiguration cost ${costJ.toFixed(0)} J` : `gain ${gain.toFixed(0)} J does not pay the reconfiguration cost ${costJ.toFixed(0)} J`;
  return {
    take,
    target,
    summary: `${fmt(current)} -> ${fmt(target)} (MILP): ${reason}`,
    inputs: {
      ...h.inputs, planner: 'milp', targetEnergyJ: r.energy, costJ, feasible: r.feasible,
      milp: { status: r.status, solveMs: r.solveMs, variables: r.variables, config: r.config },
      heuristic: { target: h.target, targetEnergyJ: h.inputs.targetEnergyJ, take: h.take },
    },
  };
}
