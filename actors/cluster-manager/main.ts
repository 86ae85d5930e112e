/**
 * Cluster manager (`cluster --id ID --config FILE`; run any number of replicas).
 * Every replica: intake (subjects.clusterIntake, queue group) -> classify (input class known, output class
 * from the online predictor, which learns from the RequestRecords of the requests it classified, received only while it
 * awaits one: ../common/record-intake.ts) -> pool of that type (routing table from the
 * pool assignments in the inventory KV) -> poolDispatch, retried while a pool leader fails over; a pool
 * that refuses as overloaded spills to the next pool serving longer requests.
 * The lease holder (leaseKeys.clusterPlanner) also: creates the events stream, keeps the GPU inventory
 * (NodeStatus), runs the scale epoch (forecast -> policy planCluster -> grants of whole servers per pool,
 * merges), publishes PoolAssignments (KV + PoolCommand) and answers clusterStatus; with a power driver
 * (config `power.driver`), powers servers off and on as the scaling machine decides (./power-driver.ts).
 */
import { busPingMs } from '../../src/policy/bus-keepalive.ts';
import type { KV } from '@nats-io/kv';
import { Actor, type ActorOptions } from '../../src/runtime/actor.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import {
  Ack, Admission, ClusterStatus, RoutingTable, ClusterTelemetry, EnergyLedger, PoolTelemetry, InferenceRequest, InstanceStatus, InstanceTelemetry, NodeStatus, NodeTelemetry, PoolAssignment, PoolCommand, PoolStatus, type RequestRecord,
  StatusRequest, ClientDisconnect, CLUSTER_INTAKE_QUEUE, controlSubjects, inventoryKeys, jetstream, leaseKeys, subjects, toWireError,
  type PoolTelemetry as PoolTelemetryT, type PoolAssignment as PoolAssignmentT, type PoolStatus as PoolStatusT, type NodeStatus as NodeStatusT, type RequestType,
} from '../../protocols/index.ts';
import { OnlineOutputPredictor } from '../../src/policy/predictor.ts';
import { EPOCH_LENGTH_DEFAULTS } from '../../src/policy/epoch-length.ts';
import { suspectAfterMsOf, suspected } from '../../src/policy/suspect.ts';
import { clusterStep, keepSilentForMs, initialClusterState, intakePools, spillNext, spillPasses, type ClusterEvent, type ClusterMachineConfig, type ClusterMachineState } from '../../src/policy/machines/cluster.ts';
import { loadConfig, poolsOf, profilePathOf, requireProfileCovers, type ClusterConfig } from '../common/config.ts';
import { parseConfig } from '../common/config.ts';
import type { ActorFactoryOptions } from '../../src/runtime/actor-factory.ts';
import { eventPublisher, type EventPublisher } from '../common/events.ts';
import { eventsStreamBeforeLead, setUpJetStreamInBackground } from '../common/jetstream-setup.ts';
import { classifyIntake } from '../../src/policy/classify.ts';
import { thresholdsOf, withSlo } from '../../src/policy/slo.ts';
import { PoolDispatcher } from './dispatch.ts';
import { powerSum, staleOf } from '../../src/telemetry/power-sum.ts';
import { addReading, nodeReadingId, bookFromRecord, bookToRecord, emptyBook, takeOver, type EnergyBook, type Reading } from '../../src/telemetry/energy-ledger.ts';
import { reconcileInventory } from '../../src/runtime/inventory.ts';
import { powerCounts, serverPowerConfig } from '../../src/policy/machines/cluster-power.ts';
import { PowerDriver, nodeSeen } from './power-driver.ts';
import { readInventory, storedAssignments, watchInventory, type InventoryReader } from './inventory-read.ts';
import { disconnectSeen, initialEndedConnections, outOfDispatch } from './instance-ended.ts';
import { LostInstances } from './lost-instances.ts';
import { stallSafeInterval } from '../../src/runtime/stall-interval.ts';
import { LinkWatcher } from '../common/link-watcher.ts';
import { HeardInstances, heardNow, observation, prefixReuse, silentMs, type Heard, type Observation } from './observation.ts';
import { Leads } from './leads.ts';
import { RecordIntake } from '../common/record-intake.ts';
import { AwaitedRecords, recordDueMs } from '../../src/policy/awaited-records.ts';

const INSECURE_NATS_WARNING = 'NATS does not enforce authorization (--insecure-nats): anyone who reaches it can read every prompt, change GPU clocks and stop instances';

export const summary = 'cluster manager: intake, classification, routing; leader: scaling and GPU inventory';

/** period of the leader's PoolTelemetry and ClusterTelemetry (the instances' InstanceTelemetry period too). */
const TELEMETRY_MS = 1000;
/** period of the sweep that forgets the awaited records past due and gives the records' subscription up while none is awaited. */
const RECORDS_SWEEP_MS = 1000;

export class ClusterManager extends Actor {
  #c: ClusterConfig;
  /** intake's dispatch to the pool leaders (dispatch.ts), made at start. */
  #dispatcher?: PoolDispatcher;
  #evt!: EventPublisher;
  #predictor = new OnlineOutputPredictor({ thresholds: thresholdsOf(loadConfig()) });
  /** the requests intake classified whose record the predictor awaits (policy AwaitedRecords); the records' subscription is held only while there is one. */
  #awaited = new AwaitedRecords<{ inputTokens: number; maxTokens: number; model: string; tenant?: string }>();
  #records?: RecordIntake;
  #lease!: LeaderLease;
  #timers: unknown[] = [];
  /** the leads of the planner lease: what the lead in place armed, stopped with it (./leads.ts). */
  #leads!: Leads;
  #nodes = new Map<string, { st: NodeStatusT; seenMs: number; upSinceMs: number }>();
  /** the operator's power driver (config power.driver); none: no server is powered off or on. */
  #power?: PowerDriver;
  #pools = new Map<string, { st: PoolStatusT; seenMs: number }>();
  /** each instance's last status and when it came, each kept undecoded until read (./observation.ts HeardInstances). */
  #instances?: HeardInstances;
  #ended = initialEndedConnections(); // the connections the NATS server said ended (ClientDisconnect): their instances are out of dispatch
  #profile?: Profile;
  /** the scaling machine's configuration and state (src/policy/machines/cluster.ts). */
  #mc!: ClusterMachineConfig;
  #m: ClusterMachineState;
  /** when this replica began listening to the instances' status (the stale-inventory check waits a liveness window from it). */
  #listeningSinceMs = 0;
  /** its own link to the bus: the silence heard while it is down or unproven is nobody's (policy link-watch.ts). */
  #link?: LinkWatcher;
  /** the first read of the store's assignments (started with the actor, awaited by a new leader). */
  #loaded: Promise<void> = Promise.resolve();
  /** bumped when stale assignments are cleared: a store read begun before must not bring them back. */
  #loadGen = 0;
  /** per pool: when its assignment was last re-sent (the pool's PoolStatus showed an older epoch). */
  #resentMs = new Map<string, number>();
  /** leading with this run's assignments (the store checked for a previous run's): decides on lost instances. */
  #deciding = false;

  /** `profile`: the config's profile as createActor read it (undefined: none). */
  constructor(opts: ActorOptions, config: ClusterConfig, profile: Profile | undefined) {
    super(opts);
    this.#c = config;
    this.#profile = profile;
    this.#predictor = new OnlineOutputPredictor({ thresholds: thresholdsOf(config) });
    this.#m = initialClusterState({ pools: poolsOf(config) });
  }

  protected async onStart(): Promise<void> {
    const c = this.#c;
    this.#evt = eventPublisher(this.bus, this.id, this.log, this.clock);
    this.#dispatcher = new PoolDispatcher(this.bus, this.clock, c);
    if (!this.#profile) this.log.warn({ profile: profilePathOf(c) }, 'no profile: scaling uses a static split of the servers');
    this.#mc = {
      issuer: this.id, profile: this.#profile, pools: poolsOf(c), configuredPools: c.pools !== undefined, epochMs: c.epochs.clusterS * 1000,
      statusIntervalMs: c.liveness.statusIntervalMs, minEpochGapMs: c.scaling.minEpochGapS * 1000, instanceStartupMs: c.scaling.instanceStartupS * 1000,
      recentWindowMs: c.scaling.recentWindowS * 1000, headroom: c.policy.headroom, keepSilentForMs: keepSilentForMs(c.liveness.deadAfterMs),
      ...(c.scaling.epochFloorS !== undefined ? { adaptiveEpoch: { ...EPOCH_LENGTH_DEFAULTS, floorMs: c.scaling.epochFloorS * 1000 } } : {}),
      ...(c.power.driver ? { power: serverPowerConfig({ bootS: c.power.bootS, bootDeadlineS: c.power.bootDeadlineS, reserveServers: c.power.reserveServers, ...(c.power.idleBeforeOffS !== undefined ? { idleBeforeOffS: c.power.idleBeforeOffS } : {}) }) } : {}),
    };
    if (c.power.driver) this.#power = new PowerDriver({ command: c.power.driver, timeoutMs: c.power.timeoutS * 1000, attempts: c.power.attempts }, this.log, this.clock);
    // the store's assignments, read beside the lease: a replica contends as soon as it listens, also while the
    // inventory's stream does not answer (its reads retried for timeouts.takeoverReadMs); #lead waits for them
    this.#reader = { bus: this.bus, clock: this.clock, log: this.log, abandoned: () => this.#stopped };
    this.#loaded = this.#loadAssignments();
    this.serve(subjects.clusterIntake(), InferenceRequest, Admission, (r) => this.#intakeOnce(r), { queue: CLUSTER_INTAKE_QUEUE, capacity: 8192, concurrency: 512 });
    // the predictor learns from the requests intake classified: the records of others (the gateway routed them) are not
    // received while none is awaited; one past due is forgotten, and the subscription given up, at the next sweep
    this.#records = new RecordIntake(this.bus, { subject: subjects.telRequestAll(), wanted: () => this.#awaited.recordsWanted(), onRecord: (r) => this.#learn(r), expectSubject: (r) => subjects.telRequest(r.pool) });
    this.#timers.push(this.clock.setInterval(() => (this.#awaited.expire(this.clock.now()), this.#records?.sync(true)), RECORDS_SWEEP_MS));
    // a node's lost instances: the leader starts again at once those its assignments still want (./lost-instances.ts)
    const lost = new LostInstances({ bus: this.bus, log: this.log, evt: this.#evt, timeoutMs: c.timeouts.controlMs, deciding: () => this.#deciding && this.#lease.isLeader(), assignments: () => this.#m.assignments });
    this.subscribe(controlSubjects.nodeStatusAll(), NodeStatus, (s) => {
      this.#nodes.set(s.node, nodeSeen(this.#nodes.get(s.node), s, this.clock.now(), this.#c.liveness.deadAfterMs));
      lost.onNodeStatus(s);
    }, { capacity: 1024, expectSubject: (s) => controlSubjects.nodeStatus(s.node) });
    this.subscribe(controlSubjects.poolStatusAll(), PoolStatus, (s) => void this.#pools.set(s.pool, { st: s, seenMs: this.clock.now() }), { capacity: 1024, expectSubject: (s) => controlSubjects.poolStatus(s.pool) });
    this.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => this.#onTelemetry(t), { capacity: 8192, expectSubject: (t) => subjects.telInstance(t.id) });
    this.subscribe(subjects.telNodeAll(), NodeTelemetry, (t) => this.#onNodeTelemetry(t), { capacity: 1024, expectSubject: (t) => subjects.telNode(t.node) });
    this.#instances = new HeardInstances(this.bus.subscribeLatest(controlSubjects.instanceStatusAll(), InstanceStatus, { now: () => this.clock.now(), maxSubjects: 8192, expectSubject: (s) => controlSubjects.instanceStatus(s.pool, s.id) }));
    this.subscribe(controlSubjects.connectionEnded(), ClientDisconnect, (a) => void (this.#ended = disconnectSeen(this.#ended, a, this.clock.now(), c.liveness.deadAfterMs)), { capacity: 4096 });
    this.#listeningSinceMs = this.clock.now();
    const watcher = { ...this.#reader, watches: this.#watches };
    void watchInventory(watcher, 'pool.>', PoolAssignment, (a) => a && this.#step({ type: 'assignments_loaded', assignments: [a] }));
    void watchInventory(watcher, inventoryKeys.energy(), EnergyLedger, (l) => void (this.#ledgerSeen = l));
    this.#lease = new LeaderLease({
      bus: this.bus, key: leaseKeys.clusterPlanner(), holder: this.id, ttlMs: c.liveness.leaseTtlMs,
      renewMs: Math.max(100, Math.floor(Math.min(c.liveness.leaseTtlMs, c.liveness.deadAfterMs) / 3)), log: this.log,
    });
    this.#link = new LinkWatcher(this.bus, this.#lease, c.liveness.deadAfterMs, this.clock); // its round trips prove the link
    this.#leads = new Leads(this.clock, () => this.#lease.isLeader());
    this.#lease.on('elected', () => void this.#lead(this.#leads.next()));
    this.#lease.on('lost', () => {
      this.#leads.next(); // the lead's timers and status service stop; a lead still in its setup arms nothing
      this.#deciding = false;
      this.#ledgerPending = false;
      this.#evt('lease', `${this.id} lost the cluster planner lease`, { leader: null }, {});
    });
    await eventsStreamBeforeLead(this.bus, this.clock); // the first planner's lease event stored (jetstream-setup.ts)
    await this.#lease.start();
  }

  // ------------------------------------------------------------------ intake

  #classify(r: InferenceRequest): { type: RequestType; predicted: number } {
    const f = { inputTokens: r.inputTokens, maxTokens: r.maxTokens, model: r.model, tenant: r.tenant };
    const { type, predicted } = classifyIntake(r, this.#predictor, this.#c);
    if (r.probe) return { type, predicted }; // the predictor learns from traffic, not from a readiness probe
    this.#awaited.await(r.id, f, recordDueMs(r, this.clock.now()));
    this.#records?.sync(false); // before the dispatch: its SUB precedes the dispatch request on this connection
    return { type, predicted };
  }

  /** admissions in flight by request id: the gateway's retry of one (same id) joins it. */
  #inflight = new Map<string, Promise<Admission>>();
  /** admissions granted lately by request id (bounded): a retry whose first answer was lost gets the same one. */
  #granted = new Map<string, Admission>();

  /** Intake, idempotent by request id: a duplicate joins the admission in flight or gets the one granted. */
  #intakeOnce(r: InferenceRequest): Promise<Admission> {
    const known = this.#granted.get(r.id);
    if (known) return Promise.resolve(known);
    let p = this.#inflight.get(r.id);
    if (!p) {
      p = this.#intake(r).then((a) => {
        if (a.ok) {
          this.#granted.set(r.id, a);
          if (this.#granted.size > 16_384) this.#granted.delete(this.#granted.keys().next().value!);
        }
        return a;
      }).finally(() => this.#inflight.delete(r.id));
      this.#inflight.set(r.id, p);
    }
    return p;
  }

  async #intake(r: InferenceRequest): Promise<Admission> {
    let cls: { type: RequestType; predicted: number };
    try {
      cls = this.#classify(r);
    } catch (err) {
      return { v: 1, id: r.id, ok: false, error: toWireError(err) };
    }
    // policy spillPasses, spillNext: along the chain a pool at its SLO cap refuses it (spill); every one refusing, the
    // chain again without spill (the first pool takes it at its cap); a refusal other than overloaded ends the walk
    let move = spillNext<string, Admission>({ offers: spillPasses(intakePools(this.#m, cls.type, (p) => this.#hasReady(p), (p) => this.#hasReady(p, true))) });
    while (move.kind === 'offer') {
      const { pool, spill } = move.offer;
      move = spillNext(move.walk, await this.#dispatcher!.dispatch({ ...withSlo(r, cls.type, this.#c), predictedOutputTokens: cls.predicted, pool, ...(spill ? { spill } : {}) }, pool));
    }
    if (move.answer) return { ...move.answer, type: cls.type };
    return { v: 1, id: r.id, ok: false, type: cls.type, error: { code: 'unavailable', message: `no pool serves ${cls.type}`, retryable: true, retryAfterS: this.#c.emergency.retryAfterS } };
  }

  /** A ready instance of `pool` heard within deadAfterMs (`heard`: not suspected either, policy suspect.ts). */
  #hasReady(pool: string, heard = false): boolean {
    const now = this.clock.now();
    const suspectAfterMs = heard ? suspectAfterMsOf(this.#c.liveness) : undefined;
    for (const { st, seenMs } of heardNow(this.#instances).values()) if (st.pool === pool && st.state === 'ready' && now - seenMs < this.#c.liveness.deadAfterMs && !suspected(seenMs, now, suspectAfterMs) && !outOfDispatch(st, this.#nodes, this.#ended)) return true;
    return false;
  }

  #learn(rec: RequestRecord): void {
    const f = this.#awaited.take(rec.id, rec.outcome);
    if (f) this.#predictor.observe(f, rec.completionTokens);
  }

  protected override heartbeatMeta() {
    const a = this.#predictor.accuracy();
    return { leader: this.#lease?.isLeader() ?? false, predictorAccuracy: a.rate, predictorRecentAccuracy: a.recentRate, predictorObservations: a.total };
  }

  #stopped = false;
  /** the inventory watches (assignments, energy ledger: inventory-read.ts watchInventory), stopped with the actor. */
  #watches = new Set<{ stop(): void }>();
  /** the energy ledger as last stored (its watch): a new leader's status counts on from it until its own read of the ledger. */
  #ledgerSeen?: EnergyLedger;
  #ledgerPending = false;

  /** the inventory reads' deadlines and their way to another server (inventory-read.ts). */
  #reader!: InventoryReader;

  async #loadAssignments(): Promise<void> {
    const gen = this.#loadGen;
    let found: PoolAssignmentT[];
    try {
      found = (await readInventory(this.#reader, 'the pool assignments', storedAssignments, this.clock.now() + this.#c.timeouts.takeoverReadMs)).stored;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'assignments not readable');
      return;
    }
    if (gen !== this.#loadGen) return;
    this.#step({ type: 'assignments_loaded', assignments: found });
  }

  /**
   * A new planner, before it plans: the store's assignments against the live instances
   * (src/runtime/inventory.ts). A previous run's are deleted from the store and from the machine's state
   * (routes back to the config's), keeping the epoch so every later assignment outranks them. Nothing is deleted or
   * changed once `current()` fails (its lead is over: a new leader may have written those keys since).
   */
  async #reconcileInventory(untilMs: number, current: () => boolean): Promise<void> {
    const c = this.#c;
    // every live instance reports within a status interval; wait a liveness window after subscribing
    const wait = this.#listeningSinceMs + c.liveness.deadAfterMs - this.clock.now();
    if (wait > 0) await this.clock.sleep(wait);
    const now = this.clock.now();
    const live = [...heardNow(this.#instances).values()].filter((x) => now - x.seenMs < c.liveness.deadAfterMs).map((x) => x.st);
    let kv!: KV;
    /** corrupt: keys whose value does not decode, nobody's assignment, deleted with the stale ones. */
    let stored: PoolAssignmentT[], corrupt: string[];
    try {
      ({ stored, corrupt } = await readInventory(this.#reader, 'the pool assignments', (k) => {
        kv = k;
        return storedAssignments(k);
      }, untilMs));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'inventory not readable: stale assignments not checked');
      return;
    }
    if (!current()) return;
    const r = reconcileInventory(stored, live, this.#mc.pools.map((p) => p.id), c.nats.ownStore);
    let ledgerCleared = false;
    if (r.fresh) {
      try {
        if (await readInventory(this.#reader, 'the energy ledger', (k) => k.get(inventoryKeys.energy()), untilMs) && current()) {
          await kv.delete(inventoryKeys.energy());
          ledgerCleared = true;
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'stale energy ledger not deleted');
      }
    }
    if (!r.stale.length && !ledgerCleared && !corrupt.length) return;
    this.#loadGen++;
    for (const key of [...r.stale.map((a) => inventoryKeys.pool(a.pool)), ...corrupt]) {
      if (!current()) return;
      try {
        await kv.delete(key);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, key }, 'stale assignment not deleted');
      }
    }
    if (!current()) return;
    const fresh = initialClusterState({ pools: this.#mc.pools });
    const epoch = Math.max(this.#m.epoch, ...stored.map((a) => a.epoch));
    this.#m = { ...this.#m, assignments: fresh.assignments, route: fresh.route, planServers: undefined, mismatchTicks: 0, epoch };
    if (r.keep.length) this.#step({ type: 'assignments_loaded', assignments: r.keep });
    this.#evt(
      'plan', `${this.id}: ${r.stale.length + corrupt.length} stale pool assignment(s)${ledgerCleared ? ' and the energy ledger' : ''} cleared from the inventory (${r.why})`,
      { cleared: r.stale.map((a) => ({ pool: a.pool, epoch: a.epoch, state: a.state, issuedBy: a.issuedBy })), undecodable: corrupt, ledgerCleared, keptEpoch: epoch },
      { liveInstances: live.length, stored: stored.length },
    );
  }

  /**
   * Leader, every few status intervals: a pool whose leader reports an older assignment epoch than the
   * planner's (a new pool leader that found nothing it could trust in the store, a lost command) gets its
   * assignment again.
   */
  #resendBehind(): void {
    if (!this.#mayDecide()) return;
    const now = this.clock.now();
    const c = this.#c;
    for (const [pool, a] of this.#m.assignments) {
      const p = this.#pools.get(pool);
      if (!p || now - p.seenMs > c.liveness.deadAfterMs || p.st.epoch >= a.epoch) continue;
      if (now - (this.#resentMs.get(pool) ?? -Infinity) < Math.max(2000, c.liveness.statusIntervalMs * 4)) continue;
      this.#resentMs.set(pool, now);
      void this.bus
        .request(subjects.poolControl(pool), PoolCommand, { v: 1, op: 'assign', assignment: a, reason: `re-sent: ${pool} reports epoch ${p.st.epoch} < ${a.epoch}` }, Ack, { timeoutMs: c.timeouts.controlMs })
        .catch((err: unknown) => this.log.info({ pool, err: (err as Error).message }, 'assignment re-send failed'));
    }
  }

  // ------------------------------------------------------------------ leader: inventory and scaling

  /** One transition of the scaling machine (src/policy/machines/cluster.ts); performs its effects. */
  #step(ev: ClusterEvent): void {
    const { state, effects } = clusterStep(this.#m, ev, this.clock.now(), this.#mc);
    this.#m = state;
    this.#publishRoutes(false);
    for (const e of effects) {
      switch (e.kind) {
        case 'arm_timer':
          if ('everyMs' in e) {
            const tick = e.timer === 'observe' ? () => this.#mayDecide() && this.#step({ type: 'observe', ...this.#observation() }) : () => this.#mayDecide() && this.#step({ type: 'epoch', why: 'epoch', ...this.#observation(), ...this.#prefixReuse() });
            this.#leads.arm(stallSafeInterval(this.clock, tick, e.everyMs)); // ticks after a stop see its statuses first
          } else if (e.timer === 'first_epoch') {
            // a new leader's first epoch keeps the grants of a granted server silent briefly (policy keptServers)
            this.#leads.arm(this.clock.setTimeout(() => this.#mayDecide() && this.#step({ type: 'epoch', why: 'start', ...this.#observation(), ...this.#prefixReuse(), keep: this.#c.servers, silentMs: silentMs(this.#heard(), this.clock.now(), this.#link?.since(this.clock.now()) ?? -Infinity, this.#listeningSinceMs) }), e.inMs));
          } else {
            if (this.#aheadTimer !== undefined) this.clock.clearTimeout(this.#aheadTimer);
            const extra = e.forecast;
            this.#aheadTimer = this.clock.setTimeout(() => this.#mayDecide() && this.#step({ type: 'epoch', why: 'start ahead of the next epoch', ...this.#observation(), ...this.#prefixReuse(), ...(extra ? { extra } : {}) }), e.inMs);
            this.#leads.arm(this.#aheadTimer);
          }
          break;
        case 'assign':
          // one after the other, in the machine's order
          this.#assigning = this.#assigning.then(() => this.#assign(e.assignment));
          break;
        case 'event':
          this.#evt(e.event, e.summary, e.decision, e.inputs);
          break;
        case 'power':
          // the driver's outcome goes back to the machine (the leader's)
          void this.#power?.command(e.action, e.server, this.#c.servers.find((x) => x.id === e.server)?.address, e.why).then((result) => this.#lease.isLeader() && this.#step({ type: 'power_result', result }));
          break;
      }
    }
  }

  /**
   * Whether it may decide as the planner now, by its lease's bound on its own clock (no lease read): a process resumed after a stall past its lease runs its
   * due timers (observe, epoch) before its lease's, on a view where every node was silent. Past it the lease is given up at once (its 'lost' stops the timers).
   */
  #mayDecide(what?: Record<string, unknown>): boolean {
    if (this.#lease.isLeader()) return true;
    if (what) this.log.warn(what, 'not done: the planner lease may have lapsed');
    this.#lease.resign();
    return false;
  }

  #heard(): Heard {
    return { servers: this.#c.servers, nodes: this.#nodes, instances: heardNow(this.#instances), deadAfterMs: this.#c.liveness.deadAfterMs };
  }
  #observation(): Observation {
    const now = this.clock.now();
    return observation(this.#heard(), now, this.#link?.since(now) ?? -Infinity, Boolean(this.#mc.power));
  }

  /** Each type's pool's measured prefix reuse for the epoch (./observation.ts prefixReuse). */
  #prefixReuse(): { prefixReuse?: Partial<Record<RequestType, number>> } {
    return prefixReuse(this.#heard(), this.clock.now(), this.#m.assignments.values());
  }

  /** the routing table last published (its content, without the time). */
  #routesSent = '';

  /**
   * Leader: the routing table the gateways route by (controlSubjects.routing): on every change, and as a
   * snapshot (`snapshot`, every TELEMETRY_MS) for a gateway that starts or missed one.
   */
  #publishRoutes(snapshot: boolean): void {
    if (!this.#lease?.isLeader()) return;
    const m = this.#m;
    const routes = Object.fromEntries(m.route) as Partial<Record<RequestType, string>>;
    const pools = [...m.assignments.values()].map((a) => ({ pool: a.pool, types: a.types, retired: a.state === 'retired' }));
    for (const p of this.#mc.pools) if (!m.assignments.has(p.id)) pools.push({ pool: p.id, types: p.types, retired: false });
    const key = JSON.stringify([routes, pools, m.epoch]);
    if (!snapshot && key === this.#routesSent) return;
    this.#routesSent = key;
    try {
      this.bus.publish(controlSubjects.routing(), RoutingTable, { v: 1, routes, pools, epoch: m.epoch, issuedBy: this.id, sentMs: this.clock.now() });
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'routing table not published');
    }
  }

  /** Lead `gen` (Leads.next at its 'elected'): after each await of its setup, it goes on only while it is the lead in place. */
  async #lead(gen: number): Promise<void> {
    const current = () => this.#leads.current(gen);
    // the buckets and streams (only the cluster manager makes them) made sure of beside the lead, not before it: each stream
    // API call waits out JetStream's 5-s deadline when the stream's server does not answer, and the status waited for them
    this.#evt('lease', `${this.id} is the cluster planner`, { leader: this.id, term: this.#lease.term() }, {});
    void setUpJetStreamInBackground(this.bus, this.log, () => !current());
    // the stored assignments in the machine before it leads, then a previous run's state cleared from the store;
    // their reads (and the ledger's) retried for timeouts.takeoverReadMs from when the liveness window lets them start
    await this.#loaded;
    if (!current()) return;
    const readsUntil = Math.max(this.clock.now(), this.#listeningSinceMs + this.#c.liveness.deadAfterMs) + this.#c.timeouts.takeoverReadMs;
    // the status (this replica's own view: the statuses it heard, the assignments it holds) once it has listened a
    // liveness window, not after the reads: they wait up to takeoverReadMs while the inventory's stream does not
    // answer, and a status not answered leaves its readers with the last one (a dead instance in it still ready)
    await this.clock.sleep(Math.max(0, this.#listeningSinceMs + this.#c.liveness.deadAfterMs - this.clock.now()));
    if (!current()) return;
    this.#ledgerPending = true;
    this.#leads.serve(this.bus.serve(subjects.clusterStatus(), StatusRequest, ClusterStatus, async () => this.#status(), { capacity: 64 }));
    await this.#reconcileInventory(readsUntil, current);
    if (!current()) return;
    await this.#continueLedger(readsUntil, current);
    if (!current()) return;
    this.#ledgerPending = false;
    this.#leads.arm(this.clock.setInterval(() => {
      this.#publishTelemetry();
      this.#storeLedger();
      this.#publishRoutes(true);
    }, TELEMETRY_MS));
    this.#leads.arm(this.clock.setInterval(() => this.#resendBehind(), Math.max(1000, this.#c.liveness.statusIntervalMs * 4)));
    this.#deciding = true;
    this.#step({ type: 'lead' });
  }

  #aheadTimer?: unknown;
  /** the assignments being stored and sent, in order. */
  #assigning: Promise<void> = Promise.resolve();

  /** Stores an assignment the machine issued (inventory KV) and tells the pool leader. */
  async #assign(a: PoolAssignmentT): Promise<void> {
    if (!this.#mayDecide({ pool: a.pool, epoch: a.epoch, assignment: 'not stored' })) return; // sent in order: the lead may be over by now
    try {
      const kv = await this.bus.kv(jetstream.inventoryBucket);
      await kv.put(inventoryKeys.pool(a.pool), PoolAssignment.encode(a));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, pool: a.pool }, 'assignment not stored');
    }
    if (!this.#mayDecide({ pool: a.pool, epoch: a.epoch, assignment: 'stored, not sent' })) return;
    try {
      await this.bus.request(subjects.poolControl(a.pool), PoolCommand, { v: 1, op: 'assign', assignment: a, reason: `cluster epoch ${a.epoch}` }, Ack, { timeoutMs: this.#c.timeouts.controlMs });
    } catch (err) {
      // no pool leader right now: it reads the assignment from the KV when elected
      this.log.info({ pool: a.pool, err: (err as Error).message }, 'pool leader not reachable; assignment left in KV');
    }
  }

  /** instance power/energy from InstanceTelemetry (modelled for emulated GPUs, measured on NVML/SMI; gpuStaleMs: an old reading's). */
  #tel = new Map<string, { powerW: number; energyJ: number; seenMs: number; gpuStaleMs?: number }>();
  /** the latest energy counter reading of each instance (what a takeover adds to the stored ledger). */
  #readings = new Map<string, Reading>();
  /**
   * cluster and pool energy, J (src/telemetry/energy-ledger.ts): since this manager started, or, once it led
   * after another leader, the stored ledger continued (then an instance it never saw is new: all its energy counts).
   */
  #book: EnergyBook = emptyBook();
  #bookContinued = false;
  #onTelemetry(t: InstanceTelemetry): void {
    const r = { id: t.id, pool: t.pool, energyJ: t.energyJ };
    addReading(this.#book, r, this.#bookContinued ? 'whole' : 'from_now');
    this.#readings.delete(t.id);
    this.#readings.set(t.id, r);
    if (this.#readings.size > 4096) this.#readings.delete(this.#readings.keys().next().value!);
    this.#tel.set(t.id, { powerW: t.powerW, energyJ: t.energyJ, seenMs: this.clock.now(), ...staleOf(t) });
    if (this.#tel.size > 4096) this.#tel.delete(this.#tel.keys().next().value!);
  }

  /** A node's GPUs that no instance holds: their energy counts in the cluster's (not a pool's), their power in its power. */
  #onNodeTelemetry(t: NodeTelemetry): void {
    const r = { id: nodeReadingId(t.node), energyJ: t.energyJ };
    addReading(this.#book, r, this.#bookContinued ? 'whole' : 'from_now');
    this.#readings.delete(r.id);
    this.#readings.set(r.id, r);
    this.#nodeTel.set(t.node, { powerW: t.powerW, seenMs: this.clock.now() });
  }
  #nodeTel = new Map<string, { powerW: number; seenMs: number }>();

  /** New leader: continue the ledger the previous leader stored with this replica's latest readings (while `current()`: its lead goes on). */
  async #continueLedger(untilMs: number, current: () => boolean): Promise<void> {
    let stored: EnergyLedger | undefined;
    try {
      const e = await readInventory(this.#reader, 'the energy ledger', (kv) => kv.get(inventoryKeys.energy()), untilMs);
      stored = e && e.value.length ? EnergyLedger.decode(e.value) : undefined;
    } catch (err) {
      stored = this.#ledgerSeen;
      this.log.warn({ err: (err as Error).message, seenFrom: stored?.leader }, 'energy ledger not readable: continuing the one its watch saw stored, else counting from what this manager saw');
    }
    if (!stored || !current()) return;
    this.#book = takeOver(bookFromRecord(stored), this.#book, this.#readings.values());
    this.#bookContinued = true;
    this.log.info({ energyJ: Math.round(this.#book.energyJ), from: stored.leader }, 'energy ledger continued');
  }

  /** Leader: store the ledger (every telemetry period) for a successor. */
  #storeLedger(): void {
    if (!this.#lease.isLeader()) return;
    const rec: EnergyLedger = { v: 1, ...bookToRecord(this.#book), leader: this.id, atMs: this.clock.now() };
    void this.bus.kv(jetstream.inventoryBucket).then((kv) => kv.put(inventoryKeys.energy(), EnergyLedger.encode(rec))).catch((err: unknown) => {
      this.log.debug({ err: (err as Error).message }, 'energy ledger not stored');
    });
  }

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
        const power = powerSum(p.instances);
        const pt: PoolTelemetryT = {
          v: 1, pool: p.id, types: p.types, gpus: p.gpus, instances: p.instances.length, readyInstances: rd,
          powerW: power.powerW, ...(power.stalePowerW > 0 ? { stalePowerW: power.stalePowerW } : {}), energyJ: this.#book.poolEnergyJ.get(p.id) ?? 0,
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
        powerW: st.powerW, ...(st.stalePowerW !== undefined ? { stalePowerW: st.stalePowerW } : {}), energyJ: st.energyJ, queued, running, loadByType: total, sentMs: now,
        ...(this.#m.power ? { servers: { ...powerCounts(this.#m.power), powerChanges: this.#power?.commands ?? 0 } } : {}),
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'telemetry not published');
    }
  }

  #status(): ClusterStatus {
    const now = this.clock.now();
    const alive = [...heardNow(this.#instances).values()].filter((x) => now - x.seenMs < this.#c.liveness.deadAfterMs && !outOfDispatch(x.st, this.#nodes, this.#ended)).map((x) => x.st);
    const pools = [...this.#m.assignments.values()].filter((a) => a.state === 'active').map((a) => ({
      id: a.pool, types: a.types, gpus: a.grants.reduce((n, g) => n + g.gpuIds.length, 0), leader: this.#pools.get(a.pool)?.st.leader,
      instances: alive.filter((s) => s.pool === a.pool).map((s) => ({ id: s.id, tp: s.tp, gpus: s.gpuIds, node: s.node, clockMhz: s.clockMhz, powerW: this.#tel.get(s.id)?.powerW ?? 0, energyJ: this.#tel.get(s.id)?.energyJ ?? 0, ...staleOf(this.#tel.get(s.id)), queued: s.queued, running: s.running, state: s.state })),
    }));
    const freeGpus = [...this.#nodes.values()].reduce((n, x) => n + x.st.free.length, 0);
    // cluster power: the live instances' last telemetry (its stale part said apart) and the nodes' GPUs no instance holds
    const heard = (x: { seenMs: number }) => now - x.seenMs < Math.max(3000, this.#c.liveness.deadAfterMs);
    const { powerW, stalePowerW } = powerSum([...this.#tel.values(), ...this.#nodeTel.values()].filter(heard));
    // a new leader before its read of the stored ledger: the one its watch last saw stored, continued
    const seen = this.#ledgerPending ? this.#ledgerSeen : undefined;
    const energyJ = seen ? takeOver(bookFromRecord(seen), this.#book, this.#readings.values()).energyJ : this.#book.energyJ;
    return { v: 1, leader: this.id, atMs: now, ...(this.#c.nats.insecure ? { warnings: [INSECURE_NATS_WARNING] } : {}), pools, freeGpus, powerW, ...(stalePowerW > 0 ? { stalePowerW } : {}), energyJ };
  }

  protected override async onStop(): Promise<void> {
    this.#stopped = true;
    this.#link?.stop();
    for (const w of this.#watches) w.stop();
    for (const t of this.#timers) this.clock.clearInterval(t);
    this.#records?.stop();
    this.#leads?.end();
    this.#instances?.latest.unsubscribe();
    await this.#lease?.stop().catch(() => {});
  }
}

/** `dynamollm actor cluster` (src/cli/actor-registry.ts). */
export function createActor(o: ActorFactoryOptions): ClusterManager {
  const config = parseConfig(o.config ?? {});
  const profile = requireProfileCovers(config, [config.engine.initialTp]);
  return new ClusterManager({ kind: 'cluster', id: o.id, nats: o.nats, log: o.log, heartbeatMs: config.liveness.statusIntervalMs, natsPingMs: busPingMs(config.liveness.deadAfterMs), jetstreamReplicas: config.nats.jetstreamReplicas }, config, profile);
}
