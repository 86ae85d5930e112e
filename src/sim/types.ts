/** Options and results of the trace-driven simulator. */
import type { RequestType } from '../../protocols/request-types.ts';
import type { SynthOptions, TimeUnit } from './trace.ts';
import type { StandbyConfig, StandbyWindowConfig } from '../policy/sleep-standby.ts';
import type { DrainSummary } from './drain-migration.ts';
import type { DrainMigrationConfig } from '../policy/drain-migration.ts';
import type { SloSettings } from '../policy/slo.ts';

export const POLICY_NAMES = ['single-pool', 'multi-pool', 'scale-inst', 'scale-shard', 'scale-freq', 'dynamollm', 'oracle'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];
export type Fidelity = 'step' | 'fluid';

/** Energy vs single-pool the paper reports (Fig. 7, 1-hour conversation trace), %. */
export const PAPER_ENERGY_VS_SINGLE: Partial<Record<PolicyName, number>> = {
  'multi-pool': 20, 'scale-inst': -2, 'scale-shard': -6, 'scale-freq': -19, dynamollm: -35,
};

/**
 * The paper's energy-vs-single-pool figures that apply to a run (FACTS.md, evaluation results), with where they
 * come from: Fig. 7 (1-hour conversation trace) for a conversation trace of up to 2 hours; the 1-week simulation
 * (dynamollm -47% conversation, -56% coding) for a synthetic conversation- or coding-shaped trace of 5 days or
 * more; nothing otherwise (the paper gives no coding-hour figures).
 */
export function paperFiguresFor(trace: TraceSource, durationS: number): { figures: Partial<Record<PolicyName, number>>; source: string } {
  if (trace.kind === 'synth' && durationS >= 5 * 86400) {
    if (trace.shape === 'conversation') return { figures: { dynamollm: -47 }, source: 'paper: 1-week simulation, conversation (dynamollm -47%)' };
    if (trace.shape === 'coding') return { figures: { dynamollm: -56 }, source: 'paper: 1-week simulation, coding (dynamollm -56%)' };
  }
  if (trace.kind === 'file' && /conv/i.test(trace.path) && durationS <= 2 * 3600) return { figures: PAPER_ENERGY_VS_SINGLE, source: 'paper: Fig. 7, 1-hour conversation trace' };
  return { figures: {}, source: 'paper: no figure for this trace' };
}

/** Serializable trace source (it crosses into worker threads). */
export type TraceSource =
  | { kind: 'file'; path: string; startMs?: number; durationMs?: number; limit?: number; skipBad?: boolean; timeUnit?: TimeUnit | 'auto'; speed?: number }
  /**
   * a synthetic trace of durationS (whole days: the shape is that of the days), optionally a window of it: its
   * records from startMs for durationMs, their times taken from the window's start (as a trace file's window).
   */
  | ({ kind: 'synth' } & Omit<SynthOptions, 'lengthsFrom'> & { lengthsFromFile?: string; startMs?: number; durationMs?: number });

/** Time a powered-off server takes to boot (unusedServers 'off'), drawing its unloaded idle power, s (Table V: a VM 1-2 min; the live default). */
export const SERVER_BOOT_S = 120;

export interface SimEpochs {
  /** cluster (scale-out/in) epoch, s; default 1800. */
  clusterS: number;
  /** pool (re-shard) epoch, s; default 300. */
  poolS: number;
  /** instance (clock) epoch, s; default 5. */
  instanceS: number;
}

/** Reconfiguration costs (paper Tables V and VI). */
export interface SimCosts {
  /** new instance start with weights cached in-cluster, s; default 300 (Table V: 6-8 min naive; engine setup + weight load ~35 s; VM/distributed init dominate). */
  instanceStartS: number;
  /** tau, time to move 1/8 of the weights over NVLink, ms; default 50 (Table VI). */
  tauMs: number;
  /** engine re-synchronisation after a re-shard, ms; default 2000. */
  resyncMs: number;
  /** SM clock change, ms (instance keeps the old clock meanwhile); default 65 (50-80 ms). */
  clockChangeMs: number;
  /**
   * engine stop, s: from a drained instance's stop to its GPUs free (its process exits; its GPUs hold it
   * meanwhile, at loaded idle power); default policy defaultOverhead().instanceStopS.
   */
  instanceStopS: number;
}

/** What a live instance manager's config bounds (actors/common/config.ts engine and emergency sections). */
export interface InstanceLimits {
  /** requests inside the engine at once. */
  maxInEngine: number;
  /** bound of the instance manager's admission queue. */
  maxQueued: number;
  /** a request queued longer than this is rejected at emergency step 4, ms. */
  rejectAfterMs: number;
  /** a peer with fewer queued requests than this can take moved ones. */
  moveQueueAbove: number;
  /** Retry-After told to refused and rejected clients, s. */
  retryAfterS: number;
}

export interface SimOptions {
  policy: PolicyName;
  trace: TraceSource;
  model: string;
  gpu: string;
  servers: number;
  fidelity: Fidelity;
  /**
   * the cluster's SLOs (p99 TTFT by input class, TBT), as a cluster config's `slo:` (src/policy/slo.ts SloSettings);
   * default Table IV's (DEFAULT_SLO_SETTINGS). Each request's SLO and TTFT deadline are policy requestSloOf's under
   * them (times sloScale), as the live intake's withSlo sets them.
   */
  slo?: SloSettings['slo'];
  /**
   * the cluster's class thresholds, as a cluster config's `thresholds:`; default Table IV's. The L input bound is
   * widened to the model's context (`maxContext`) when that is longer.
   */
  thresholds?: SloSettings['thresholds'];
  /** multiplies the SLOs (`slo`, Table IV's by default); default 1 (the paper's 5x-unloaded SLO). */
  sloScale?: number;
  /**
   * multiplies the arrival rate, keeping the trace's duration and shape (a file trace: each request is
   * replicated floor(k) or ceil(k) times with up to 2 s of jitter, or thinned when k < 1; a synthetic trace:
   * its mean rate). 'auto': the factor at which single-pool sizing for the trace's peak (5-minute average,
   * TP8 at max clock, with `headroom` kept free) needs exactly `servers` servers (the paper's setup: the
   * cluster is sized for the peak). Default 1.
   */
  rateScale?: number | 'auto';
  /** USD per GPU-hour; default 2.5. */
  gpuHourPrice?: number;
  /** carbon intensity: a constant gCO2/kWh (default 400) or a CSV file `time_s,gco2_per_kwh`. */
  carbon?: number | string;
  /** path of a Profile v1 JSON; default profiles/<model>.<gpu>.json, else generated from the model. */
  profilePath?: string;
  epochs?: Partial<SimEpochs>;
  costs?: Partial<SimCosts>;
  /** fluid tick, s; default 5. */
  fluidTickS?: number;
  /** accuracy of the output-length class prediction, 0..1; default 0.81 (the paper's BERT proxy). */
  predictorAccuracy?: number;
  /**
   * the output-length predictor (./classifier.ts): 'proxy' (default; the paper's BERT proxy at `predictorAccuracy`)
   * or 'online' (the live intake's: policy OnlineOutputPredictor capped by max_tokens, the trace's output length as
   * `replay` sends it, learning from completed requests; step fidelity).
   */
  predictor?: 'proxy' | 'online';
  seed?: number;
  /** fraction of SLO throughput the clock/sharding policies keep free, 0..1; default 0.2. */
  headroom?: number;
  /**
   * dispatch within a pool: 'policy' (step fidelity: the pool machine's dispatch, as the live pool leader runs it,
   * ./pool-leader.ts: src/policy dispatchRequest on the instances' statuses, its tries and holds; an overloaded
   * pool spills to the next) or 'least-loaded' (the baselines', ./baseline-dispatch.ts: least outstanding work per
   * GPU among instances under their SLO throughput with the headroom). Default 'policy' for dynamollm and the oracle,
   * 'least-loaded' for the baselines.
   */
  dispatch?: 'least-loaded' | 'policy';
  /** series sample period, s; default 60 for traces over 6 h, else 10. */
  sampleS?: number;
  /**
   * the context the served model takes, tokens: a request with prompt + output above it is refused (counted in
   * refusedOverContext, never an SLO miss). Default: the model's (catalog maxContext), at least 8192 (the paper's
   * longest input class). Prompts above 8192 on a longer-context model are L-input requests.
   */
  maxContext?: number;
  /** step fidelity: automatic prefix caching for requests whose trace row carries hash_ids; default true. */
  prefixCaching?: boolean;
  /** tokens per prefix block of the trace's hash_ids; default 512 (the Mooncake traces'). */
  prefixBlockTokens?: number;
  /** step fidelity: cache-aware dispatch (src/policy preferPrefixHolder among the eligible instances); default false. */
  prefixRouting?: boolean;
  /**
   * servers that hold neither a pool's grant nor an instance: 'powered' (default; their GPUs draw unloaded idle
   * power, the fleet stays on) or 'off': the cluster machine's server power decisions (src/policy/machines/
   * cluster-power.ts, the live cluster manager's with a power driver) run on the simulated servers: a drained server
   * idle for a boot time is powered off beyond `powerReserve` idle ones, servers are powered on `serverBootS` ahead of
   * the start-ahead epoch that needs them (or at once, a plan short of powered servers waiting for them), a server off
   * draws nothing, a booting one its unloaded idle power. Policies without the cluster machine (single-pool,
   * multi-pool, scale-shard, scale-freq, oracle) keep every server powered.
   */
  unusedServers?: 'powered' | 'off';
  /** with unusedServers 'off': a server's boot time, s (default SERVER_BOOT_S, Table V). */
  serverBootS?: number;
  /** with unusedServers 'off': idle powered servers kept on beyond the grants (default 1, the live default). */
  powerReserve?: number;
  /**
   * A live cluster's shape instead of the paper's (the twin check, test/bench/twin.bench.ts): GPUs per server
   * (default the GPU's catalog server, 8 for H100), the TP of the instances static pools start with (default 8),
   * and the policy's knobs overridden (e.g. one pool with the instance machine's clock and ladder).
   * `asConfigured`: pools start in `instanceTp` instances, as a live cluster starts, instead of in the pool
   * epoch's plan at t = 0 (a warm start).
   */
  gpusPerServer?: number;
  instanceTp?: 1 | 2 | 4 | 8;
  asConfigured?: boolean;
  /**
   * step fidelity, not the oracle: each instance's own clock epochs, as a live instance's timer runs them. The instances
   * the cluster starts with have their first epoch at these times, ms after the trace's start (> 0; one per instance in
   * the order they are made, a shorter list repeated; within one epoch for an instance up before the trace, later for
   * one that came up after it), an instance started later one epoch after it serves; each then every instanceS,
   * holding until its first epoch the max clock it starts at, its load window open from one epoch before it, as the
   * live instance machine does. A live cluster has its instances' epochs at the phases their starts set (the twin
   * check passes the live ones). Absent: every instance's epoch on one grid, at t = 0 and every instanceS after.
   */
  instanceEpochPhaseMs?: number | readonly number[];
  /**
   * with instanceEpochPhaseMs: whether each instance the cluster starts with (in the order they are made, a shorter list
   * repeated) had its last epoch before the trace one epoch before its phase, on no load, as a live instance up longer
   * than an epoch before the trace has: it starts at the clock that epoch chose (the least power at no load) instead
   * of holding the max clock it starts at until its first epoch. The decision is before the trace and not counted.
   * Default false.
   */
  instanceEpochBeforeTrace?: boolean | readonly boolean[];
  /**
   * step fidelity, the policy dispatch: when the instances the cluster starts with publish their statuses, ms after the
   * trace's start (in (0, 500], one per instance in the order they are made, a shorter list repeated). Each instance
   * publishes its status to its pool's dispatch on its own timer, every 500 ms (the live status interval) from its
   * start, as a live instance manager does, and the dispatch sees its load as of its last status plus what it sent it
   * since. An instance started later publishes from its start. Absent: the instances the cluster starts with at 500 ms
   * and every 500 ms after.
   */
  instanceStatusPhaseMs?: number | readonly number[];
  /**
   * step fidelity, the policy dispatch: the interval between two statuses of an instance, ms (default 500, the twin
   * configs' liveness.instanceStatusIntervalMs; `dynamollm simulate` passes its --config's instances' status interval,
   * policy instanceStatusMs, else the live default, 250). A live instance's status timer fires a little late each time and runs on from when it fired,
   * so its statuses come at a slightly longer interval than its config's and drift against the arrivals (the twin
   * check measures it from the live log).
   */
  instanceStatusIntervalMs?: number;
  /**
   * step fidelity, the pool machines' suspicion of a silent instance (policy suspect.ts), ms: the live config's
   * liveness.suspectAfterMs (`dynamollm simulate` passes its --config's where set); default SUSPECT_INTERVALS of
   * instanceStatusIntervalMs (policy suspectAfterMsOf), as the live cluster derives it.
   */
  suspectAfterMs?: number;
  /**
   * step fidelity, the pool and instance machines' verdict that a silent instance is dead (its requests moved or ended, a
   * silent peer forgotten), ms: the live config's liveness.deadAfterMs (`dynamollm simulate --config` passes its
   * config's); default 3000, the live default (instance-brain.ts LIVE_INSTANCE_DEFAULTS).
   */
  deadAfterMs?: number;
  /**
   * step fidelity: the live data path's own time, ms, which the engine's TTFT does not hold (docs/DATAPATH.md): a
   * request reaches its pools' dispatch `toEngineMs` after the client sent it (the gateway's HTTP parse, the prompt's
   * count, routing, the admission or the credit, the engine request's write), and its tokens reach the client
   * `toClientMs` after the engine emits them (the engine's stream to the gateway, its SSE write, the client's read).
   * The request's arrival (its TTFT's start and its deadline's) stays the client's send; its TTFT holds both.
   * `startToEngineMs`: from its instance's start of a request to its engine's receipt of it (the grant to the gateway,
   * the gateway's engine request over HTTP, the engine's read of it): the engine takes it that much after the instance
   * machine started it, and its batching sees it then.
   * `toGatewayMs`: from the client's send to the gateway's arrival stamp (the HTTP request's transfer and parse, the
   * body's read, the prompt's token count: for a text prompt a call to an instance's tokenizer): a fixed delay before
   * `toEngineMs` begins (the request reaches its dispatch `toGatewayMs + toEngineMs` after its send).
   * Each default 0 (the paper's simulation: TTFT is the engine's). The twin check passes the live cluster's.
   */
  requestPathMs?: { toGatewayMs?: number; toEngineMs?: number; toClientMs?: number; startToEngineMs?: number };
  /**
   * The simulation runs on to at least this time, ms from the window's start: its timers (the instances' epochs and
   * ticks, statuses, samples) and its energy, past its last request's end. The twin check passes the span of the live
   * counters it compares with (the replay's first send to its last completion, and the wait before their last read),
   * so that both sides count decisions and energy over the same time. Default: to the last request's end.
   */
  untilMs?: number;
  /**
   * how a pool carries out a re-shard decision. 'units' (the live pool machine's way): its staggered units one
   * at a time; a unit on GPUs an instance holds drains and stops it first, and the new instance serves after an
   * engine start (`costs.instanceStartS`). 'overlap' (the paper's NVLink re-shard): the old layout serves until
   * the new one is up, after tau x Table VI + resync. Default 'overlap'.
   */
  reshardExecution?: 'units' | 'overlap';
  /**
   * the pool machine's re-shard planner, as a live pool's config sets it (`planner`): 'heuristic' (policy planPoolShards)
   * or 'milp' (Eq. 1 solved by HiGHS, here synchronously; the machine's own rule takes it, policy milpShardDecision).
   * Default 'heuristic'.
   */
  poolPlanner?: 'heuristic' | 'milp';
  /**
   * the cluster machine's shorter epoch while its forecast is confident (src/policy/epoch-length.ts), the shortest
   * length in seconds; absent: every cluster epoch is `epochs.clusterS`.
   */
  clusterEpochFloorS?: number;
  /**
   * the instance managers' limits, as a live cluster's config sets them (engine.maxInEngine, engine.maxQueued,
   * emergency.rejectAfterMs / moveQueueAbove / retryAfterS); each default the live default (instance-brain.ts
   * LIVE_INSTANCE_DEFAULTS). The twin check passes its config's.
   */
  instanceLimits?: Partial<InstanceLimits>;
  /**
   * standby through vLLM's sleep mode (step fidelity, the policies with the cluster machine and the pools' dispatch):
   * 'on' sleeps the instances a pool's forecast does not need before a wake and wakes them when it does
   * (src/policy/sleep-standby.ts, ./sleep-standby.ts); default 'off'.
   */
  sleepStandby?: 'on' | 'off';
  /** with sleepStandby 'on': the policy's settings (src/policy/sleep-standby.ts STANDBY_DEFAULTS; level1Slots is the host's). */
  sleepStandbyConfig?: Partial<Omit<StandbyConfig, 'level1Slots'>>;
  /** with sleepStandby 'on': its forecast's window (STANDBY_WINDOW_DEFAULTS). */
  sleepStandbyWindow?: Partial<StandbyWindowConfig>;
  /**
   * step fidelity: a drained instance (scale-in, re-shard) hands the requests whose remaining decode is longer than
   * `minRemainingS` to its pool's peers instead of finishing them (./drain-migration.ts); absent: drains finish all.
   */
  drainMigration?: DrainMigrationConfig;
  knobs?: { pools?: 'single' | 'per-type'; dynamicInstances?: boolean; dynamicShards?: boolean; dynamicClock?: boolean; emergency?: boolean };
}

export interface LatencyStats {
  ttftP50Ms: number;
  ttftP99Ms: number;
  tbtP50Ms: number;
  tbtP99Ms: number;
  requests: number;
  /**
   * fluid: requests read at a load past their profile's saturation (their instance's queue grows without bound: no
   * latency modelled, an SLO miss each); a percentile that falls among them is Infinity (null in JSON).
   */
  saturated?: number;
}

export interface SimSeries {
  tS: number[];
  powerW: number[];
  energyKWh: number[];
  gpusByPool: Record<string, number[]>;
  clockByPool: Record<string, number[]>;
}

export interface SimResult {
  policy: PolicyName;
  fidelity: Fidelity;
  /** where energy comes from: always 'modelled' here, with the profile's source and calibration. */
  energySource: { kind: 'modelled'; profile: string; calibration: string };
  durationS: number;
  /** the arrival-rate factor applied (resolved when 'auto' was asked). */
  rateScale: number;
  requests: number;
  energyKWh: number;
  avgPowerW: number;
  p99PowerW: number;
  gpuHours: number;
  /**
   * where the energy went, kWh (the parts sum to energyKWh): GPUs in no instance (powered, unloaded idle), instances
   * starting or stopping (loaded idle while an engine loads or exits: the scale-out and scale-in cost), instances idle (no step running, at their clock's loaded idle power), and
   * instances stepping.
   */
  energyBreakdown?: {
    unallocatedKWh: number; startingKWh: number; instanceIdleKWh: number; instanceBusyKWh: number;
    /**
     * Server power. 'powered': unusedServersKWh is what the GPUs on servers holding neither a grant nor an instance
     * draw (the fewest servers holding every grant and instance packed; part of unallocatedKWh), what powering them off
     * could save at most. 'off': unusedServersKWh is what the servers the cluster machine powered off would have
     * drawn powered (not drawn), serverBootKWh what its servers drew while booting (part of unallocatedKWh).
     */
    unusedServersKWh?: number; serverBootKWh?: number;
    /** sleepStandby 'on': the part of instanceIdleKWh drawn asleep (unloaded idle power). */
    instanceAsleepKWh?: number;
  };
  /** sleepStandby 'on': instances put to sleep (level 2 of them), woken, and the GPU-hours asleep (part of gpuHours). */
  sleepStandby?: { sleeps: number; level2Sleeps: number; wakes: number; asleepGpuHours: number };
  /**
   * instance energy (idle and stepping) by pool id, kWh: its sum is instanceIdleKWh + instanceBusyKWh. Pools are not
   * comparable across policies one by one where they serve different types (dynamollm's merged pools, the oracle's
   * one pool per type).
   */
  energyByPoolKWh?: Record<string, number>;
  /** unusedServers 'off': the cluster machine's power commands over the run. */
  serverPower?: { powerOns: number; powerOffs: number };
  costUsd: number;
  carbonKg: number;
  latency: LatencyStats & { byType: Partial<Record<RequestType, LatencyStats>> };
  /** fraction of requests of a type with TTFT and mean TBT within the SLO. */
  sloAttainment: Partial<Record<RequestType, number>>;
  /** p99 TTFT and TBT of every judged type (>= 100 requests) within its SLO; null: no type had 100 requests. */
  p99WithinSlo: boolean | null;
  reconfigurations: { instanceStart: number; instanceStop: number; reshard: number; clock: number; emergency: number };
  /** instances drained (a scale-in, a re-shard): time from the pool's decision to their GPUs free; requests migrated. */
  drains?: DrainSummary;
  rejected: number;
  /** requests no pool can serve (input over the longest class). */
  unservable: number;
  /** requests refused because prompt + output exceed the context (maxContext); part of `requests`, never of latency or SLO figures. */
  refusedOverContext: number;
  /** the context used, tokens. */
  maxContext: number;
  /** step fidelity with prefix hashes: prompt tokens served from the prefix cache, of those looked up. */
  prefixCache?: { hitTokens: number; lookupTokens: number };
  misclassified: number;
  wallS: number;
  series: SimSeries;
  cdf: { ttft: { ms: number; p: number }[]; tbt: { ms: number; p: number }[] };
  notes: string[];
}
