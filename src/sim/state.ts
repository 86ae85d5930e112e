/**
 * The simulated cluster's state (./engine.ts): its instances, pools and requests, the policies' knobs, and the
 * constants the live managers' defaults give it.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import type { PerfModel } from '../model/types.ts';
import type { SleepLevel } from '../model/sleep.ts';
import type { BatchingCore } from '../engine/core.ts';
import type { LoadByType, TpDegree } from '../policy/types.ts';
import type { HighsLike } from '../policy/milp.ts';
import { overheadTable } from '../policy/sharding.ts';
import { LIVE_INSTANCE_DEFAULTS, type InstanceBrain } from './instance-brain.ts';
import type { InstanceEffect, InstanceEvent, InstanceMachineConfig, LoadWindow } from '../policy/machines/instance.ts';
import type { SimPoolLeader } from './pool-leader.ts';
import type { TraceRecord } from './trace.ts';
import type { PolicyName, SimCosts, SimEpochs, SimOptions } from './types.ts';

export const DEFAULT_EPOCHS: SimEpochs = { clusterS: 1800, poolS: 300, instanceS: 5 };
export const DEFAULT_COSTS: SimCosts = { instanceStartS: 300, tauMs: 50, resyncMs: 2000, clockChangeMs: 65, instanceStopS: overheadTable().instanceStopS };

/** Which knobs a policy turns (the paper's baselines are MultiPool plus one knob). */
export interface PolicyKnobs {
  pools: 'single' | 'per-type';
  dynamicInstances: boolean;
  dynamicShards: boolean;
  dynamicClock: boolean;
  emergency: boolean;
  oracle: boolean;
}

export const POLICY_KNOBS: Record<PolicyName, PolicyKnobs> = {
  'single-pool': { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: false, emergency: false, oracle: false },
  'multi-pool': { pools: 'per-type', dynamicInstances: false, dynamicShards: false, dynamicClock: false, emergency: false, oracle: false },
  'scale-inst': { pools: 'per-type', dynamicInstances: true, dynamicShards: false, dynamicClock: false, emergency: false, oracle: false },
  'scale-shard': { pools: 'per-type', dynamicInstances: false, dynamicShards: true, dynamicClock: false, emergency: false, oracle: false },
  'scale-freq': { pools: 'per-type', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: false, oracle: false },
  dynamollm: { pools: 'per-type', dynamicInstances: true, dynamicShards: true, dynamicClock: true, emergency: true, oracle: false },
  oracle: { pools: 'per-type', dynamicInstances: true, dynamicShards: true, dynamicClock: true, emergency: true, oracle: true },
};

export const TYPE_INDEX = Object.fromEntries(REQUEST_TYPES.map((t, i) => [t, i])) as Record<RequestType, number>;

export interface LoadTemplate {
  /** per type, arrivals per minute bin (by predicted type). */
  perMin: Record<RequestType, Float64Array>;
  durationMs: number;
  count: number;
}

/**
 * The context the simulator serves when SimOptions.maxContext is not given: the model's, but at least the
 * paper's longest input class (8192 tokens: Table IV serves prompts up to 8192 on Llama2-70B, whose published
 * context is 4096; `maxContext: 4096` is the strict reading).
 */
export const DEFAULT_CONTEXT_FLOOR = 8192;

export interface EngineInputs {
  opts: SimOptions;
  profile: Profile;
  perf: PerfModel;
  /** a fresh iterator over the trace (already rate-scaled). */
  records: () => AsyncIterable<TraceRecord> | Iterable<TraceRecord>;
  /** carbon intensity gCO2/kWh at a time, s. */
  carbonAt: (tS: number) => number;
  onProgress?: (fraction: number) => void;
  /** a loaded HiGHS instance (the oracle's Eq. 1 solver). */
  highs?: HighsLike;
  /** every transition of every instance machine (step fidelity), with its configuration: tests replay them. */
  onInstanceStep?: (instance: string, cfg: InstanceMachineConfig, ev: InstanceEvent, now: number, effects: InstanceEffect[]) => void;
  /** each pool machine's re-shard decision (take or keep) with the inputs it decided on (the live pool leader logs the same event). */
  onPoolDecision?: (pool: string, now: number, event: { summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> }) => void;
  /** each request served (step fidelity): its arrival, true type and TTFT, ms (the twin check's per-request log). */
  onRequest?: (r: { arrivalMs: number; type: RequestType; ttftMs: number }) => void;
  /** each gap between a request's tokens after its first (step fidelity), with the request's arrival and true type, ms (the twin check's per-request TBT). */
  onTokenGap?: (r: { arrivalMs: number; type: RequestType; gapMs: number }) => void;
}

/** EWMA window of an instance's offered-load estimate, s (dispatch adds 1/window per request: policy default 0.1). */
export const LOAD_WINDOW_S = 10;
/** the instance machines' time: modelled time, unscaled (InstanceMachineConfig.timeScale). */
export const MACHINE_TIME = { timeScale: 1 } as const;
/** the instance machines' tick (emergency ladder, load rise), ms: the live instance manager's. */
export const BRAIN_TICK_MS = LIVE_INSTANCE_DEFAULTS.tickMs;
/** peers' statuses reach an instance machine this often, ms (the live status interval's default). */
export const PEER_STATUS_MS = 500;
/** how long a pool leader holds a request for a ready instance at most, ms (the live engine.healthDeadlineMs default). */
export const LIVE_HEALTH_DEADLINE_MS = 600_000;

export type RequestTypeSpecLike = { ttftSloMs: number; tbtSloMs: number };

export interface SimInstance {
  id: string;
  pool: SimPool;
  tp: TpDegree;
  clockMhz: number;
  /** stopping: drained, its engine process exiting (costs.instanceStopS); its GPUs are held until it is stopped. */
  state: 'starting' | 'active' | 'draining' | 'stopping' | 'stopped';
  readyAtMs: number;
  /** stopping: when its engine has exited and its GPUs are free, ms. */
  stopAtMs?: number;
  /** when its pool drained it, ms (./drain-migration.ts DrainLog: the time to its GPUs free). */
  drainAtMs?: number;
  core?: BatchingCore;
  inHeap: boolean;
  /** the baselines' dispatch cap (step, SimOptions.dispatch 'least-loaded'): offered load by type (req/s), exponentially decayed with LOAD_WINDOW_S; at `loadAtMs`. */
  load: Float64Array;
  loadAtMs: number;
  /** the oracle's clock: the clock's view of the instance machine's load (policy closeWindow) at its last epoch, its recent peak. */
  clockPrev?: LoadByType;
  outstanding: number;
  /** fluid: energy J. */
  energyJ: number;
  /** fluid: the part of energyJ at the instance's idle power (zero load at its clock), J. */
  idleJ?: number;
  /** an overlap re-shard's new instance: built beside the ones it replaces, on their GPUs (no extra power or GPU-hours while starting). */
  reshard: boolean;
  /** the node and its GPUs the pool machine started it on (absent: the oracle's layout, placed by no pool machine). */
  node?: string;
  gpuIds?: number[];
  /** when its process started (its statuses' startedMs), ms. */
  startedMs: number;
  /** fluid (no instance machine): serving once active. */
  served?: boolean;
  /** fluid: its share of its pool's arrivals since it started, by type (its statuses' cumulative admittedByType). */
  admittedSum?: Float64Array;
  /** step fidelity: its machine's set_clocks in flight, in order (the live actor applies them one after another), and when the last takes effect, ms. */
  clockChain?: { mhz: number; why: string; inputs: Record<string, unknown> }[];
  clockFreeAtMs?: number;
  /** step fidelity: the instance manager (the live instance machine) of this instance. */
  brain?: InstanceBrain;
  /** when its machine last got its peers' statuses, ms. */
  peersAtMs?: number;
  /**
   * fluid: the instance machine's load estimate (policy LoadWindow: its EWMA, its share of its pool's arrivals since its
   * epoch began), kept by the machine's own rules (countArrivals, closeWindow; read by currentLoad and projectedLoad).
   * Step fidelity: its machine's state (`brain.s`).
   */
  window?: LoadWindow;
  /**
   * its engine in sleep mode (SimOptions.sleepStandby, ./sleep-standby.ts, carrying out its machine's engine_sleep and
   * engine_wake): falling (weights leaving the GPU, until untilMs), asleep (since asleepAtMs), waking (until untilMs);
   * absent: awake. Whether the instance admits is its machine's lifecycle ('sleeping' from the sleep command on).
   */
  sleep?: { phase: 'falling' | 'asleep' | 'waking'; level: SleepLevel; sinceMs: number; untilMs?: number; asleepAtMs?: number };
}

/** fluid: the active instances of a pool with one (TP, clock), and their share weight (SLO capacity at max clock for the tick's mix). */
export interface FluidGroup {
  tp: TpDegree;
  clock: number;
  insts: SimInstance[];
  cap: number;
}

export interface SimPool {
  id: string;
  /** index in the pool order (shorter to longer requests): spill goes to higher orders. */
  order: number;
  types: RequestType[];
  gpus: number;
  instances: SimInstance[];
  /** fluid: the pool's arrival rate by true type, req/s, smoothed over FLUID_POWER_WINDOW_S (power is read at it). */
  smooth?: Float64Array;
  /** fluid: the rate the pool ACCEPTS by true type (after spill), req/s, smoothed over LOAD_WINDOW_S (the dispatch cap's estimate). */
  accepted?: Float64Array;
  /** fluid: the pool's arrival rate by true type, req/s, smoothed over FLUID_LATENCY_WINDOW_S (latency is read at it). */
  latSmooth?: Float64Array;
  /**
   * the pool's leader (./pool-leader.ts): the one pool machine that runs the pool for its whole life (its
   * assignment, its instances' statuses, reconciliation, the re-shard epoch and its units, dispatch at step fidelity).
   */
  leader?: SimPoolLeader<SimInstance>;
  /** an overlap re-shard under way: how long each of its new instances takes to serve (tau x Table VI + resync), ms. */
  overlapMs?: number;
}

export interface ReqState {
  arrivalMs: number;
  /** its TTFT SLO, ms (policy requestSloOf under the run's SLOs: its input class's, scaled with prompts past 8,192 tokens; x sloScale). */
  ttftSloMs: number;
  type: RequestType;
  pred: RequestType;
  /** its predicted output length, tokens (./classifier.ts predTokens; absent: none made). */
  predTokens?: number;
  firstMs: number;
  lastMs: number;
  tbtSum: number;
  tbtN: number;
  inst: SimInstance;
  /** times moved between instances. */
  moves: number;
  /** a drain handed it to a peer (./drain-migration.ts): it continues there as a new leg. */
  continued?: boolean;
}
