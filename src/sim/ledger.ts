/**
 * The simulation's state and its accounts (./engine.ts): the fields every part of a run shares, the load template the
 * forecasts read, the energy accounting (instances, GPUs in no instance, starting instances, servers in use and
 * their boots), the power and carbon series, and the result. Energy is modelled (src/model, with its calibration).
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { Profile } from '../model/profile-types.ts';
import type { PerfModel } from '../model/types.ts';
import { idlePowerOf } from '../model/profile.ts';
import { DEFAULT_SLO_SETTINGS, scaledSlo, sloOf, thresholdsOf, type ClassThresholds, type SloSettings } from '../policy/slo.ts';
import type { LoadByType } from '../policy/types.ts';
import { ClusterBrain } from './cluster-brain.ts';
import { Heap } from './heap.ts';
import { DrainLog } from './drain-migration.ts';
import type { CoreRequest } from '../engine/core-types.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';
import type { SpillWalk } from '../policy/machines/cluster.ts';
import { LogHistogram, percentile } from './metrics.ts';
import { SimClassifier, type SimClassification } from './classifier.ts';
import { OracleSolver } from './yardsticks.ts';
import { forEachRecord, overContext, rng, simThresholds } from './trace.ts';
import { type Fidelity, type InstanceLimits, type SimCosts, type SimEpochs, type SimOptions, type SimResult, type LatencyStats } from './types.ts';
import { LIVE_INSTANCE_DEFAULTS } from './instance-brain.ts';
import { DEFAULT_EPOCHS, DEFAULT_COSTS, POLICY_KNOBS, TYPE_INDEX, DEFAULT_CONTEXT_FLOOR, PEER_STATUS_MS, type PolicyKnobs, type LoadTemplate, type EngineInputs, type SimInstance, type SimPool, type ReqState } from './state.ts';

export abstract class SimLedger {
  protected readonly o: SimOptions;
  protected readonly knobs: PolicyKnobs;
  protected readonly p: Profile;
  protected readonly perf: PerfModel;
  protected readonly ep: SimEpochs;
  protected readonly cost: SimCosts;
  /** the instance managers' limits (SimOptions.instanceLimits over the live defaults). */
  protected readonly limits: InstanceLimits;
  protected readonly fidelity: Fidelity;
  protected readonly maxClock: number;
  protected readonly totalGpus: number;
  protected readonly gpusPerServer: number;
  protected readonly sloScale: number;
  protected readonly rand: () => number;
  /** intake's classification (./classifier.ts: the proxy, or the live intake's online predictor). */
  protected readonly classifier: SimClassifier;
  /** SLO throughput kept free by provisioning, sharding, clock and dispatch choices; default 0.2. */
  protected readonly headroom: number;
  /** step: the live data path's time from the client's send to the dispatch (requestPathMs.toGatewayMs + toEngineMs), and from the engine's token to the client, ms (SimOptions.requestPathMs). */
  protected readonly pathToEngineMs: number;
  protected readonly pathToClientMs: number;
  /** step: from an instance machine's start of a request to its engine's receipt of it, ms (SimOptions.requestPathMs.startToEngineMs). */
  protected readonly pathStartToEngineMs: number;
  /** step, with pathStartToEngineMs: the requests started and not in their engine yet, in the order they are due (a start's due time never precedes an earlier one's). */
  protected readonly handoffs: { atMs: number; inst: SimInstance; r: CoreRequest }[] = [];
  protected handoffHead = 0;
  protected pools: SimPool[] = [];
  /** per type: the pool its requests go to first (overload spills to the longer pools). */
  protected route = new Map<RequestType, SimPool>();
  /** the cluster manager's machine (policies with dynamic instances, not the oracle): its state and configuration. */
  protected cm?: ClusterBrain;
  protected template!: LoadTemplate;
  protected seq = 0;
  protected readonly reqs = new Map<string, ReqState>();
  protected readonly stepHeap = new Heap<SimInstance>();
  /** step, with SimOptions.instanceEpochPhaseMs: each instance's next clock epoch. */
  protected readonly epochHeap = new Heap<SimInstance>();
  /** the instances made at t = 0 so far (each takes the next of instanceEpochPhaseMs). */
  protected initialInstances = 0;
  /** step, policy dispatch: each instance's next periodic status to its pool leader (its status timer, from its start). */
  protected readonly statusHeap = new Heap<SimInstance>();
  /** the instances made at t = 0 so far that have their status timer (each takes the next of instanceStatusPhaseMs). */
  protected initialStatusTimers = 0;
  /** step: an instance at the time its oldest set_clock in flight takes effect (its `clockChain`). */
  protected readonly clockHeap = new Heap<SimInstance>();
  /** step: requests admitted by an instance machine and not started in its engine yet. */
  protected readonly admitted = new Map<string, CoreRequest>();
  protected nextReadyMs = Infinity;
  protected readonly ttft: Record<RequestType, number[]> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, []])) as unknown as Record<RequestType, number[]>;
  /** step: each finished request's TTFT over its own SLO (promptTtftSloMs). */
  protected readonly ttftOverSlo: Record<RequestType, number[]> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, []])) as unknown as Record<RequestType, number[]>;
  protected readonly tbt = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new LogHistogram()])) as Record<RequestType, LogHistogram>;
  protected readonly ttftHist = Object.fromEntries(REQUEST_TYPES.map((t) => [t, new LogHistogram()])) as Record<RequestType, LogHistogram>;
  protected readonly sloOk = new Float64Array(9);
  protected readonly done = new Float64Array(9);
  /** fluid: requests by type read past their profile's saturation load (counted in done, never in sloOk). */
  protected readonly saturated = new Float64Array(9);
  protected readonly reconf = { instanceStart: 0, instanceStop: 0, reshard: 0, clock: 0, emergency: 0 };
  /** drains: the pool's decision to the instance's GPUs free; requests migrated (./drain-migration.ts). */
  protected readonly drainLog = new DrainLog();
  protected rejected = 0;
  protected unservable = 0;
  /** prompt + output over the model's context: refused at the door (vLLM answers 400), never an SLO miss. */
  protected refusedOverContext = 0;
  protected readonly maxContext: number;
  /** the class thresholds: SimOptions `thresholds` (Table IV's by default), the L input bound widened to the context (trace simThresholds). */
  protected readonly classThresholds: ClassThresholds;
  /** the SLOs and thresholds each request's SLO is policy requestSloOf's under: SimOptions `slo` and `thresholds`, the SLOs times sloScale. */
  protected readonly sloSettings: SloSettings;
  protected readonly prefixCounters = { hitTokens: 0, lookupTokens: 0 };
  protected misclassified = 0;
  protected requests = 0;
  protected extraJ = 0;
  protected extraAccMs = 0;
  protected gpuMs = 0;
  protected stoppedEnergyJ = 0;
  /** stoppedEnergyJ by the pool the instance served in. */
  protected readonly stoppedByPoolJ = new Map<string, number>();
  /** the breakdown of the energy: idle part of stopped instances, unallocated GPUs, starting instances, J. */
  protected stoppedIdleJ = 0;
  protected freeJ = 0;
  /** servers in use in the last accounted interval (holding a grant or an instance); -1 before the first. */
  /** energy of the GPUs on servers holding nothing, powered, and of their boots when they come back into use, J. */
  protected unusedJ = 0;
  protected bootJ = 0;
  protected startingJ = 0;
  protected readonly series = { tS: [] as number[], powerW: [] as number[], energyKWh: [] as number[], gpusByPool: {} as Record<string, number[]>, clockByPool: {} as Record<string, number[]> };
  protected lastSampleJ = 0;
  protected lastSampleMs = 0;
  protected carbonG = 0;
  protected readonly powerSamples: number[] = [];
  protected readonly notes: string[] = [];
  protected readonly useDispatchPolicy: boolean;
  /** step, policy dispatch: arrivals no instance admitted yet (a pool leader holds them), with the pools left to try. */
  protected leaderNow = 0;
  protected readonly arriving = new Map<string, { r: CoreRequest; c: SimClassification; slo: number; walk: SpillWalk<SimPool, Admission>; msg: InferenceRequest }>();
  protected readonly clockMemo = new Map<string, number>();
  /** instanceEpoch's scratch: the memo key's code units, the peak per type. */
  protected readonly clockCodes = new Uint16Array(19);
  protected readonly clockPeakX = new Float64Array(9);
  /** the oracle's Eq. 1 solver (./yardsticks.ts), with its memo of solves. */
  protected oracle?: OracleSolver;

  constructor(protected readonly inp: EngineInputs) {
    this.o = inp.opts;
    this.knobs = { ...POLICY_KNOBS[this.o.policy], ...this.o.knobs };
    this.p = inp.profile;
    this.perf = inp.perf;
    this.ep = { ...DEFAULT_EPOCHS, ...this.o.epochs };
    this.cost = { ...DEFAULT_COSTS, ...this.o.costs };
    this.limits = instanceLimitsOf(this.o.instanceLimits);
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
    this.sloSettings = scaledSlo({ slo: this.o.slo ?? DEFAULT_SLO_SETTINGS.slo, thresholds: this.o.thresholds ?? DEFAULT_SLO_SETTINGS.thresholds }, this.sloScale);
    this.classThresholds = simThresholds(thresholdsOf(this.sloSettings), this.maxContext);
    const phases = this.o.instanceEpochPhaseMs === undefined ? [] : [this.o.instanceEpochPhaseMs].flat();
    for (const ph of phases) if (!(ph > 0 && Number.isFinite(ph))) throw new RangeError(`instanceEpochPhaseMs must be > 0 ms, got ${ph}`);
    if (this.o.instanceEpochPhaseMs !== undefined && (this.fidelity !== 'step' || this.knobs.oracle || !phases.length)) throw new RangeError('instanceEpochPhaseMs: step fidelity, a policy other than the oracle, at least one phase');
    if (this.o.instanceEpochBeforeTrace !== undefined && (this.o.instanceEpochPhaseMs === undefined || ![this.o.instanceEpochBeforeTrace].flat().length)) throw new RangeError('instanceEpochBeforeTrace: with instanceEpochPhaseMs, at least one value');
    const statusPhases = this.o.instanceStatusPhaseMs === undefined ? [] : [this.o.instanceStatusPhaseMs].flat();
    const statusEvery = this.o.instanceStatusIntervalMs ?? PEER_STATUS_MS;
    if (!(statusEvery >= 1 && Number.isFinite(statusEvery))) throw new RangeError(`instanceStatusIntervalMs must be at least 1 ms, got ${statusEvery}`);
    if (this.o.suspectAfterMs !== undefined && !(this.o.suspectAfterMs > 0 && Number.isFinite(this.o.suspectAfterMs))) throw new RangeError(`suspectAfterMs must be a finite number > 0 ms, got ${this.o.suspectAfterMs}`);
    if (this.o.deadAfterMs !== undefined && !(this.o.deadAfterMs > 0 && Number.isFinite(this.o.deadAfterMs))) throw new RangeError(`deadAfterMs must be a finite number > 0 ms, got ${this.o.deadAfterMs}`);
    for (const ph of statusPhases) if (!(ph > 0 && ph <= statusEvery)) throw new RangeError(`instanceStatusPhaseMs must be in (0, ${statusEvery}] ms, got ${ph}`);
    if (this.o.instanceStatusPhaseMs !== undefined && (this.fidelity !== 'step' || !this.useDispatchPolicy || !statusPhases.length)) throw new RangeError('instanceStatusPhaseMs: step fidelity, the policy dispatch, at least one phase');
    const toGatewayMs = this.o.requestPathMs?.toGatewayMs ?? 0, toEngineMs = this.o.requestPathMs?.toEngineMs ?? 0;
    this.pathToClientMs = this.o.requestPathMs?.toClientMs ?? 0;
    this.pathStartToEngineMs = this.o.requestPathMs?.startToEngineMs ?? 0;
    for (const [k, v] of [['toGatewayMs', toGatewayMs], ['toEngineMs', toEngineMs], ['toClientMs', this.pathToClientMs], ['startToEngineMs', this.pathStartToEngineMs]] as const) if (!(v >= 0 && Number.isFinite(v))) throw new RangeError(`requestPathMs.${k} must be a finite number >= 0 ms, got ${v}`);
    // the send to the gateway's arrival stamp, then the stamp to the dispatch: one fixed delay before the instance
    this.pathToEngineMs = toGatewayMs + toEngineMs;
    if ((this.pathToEngineMs || this.pathToClientMs || this.pathStartToEngineMs) && this.fidelity !== 'step') throw new RangeError('requestPathMs: step fidelity only');
    if (this.o.predictor === 'online' && this.fidelity !== 'step') throw new RangeError("the online predictor learns from completed requests: step fidelity only (--fidelity step)");
    this.classifier = new SimClassifier({ predictor: this.o.predictor, accuracy: this.o.predictorAccuracy, seed: this.o.seed ?? 7, oracle: this.knobs.oracle, thresholds: this.classThresholds, model: this.o.model, predictTokens: this.o.drainMigration !== undefined && this.fidelity === 'step' });
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
  protected async buildTemplate(): Promise<void> {
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
  protected forecastPeak(t0Ms: number, t1Ms: number, windowMin = 5): LoadByType {
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

  // ---------------------------------------------------------------- GPUs in no instance, instances starting
  /** Account energy of unallocated GPUs and of starting and stopping instances up to now. */
  protected accountExtra(now: number): void {
    const dt = now - this.extraAccMs;
    if (dt <= 0) return;
    let alloc = 0;
    let startingW = 0;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || (i.state === 'starting' && i.reshard)) continue;
        alloc += i.tp;
        // an engine loading, or exiting after its drain: its GPUs hold it, at loaded idle power
        if (i.state === 'starting' || i.state === 'stopping') startingW += idlePowerOf(this.p, i.tp, this.maxClock);
      }
    const gpuIdleW = this.perf.idlePowerW(1, this.maxClock, false);
    let free = Math.max(0, this.totalGpus - alloc);
    const power = this.cm?.s.power;
    if (power) {
      // the cluster machine's server power: off (or failed) servers draw nothing, booting ones their idle power
      let offGpus = 0;
      let bootGpus = 0;
      for (const r of power.servers.values()) {
        if (r.state === 'off' || r.state === 'failed') offGpus += this.gpusPerServer;
        else if (r.state === 'booting') bootGpus += this.gpusPerServer;
      }
      offGpus = Math.min(free, offGpus);
      free -= offGpus;
      this.unusedJ += (offGpus * gpuIdleW * dt) / 1000;
      this.bootJ += (bootGpus * gpuIdleW * dt) / 1000;
    } else {
      // powered: the fewest servers that hold every grant and every instance; the others hold nothing (what powering them off could save)
      const held = Math.max(alloc, this.pools.reduce((n, p) => n + p.gpus, 0));
      const on = Math.min(this.o.servers, Math.ceil(held / this.gpusPerServer - 1e-9));
      this.unusedJ += (Math.min(free, Math.max(0, this.totalGpus - on * this.gpusPerServer)) * gpuIdleW * dt) / 1000;
    }
    const freeW = free * gpuIdleW;
    this.extraJ += ((freeW + startingW) * dt) / 1000;
    this.freeJ += (freeW * dt) / 1000;
    this.startingJ += (startingW * dt) / 1000;
    this.gpuMs += Math.min(alloc, this.totalGpus) * dt;
    this.extraAccMs = now;
  }

  // ---------------------------------------------------------------- energy and series
  protected instancesEnergyJ(now: number): number {
    let e = this.stoppedEnergyJ;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || i.state === 'starting' || i.state === 'stopping') continue;
        if (i.core) {
          if (!i.inHeap) i.core.idleUntil(now);
          e += i.core.stats().energyJ;
        } else e += i.energyJ;
      }
    return e;
  }

  /**
   * Where the energy went (kWh; the parts sum to energyKWh): GPUs in no instance (powered, unloaded idle), instances
   * starting or stopping (loaded idle while an engine loads or exits: the scale-out and scale-in cost), instances idle (no step running: loaded idle at their
   * clock), and instances stepping (busy: the clock, the batch and the TP split set it).
   */
  protected energyBreakdown(now: number): NonNullable<SimResult['energyBreakdown']> {
    const total = this.instancesEnergyJ(now);
    let idle = this.stoppedIdleJ;
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || i.state === 'starting' || i.state === 'stopping') continue;
        idle += i.core ? i.core.stats().idleEnergyJ : (i.idleJ ?? 0);
      }
    const k = 3.6e6;
    return { unallocatedKWh: this.freeJ / k, startingKWh: this.startingJ / k, instanceIdleKWh: idle / k, instanceBusyKWh: (total - idle) / k, unusedServersKWh: this.unusedJ / k, serverBootKWh: this.bootJ / k };
  }

  /** Instance energy (idle and stepping, the instances' engines) by pool, kWh: the pools' shares of instanceIdleKWh + instanceBusyKWh. */
  protected energyByPool(now: number): Record<string, number> {
    const j = new Map(this.stoppedByPoolJ);
    for (const p of this.pools)
      for (const i of p.instances) {
        if (i.state === 'stopped' || i.state === 'starting' || i.state === 'stopping') continue;
        if (i.core && !i.inHeap) i.core.idleUntil(now);
        j.set(p.id, (j.get(p.id) ?? 0) + (i.core ? i.core.stats().energyJ : i.energyJ));
      }
    return Object.fromEntries([...j].sort((a, b) => a[0].localeCompare(b[0])).map(([id, e]) => [id, e / 3.6e6]));
  }

  protected totalEnergyJ(now: number): number {
    this.accountExtra(now);
    return this.instancesEnergyJ(now) + this.extraJ;
  }

  protected sample(now: number): void {
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
      const live = p.instances.filter((i) => i.state === 'active' || i.state === 'draining' || i.state === 'stopping' || (i.state === 'starting' && !i.reshard));
      (s.gpusByPool[p.id] ??= new Array(n - 1).fill(0)).push(live.reduce((a, i) => a + i.tp, 0));
      const act = live.filter((i) => i.state === 'active');
      (s.clockByPool[p.id] ??= new Array(n - 1).fill(0)).push(act.length ? Math.round(act.reduce((a, i) => a + i.clockMhz, 0) / act.length) : 0);
    }
    for (const k of Object.keys(s.gpusByPool)) if (s.gpusByPool[k].length < n) s.gpusByPool[k].push(0);
    for (const k of Object.keys(s.clockByPool)) if (s.clockByPool[k].length < n) s.clockByPool[k].push(0);
  }

  protected result(endMs: number, wallMs: number): SimResult {
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
      let sat = 0;
      for (const t of types) sat += this.saturated[TYPE_INDEX[t]];
      // the saturated requests sit above every modelled latency: a quantile among them is unbounded
      const s = requests > 0 ? sat / requests : 0;
      const q = (h: LogHistogram, x: number) => (x > 1 - s ? Infinity : h.quantile(x / (1 - s)));
      return { ttftP50Ms: q(th, 0.5), ttftP99Ms: q(th, 0.99), tbtP50Ms: q(tb, 0.5), tbtP99Ms: q(tb, 0.99), requests: Math.round(requests), ...(sat > 0 ? { saturated: Math.round(sat) } : {}) };
    };
    const byType: Partial<Record<RequestType, LatencyStats>> = {};
    const slo: Partial<Record<RequestType, number>> = {};
    // null until a type has requests enough to judge: nothing judged is not a pass
    let within: boolean | null = null;
    for (const t of REQUEST_TYPES) {
      const k = TYPE_INDEX[t];
      if (this.done[k] <= 0) continue;
      const s = stats([t]);
      byType[t] = s;
      slo[t] = this.sloOk[k] / this.done[k];
      // judge types with >= 100 requests (no meaningful p99 below); step: each TTFT against its own SLO (promptTtftSloMs)
      const typeSlo = sloOf(t, this.sloSettings);
      const ttftMiss = this.fidelity === 'step' ? percentile(this.ttftOverSlo[t], 0.99) > 1 : s.ttftP99Ms > typeSlo.ttftMs;
      if (this.done[k] >= 100) within = within !== false && !(ttftMiss || s.tbtP99Ms > typeSlo.tbtMs);
    }
    const allTtft = new LogHistogram();
    if (this.fidelity === 'step') for (const t of REQUEST_TYPES) for (const v of this.ttft[t]) allTtft.add(v);
    else for (const t of REQUEST_TYPES) allTtft.merge(this.ttftHist[t]);
    const allTbt = new LogHistogram();
    for (const t of REQUEST_TYPES) allTbt.merge(this.tbt[t]);
    const price = this.o.gpuHourPrice ?? 2.5;
    const notes: string[] = [...this.notes];
    if (this.fidelity === 'fluid') notes.push('fluid fidelity: latency percentiles are profile-based estimates (interpolated profile cells), not simulated per request');
    const sat = REQUEST_TYPES.filter((t) => this.saturated[TYPE_INDEX[t]] > 0);
    if (sat.length) {
      notes.push(`saturated: ${sat.map((t) => `${t} ${Math.round(this.saturated[TYPE_INDEX[t]])}`).join(', ')} requests reached instances loaded past their profile's saturation (their queues grow without bound): no latency modelled, each an SLO miss; a percentile among them is reported as saturated`);
    }
    if (this.refusedOverContext > 0) notes.push(`${this.refusedOverContext} requests (${((100 * this.refusedOverContext) / Math.max(1, this.requests)).toFixed(1)}%) refused: prompt + output over the ${this.maxContext}-token context; not in latency or SLO attainment`);
    const so = this.sloSettings.slo;
    notes.push(`SLO attainment: share of requests with TTFT <= SLO and mean TBT <= SLO (TTFT ${so.ttftMs.S}/${so.ttftMs.M}/${so.ttftMs.L} ms by input class, TBT ${so.tbtMs} ms: the cluster's SLO x${this.sloScale}); p99WithinSlo judges types with >= 100 requests (null: none had)`);
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
      energyByPoolKWh: this.energyByPool(endMs),
      ...(this.cm?.s.power ? { serverPower: { powerOns: this.cm.powerOns, powerOffs: this.cm.powerOffs } } : {}),
      avgPowerW: energyJ / durationS,
      p99PowerW: percentile(this.powerSamples, 0.99),
      gpuHours,
      costUsd: gpuHours * price,
      carbonKg: totalCarbon,
      latency: { ...stats([...REQUEST_TYPES]), byType },
      sloAttainment: slo,
      p99WithinSlo: within,
      reconfigurations: { ...this.reconf },
      ...(this.drainLog.summary() ? { drains: this.drainLog.summary()! } : {}),
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

/** SimOptions.instanceLimits over the live instance manager's defaults; each a positive integer (rejectAfterMs, retryAfterS: positive). */
export function instanceLimitsOf(o: Partial<InstanceLimits> = {}): InstanceLimits {
  const { maxInEngine, maxQueued, rejectAfterMs, moveQueueAbove, retryAfterS } = LIVE_INSTANCE_DEFAULTS;
  const l: InstanceLimits = { maxInEngine, maxQueued, rejectAfterMs, moveQueueAbove, retryAfterS, ...o };
  for (const k of ['maxInEngine', 'maxQueued'] as const) if (!(Number.isInteger(l[k]) && l[k] >= 1)) throw new RangeError(`instanceLimits.${k} must be an integer >= 1, got ${l[k]}`);
  if (!(Number.isInteger(l.moveQueueAbove) && l.moveQueueAbove >= 0)) throw new RangeError(`instanceLimits.moveQueueAbove must be an integer >= 0, got ${l.moveQueueAbove}`);
  for (const k of ['rejectAfterMs', 'retryAfterS'] as const) if (!(Number.isFinite(l[k]) && l[k] > 0)) throw new RangeError(`instanceLimits.${k} must be > 0, got ${l[k]}`);
  return l;
}
