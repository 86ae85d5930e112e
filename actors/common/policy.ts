/**
 * Adapters of the actors' inputs (instance statuses) to src/policy's dispatch, and the process's MILP worker.
 * A request's classification, SLO and TTFT deadline are src/policy's (slo.ts, classify.ts), which the actors
 * call with their cluster config (a ClusterConfig is a SloSettings).
 */
import type { InferenceRequest, RequestType } from '../../protocols/index.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { dispatchRequest, type DispatchView } from '../../src/policy/dispatch.ts';
import { DEFAULT_HEADROOM, type TpDegree } from '../../src/policy/types.ts';
import { MilpPlanner } from '../../src/runtime/milp-planner.ts';

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
