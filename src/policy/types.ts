/**
 * Contracts of the decision functions in src/policy. Every policy is a pure function of its inputs
 * (state, profile, SLOs, time passed in): no I/O, no wall clock, no randomness without a seed. The live
 * actors and the simulator call exactly these.
 */
import type { RequestType } from '../../protocols/request-types.ts';

export type TpDegree = 2 | 4 | 8;

/** Offered load by request type, requests/s. */
export type LoadByType = Partial<Record<RequestType, number>>;

export interface PoolSpec {
  id: string; // e.g. 'pool-SS' or 'pool-LL'
  /** request types this pool serves (after merges it may serve several). */
  types: RequestType[];
}

/** Cluster-level plan: servers (8-GPU nodes) per pool. */
export interface ClusterPlan {
  pools: { pool: PoolSpec; servers: number; forecastLoad: LoadByType }[];
  /** pools merged away this epoch, and into which. */
  merges: { from: string; into: string }[];
  totalServers: number;
  /** why: the per-type PL, ML, floor(PL/ML) and forwarded remainder. */
  rationale: { type: RequestType; peakLoad: number; maxLoadPerServer: number; servers: number; forwarded: number }[];
}

export interface InstanceConfig {
  tp: TpDegree;
  count: number;
}

export interface ShardPlan {
  target: InstanceConfig[];
  /** predicted energy over the epoch, J, of current and target configurations at max clock. */
  currentEnergyJ: number;
  targetEnergyJ: number;
  /** reconfiguration cost in J (overhead table) and whether gain > cost. */
  costJ: number;
  take: boolean;
  reason: string;
}

/** One instance as a dispatcher sees it. */
export interface InstanceView {
  id: string;
  tp: TpDegree;
  clockMhz: number;
  healthy: boolean;
  /** current offered load, req/s, by type (EWMA). */
  load: LoadByType;
  queued: number;
  running: number;
  /** requests in flight (running + queued) by (predicted) type, counts; optional (dispatch apportions running + queued by `load` without it). */
  inflightByType?: LoadByType;
  /** prompt tokens admitted but not yet prefilled at the instance (queued + running without a first token); optional. */
  pendingPrefillTokens?: number;
}

export interface ClockDecision {
  clockMhz: number;
  /** predicted instance power at that clock, W. */
  powerW: number;
  feasible: boolean; // false => no clock meets the SLO; the max clock is returned and the emergency path applies
  reason: string;
}

/**
 * Fraction of an instance's SLO capacity kept free for bursts by dispatch, the clock epoch and the sharding
 * plan (the profile's max load is a steady-state p99 figure; arrivals are bursty). The live actors
 * (config `policy.headroom`) and the simulator use this default. Unitless, [0, 1); default 0.2.
 */
export const DEFAULT_HEADROOM = 0.2;

/** Emergency ladder steps, in the paper's order. */
export const EMERGENCY_STEPS = ['reorder', 'max_clock', 'move_to_peers', 'reject'] as const;
export type EmergencyStep = (typeof EMERGENCY_STEPS)[number];
