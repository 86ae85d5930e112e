/**
 * One pool's manager: the shell of the pool machine (src/policy/machines/pool.ts poolStep), which holds
 * every decision (dispatch, moves, the death of an instance, reconciliation, the re-shard epoch and its
 * steps). This shell only turns NATS messages, the lease and timers into the machine's events, and
 * performs its effects: the admit, node and instance requests (each with its deadline), the error chunks,
 * the MILP solve, decision events and timers.
 *
 * Every replica tracks the pool's instances from their InstanceStatus (a standby has a warm view: the latest status of
 * each stepped before its sweep, its lead and a read of its view, ./statuses.ts), and receives request records only
 * while one can change its machine (../common/record-intake.ts); the lease holder (leaseKeys.poolLeader) also serves dispatch
 * (subjects.poolDispatch), moves (subjects.poolMove) and commands (subjects.poolControl), publishes the pool's status,
 * and keeps its list of dispatched requests in the KV (jetstream.dispatchedBucket) for its successor.
 */
import { suspectAfterMsOf } from '../../src/policy/suspect.ts';
import type { Logger } from 'pino';
import type { KV } from '@nats-io/kv';
import {
  Ack, Admission, DispatchedEntry, ReshardRecord, InferenceRequest, InstanceCommand, MoveReply, MoveRequest, NodeCommand, PoolAssignment, PoolCommand, PoolStatus,
  TokenChunk, ClientDisconnect, endedConnection, controlSubjects, dispatchedKeys, DISPATCHED_TTL_MS, inventoryKeys, jetstream, leaseKeys, subjects, DynError, toWireError,
  type DispatchView as DispatchViewT, type InstanceStatus as InstanceStatusT, type PoolAssignment as PoolAssignmentT, type RequestRecord, type RequestType, type WireError,
} from '../../protocols/index.ts';
import type { Bus, ServeContext, ServeHandle, SubscribeHandle } from '../../src/runtime/bus.ts';
import { PoolStatuses } from './statuses.ts';
import { RecordIntake } from '../common/record-intake.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { systemClock, within, type Clock } from '../../src/runtime/clock.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import type { ClusterConfig } from '../common/config.ts';
import { eventPublisher, type EventPublisher } from '../common/events.ts';
import { milpPlanner } from '../common/policy.ts';
import { poolBurstWindowMs } from '../../src/policy/pool-shards.ts';
import {
  aliveInstances, initialPoolState, poolDispatchView, poolRecordsWanted, poolLinkProofGapMs, poolLoad, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState, type StoredReshard,
} from '../../src/policy/machines/pool.ts';
import { heldNow, type HoldOutcome } from '../../src/policy/machines/router.ts';
import { initialPoolStandby, poolStandbyStep, type PoolStandbyState } from '../../src/policy/machines/pool-standby.ts';
import { getModelSpec } from '../../src/model/catalog.ts';
import { gatewaySchema } from '../gateway/config.ts';
import { timerStallMs } from '../../src/policy/timer-stall.ts';

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
  #clock: Clock;
  #m: PoolMachineState;
  #mc: PoolMachineConfig;
  #leaderHandles: (ServeHandle | SubscribeHandle)[] = [];
  #handles: SubscribeHandle[] = [];
  #sweepTimer: unknown;
  /** the leader's timers by name: arming one again replaces it (the re-shard epoch re-phased at the pool's first traffic). */
  #leaderTimers = new Map<string, unknown>();
  #timersStopped = false;
  /** requests this replica held while it led (`held`), and how their dispatch ended (the pool manager's metrics read them). */
  readonly holds: Record<'held' | HoldOutcome, number> = { held: 0, dispatched: 0, refused: 0, timed_out: 0 };
  /**
   * Dispatch handlers waiting for a request's answer, by request id. A hold frees their places among the
   * DISPATCH_HANDLERS (ServeContext.release): the answer goes out when the machine gives it, and the requests
   * held are bounded by the machine (MAX_HELD per pool, each until its hold ends), so holds never starve dispatch.
   */
  #dispatchSlots = new Map<string, (() => void)[]>();
  /** callers waiting for the machine's answer (dispatch, move, command), by ref. */
  #waiting = new Map<number, (e: PoolEffect) => void>();
  #ref = 0;
  /** the lease's 'elected' and 'lost' so far: a lead's takeover and late reads (#becomeLeader, #readLate) end with it. */
  #leads = 0;
  /** the instances' statuses, stepped as they come while the machine leads, else kept until read (./statuses.ts); the records, only while wanted. */
  #statuses: PoolStatuses;
  #records: RecordIntake;
  /** the sleep-mode standby's state while this replica leads (scaling.sleepStandby). */
  #standby?: PoolStandbyState;

  constructor(o: PoolLeaderOptions) {
    this.#o = o;
    this.pool = o.pool;
    this.#bus = o.bus;
    this.#clock = o.clock ?? systemClock;
    this.#log = o.log.child({ pool: o.pool });
    this.#evt = eventPublisher(o.bus, o.pool, this.#log, this.#clock);
    const c = o.config;
    this.#mc = {
      pool: o.pool, holder: o.holder, ...(o.profile ? { profile: o.profile } : {}), headroom: c.policy.headroom, deadAfterMs: c.liveness.deadAfterMs, suspectAfterMs: suspectAfterMsOf(c.liveness),
      statusIntervalMs: c.liveness.statusIntervalMs, epochMs: c.epochs.poolS * 1000, healthDeadlineMs: c.engine.healthDeadlineMs, initialTp: c.engine.initialTp,
      // the epoch's arrival rate per modelled s, as the instances' loads (instance-manager machine-io's timeScale)
      timeScale: c.engine.kind === 'emulator' ? c.engine.timeScale : 1,
      moveQueueAbove: c.emergency.moveQueueAbove, retryAfterS: c.emergency.retryAfterS, planner: c.planner === 'milp' ? 'milp' : 'heuristic',
      // the burst guard's window: the last three re-shard epochs (policy poolBurstWindowMs, as the simulator's pools)
      burstWindowMs: poolBurstWindowMs(c.epochs.poolS * 1000),
      ...(c.nats.ownStore ? { ownStore: true } : {}),
      // a dispatch's admission is answered once its entry is in the dispatched list (a successor reads it)
      storeBeforeReply: true,
      // a death verdict needs the link proven (the lease's round trips, below) within this long: a cut not noticed yet is no instance's death
      linkProofGapMs: poolLinkProofGapMs(c.liveness.deadAfterMs),
      // a request held while no instance is ready waits as long as its gateway waits for it (from its arrival)
      holdLimitMs: gatewaySchema.shape.holdLimitMs.safeParse((c.gateway as { holdLimitMs?: unknown } | undefined)?.holdLimitMs).data,
    };
    this.#m = initialPoolState(o.types);
    this.#statuses = new PoolStatuses(o.bus, o.pool, this.#clock, (status, atMs) => this.#step({ type: 'status', status }, atMs));
    const onRecord = (r: RequestRecord) => this.#m.outstanding.has(r.id) && this.#step({ type: 'record', id: r.id, ...(r.instance ? { instance: r.instance } : {}) });
    this.#records = new RecordIntake(o.bus, { subject: subjects.telRequest(o.pool), wanted: () => poolRecordsWanted(this.#m), onRecord });
    this.#lease = new LeaderLease({
      bus: o.bus,
      key: leaseKeys.poolLeader(o.pool),
      holder: o.holder,
      ttlMs: c.liveness.leaseTtlMs,
      // its round trips prove the link to the machine ('link_proven'): at least three within deadAfterMs
      renewMs: Math.max(100, Math.floor(Math.min(c.liveness.leaseTtlMs, c.liveness.deadAfterMs) / 3)),
      log: this.#log,
    });
  }

  isLeader(): boolean {
    return this.#lease.isLeader();
  }
  get assignment(): PoolAssignmentT | undefined {
    return this.#m.assignment;
  }
  aliveInstances(): InstanceStatusT[] {
    this.#statuses.replay();
    return aliveInstances(this.#m);
  }
  /** This replica's dispatch view of the pool (policy poolDispatchView): whether it leads, the instances dispatch may choose, the others and why. */
  view(): DispatchViewT['pools'][number] {
    this.#statuses.replay();
    return poolDispatchView(this.#m, this.pool, this.#clock.now(), this.#mc.suspectAfterMs);
  }
  /** Requests held now (no ready instance, capacity coming), waiting for one. */
  heldNow(): number {
    return heldNow(this.#m.jobs.values());
  }
  /** Measured pool load (req/s by type) = sum of its instances' loads. */
  load(): Partial<Record<RequestType, number>> {
    this.#statuses.replay();
    return poolLoad(this.#m);
  }

  async start(): Promise<void> {
    this.#handles.push(
      // the server's word that a connection of the account ended: an instance reporting on it leaves dispatch at once
      this.#bus.subscribe(controlSubjects.connectionEnded(), ClientDisconnect, (a) => {
        const conn = endedConnection(a);
        if (conn) this.#step({ type: 'conn_ended', conn });
      }, { capacity: 4096 }),
    );
    this.#step({ type: 'start' });
    this.#statuses.listen(false);
    this.#bus.on('status', this.#onLink);
    this.#lease.on('elected', () => {
      this.#records.hold(1); // the records' subscription held from the takeover's reads on: a record after its lead step reaches the machine
      void this.#becomeLeader(++this.#leads).finally(() => this.#records.hold(-1));
    });
    // each acknowledged renewal bounds the machine's lead (state leaseUntilMs): every decision checks it, no lease read
    this.#lease.on('renewed', (r: { untilMs: number }) => this.#step({ type: 'lease', untilMs: r.untilMs }));
    this.#lease.on('lost', () => this.#stepDown());
    this.#lease.on('answered', (a: { sentMs: number }) => this.#step({ type: 'link_proven', sentMs: a.sentMs }));
    await this.#lease.start();
  }

  /** Lead `gen`: it takes over only while it is the lead in place (a replica lost and elected again meanwhile: a second one runs). */
  async #becomeLeader(gen: number): Promise<void> {
    const leading = () => gen === this.#leads && this.isLeader();
    // pick up the assignment the cluster leader left in the inventory KV and the previous leader's list of
    // dispatched requests (failover of this leader). JetStream may be briefly unavailable (a bucket's stream
    // electing its leader, a NATS node restarting): the reads are retried with backoff for takeoverReadMs;
    // leading with an empty list would leave the requests dispatched to an instance that dies unhandled
    const budgetMs = this.#o.config.timeouts.takeoverReadMs;
    const until = this.#clock.now() + budgetMs;
    let stored: PoolAssignmentT | undefined | null = null;
    let dispatched: { entries: DispatchedEntry[]; reshard?: StoredReshard } | null = null;
    let wait = 100;
    let failure: StoredStateUnreadable | undefined;
    for (let attempt = 1; ; attempt++) {
      const errs: StoredStateUnreadable[] = [];
      // a failure on a server without JetStream (yet) moves the connection: the next attempt goes through another
      const failed = (err: unknown) => (this.#bus.jetstreamFailed((err as { cause?: unknown }).cause ?? err), errs.push(unreadable(err)), null);
      // each read within its own deadline (a JetStream call's default is 5 s: one answer lost to a NATS node's death
      // would spend the whole budget), growing from attempt to attempt for a slow but working server
      const attemptMs = Math.max(1, Math.min(until - this.#clock.now(), TAKEOVER_READ_ATTEMPT_MS * 2 ** (attempt - 1)));
      if (stored === null) stored = await within(this.#readAssignment(), attemptMs, `KV ${jetstream.inventoryBucket}`, this.#clock).catch(failed);
      if (dispatched === null) dispatched = await within(this.#readDispatched(), attemptMs, `KV ${jetstream.dispatchedBucket}`, this.#clock).catch(failed);
      failure = errs[0];
      if (!leading()) return;
      if (!failure || this.#clock.now() + wait >= until) break;
      this.#log.warn({ attempt, err: failure.message, retryInMs: wait }, 'pool state unreadable at takeover: retrying');
      await this.#clock.sleep(wait);
      wait = Math.min(1000, wait * 2);
      if (!leading()) return;
    }
    if (failure) {
      // led without it: the deaths of instances before this leader end their streams only by their deadline
      this.#log.error({ err: failure.message, code: failure.code, retryable: failure.retryable, budgetMs }, 'leading without the stored pool state');
      this.#evt('failure', `${this.#o.holder} leads ${this.pool} without ${stored === null ? 'its stored assignment' : ''}${stored === null && dispatched === null ? ' and ' : ''}${dispatched === null ? "the previous leader's dispatched requests" : ''} (unreadable for ${budgetMs} ms)`,
        { assignmentRead: stored !== null, dispatchedRead: dispatched !== null }, { error: failure.message, budgetMs });
    }
    if (dispatched?.entries.length) this.#log.info({ requests: dispatched.entries.length }, 'dispatched requests of the previous leader adopted');
    this.#step({ type: 'lead', term: this.#lease.term() ?? 0, leaseUntilMs: this.#lease.leaderUntilMs(), ...(stored ? { stored } : {}), dispatched: dispatched?.entries ?? [], ...(dispatched?.reshard ? { reshard: dispatched.reshard } : {}), unread: stored === null });
    // what did not answer is read on while this lead lasts (the machine starts and stops no instance on an assignment
    // it could not confirm, and the dispatched list a late read finds is adopted then)
    if (failure) void this.#readLate(gen, stored === null, dispatched === null);
    // served only now: a dispatch retried from the previous leader finds the request it dispatched (its
    // list is adopted) instead of sending it to a second instance
    const opts = { capacity: 4096, concurrency: DISPATCH_HANDLERS };
    this.#leaderHandles.push(
      this.#bus.serve(subjects.poolDispatch(this.pool), InferenceRequest, Admission, (r, ctx) => this.#dispatch(r, ctx), opts),
      this.#bus.serve(subjects.poolMove(this.pool), MoveRequest, MoveReply, (m) => this.#ask<MoveReply>((ref) => ({ type: 'move', ref, from: m.from, requests: m.requests })), { capacity: 256, concurrency: 16 }),
      this.#bus.serve(subjects.poolControl(this.pool), PoolCommand, Ack, (cmd) => this.#command(cmd), { capacity: 64, requestsOnly: true }),
    );
  }

  /**
   * The takeover reads that failed by the lead (`assignment`, `dispatched`), retried while lead `gen` lasts, each
   * within TAKEOVER_READ_ATTEMPT_MS, LATE_READ_MAX_MS apart at most; what answers goes to the machine ('stored').
   */
  async #readLate(gen: number, assignment: boolean, dispatched: boolean): Promise<void> {
    let wait = 500;
    const leading = () => gen === this.#leads && this.isLeader();
    while ((assignment || dispatched) && leading()) {
      await this.#clock.sleep(wait);
      wait = Math.min(LATE_READ_MAX_MS, wait * 2);
      if (!leading()) return;
      const failed = (err: unknown) => (this.#bus.jetstreamFailed((err as { cause?: unknown }).cause ?? err), null);
      const a = assignment ? await within(this.#readAssignment(), TAKEOVER_READ_ATTEMPT_MS, `KV ${jetstream.inventoryBucket}`, this.#clock).catch(failed) : null;
      const d = dispatched ? await within(this.#readDispatched(), TAKEOVER_READ_ATTEMPT_MS, `KV ${jetstream.dispatchedBucket}`, this.#clock).catch(failed) : null;
      if (!leading() || (a === null && d === null)) continue;
      if (a !== null) assignment = false;
      if (d !== null) dispatched = false;
      this.#log.info({ assignment: a !== null, dispatched: d?.entries.length }, 'pool state read after the takeover');
      this.#step({ type: 'stored', ...(a !== null ? { assignment: a ? { stored: a } : {} } : {}), ...(d ? { dispatched: d.entries, ...(d.reshard ? { reshard: d.reshard } : {}) } : {}) });
    }
  }

  /** A dispatch call: the machine's answer (at once, or when a held request is dispatched or refused). */
  #dispatch(r: InferenceRequest, ctx: ServeContext): Promise<Admission> {
    const slots = this.#dispatchSlots.get(r.id);
    if (slots) slots.push(ctx.release);
    else this.#dispatchSlots.set(r.id, [ctx.release]);
    // only this call's place leaves the list: a retry of the same id may still be waiting
    return this.#ask<Admission>((ref) => ({ type: 'dispatch', ref, req: r })).finally(() => {
      const left = this.#dispatchSlots.get(r.id)?.filter((free) => free !== ctx.release);
      if (left?.length) this.#dispatchSlots.set(r.id, left);
      else this.#dispatchSlots.delete(r.id);
    });
  }

  /** The pool's assignment as the cluster leader stored it (undefined: none stored); StoredStateUnreadable when the KV fails. */
  async #readAssignment(): Promise<PoolAssignmentT | undefined> {
    let e;
    try {
      e = await (await this.#bus.kv(jetstream.inventoryBucket)).get(inventoryKeys.pool(this.pool));
    } catch (err) {
      throw new StoredStateUnreadable('the pool assignment', err);
    }
    if (!e || !e.value.length) return undefined;
    try {
      return PoolAssignment.decode(e.value);
    } catch (err) {
      // the same bytes fail again: the planner re-sends the current assignment to a pool that shows an older epoch
      this.#log.warn({ err: (err as Error).message }, 'stored pool assignment unreadable: waiting for the planner');
      return undefined;
    }
  }

  /** The dispatched-requests bucket (entries expire after DISPATCHED_TTL_MS: a record lost for good ends there). */
  #dispatchedKv() {
    return this.#bus.kv(jetstream.dispatchedBucket, { ttl: DISPATCHED_TTL_MS });
  }

  /**
   * The previous leader's list of dispatched requests and its last re-shard, read whole or not at all
   * (StoredStateUnreadable: a list missing the entries that failed to load would be taken for complete);
   * entries that do not decode are skipped and logged (the same bytes fail again).
   */
  async #readDispatched(): Promise<{ entries: DispatchedEntry[]; reshard?: StoredReshard }> {
    const out: DispatchedEntry[] = [];
    let reshard: StoredReshard | undefined;
    const reshardKey = dispatchedKeys.reshard(this.pool);
    let got;
    try {
      const kv = await this.#dispatchedKv();
      const keys: string[] = [];
      for await (const k of await kv.keys(dispatchedKeys.pool(this.pool))) keys.push(k);
      got = await Promise.all(keys.map((k) => kv.get(k)));
    } catch (err) {
      throw new StoredStateUnreadable("the previous leader's dispatched requests", err);
    }
    for (const e of got) {
      if (!e || !e.value.length || e.operation !== 'PUT') continue;
      try {
        if (e.key === reshardKey) {
          const r = ReshardRecord.decode(e.value);
          if (r.pool === this.pool) reshard = { epoch: r.epoch, target: r.target, state: r.state };
          continue;
        }
        out.push(DispatchedEntry.decode(e.value));
      } catch (err) {
        this.#log.warn({ key: e.key, err: (err as Error).message }, 'unreadable dispatched entry skipped');
      }
    }
    return { entries: out, ...(reshard ? { reshard } : {}) };
  }

  /** puts and deletes of the dispatched list not yet acknowledged (bounded: past it an entry is not kept). */
  #dispatchedInFlight = 0;
  #storeDispatched(op: (kv: KV) => Promise<unknown>): void {
    if (this.#dispatchedInFlight >= DISPATCHED_IN_FLIGHT_MAX) {
      this.#log.warn('dispatched-request store lagging: entry not kept');
      return;
    }
    this.#dispatchedInFlight++;
    void this.#dispatchedKv().then((kv) => op(kv)).catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'dispatched entry not stored')).finally(() => this.#dispatchedInFlight--);
  }

  /**
   * A dispatched entry whose admission waits for it: the machine hears 'dispatched_stored' when the store answered,
   * or failed, or did not answer within DISPATCHED_STORE_MS of the dispatch deadline. The writes of concurrent
   * dispatches are in flight together (each its own JetStream publish), never one after the other.
   */
  #storeDispatchedAcked(put: (kv: KV) => Promise<unknown>, ack: number): void {
    const answer = (ok: boolean) => this.#step({ type: 'dispatched_stored', ack, ok });
    if (this.#dispatchedInFlight >= DISPATCHED_IN_FLIGHT_MAX) {
      this.#log.warn('dispatched-request store lagging: admission answered without its entry');
      queueMicrotask(() => answer(false));
      return;
    }
    this.#dispatchedInFlight++;
    const deadlineMs = Math.min(DISPATCHED_STORE_MS, Math.max(1, Math.floor(this.#o.config.timeouts.dispatchMs / 2)));
    within(this.#dispatchedKv().then(put), deadlineMs, `KV ${jetstream.dispatchedBucket} dispatched entry`, this.#clock)
      .then(() => answer(true), (err: unknown) => {
        this.#log.warn({ err: (err as Error).message, deadlineMs }, 'dispatched entry not stored: admission answered, entry written again');
        answer(false);
      })
      .finally(() => this.#dispatchedInFlight--);
  }

  #unserve(): void {
    for (const h of this.#leaderHandles) h.unsubscribe();
    this.#leaderHandles = [];
  }

  #stepDown(): void {
    this.#leads++; // a takeover still reading (#becomeLeader) takes no lead
    this.#unserve();
    this.#step({ type: 'lost' });
  }

  async #command(cmd: PoolCommand): Promise<Ack> {
    if (cmd.op === 'assign' && !cmd.assignment) throw new DynError('invalid_request', `assignment for (none) sent to ${this.pool}`, { retryable: false });
    const r = await this.#ask<{ ok: boolean; detail?: Record<string, unknown>; error?: WireError }>((ref) => (cmd.op === 'assign' ? { type: 'assign', ref, assignment: cmd.assignment! } : { type: 'reshard_now', ref }));
    if (r.error) throw new DynError(r.error.code, r.error.message, { retryable: r.error.retryable });
    return { v: 1, ok: r.ok, ...(r.detail ? { detail: r.detail } : {}) };
  }

  /** An event whose answer (reply, move_reply, command_reply) comes back as an effect with its ref. */
  #ask<T>(ev: (ref: number) => PoolEvent): Promise<T> {
    const ref = ++this.#ref;
    const p = new Promise<T>((resolve) => {
      this.#waiting.set(ref, (e) => {
        if (e.kind === 'reply') resolve(e.admission as T);
        else if (e.kind === 'move_reply') resolve(e.reply as T);
        else if (e.kind === 'command_reply') resolve({ ok: e.ok, detail: e.detail, error: e.error } as T);
      });
    });
    this.#step(ev(ref));
    return p;
  }

  /** One transition of the pool machine at `now`; performs its effects. */
  #step(ev: PoolEvent, now = this.#clock.now()): void {
    if (ev.type === 'sweep' || ev.type === 'lead') this.#statuses.replay();
    const { state, effects } = poolStep(this.#m, ev, now, this.#mc);
    this.#m = state;
    if (state.leader !== this.#statuses.eager && !this.#timersStopped) this.#statuses.listen(state.leader);
    this.#records.sync(ev.type === 'sweep'); // before the effects: an admit goes out after the records' SUB
    for (const e of effects) this.#perform(e);
  }

  #perform(e: PoolEffect): void {
    const c = this.#o.config;
    switch (e.kind) {
      case 'arm_timer': {
        if (this.#timersStopped) break; // stopping: no timer runs again
        const timer = e.timer;
        // the death check measures its own lateness: one after a stop of this process does not count the stall as silence
        let dueMs = this.#clock.now() + e.everyMs;
        const sweepEvent = (): PoolEvent => {
          const now = this.#clock.now();
          const stalledMs = timerStallMs(dueMs, now);
          dueMs = now + e.everyMs;
          return stalledMs > 0 ? { type: 'sweep', stalledMs } : TIMER_EVENTS.sweep;
        };
        const t = this.#clock.setInterval(() => (timer === 'status' ? this.#publishPoolStatus() : this.#step(timer === 'sweep' ? sweepEvent() : TIMER_EVENTS[timer])), e.everyMs);
        if (e.timer === 'sweep') this.#sweepTimer = t;
        else {
          const old = this.#leaderTimers.get(e.timer);
          if (old !== undefined) this.#clock.clearInterval(old);
          this.#leaderTimers.set(e.timer, t);
        }
        break;
      }
      case 'disarm_leader_timers':
        for (const t of this.#leaderTimers.values()) this.#clock.clearInterval(t);
        this.#leaderTimers.clear();
        break;
      case 'pause_timer': {
        const t = this.#leaderTimers.get(e.timer);
        if (t !== undefined) this.#clock.clearInterval(t);
        this.#leaderTimers.delete(e.timer);
        break;
      }
      case 'admit': {
        // a grant goes to a gateway only: one sent through intake never asks for it in the (pool leader's) reply
        const { replyGrant: _gatewayOnly, ...req } = e.req;
        this.#bus.request(subjects.instanceAdmit(e.instance), InferenceRequest, req, Admission, { timeoutMs: c.timeouts.dispatchMs }).then(
          (admission) => this.#step({ type: 'admit_result', job: e.job, admission }),
          (err: unknown) => this.#step({ type: 'admit_result', job: e.job, error: toWireError(err), timedOut: (err as DynError).code === 'timeout' }),
        );
        break;
      }
      case 'reply':
      case 'move_reply':
      case 'command_reply': {
        const w = this.#waiting.get(e.ref);
        this.#waiting.delete(e.ref);
        w?.(e);
        break;
      }
      case 'persist_dispatched': {
        const entry: DispatchedEntry = { v: 1, req: e.req, instance: e.instance, atMs: e.atMs, ...(e.startedMs !== undefined ? { startedMs: e.startedMs } : {}) };
        const put = (kv: KV) => kv.put(dispatchedKeys.entry(this.pool, e.req.id), DispatchedEntry.encode(entry));
        if (e.ack === undefined) this.#storeDispatched(put);
        else this.#storeDispatchedAcked(put, e.ack);
        break;
      }
      case 'lease_lapsed':
        // the machine no longer leads: nothing more is served, and the lease (past its own bound too) is given up
        this.#log.warn({ untilMs: e.untilMs, lateMs: this.#clock.now() - e.untilMs }, 'lease may have lapsed (a stall past its TTL): stepping down');
        this.#unserve();
        this.#lease.resign();
        break;
      case 'forget_dispatched':
        this.#storeDispatched((kv) => kv.purge(dispatchedKeys.entry(this.pool, e.id)));
        break;
      case 'persist_reshard': {
        const rec: ReshardRecord = { v: 1, pool: this.pool, epoch: e.epoch, target: e.target, state: e.state, leader: this.#o.holder, atMs: this.#clock.now() };
        const put = (kv: KV) => kv.put(dispatchedKeys.reshard(this.pool), ReshardRecord.encode(rec));
        if (e.ack === undefined) {
          this.#storeDispatched(put);
          break;
        }
        // the re-shard's first command waits for this answer (the record is stored before anything changes)
        const ack = e.ack;
        within(this.#dispatchedKv().then(put), c.timeouts.controlMs, `KV ${jetstream.dispatchedBucket} re-shard record`, this.#clock).then(
          () => this.#step({ type: 'reshard_stored', ack, ok: true }),
          (err: unknown) => {
            this.#log.warn({ err: (err as Error).message }, 're-shard record not stored: re-shard not executed');
            this.#step({ type: 'reshard_stored', ack, ok: false });
          },
        );
        break;
      }
      case 'held':
        if (e.first) this.holds.held++;
        for (const free of this.#dispatchSlots.get(e.req.id) ?? []) free();
        // the caller waiting for this admission (a gateway reads the stream subject before it asks) keeps waiting
        try {
          this.#bus.publish(e.req.streamSubject, TokenChunk, { v: 1, id: e.req.id, seq: 0, text: '', tokens: 0, pool: this.pool, hold: { forMs: Math.max(0, Math.round(e.forMs)) } });
        } catch {
          /* closing: the caller's retry is told again */
        }
        break;
      case 'hold_over':
        this.holds[e.outcome]++;
        break;
      case 'end_stream':
        this.#bus.publish(e.req.streamSubject, TokenChunk, {
          v: 1, id: e.req.id, seq: e.seq, text: '', tokens: 0, done: true, finishReason: 'error', error: e.error, ...(e.instance ? { instance: e.instance } : {}), pool: this.pool,
        });
        break;
      case 'node':
        this.#bus.request(subjects.nodeControl(e.node), NodeCommand, e.cmd, Ack, { timeoutMs: c.timeouts.controlMs }).then(
          () => this.#step({ type: 'node_result', cmd: e.cmd, ok: true, purpose: e.purpose }),
          (err: unknown) => {
            this.#log.warn({ node: e.node, op: e.cmd.op, instance: e.cmd.instanceId, err: (err as Error).message }, 'node command failed');
            this.#step({ type: 'node_result', cmd: e.cmd, ok: false, purpose: e.purpose });
          },
        );
        break;
      case 'drain':
      case 'resume':
        this.#bus.request(subjects.instanceControl(e.instance), InstanceCommand, { v: 1, op: e.kind, reason: e.reason }, Ack, { timeoutMs: c.timeouts.controlMs }).catch(() => undefined);
        break;
      case 'solve':
        // the MILP worker solves Eq. 1; the machine decides on its outcome (policy milpShardDecision)
        milpPlanner().solve(e.input, c.milpDeadlineMs).then(
          (result) => this.#step({ type: 'planned', force: e.force, solved: { result } }),
          (err: unknown) => {
            this.#log.warn({ err: (err as Error).message }, 're-shard MILP solve failed: the heuristic decides');
            this.#step({ type: 'planned', force: e.force, solved: { error: (err as Error).message } });
          },
        );
        break;
      case 'event':
        this.#evt(e.event, e.summary, e.decision, e.inputs);
        break;
    }
  }

  /** The pool's sleep-mode standby (scaling.sleepStandby): its decision each status period, its commands sent. */
  #sleepStandby(): void {
    const c = this.#o.config;
    if (!c.scaling.sleepStandby || !this.#o.profile) return;
    const now = this.#clock.now();
    this.#standby ??= initialPoolStandby(now);
    const { state, commands } = poolStandbyStep(this.#standby, this.aliveInstances(), now, {
      profile: this.#o.profile, model: getModelSpec(c.model), headroom: this.#mc.headroom, periodMs: c.liveness.statusIntervalMs,
    });
    this.#standby = state;
    for (const k of commands) {
      this.#log.info({ instance: k.instance, op: k.op, level: k.level, why: k.reason }, 'sleep standby');
      this.#bus.request(subjects.instanceControl(k.instance), InstanceCommand, { v: 1, op: k.op, ...(k.level ? { level: k.level } : {}), reason: k.reason }, Ack, { timeoutMs: c.timeouts.controlMs })
        .catch((err: unknown) => this.#log.warn({ instance: k.instance, op: k.op, err: (err as Error).message }, 'sleep standby command failed'));
    }
  }

  #publishPoolStatus(): void {
    if (!this.isLeader()) return;
    this.#sleepStandby();
    const a = this.#m.assignment;
    const st = {
      v: 1 as const, pool: this.pool, leader: this.#o.holder, types: this.#m.types, loadByType: this.load(),
      instances: this.aliveInstances().map((s) => ({ id: s.id, tp: s.tp, node: s.node, gpuIds: s.gpuIds, state: s.state, clockMhz: s.clockMhz, queued: s.queued, running: s.running })),
      gpus: a?.grants.reduce((n, g) => n + g.gpuIds.length, 0) ?? 0, epoch: a?.epoch ?? 0, sentMs: this.#clock.now(),
    };
    try {
      this.#bus.publish(controlSubjects.poolStatus(this.pool), PoolStatus, st);
    } catch {
      /* closing */
    }
  }

  /** the bus's own link: silence while it is down is not the instances' (see the machine's 'link' event). */
  readonly #onLink = (st: { type: string }): void => {
    if (st.type === 'disconnect' || st.type === 'reconnect') this.#step({ type: 'link', up: st.type === 'reconnect' });
  };

  async stop(): Promise<void> {
    this.#bus.off('status', this.#onLink);
    for (const t of [this.#sweepTimer, ...this.#leaderTimers.values()]) if (t !== undefined) this.#clock.clearInterval(t);
    this.#leaderTimers.clear();
    this.#sweepTimer = undefined;
    this.#timersStopped = true;
    for (const h of [...this.#leaderHandles, ...this.#handles]) h.unsubscribe();
    this.#statuses.stop();
    this.#records.stop();
    await this.#lease.stop().catch(() => {});
  }
}

/** The pool's stored state (its assignment, the dispatched list) could not be read: JetStream unavailable for now. Retryable. */
export class StoredStateUnreadable extends DynError {
  override name = 'StoredStateUnreadable';
  constructor(what: string, cause: unknown) {
    super('unavailable', `${what} could not be read: ${(cause as Error)?.message ?? String(cause)}`, { retryable: true, cause });
  }
}

const unreadable = (err: unknown): StoredStateUnreadable => (err instanceof StoredStateUnreadable ? err : new StoredStateUnreadable('the pool state', err));

/** the first takeover read's deadline, ms; it doubles at each attempt, within timeouts.takeoverReadMs. */
const TAKEOVER_READ_ATTEMPT_MS = 1000;
/** the longest wait between two reads of the pool state a lead began without, ms. */
const LATE_READ_MAX_MS = 2000;
/** dispatch calls a pool leader works on at once (held ones do not count: see #dispatchSlots). */
export const DISPATCH_HANDLERS = 256;
/** puts and deletes of the dispatched list in flight at most (past it an entry is not kept, or its admission waits for none). */
const DISPATCHED_IN_FLIGHT_MAX = 4096;
/** the longest an admission waits for its dispatched entry's store, ms (at most half timeouts.dispatchMs). */
const DISPATCHED_STORE_MS = 1000;

const TIMER_EVENTS: Record<'sweep' | 'tick' | 'reconcile' | 'reshard', PoolEvent> = {
  sweep: { type: 'sweep' }, tick: { type: 'tick' }, reconcile: { type: 'reconcile' }, reshard: { type: 'reshard_epoch' },
};
