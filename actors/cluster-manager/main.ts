/**
 * Cluster manager (`cluster --id ID --config FILE`; run any number of replicas).
 * Every replica: intake (subjects.clusterIntake, queue group) -> classify (input class known, output class
 * from the online predictor, which learns from RequestRecords) -> pool of that type (routing table from the
 * pool assignments in the inventory KV) -> poolDispatch, retried while a pool leader fails over; a pool
 * that refuses as overloaded spills to the next pool serving longer requests.
 * The lease holder (leaseKeys.clusterPlanner) also: creates the events stream, keeps the GPU inventory
 * (NodeStatus), runs the scale epoch (forecast -> policy planCluster -> grants of whole servers per pool,
 * merges), publishes PoolAssignments (KV + PoolCommand) and answers clusterStatus.
 */
import type { KV } from '@nats-io/kv';
import { Actor, type ActorOptions } from '../../src/runtime/actor.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { existsSync } from 'node:fs';
import {
  Ack, Admission, ClusterStatus, ClusterTelemetry, PoolTelemetry, InferenceRequest, InstanceStatus, InstanceTelemetry, NodeStatus, PoolAssignment, PoolCommand, PoolStatus, RequestRecord,
  StatusRequest, CLUSTER_INTAKE_QUEUE, controlSubjects, inventoryKeys, jetstream, leaseKeys, subjects, DynError, REQUEST_TYPES, toWireError,
  type PoolTelemetry as PoolTelemetryT, type PoolAssignment as PoolAssignmentT, type PoolStatus as PoolStatusT, type NodeStatus as NodeStatusT, type RequestType, type WireError,
} from '../../protocols/index.ts';
import { requestTypeOf, inputClassOf, outputClassOf, type LengthClass } from '../../protocols/request-types.ts';
import { OnlineOutputPredictor } from '../../src/policy/predictor.ts';
import { classifyRequest } from '../../src/policy/classify.ts';
import { LoadForecaster } from '../../src/policy/forecast.ts';
import { planCluster, serversToStartAhead } from '../../src/policy/cluster.ts';
import { loadConfig, poolsOf, profilePathOf, type ClusterConfig } from '../common/config.ts';
import { parseConfig } from '../common/config.ts';
import type { ActorFactoryOptions } from '../../src/runtime/actor-factory.ts';
import { eventPublisher, ensureEventsStream, ensureRequestsStream, type EventPublisher } from '../common/events.ts';
import { thresholdsOf, withSlo } from '../common/policy.ts';

export const summary = 'cluster manager: intake, classification, routing; leader: scaling and GPU inventory';

/** period of the leader's PoolTelemetry and ClusterTelemetry (the instances' InstanceTelemetry period too). */
const TELEMETRY_MS = 1000;

const NEXT: Record<LengthClass, LengthClass | undefined> = { S: 'M', M: 'L', L: undefined };

/** The type served by the next pool with longer requests (output class first, then input). */
export function longerType(t: RequestType): RequestType | undefined {
  const o = NEXT[outputClassOf(t)];
  if (o) return requestTypeOf(inputClassOf(t), o);
  const i = NEXT[inputClassOf(t)];
  return i ? requestTypeOf(i, 'L') : undefined;
}

export class ClusterManager extends Actor {
  #c: ClusterConfig;
  #evt!: EventPublisher;
  #predictor = new OnlineOutputPredictor({ thresholds: thresholdsOf(loadConfig()) });
  #features = new Map<string, { inputTokens: number; maxTokens: number; model: string; tenant?: string }>();
  #route = new Map<RequestType, string>();
  #assignments = new Map<string, PoolAssignmentT>();
  #lease!: LeaderLease;
  #timers: NodeJS.Timeout[] = [];
  #leaderTimers: NodeJS.Timeout[] = [];
  #nodes = new Map<string, { st: NodeStatusT; seenMs: number }>();
  #pools = new Map<string, { st: PoolStatusT; seenMs: number }>();
  #instances = new Map<string, { st: import('../../protocols/index.ts').InstanceStatus; seenMs: number }>();
  #forecaster: LoadForecaster;
  #profile?: Profile;
  #epoch = 0;
  #statusServe?: { unsubscribe(): void };
  #lastForecast?: Partial<Record<RequestType, number>>;

  constructor(opts: ActorOptions, config: ClusterConfig) {
    super(opts);
    this.#c = config;
    this.#predictor = new OnlineOutputPredictor({ thresholds: thresholdsOf(config) });
    this.#forecaster = new LoadForecaster({ recentWindowMs: config.scaling.recentWindowS * 1000 });
    for (const p of poolsOf(config)) for (const t of p.types) this.#route.set(t, p.id);
  }

  protected async onStart(): Promise<void> {
    const c = this.#c;
    this.#evt = eventPublisher(this.bus, this.id, this.log);
    const ppath = profilePathOf(c);
    if (existsSync(ppath)) this.#profile = loadProfile(ppath);
    else this.log.warn({ profile: ppath }, 'no profile: scaling uses a static split of the servers');
    await this.#loadAssignments();
    this.serve(subjects.clusterIntake(), InferenceRequest, Admission, (r) => this.#intake(r), { queue: CLUSTER_INTAKE_QUEUE, capacity: 8192, concurrency: 512 });
    this.subscribe(subjects.telRequestAll(), RequestRecord, (r) => this.#learn(r), { capacity: 8192 });
    this.subscribe(controlSubjects.nodeStatusAll(), NodeStatus, (s) => void this.#nodes.set(s.node, { st: s, seenMs: Date.now() }), { capacity: 1024 });
    this.subscribe(controlSubjects.poolStatusAll(), PoolStatus, (s) => void this.#pools.set(s.pool, { st: s, seenMs: Date.now() }), { capacity: 1024 });
    this.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => this.#onTelemetry(t), { capacity: 8192 });
    this.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void this.#instances.set(s.id, { st: s, seenMs: Date.now() }), { capacity: 8192 });
    this.#timers.push(setInterval(() => void this.#loadAssignments(), 1000));
    this.#lease = new LeaderLease({
      bus: this.bus, key: leaseKeys.clusterPlanner(), holder: this.id, ttlMs: c.liveness.leaseTtlMs,
      renewMs: Math.max(100, Math.floor(c.liveness.leaseTtlMs / 3)), log: this.log,
    });
    this.#lease.on('elected', () => void this.#lead());
    this.#lease.on('lost', () => {
      this.#evt('lease', `${this.id} lost the cluster planner lease`, { leader: null }, {});
      for (const t of this.#leaderTimers) clearInterval(t);
      this.#leaderTimers = [];
      this.#statusServe?.unsubscribe();
    });
    await this.#lease.start();
  }

  // ------------------------------------------------------------------ intake

  #classify(r: InferenceRequest): { type: RequestType; predicted: number } {
    const f = { inputTokens: r.inputTokens, maxTokens: r.maxTokens, model: r.model, tenant: r.tenant };
    const p = this.#predictor.predict(f);
    const predicted = Math.min(p.tokens, r.maxTokens);
    let type: RequestType;
    try {
      type = classifyRequest(r.inputTokens, r.maxTokens < this.#c.thresholds.output.S ? 'S' : p.outputClass, thresholdsOf(this.#c));
    } catch (err) {
      throw new DynError('invalid_request', (err as Error).message, { retryable: false });
    }
    if (this.#features.size > 50_000) this.#features.delete(this.#features.keys().next().value!);
    this.#features.set(r.id, f);
    return { type, predicted };
  }

  async #intake(r: InferenceRequest): Promise<Admission> {
    let cls: { type: RequestType; predicted: number };
    try {
      cls = this.#classify(r);
    } catch (err) {
      return { v: 1, id: r.id, ok: false, error: toWireError(err) };
    }
    let t: RequestType | undefined = cls.type;
    let last: WireError | undefined;
    // the pool of the type, then (overloaded) the pools serving longer requests
    const tried = new Set<string>();
    const fallback = this.#anyLongerReady(cls.type);
    while (t) {
      const pool = this.#route.get(t);
      // a retired (merged) pool serves nothing: its load went to a pool serving longer requests; a pool
      // just granted servers is used once one of its instances is ready (meanwhile the longer pool serves)
      if (pool && !tried.has(pool) && this.#assignments.get(pool)?.state !== 'retired' && (this.#hasReady(pool) || !fallback)) {
        tried.add(pool);
        const a = await this.#dispatch({ ...withSlo(r, cls.type, this.#c), predictedOutputTokens: cls.predicted, pool }, pool);
        if (a.ok || !a.error || a.error.code !== 'overloaded') return { ...a, type: cls.type };
        last = a.error;
      }
      t = longerType(t);
    }
    return { v: 1, id: r.id, ok: false, type: cls.type, error: last ?? { code: 'unavailable', message: `no pool serves ${cls.type}`, retryable: true, retryAfterS: this.#c.emergency.retryAfterS } };
  }

  #hasReady(pool: string): boolean {
    const now = Date.now();
    for (const { st, seenMs } of this.#instances.values()) if (st.pool === pool && st.state === 'ready' && now - seenMs < this.#c.liveness.deadAfterMs) return true;
    return false;
  }

  /** whether a pool serving t or a longer type has a ready instance (the fallback of a pool still starting). */
  #anyLongerReady(t: RequestType): boolean {
    for (let x: RequestType | undefined = t; x; x = longerType(x)) {
      const p = this.#route.get(x);
      if (p && this.#assignments.get(p)?.state !== 'retired' && this.#hasReady(p)) return true;
    }
    return false;
  }

  /** poolDispatch, retried on no_responders (leader failover) until the lease TTL has passed twice. */
  async #dispatch(r: InferenceRequest, pool: string): Promise<Admission> {
    const until = Date.now() + Math.min(2 * this.#c.liveness.leaseTtlMs + 1000, Math.max(0, r.giveUpAtMs - Date.now()));
    let wait = 50;
    for (;;) {
      try {
        return await this.bus.request(subjects.poolDispatch(pool), InferenceRequest, r, Admission, { timeoutMs: this.#c.timeouts.dispatchMs * 3 });
      } catch (err) {
        const e = err as DynError;
        if (e.code !== 'no_responders' || Date.now() + wait > until) {
          return { v: 1, id: r.id, ok: false, pool, error: { ...toWireError(err), retryable: e.retryable ?? true, retryAfterS: this.#c.emergency.retryAfterS } };
        }
        await new Promise((res) => setTimeout(res, wait));
        wait = Math.min(500, wait * 2);
      }
    }
  }

  #learn(rec: RequestRecord): void {
    const f = this.#features.get(rec.id);
    if (!f || rec.outcome !== 'ok') return;
    this.#features.delete(rec.id);
    this.#predictor.observe(f, rec.completionTokens);
  }

  protected override heartbeatMeta() {
    const a = this.#predictor.accuracy();
    return { leader: this.#lease?.isLeader() ?? false, predictorAccuracy: a.rate, predictorRecentAccuracy: a.recentRate, predictorObservations: a.total };
  }

  async #loadAssignments(): Promise<void> {
    let kv: KV;
    try {
      kv = await this.bus.kv(jetstream.inventoryBucket);
      const keys = await kv.keys('pool.>');
      for await (const k of keys) {
        const e = await kv.get(k);
        if (!e || !e.value.length) continue;
        const a = PoolAssignment.decode(e.value);
        this.#assignments.set(a.pool, a);
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'assignments not readable');
      return;
    }
    for (const a of this.#assignments.values()) {
      this.#epoch = Math.max(this.#epoch, a.epoch);
      if (a.state === 'active') for (const t of a.types) this.#route.set(t, a.pool);
    }
  }

  // ------------------------------------------------------------------ leader: inventory and scaling

  async #lead(): Promise<void> {
    const c = this.#c;
    this.#evt('lease', `${this.id} is the cluster planner`, { leader: this.id, term: this.#lease.term() }, {});
    await ensureEventsStream(this.bus).catch((err) => this.log.warn({ err: (err as Error).message }, 'events stream not created'));
    await ensureRequestsStream(this.bus).catch((err) => this.log.warn({ err: (err as Error).message }, 'request-records stream not created'));
    this.#statusServe = this.bus.serve(subjects.clusterStatus(), StatusRequest, ClusterStatus, async () => this.#status(), { capacity: 64 });
    this.#leaderTimers.push(setInterval(() => this.#observeLoad(), Math.max(1000, c.liveness.statusIntervalMs * 4)));
    this.#leaderTimers.push(setInterval(() => this.#publishTelemetry(), TELEMETRY_MS));
    this.#leaderTimers.push(setInterval(() => void this.#scaleEpoch('epoch'), c.epochs.clusterS * 1000));
    // first plan once the nodes had time to report
    setTimeout(() => void this.#scaleEpoch('start'), Math.max(500, c.liveness.statusIntervalMs * 3)).unref();
  }

  /**
   * Every observation tick (leader): the measured load (sum over live instances) feeds the forecaster
   * (one sample per `#sampleMs`); when the plan of the current forecast needs other server counts than the
   * plan in force on two ticks in a row, the epoch runs early ("forecast change"), at most once per
   * scaling.minEpochGapS, so a replay that outgrows the first plan does not wait for the 30-min timer.
   */
  #observeLoad(): void {
    const now = Date.now();
    const load = this.#observedLoad(now);
    if (now - this.#lastSampleMs >= this.#sampleMs()) {
      this.#forecaster.observe(now, load);
      this.#lastSampleMs = now;
    }
    if (!this.#profile || this.#c.pools || !this.#planServers) return;
    const f = this.#forecaster.forecast(now, this.#c.epochs.clusterS * 1000);
    let want: Map<string, number>;
    try {
      want = this.#serversPerPool(this.#planOf(f, this.#servers().length));
    } catch {
      return;
    }
    const have = this.#planServers;
    const differs = [...new Set([...want.keys(), ...have.keys()])].some((p) => (want.get(p) ?? 0) !== (have.get(p) ?? 0));
    this.#mismatchTicks = differs ? this.#mismatchTicks + 1 : 0;
    if (this.#mismatchTicks >= 2 && now - this.#lastEpochMs >= this.#c.scaling.minEpochGapS * 1000) {
      this.#mismatchTicks = 0;
      const fmt = (m: Map<string, number>) => [...m].filter(([, n]) => n > 0).map(([p, n]) => `${p}:${n}`).join(',') || 'none';
      void this.#scaleEpoch(`forecast change: plan ${fmt(have)} -> ${fmt(want)} (observed ${JSON.stringify(round3(load))})`);
    }
  }

  #observedLoad(now: number): Partial<Record<RequestType, number>> {
    const load: Partial<Record<RequestType, number>> = {};
    for (const { st, seenMs } of this.#instances.values()) {
      if (now - seenMs > this.#c.liveness.deadAfterMs) continue;
      for (const [t, v] of Object.entries(st.loadByType) as [RequestType, number][]) load[t] = (load[t] ?? 0) + v;
    }
    return load;
  }

  /** forecaster sample period: a minute (its unit) in production, shorter when the epoch is short (tests). */
  #sampleMs(): number {
    return Math.min(60_000, Math.max(1000, (this.#c.epochs.clusterS * 1000) / 30));
  }

  #planOf(forecast: Partial<Record<RequestType, number>>, servers: number) {
    const gps = this.#servers()[0]?.gpus ?? 8;
    return planCluster({ forecastPeak: forecast, profile: this.#profile!, totalServers: servers, gpusPerServer: gps });
  }

  #serversPerPool(plan: { pools: { pool: { id: string }; servers: number }[] }): Map<string, number> {
    const m = new Map<string, number>();
    for (const p of plan.pools) if (p.servers > 0) m.set(p.pool.id, p.servers);
    // nothing planned: the longest pool keeps one server (see #scaleEpoch)
    if (!m.size) m.set(plan.pools[plan.pools.length - 1]?.pool.id ?? 'pool-LL', 1);
    return m;
  }

  #servers(): { id: string; gpus: number }[] {
    // servers whose node agent is alive; all configured servers before any has reported
    const now = Date.now();
    const alive = this.#c.servers.filter((s) => {
      const n = this.#nodes.get(s.id);
      return n && now - n.seenMs < Math.max(3 * this.#c.liveness.deadAfterMs, 3000);
    });
    return alive.length ? alive : this.#c.servers;
  }

  #scaling = false;
  #lastSampleMs = 0;
  #lastEpochMs = 0;
  #mismatchTicks = 0;
  /** servers per pool of the plan in force (undefined before the first planned epoch or with configured pools). */
  #planServers?: Map<string, number>;
  #aheadTimer?: NodeJS.Timeout;

  /**
   * The scale epoch: forecast -> planCluster -> whole servers per pool (a pool keeps the servers it has where
   * it can, so a scale step only moves the difference) -> PoolAssignments. Then serversToStartAhead: servers
   * the forecast of the NEXT epoch adds are granted instanceStartupS before it, so they are ready in time.
   * `extra`: a forecast to plan for as well (max per type; the start-ahead epoch).
   */
  async #scaleEpoch(why: string, extra?: Partial<Record<RequestType, number>>): Promise<void> {
    if (!this.#lease.isLeader() || this.#scaling) return;
    this.#scaling = true;
    try {
      const now = Date.now();
      this.#lastEpochMs = now;
      const epochMs = this.#c.epochs.clusterS * 1000;
      const servers = this.#servers();
      const forecast = { ...this.#forecaster.forecast(now, epochMs) };
      if (extra) for (const [t, v] of Object.entries(extra) as [RequestType, number][]) forecast[t] = Math.max(forecast[t] ?? 0, v);
      this.#lastForecast = forecast;
      const pools = poolsOf(this.#c);
      const grants = new Map<string, { node: string; gpuIds: number[] }[]>();
      const types = new Map<string, RequestType[]>(pools.map((p) => [p.id, [...p.types]]));
      const merges: { from: string; into: string }[] = [];
      let rationale: unknown = 'static split';
      let startAhead: unknown;
      const allEight = servers.every((s) => s.gpus % 8 === 0);
      if (this.#profile && !this.#c.pools && allEight) {
        // the paper's plan: whole servers per pool, floor(PL/ML), remainder forwarded, merges
        const plan = this.#planOf(forecast, servers.length);
        rationale = plan.rationale;
        const count = this.#serversPerPool(plan);
        // a pool keeps the servers it holds (fewer moves), then takes free ones in order
        const owner = new Map<string, string>();
        for (const a of this.#assignments.values()) if (a.state === 'active') for (const g of a.grants) owner.set(g.node, a.pool);
        const left = new Set(servers.map((s) => s.id));
        const take = (pool: string, s: { id: string; gpus: number }) => {
          left.delete(s.id);
          grants.set(pool, [...(grants.get(pool) ?? []), { node: s.id, gpuIds: range(s.gpus) }]);
        };
        for (const [pool, n] of count) for (const s of servers) if ((grants.get(pool)?.length ?? 0) < n && left.has(s.id) && owner.get(s.id) === pool) take(pool, s);
        for (const [pool, n] of count) for (const s of servers) if ((grants.get(pool)?.length ?? 0) < n && left.has(s.id)) take(pool, s);
        for (const p of plan.pools) types.set(p.pool.id, p.pool.types);
        merges.push(...plan.merges);
        if (!plan.pools.some((p) => p.servers > 0) && servers.length) {
          // nothing planned (no load yet): the longest pool keeps one server and serves every type
          const last = [...count.keys()][0]!;
          types.set(last, [...REQUEST_TYPES]);
          for (const p of pools) if (p.id !== last && !merges.some((m) => m.from === p.id)) merges.push({ from: p.id, into: last });
        }
        this.#planServers = count;
        // start ahead of a forecast rise: what the next epoch's forecast adds, granted instanceStartupS early
        if (epochMs > 0 && !extra) {
          const next = this.#forecaster.forecast(now + epochMs, epochMs);
          const nextPlan = this.#planOf(next, servers.length);
          const ahead = serversToStartAhead(plan, nextPlan, this.#c.scaling.instanceStartupS * 1000, epochMs);
          if (ahead.length) {
            startAhead = ahead;
            const at = Math.min(...ahead.map((x) => x.startInMs));
            if (this.#aheadTimer) clearTimeout(this.#aheadTimer);
            this.#aheadTimer = setTimeout(() => void this.#scaleEpoch('start ahead of the next epoch', next), at);
            this.#aheadTimer.unref();
            this.#leaderTimers.push(this.#aheadTimer);
            this.#evt('scale', `start ahead: ${ahead.map((x) => `+${x.servers} ${x.poolId}`).join(', ')} in ${Math.round(at / 1000)} s`, { startAhead: ahead }, { next, startupS: this.#c.scaling.instanceStartupS, epochS: this.#c.epochs.clusterS });
          }
        }
      } else {
        // configured pools: split every server's GPUs evenly among the pools (one share per pool and server
        // when there are more pools than servers), grants on one node merged
        const per = pools.length;
        const chunksPerServer = Math.max(1, Math.ceil(per / Math.max(1, servers.length)));
        let k = 0;
        for (const s of servers) {
          const share = Math.max(1, Math.floor(s.gpus / chunksPerServer));
          for (let j = 0; j < chunksPerServer && (j + 1) * share <= s.gpus; j++, k++) {
            const p = pools[k % per]!;
            const list = grants.get(p.id) ?? [];
            const same = list.find((x) => x.node === s.id);
            if (same) same.gpuIds.push(...range(share, j * share));
            else list.push({ node: s.id, gpuIds: range(share, j * share) });
            grants.set(p.id, list);
          }
        }
      }
      const epoch = ++this.#epoch;
      const mergedInto = new Map(merges.map((m) => [m.from, m.into]));
      const ids = new Set([...pools.map((p) => p.id), ...grants.keys()]);
      const changes: Record<string, unknown>[] = [];
      for (const id of ids) {
        const g = grants.get(id) ?? [];
        const into = mergedInto.get(id);
        const state = g.length ? 'active' : 'retired';
        const prev = this.#assignments.get(id);
        const a: PoolAssignmentT = {
          v: 1, pool: id, types: state === 'active' ? types.get(id)! : (pools.find((p) => p.id === id)?.types ?? types.get(id)!), grants: g, epoch, state,
          issuedBy: this.id, atMs: now, forecast: Object.fromEntries(Object.entries(forecast).filter(([t]) => (types.get(id) ?? []).includes(t as RequestType))),
        };
        if (into) a.mergedInto = into;
        const same = prev && prev.state === a.state && JSON.stringify(prev.grants) === JSON.stringify(a.grants) && JSON.stringify(prev.types) === JSON.stringify(a.types);
        if (same) continue;
        changes.push({ pool: id, state, gpus: g.reduce((n, x) => n + x.gpuIds.length, 0), mergedInto: into });
        await this.#assign(a);
      }
      if (changes.length) {
        this.#evt('scale', `cluster epoch ${epoch} (${why}): ${changes.length} pool(s) changed`, { epoch, why, changes, merges, startAhead }, { forecast, observed: this.#observedLoad(now), servers: servers.map((s) => s.id), rationale, planner: 'heuristic' });
        for (const m of merges) this.#evt('merge', `${m.from} merged into ${m.into}`, m, { forecast });
      }
    } catch (err) {
      this.log.error({ err }, 'scale epoch failed');
    } finally {
      this.#scaling = false;
    }
  }

  async #assign(a: PoolAssignmentT): Promise<void> {
    this.#assignments.set(a.pool, a);
    if (a.state === 'active') for (const t of a.types) this.#route.set(t, a.pool);
    try {
      const kv = await this.bus.kv(jetstream.inventoryBucket);
      await kv.put(inventoryKeys.pool(a.pool), PoolAssignment.encode(a));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, pool: a.pool }, 'assignment not stored');
    }
    try {
      await this.bus.request(subjects.poolControl(a.pool), PoolCommand, { v: 1, op: 'assign', assignment: a, reason: `cluster epoch ${a.epoch}` }, Ack, { timeoutMs: this.#c.timeouts.controlMs });
    } catch (err) {
      // no pool leader right now: it reads the assignment from the KV when elected
      this.log.info({ pool: a.pool, err: (err as Error).message }, 'pool leader not reachable; assignment left in KV');
    }
  }

  /** instance power/energy from InstanceTelemetry (modelled for emulated GPUs, measured on NVML/SMI). */
  #tel = new Map<string, { powerW: number; energyJ: number; seenMs: number }>();
  /** cluster energy since this manager started, J: the sum of every instance's energy increments. */
  #energyJ = 0;
  #onTelemetry(t: InstanceTelemetry): void {
    const prev = this.#tel.get(t.id);
    // an instance's counter starts at 0 with its manager: a drop means a new manager under the same id
    const delta = prev ? (t.energyJ >= prev.energyJ ? t.energyJ - prev.energyJ : t.energyJ) : 0;
    this.#energyJ += delta;
    this.#poolEnergyJ.set(t.pool, (this.#poolEnergyJ.get(t.pool) ?? 0) + delta);
    this.#tel.set(t.id, { powerW: t.powerW, energyJ: t.energyJ, seenMs: Date.now() });
    if (this.#tel.size > 4096) this.#tel.delete(this.#tel.keys().next().value!);
  }

  /** pool energy since this manager started, J, by pool. */
  #poolEnergyJ = new Map<string, number>();

  /** Leader, every TELEMETRY_MS: PoolTelemetry per active pool and one ClusterTelemetry (public telemetry). */
  #publishTelemetry(): void {
    const st = this.#status();
    const now = st.atMs;
    const total: Record<string, number> = {};
    let instances = 0, ready = 0, queued = 0, running = 0, gpus = 0;
    try {
      for (const p of st.pools) {
        const loadByType = this.#pools.get(p.id)?.st.loadByType ?? {};
        for (const [t, x] of Object.entries(loadByType)) total[t] = (total[t] ?? 0) + (x ?? 0);
        const q = p.instances.reduce((n, i) => n + i.queued, 0);
        const r = p.instances.reduce((n, i) => n + i.running, 0);
        const rd = p.instances.filter((i) => i.state === 'ready').length;
        const pt: PoolTelemetryT = {
          v: 1, pool: p.id, types: p.types, gpus: p.gpus, instances: p.instances.length, readyInstances: rd,
          powerW: p.instances.reduce((n, i) => n + i.powerW, 0), energyJ: this.#poolEnergyJ.get(p.id) ?? 0,
          queued: q, running: r, loadByType, sentMs: now,
        };
        if (p.leader) pt.leader = p.leader;
        this.bus.publish(subjects.telPool(p.id), PoolTelemetry, pt);
        instances += p.instances.length;
        ready += rd;
        queued += q;
        running += r;
        gpus += p.gpus;
      }
      this.bus.publish(subjects.telCluster(), ClusterTelemetry, {
        v: 1, leader: st.leader, pools: st.pools.length, instances, readyInstances: ready, gpus: gpus + st.freeGpus, freeGpus: st.freeGpus,
        powerW: st.powerW, energyJ: st.energyJ, queued, running, loadByType: total, sentMs: now,
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'telemetry not published');
    }
  }

  #status(): ClusterStatus {
    const now = Date.now();
    const alive = [...this.#instances.values()].filter((x) => now - x.seenMs < this.#c.liveness.deadAfterMs).map((x) => x.st);
    const pools = [...this.#assignments.values()].filter((a) => a.state === 'active').map((a) => ({
      id: a.pool, types: a.types, gpus: a.grants.reduce((n, g) => n + g.gpuIds.length, 0), leader: this.#pools.get(a.pool)?.st.leader,
      instances: alive.filter((s) => s.pool === a.pool).map((s) => ({ id: s.id, tp: s.tp, gpus: s.gpuIds, node: s.node, clockMhz: s.clockMhz, powerW: this.#tel.get(s.id)?.powerW ?? 0, energyJ: this.#tel.get(s.id)?.energyJ ?? 0, queued: s.queued, running: s.running, state: s.state })),
    }));
    const freeGpus = [...this.#nodes.values()].reduce((n, x) => n + x.st.free.length, 0);
    // cluster power: the live instances' last telemetry (idle GPUs of free servers are not metered here)
    let powerW = 0;
    for (const [, x] of this.#tel) if (now - x.seenMs < Math.max(3000, this.#c.liveness.deadAfterMs)) powerW += x.powerW;
    return { v: 1, leader: this.id, atMs: now, pools, freeGpus, powerW, energyJ: this.#energyJ };
  }

  protected override async onStop(): Promise<void> {
    for (const t of [...this.#timers, ...this.#leaderTimers]) clearInterval(t);
    this.#statusServe?.unsubscribe();
    await this.#lease?.stop().catch(() => {});
  }
}

function round3(o: Partial<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round((v ?? 0) * 1000) / 1000]));
}

function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

/** `dynamollm actor cluster` (src/cli/actor-registry.ts). */
export function createActor(o: ActorFactoryOptions): ClusterManager {
  const config = parseConfig(o.config ?? {});
  return new ClusterManager({ kind: 'cluster', id: o.id, nats: o.nats, log: o.log, heartbeatMs: config.liveness.statusIntervalMs, jetstreamReplicas: config.nats.jetstreamReplicas }, config);
}
