/**
 * One pool's manager. Every replica tracks the pool's instances from their InstanceStatus (so a standby
 * has a warm view); the lease holder (leaseKeys.poolLeader) also:
 * - dispatches requests (subjects.poolDispatch) to the instance the policy (chooseInstance) picks, falling
 *   back to the next best on refusal, and remembers which instance holds each request until its record;
 * - places moved requests (subjects.poolMove, emergency step 3) on peers;
 * - notices dead instances (no status for deadAfterMs): removes them from dispatch, re-dispatches their
 *   not-yet-started requests to peers and ends their started streams with a retryable error;
 * - applies its assignment (PoolCommand / inventory KV): starts instances on granted GPUs through the node
 *   agents, stops instances on GPUs no longer granted;
 * - runs the re-shard epoch (policy planSharding) and executes it staggered.
 */
import type { Logger } from 'pino';
import {
  Ack, Admission, InferenceRequest, InstanceStatus, MoveReply, MoveRequest, NodeCommand, PoolAssignment, PoolCommand, PoolStatus,
  RequestRecord, TokenChunk, controlSubjects, inventoryKeys, jetstream, leaseKeys, subjects, DynError, toWireError,
  type InstanceStatus as InstanceStatusT, type PoolAssignment as PoolAssignmentT, type RequestType, type WireError,
} from '../../protocols/index.ts';
import type { Bus, ServeHandle, SubscribeHandle } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { ClusterConfig } from '../common/config.ts';
import { eventPublisher, type EventPublisher } from '../common/events.ts';
import { pickInstance, planPoolShards, planPoolShardsMilp, reshardSteps, type InstanceViewLike } from '../common/policy.ts';
import type { InstanceConfig } from '../../src/policy/types.ts';

interface Tracked {
  status: InstanceStatusT;
  lastSeenMs: number;
  alive: boolean;
}

interface Outstanding {
  req: InferenceRequest;
  instance: string;
  atMs: number;
}

export interface PoolLeaderOptions {
  pool: string;
  types: RequestType[];
  /** unique id of this replica (process). */
  holder: string;
  bus: Bus;
  config: ClusterConfig;
  log: Logger;
  profile?: Profile;
  /** time and timers; default the system clock. */
  clock?: Clock;
}

export class PoolLeader {
  readonly pool: string;
  #o: PoolLeaderOptions;
  #bus: Bus;
  #log: Logger;
  #evt: EventPublisher;
  #lease: LeaderLease;
  #instances = new Map<string, Tracked>();
  #outstanding = new Map<string, Outstanding>();
  #leaderHandles: (ServeHandle | SubscribeHandle)[] = [];
  #handles: SubscribeHandle[] = [];
  #timers: unknown[] = [];
  #clock: Clock;
  #assignment?: PoolAssignmentT;
  #types: RequestType[];
  /** instances we asked a node to start and when (not yet reporting). */
  #starting = new Map<string, number>();
  #reconciling = false;
  #resharding = false;

  constructor(o: PoolLeaderOptions) {
    this.#o = o;
    this.pool = o.pool;
    this.#types = o.types;
    this.#bus = o.bus;
    this.#clock = o.clock ?? systemClock;
    this.#log = o.log.child({ pool: o.pool });
    this.#evt = eventPublisher(o.bus, o.pool, this.#log, this.#clock);
    this.#lease = new LeaderLease({
      bus: o.bus,
      key: leaseKeys.poolLeader(o.pool),
      holder: o.holder,
      ttlMs: o.config.liveness.leaseTtlMs,
      renewMs: Math.max(100, Math.floor(o.config.liveness.leaseTtlMs / 3)),
      log: this.#log,
    });
  }

  isLeader(): boolean {
    return this.#lease.isLeader();
  }
  get assignment(): PoolAssignmentT | undefined {
    return this.#assignment;
  }
  aliveInstances(): InstanceStatusT[] {
    return [...this.#instances.values()].filter((t) => t.alive).map((t) => t.status);
  }

  async start(): Promise<void> {
    const c = this.#o.config;
    this.#handles.push(
      this.#bus.subscribe(controlSubjects.instanceStatusPool(this.pool), InstanceStatus, (s) => this.#onStatus(s), { capacity: 4096, expectSubject: (s) => controlSubjects.instanceStatus(s.pool, s.id) }),
      this.#bus.subscribe(subjects.telRequest(this.pool), RequestRecord, (r) => {
        const o = this.#outstanding.get(r.id);
        if (o && (!r.instance || r.instance === o.instance)) this.#outstanding.delete(r.id);
      }, { capacity: 8192 }),
    );
    this.#timers.push(this.#clock.setInterval(() => this.#sweep(), Math.max(50, Math.floor(c.liveness.deadAfterMs / 4))));
    this.#lease.on('elected', () => void this.#becomeLeader());
    this.#lease.on('lost', () => this.#stepDown());
    await this.#lease.start();
  }

  async #becomeLeader(): Promise<void> {
    const c = this.#o.config;
    this.#evt('lease', `${this.#o.holder} leads ${this.pool}`, { leader: this.#o.holder, term: this.#lease.term() }, { pool: this.pool });
    const opts = { capacity: 4096, concurrency: 256 };
    this.#leaderHandles.push(
      this.#bus.serve(subjects.poolDispatch(this.pool), InferenceRequest, Admission, (r) => this.#dispatch(r), opts),
      this.#bus.serve(subjects.poolMove(this.pool), MoveRequest, MoveReply, (m) => this.#move(m), { capacity: 256, concurrency: 16 }),
      this.#bus.serve(subjects.poolControl(this.pool), PoolCommand, Ack, (cmd) => this.#command(cmd), { capacity: 64 }),
    );
    // pick up the assignment the cluster leader left in the inventory KV (failover of this leader)
    try {
      const kv = await this.#bus.kv(jetstream.inventoryBucket);
      const e = await kv.get(inventoryKeys.pool(this.pool));
      if (e && e.value.length) {
        const a = PoolAssignment.decode(e.value);
        if (!this.#assignment || a.epoch > this.#assignment.epoch) this.#assignment = a;
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not read the pool assignment');
    }
    this.#timers.push(this.#clock.setInterval(() => void this.#reconcile(), Math.max(500, c.liveness.statusIntervalMs * 4)));
    this.#timers.push(this.#clock.setInterval(() => void this.#reshardEpoch(), c.epochs.poolS * 1000));
    this.#timers.push(this.#clock.setInterval(() => this.#publishPoolStatus(), Math.max(250, c.liveness.statusIntervalMs * 2)));
    void this.#reconcile();
  }

  #stepDown(): void {
    this.#evt('lease', `${this.#o.holder} lost the lead of ${this.pool}`, { leader: null }, { pool: this.pool });
    for (const h of this.#leaderHandles) h.unsubscribe();
    this.#leaderHandles = [];
    // keep only the liveness sweep (timers[0]); leader loops stop
    for (const t of this.#timers.splice(1)) this.#clock.clearInterval(t);
  }

  // ------------------------------------------------------------------ instance tracking

  #onStatus(s: InstanceStatusT): void {
    const t = this.#instances.get(s.id);
    const now = this.#clock.now();
    if (t && s.seq < t.status.seq && s.startedMs === t.status.startedMs) return; // out of order
    if (s.state === 'stopped') {
      this.#instances.delete(s.id);
      return;
    }
    this.#starting.delete(s.id);
    if (!t || !t.alive) {
      this.#instances.set(s.id, { status: s, lastSeenMs: now, alive: true });
      if (t && !t.alive) this.#evt('instance', `${s.id} is back (${s.state})`, { instance: s.id, alive: true }, { startedMs: s.startedMs });
      return;
    }
    if (s.startedMs !== t.status.startedMs) {
      // a new process under the same id: whatever the old one held is gone
      this.#instanceDied(s.id, 'restarted', t.status);
    }
    t.status = s;
    t.lastSeenMs = now;
  }

  #sweep(): void {
    const now = this.#clock.now();
    const dead = this.#o.config.liveness.deadAfterMs;
    for (const [id, t] of this.#instances) {
      if (t.alive && now - t.lastSeenMs > dead) {
        t.alive = false;
        this.#instanceDied(id, `no status for ${now - t.lastSeenMs} ms`, t.status);
      } else if (!t.alive && now - t.lastSeenMs > 60_000) this.#instances.delete(id);
    }
    // forget outstanding entries long past their deadline (their record was lost)
    for (const [id, o] of this.#outstanding) if (now > o.req.giveUpAtMs + 60_000) this.#outstanding.delete(id);
  }

  /**
   * An instance died (or restarted): its queued requests go to peers, its started streams end with a
   * retryable error. Only the leader acts; a standby just marks it.
   */
  #instanceDied(id: string, why: string, last: InstanceStatusT): void {
    if (!this.isLeader()) return;
    const queued = new Set(last.queuedIds);
    const seqs = new Map(last.runningIds.map((r, i) => [r, last.runningSeqs?.[i] ?? 0]));
    const mine = [...this.#outstanding.values()].filter((o) => o.instance === id);
    const redispatch: InferenceRequest[] = [];
    const failed: string[] = [];
    for (const o of mine) {
      this.#outstanding.delete(o.req.id);
      if (queued.has(o.req.id)) redispatch.push({ ...o.req, moves: (o.req.moves ?? 0) + 1 });
      else {
        failed.push(o.req.id);
        const err: WireError = { code: 'unavailable', message: `instance ${id} died (${why}) while serving the request`, retryable: true, retryAfterS: this.#o.config.emergency.retryAfterS };
        // seq: one past what the instance last reported, so the gateway sees it after the tokens it got
        this.#bus.publish(o.req.streamSubject, TokenChunk, {
          v: 1, id: o.req.id, seq: Math.max(seqs.get(o.req.id) ?? 0, 0), text: '', tokens: 0, done: true, finishReason: 'error', error: err, instance: id, pool: this.pool,
        });
      }
    }
    this.#evt('failure', `${id} dead (${why}): removed from dispatch, ${redispatch.length} queued re-dispatched, ${failed.length} streams ended`, {
      instance: id, redispatched: redispatch.map((r) => r.id), failed,
    }, { lastStatus: { state: last.state, queued: last.queued, running: last.running, sentMs: last.sentMs } });
    for (const r of redispatch) {
      void this.#dispatch(r, new Set([id])).then((a) => {
        if (!a.ok) this.#failStream(r, a.error ?? { code: 'unavailable', message: 'no instance could take the request', retryable: true });
      });
    }
  }

  #failStream(r: InferenceRequest, error: WireError): void {
    this.#bus.publish(r.streamSubject, TokenChunk, { v: 1, id: r.id, seq: 0, text: '', tokens: 0, done: true, finishReason: 'error', error, pool: this.pool });
  }

  #views(exclude?: Set<string>): InstanceViewLike[] {
    const out: InstanceViewLike[] = [];
    for (const t of this.#instances.values()) {
      const s = t.status;
      if (!t.alive || s.state !== 'ready' || exclude?.has(s.id)) continue;
      // load: the status's own object, not a copy: dispatch remembers an instance's score on it until the
      // next status replaces it (src/policy/dispatch.ts memoScoreOf), so a burst between two statuses costs
      // one scoring per instance, not one per request
      out.push({ id: s.id, tp: s.tp, clockMhz: s.clockMhz, healthy: true, load: s.loadByType, queued: s.queued, running: s.running, ...(s.pendingPrefillTokens !== undefined ? { pendingPrefillTokens: s.pendingPrefillTokens } : {}) });
    }
    return out;
  }

  // ------------------------------------------------------------------ dispatch

  async #dispatch(req: InferenceRequest, exclude = new Set<string>()): Promise<Admission> {
    const c = this.#o.config;
    const tried = new Set(exclude);
    let lastErr: WireError | undefined;
    for (let attempt = 0; attempt < 4; attempt++) {
      let views = this.#views(tried);
      if (!views.length && !exclude.size && (this.#resharding || this.#starting.size > 0)) {
        // a re-shard stopped the old instances first (or capacity is starting): hold the request until one
        // is ready, bounded by its deadline and the engine health deadline
        const until = Math.min(req.giveUpAtMs - 1000, this.#clock.now() + c.engine.healthDeadlineMs);
        await this.#waitFor(() => this.#views(tried).length > 0 || this.#clock.now() > until || (!this.#resharding && this.#starting.size === 0), until - this.#clock.now());
        views = this.#views(tried);
      }
      if (!views.length) break;
      const choice = pickInstance(req, views, this.#o.profile, this.#types, this.#o.config.policy.headroom).id;
      tried.add(choice);
      // count it at once in the local view so a burst spreads before the next status arrives
      const tracked = this.#instances.get(choice);
      if (tracked) tracked.status = { ...tracked.status, queued: tracked.status.queued + 1, ...(tracked.status.pendingPrefillTokens !== undefined ? { pendingPrefillTokens: tracked.status.pendingPrefillTokens + req.inputTokens } : {}) };
      try {
        const a = await this.#bus.request(subjects.instanceAdmit(choice), InferenceRequest, { ...req, pool: this.pool }, Admission, {
          timeoutMs: c.timeouts.dispatchMs,
        });
        if (a.ok) {
          this.#outstanding.set(req.id, { req: { ...req, pool: this.pool }, instance: choice, atMs: this.#clock.now() });
          return { ...a, pool: this.pool };
        }
        lastErr = a.error;
        if (a.error && !a.error.retryable) return { ...a, pool: this.pool };
      } catch (err) {
        lastErr = toWireError(err);
        if ((err as DynError).code === 'timeout') {
          // an admit that timed out may have been taken: do not risk a duplicate stream
          return { v: 1, id: req.id, ok: false, pool: this.pool, error: { ...lastErr, retryable: true } };
        }
      }
    }
    return {
      v: 1, id: req.id, ok: false, pool: this.pool,
      error: lastErr ?? { code: 'overloaded', message: `pool ${this.pool} has no ready instance`, retryable: true, retryAfterS: c.emergency.retryAfterS },
    };
  }

  async #move(m: MoveRequest): Promise<MoveReply> {
    const placed: MoveReply['placed'] = [];
    const refused: MoveReply['refused'] = [];
    const limit = this.#o.config.emergency.moveQueueAbove;
    for (const r of m.requests) {
      const exclude = new Set([m.from]);
      // only peers with room: moving onto another overloaded instance helps nobody
      for (const t of this.#instances.values()) if (t.status.queued >= limit) exclude.add(t.status.id);
      const a = await this.#dispatch(r, exclude);
      if (a.ok && a.instance) placed.push({ id: r.id, instance: a.instance });
      else refused.push({ id: r.id, error: a.error ?? { code: 'overloaded', message: 'no peer with room', retryable: true } });
    }
    return { v: 1, placed, refused };
  }

  // ------------------------------------------------------------------ assignment and reconciliation

  async #command(cmd: PoolCommand): Promise<Ack> {
    if (cmd.op === 'assign') {
      const a = cmd.assignment;
      if (!a || a.pool !== this.pool) throw new DynError('invalid_request', `assignment for ${a?.pool ?? '(none)'} sent to ${this.pool}`, { retryable: false });
      if (this.#assignment && a.epoch < this.#assignment.epoch) return { v: 1, ok: true, detail: { ignored: 'stale epoch' } };
      this.#assignment = a;
      this.#types = a.types;
      void this.#reconcile();
      return { v: 1, ok: true, detail: { epoch: a.epoch } };
    }
    void this.#reshardEpoch(true);
    return { v: 1, ok: true };
  }

  /** Instances this pool should run on its grants: the current layout where it fits, else the planned TP. */
  async #reconcile(): Promise<void> {
    const a = this.#assignment;
    if (!a || !this.isLeader() || this.#reconciling || this.#resharding) return;
    this.#reconciling = true;
    try {
      const c = this.#o.config;
      const granted = new Map(a.grants.map((g) => [g.node, new Set(g.gpuIds)]));
      const live = [...this.#instances.values()].filter((t) => t.alive).map((t) => t.status);
      // stop instances on GPUs no longer granted (scale-in, merge)
      for (const s of live) {
        const g = s.node ? granted.get(s.node) : undefined;
        if (a.state === 'retired' || !g || !s.gpuIds.every((x) => g.has(x))) {
          if (s.state === 'draining') continue;
          await this.#nodeCmd(s.node, { v: 1, op: 'stop_instance', instanceId: s.id, graceMs: 30_000, reason: `GPUs of ${s.id} no longer granted to ${this.pool}` });
          this.#evt('scale', `${this.pool}: stop ${s.id} (GPUs returned)`, { stop: s.id }, { epoch: a.epoch });
        }
      }
      if (a.state === 'retired') return;
      // start instances on granted GPUs nobody uses (after a re-shard: only what the target misses)
      const missing = new Map<number, number>();
      if (this.#target) {
        for (const t of this.#target) missing.set(t.tp, t.count);
        for (const s of live) missing.set(s.tp, (missing.get(s.tp) ?? 0) - 1);
        for (const id of this.#starting.keys()) { const m = /x(\d+)$/.exec(id); if (m) missing.set(Number(m[1]), (missing.get(Number(m[1])) ?? 0) - 1); }
      }
      for (const g of a.grants) {
        let tp = this.#target ? [...missing].filter(([, n]) => n > 0).map(([t]) => t).sort((x, y) => y - x)[0] ?? 0 : this.#plannedTp();
        if (!tp) break;
        while (tp > 1 && tp > g.gpuIds.length) tp /= 2;
        const used = new Set<number>();
        for (const s of live) if (s.node === g.node) for (const x of s.gpuIds) used.add(x);
        for (const [id, at] of this.#starting) {
          if (this.#clock.now() - at > c.engine.healthDeadlineMs + 10_000) this.#starting.delete(id);
          const m = /-g(\d+)x(\d+)$/.exec(id);
          if (m && id.includes(`-${g.node}-`)) for (let i = 0; i < Number(m[2]); i++) used.add(Number(m[1]) + i);
        }
        const free = g.gpuIds.filter((x) => !used.has(x)).sort((x, y) => x - y);
        for (const group of chunk(free, tp)) {
          if (this.#target) {
            if ((missing.get(tp) ?? 0) <= 0) break;
            missing.set(tp, missing.get(tp)! - 1);
          }
          const instanceId = `${this.pool}-${g.node}-g${group[0]}x${group.length}`;
          if (this.#starting.has(instanceId)) continue;
          const ok = await this.#nodeCmd(g.node, {
            v: 1, op: 'start_instance', instanceId, pool: this.pool, tp: group.length as 1 | 2 | 4 | 8, gpuIds: group, reason: `fill granted GPUs of ${this.pool}`,
          });
          if (ok) {
            this.#starting.set(instanceId, this.#clock.now());
            this.#evt('scale', `${this.pool}: start ${instanceId} (TP${group.length})`, { start: instanceId, node: g.node, gpuIds: group, tp: group.length }, { epoch: a.epoch });
          }
        }
      }
    } finally {
      this.#reconciling = false;
    }
  }

  /** the layout of the last re-shard (undefined: fill the grants with engine.initialTp instances). */
  #target?: InstanceConfig[];
  #plannedTp(): number {
    return this.#o.config.engine.initialTp;
  }

  async #nodeCmd(node: string | undefined, cmd: NodeCommand): Promise<boolean> {
    if (!node) return false;
    try {
      await this.#bus.request(subjects.nodeControl(node), NodeCommand, cmd, Ack, { timeoutMs: this.#o.config.timeouts.controlMs });
      return true;
    } catch (err) {
      this.#log.warn({ node, op: cmd.op, instance: cmd.instanceId, err: (err as Error).message }, 'node command failed');
      return false;
    }
  }

  // ------------------------------------------------------------------ re-shard epoch

  /** Measured pool load (req/s by type) = sum of its instances' loads. */
  load(): Partial<Record<RequestType, number>> {
    const out: Partial<Record<RequestType, number>> = {};
    for (const s of this.aliveInstances()) for (const [t, v] of Object.entries(s.loadByType) as [RequestType, number][]) out[t] = (out[t] ?? 0) + v;
    return out;
  }

  /** a MILP solve of the re-shard epoch is under way (at most one). */
  #planning = false;

  async #reshardEpoch(force = false): Promise<void> {
    if (!this.isLeader() || this.#resharding || this.#reconciling || !this.#assignment || !this.#o.profile || this.#starting.size) return;
    const live = this.aliveInstances();
    if (!live.length || live.some((s) => s.state !== 'ready')) return; // a change in progress: next epoch
    const gpus = this.#assignment.grants.reduce((n, g) => n + g.gpuIds.length, 0);
    const load = this.load();
    const input = { profile: this.#o.profile, load, gpus, current: live.map((s) => s.tp), epochS: this.#o.config.epochs.poolS, gpusPerServer: this.#gps(), headroom: this.#o.config.policy.headroom };
    const c = this.#o.config;
    if (this.#planning) return;
    this.#planning = true;
    let plan;
    try {
      plan = c.planner === 'milp' ? await planPoolShardsMilp(input, c.milpDeadlineMs) : planPoolShards(input);
    } finally {
      this.#planning = false;
    }
    if (!this.isLeader() || this.#resharding) return;
    if (!plan) return;
    const take = plan.take && !this.#resharding;
    {
      this.#evt('reshard', `${this.pool}: ${take ? 'take' : 'keep'} ${plan.summary}`, { take, target: plan.target, force }, { ...plan.inputs, instances: live.map((s) => ({ id: s.id, tp: s.tp, node: s.node, gpuIds: s.gpuIds })) });
    }
    if (!take) return;
    await this.#executeReshard(plan.target);
  }

  /** GPUs per server for the global GPU numbering of the matching (largest granted index + 1). */
  #gps(): number {
    let m = 1;
    for (const g of this.#assignment?.grants ?? []) for (const x of g.gpuIds) m = Math.max(m, x + 1);
    return m;
  }

  #waitFor(pred: () => boolean, ms: number): Promise<boolean> {
    const until = this.#clock.now() + ms;
    return new Promise((res) => {
      const t = this.#clock.setInterval(() => {
        if (pred()) { this.#clock.clearInterval(t); res(true); } else if (this.#clock.now() > until || !this.isLeader()) { this.#clock.clearInterval(t); res(false); }
      }, 100);
    });
  }

  /** Drain instances (no new requests; they finish what they hold), wait until empty, stop them, wait until gone. */
  async #retire(ids: string[], why: string): Promise<void> {
    const c = this.#o.config;
    const { InstanceCommand } = await import('../../protocols/index.ts');
    await Promise.all(ids.map((id) => this.#bus.request(subjects.instanceControl(id), InstanceCommand, { v: 1, op: 'drain', reason: why }, Ack, { timeoutMs: c.timeouts.controlMs }).catch(() => undefined)));
    await this.#waitFor(() => ids.every((id) => { const t = this.#instances.get(id); return !t?.alive || (t.status.queued === 0 && t.status.running === 0); }), 60_000);
    for (const id of ids) {
      const t = this.#instances.get(id);
      await this.#nodeCmd(t?.status.node, { v: 1, op: 'stop_instance', instanceId: id, graceMs: 10_000, reason: why });
    }
    await this.#waitFor(() => ids.every((id) => !this.#instances.get(id)?.alive), 20_000);
  }

  /** Start one instance on (node, GPUs) and wait until it reports ready. */
  async #startOn(node: string, gpuIds: number[], why: string): Promise<string | undefined> {
    const tp = gpuIds.length as 1 | 2 | 4 | 8;
    const instanceId = `${this.pool}-${node}-g${gpuIds[0]}x${tp}`;
    // the node frees GPUs only once the old instance manager exited (clocks reset): retry while busy
    let ok = false;
    const until = this.#clock.now() + 30_000;
    while (!ok && this.#clock.now() < until && this.isLeader()) {
      ok = await this.#nodeCmd(node, { v: 1, op: 'start_instance', instanceId, pool: this.pool, tp, gpuIds, reason: why });
      if (!ok) await this.#clock.sleep(250);
    }
    if (!ok) return undefined;
    this.#starting.set(instanceId, this.#clock.now());
    await this.#waitFor(() => this.#instances.get(instanceId)?.alive === true && this.#instances.get(instanceId)!.status.state === 'ready', this.#o.config.engine.healthDeadlineMs);
    return instanceId;
  }

  /**
   * Staggered re-shard (policy staggerSteps over matchReshard: the placement that keeps the most weights in
   * place), one unit at a time, capacity added before it is removed. A unit whose GPUs are free (memory
   * allows) starts the new instance first and retires the old ones once it is ready; otherwise the old ones
   * drain first (the pool dispatches to the others, or holds requests while nothing is ready), then the new
   * one starts on their GPUs.
   */
  async #executeReshard(target: InstanceConfig[]): Promise<void> {
    const a = this.#assignment!;
    this.#resharding = true;
    const gps = this.#gps();
    const nodeIdx = new Map(a.grants.map((g, k) => [g.node, k]));
    const toGlobal = (node: string | undefined, gpu: number) => (nodeIdx.get(node ?? '') ?? 0) * gps + gpu;
    const granted = new Set(a.grants.flatMap((g, k) => g.gpuIds.map((x) => k * gps + x)));
    const t0 = this.#clock.now();
    try {
      const current = this.aliveInstances().map((s) => ({ id: s.id, tp: s.tp, gpus: s.gpuIds.map((x) => toGlobal(s.node, x)) }));
      const steps = reshardSteps(current, target, gps);
      const units = steps.flat();
      if (units.some((u) => u.gpus.some((g) => !granted.has(g)))) {
        this.#evt('reshard', `${this.pool}: re-shard placement leaves the granted GPUs; not executed`, { target, units }, { grants: a.grants });
        return;
      }
      this.#evt('reshard', `${this.pool}: executing ${units.length} staggered unit(s)`, { units: units.map((u) => ({ kind: u.kind, tp: u.tp, gpus: u.gpus, from: u.from })) }, { current, target, gpusPerServer: gps });
      for (const u of units) {
        if (!this.isLeader()) return;
        const node = a.grants[Math.floor(u.gpus[0]! / gps)]!.node;
        const local = u.gpus.map((g) => g % gps);
        const busy = new Set(this.aliveInstances().filter((s) => !u.from.includes(s.id)).flatMap((s) => s.gpuIds.map((x) => toGlobal(s.node, x))));
        const fromGpus = new Set(current.filter((c) => u.from.includes(c.id)).flatMap((c) => c.gpus));
        if (u.kind === 'stop') {
          await this.#retire(u.from, 're-shard: stop');
        } else if (!u.gpus.some((g) => fromGpus.has(g) || busy.has(g))) {
          // memory allows: the new instance first, the old ones serve until it is ready
          const id = await this.#startOn(node, local, 're-shard: start');
          if (u.from.length) await this.#retire(u.from, `re-shard: replaced by ${id}`);
        } else {
          await this.#retire(u.from, 're-shard: stop first (GPUs reused)');
          await this.#startOn(node, local, 're-shard: start on freed GPUs');
        }
        this.#evt('reshard', `${this.pool}: unit ${u.kind} TP${u.tp} on ${node} [${local.join(',')}] done`, { kind: u.kind, tp: u.tp, node, gpuIds: local, from: u.from }, {});
      }
      this.#target = target;
      this.#evt('reshard', `${this.pool}: re-shard complete in ${this.#clock.now() - t0} ms`, { complete: true, target, instances: this.aliveInstances().map((s) => ({ id: s.id, tp: s.tp })) }, {});
    } finally {
      this.#resharding = false;
    }
  }

  #publishPoolStatus(): void {
    if (!this.isLeader()) return;
    const st = {
      v: 1 as const, pool: this.pool, leader: this.#o.holder, types: this.#types, loadByType: this.load(),
      instances: this.aliveInstances().map((s) => ({ id: s.id, tp: s.tp, node: s.node, gpuIds: s.gpuIds, state: s.state, clockMhz: s.clockMhz, queued: s.queued, running: s.running })),
      gpus: this.#assignment?.grants.reduce((n, g) => n + g.gpuIds.length, 0) ?? 0, epoch: this.#assignment?.epoch ?? 0, sentMs: this.#clock.now(),
    };
    try {
      this.#bus.publish(controlSubjects.poolStatus(this.pool), PoolStatus, st);
    } catch {
      /* closing */
    }
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) this.#clock.clearInterval(t);
    this.#timers = [];
    for (const h of [...this.#leaderHandles, ...this.#handles]) h.unsubscribe();
    await this.#lease.stop().catch(() => {});
  }
}

function chunk(xs: number[], n: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i + n <= xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}
