/**
 * The trace-driven cluster simulator. One run = one policy over one trace on a virtual clock.
 *
 * Control plane: the cluster epoch (servers per pool, routing) is the live cluster manager's machine
 * (src/policy/machines/cluster.ts) given the simulator's forecast; the pool epoch (TP mix) is the live pool
 * machine's re-shard decision (./pool-brain.ts), and at step fidelity its dispatch (./pool-leader.ts). The static baselines (single-pool, multi-pool) and the
 * oracle (Eq. 1 with the future known) are the paper's yardsticks, not live managers: their sizing is here.
 * Instances: at step fidelity each instance's manager IS the live instance machine
 * (src/policy/machines/instance.ts through ./instance-brain.ts): admission, queue, engine slots, the load
 * EWMA, the clock and its arbitration, the prefill floor, the emergency ladder and its moves; this file only
 * interprets its effects. Fluid has no per-request events: its clock is the machine's rule (epochLoad,
 * decideClock) on each instance's share of its pool's arrivals.
 * Reconfigurations are charged, not free: a new instance serves only after `instanceStartS` and its GPUs
 * draw loaded-idle power meanwhile; a re-shard makes the new instances ready after tau x Table VI + resync
 * (old instances drain meanwhile); a clock change takes `clockChangeMs` at the old clock.
 * GPUs in no instance draw unloaded idle power (they are powered; the paper counts servers in use).
 *
 * Data plane:
 * - 'step': every instance is a BatchingCore (src/engine/core.ts) stepped on the virtual clock: exact
 *   batching, queueing, TTFT and per-token TBT (TBT kept in a 0.5%-bucket histogram).
 * - 'fluid': per tick, each instance's offered load by type is read against the profile (power and
 *   latency percentiles interpolated from profile cells): latency figures are profile-based estimates. The
 *   dispatch is modelled at the pool level: the SLO cap spills a pool's excess to the next longer pool
 *   (fluidSpill), and under least-outstanding dispatch an instance's busy fraction is the pool's
 *   (./fluid.ts), not the profile's independent-Poisson one.
 * Energy is modelled (src/model, with its calibration), never measured.
 */
import { REQUEST_TYPES, inputClassOf, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import type { PerfModel } from '../model/types.ts';
import { interpolate, latencyWithinSlo, maxLoadOf, idlePowerOf } from '../model/profile.ts';
import { TTFT_SLO_MS, TBT_SLO_MS, promptTtftSloMs } from '../model/request-types.ts';
import { BatchingCore } from '../engine/core.ts';
import type { InstanceConfig, LoadByType, TpDegree } from '../policy/types.ts';
import type { HighsLike } from '../policy/milp.ts';
import { poolBurstWindowMs } from '../policy/pool-shards.ts';
import * as decide from './decide.ts';
import { InstanceBrain, LIVE_INSTANCE_DEFAULTS } from './instance-brain.ts';
import { poolReshardDecision, recordFluidPoolArrivals, recordSimPoolArrivals, type PoolMachineConfig } from './pool-brain.ts';
import { reshardTau, unitsOf, type UnitExecutor } from './reshard-exec.ts';
import { reconfigurationOf } from '../telemetry/reconfiguration.ts';
import { intakePools, routePools, type ClusterMachineConfig } from '../policy/machines/cluster.ts';
import { ClusterBrain, prefixReuseByType } from './cluster-brain.ts';
import { Heap } from './heap.ts';
import { decideClock, epochLoad, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig } from '../policy/machines/instance.ts';
import type { CoreRequest } from '../engine/core-types.ts';
import { LOAD_FLOOR, quantSlot, quantiseLoad } from './quantise.ts';
import { SimPoolLeader, simRequest } from './pool-leader.ts';
import { canServe, leastLoadedUnderCap, leastOutstanding } from './baseline-dispatch.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';
import { fluidConfig, latencyFast, leastLoadedBusyFraction, mixedPowerFast, utilisationFast, type FluidConfig } from './fluid.ts';
import { LogHistogram, percentile } from './metrics.ts';
import { SimClassifier } from './classifier.ts';
import { OracleSolver, staticPools, type PoolLayout } from './yardsticks.ts';
import { forEachRecord, longInputClassBound, overContext, rng, type TraceRecord } from './trace.ts';
import { SERVER_BOOT_S, type Fidelity, type PolicyName, type SimCosts, type SimEpochs, type SimOptions, type SimResult, type LatencyStats } from './types.ts';

export const DEFAULT_EPOCHS: SimEpochs = { clusterS: 1800, poolS: 300, instanceS: 5 };
export const DEFAULT_COSTS: SimCosts = { instanceStartS: 300, tauMs: 50, resyncMs: 2000, clockChangeMs: 65 };

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

const TYPE_INDEX = Object.fromEntries(REQUEST_TYPES.map((t, i) => [t, i])) as Record<RequestType, number>;

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
}

/** EWMA window of an instance's offered-load estimate, s (dispatch adds 1/window per request: policy default 0.1). */
const LOAD_WINDOW_S = 10;
/** the instance machines' tick (emergency ladder, load rise), ms: the live instance manager's. */
const BRAIN_TICK_MS = LIVE_INSTANCE_DEFAULTS.tickMs;
/** peers' statuses reach an instance machine this often, ms (the live status interval's default). */
const PEER_STATUS_MS = 500;
/** how long a pool leader holds a request for a ready instance at most, ms (the live engine.healthDeadlineMs default). */
const LIVE_HEALTH_DEADLINE_MS = 600_000;
/**
 * Oracle clocks target this fraction of the SLO (env SIM_ORACLE_CLOCK_MARGIN for experiments; default 0.9):
 * the profile's p99 cells are steady-state, and the oracle's MILP-sized pools (one TP2 instance for a
 * small type) run so close to them that Poisson bursts in the core push p99 TBT 4-6% over at margin 1.
 */
const sameArr = (a: Float64Array, b: Float64Array) => {
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
};
const ORACLE_CLOCK_SLO_MARGIN = Number(process.env.SIM_ORACLE_CLOCK_MARGIN ?? 0.9);
/** fluid: window of the arrival-rate smoothing that instance power is read at, s (a request occupies its instance for its whole service time, not one tick). */
/**
 * fluid: window of the arrival-rate smoothing that latency is read at, s; default 60. The profile's p99 cells
 * were generated with Poisson arrivals at a MEAN load, so they already hold the Poisson bursts: reading them at
 * a raw 5-s count (as before) counted those bursts twice (a TP8 instance provisioned at 80% of its SLO load sees
 * 5-s counts over 100% in many ticks; scale-freq, whose static pools split evenly, then met the SLO for only
 * 47% of ML requests in the week). 60 s = the forecasts' per-minute granularity.
 */
const FLUID_LATENCY_WINDOW_S = Number(process.env.SIM_FLUID_LATENCY_WINDOW_S ?? 60);
const FLUID_POWER_WINDOW_S = 5; // measured: 5..120 s move the conversation hour's fluid energy by < 1%

type RequestTypeSpecLike = { ttftSloMs: number; tbtSloMs: number };

interface SimInstance {
  id: string;
  pool: SimPool;
  tp: TpDegree;
  clockMhz: number;
  state: 'starting' | 'active' | 'draining' | 'stopped';
  readyAtMs: number;
  core?: BatchingCore;
  inHeap: boolean;
  /** offered load estimate by type (req/s), exponentially decayed with LOAD_WINDOW_S; at `loadAtMs`. */
  load: Float64Array;
  loadAtMs: number;
  /** peak of `load` (per type) in the current and the previous clock epoch: chooseClock provisions for it. */
  peakCur: Float64Array;
  peakPrev: Float64Array;
  outstanding: number;
  /** fluid: energy J. */
  energyJ: number;
  /** fluid: the part of energyJ at the instance's idle power (zero load at its clock), J. */
  idleJ?: number;
  /** a re-shard target: its GPUs are the retiring instances' (no extra power or GPU-hours while starting). */
  reshard: boolean;
  /** instances of the pool this one replaces (drained when it is ready). */
  replaces: SimInstance[];
  gpus?: number[]; // in the pool's GPU space, once placed (./reshard-exec.ts)
  /** step fidelity: the instance manager (the live instance machine) of this instance. */
  brain?: InstanceBrain;
  /** when its machine last got its peers' statuses, ms. */
  peersAtMs?: number;
  /** fluid: arrivals by type since `epochAtMs` (its share of its pool's), and the instance machine's load EWMA. */
  arrived?: Float64Array;
  epochAtMs?: number;
  ewma?: LoadByType;
}

/** fluid: the active instances of a pool with one (TP, clock), and their share weight (SLO capacity at max clock for the tick's mix). */
interface FluidGroup {
  tp: TpDegree;
  clock: number;
  insts: SimInstance[];
  cap: number;
}

interface SimPool {
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
  exec?: UnitExecutor<SimInstance>; // a re-shard under way, unit by unit (reshardExecution 'units')
  /** step fidelity, policy dispatch: the pool leader's machine that dispatches within the pool (./pool-leader.ts). */
  leader?: SimPoolLeader<SimInstance>;
}

interface ReqState {
  arrivalMs: number;
  /** its TTFT SLO, ms (promptTtftSloMs: the class's, scaled with prompts past 8,192 tokens; x sloScale). */
  ttftSloMs: number;
  type: RequestType;
  pred: RequestType;
  firstMs: number;
  lastMs: number;
  tbtSum: number;
  tbtN: number;
  inst: SimInstance;
  /** times moved between instances. */
  moves: number;
}

export class Simulation {
  private readonly o: SimOptions;
  private readonly knobs: PolicyKnobs;
  private readonly p: Profile;
  private readonly perf: PerfModel;
  private readonly ep: SimEpochs;
  private readonly cost: SimCosts;
  private readonly fidelity: Fidelity;
  private readonly maxClock: number;
  private readonly totalGpus: number;
  private readonly gpusPerServer: number;
  private readonly sloScale: number;
  private readonly rand: () => number;
  /** intake's classification (./classifier.ts: the proxy, or the live intake's online predictor). */
  private readonly classifier: SimClassifier;
  /** SLO throughput kept free by provisioning, sharding, clock and dispatch choices; default 0.2. */
  private readonly headroom: number;
  private pools: SimPool[] = [];
  /** per type: the pool its requests go to first (overload spills to the longer pools). */
  private route = new Map<RequestType, SimPool>();
  /** the cluster manager's machine (policies with dynamic instances, not the oracle): its state and configuration. */
  private cm?: ClusterBrain;
  /** the pool machines' configuration (the pool id set per pool). */
  private poolCfg?: PoolMachineConfig;
  private template!: LoadTemplate;
  private seq = 0;
  private readonly reqs = new Map<string, ReqState>();
  private readonly stepHeap = new Heap<SimInstance>();
  private readonly clockHeap = new Heap<{ inst: SimInstance; mhz: number; why?: string; inputs?: Record<string, unknown> }>();
  /** step: requests admitted by an instance machine and not started in its engine yet. */
  private readonly admitted = new Map<string, CoreRequest>();
  private nextReadyMs = Infinity;
  private readonly ttft: Record<RequestType, number[]> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, []])) as unknown as Record<RequestType, number[]>;
  /** step: each finished request's TTFT over its own SLO (promptTtftSloMs). */
  private readonly ttftOverSlo: Record<RequestType, number[]> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, []])) as unknown as Record<RequestType, number[]>;
  private readonly tbt = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new LogHistogram()])) as Record<RequestType, LogHistogram>;
  private readonly ttftHist = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new LogHistogram()])) as Record<RequestType, LogHistogram>;
  private readonly sloOk = new Float64Array(9);
  private readonly done = new Float64Array(9);
  private readonly reconf = { instanceStart: 0, instanceStop: 0, reshard: 0, clock: 0, emergency: 0 };
  private rejected = 0;
  private unservable = 0;
  /** prompt + output over the model's context: refused at the door (vLLM answers 400), never an SLO miss. */
  private refusedOverContext = 0;
  private readonly maxContext: number;
  /** the L input class's upper bound (longInputClassBound of the context). */
  private readonly longInputMax: number;
  private readonly prefixCounters = { hitTokens: 0, lookupTokens: 0 };
  private misclassified = 0;
  private requests = 0;
  private extraJ = 0;
  private extraAccMs = 0;
  private gpuMs = 0;
  private stoppedEnergyJ = 0;
  /** the breakdown of the energy: idle part of stopped instances, unallocated GPUs, starting instances, J. */
  private stoppedIdleJ = 0;
  private freeJ = 0;
  /** servers in use in the last accounted interval (holding a grant or an instance); -1 before the first. */
  private poweredServers = -1;
  /** energy of the GPUs on servers holding nothing, powered, and of their boots when they come back into use, J. */
  private unusedJ = 0;
  private bootJ = 0;
  private startingJ = 0;
  private readonly series = { tS: [] as number[], powerW: [] as number[], energyKWh: [] as number[], gpusByPool: {} as Record<string, number[]>, clockByPool: {} as Record<string, number[]> };
  private lastSampleJ = 0;
  private lastSampleMs = 0;
  private carbonG = 0;
  private readonly powerSamples: number[] = [];
  private readonly notes: string[] = [];
  private readonly useDispatchPolicy: boolean;
  /** step, policy dispatch: arrivals no instance admitted yet (a pool leader holds them), with the pools left to try. */
  private leaderNow = 0;
  private readonly arriving = new Map<string, { r: CoreRequest; c: { type: RequestType; pred: RequestType }; slo: number; pools: SimPool[]; msg: InferenceRequest }>();
  private readonly clockMemo = new Map<string, number>();
  /** instanceEpoch's scratch: the memo key's code units, the peak per type. */
  private readonly clockCodes = new Uint16Array(19);
  private readonly clockPeakX = new Float64Array(9);
  /** the oracle's Eq. 1 solver (./yardsticks.ts), with its memo of solves. */
  private oracle?: OracleSolver;

  constructor(private readonly inp: EngineInputs) {
    this.o = inp.opts;
    this.knobs = { ...POLICY_KNOBS[this.o.policy], ...this.o.knobs };
    this.p = inp.profile;
    this.perf = inp.perf;
    this.ep = { ...DEFAULT_EPOCHS, ...this.o.epochs };
    this.cost = { ...DEFAULT_COSTS, ...this.o.costs };
    this.fidelity = this.o.fidelity;
    this.maxClock = this.p.clocksMhz[this.p.clocksMhz.length - 1];
    this.gpusPerServer = this.o.gpusPerServer ?? this.perf.gpu.gpusPerServer;
    this.totalGpus = this.o.servers * this.gpusPerServer;
    this.sloScale = this.o.sloScale ?? 1;
    this.rand = rng(this.o.seed ?? 7);
    this.headroom = this.o.headroom ?? 0.2;
    // 'policy': src/policy chooseInstance per request (marginal energy; ~1 ms per call at mixed loads, so
    // slow); default 'least-loaded' (what actors/common/policy.ts pickInstance runs live today)
    this.useDispatchPolicy = (this.o.dispatch ?? (this.o.policy === 'dynamollm' || this.o.policy === 'oracle' ? 'policy' : 'least-loaded')) === 'policy';
    this.maxContext = this.o.maxContext ?? Math.max(this.perf.model.maxContext, DEFAULT_CONTEXT_FLOOR);
    this.longInputMax = longInputClassBound(this.maxContext);
    if (this.o.predictor === 'online' && this.fidelity !== 'step') throw new RangeError("the online predictor learns from completed requests: step fidelity only (--fidelity step)");
    this.classifier = new SimClassifier({ predictor: this.o.predictor, accuracy: this.o.predictorAccuracy, seed: this.o.seed ?? 7, oracle: this.knobs.oracle, longInputMax: this.longInputMax, model: this.o.model });
  }

  // ---------------------------------------------------------------- load template
  /**
   * Pre-pass over the trace: per-minute arrivals by PREDICTED type (the "load template" the forecasts read).
   * By predicted type because that is what is routed (pools serve predicted types) and all a live forecaster can
   * count (actors/cluster-manager observes classified requests): forecasting true types sized each pool for its
   * own type while it received its neighbours' mispredicted requests (19% of each type's requests go to the pool
   * of another output class; seen in a week run with an earlier profile: the LM pool got LL and LS requests at
   * ~0.9x its LM rate and ran past its SLO capacity at max clock at the afternoon peaks).
   */
  private async buildTemplate(): Promise<void> {
    const perMin = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new Float64Array(16)])) as Record<RequestType, Float64Array>;
    let last = 0;
    let count = 0;
    await forEachRecord(this.inp.records(), (r) => {
      const type = overContext(r, this.maxContext) ? null : this.classifier.templateClass(r);
      if (type === null) return;
      const b = Math.floor(r.tMs / 60000);
      if (b >= perMin.SS.length) {
        for (const t of REQUEST_TYPES) {
          const a = new Float64Array(Math.max(b + 1, perMin[t].length * 2));
          a.set(perMin[t]);
          perMin[t] = a;
        }
      }
      perMin[type][b]++;
      if (r.tMs > last) last = r.tMs;
      count++;
    });
    this.template = { perMin, durationMs: last + 1, count };
  }

  /**
   * Forecast peak load by type (req/s) over [t0, t1): the max of the `windowMin`-minute moving average of
   * the trace's per-minute arrivals. The simulator's forecaster knows the trace (a perfect forecast of the
   * per-minute rate; Poisson noise within the minute is not known).
   */
  private forecastPeak(t0Ms: number, t1Ms: number, windowMin = 5): LoadByType {
    const out: LoadByType = {};
    const b0 = Math.max(0, Math.floor(t0Ms / 60000));
    const b1 = Math.max(b0 + 1, Math.ceil(t1Ms / 60000));
    for (const t of REQUEST_TYPES) {
      const a = this.template.perMin[t];
      let peak = 0;
      for (let b = b0; b < b1 && b < a.length; b++) {
        let s = 0;
        let n = 0;
        for (let k = Math.max(0, b - windowMin + 1); k <= b; k++, n++) s += a[k];
        peak = Math.max(peak, s / n / 60);
      }
      if (peak > 0) out[t] = peak;
    }
    return out;
  }

  // ---------------------------------------------------------------- instances and GPUs
  /** Account energy of unallocated GPUs and starting instances up to now. */
  private accountExtra(now: number): void {
    const dt = now - this.extraAccMs;
    if (dt <= 0) return;
    let alloc = 0;
    let startingW = 0;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || (i.state === 'starting' && i.reshard)) continue;
        alloc += i.tp;
        if (i.state === 'starting') startingW += idlePowerOf(this.p, i.tp, this.maxClock);
      }
    const gpuIdleW = this.perf.idlePowerW(1, this.maxClock, false);
    let free = Math.max(0, this.totalGpus - alloc);
    // servers in use: the fewest that hold every grant and every instance; the others hold nothing
    const held = Math.max(alloc, this.pools.reduce((n, p) => n + p.gpus, 0));
    const on = Math.min(this.o.servers, Math.ceil(held / this.gpusPerServer - 1e-9));
    const unused = Math.min(free, Math.max(0, this.totalGpus - on * this.gpusPerServer));
    const boots = this.poweredServers >= 0 ? Math.max(0, on - this.poweredServers) : 0;
    this.poweredServers = on;
    let bootJ = boots * this.gpusPerServer * gpuIdleW * SERVER_BOOT_S;
    this.unusedJ += (unused * gpuIdleW * dt) / 1000;
    this.bootJ += bootJ;
    if (this.o.unusedServers !== 'off') bootJ = 0;
    else free -= unused;
    const freeW = free * gpuIdleW;
    this.extraJ += ((freeW + startingW) * dt) / 1000 + bootJ;
    this.freeJ += (freeW * dt) / 1000 + bootJ;
    this.startingJ += (startingW * dt) / 1000;
    this.gpuMs += Math.min(alloc, this.totalGpus) * dt;
    this.extraAccMs = now;
  }

  private newInstance(pool: SimPool, tp: TpDegree, now: number, delayMs: number, kind: 'start' | 'reshard' | 'init' | 'unit', replaces: SimInstance[] = []): SimInstance {
    const id = `${pool.id}-i${this.seq++}`;
    const inst: SimInstance = {
      id, pool, tp, clockMhz: this.maxClock, state: delayMs > 0 ? 'starting' : 'active', readyAtMs: now + delayMs,
      inHeap: false, load: new Float64Array(9), loadAtMs: now, peakCur: new Float64Array(9), peakPrev: new Float64Array(9), outstanding: 0, energyJ: 0, reshard: kind === 'reshard', replaces,
    };
    if (delayMs <= 0) this.activate(inst, now);
    else if (inst.readyAtMs < this.nextReadyMs) this.nextReadyMs = inst.readyAtMs;
    pool.instances.push(inst);
    if (kind === 'start') this.reconf.instanceStart++;
    return inst;
  }

  private activate(inst: SimInstance, now: number): void {
    inst.state = 'active';
    inst.epochAtMs = now;
    inst.loadAtMs = now;
    if (this.fidelity === 'step') {
      // the scheduler budget of the engine the profile describes (Profile.scheduler; absent: the core's default)
      const sch = this.p.scheduler;
      inst.core = new BatchingCore({ perf: this.perf, tp: inst.tp, clockMhz: inst.clockMhz, maxWaiting: 1 << 20, maxNumBatchedTokens: sch?.maxNumBatchedTokens, maxNumSeqs: sch?.maxNumSeqs,
        prefixCacheBlockTokens: this.o.prefixCaching === false ? 0 : (this.o.prefixBlockTokens ?? 512), prefixCacheCounters: this.prefixCounters });
      inst.core.idleUntil(now);
      inst.brain = this.newBrain(inst, now);
    }
    for (const old of inst.replaces) this.drain(old, now);
    inst.replaces = [];
    this.advanceExec(inst.pool, now);
  }

  private activateDue(now: number): void {
    this.accountExtra(now);
    let next = Infinity;
    for (const p of this.pools)
      for (const i of p.instances)
        if (i.state === 'starting') {
          if (i.readyAtMs <= now) this.activate(i, now);
          else if (i.readyAtMs < next) next = i.readyAtMs;
        }
    this.nextReadyMs = next;
  }

  private drain(inst: SimInstance, now: number): void {
    if (inst.state === 'starting') {
      this.accountExtra(now);
      inst.state = 'stopped';
      inst.pool.instances = inst.pool.instances.filter((x) => x !== inst);
      this.advanceExec(inst.pool, now);
      return;
    }
    if (inst.state !== 'active') return;
    inst.state = 'draining';
    inst.brain?.step({ type: 'lifecycle', state: 'draining', why: 'drained by the pool' }, now);
    this.maybeStop(inst, now);
  }

  private maybeStop(inst: SimInstance, now: number): void {
    if (inst.state !== 'draining' || inst.outstanding > 0) return;
    this.accountExtra(now);
    inst.state = 'stopped';
    if (inst.core) {
      inst.core.idleUntil(now);
      const st = inst.core.stats();
      this.stoppedEnergyJ += st.energyJ;
      this.stoppedIdleJ += st.idleEnergyJ;
      inst.core = undefined;
    } else {
      this.stoppedEnergyJ += inst.energyJ;
      this.stoppedIdleJ += inst.idleJ ?? 0;
    }
    inst.pool.instances = inst.pool.instances.filter((x) => x !== inst);
    this.reconf.instanceStop++;
    this.advanceExec(inst.pool, now);
  }

  /** A pool's re-shard under way moves on (an instance became ready or stopped); a finished one is cleared. */
  private advanceExec(pool: SimPool, now: number): void {
    const x = pool.exec;
    if (!x) return;
    x.advance(now);
    if (x.finished && pool.exec === x) pool.exec = undefined;
  }

  /** The live pool's execution of a re-shard decision (./reshard-exec.ts), each new engine serving after instanceStartS. */
  private beginUnits(pool: SimPool, target: InstanceConfig[], now: number): void {
    pool.exec = unitsOf(() => pool.instances, target, this.gpusPerServer, {
      start: (tp, t) => this.newInstance(pool, tp as TpDegree, t, this.cost.instanceStartS * 1000, 'unit'),
      drain: (i, t) => this.drain(i, t),
    }, pool.gpus);
    this.advanceExec(pool, now);
  }

  /** live TP mix of a pool: active and starting instances, not counting those a pending re-shard retires. */
  private liveMix(pool: SimPool): InstanceConfig[] {
    const retiring = new Set<SimInstance>();
    for (const i of pool.instances) for (const r of i.replaces) retiring.add(r);
    const m = new Map<number, number>();
    for (const i of pool.instances) if ((i.state === 'active' || i.state === 'starting') && !retiring.has(i)) m.set(i.tp, (m.get(i.tp) ?? 0) + 1);
    return [...m.entries()].sort((a, b) => b[0] - a[0]).map(([tp, count]) => ({ tp: tp as TpDegree, count }));
  }

  private poolGpus(pool: SimPool): number {
    return this.liveMix(pool).reduce((s, c) => s + c.tp * c.count, 0);
  }

  // ---------------------------------------------------------------- control plane: pools
  private poolOrder(types: RequestType[]): number {
    return types.length ? Math.max(...types.map((t) => TYPE_INDEX[t])) : 9;
  }

  /** Install pools (id -> GPUs) and the routing of every type (type -> pool id), resizing existing pools. */
  private installPools(wanted: { id: string; types: RequestType[]; gpus: number }[], routing: Partial<Record<RequestType, string>>, now: number, initial: boolean): void {
    this.accountExtra(now);
    const byId = new Map(this.pools.map((p) => [p.id, p]));
    const next: SimPool[] = [];
    for (const w of wanted) {
      let pool = byId.get(w.id);
      if (!pool) pool = { id: w.id, order: 0, types: w.types, gpus: 0, instances: [] };
      byId.delete(w.id);
      pool.types = w.types;
      pool.order = this.poolOrder(w.types);
      this.resizePool(pool, w.gpus, now, initial);
      next.push(pool);
    }
    for (const gone of byId.values()) {
      for (const i of [...gone.instances]) this.drain(i, now);
      if (gone.instances.length) next.push(Object.assign(gone, { types: [] as RequestType[], gpus: 0, order: 99 }));
    }
    next.sort((a, b) => a.order - b.order);
    this.pools = next;
    const byIdNew = new Map(next.map((p) => [p.id, p]));
    this.route.clear();
    const serving = next.filter((p) => p.types.length > 0);
    for (const t of REQUEST_TYPES) {
      const r = routing[t] === undefined ? undefined : byIdNew.get(routing[t]);
      // no route, or one to a pool that serves nothing: the pool that names t, else the next longer pool, else the last
      const pool = r && r.types.length > 0 ? r : serving.find((p) => p.types.includes(t)) ?? serving.find((p) => p.order > TYPE_INDEX[t]) ?? serving.at(-1) ?? next[0];
      if (pool) this.route.set(t, pool);
    }
  }

  /** Grow with TP8 instances on the GPUs the grant adds (a new one pays the start cost), or shrink by draining the least busy. */
  private resizePool(pool: SimPool, gpus: number, now: number, initial: boolean): void {
    const fill = Math.min(gpus, this.poolGpus(pool) + Math.max(0, gpus - pool.gpus));
    pool.gpus = gpus;
    let have = this.poolGpus(pool);
    const tp = this.o.instanceTp ?? 8;
    for (; have + tp <= fill; have += tp) this.newInstance(pool, tp as TpDegree, now, initial ? 0 : this.cost.instanceStartS * 1000, initial ? 'init' : 'start');
    if (have > gpus) {
      const live = pool.instances.filter((i) => i.state === 'active' || i.state === 'starting').sort((a, b) => (a.state === 'starting' ? -1 : 0) - (b.state === 'starting' ? -1 : 0) || a.outstanding - b.outstanding);
      for (const i of live) {
        if (have <= gpus) break;
        have -= i.tp;
        this.drain(i, now);
      }
    }
  }

  /** The static pools (./yardsticks.ts), sized for each type's peak over the whole trace. */
  private staticPools(): PoolLayout {
    return staticPools({
      peak: this.forecastPeak(0, this.template.durationMs), profile: this.p, maxClockMhz: this.maxClock, servers: this.o.servers, gpusPerServer: this.gpusPerServer,
      pools: this.knobs.pools, ...(this.o.instanceTp !== undefined ? { instanceTp: this.o.instanceTp } : {}),
    });
  }

  /**
   * ScaleInst / DynamoLLM cluster level: the live cluster manager's machine on its own forecaster of the past
   * minutes (./cluster-brain.ts); the first plan is given the first epoch's highest minute (the trace starts warm;
   * the forecaster has no history yet, and its floor is the highest minute of its recent window). A new pool's
   * instances pay the start cost.
   */
  private clusterStart(): void {
    const leadMs = this.cost.instanceStartS * 1000;
    const cfg: ClusterMachineConfig = {
      issuer: 'sim', profile: this.p, pools: REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] })), configuredPools: false,
      epochMs: this.ep.clusterS * 1000, statusIntervalMs: PEER_STATUS_MS, minEpochGapMs: this.ep.clusterS * 1000, instanceStartupMs: leadMs,
      recentWindowMs: this.ep.clusterS * 1000, headroom: this.headroom,
      // pools that re-shard split a server into the TP mix that carries their load; else they keep the start TP
      splitTps: this.knobs.dynamicShards ? this.p.tpDegrees : [this.o.instanceTp ?? 8],
      // the forecast's floor is already the highest minute of the last 30; the plan keeps `headroom` free on top
      forecastMargin: 0,
    };
    const servers = Array.from({ length: this.o.servers }, (_, k) => ({ id: `server-${k}`, gpus: this.gpusPerServer }));
    // epochs are decided `leadMs` before each epoch so new servers are ready at it
    this.cm = new ClusterBrain(cfg, servers, Math.max(1, this.ep.clusterS * 1000 - leadMs), (t, b) => this.template.perMin[t][b] ?? 0, (state, effects, now, initial) => {
      const capped = effects.map((e) => (e.kind === 'event' ? (e.decision.capped as { needed: number } | undefined) : undefined)).find((x) => x);
      if (capped && !this.notes.some((n) => n.startsWith('cluster plan capped'))) this.notes.push(`cluster plan capped at ${this.o.servers} servers (needed ${capped.needed}) at t=${(now / 1000).toFixed(0)} s`);
      const wanted = [...state.assignments.values()].filter((a) => a.state === 'active').map((a) => ({ id: a.pool, types: a.types, gpus: a.grants.reduce((n, g) => n + g.gpuIds.length, 0) }));
      // intake's first pool per type (the machine's routing; a pool that refuses spills to the longer ones)
      const routing: Partial<Record<RequestType, string>> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, intakePools(state, t, () => true)[0]]));
      this.installPools(wanted, routing, now, initial);
    });
    this.cm.prefixReuse = () => prefixReuseByType(this.pools);
    this.cm.start(this.forecastPeak(0, this.ep.clusterS * 1000 + leadMs, 1));
  }

  /**
   * Pool epoch: the live pool machine's re-shard decision (./pool-brain.ts) on the load its instances
   * measure (at t = 0, the trace starts warm: the forecast of the first epoch); the new instances serve
   * after tau x Table VI + resync, the old ones serve until then.
   */
  private reshard(pool: SimPool, now: number, initial: boolean): void {
    if (pool.exec || pool.instances.some((i) => i.replaces.length > 0)) return; // a re-shard is still in flight
    const live = pool.instances.filter((i) => i.state === 'active' || i.state === 'starting');
    const current = this.liveMix(pool);
    if (current.length === 0) return;
    const warm = this.forecastPeak(now, now + this.ep.poolS * 1000);
    const load = (i: SimInstance, k: number): LoadByType => {
      if (initial) return k > 0 ? {} : Object.fromEntries([...this.route].filter(([t, p]) => p === pool && warm[t]).map(([t]) => [t, warm[t]!]));
      if (i.brain) return i.brain.load(now);
      this.decayLoad(i, now);
      return this.loadOf(i);
    };
    this.poolCfg ??= {
      pool: '', holder: 'sim', profile: this.p, headroom: this.headroom, deadAfterMs: LIVE_INSTANCE_DEFAULTS.deadAfterMs, statusIntervalMs: PEER_STATUS_MS, epochMs: this.ep.poolS * 1000,
      healthDeadlineMs: this.cost.instanceStartS * 1000, initialTp: this.o.instanceTp ?? 8, moveQueueAbove: LIVE_INSTANCE_DEFAULTS.moveQueueAbove, retryAfterS: LIVE_INSTANCE_DEFAULTS.retryAfterS,
      planner: 'heuristic', burstWindowMs: poolBurstWindowMs(this.ep.poolS * 1000), reshardKeepsServing: this.o.reshardExecution !== 'units', overhead: { tauMs: this.cost.tauMs, resyncS: this.cost.resyncMs / 1000, instanceStartS: this.cost.instanceStartS },
    };
    const views = live.map((i, k) => ({ id: i.id, tp: i.tp, ready: i.state === 'active', clockMhz: i.clockMhz, load: load(i, k), prefix: i.core?.prefixCacheTokens() }));
    const plan = poolReshardDecision({ ...this.poolCfg, pool: pool.id }, pool.types, views, this.gpusPerServer, now, pool.gpus, pool);
    if (!plan) return;
    const same = JSON.stringify(plan.target) === JSON.stringify(current);
    if (same || !(plan.take || initial)) return;
    this.accountExtra(now);
    const old = pool.instances.filter((i) => i.state === 'active' || i.state === 'starting');
    if (initial) {
      // t = 0: the pool starts in its planned TP mix (the trace starts warm)
      for (const i of old) this.drain(i, now);
      for (const c of plan.target) for (let k = 0; k < c.count; k++) this.newInstance(pool, c.tp, now, 0, 'init');
      return;
    }
    if (this.o.reshardExecution === 'units') {
      this.reconf.reshard++;
      this.beginUnits(pool, plan.target, now);
      return;
    }
    const delay = reshardTau(current, plan.target) * this.cost.tauMs + this.cost.resyncMs;
    const news: SimInstance[] = [];
    for (const c of plan.target) for (let k = 0; k < c.count; k++) news.push(this.newInstance(pool, c.tp, now, delay, 'reshard'));
    news[0].replaces = old; // old instances serve until the new layout is up
    this.reconf.reshard++;
  }

  /**
   * Oracle epoch: src/policy solveEq1 (HiGHS) over all type pools with the coming epoch's actual peak
   * (1-minute bins, true types), applied instantly (no start or re-shard lag): a lower bound.
   */
  private oracleEpoch(now: number): void {
    const highs = this.inp.highs;
    if (!highs) throw new Error('oracle policy needs a HiGHS instance');
    this.accountExtra(now);
    this.oracle ??= new OracleSolver({ highs, profile: this.p, gpus: this.totalGpus, epochS: this.ep.poolS, headroom: this.headroom });
    const { pools, sol } = this.oracle.solve(this.forecastPeak(now, now + this.ep.poolS * 1000, 1));
    if (!sol.feasible) {
      this.notes.push(`oracle: Eq. 1 infeasible at t=${(now / 1000).toFixed(0)} s (${sol.status}); previous configuration kept`);
      if (this.pools.length) return;
      this.installPools(this.staticPools().wanted, this.staticPools().routing, now, true);
      return;
    }
    const byId = new Map(this.pools.map((p) => [p.id, p]));
    const next: SimPool[] = [];
    for (const pl of pools) {
      let pool = byId.get(pl.id);
      byId.delete(pl.id);
      const t = pl.id.slice(5) as RequestType;
      if (!pool) pool = { id: pl.id, order: TYPE_INDEX[t], types: [t], gpus: 0, instances: [] };
      const groups = sol.config.filter((g) => g.pool === pl.id);
      const live = pool.instances.filter((i) => i.state === 'active');
      const keep = new Set<SimInstance>();
      for (const g of groups) {
        const same = live.filter((i) => i.tp === g.tp && !keep.has(i)).slice(0, g.count);
        for (const i of same) {
          keep.add(i);
          if (i.clockMhz !== g.clockMhz) this.setClockNow(i, g.clockMhz, now);
        }
        for (let k = same.length; k < g.count; k++) {
          const i = this.newInstance(pool, g.tp, now, 0, 'init');
          this.setClockNow(i, g.clockMhz, now);
          keep.add(i);
        }
      }
      for (const i of live) if (!keep.has(i)) this.drain(i, now);
      pool.gpus = groups.reduce((s, g) => s + g.tp * g.count, 0);
      next.push(pool);
    }
    for (const gone of byId.values()) {
      for (const i of [...gone.instances]) this.drain(i, now);
      if (gone.instances.length) next.push(Object.assign(gone, { types: [] as RequestType[], gpus: 0, order: 99 }));
    }
    this.pools = next.sort((a, b) => a.order - b.order);
    const routed = new Set(pools.map((pl) => pl.id));
    this.route.clear();
    const serving = this.pools.filter((p) => p.types.length > 0);
    for (const t of REQUEST_TYPES) {
      const pool = routed.has(`pool-${t}`) ? serving.find((p) => p.id === `pool-${t}`) : serving.find((p) => p.order > TYPE_INDEX[t]) ?? serving.at(-1);
      if (pool) this.route.set(t, pool);
    }
  }

  private setClockNow(inst: SimInstance, mhz: number, now = 0): void {
    if (inst.core && !inst.inHeap) inst.core.idleUntil(now);
    inst.clockMhz = mhz;
    inst.core?.setClock(mhz);
  }

  /** Decay an instance's load estimate to `now`. */
  private decayLoad(inst: SimInstance, now: number): void {
    const dt = now - inst.loadAtMs;
    if (dt <= 0) return;
    const f = Math.exp(-dt / (LOAD_WINDOW_S * 1000));
    for (let k = 0; k < 9; k++) inst.load[k] *= f;
    inst.loadAtMs = now;
  }

  /** the load estimate as a LoadByType. */
  private loadOf(inst: SimInstance): LoadByType {
    const l: LoadByType = {};
    for (let k = 0; k < 9; k++) if (inst.load[k] > 1e-6) l[REQUEST_TYPES[k]] = inst.load[k];
    return l;
  }

  /** Instance epoch: src/policy chooseClock on each instance's load estimate. */
  private instanceEpoch(now: number): void {
    // step: the instance machines' epoch (the load window, and their clock unless the oracle sets it below)
    if (this.fidelity === 'step') {
      for (const pool of this.pools) for (const inst of pool.instances) if (inst.state === 'active') inst.brain?.step({ type: 'epoch' }, now);
      if (!this.knobs.oracle) return;
    }
    if (!this.knobs.dynamicClock) return;
    if (!this.knobs.oracle) return this.fluidClockEpoch(now);
    // the oracle's clock (fluid and step): chooseClock for the recent peak and the known coming load
    type Rep = { tp: number; clock: number; load: Float64Array; cur: Float64Array; prev: Float64Array; mhz: number };
    for (const pool of this.pools) {
      // fluid gives every instance of a (pool, TP, clock) group the same load, so its chooseClock inputs are
      // identical: an instance whose (TP, clock, load, peaks) equal an earlier one's in this epoch takes its answer
      // (exact equality, so the decision is the one chooseClock would give it; saves the key building per instance)
      const reps: Rep[] = [];
      const known = this.knobs.oracle ? this.oracleKnownRates(pool, now) : null;
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        this.decayLoad(inst, now);
        let rep: Rep | undefined;
        for (const r of reps) {
          if (r.tp === inst.tp && r.clock === inst.clockMhz && sameArr(r.load, inst.load) && sameArr(r.cur, inst.peakCur) && sameArr(r.prev, inst.peakPrev)) {
            rep = r;
            break;
          }
        }
        if (rep) {
          const pc = inst.peakCur, pp = inst.peakPrev, ld = inst.load;
          for (let k = 0; k < 9; k++) {
            pp[k] = pc[k];
            pc[k] = ld[k];
          }
          const m = Math.max(rep.mhz, this.prefillFloor(inst, now));
          if (m !== inst.clockMhz) this.scheduleClock(inst, m, now);
          continue;
        }
        const before: Rep | null = reps.length < 8 ? { tp: inst.tp, clock: inst.clockMhz, load: inst.load.slice(), cur: inst.peakCur.slice(), prev: inst.peakPrev.slice(), mhz: 0 } : null;
        // the load estimate on the memo grid (+-5%, under 0.02 req/s dropped): same-TP instances with nearly the
        // same load share one chooseClock call. The memo key is the grid slots, one UTF-16 code unit each: TP, per
        // type the load's slot + 2 (1: absent) and the peak's code (0 absent, 1 at the floor, slot + 2), below.
        const codes = this.clockCodes;
        codes[0] = inst.tp;
        let table = true; // every value on the tabulated grid (else: the number-string key of the values)
        for (let k = 0; k < 9; k++) {
          const i = quantSlot(inst.load[k]);
          if (i === -2) table = false;
          codes[1 + k] = i + 2;
        }
        // provision for the recent peak (this and the previous epoch's peak of the load estimate), not the mean;
        // the oracle also for its share of the pool's known load this and next minute
        const peakX = this.clockPeakX;
        for (let k = 0; k < 9; k++) {
          const kn = known ? known[k] * maxLoadOf(this.p, REQUEST_TYPES[k], inst.tp, this.maxClock) : 0;
          // a type present under the memo floor counts AT the floor: otherwise a trickle of a short type (spilled
          // into a long pool and split over 20 fluid instances) is invisible to the clock, which then drops to a
          // clock where that type's TTFT SLO is unmeetable (week, dynamollm: LS-pool TP2 at 800 MHz, u = 15)
          const x = Math.max(inst.peakCur[k], inst.peakPrev[k], kn);
          peakX[k] = x;
          if (x > 1e-4) {
            const i = quantSlot(x);
            if (i === -2) table = false;
            codes[10 + k] = i === -1 ? 1 : i + 2;
          } else codes[10 + k] = 0;
          inst.peakPrev[k] = inst.peakCur[k];
          inst.peakCur[k] = inst.load[k];
        }
        // chooseClock's inputs: the quantised load, and the peak (a present type at least at the floor)
        let q: LoadByType | null = null;
        let peak: LoadByType = {};
        const inputs = () => {
          q = {};
          peak = {};
          for (let k = 0; k < 9; k++) {
            const v = quantiseLoad(inst.load[k]);
            if (v > 1e-6) q[REQUEST_TYPES[k]] = v;
            if (peakX[k] > 1e-4) peak[REQUEST_TYPES[k]] = Math.max(LOAD_FLOOR, quantiseLoad(peakX[k]));
          }
          return q;
        };
        let key: string;
        if (table) key = String.fromCharCode.apply(null, codes as unknown as number[]);
        else {
          // off the table (a load beyond ~1e39 req/s, or NaN): the values' own strings
          const qq = inputs();
          key = `${inst.tp}`;
          for (const t of REQUEST_TYPES) if (qq[t]) key += `,${t}${qq[t]}`;
          key += '/';
          for (const t of REQUEST_TYPES) if (peak[t]) key += `,${t}${peak[t]}`;
        }
        let mhz = this.clockMemo.get(key);
        if (mhz === undefined) {
          q ??= inputs();
          if (this.clockMemo.size > 1_000_000) this.clockMemo.clear();
          this.clockMemo.set(key, (mhz = decide.chooseClock({ profile: this.p, tp: inst.tp, loadByType: q, peakLoadByType: peak, sloScale: this.sloScale * (this.knobs.oracle ? ORACLE_CLOCK_SLO_MARGIN : 1), headroom: this.headroom }).clockMhz));
        }
        if (before) reps.push(Object.assign(before, { mhz }));
        // not below what the prefill backlog needs (a long prompt still prefilling)
        mhz = Math.max(mhz, this.prefillFloor(inst, now));
        if (mhz !== inst.clockMhz) this.scheduleClock(inst, mhz, now);
      }
    }
  }

  /**
   * Fluid: each instance's clock by the live instance machine's rule (src/policy/machines/instance.ts): the
   * epoch's arrival rate into its load EWMA (epochLoad), then decideClock on max(EWMA, rate), memoised on the
   * +-5% load grid of ./quantise.ts. Fluid has no prompts in flight, so no prefill floor.
   */
  private fluidClockEpoch(now: number): void {
    const codes = this.clockCodes;
    for (const pool of this.pools)
      for (const inst of pool.instances) {
        if (inst.state !== 'active') continue;
        const dt = Math.max(1e-3, (now - (inst.epochAtMs ?? now)) / 1000);
        const rate: LoadByType = {};
        const a = inst.arrived;
        if (a) for (let k = 0; k < 9; k++) if (a[k] > 0) rate[REQUEST_TYPES[k]] = a[k] / dt;
        a?.fill(0);
        inst.epochAtMs = now;
        const { load, forClock } = epochLoad(inst.ewma ?? {}, rate);
        inst.ewma = load;
        codes[0] = inst.tp;
        let table = true;
        // a type the machine counts (over 1e-3 req/s) but under the grid's floor counts AT the floor: a trickle
        // of a short type spilled into a long pool and split over many instances must still hold the clock up
        for (let k = 0; k < 9; k++) {
          const v = forClock[REQUEST_TYPES[k]] ?? 0;
          const i = quantSlot(v);
          if (i === -2) table = false;
          codes[1 + k] = v > 1e-3 ? (i === -1 ? 1 : i + 2) : 0;
        }
        const key = table ? String.fromCharCode.apply(null, codes.subarray(0, 10) as unknown as number[]) : undefined;
        let mhz = key === undefined ? undefined : this.clockMemo.get(key);
        if (mhz === undefined) {
          const q: LoadByType = {};
          for (const t of REQUEST_TYPES) {
            const v = forClock[t] ?? 0;
            if (v > 1e-3) q[t] = table ? Math.max(LOAD_FLOOR, quantiseLoad(v)) : v;
          }
          mhz = decideClock({ profile: this.p, tp: inst.tp, headroom: this.headroom }, q, this.p.clocksMhz)?.clockMhz ?? inst.clockMhz;
          if (key !== undefined) {
            if (this.clockMemo.size > 1_000_000) this.clockMemo.clear();
            this.clockMemo.set(key, mhz);
          }
        }
        if (mhz !== inst.clockMhz) this.scheduleClock(inst, mhz, now);
      }
  }

  /**
   * Oracle only: per type, the pool's KNOWN arrival rate over the current and next minute (the per-minute
   * template by true type, the larger bin) divided by the pool's SLO throughput at max clock (sum over its
   * active instances): times an instance's own max load, its share when load is split by capacity. The oracle
   * provisions each 5-s clock for max(that share, the observed recent peak): the future it knows, plus the
   * within-minute burst and the uneven energy-order dispatch it does not model.
   */
  private oracleKnownRates(pool: SimPool, now: number): Float64Array {
    const out = new Float64Array(9);
    const act = pool.instances.filter((i) => i.state === 'active');
    const b0 = Math.floor(now / 60000);
    for (const t of pool.types) {
      const a = this.template.perMin[t];
      const rate = Math.max(a[b0] ?? 0, a[b0 + 1] ?? 0) / 60;
      if (!(rate > 0)) continue;
      let capSum = 0;
      for (const i of act) capSum += maxLoadOf(this.p, t, i.tp, this.maxClock);
      if (capSum > 0) out[TYPE_INDEX[t]] = rate / capSum;
    }
    return out;
  }

  private scheduleClock(inst: SimInstance, mhz: number, now: number): void {
    if (inst.brain) {
      // the oracle's clock reaches the instance as a pool's set_clock: the machine arbitrates (emergency first)
      inst.brain.step({ type: 'pool_set_clock', clockMhz: mhz, reason: 'oracle clock' }, now);
      return;
    }
    this.setClockNow(inst, mhz, now); // fluid: 65 ms is below the fluid tick
    this.reconf.clock++;
  }

  /**
   * Step fidelity: each instance's manager is the live instance machine (./instance-brain.ts). Its effects
   * act on the simulated instance: start a request in the batching core, fail one, change the clock (after
   * clockChangeMs), move queued requests to pool peers (the pool's placement: dispatch among the peers with
   * room, as the pool machine's move does).
   */
  private newBrain(inst: SimInstance, now: number): InstanceBrain {
    const k = this.knobs;
    const cfg: InstanceMachineConfig = {
      tp: inst.tp, headroom: this.headroom, epochMs: this.ep.instanceS * 1000, tickMs: BRAIN_TICK_MS, timeScale: 1,
      maxInEngine: LIVE_INSTANCE_DEFAULTS.maxInEngine, maxQueued: LIVE_INSTANCE_DEFAULTS.maxQueued, deadAfterMs: LIVE_INSTANCE_DEFAULTS.deadAfterMs,
      moveQueueAbove: LIVE_INSTANCE_DEFAULTS.moveQueueAbove, rejectAfterMs: LIVE_INSTANCE_DEFAULTS.rejectAfterMs, retryAfterS: LIVE_INSTANCE_DEFAULTS.retryAfterS,
      // the clock is the machine's with a dynamic-clock policy; the oracle sets it (pool set_clock); else max clock
      ...(k.dynamicClock && !k.oracle ? { profile: this.p } : {}),
      emergency: k.emergency,
    };
    return new InstanceBrain(cfg, {
      start: (id, t) => {
        const r = this.admitted.get(id);
        this.admitted.delete(id);
        if (!r || !inst.core) return;
        try {
          inst.core.submit(r);
        } catch {
          this.unservable++;
          this.dropRequest(id, t);
          inst.brain?.step({ type: 'finished', id, ok: false }, t);
          return;
        }
        this.wake(inst, t);
      },
      fail: (id, _outcome, t) => {
        this.admitted.delete(id);
        if (this.dropRequest(id, t)) this.rejected++;
      },
      setClock: (mhz, why, inputs, t) => {
        const change = mhz !== inst.clockMhz;
        if (change && inst.core && !inst.inHeap) {
          // an idle engine: the change (clockChangeMs) comes before its next step (a prompt the raise is for)
          this.setClockNow(inst, mhz, t);
          inst.inHeap = true;
          this.stepHeap.push(t + this.cost.clockChangeMs, inst);
        }
        // a change takes clockChangeMs at the old clock; the machine hears back when it took effect
        this.clockHeap.push(t + (change ? this.cost.clockChangeMs : 0), { inst, mhz, why, inputs });
      },
      move: (ids, t) => this.moveToPeers(inst, ids, t), prefixCache: () => inst.core?.prefixCacheTokens(), // the engine's counters, as the live manager scrapes them
      // counted as the live cluster counts them (dynamollm_reconfigurations_total, src/telemetry reconfigurationOf)
      event: (e) => {
        const r = reconfigurationOf({ kind: e.event, decision: e.decision });
        if (r === 'emergency') this.reconf.emergency++;
        else if (r === 'clock') this.reconf.clock++;
      },
      ...(this.inp.onInstanceStep ? { tap: (ev: InstanceEvent, t: number, fx: InstanceEffect[]) => this.inp.onInstanceStep?.(inst.id, cfg, ev, t, fx) } : {}),
    }, now, this.p.clocksMhz);
  }

  /** A request leaves the simulation without being served; false if it had left already. */
  private dropRequest(id: string, now: number): boolean {
    const st = this.reqs.get(id);
    this.classifier.forget(id);
    if (!st) return false;
    this.reqs.delete(id);
    st.inst.outstanding--;
    st.inst.pool.leader?.record(id, st.inst.id, now);
    if (st.inst.state === 'draining') this.maybeStop(st.inst, now);
    return true;
  }

  /** Emergency step 3: the pool leader's machine places the moved requests on peers with room (its 'move'). */
  private moveToPeers(from: SimInstance, ids: string[], now: number): string[] {
    const reqs: InferenceRequest[] = [];
    for (const id of ids) {
      const st = this.reqs.get(id);
      const r = this.admitted.get(id);
      if (st && r) reqs.push(simRequest(r, st.pred, st.moves + 1));
    }
    if (!reqs.length) return [];
    return this.leaderOf(from.pool, now).move(from.id, reqs, from.pool.instances, now).map((p) => p.id);
  }

  /** The pool's leader machine (./pool-leader.ts), made on first use. */
  private leaderOf(pool: SimPool, now: number): SimPoolLeader<SimInstance> {
    this.leaderNow = now;
    if (pool.leader) {
      pool.leader.setTypes(pool.types);
      return pool.leader;
    }
    const cfg: PoolMachineConfig = {
      pool: pool.id, holder: 'sim', profile: this.p, headroom: this.headroom, deadAfterMs: LIVE_INSTANCE_DEFAULTS.deadAfterMs, statusIntervalMs: PEER_STATUS_MS,
      epochMs: this.ep.poolS * 1000, healthDeadlineMs: LIVE_HEALTH_DEADLINE_MS, initialTp: this.o.instanceTp ?? 8, moveQueueAbove: LIVE_INSTANCE_DEFAULTS.moveQueueAbove,
      retryAfterS: LIVE_INSTANCE_DEFAULTS.retryAfterS, planner: 'heuristic',
      ...(this.o.prefixRouting ? { prefer: (req: InferenceRequest, ids: string[]) => this.preferPrefix(ids.map((x) => pool.instances.find((i) => i.id === x)!), (this.arriving.get(req.id)?.r ?? this.admitted.get(req.id))?.prefixHashes, req.inputTokens, this.leaderNow) } : {}),
    };
    return (pool.leader = new SimPoolLeader<SimInstance>(cfg, pool.types, { admit: (i, m, t) => this.leaderAdmit(i, m, t), answer: (id, a, t) => this.answered(id, a, t) }, now));
  }

  /**
   * A pool leader's 'admit' to an instance: the instance machine's admission (a KV cache that cannot hold the
   * request refuses it as overloaded). A new request is counted on its instance; a moved one leaves its old one.
   */
  private leaderAdmit(inst: SimInstance, m: InferenceRequest, now: number): Admission {
    const arr = this.arriving.get(m.id);
    const r = arr?.r ?? this.admitted.get(m.id);
    const old = arr ? undefined : this.reqs.get(m.id);
    const refuse = (code: 'overloaded' | 'unavailable', message: string): Admission => ({ v: 1, id: m.id, ok: false, error: { code, message, retryable: true, retryAfterS: LIVE_INSTANCE_DEFAULTS.retryAfterS } });
    if (!r || (!arr && !old)) return refuse('unavailable', 'request gone');
    if (!inst.core?.canHold(r.promptTokens + r.outputTokens)) return refuse('overloaded', 'KV cache cannot hold the request');
    const st: ReqState = old ?? { arrivalMs: r.arrivalMs, ttftSloMs: arr!.slo, type: arr!.c.type, pred: arr!.c.pred, firstMs: -1, lastMs: -1, tbtSum: 0, tbtN: 0, inst, moves: 0 };
    const from = old?.inst;
    const moves = st.moves;
    st.inst = inst;
    st.moves = m.moves ?? 0;
    if (from) from.outstanding--;
    inst.outstanding++;
    this.reqs.set(m.id, st);
    const no = this.admitTo(inst, r, st, now);
    if (no) {
      st.moves = moves;
      inst.outstanding--;
      if (from) {
        st.inst = from;
        from.outstanding++;
      } else {
        this.reqs.delete(m.id);
        this.admitted.delete(m.id);
      }
      return refuse(no.code, no.message);
    }
    if (arr) {
      this.arriving.delete(m.id);
      this.counted(inst, st.pred, now);
    }
    return { v: 1, id: m.id, ok: true, instance: inst.id };
  }

  /** Offer an arrival to the pools left in its list (a pool refusing it as overloaded spills to the next, as intake does). */
  private offer(id: string, now: number): void {
    const a = this.arriving.get(id);
    if (!a) return;
    for (let p = a.pools.shift(); p; p = a.pools.shift()) {
      const adm = this.leaderOf(p, now).dispatch(a.msg, p.instances, now);
      if (!adm) return; // held: answered()
      if (adm.ok) return;
      if (adm.error?.code !== 'overloaded') break;
    }
    this.arriving.delete(id);
    this.rejected++;
  }

  /** A held dispatch's answer: admitted (counted by leaderAdmit), or refused (the next pool, as offer). */
  private answered(id: string, a: Admission, now: number): void {
    if (a.ok) return;
    const arr = this.arriving.get(id);
    if (arr && a.error?.code !== 'overloaded') arr.pools = [];
    this.offer(id, now);
  }

  /** Offer a request to an instance's machine; its refusal, undefined when admitted. */
  private admitTo(inst: SimInstance, r: CoreRequest, st: ReqState, now: number): { code: 'overloaded' | 'unavailable'; message: string } | undefined {
    if (!inst.brain) return { code: 'unavailable', message: 'no engine' };
    // the backpressure check reads the peers (an engine full, a request not moved before)
    if (st.moves === 0 && inst.brain.s.running.size >= inst.brain.config.maxInEngine) this.peersFor(inst, now);
    this.admitted.set(r.id, r);
    const ttftSloMs = (r.ttftDeadlineMs ?? now) - r.arrivalMs;
    const fx = inst.brain.step({ type: 'admit', req: { id: r.id, type: st.pred, inputTokens: r.promptTokens, arrivalMs: r.arrivalMs, ttftDeadlineMs: r.ttftDeadlineMs ?? now, ttftSloMs, moves: st.moves } }, now);
    for (const e of fx) if (e.kind === 'refused' && e.id === r.id) return e;
    return undefined;
  }

  /**
   * Peers' statuses reach an instance machine every PEER_STATUS_MS (the live status interval), handed over
   * when the machine reads them: before a tick with something to do, before an admission to a full engine.
   */
  private peersFor(inst: SimInstance, now: number): void {
    const b = inst.brain;
    if (!b || inst.peersAtMs !== undefined && now - inst.peersAtMs < PEER_STATUS_MS) return;
    inst.peersAtMs = now;
    const peers: { id: string; queued: number; running: number; state: string }[] = [];
    for (const i of inst.pool.instances) {
      if (i === inst || i.state !== 'active' || !i.brain || !i.core) continue;
      const st = i.core.stats();
      peers.push({ id: i.id, queued: i.brain.s.queue.length + st.waiting, running: st.running, state: 'ready' });
    }
    if (peers.length) b.step({ type: 'peer_statuses', peers }, now);
  }

  /** The machines' tick (emergency ladder, load rise) on instances with something to do; pool leaders holding requests. */
  private brainTick(now: number): void {
    for (const pool of this.pools) {
      if (pool.leader?.holding()) this.leaderOf(pool, now).tick(pool.instances, now);
      for (const inst of pool.instances) {
        if ((inst.state !== 'active' && inst.state !== 'draining') || !inst.brain || inst.brain.idle()) continue;
        this.peersFor(inst, now);
        inst.brain.step({ type: 'tick' }, now);
      }
    }
  }

  // ---------------------------------------------------------------- data plane: step
  private wake(inst: SimInstance, now: number): void {
    if (inst.inHeap || !inst.core) return;
    inst.inHeap = true;
    this.stepHeap.push(now, inst);
  }

  /** The baselines' dispatch within a pool (./baseline-dispatch.ts) under the SLO throughput cap; null when none (the caller spills upward). */
  private dispatch(pool: SimPool, pred: RequestType, now: number, r: TraceRecord, only?: (i: SimInstance) => boolean): SimInstance | null {
    return leastLoadedUnderCap(pool.instances, r.inputTokens + r.outputTokens, (i) => {
      if (only && !only(i)) return false;
      this.decayLoad(i, now);
      let u = 0;
      for (let k = 0; k < 9; k++) if (i.load[k] > 0) u += i.load[k] / Math.max(1e-9, maxLoadOf(this.p, REQUEST_TYPES[k], i.tp, this.maxClock));
      return u + 1 / LOAD_WINDOW_S / Math.max(1e-9, maxLoadOf(this.p, pred, i.tp, this.maxClock)) <= 1 - this.headroom + 1e-9;
    }, (eligible) => this.preferPrefix(eligible, r.hashIds, r.inputTokens, now));
  }

  /** src/policy preferPrefixHolder over these instances (SimOptions.prefixRouting and a row with hash_ids), else undefined. */
  private preferPrefix(insts: SimInstance[], hashIds: readonly number[] | undefined, inputTokens: number, now: number): string | undefined {
    if (!this.o.prefixRouting || !hashIds?.length) return undefined;
    return decide.preferPrefixHolder(inputTokens, insts.filter((i) => i.core).map((i) => ({ id: i.id, tp: i.tp, cachedPrefixTokens: i.core!.cachedPrefixTokens(hashIds, inputTokens), pendingPrefillTokens: i.core!.pendingPrefillTokens(now) })));
  }

  private arriveStep(r: TraceRecord, now: number): void {
    this.requests++;
    if (overContext(r, this.maxContext)) {
      this.refusedOverContext++;
      return;
    }
    const id = `r${this.requests}`;
    const c = this.classifier.classify(r, id);
    if (!c) {
      this.unservable++;
      return;
    }
    if (c.pred !== c.type) this.misclassified++;
    const home = this.route.get(c.pred);
    const slo = promptTtftSloMs(TTFT_SLO_MS[inputClassOf(c.type)], r.inputTokens) * this.sloScale;
    const req: CoreRequest = { id, arrivalMs: now, promptTokens: Math.max(1, r.inputTokens), outputTokens: Math.max(1, r.outputTokens), type: c.pred, ttftDeadlineMs: now + slo, prefixHashes: r.hashIds };
    if (this.useDispatchPolicy) {
      // the pools intake tries (policy routePools, as the live intake and gateway: the type's, then the pools of the
      // longer types in its chain, those with a ready instance when any has one), each dispatching through its
      // leader's machine; an overloaded pool spills to the next
      const byId = new Map(this.pools.map((p) => [p.id, p]));
      const ids = routePools(new Map([...this.route].map(([t, p]) => [t, p.id])), (p) => !byId.get(p)?.types.length, c.pred, (p) => byId.get(p)!.instances.some((i) => i.state === 'active' && !!i.brain));
      this.arriving.set(id, { r: req, c, slo, pools: ids.map((p) => byId.get(p)!), msg: simRequest(req, c.pred, 0) });
      this.offer(id, now);
      return;
    }
    let inst = home ? this.dispatch(home, c.pred, now, r) : null;
    // overload goes upward: the next longer pools (they meet the shorter types' SLOs)
    if (!inst) for (const p of this.pools) if (p !== home && p.order > (home?.order ?? -1) && p.types.length && (inst = this.dispatch(p, c.pred, now, r))) break;
    if (!inst) {
      // everything at capacity: queue on the least-loaded active instance of the home pool (its emergency path
      // then acts), else of the nearest longer pool with one, else of any pool: what the live cluster manager does
      // (the type's pool, then longer pools only)
      const pick = (ps: SimPool[]) => leastOutstanding(ps.flatMap((p) => p.instances), r.inputTokens + r.outputTokens);
      // cache-aware routing at capacity too: the least prefill before the first token among the home pool's instances
      const homeAct = this.o.prefixRouting && home ? home.instances.filter((i) => canServe(i, r.inputTokens + r.outputTokens)) : [];
      const held = homeAct.length ? this.preferPrefix(homeAct, r.hashIds, r.inputTokens, now) : undefined;
      inst = (held && homeAct.find((i) => i.id === held)) || (home && pick([home])) || null;
      for (const p of this.pools) if (!inst && p !== home && p.order > (home?.order ?? -1) && p.types.length) inst = pick([p]);
      inst ??= pick(this.pools);
    }
    if (!inst || !inst.core) {
      this.rejected++;
      return;
    }
    let at: SimInstance = inst;
    const st: ReqState = { arrivalMs: now, ttftSloMs: slo, type: c.type, pred: c.pred, firstMs: -1, lastMs: -1, tbtSum: 0, tbtN: 0, inst: at, moves: 0 };
    this.reqs.set(id, st);
    at.outstanding++;
    // the instance machine may refuse (backpressure, a full queue): the next instance of the pool, at most 4 tries
    const tried = new Set<SimInstance>();
    while (this.admitTo(at, req, st, now)) {
      tried.add(at);
      const next: SimInstance | null = tried.size < 4 ? this.dispatch(at.pool, c.pred, now, r, (i) => !tried.has(i)) : null;
      if (!next) {
        this.admitted.delete(id);
        this.dropRequest(id, now);
        this.rejected++;
        return;
      }
      at.outstanding--;
      next.outstanding++;
      st.inst = at = next;
    }
    this.counted(at, c.pred, now);
  }

  /** The sim's own offered-load estimate of an instance takes one request of `pred` (the baselines' cap, the oracle's peaks). */
  private counted(at: SimInstance, pred: RequestType, now: number): void {
    this.decayLoad(at, now);
    const k = TYPE_INDEX[pred];
    at.load[k] += 1 / LOAD_WINDOW_S;
    if (at.load[k] > at.peakCur[k]) at.peakCur[k] = at.load[k];
  }

  /** src/policy prefillClockFloor on an instance's prefill backlog (step fidelity; the min clock otherwise). */
  private prefillFloor(inst: SimInstance, now: number): number {
    const core = inst.core;
    if (!core) return this.p.clocksMhz[0]!;
    const backlog = core.prefillBacklog();
    if (!backlog.length) return this.p.clocksMhz[0]!;
    const busy = core.busyUntilMs(now);
    return decide.prefillClockFloor(this.p, inst.tp, backlog.map((b) => ({ tokens: b.tokens, slackMs: (b.deadlineMs ?? Infinity) - now })), busy === null ? 0 : busy - now);
  }

  private runStep(inst: SimInstance, now: number): void {
    inst.inHeap = false;
    const core = inst.core;
    if (!core) return;
    const res = core.step(now);
    if (!res) return;
    const end = res.startMs + res.durationMs;
    for (const e of res.events) {
      if (e.kind === 'preempted') continue;
      const st = this.reqs.get(e.id);
      if (!st) continue;
      if (e.kind === 'first_token') {
        st.firstMs = e.atMs;
        st.lastMs = e.atMs;
        inst.brain?.step({ type: 'first_token', id: e.id }, e.atMs);
      } else if (e.kind === 'token') {
        const g = e.atMs - st.lastMs;
        this.tbt[st.type].add(g);
        st.tbtSum += g;
        st.tbtN++;
        st.lastMs = e.atMs;
      } else if (e.kind === 'finished') {
        this.finish(e.id, st);
        inst.brain?.step({ type: 'finished', id: e.id, ok: true }, e.atMs);
      }
    }
    if (core.hasWork()) {
      inst.inHeap = true;
      this.stepHeap.push(res.durationMs > 0 ? end : end + 1, inst);
    }
    if (inst.state === 'draining') this.maybeStop(inst, end);
  }

  private finish(id: string, st: ReqState): void {
    const k = TYPE_INDEX[st.type];
    const ttft = st.firstMs - st.arrivalMs;
    this.ttft[st.type].push(ttft);
    this.ttftOverSlo[st.type].push(ttft / st.ttftSloMs);
    const meanTbt = st.tbtN ? st.tbtSum / st.tbtN : 0;
    this.done[k]++;
    this.classifier.completed(id);
    if (ttft <= st.ttftSloMs && meanTbt <= TBT_SLO_MS * this.sloScale) this.sloOk[k]++;
    st.inst.outstanding--;
    this.reqs.delete(id);
    st.inst.pool.leader?.record(id, st.inst.id, st.lastMs);
    if (st.inst.state === 'draining') this.maybeStop(st.inst, st.lastMs);
  }

  // ---------------------------------------------------------------- energy and series
  private instancesEnergyJ(now: number): number {
    let e = this.stoppedEnergyJ;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || i.state === 'starting') continue;
        if (i.core) {
          if (!i.inHeap) i.core.idleUntil(now);
          e += i.core.stats().energyJ;
        } else e += i.energyJ;
      }
    return e;
  }

  /**
   * Where the energy went (kWh; the parts sum to energyKWh): GPUs in no instance (powered, unloaded idle), instances
   * starting (loaded idle while they load: the scale-out cost), instances idle (no step running: loaded idle at their
   * clock), and instances stepping (busy: the clock, the batch and the TP split set it).
   */
  private energyBreakdown(now: number): NonNullable<SimResult['energyBreakdown']> {
    const total = this.instancesEnergyJ(now);
    let idle = this.stoppedIdleJ;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || i.state === 'starting') continue;
        idle += i.core ? i.core.stats().idleEnergyJ : (i.idleJ ?? 0);
      }
    const k = 3.6e6;
    return { unallocatedKWh: this.freeJ / k, startingKWh: this.startingJ / k, instanceIdleKWh: idle / k, instanceBusyKWh: (total - idle) / k, unusedServersKWh: this.unusedJ / k, serverBootKWh: this.bootJ / k };
  }

  private totalEnergyJ(now: number): number {
    this.accountExtra(now);
    return this.instancesEnergyJ(now) + this.extraJ;
  }

  private sample(now: number): void {
    const e = this.totalEnergyJ(now);
    const dt = (now - this.lastSampleMs) / 1000;
    if (dt <= 0) return;
    const w = (e - this.lastSampleJ) / dt;
    this.carbonG += ((e - this.lastSampleJ) / 3.6e6) * this.inp.carbonAt(now / 1000);
    this.lastSampleJ = e;
    this.lastSampleMs = now;
    this.powerSamples.push(w);
    const s = this.series;
    s.tS.push(now / 1000);
    s.powerW.push(Math.round(w));
    s.energyKWh.push(e / 3.6e6);
    const n = s.tS.length;
    for (const p of this.pools) {
      const live = p.instances.filter((i) => i.state === 'active' || i.state === 'draining' || (i.state === 'starting' && !i.reshard));
      (s.gpusByPool[p.id] ??= new Array(n - 1).fill(0)).push(live.reduce((a, i) => a + i.tp, 0));
      const act = live.filter((i) => i.state === 'active');
      (s.clockByPool[p.id] ??= new Array(n - 1).fill(0)).push(act.length ? Math.round(act.reduce((a, i) => a + i.clockMhz, 0) / act.length) : 0);
    }
    for (const k of Object.keys(s.gpusByPool)) if (s.gpusByPool[k].length < n) s.gpusByPool[k].push(0);
    for (const k of Object.keys(s.clockByPool)) if (s.clockByPool[k].length < n) s.clockByPool[k].push(0);
  }

  // ---------------------------------------------------------------- data plane: fluid
  /**
   * Advance every instance over one tick with the tick's arrivals (binned per pool and true type). Load is
   * shared in proportion to SLO capacity (what the dispatcher approximates); instances of a pool with the
   * same (TP, clock) get the same share, so the work is O(pools x distinct configs x types) per tick.
   */
  private fluidTick(dtS: number, counts: Map<SimPool, Float64Array>, endMs: number): void {
    const fDecay = Math.exp(-dtS / LOAD_WINDOW_S);
    const fPow = Math.exp(-dtS / FLUID_POWER_WINDOW_S);
    const fLat = Math.exp(-dtS / FLUID_LATENCY_WINDOW_S);
    const fx = this.fluidScratch;
    for (const pool of this.pools) {
      const c = counts.get(pool);
      // a new pool starts at its first tick's rate (not from zero: the trace starts warm)
      const fresh = !pool.smooth;
      const sm = (pool.smooth ??= new Float64Array(9));
      for (let k = 0; k < 9; k++) sm[k] = fresh ? (c ? c[k] / dtS : 0) : sm[k] * fPow + (1 - fPow) * (c ? c[k] / dtS : 0);
      const ls = (pool.latSmooth ??= new Float64Array(9));
      for (let k = 0; k < 9; k++) ls[k] = fresh ? (c ? c[k] / dtS : 0) : ls[k] * fLat + (1 - fLat) * (c ? c[k] / dtS : 0);
      let total = 0;
      if (c) for (let k = 0; k < 9; k++) total += c[k];
      // groups of active instances by (TP, clock), in the order of their first instance
      const groups = fx.groups;
      let ng = 0;
      for (const i of pool.instances) {
        if (i.state !== 'active') continue;
        let g: FluidGroup | undefined;
        for (let j = 0; j < ng; j++) if (groups[j]!.tp === i.tp && groups[j]!.clock === i.clockMhz) { g = groups[j]; break; }
        if (!g) {
          let cap = 1;
          if (c && total > 0) {
            let u = 0;
            for (let k = 0; k < 9; k++) if (c[k] > 0) u += c[k] / total / Math.max(1e-9, this.maxLoadAtMax(k, i.tp));
            cap = 1 / u;
          }
          g = groups[ng] ??= { tp: i.tp, clock: 0, insts: [], cap: 0 };
          g.tp = i.tp;
          g.clock = i.clockMhz;
          g.insts.length = 0;
          g.cap = cap;
          ng++;
        }
        g.insts.push(i);
      }
      if (!ng) continue;
      let capSum = 0;
      for (let j = 0; j < ng; j++) capSum += groups[j]!.cap * groups[j]!.insts.length;
      for (let j = 0; j < ng; j++) {
        const g = groups[j]!;
        const share = capSum > 0 ? g.cap / capSum : 0;
        const cfg = fluidConfig(this.p, g.tp, g.clock, this.maxClock);
        if (cfg) this.fluidGroupFast(cfg, g, share, dtS, fDecay, c, total, sm, ls, endMs);
        else this.fluidGroup(g, share, dtS, fDecay, c, total, sm, ls, endMs);
      }
    }
  }

  /** maxLoadOf(type k, tp, max clock), tabulated per TP (the fluid tick and spill ask it per type per tick). */
  private maxLoadAtMax(k: number, tp: number): number {
    let a = this.mlMaxByTp.get(tp);
    if (!a) {
      a = new Float64Array(9).fill(NaN);
      for (let j = 0; j < 9; j++) {
        try {
          a[j] = maxLoadOf(this.p, REQUEST_TYPES[j], tp, this.maxClock);
        } catch {
          // left NaN: asked again below, where it throws as it did untabulated
        }
      }
      this.mlMaxByTp.set(tp, a);
    }
    const v = a[k]!;
    return v === v ? v : maxLoadOf(this.p, REQUEST_TYPES[k], tp, this.maxClock);
  }
  private readonly mlMaxByTp = new Map<number, Float64Array>();

  private readonly fluidScratch = { tps: [] as number[], nByTp: [] as number[], groups: [] as FluidGroup[], pl: new Float64Array(9), l: new Float64Array(9), add: new Float64Array(9), pw: new Float64Array(2), lat: new Float64Array(4), outTok: null as Float64Array | null };

  /** One (TP, clock) group's tick, on the precomputed constants of ./fluid.ts (the same arithmetic as fluidGroup). */
  private fluidGroupFast(cfg: FluidConfig, g: FluidGroup, share: number, dtS: number, fDecay: number, c: Float64Array | undefined, total: number, sm: Float64Array, ls: Float64Array, endMs: number): void {
    const fx = this.fluidScratch;
    const pl = fx.pl, l = fx.l, add = fx.add, pw = fx.pw;
    // latency is read at the smoothed rate (see FLUID_LATENCY_WINDOW_S); the tick's counts weight it
    for (let k = 0; k < 9; k++) {
      l[k] = ls[k] > 1e-9 ? ls[k] * share : 0;
      pl[k] = sm[k] > 1e-9 ? sm[k] * share : 0;
    }
    mixedPowerFast(cfg, pl, pw);
    let w = pw[0]!;
    const n = g.insts.length;
    let busy = 1 - Math.exp(-pw[1]!);
    if (!this.useDispatchPolicy && n > 1) {
      // see fluidGroup: the busy fraction of least-outstanding dispatch
      const x = pw[1]!;
      const bi = 1 - Math.exp(-x);
      if (bi > 1e-9) {
        busy = leastLoadedBusyFraction(n, x);
        w = cfg.idleW + ((w - cfg.idleW) / bi) * busy;
      }
    }
    // the idle part (the energy breakdown): the share of the tick no request is in service, at idle power
    const idleJ = (1 - Math.min(1, busy)) * cfg.idleW * dtS;
    for (let k = 0; k < 9; k++) add[k] = (1 - fDecay) * (c ? (c[k] * share) / dtS : 0);
    for (const inst of g.insts) {
      inst.energyJ += w * dtS;
      inst.idleJ = (inst.idleJ ?? 0) + idleJ;
      const ld = inst.load;
      for (let k = 0; k < 9; k++) ld[k] = ld[k] * fDecay + add[k];
      inst.loadAtMs = endMs;
      if (c) this.countArrivals(inst, c, share);
    }
    if (!c || total === 0) return;
    const u = utilisationFast(cfg, l);
    const outTok = (fx.outTok ??= Float64Array.from(REQUEST_TYPES, (t) => Math.max(1, this.p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100)));
    const lat = fx.lat;
    for (let k = 0; k < 9; k++) {
      const cnt = c[k] * share * n;
      if (cnt <= 0) continue;
      const t = REQUEST_TYPES[k];
      const grid = cfg.grid[k]!;
      const m = cfg.ml[k]!;
      const leq = Math.min(grid[grid.length - 1]!, Number.isFinite(u) && m > 0 ? u * m : grid[grid.length - 1]!);
      if (!latencyFast(cfg, k, leq, lat) || (leq <= m && this.bendsPastSlo(k, lat[1]!, lat[3]!))) {
        const cell = leq <= m ? latencyWithinSlo(this.p, t, g.tp, g.clock, leq) : interpolate(this.p, t, g.tp, g.clock, leq);
        lat[0] = cell.ttftP50Ms; lat[1] = cell.ttftP99Ms; lat[2] = cell.tbtP50Ms; lat[3] = cell.tbtP99Ms;
      }
      this.fluidLatency(k, cnt, lat[0]!, lat[1]!, lat[2]!, lat[3]!, u, outTok[k]!);
    }
  }

  /** fluid: an instance's share of its pool's arrivals in a tick, for its machine's epoch load. */
  private countArrivals(inst: SimInstance, c: Float64Array, share: number): void {
    const a = (inst.arrived ??= new Float64Array(9));
    for (let k = 0; k < 9; k++) a[k] += c[k] * share;
  }

  /** One (TP, clock) group's tick, read from the profile directly (where ./fluid.ts has no constants for it). */
  private fluidGroup(g: FluidGroup, share: number, dtS: number, fDecay: number, c: Float64Array | undefined, total: number, sm: Float64Array, ls: Float64Array, endMs: number): void {
    // latency is read at the smoothed rate (see FLUID_LATENCY_WINDOW_S); the tick's counts weight it
    const load: LoadByType = {};
    for (let k = 0; k < 9; k++) if (ls[k] > 1e-9) load[REQUEST_TYPES[k]] = ls[k] * share;
    const pload: LoadByType = {};
    for (let k = 0; k < 9; k++) if (sm[k] > 1e-9) pload[REQUEST_TYPES[k]] = sm[k] * share;
    let w = decide.mixedPowerW(this.p, g.tp, g.clock, pload);
    const x = decide.occupancyOf(this.p, g.tp, g.clock, pload);
    const idleW = idlePowerOf(this.p, g.tp, g.clock);
    let busy = 1 - Math.exp(-x);
    if (!this.useDispatchPolicy && g.insts.length > 1) {
      // least-outstanding dispatch (the baselines) sends an arrival to an empty instance whenever one exists:
      // instances idle far less than the profile's independent-Poisson busy fraction 1 - exp(-x) assumes
      // (src/sim/fluid.ts). Keep the profile's power while busy, take the busy fraction of the dispatch.
      // Approximation: each (TP, clock) group is its own least-loaded pool (step balances per GPU across them).
      const bi = busy;
      if (bi > 1e-9) {
        busy = leastLoadedBusyFraction(g.insts.length, x);
        w = idleW + ((w - idleW) / bi) * busy;
      }
    }
    // the idle part (the energy breakdown): the share of the tick no request is in service, at idle power
    const idleJ = (1 - Math.min(1, busy)) * idleW * dtS;
    for (const inst of g.insts) {
      inst.energyJ += w * dtS;
      inst.idleJ = (inst.idleJ ?? 0) + idleJ;
      for (let k = 0; k < 9; k++) inst.load[k] = inst.load[k] * fDecay + (1 - fDecay) * (c ? (c[k] * share) / dtS : 0);
      // the EWMA is now current at the tick's end: without this, decayLoad (instance epoch) decayed it a
      // second time for the same 5 s and the clock saw ~1/(1 + e^-0.5) = 62% of the load
      inst.loadAtMs = endMs;
      if (c) this.countArrivals(inst, c, share);
    }
    if (!c || total === 0) return;
    const n = g.insts.length;
    // latency: each type read at the instance's utilisation mapped onto that type's load axis
    const u = decide.utilisation(this.p, g.tp, g.clock, load);
    for (let k = 0; k < 9; k++) {
      const cnt = c[k] * share * n;
      if (cnt <= 0) continue;
      const t = REQUEST_TYPES[k];
      const grid = this.p.loads[t]!;
      const m = maxLoadOf(this.p, t, g.tp, g.clock);
      const leq = Math.min(grid[grid.length - 1], Number.isFinite(u) && m > 0 ? u * m : grid[grid.length - 1]);
      const cell = leq <= m ? latencyWithinSlo(this.p, t, g.tp, g.clock, leq) : interpolate(this.p, t, g.tp, g.clock, leq);
      const outTok = Math.max(1, this.p.requestTypes.find((x) => x.type === t)?.outputTokens ?? 100);
      this.fluidLatency(k, cnt, cell.ttftP50Ms, cell.ttftP99Ms, cell.tbtP50Ms, cell.tbtP99Ms, u, outTok);
    }
  }

  /**
   * Whether a latency read inside the SLO load limit is past the type's SLO: the interpolation blended a saturated
   * grid cell in (a coarse load grid whose next point is past saturation); latencyWithinSlo then reads it.
   */
  private bendsPastSlo(k: number, ttftP99: number, tbtP99: number): boolean {
    const spec = (this.specByK ??= REQUEST_TYPES.map((t) => this.p.requestTypes.find((x) => x.type === t)))[k];
    return !!spec && (ttftP99 > spec.ttftSloMs || tbtP99 > spec.tbtSloMs);
  }
  private specByK: (RequestTypeSpecLike | undefined)[] | undefined;

  /** Latency and SLO accounting of `cnt` requests of type k read at one profile cell (utilisation u). */
  private fluidLatency(k: number, cnt: number, ttftP50: number, ttftP99: number, tbtP50: number, tbtP99: number, u: number, outTok: number): void {
    const t = REQUEST_TYPES[k];
    // profile percentiles spread over the requests: 50% at p50, 49% between, 1% at p99
    const over = Number.isFinite(u) && u > 1 ? u : 1; // past SLO capacity the queue grows: scale
    this.ttftHist[t].add(ttftP50 * over, 0.5 * cnt);
    this.ttftHist[t].add(((ttftP50 + ttftP99) / 2) * over, 0.49 * cnt);
    this.ttftHist[t].add(ttftP99 * over, 0.01 * cnt);
    this.tbt[t].add(tbtP50, 0.5 * cnt * outTok);
    this.tbt[t].add((tbtP50 + tbtP99) / 2, 0.49 * cnt * outTok);
    this.tbt[t].add(tbtP99, 0.01 * cnt * outTok);
    this.done[k] += cnt;
    // attainment from the same three points that feed the histograms (and so the p99 verdict): a point's
    // requests meet the SLO when its TTFT and its TBT are inside. Before, u > 1 alone counted a share
    // 1 - 1/u as missing (and halved the rest on a p99 TTFT miss); but u is load over the SLO max load, and
    // for most types that limit is the p99 TBT (long prefills stalling decodes), not a throughput limit:
    // conv hour, multi-pool, the LL pool at u ~ 1.2 met 100% in step (TTFT p99 357 ms) and 48% in fluid.
    const ttSlo = TTFT_SLO_MS[inputClassOf(t)] * this.sloScale, tbSlo = TBT_SLO_MS * this.sloScale;
    const midT = (ttftP50 + ttftP99) / 2, midB = (tbtP50 + tbtP99) / 2;
    const ok = (ttftP50 * over <= ttSlo && tbtP50 <= tbSlo ? 0.5 : 0) + (midT * over <= ttSlo && midB <= tbSlo ? 0.49 : 0) + (ttftP99 * over <= ttSlo && tbtP99 <= tbSlo ? 0.01 : 0);
    this.sloOk[k] += cnt * ok;
  }

  /**
   * Dispatch's SLO cap in fluid: a pool accepts up to (1 - headroom) of its SLO throughput at max clock (sum over
   * its active instances), judged on its accepted rate smoothed over LOAD_WINDOW_S, the estimate step's dispatch
   * caps each instance with; the excess of each type's tick count goes on to the next longer pool with an active
   * instance (which caps it in turn); the last pool keeps its overflow (step then queues it in its home pool).
   * Without it fluid kept every pool's overflow at home while step spilled it (conv hour, multi-pool: the ML
   * pool's overflow to the LS pool kept the LS pool 24% busier in step than in fluid).
   */
  private fluidSpill(dtS: number, counts: Map<SimPool, Float64Array>, hasActive: Set<SimPool>): void {
    const f = Math.exp(-dtS / LOAD_WINDOW_S);
    const serving = this.pools.filter((p) => hasActive.has(p));
    for (let j = 0; j < serving.length; j++) {
      const pool = serving[j]!;
      const c = counts.get(pool);
      const acc = (pool.accepted ??= new Float64Array(9));
      if (!c) {
        for (let k = 0; k < 9; k++) acc[k] *= f;
        continue;
      }
      const next = serving[j + 1];
      let u = 0;
      if (next) {
        // active instances per TP, in the order of their first instance
        const tps = this.fluidScratch.tps, nByTp = this.fluidScratch.nByTp;
        let nt = 0;
        for (const i of pool.instances) {
          if (i.state !== 'active') continue;
          let j = 0;
          while (j < nt && tps[j] !== i.tp) j++;
          if (j === nt) {
            tps[nt] = i.tp;
            nByTp[nt++] = 0;
          }
          nByTp[j]++;
        }
        for (let k = 0; k < 9; k++) {
          const e = acc[k] * f + (1 - f) * (c[k] / dtS);
          if (!(e > 0)) continue;
          let cap = 0;
          for (let j = 0; j < nt; j++) cap += nByTp[j]! * this.maxLoadAtMax(k, tps[j]!);
          u += cap > 0 ? e / cap : Infinity;
        }
      }
      const keep = u > 1 - this.headroom ? (1 - this.headroom) / u : 1;
      let out: Float64Array | undefined;
      for (let k = 0; k < 9; k++) {
        if (keep < 1 && c[k] > 0) {
          out ??= counts.get(next!) ?? (counts.set(next!, new Float64Array(9)), counts.get(next!)!);
          out[k] += c[k] * (1 - keep);
          c[k] *= keep;
        }
        acc[k] = acc[k] * f + (1 - f) * (c[k] / dtS);
      }
    }
  }

  private arriveFluid(r: TraceRecord, counts: Map<SimPool, Float64Array>, hasActive: Set<SimPool>): void {
    this.requests++;
    if (overContext(r, this.maxContext)) {
      this.refusedOverContext++;
      return;
    }
    const c = this.classifier.classify(r, '');
    if (!c) {
      this.unservable++;
      return;
    }
    if (c.pred !== c.type) this.misclassified++;
    let pool = this.route.get(c.pred);
    if (!pool || !hasActive.has(pool)) {
      const from = pool?.order ?? -1;
      pool = this.pools.find((p) => p.order > from && hasActive.has(p)) ?? this.pools.find((p) => hasActive.has(p));
    }
    if (!pool) {
      this.rejected++;
      return;
    }
    let a = counts.get(pool);
    if (!a) counts.set(pool, (a = new Float64Array(9)));
    a[TYPE_INDEX[c.type]]++;
  }

  // ---------------------------------------------------------------- main loop
  private initialPlan(): void {
    if (this.knobs.oracle) this.oracleEpoch(0);
    else if (this.knobs.dynamicInstances) this.clusterStart();
    else {
      const s = this.staticPools();
      this.installPools(s.wanted, s.routing, 0, true);
    }
    if (this.knobs.dynamicShards && !this.knobs.oracle && !this.o.asConfigured) for (const p of this.pools) this.reshard(p, 0, true);
    this.instanceEpoch(0);
  }

  private poolEpoch(t: number): void {
    if (this.knobs.oracle) this.oracleEpoch(t);
    else if (this.knobs.dynamicShards) for (const p of [...this.pools]) this.reshard(p, t, false);
  }

  async run(): Promise<SimResult> {
    const wall0 = performance.now();
    await this.buildTemplate();
    const endMs = this.template.durationMs;
    const poolMs = this.ep.poolS * 1000;
    const instMs = this.ep.instanceS * 1000;
    const sampleMs = (this.o.sampleS ?? (endMs > 6 * 3.6e6 ? 60 : 10)) * 1000;
    this.initialPlan();

    let nextCluster = this.cm?.nextMs() ?? Infinity, nextPool = poolMs, nextInst = instMs, nextSample = sampleMs;
    let nextProgress = 0;
    const it = this.inp.records();
    const isAsync = Symbol.asyncIterator in it;
    const aiter = isAsync ? (it as AsyncIterable<TraceRecord>)[Symbol.asyncIterator]() : null;
    const siter = isAsync ? null : (it as Iterable<TraceRecord>)[Symbol.iterator]();
    let nextRec: TraceRecord | null = null;
    const pull = async () => {
      const r = aiter ? await aiter.next() : siter!.next();
      nextRec = r.done ? null : r.value;
    };
    await pull();
    const progress = (t: number) => {
      if (this.inp.onProgress && t >= nextProgress) {
        this.inp.onProgress(Math.min(1, t / endMs));
        nextProgress = t + endMs / 100;
      }
    };
    const cluster = (t: number) => {
      this.cm?.due(t);
      nextCluster = this.cm?.nextMs() ?? Infinity;
    };

    if (this.fidelity === 'fluid') {
      const tickMs = (this.o.fluidTickS ?? 5) * 1000;
      const counts = new Map<SimPool, Float64Array>();
      const hasActive = new Set<SimPool>();
      for (let t = 0; t < endMs; t += tickMs) {
        const tEnd = t + tickMs;
        hasActive.clear();
        for (const p of this.pools) if (p.instances.some((i) => i.state === 'active')) hasActive.add(p);
        counts.clear();
        if (siter) {
          while (nextRec && (nextRec as TraceRecord).tMs < tEnd) {
            this.arriveFluid(nextRec, counts, hasActive);
            const r = siter.next();
            nextRec = r.done ? null : r.value;
          }
        } else while (nextRec && (nextRec as TraceRecord).tMs < tEnd) {
          this.arriveFluid(nextRec, counts, hasActive);
          await pull();
        }
        if (this.knobs.dynamicShards && !this.knobs.oracle) for (const [p, c] of counts) recordFluidPoolArrivals(p, c, tEnd, poolBurstWindowMs(this.ep.poolS * 1000));
        this.fluidSpill(tickMs / 1000, counts, hasActive);
        this.fluidTick(tickMs / 1000, counts, tEnd);
        if (this.nextReadyMs <= tEnd) this.activateDue(tEnd);
        while (nextSample <= tEnd) {
          this.sample(nextSample <= tEnd ? tEnd : nextSample);
          nextSample += sampleMs;
        }
        if (nextInst <= tEnd) {
          this.instanceEpoch(tEnd);
          while (nextInst <= tEnd) nextInst += instMs;
        }
        if (nextPool <= tEnd) {
          this.poolEpoch(tEnd);
          while (nextPool <= tEnd) nextPool += poolMs;
        }
        if (nextCluster <= tEnd) cluster(tEnd);
        progress(tEnd);
      }
      const end = Math.ceil(endMs / tickMs) * tickMs;
      this.sample(end);
      return this.result(end, performance.now() - wall0);
    }

    // the instance machines' tick: the emergency ladder, and the clock's load rise between epochs
    let nextEm = this.knobs.emergency || this.knobs.dynamicClock || this.useDispatchPolicy ? BRAIN_TICK_MS : Infinity;
    // the pools' burst windows get their instances' admissions at the live status interval (the live pool machine's statuses)
    let nextStatus = this.knobs.dynamicShards && !this.knobs.oracle ? PEER_STATUS_MS : Infinity;
    let lastT = 0;
    while (true) {
      const tArr = nextRec ? Math.max(lastT, (nextRec as TraceRecord).tMs) : Infinity;
      const tStep = this.stepHeap.peekTime();
      const tTimer = Math.min(nextCluster, nextPool, nextInst, nextSample, nextEm, nextStatus, this.clockHeap.peekTime(), this.nextReadyMs);
      const t = Math.min(tArr, tStep, tTimer);
      if (t === Infinity || (t > endMs && !nextRec && this.stepHeap.size === 0)) break;
      if (t > endMs + 3.6e6) break; // safety: an hour past the last arrival
      lastT = t;
      if (tArr === t && nextRec) {
        this.arriveStep(nextRec, t);
        await pull();
        continue;
      }
      if (tStep === t && this.stepHeap.size) {
        this.runStep(this.stepHeap.pop(), t);
        continue;
      }
      if (this.nextReadyMs === t) {
        this.activateDue(t);
        continue;
      }
      if (this.clockHeap.peekTime() === t) {
        const c = this.clockHeap.pop();
        if (c.inst.state === 'active' || (c.inst.brain && c.inst.state === 'draining')) {
          this.setClockNow(c.inst, c.mhz, t);
          c.inst.brain?.clockApplied(c.mhz, c.why ?? '', c.inputs ?? {}, t);
        }
        continue;
      }
      if (nextSample === t) {
        this.sample(t);
        nextSample += sampleMs;
        progress(t);
        continue;
      }
      if (nextEm === t) {
        this.brainTick(t);
        nextEm += BRAIN_TICK_MS;
        continue;
      }
      if (nextStatus === t) {
        for (const p of this.pools) recordSimPoolArrivals(p, t, poolBurstWindowMs(this.ep.poolS * 1000));
        nextStatus += PEER_STATUS_MS;
        continue;
      }
      if (nextInst === t) {
        this.instanceEpoch(t);
        nextInst += instMs;
        continue;
      }
      if (nextPool === t) {
        this.poolEpoch(t);
        nextPool += poolMs;
        continue;
      }
      if (nextCluster === t) {
        cluster(t);
        continue;
      }
      break;
    }
    const end = Math.max(endMs, lastT, this.lastSampleMs); // to the last event served, the last request's end
    this.sample(end);
    return this.result(end, performance.now() - wall0);
  }

  private result(endMs: number, wallMs: number): SimResult {
    const energyJ = this.totalEnergyJ(endMs);
    const durationS = endMs / 1000;
    const gpuHours = this.gpuMs / 3.6e6;
    const stats = (types: RequestType[]): LatencyStats => {
      const tb = new LogHistogram();
      for (const t of types) tb.merge(this.tbt[t]);
      let requests = 0;
      for (const t of types) requests += this.done[TYPE_INDEX[t]];
      if (this.fidelity === 'step') {
        const all: number[] = [];
        for (const t of types) for (const v of this.ttft[t]) all.push(v);
        return { ttftP50Ms: percentile(all, 0.5), ttftP99Ms: percentile(all, 0.99), tbtP50Ms: tb.quantile(0.5), tbtP99Ms: tb.quantile(0.99), requests };
      }
      const th = new LogHistogram();
      for (const t of types) th.merge(this.ttftHist[t]);
      return { ttftP50Ms: th.quantile(0.5), ttftP99Ms: th.quantile(0.99), tbtP50Ms: tb.quantile(0.5), tbtP99Ms: tb.quantile(0.99), requests: Math.round(requests) };
    };
    const byType: Partial<Record<RequestType, LatencyStats>> = {};
    const slo: Partial<Record<RequestType, number>> = {};
    let within = true;
    for (const t of REQUEST_TYPES) {
      const k = TYPE_INDEX[t];
      if (this.done[k] <= 0) continue;
      const s = stats([t]);
      byType[t] = s;
      slo[t] = this.sloOk[k] / this.done[k];
      // judge types with >= 100 requests (no meaningful p99 below); step: each TTFT against its own SLO (promptTtftSloMs)
      const ttftMiss = this.fidelity === 'step' ? percentile(this.ttftOverSlo[t], 0.99) > 1 : s.ttftP99Ms > TTFT_SLO_MS[inputClassOf(t)] * this.sloScale;
      if (this.done[k] >= 100 && (ttftMiss || s.tbtP99Ms > TBT_SLO_MS * this.sloScale)) within = false;
    }
    const allTtft = new LogHistogram();
    if (this.fidelity === 'step') for (const t of REQUEST_TYPES) for (const v of this.ttft[t]) allTtft.add(v);
    else for (const t of REQUEST_TYPES) allTtft.merge(this.ttftHist[t]);
    const allTbt = new LogHistogram();
    for (const t of REQUEST_TYPES) allTbt.merge(this.tbt[t]);
    const price = this.o.gpuHourPrice ?? 2.5;
    const notes: string[] = [...this.notes];
    if (this.fidelity === 'fluid') notes.push('fluid fidelity: latency percentiles are profile-based estimates (interpolated profile cells), not simulated per request');
    if (this.refusedOverContext > 0) notes.push(`${this.refusedOverContext} requests (${((100 * this.refusedOverContext) / Math.max(1, this.requests)).toFixed(1)}%) refused: prompt + output over the ${this.maxContext}-token context; not in latency or SLO attainment`);
    notes.push(`SLO attainment: share of requests with TTFT <= SLO and mean TBT <= SLO (x${this.sloScale}); p99WithinSlo judges types with >= 100 requests`);
    const totalCarbon = this.carbonG / 1000;
    return {
      policy: this.o.policy,
      fidelity: this.fidelity,
      energySource: { kind: 'modelled', profile: `${this.p.model}.${this.p.gpu} (${this.p.source.kind}, ${this.p.source.generatedBy})`, calibration: this.p.source.calibration ?? 'n/a' },
      durationS,
      rateScale: typeof this.o.rateScale === 'number' ? this.o.rateScale : 1,
      requests: this.requests,
      energyKWh: energyJ / 3.6e6,
      energyBreakdown: this.energyBreakdown(endMs),
      avgPowerW: energyJ / durationS,
      p99PowerW: percentile(this.powerSamples, 0.99),
      gpuHours,
      costUsd: gpuHours * price,
      carbonKg: totalCarbon,
      latency: { ...stats([...REQUEST_TYPES]), byType },
      sloAttainment: slo,
      p99WithinSlo: within,
      reconfigurations: { ...this.reconf },
      rejected: this.rejected,
      unservable: this.unservable,
      refusedOverContext: this.refusedOverContext,
      maxContext: this.maxContext,
      prefixCache: this.prefixCounters.lookupTokens > 0 ? { ...this.prefixCounters } : undefined,
      misclassified: this.misclassified,
      wallS: wallMs / 1000,
      series: this.series,
      cdf: { ttft: allTtft.cdf(100), tbt: allTbt.cdf(100) },
      notes,
    };
  }
}
