/**
 * The simulated control plane's effects on instances and pools (./engine.ts): instances start, serve, drain and
 * stop; pools are installed from the cluster machine's plan or the yardsticks' layouts, each granted its GPUs (nodes
 * and GPU ids) as an assignment to its one pool machine (./pool-leader.ts), whose node commands and drains are carried
 * out here (the simulator is its node agents): its reconciliation fills the grants, its re-shard runs unit by unit;
 * the oracle's Eq. 1 layout is applied.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { BatchingCore } from '../engine/core.ts';
import type { InstanceConfig, LoadByType, TpDegree } from '../policy/types.ts';
import { poolBurstWindowMs } from '../policy/pool-shards.ts';
import { InstanceBrain, LIVE_INSTANCE_DEFAULTS } from './instance-brain.ts';
import { solveEq1 } from '../policy/milp.ts';
import { suspectAfterMsOf } from '../policy/suspect.ts';
import { reshardTau } from './reshard-cost.ts';
import { SimPoolLeader, type PoolMachineConfig, type StatusReport } from './pool-leader.ts';
import type { NodeCommand, PoolAssignment } from '../../protocols/control.ts';
import type { InferenceRequest, Admission } from '../../protocols/messages.ts';
import { intakePools, observedLoad, type ClusterMachineConfig } from '../policy/machines/cluster.ts';
import { serverPowerConfig } from '../policy/machines/cluster-power.ts';
import { SERVER_BOOT_S } from './types.ts';
import { ClusterBrain, prefixReuseByType } from './cluster-brain.ts';
import { EPOCH_LENGTH_DEFAULTS } from '../policy/epoch-length.ts';
import { OracleSolver, staticPools, type PoolLayout } from './yardsticks.ts';
import { SimLedger } from './ledger.ts';
import { currentLoad, projectedLoad } from '../policy/machines/instance.ts';
import { TYPE_INDEX, MACHINE_TIME, PEER_STATUS_MS, LIVE_HEALTH_DEADLINE_MS, type SimInstance, type SimPool } from './state.ts';

export abstract class SimControl extends SimLedger {
  /** the pools' grants are the yardsticks' (no cluster machine): the epoch of the last assignment made. */
  private staticEpoch = 0;
  /** t = 0: the trace starts warm (the pools' first instances and their first layout serve at once, free). */
  protected warm = false;
  /** t = 0: the load the pool's first instance reports at its warm start (the forecast of the first epoch). */
  private warmLoads?: Map<SimPool, LoadByType>;

  /**
   * A new instance, serving after `delayMs`: `place` names it and its node and GPUs (the pool machine's start
   * command); without, the oracle's layout names it.
   */
  protected newInstance(pool: SimPool, tp: TpDegree, now: number, delayMs: number, kind: 'start' | 'reshard' | 'init' | 'unit', place?: { id: string; node: string; gpuIds: number[] }): SimInstance {
    const id = place?.id ?? `${pool.id}-i${this.seq++}`;
    const inst: SimInstance = {
      id, pool, tp, clockMhz: this.maxClock, state: delayMs > 0 ? 'starting' : 'active', readyAtMs: now + delayMs, startedMs: now,
      inHeap: false, load: new Float64Array(9), loadAtMs: now, outstanding: 0, energyJ: 0, reshard: kind === 'reshard',
      ...(place ? { node: place.node, gpuIds: [...place.gpuIds] } : {}),
    };
    if (delayMs <= 0) this.activate(inst, now);
    else if (inst.readyAtMs < this.nextReadyMs) this.nextReadyMs = inst.readyAtMs;
    pool.instances.push(inst);
    if (this.fidelity === 'step' && this.useDispatchPolicy) {
      // its status timer, as the live instance manager's: from its start (the first status then, on its state), every
      // status interval; one the cluster starts with at its phase (SimOptions.instanceStatusPhaseMs)
      const phases = this.o.instanceStatusPhaseMs === undefined ? undefined : [this.o.instanceStatusPhaseMs].flat();
      this.statusHeap.push(now === 0 && phases ? phases[this.initialStatusTimers++ % phases.length]! : now + (this.o.instanceStatusIntervalMs ?? PEER_STATUS_MS), inst);
    }
    if (kind === 'start') this.reconf.instanceStart++;
    this.notify(pool, now);
    return inst;
  }

  /** The pool's machine hears of its instances' changes of state (a live instance's status on each change). */
  protected notify(pool: SimPool, now: number): void {
    pool.leader?.sync(pool.instances, now);
  }

  protected activate(inst: SimInstance, now: number): void {
    inst.state = 'active';
    inst.served = this.fidelity === 'fluid';
    inst.loadAtMs = now;
    // fluid: its machine's load window, open from now (step: its machine's, below)
    if (this.fidelity === 'fluid') inst.window = { load: {}, arrivals: {}, windowStartMs: now };
    if (this.fidelity === 'step') {
      // the scheduler budget of the engine the profile describes (Profile.scheduler; absent: the core's default)
      const sch = this.p.scheduler;
      inst.core = new BatchingCore({ perf: this.perf, tp: inst.tp, clockMhz: inst.clockMhz, maxWaiting: 1 << 20, maxNumBatchedTokens: sch?.maxNumBatchedTokens, maxNumSeqs: sch?.maxNumSeqs,
        prefixCacheBlockTokens: this.o.prefixCaching === false ? 0 : (this.o.prefixBlockTokens ?? 512), prefixCacheCounters: this.prefixCounters });
      inst.core.idleUntil(now);
      // its own epochs (SimOptions.instanceEpochPhaseMs): the first at its phase, or one epoch after it serves; its load
      // window open from one epoch before the first (an instance up before the trace: since its previous epoch)
      const phases = this.o.instanceEpochPhaseMs === undefined ? undefined : [this.o.instanceEpochPhaseMs].flat();
      const epochMs = this.ep.instanceS * 1000;
      // (SimOptions.instanceEpochBeforeTrace) one up longer than an epoch before the trace had that epoch, on no load
      const k = this.initialInstances;
      const first = phases === undefined ? undefined : now === 0 ? phases[this.initialInstances++ % phases.length]! : now + epochMs;
      const before = now === 0 && first !== undefined && [this.o.instanceEpochBeforeTrace ?? false].flat()[k % [this.o.instanceEpochBeforeTrace ?? false].flat().length];
      inst.brain = this.newBrain(inst, now, first === undefined ? now : Math.min(now, first - epochMs), before ? first - epochMs : undefined);
      // the clock that epoch chose, on the GPU from the start
      if (inst.brain.s.clockMhz !== inst.clockMhz) this.setClockNow(inst, inst.brain.s.clockMhz, now);
      if (first !== undefined) this.epochHeap.push(first, inst);
    }
    this.notify(inst.pool, now);
  }

  protected activateDue(now: number): void {
    this.accountExtra(now);
    let next = Infinity;
    for (const p of this.pools)
      for (const i of [...p.instances])
        if (i.state === 'starting') {
          if (i.readyAtMs <= now) this.activate(i, now);
          else if (i.readyAtMs < next) next = i.readyAtMs;
        } else if (i.state === 'stopping') {
          if (i.stopAtMs! <= now) this.stopped(i, now);
          else if (i.stopAtMs! < next) next = i.stopAtMs!;
        }
    // an activation or a stop above may have started or stopped instances (the pool machine's next re-shard unit)
    for (const p of this.pools) for (const i of p.instances) next = Math.min(next, i.state === 'starting' ? i.readyAtMs : i.state === 'stopping' ? i.stopAtMs! : Infinity);
    this.nextReadyMs = next;
  }

  protected drain(inst: SimInstance, now: number): void {
    if (inst.state === 'starting') {
      this.accountExtra(now);
      inst.state = 'stopped';
      inst.pool.instances = inst.pool.instances.filter((x) => x !== inst);
      this.notify(inst.pool, now);
      return;
    }
    if (inst.state !== 'active') return;
    inst.state = 'draining';
    inst.brain?.step({ type: 'lifecycle', state: 'draining', why: 'drained by the pool' }, now);
    this.drainLog.drained(inst, now);
    this.migrateOnDrain(inst, now);
    this.maybeStop(inst, now);
    // the warm start's layout is reached before the trace: the engines it replaces are gone at once
    if (this.warm && (inst.state as SimInstance['state']) === 'stopping') this.stopped(inst, now);
    this.notify(inst.pool, now);
  }

  /** Step fidelity with SimOptions.drainMigration: a draining instance's long requests to its peers (./drain-migration.ts). */
  protected migrateOnDrain(_inst: SimInstance, _now: number): void {}

  /**
   * A drained instance with nothing left stops: its engine process exits, which takes costs.instanceStopS (its GPUs
   * held meanwhile, at loaded idle power); then its GPUs are free (stopped).
   */
  protected maybeStop(inst: SimInstance, now: number): void {
    if (inst.state !== 'draining' || inst.outstanding > 0) return;
    this.accountExtra(now);
    inst.state = 'stopping';
    inst.stopAtMs = now + this.cost.instanceStopS * 1000;
    const before = this.stoppedEnergyJ;
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
    this.stoppedByPoolJ.set(inst.pool.id, (this.stoppedByPoolJ.get(inst.pool.id) ?? 0) + this.stoppedEnergyJ - before);
    if (inst.stopAtMs > now) {
      if (inst.stopAtMs < this.nextReadyMs) this.nextReadyMs = inst.stopAtMs;
      return;
    }
    this.stopped(inst, now);
  }

  /** A stopping instance's engine has exited: its GPUs are free. */
  protected stopped(inst: SimInstance, now: number): void {
    this.accountExtra(now);
    inst.state = 'stopped';
    inst.pool.instances = inst.pool.instances.filter((x) => x !== inst);
    this.reconf.instanceStop++;
    this.drainLog.freed(inst, now);
    this.notify(inst.pool, now);
  }

  /** live TP mix of a pool: active and starting instances. */
  protected liveMix(pool: SimPool): InstanceConfig[] {
    const m = new Map<number, number>();
    for (const i of pool.instances) if (i.state === 'active' || i.state === 'starting') m.set(i.tp, (m.get(i.tp) ?? 0) + 1);
    return [...m.entries()].sort((a, b) => b[0] - a[0]).map(([tp, count]) => ({ tp: tp as TpDegree, count }));
  }

  // ---------------------------------------------------------------- pool machines
  /** Pools run by a pool machine (its reconciliation and re-shards): every policy's but the oracle's (a yardstick that lays its pools out itself). */
  protected get machinePools(): boolean {
    return !this.knobs.oracle;
  }

  /** The pool machine's configuration, as the live pool leader's (config pool.*, engine.*), on the simulator's costs. */
  protected poolMachineConfig(pool: SimPool): PoolMachineConfig {
    return {
      pool: pool.id, holder: 'sim', profile: this.p, headroom: this.headroom, deadAfterMs: this.o.deadAfterMs ?? LIVE_INSTANCE_DEFAULTS.deadAfterMs, statusIntervalMs: PEER_STATUS_MS,
      // the live leader's suspicion of a silent instance: the config's, else derived from the statuses' interval here (policy suspect.ts)
      suspectAfterMs: suspectAfterMsOf({ statusIntervalMs: PEER_STATUS_MS, instanceStatusIntervalMs: this.o.instanceStatusIntervalMs ?? PEER_STATUS_MS, suspectAfterMs: this.o.suspectAfterMs }),
      epochMs: this.ep.poolS * 1000, healthDeadlineMs: LIVE_HEALTH_DEADLINE_MS, initialTp: this.o.instanceTp ?? 8, moveQueueAbove: this.limits.moveQueueAbove,
      retryAfterS: this.limits.retryAfterS, planner: this.o.poolPlanner ?? 'heuristic', burstWindowMs: poolBurstWindowMs(this.ep.poolS * 1000),
      reshardKeepsServing: this.o.reshardExecution !== 'units', overhead: { tauMs: this.cost.tauMs, resyncS: this.cost.resyncMs / 1000, instanceStartS: this.cost.instanceStartS },
      ...this.dispatchPreference(pool),
    };
  }

  /** Step fidelity with prefix routing: the pool machine's dispatch preference (PoolMachineConfig.prefer). */
  protected dispatchPreference(_pool: SimPool): Pick<PoolMachineConfig, 'prefer'> {
    return {};
  }

  /** The pool's one machine (./pool-leader.ts), made with the pool, for its whole life. */
  protected leaderOf(pool: SimPool, now: number): SimPoolLeader<SimInstance> {
    this.leaderNow = now;
    if (pool.leader) {
      pool.leader.setTypes(pool.types);
      return pool.leader;
    }
    const highs = this.inp.highs;
    return (pool.leader = new SimPoolLeader<SimInstance>(this.poolMachineConfig(pool), pool.types, {
      admit: (i, m, t) => this.leaderAdmit(i, m, t),
      answer: (id, a, t) => this.answered(id, a, t),
      report: (i, t) => this.statusReport(i, t),
      node: (node, cmd, purpose, t) => this.nodeCommand(pool, node, cmd, purpose, t),
      drain: (i, t) => this.drain(i, t),
      ...(highs ? { solve: (eq1) => solveEq1(highs, eq1) } : {}),
      event: (e, t) => this.poolEvent(pool, e, t),
    }, now));
  }

  /** A pool leader's 'admit' to an instance (step fidelity: ./step-model.ts). */
  protected leaderAdmit(_inst: SimInstance, m: InferenceRequest, _now: number): Admission {
    return { v: 1, id: m.id, ok: false, error: { code: 'unavailable', message: 'no dispatch at this fidelity', retryable: true } };
  }

  /** A held dispatch's answer (step fidelity: ./step-model.ts). */
  protected answered(_id: string, _a: Admission, _now: number): void {}

  /**
   * What an instance's status reports: its instance machine's report, the load its pool's epoch sums, its cumulative
   * admissions and its engine's prefix cache counters (step fidelity); its load EWMA and its share of the pool's
   * arrivals (fluid). At the warm start, the pool's first instance reports the forecast of the first epoch.
   */
  protected statusReport(inst: SimInstance, now: number): StatusReport {
    const warm = this.warmLoads?.get(inst.pool);
    if (warm) return { loadByType: inst === inst.pool.instances.find((i) => i.state === 'active' || i.state === 'starting') ? warm : {} };
    if (inst.brain) {
      const prefix = inst.core?.prefixCacheTokens();
      return { ...inst.brain.report(now), epochLoadByType: inst.brain.epochLoad(now), admittedByType: { ...inst.brain.s.admitted }, ...(prefix ? { prefixCacheTokens: prefix } : {}) };
    }
    const admitted: LoadByType = {};
    if (inst.admittedSum) REQUEST_TYPES.forEach((t, k) => { if (inst.admittedSum![k]! > 0) admitted[t] = inst.admittedSum![k]!; });
    const epochLoad = this.machineEpochLoad(inst, now).epochLoad;
    return { loadByType: this.machineLoad(inst, now), ...(epochLoad ? { epochLoadByType: epochLoad } : {}), admittedByType: admitted };
  }

  /**
   * A node agent carries out the pool machine's command: a start makes the instance on its node and GPUs (serving
   * after an engine start; an overlap re-shard's after its tau x Table VI + resync; at the warm start at once), refused
   * while the node still runs an instance of that id; a stop drains the instance (it stops once its requests are done).
   */
  protected nodeCommand(pool: SimPool, node: string, cmd: NodeCommand, purpose: 'reconcile' | 'reshard', now: number): boolean {
    if (cmd.op === 'start_instance') {
      if (pool.instances.some((i) => i.id === cmd.instanceId)) return false;
      const overlap = purpose === 'reshard' && pool.overlapMs !== undefined;
      const delay = this.warm ? 0 : overlap ? pool.overlapMs! : this.cost.instanceStartS * 1000;
      this.newInstance(pool, (cmd.tp ?? cmd.gpuIds?.length ?? 1) as TpDegree, now, delay, this.warm ? 'init' : purpose === 'reconcile' ? 'start' : overlap ? 'reshard' : 'unit', { id: cmd.instanceId, node, gpuIds: cmd.gpuIds ?? [] });
      return true;
    }
    const inst = pool.instances.find((i) => i.id === cmd.instanceId);
    if (inst) this.drain(inst, now);
    return true;
  }

  /** The pool machine's decision events: its re-shards counted (and reported); an overlap re-shard's cost set for its units. */
  protected poolEvent(pool: SimPool, e: { event: string; summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> }, now: number): void {
    if (e.event !== 'reshard') return;
    if (typeof e.decision.take === 'boolean') {
      this.inp.onPoolDecision?.(pool.id, now, { summary: e.summary, decision: e.decision, inputs: e.inputs });
      if (!e.decision.take) return;
      if (!this.warm) this.reconf.reshard++;
      // the paper's NVLink re-shard: each new instance serves after tau x Table VI (of the pool's layouts) + resync
      if (this.o.reshardExecution !== 'units') pool.overlapMs = reshardTau(this.liveMix(pool), e.decision.target as InstanceConfig[]) * this.cost.tauMs + this.cost.resyncMs;
    } else if (e.decision.complete === true || e.decision.stored === false) pool.overlapMs = undefined;
  }

  /**
   * The pool's assignment: the cluster machine's (its grants, node names and GPU ids) or, for the yardsticks' static
   * layouts, the pool's GPUs on whole servers in pool order (`gpus` from `first`, a GPU index over the cluster).
   */
  private staticAssignment(pool: SimPool, first: number, gpus: number, now: number): PoolAssignment {
    const grants = new Map<string, number[]>();
    for (let g = first; g < first + gpus; g++) {
      const node = `server-${Math.floor(g / this.gpusPerServer)}`;
      grants.set(node, [...(grants.get(node) ?? []), g % this.gpusPerServer]);
    }
    return { v: 1, pool: pool.id, types: pool.types, epoch: this.staticEpoch, state: 'active', issuedBy: 'sim', atMs: now, grants: [...grants].map(([node, gpuIds]) => ({ node, gpuIds })) };
  }

  protected poolGpus(pool: SimPool): number {
    return this.liveMix(pool).reduce((s, c) => s + c.tp * c.count, 0);
  }

  // ---------------------------------------------------------------- pools
  protected poolOrder(types: RequestType[]): number {
    return types.length ? Math.max(...types.map((t) => TYPE_INDEX[t])) : 9;
  }

  /**
   * Install pools (id -> GPUs) and the routing of every type (type -> pool id). A pool run by a pool machine gets its
   * assignment (`assignments`: the cluster machine's; else whole servers in pool order), which its machine reconciles;
   * the oracle's are resized here.
   */
  protected installPools(wanted: { id: string; types: RequestType[]; gpus: number }[], routing: Partial<Record<RequestType, string>>, now: number, initial: boolean, assignments?: ReadonlyMap<string, PoolAssignment>): void {
    this.accountExtra(now);
    const byId = new Map(this.pools.map((p) => [p.id, p]));
    const next: SimPool[] = [];
    for (const w of wanted) {
      let pool = byId.get(w.id);
      if (!pool) pool = { id: w.id, order: 0, types: w.types, gpus: 0, instances: [] };
      byId.delete(w.id);
      pool.types = w.types;
      pool.order = this.poolOrder(w.types);
      if (this.machinePools) pool.gpus = w.gpus;
      else this.resizePool(pool, w.gpus, now, initial);
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
    if (!this.machinePools) return;
    // each pool's machine gets its assignment and reconciles it (at t = 0 the trace starts warm: its instances serve at once)
    this.staticEpoch++;
    let first = 0;
    this.warm = initial;
    try {
      for (const w of wanted) {
        const pool = byIdNew.get(w.id)!;
        const a = assignments?.get(w.id) ?? this.staticAssignment(pool, first, w.gpus, now);
        first += w.gpus;
        this.leaderOf(pool, now).assign(a, pool.instances, now);
      }
    } finally {
      this.warm = false;
    }
  }

  /** Grow with TP8 instances on the GPUs the grant adds (a new one pays the start cost), or shrink by draining the least busy. */
  protected resizePool(pool: SimPool, gpus: number, now: number, initial: boolean): void {
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
  protected staticPools(): PoolLayout {
    return staticPools({
      peak: this.forecastPeak(0, this.template.durationMs), profile: this.p, maxClockMhz: this.maxClock, servers: this.o.servers, gpusPerServer: this.gpusPerServer,
      pools: this.knobs.pools, ...(this.o.instanceTp !== undefined ? { instanceTp: this.o.instanceTp } : {}),
    });
  }

  /**
   * Servers granted to no pool that still hold an instance: the simulator's pools count GPUs, not servers, so the
   * GPUs a pool holds in instances beyond its grant (draining) sit on the servers it lost last (whole servers, the
   * most recently freed ones first).
   */
  private drainingServers(): string[] {
    let over = 0;
    for (const p of this.pools) {
      let alloc = 0;
      for (const i of p.instances) if (i.state !== 'stopped' && !(i.state === 'starting' && i.reshard)) alloc += i.tp;
      over += Math.max(0, alloc - p.gpus);
    }
    const n = Math.ceil(over / this.gpusPerServer - 1e-9);
    const power = this.cm?.s.power;
    if (!n || !power) return [];
    const granted = new Set<string>();
    for (const a of this.cm!.s.assignments.values()) if (a.state === 'active') for (const g of a.grants) granted.add(g.node);
    const free = [...power.servers].filter(([id, r]) => r.state === 'on' && !granted.has(id)).sort((a, b) => (b[1].idleSinceMs ?? Infinity) - (a[1].idleSinceMs ?? Infinity));
    return free.slice(0, n).map(([id]) => id);
  }

  /**
   * What the cluster machine observes (policy observedLoad, as the live leader sums its instances' statuses): every
   * instance not stopped, its load estimate now (its instance machine's: policy currentLoad, on its machine's state in
   * step fidelity, on its share of its pool's arrivals in fluid).
   */
  protected observedLoad(now: number): LoadByType {
    const seen: { st: { loadByType: LoadByType }; seenMs: number }[] = [];
    for (const p of this.pools) {
      for (const i of p.instances) {
        if (i.state === 'stopped') continue;
        seen.push({ st: { loadByType: this.machineLoad(i, now) }, seenMs: now });
      }
    }
    return observedLoad(seen, now, Infinity);
  }

  /**
   * ScaleInst / DynamoLLM cluster level: the live cluster manager's machine, its timers and its observation
   * (./cluster-brain.ts); the first plan is given the first epoch's highest minute (the trace starts warm;
   * the forecaster has no history yet, and its floor is the highest minute of its recent window). A new pool's
   * instances pay the start cost.
   */
  protected clusterStart(): void {
    const leadMs = this.cost.instanceStartS * 1000;
    const cfg: ClusterMachineConfig = {
      issuer: 'sim', profile: this.p, pools: REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] })), configuredPools: false,
      epochMs: this.ep.clusterS * 1000, statusIntervalMs: this.o.instanceStatusIntervalMs ?? PEER_STATUS_MS, minEpochGapMs: this.ep.clusterS * 1000, instanceStartupMs: leadMs,
      recentWindowMs: this.ep.clusterS * 1000, headroom: this.headroom,
      // pools that re-shard split a server into the TP mix that carries their load; else they keep the start TP
      splitTps: this.knobs.dynamicShards ? this.p.tpDegrees : [this.o.instanceTp ?? 8],
      // the forecast's floor is already the highest minute of the last 30; the plan keeps `headroom` free on top
      forecastMargin: 0,
      ...(this.o.clusterEpochFloorS !== undefined ? { adaptiveEpoch: { ...EPOCH_LENGTH_DEFAULTS, floorMs: this.o.clusterEpochFloorS * 1000 } } : {}),
      // the live machine's server power decisions on the simulated servers
      ...(this.o.unusedServers === 'off' ? { power: serverPowerConfig({ bootS: this.o.serverBootS ?? SERVER_BOOT_S, ...(this.o.powerReserve !== undefined ? { reserveServers: this.o.powerReserve } : {}) }) } : {}),
    };
    const servers = Array.from({ length: this.o.servers }, (_, k) => ({ id: `server-${k}`, gpus: this.gpusPerServer }));
    this.cm = new ClusterBrain(cfg, servers, (now) => this.observedLoad(now), (state, effects, now, initial) => {
      const capped = effects.map((e) => (e.kind === 'event' ? (e.decision.capped as { needed: number } | undefined) : undefined)).find((x) => x);
      if (capped && !this.notes.some((n) => n.startsWith('cluster plan capped'))) this.notes.push(`cluster plan capped at ${this.o.servers} servers (needed ${capped.needed}) at t=${(now / 1000).toFixed(0)} s`);
      const wanted = [...state.assignments.values()].filter((a) => a.state === 'active').map((a) => ({ id: a.pool, types: a.types, gpus: a.grants.reduce((n, g) => n + g.gpuIds.length, 0) }));
      // intake's first pool per type (the machine's routing; a pool that refuses spills to the longer ones)
      const routing: Partial<Record<RequestType, string>> = Object.fromEntries(REQUEST_TYPES.map((t) => [t, intakePools(state, t, () => true)[0]]));
      this.installPools(wanted, routing, now, initial, state.assignments);
    });
    this.cm.prefixReuse = () => prefixReuseByType(this.pools);
    if (cfg.power) this.cm.power = { busy: () => this.drainingServers(), before: (now) => this.accountExtra(now) };
    this.cm.start(this.forecastPeak(0, this.ep.clusterS * 1000 + leadMs, 1));
  }

  /**
   * The pool machine's re-shard epoch (its timer, ./engine.ts). At t = 0 (`initial`) the trace starts warm: a forced
   * epoch on the forecast of the first epoch, the instances reporting it, whose layout is reached before the trace
   * (its units at once, at no cost).
   */
  protected reshard(pool: SimPool, now: number, initial: boolean): void {
    const leader = pool.leader;
    if (!leader) return;
    if (!initial) {
      leader.epoch(pool.instances, now);
      return;
    }
    const warm = this.forecastPeak(now, now + this.ep.poolS * 1000);
    this.warmLoads = new Map([[pool, Object.fromEntries([...this.route].filter(([t, p]) => p === pool && warm[t]).map(([t]) => [t, warm[t]!]))]]);
    this.warm = true;
    try {
      leader.epoch(pool.instances, now, { force: true, cfg: { overhead: { tauMs: 0, resyncS: 0, instanceStartS: 0 }, reshardKeepsServing: true } });
    } finally {
      this.warm = false;
      this.warmLoads = undefined;
    }
    // its instances report what they measure from here on
    leader.sync(pool.instances, now, 'all');
  }

  /**
   * Oracle epoch: src/policy solveEq1 (HiGHS) over all type pools with the coming epoch's actual peak
   * (1-minute bins, true types), applied instantly (no start or re-shard lag): a lower bound.
   */
  protected oracleEpoch(now: number): void {
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

  protected setClockNow(inst: SimInstance, mhz: number, now = 0): void {
    if (inst.core && !inst.inHeap) inst.core.idleUntil(now);
    inst.clockMhz = mhz;
    inst.core?.setClock(mhz);
  }

  /** The load an instance reports (its status's loadByType: policy currentLoad on its machine's load window); none before it serves. */
  protected machineLoad(inst: SimInstance, now: number): LoadByType {
    if (inst.brain) return inst.brain.load(now);
    return inst.window ? currentLoad(inst.window, now, MACHINE_TIME) : {};
  }

  /** The load its status tells the pool's re-shard epoch (epochLoadByType: policy projectedLoad), when it has a load window. */
  protected machineEpochLoad(inst: SimInstance, now: number): { epochLoad?: LoadByType } {
    if (inst.brain) return { epochLoad: inst.brain.epochLoad(now) };
    return inst.window ? { epochLoad: projectedLoad(inst.window, now, { ...MACHINE_TIME, epochMs: this.ep.instanceS * 1000 }) } : {};
  }


  /** step fidelity: the instance machine of an instance that became ready (./step-model.ts). */
  /** `windowStartMs`: when its load window opened (default now). */
  /** `priorEpochMs`: its last epoch before the simulation (InstanceBrain). */
  protected abstract newBrain(inst: SimInstance, now: number, windowStartMs?: number, priorEpochMs?: number): InstanceBrain;
}
