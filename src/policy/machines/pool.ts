/**
 * The pool manager's brain as a pure state machine: `poolStep(state, event, now) -> {state, effects}`. No
 * I/O, no wall clock, no timers. The live actor (actors/pool-manager/pool-leader.ts) performs the effects
 * (NATS requests, node and instance commands, decision events, timers) and feeds their outcomes back as
 * events; the simulator and the tests drive it the same way on a virtual clock.
 *
 * It owns every decision of a pool (paper Sec. IV-B):
 * - the view of the pool's instances from their statuses: out-of-order and restarted processes, the death
 *   verdict (no status for deadAfterMs), and what a death does: the dead instance's queued requests go to
 *   peers, its started streams end with a retryable error;
 * - the list of dispatched requests (which instance holds each until its record), kept in a store by the
 *   shell ('persist_dispatched' / 'forget_dispatched') so that a successor leader starts from it ('lead'
 *   with `dispatched`) and handles the deaths its predecessor did not live to see;
 * - dispatch is idempotent by request id: a request already dispatched gets its admission again, one
 *   being dispatched is joined (a caller's retry after a timeout never makes a second stream);
 * - dispatch (policy dispatchRequest): the instance, the next best on a refusal (at most 4 tries), the local count
 *   that spreads a burst before the next status, holding a request while no instance is ready and capacity is
 *   coming (router capacityComing; bounded by its give-up time, the engine health deadline and MAX_HELD), told
 *   to its caller ('held', again to each retry) so that it waits for the answer; its end is 'hold_over';
 * - emergency step 3 of an instance: its moved requests go to peers with room;
 * - the assignment (stale epochs ignored) and reconciliation: stop instances on GPUs no longer granted,
 *   start instances on granted GPUs nobody uses (the re-shard's layout, else engine.initialTp);
 * - the re-shard epoch on the pool's arrivals since the last (policy epochArrivalLoad, planSharding; the MILP is an
 *   effect answered with 'planned') and its staggered execution, one unit at a time: start the new instance first
 *   where its GPUs are free, else drain, stop, and start on the freed GPUs; each wait bounded.
 */
import type { RequestType } from '../../../protocols/request-types.ts';
import type { InstanceStatus, MoveReply, NodeCommand, PoolAssignment } from '../../../protocols/control.ts';
import type { Admission, InferenceRequest } from '../../../protocols/messages.ts';
import type { WireError } from '../../../protocols/errors.ts';
import type { NatsConnectionId } from '../../../protocols/nats-advisory.ts';
import { connectionEnded, connectionEndedSeen, endedKeepMs, initialEndedConnections, type EndedConnections } from '../connection-ended.ts';
import { subjects } from '../../../protocols/subjects.ts';
import type { Profile } from '../../model/profile-types.ts';
import { dispatchRequest } from '../dispatch.ts';
import type { InstanceConfig } from '../types.ts';
import type { CurrentInstance } from '../reshard-matching.ts';
import { aliveInstances, capacityComing, countDispatched, dispatchViews, poolEpochLoad, poolLoad, type DispatchViewOf, type HoldOutcome } from './router.ts';
export { aliveInstances, poolLoad } from './router.ts';
import { adoptReshard, adoptReshardOnAssign, resumeOrphanDrain } from './pool-takeover.ts';
import { addEpochArrivals, admittedBetween, darkReshardUnit, epochArrivalLoad, type EpochArrivals, gpuGroups, grantGpusPerServer, guardedPoolLoad, planPoolShards, poolPrefixReuse, recordPoolArrivals, windowPeak, type PoolLoadSample, reshardSteps, unitSteps, type PoolShardDecision, type PoolShardInput, type StaggerUnit } from '../pool-shards.ts';

export interface PoolMachineConfig {
  pool: string;
  /** the replica's id (decision events name it). */
  holder: string;
  profile?: Profile;
  /** SLO capacity kept free by dispatch and the re-shard plan. */
  headroom: number;
  /** an instance without a status for this long is dead, ms. */
  deadAfterMs: number;
  /** status interval of the actors, ms (reconcile every 4 of them, at least 500 ms). */
  statusIntervalMs: number;
  /** re-shard epoch, ms. */
  epochMs: number;
  /** time an engine has to report ready, ms (bounds holding a request, and a start). */
  healthDeadlineMs: number;
  /** a request is held at least until this long after its arrival (gateway.holdLimitMs: the gateway waits as long), ms. Absent: healthDeadlineMs from the hold's start only. */
  holdLimitMs?: number;
  /** TP of the instances that fill granted GPUs before any re-shard. */
  initialTp: number;
  /** modelled s per wall s of the pool's engines (an emulator at engine.timeScale k runs k times faster): the epoch's arrival rate and its burst window's peak are per modelled s, as the instances' loads. Absent: 1. */
  timeScale?: number;
  /** a peer with this many queued requests or more takes no moved request. */
  moveQueueAbove: number;
  /** Retry-After told to refused clients, s. */
  retryAfterS: number;
  /** 'milp': the re-shard plan is an effect ('solve') answered with 'planned'. */
  planner: 'heuristic' | 'milp';
  /** the burst guard's window, ms: the re-shard plan carries the highest load measured at the epochs within it. 0/absent: none. */
  burstWindowMs?: number;
  /** true where a re-shard's old instances serve until the new layout is up (the paper's NVLink re-shard, the simulator's `overlap`): no unit is dark. Absent live (engines start anew). */
  reshardKeepsServing?: boolean;
  /** reconfiguration costs the re-shard plan weighs (default: policy overheadTable's). */
  overhead?: PoolShardInput['overhead'];
  /** cache-aware routing (policy dispatchRequest `prefer`; the simulator's --prefix-routing): absent live. */
  prefer?: (req: InferenceRequest, eligibleIds: string[]) => string | undefined;
  /** the NATS store is the cluster's own, created with it (config nats.ownStore): what it holds is this run's. */
  ownStore?: boolean;
}

export interface TrackedInstance { status: InstanceStatus; lastSeenMs: number; alive: boolean }
/** A dispatched request: the instance it went to, and that instance's process (startedMs) as the leader saw it. */
interface Outstanding { req: InferenceRequest; instance: string; atMs: number; startedMs?: number }
/** An entry of the stored list of dispatched requests (what a successor adopts). */
export type DispatchedListEntry = Outstanding;

/** Who waits for a dispatch: a dispatch call (ref), a move (its job), or nobody (a re-dispatch after a death). */
type Origin = { kind: 'dispatch'; ref: number } | { kind: 'move'; move: number } | { kind: 'redispatch' };

interface DispatchJob {
  req: InferenceRequest;
  origin: Origin;
  /** more dispatch calls of the same request id (retries) answered with the same admission. */
  joined?: number[];
  /** instances never to try (the one a request was moved from, full peers, a dead instance). */
  exclude: Set<string>;
  tried: Set<string>;
  attempts: number;
  /** holding for a ready instance until this time, ms. */
  holdUntilMs?: number;
  /** the end of the first hold: a later hold (an admit refused after it) ends then too, ms. */
  holdEndMs?: number;
  /** an admit is in flight to this instance. */
  admitting?: string;
  lastError?: WireError;
  /** instances that refused it as not ready (unavailable): tried again once ready, whatever the view said then. */
  unready?: Set<string>;
}

interface MoveJob { ref: number; pending: number; placed: MoveReply['placed']; refused: MoveReply['refused'] }

/** The wait of a re-shard step: retire (drained, then stopped) or start (the node took it, then ready). */
type Phase =
  | { kind: 'drain'; ids: string[]; why: string; sinceMs: number; untilMs: number }
  | { kind: 'stopped'; ids: string[]; why: string; untilMs: number }
  | { kind: 'start'; node: string; gpuIds: number[]; id: string; why: string; untilMs: number; retryAtMs: number; inFlight: boolean }
  | { kind: 'ready'; id: string; untilMs: number };

interface ReshardRun {
  target: InstanceConfig[];
  units: StaggerUnit[];
  /** the instances when it began, GPUs numbered globally (server k of the grants = k x gps). */
  current: { id: string; tp: number; gpus: number[] }[];
  nodeIdx: Map<string, number>;
  gps: number;
  startedMs: number;
  /** waiting until this time for its record to be stored ('reshard_stored'): no unit begins before, ms. */
  storeUntilMs?: number;
  /** the unit under way, its node and local GPUs. */
  unit: number;
  unitNode?: string;
  unitLocal?: number[];
  /** the steps of the unit not begun yet, and the wait of the one under way. */
  todo: Step[];
  phase?: Phase;
}

export interface PoolMachineState {
  leader: boolean;
  types: RequestType[];
  assignment?: PoolAssignment;
  instances: Map<string, TrackedInstance>;
  outstanding: Map<string, Outstanding>;
  /**
   * the last status of instance processes that died while this replica did not lead (by instance id, the
   * latest few): a successor applies those deaths to the stored list it adopts, even when a new process
   * already reports under the same id.
   */
  graves: Map<string, { status: InstanceStatus; atMs: number }[]>;
  /** instances a node was asked to start (not yet reporting): when, on which node and GPUs (a re-shard's may not be contiguous). */
  starting: Map<string, { atMs: number; node: string; gpuIds: number[] }>;
  /** the layout of the last re-shard (undefined: fill the grants with initialTp instances). */
  target?: InstanceConfig[];
  /** a re-shard the previous leader began and did not finish (its stored record): begun again to this target once the pool is settled. */
  pendingReshard?: InstanceConfig[];
  jobs: Map<number, DispatchJob>;
  moves: Map<number, MoveJob>;
  nextJob: number;
  /** when this replica last took the lead (its view of the instances fills within deadAfterMs), ms. */
  ledAtMs?: number;
  /** the stored assignment not adopted at the lead (no live instance): until the planner's (`assignment`), its grants count as capacity coming. */
  unadopted?: PoolAssignment;
  /** the previous leader's running re-shard stored on `unadopted`: finished once the planner sends that assignment (pool-takeover.ts). */
  unadoptedReshard?: StoredReshard;
  /** this replica's link to the bus is down ('link' event): the sweep gives no verdict meanwhile. */
  linkDown?: boolean;
  /** when, leading, it first saw its instances admit requests: its re-shard epochs count from then, ms. */
  trafficAtMs?: number;
  /** node commands of a reconciliation not yet answered (no re-shard epoch meanwhile). */
  reconciling: number;
  /** a MILP solve of the re-shard epoch is under way. */
  planning: boolean;
  reshard?: ReshardRun;
  /** the pool's measured load at its recent re-shard epochs (the burst guard's window, burstWindowMs). */
  recentLoad: PoolLoadSample[];
  /** what its instances admitted since its re-shard epoch last read it, counted while it leads from its first traffic (the epoch's load). */
  epochArrivals?: EpochArrivals;
  /** the connections the NATS server said ended: an instance whose status went out on one takes no dispatch (connection-ended.ts). */
  ended: EndedConnections;
}

export type PoolEvent =
  /** the replica is up: arm the liveness sweep. */
  | { type: 'start' }
  /**
   * this replica leads the pool; the assignment the store holds, if any, and the requests the previous
   * leader dispatched that have no record yet (its persisted list).
   */
  | { type: 'lead'; term?: number; stored?: PoolAssignment; dispatched?: DispatchedListEntry[]; reshard?: StoredReshard }
  | { type: 'lost' }
  /** an instance's status, or several at once, in order (the simulator hands over those due in one event). */
  | { type: 'status'; status: InstanceStatus } | { type: 'statuses'; statuses: InstanceStatus[] }
  /** a request's record: it ended (on `instance`). */
  | { type: 'record'; id: string; instance?: string }
  | { type: 'sweep' }
  /** the NATS server said a connection ended (a ClientDisconnect advisory): the instance reporting on it leaves dispatch. */
  | { type: 'conn_ended'; conn: NatsConnectionId }
  /**
   * this replica's own link to the bus went down / came back. Silence heard while it is down is not the
   * instances' (no liveness verdict from it); when it comes back, every live instance gets deadAfterMs from then
   * to report, as after a new leader takes over.
   */
  | { type: 'link'; up: boolean }
  /** the timer of the waits (held dispatches, re-shard steps). */
  | { type: 'tick' }
  | { type: 'dispatch'; ref: number; req: InferenceRequest }
  /** the answer to an 'admit' effect: the instance's admission, or the call's error (`timedOut`: it may have been taken). */
  | { type: 'admit_result'; job: number; admission?: Admission; error?: WireError; timedOut?: boolean }
  | { type: 'move'; ref: number; from: string; requests: InferenceRequest[] }
  | { type: 'assign'; ref: number; assignment: PoolAssignment }
  | { type: 'reshard_now'; ref: number }
  | { type: 'reconcile' }
  | { type: 'reshard_epoch'; force?: boolean }
  /** the MILP's answer to a 'solve' effect. */
  | { type: 'planned'; plan?: PoolShardDecision; force?: boolean }
  /** the answer to a 'node' effect. */
  | { type: 'node_result'; cmd: NodeCommand; ok: boolean; purpose: 'reconcile' | 'reshard' }
  /** the answer to a 'persist_reshard' with `ack` (the store acknowledged the record, or failed). */
  | { type: 'reshard_stored'; ack: number; ok: boolean };

export type PoolEffect =
  | { kind: 'arm_timer'; timer: 'sweep' | 'tick' | 'reconcile' | 'reshard' | 'status'; everyMs: number }
  /** stop the leader's timers (the sweep stays). */
  | { kind: 'disarm_leader_timers' }
  /** ask an instance to admit the request; answer with 'admit_result'. */
  | { kind: 'admit'; job: number; instance: string; req: InferenceRequest }
  | { kind: 'reply'; ref: number; admission: Admission }
  | { kind: 'move_reply'; ref: number; reply: MoveReply }
  | { kind: 'command_reply'; ref: number; ok: boolean; detail?: Record<string, unknown>; error?: WireError }
  /** keep (replace) a dispatched request in the store a successor reads. */
  | { kind: 'persist_dispatched'; req: InferenceRequest; instance: string; atMs: number; startedMs?: number }
  /** drop a request from that store (it ended, or was handed on). */
  | { kind: 'forget_dispatched'; id: string }
  /** keep the re-shard (begun, or complete) in the store a successor reads. */
  | ({ kind: 'persist_reshard'; ack?: number } & StoredReshard)
  /** held: tell its caller (TokenChunk.hold on its stream subject) the pool answers within forMs; `first`: its first hold. */
  | { kind: 'held'; req: Pick<InferenceRequest, 'id' | 'streamSubject'>; forMs: number; first: boolean }
  /** a held request's dispatch is over (router HoldOutcome). */
  | { kind: 'hold_over'; id: string; outcome: HoldOutcome }
  /** end a request's stream with an error chunk of this seq (only its id and stream subject may be known). */
  | { kind: 'end_stream'; req: Pick<InferenceRequest, 'id' | 'streamSubject'>; seq: number; error: WireError; instance?: string }
  /** a command to a node agent; answer with 'node_result'. */
  | { kind: 'node'; node: string; cmd: NodeCommand; purpose: 'reconcile' | 'reshard' }
  /** drain an instance, or resume one drained (no answer needed). */
  | { kind: 'drain' | 'resume'; instance: string; reason: string }
  /** solve the re-shard plan with the MILP; answer with 'planned'. */
  | { kind: 'solve'; input: PoolShardInput; force: boolean }
  | { kind: 'event'; event: 'lease' | 'instance' | 'failure' | 'scale' | 'reshard'; summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> };

export interface PoolStepResult { state: PoolMachineState; effects: PoolEffect[] }

/** A leader's re-shard as its successor reads it back: its target, planned on assignment `epoch`, still running or complete. */
export interface StoredReshard { epoch: number; target: InstanceConfig[]; state: 'running' | 'complete' }


export function initialPoolState(types: RequestType[]): PoolMachineState {
  return { leader: false, types, instances: new Map(), outstanding: new Map(), graves: new Map(), starting: new Map(), jobs: new Map(), moves: new Map(), nextJob: 1, reconciling: 0, planning: false, recentLoad: [], ended: initialEndedConnections() };
}

/** Ready-check period of the waits (held dispatches, re-shard steps), ms. */
export const POOL_TICK_MS = 100;
/** Tries of one dispatch (the chosen instance, then the next best on each refusal). */
const DISPATCH_TRIES = 4;

/**
 * One transition. The state passed in is not modified at its top level or in its maps; the records inside
 * (a tracked instance, a job) are replaced, not edited, where an older state could still see them.
 */
export function poolStep(prev: PoolMachineState, ev: PoolEvent, now: number, cfg: PoolMachineConfig): PoolStepResult {
  const s: PoolMachineState = {
    ...prev, instances: new Map(prev.instances), outstanding: new Map(prev.outstanding), graves: new Map(prev.graves), starting: new Map(prev.starting),
    jobs: new Map(prev.jobs), moves: new Map(prev.moves),
  };
  const fx: PoolEffect[] = [];
  switch (ev.type) {
    case 'start':
      fx.push({ kind: 'arm_timer', timer: 'sweep', everyMs: Math.max(50, Math.floor(cfg.deadAfterMs / 4)) });
      break;
    case 'lead':
      s.leader = true;
      s.ledAtMs = now;
      fx.push({ kind: 'event', event: 'lease', summary: `${cfg.holder} leads ${cfg.pool}`, decision: { leader: cfg.holder, term: ev.term }, inputs: { pool: cfg.pool } });
      if (ev.stored && (!s.assignment || ev.stored.epoch > s.assignment.epoch)) {
        // a store of the cluster's own (`ownStore`) is this run's; another (a shared NATS server keeps a previous
        // run's KV) is this cluster's only when an instance of the pool is alive or the planner already sent this
        // replica one; otherwise the planner sends the current one (it re-sends an assignment to a pool whose
        // status shows an older epoch) and nothing starts from a previous plan
        if (s.assignment || aliveInstances(s).length > 0 || cfg.ownStore) setAssignment(s, ev.stored);
        else {
          s.unadopted = ev.stored;
          fx.push({ kind: 'event', event: 'lease', summary: `${cfg.pool}: stored assignment (epoch ${ev.stored.epoch}) not adopted: no live instance of the pool; waiting for the cluster planner`,
            decision: { adopted: false, storedEpoch: ev.stored.epoch }, inputs: { pool: cfg.pool, issuedBy: ev.stored.issuedBy, atMs: ev.stored.atMs } });
        }
      }
      adoptDispatched(s, fx, ev.dispatched ?? [], now, cfg);
      adoptReshard(s, fx, ev.reshard, cfg);
      // an instance a previous leader's re-shard drained serves again (that re-shard died with it)
      for (const x of aliveInstances(s)) resumeOrphanDrain(s, fx, x, cfg);
      fx.push(
        { kind: 'arm_timer', timer: 'reconcile', everyMs: Math.max(500, cfg.statusIntervalMs * 4) },
        { kind: 'arm_timer', timer: 'reshard', everyMs: cfg.epochMs },
        { kind: 'arm_timer', timer: 'status', everyMs: Math.max(250, cfg.statusIntervalMs * 2) },
        { kind: 'arm_timer', timer: 'tick', everyMs: POOL_TICK_MS },
      );
      reconcile(s, fx, now, cfg);
      break;
    case 'lost':
      s.leader = false;
      fx.push({ kind: 'event', event: 'lease', summary: `${cfg.holder} lost the lead of ${cfg.pool}`, decision: { leader: null }, inputs: { pool: cfg.pool } }, { kind: 'disarm_leader_timers' });
      s.reshard = undefined;
      s.pendingReshard = undefined;
      s.unadoptedReshard = undefined;
      s.planning = false;
      s.reconciling = 0;
      s.trafficAtMs = undefined;
      s.epochArrivals = undefined;
      for (const [job, j] of s.jobs) finish(s, fx, job, j, now, cfg, refusal(cfg, 'unavailable', `${cfg.holder} no longer leads ${cfg.pool}`));
      break;
    case 'status':
    case 'statuses':
      for (const st of ev.type === 'status' ? [ev.status] : ev.statuses) {
        const arrived = admittedBetween(s.instances.get(st.id)?.status, st);
        onStatus(s, fx, st, now, cfg);
        // the first requests its instances admit start its epochs: the first one decides on a whole epoch of load
        if (s.leader && s.trafficAtMs === undefined && arrived && Object.keys(arrived).length) {
          s.trafficAtMs = now;
          fx.push({ kind: 'arm_timer', timer: 'reshard', everyMs: cfg.epochMs });
        }
        // what the pool's instances admitted: the burst guard's window (minute by minute from its first traffic) and the re-shard epoch's count
        if (arrived && cfg.burstWindowMs) s.recentLoad = recordPoolArrivals(s.recentLoad, arrived, now, cfg.burstWindowMs, s.trafficAtMs);
        if (arrived && s.trafficAtMs !== undefined) s.epochArrivals = addEpochArrivals(s.epochArrivals, arrived, now);
      }
      advance(s, fx, now, cfg);
      break;
    case 'record': {
      const o = s.outstanding.get(ev.id);
      if (o && (!ev.instance || ev.instance === o.instance)) {
        s.outstanding.delete(ev.id);
        if (s.leader) fx.push({ kind: 'forget_dispatched', id: ev.id });
      }
      break;
    }
    case 'sweep':
      if (!s.linkDown) sweep(s, fx, now, cfg);
      break;
    case 'conn_ended':
      s.ended = connectionEndedSeen(s.ended, ev.conn, now, endedKeepMs(cfg.deadAfterMs));
      break;
    case 'link':
      if (ev.up && s.linkDown) for (const [id, t] of s.instances) if (t.alive) s.instances.set(id, { ...t, lastSeenMs: Math.max(t.lastSeenMs, now) });
      s.linkDown = !ev.up;
      break;
    case 'tick':
      advance(s, fx, now, cfg);
      break;
    case 'dispatch':
      dispatch(s, fx, ev.ref, ev.req, now, cfg);
      break;
    case 'admit_result':
      admitResult(s, fx, ev, now, cfg);
      break;
    case 'move':
      move(s, fx, ev, now, cfg);
      break;
    case 'assign': {
      const a = ev.assignment;
      if (a.pool !== cfg.pool) {
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: false, error: { code: 'invalid_request', message: `assignment for ${a.pool} sent to ${cfg.pool}`, retryable: false } });
      } else if (s.assignment && a.epoch < s.assignment.epoch) {
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: true, detail: { ignored: 'stale epoch' } });
      } else {
        setAssignment(s, a);
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: true, detail: { epoch: a.epoch } });
        adoptReshardOnAssign(s, fx, a, cfg);
        reconcile(s, fx, now, cfg);
      }
      break;
    }
    case 'reshard_now':
      fx.push({ kind: 'command_reply', ref: ev.ref, ok: true });
      reshardEpoch(s, fx, now, cfg, true);
      break;
    case 'reconcile':
      reconcile(s, fx, now, cfg);
      break;
    case 'reshard_epoch':
      reshardEpoch(s, fx, now, cfg, ev.force ?? false);
      break;
    case 'planned':
      s.planning = false;
      if (s.leader && !s.reshard) decideReshard(s, fx, ev.plan, now, cfg, ev.force ?? false);
      break;
    case 'node_result':
      nodeResult(s, fx, ev.cmd, ev.ok, ev.purpose, now, cfg);
      break;
    case 'reshard_stored':
      reshardStored(s, fx, ev.ack, ev.ok, now, cfg);
      break;
  }
  return { state: s, effects: fx };
}

function setAssignment(s: PoolMachineState, a: PoolAssignment): void {
  if (a.epoch !== s.assignment?.epoch) s.pendingReshard = undefined;
  s.assignment = a;
  s.types = a.types;
}

function refusal(cfg: PoolMachineConfig, code: 'overloaded' | 'unavailable', message: string): WireError {
  return { code, message, retryable: true, retryAfterS: cfg.retryAfterS };
}

// ------------------------------------------------------------------ instance tracking

function onStatus(s: PoolMachineState, fx: PoolEffect[], st: InstanceStatus, now: number, cfg: PoolMachineConfig): void {
  const t = s.instances.get(st.id);
  if (t && st.seq < t.status.seq && st.startedMs === t.status.startedMs) return; // out of order
  if (st.state === 'stopped') {
    s.instances.delete(st.id);
    return;
  }
  s.starting.delete(st.id);
  if (!t || !t.alive) {
    // the same process reporting again (cut off, e.g. NATS restarted, not dead): a grave kept for it is void
    const keep = s.graves.get(st.id)?.filter((g) => g.status.startedMs !== st.startedMs) ?? [];
    if (keep.length) s.graves.set(st.id, keep); else s.graves.delete(st.id);
    s.instances.set(st.id, { status: st, lastSeenMs: now, alive: true });
    if (t && !t.alive) fx.push({ kind: 'event', event: 'instance', summary: `${st.id} is back (${st.state})`, decision: { instance: st.id, alive: true }, inputs: { startedMs: st.startedMs } });
    resumeOrphanDrain(s, fx, st, cfg);
    goneProcesses(s, fx, st, now, cfg);
    return;
  }
  // a new process under the same id: whatever the old one held is gone (a placeholder held nothing known)
  if (st.startedMs !== t.status.startedMs && t.status.startedMs !== UNSEEN) instanceDied(s, fx, st.id, 'restarted', t.status, now, cfg, (o) => o.startedMs !== st.startedMs);
  s.instances.set(st.id, { status: st, lastSeenMs: now, alive: true });
  if (t.status.startedMs !== UNSEEN) return;
  resumeOrphanDrain(s, fx, st, cfg);
  goneProcesses(s, fx, st, now, cfg);
}

/**
 * Requests kept for an earlier process of an instance than the one reporting now `st` (the stored list says
 * which process each went to): that process is gone, and its death is applied to them, with its last status
 * where this replica saw it (a grave), else as unknown (their streams end with a retryable error).
 */
function goneProcesses(s: PoolMachineState, fx: PoolEffect[], st: InstanceStatus, now: number, cfg: PoolMachineConfig): void {
  if (!s.leader) return;
  const gone = new Set<number>();
  for (const o of s.outstanding.values()) if (o.instance === st.id && o.startedMs !== undefined && o.startedMs !== st.startedMs) gone.add(o.startedMs);
  for (const started of gone) {
    const last = s.graves.get(st.id)?.find((g) => g.status.startedMs === started)?.status
      ?? { ...st, startedMs: started, state: 'failed' as const, queued: 0, running: 0, queuedIds: [], runningIds: [], runningSeqs: [] };
    instanceDied(s, fx, st.id, `its process of ${started} is gone`, last, now, cfg, (o) => o.startedMs === started);
  }
}

function sweep(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  for (const [id, t] of s.instances) {
    if (t.alive && now - t.lastSeenMs > cfg.deadAfterMs) {
      s.instances.set(id, { ...t, alive: false });
      instanceDied(s, fx, id, `no status for ${now - t.lastSeenMs} ms`, t.status, now, cfg);
    } else if (!t.alive && now - t.lastSeenMs > 60_000) s.instances.delete(id);
  }
  for (const [id, gs] of s.graves) {
    const keep = gs.filter((g) => now - g.atMs <= 60_000);
    if (keep.length !== gs.length) {
      if (keep.length) s.graves.set(id, keep);
      else s.graves.delete(id);
    }
  }
  // forget outstanding entries long past their give-up time (their record was lost)
  for (const [id, o] of s.outstanding) {
    if (now > o.req.giveUpAtMs + 60_000) {
      s.outstanding.delete(id);
      if (s.leader) fx.push({ kind: 'forget_dispatched', id });
    }
  }
}

/**
 * A new leader adopts its predecessor's list of dispatched requests (entries it already knows stay), and
 * handles now the deaths that list outlived: the requests of an instance this replica saw die, or never
 * saw at all, are re-dispatched (queued) or ended (started) as the death of that instance says.
 */
function adoptDispatched(s: PoolMachineState, fx: PoolEffect[], list: DispatchedListEntry[], now: number, cfg: PoolMachineConfig): void {
  // (an entry past its request's give-up time is a lost record, or a previous run's on a shared server)
  for (const d of list) {
    if (!s.outstanding.has(d.req.id) && d.req.giveUpAtMs > now) s.outstanding.set(d.req.id, { req: d.req, instance: d.instance, atMs: d.atMs, ...(d.startedMs !== undefined ? { startedMs: d.startedMs } : {}) });
  }
  // the processes this replica saw die (or restart) while it did not lead: their requests now
  const graves = [...s.graves];
  s.graves.clear();
  for (const [id, gs] of graves) {
    const down = !s.instances.get(id)?.alive;
    for (const [k, g] of gs.entries()) {
      // an entry that names no process went to the last one, when no process reports under the id now
      const last = k === gs.length - 1 && down;
      instanceDied(s, fx, id, 'died before this leader took over', g.status, now, cfg, (o) => o.startedMs === g.status.startedMs || (last && o.startedMs === undefined));
    }
  }
  // requests stored for a process other than the one reporting now under that id (no grave: a death unseen)
  for (const t of s.instances.values()) if (t.alive && t.status.startedMs !== UNSEEN) goneProcesses(s, fx, t.status, now, cfg);
  const holders = new Set([...s.outstanding.values()].map((o) => o.instance));
  for (const id of holders) {
    const t = s.instances.get(id);
    if (t?.alive) continue;
    if (t) {
      instanceDied(s, fx, id, 'died before this leader took over', t.status, now, cfg);
      continue;
    }
    // never heard of here (this replica started after it): it gets deadAfterMs to report like any
    // instance; a placeholder that takes no dispatch and gives way to its first status
    s.instances.set(id, {
      status: { v: 1, id, pool: cfg.pool, tp: 1, gpuIds: [], state: 'starting', startedMs: UNSEEN, seq: 0, sentMs: now, clockMhz: 0, maxClockMhz: 0, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {} },
      lastSeenMs: now, alive: true,
    });
  }
}

/** startedMs of a placeholder for an instance the list names and no status has shown yet. */
const UNSEEN = -1;

/**
 * An instance died (or restarted): its queued requests go to peers, its started streams end with a
 * retryable error. Only the leader acts; a standby just marks it.
 */
function instanceDied(s: PoolMachineState, fx: PoolEffect[], id: string, why: string, last: InstanceStatus, now: number, cfg: PoolMachineConfig, only?: (o: Outstanding) => boolean): void {
  if (!s.leader) {
    // a standby keeps the process's last status: if it leads before that death is handled, it handles it
    const gs = (s.graves.get(id) ?? []).filter((g) => g.status.startedMs !== last.startedMs);
    s.graves.set(id, [...gs, { status: last, atMs: now }].slice(-4));
    return;
  }
  const queued = new Set(last.queuedIds);
  const seqs = new Map(last.runningIds.map((r, i) => [r, last.runningSeqs?.[i] ?? 0]));
  const redispatch: InferenceRequest[] = [];
  const failed: string[] = [];
  const mine = [...s.outstanding.values()].filter((x) => x.instance === id && (!only || only(x)));
  const handled = new Set(mine.map((o) => o.req.id));
  // ids the process held that no list here names (the previous leader died before storing them): nobody can
  // re-dispatch them, so their streams end with a retryable error and the gateway, which holds each request,
  // sends it again
  for (const j of s.jobs.values()) handled.add(j.req.id);
  for (const rid of [...last.queuedIds, ...last.runningIds]) {
    const streamSubject = streamOf(rid);
    if (handled.has(rid) || s.outstanding.has(rid) || !streamSubject) continue;
    handled.add(rid);
    failed.push(rid);
    fx.push({ kind: 'end_stream', req: { id: rid, streamSubject }, seq: Math.max(seqs.get(rid) ?? 0, 0), instance: id, error: refusal(cfg, 'unavailable', `instance ${id} died (${why}) holding the request`) });
  }
  for (const o of mine) {
    s.outstanding.delete(o.req.id);
    fx.push({ kind: 'forget_dispatched', id: o.req.id });
    if (queued.has(o.req.id)) redispatch.push({ ...o.req, moves: (o.req.moves ?? 0) + 1 });
    else {
      failed.push(o.req.id);
      // seq: the one the instance would have published next, so the gateway sees it after the tokens it got
      fx.push({ kind: 'end_stream', req: o.req, seq: Math.max(seqs.get(o.req.id) ?? 0, 0), instance: id, error: refusal(cfg, 'unavailable', `instance ${id} died (${why}) while serving the request`) });
    }
  }
  fx.push({
    kind: 'event', event: 'failure', summary: `${id} dead (${why}): removed from dispatch, ${redispatch.length} queued re-dispatched, ${failed.length} streams ended`,
    decision: { instance: id, redispatched: redispatch.map((r) => r.id), failed }, inputs: { lastStatus: { state: last.state, queued: last.queued, running: last.running, sentMs: last.sentMs } },
  });
  for (const r of redispatch) newJob(s, fx, { req: r, origin: { kind: 'redispatch' }, exclude: new Set([id]), tried: new Set([id]), attempts: 0 }, now, cfg);
}

/** The stream subject of a request id (every leg streams on its own id's subject), undefined for an id no subject can carry. */
function streamOf(id: string): string | undefined {
  try {
    return subjects.stream(id);
  } catch {
    return undefined;
  }
}

const holdable = (s: PoolMachineState, now: number, cfg: PoolMachineConfig, self = 0) => capacityComing({
  reshard: s.reshard !== undefined, starting: s.starting.size, held: [...s.jobs.values()].filter((j) => (j.holdUntilMs ?? -Infinity) > -Infinity).length - self,
  instances: s.instances.values(), assignment: s.assignment ?? s.unadopted, newLeader: s.ledAtMs !== undefined && now - s.ledAtMs < cfg.deadAfterMs });
function views(s: PoolMachineState, exclude: Set<string>): DispatchViewOf[] {
  return dispatchViews(s.instances.values(), exclude, (t) => t.alive && !connectionEnded(s.ended, t.status.conn));
}

// ------------------------------------------------------------------ dispatch

/**
 * A dispatch call, idempotent by request id: one already admitted gets its admission again (the caller's
 * first answer was lost), one being dispatched is joined (a retry after the caller's timeout).
 */
function dispatch(s: PoolMachineState, fx: PoolEffect[], ref: number, req: InferenceRequest, now: number, cfg: PoolMachineConfig): void {
  const o = s.outstanding.get(req.id);
  if (o) {
    fx.push({ kind: 'reply', ref, admission: { v: 1, id: req.id, ok: true, pool: cfg.pool, instance: o.instance } });
    return;
  }
  for (const [job, j] of s.jobs) {
    if (j.req.id === req.id && j.origin.kind !== 'move') {
      s.jobs.set(job, { ...j, joined: [...(j.joined ?? []), ref] });
      // a caller's retry of a held request: told again (the first notice may not have reached it)
      if (j.holdUntilMs !== undefined && j.holdUntilMs >= now) fx.push({ kind: 'held', req: j.req, forMs: j.holdUntilMs - now, first: false });
      return;
    }
  }
  newJob(s, fx, { req, origin: { kind: 'dispatch', ref }, exclude: new Set(), tried: new Set(), attempts: 0 }, now, cfg);
}

function newJob(s: PoolMachineState, fx: PoolEffect[], j: DispatchJob, now: number, cfg: PoolMachineConfig): void {
  const job = s.nextJob++;
  s.jobs.set(job, j);
  tryDispatch(s, fx, job, j, now, cfg);
}

/** The next try of a dispatch: hold it, send it to the best instance not tried yet, or give up. */
function tryDispatch(s: PoolMachineState, fx: PoolEffect[], job: number, j: DispatchJob, now: number, cfg: PoolMachineConfig): void {
  let v = views(s, j.tried);
  if (!v.length && j.origin.kind !== 'move' && (j.holdEndMs !== undefined || holdable(s, now, cfg))) {
    // capacity is coming (a re-shard, a start, an engine restart, granted GPUs the reconciliation fills): hold the
    // request until an instance is ready, bounded by its give-up time and the engine health deadline (a second
    // hold after a refused admit ends with the first). An instance it tried that is not ready now is tried again.
    const until = j.holdUntilMs ?? j.holdEndMs ?? Math.min(j.req.giveUpAtMs - 1000, Math.max(now + cfg.healthDeadlineMs, j.req.arrivalMs + (cfg.holdLimitMs ?? 0)));
    if (now <= until) {
      const ready = new Set(views(s, new Set()).map((x) => x.id));
      const tried = new Set([...j.tried].filter((id) => (ready.has(id) && !j.unready?.has(id)) || j.exclude.has(id)));
      s.jobs.set(job, { ...j, tried, attempts: Math.min(j.attempts, tried.size), holdUntilMs: until, holdEndMs: until });
      fx.push({ kind: 'held', req: j.req, forMs: until - now, first: j.holdEndMs === undefined });
      return;
    }
    v = views(s, j.tried);
  }
  if (!v.length || j.attempts >= DISPATCH_TRIES) return finish(s, fx, job, j, now, cfg, j.lastError ?? refusal(cfg, 'overloaded', `pool ${cfg.pool} has no ready instance`));
  const { id: choice, capped } = dispatchRequest(j.req, v, cfg.profile, s.types, { headroom: cfg.headroom, ...(cfg.prefer ? { prefer: (ids: string[]) => cfg.prefer!(j.req, ids) } : {}) });
  // at its SLO cap, a request the intake may spill goes on to the next pool (spillPasses); else counted at once in the local view so a burst spreads before the next status
  if (capped && j.req.spill && j.origin.kind === 'dispatch' && j.attempts === 0) return finish(s, fx, job, j, now, cfg, refusal(cfg, 'overloaded', `pool ${cfg.pool}: every instance at its SLO cap`));
  s.instances.set(choice, countDispatched(s.instances.get(choice)!, j.req.inputTokens));
  s.jobs.set(job, { ...j, tried: new Set([...j.tried, choice]), attempts: j.attempts + 1, admitting: choice, holdUntilMs: undefined });
  fx.push({ kind: 'admit', job, instance: choice, req: { ...j.req, pool: cfg.pool } });
}

function admitResult(s: PoolMachineState, fx: PoolEffect[], ev: Extract<PoolEvent, { type: 'admit_result' }>, now: number, cfg: PoolMachineConfig): void {
  const j = s.jobs.get(ev.job);
  if (!j?.admitting) return;
  const a = ev.admission;
  if (a?.ok) {
    const req = { ...j.req, pool: cfg.pool };
    const started = s.instances.get(j.admitting)?.status.startedMs;
    const proc = started !== undefined && started !== UNSEEN ? { startedMs: started } : {};
    s.outstanding.set(j.req.id, { req, instance: j.admitting, atMs: now, ...proc });
    fx.push({ kind: 'persist_dispatched', req, instance: j.admitting, atMs: now, ...proc });
    finish(s, fx, ev.job, j, now, cfg, undefined, { ...a, pool: cfg.pool });
    return;
  }
  const error = a ? a.error : ev.error;
  // an admit that timed out may have been taken: no second try (no duplicate stream)
  if (ev.timedOut) return finish(s, fx, ev.job, j, now, cfg, { ...(error ?? refusal(cfg, 'unavailable', 'admit timed out')), retryable: true });
  if (error && !error.retryable) return finish(s, fx, ev.job, j, now, cfg, error);
  const next: DispatchJob = { ...j, admitting: undefined, ...(error ? { lastError: error } : {}), ...(error?.code === 'unavailable' ? { unready: new Set([...(j.unready ?? []), j.admitting]) } : {}) };
  s.jobs.set(ev.job, next);
  tryDispatch(s, fx, ev.job, next, now, cfg);
}

/** The dispatch is over: answer whoever waits for it. */
function finish(s: PoolMachineState, fx: PoolEffect[], job: number, j: DispatchJob, now: number, cfg: PoolMachineConfig, error?: WireError, accepted?: Admission): void {
  s.jobs.delete(job);
  if (j.holdEndMs !== undefined) fx.push({ kind: 'hold_over', id: j.req.id, outcome: accepted ? 'dispatched' : now > j.holdEndMs ? 'timed_out' : 'refused' });
  const admission: Admission = accepted ?? { v: 1, id: j.req.id, ok: false, pool: cfg.pool, ...(error ? { error } : {}) };
  const o = j.origin;
  for (const ref of j.joined ?? []) fx.push({ kind: 'reply', ref, admission });
  if (o.kind === 'dispatch') fx.push({ kind: 'reply', ref: o.ref, admission });
  else if (o.kind === 'redispatch') {
    if (!admission.ok) fx.push({ kind: 'end_stream', req: j.req, seq: 0, error: admission.error ?? { code: 'unavailable', message: 'no instance could take the request', retryable: true } });
  } else {
    const m = s.moves.get(o.move);
    if (!m) return;
    const next: MoveJob = { ...m, pending: m.pending - 1 };
    if (admission.ok && admission.instance) next.placed = [...m.placed, { id: j.req.id, instance: admission.instance }];
    else next.refused = [...m.refused, { id: j.req.id, error: admission.error ?? { code: 'overloaded', message: 'no peer with room', retryable: true } }];
    if (next.pending > 0) s.moves.set(o.move, next);
    else {
      s.moves.delete(o.move);
      fx.push({ kind: 'move_reply', ref: next.ref, reply: { v: 1, placed: next.placed, refused: next.refused } });
    }
  }
}

/** Emergency step 3 of an instance: its requests go to peers with room (a peer as loaded helps nobody). */
function move(s: PoolMachineState, fx: PoolEffect[], ev: Extract<PoolEvent, { type: 'move' }>, now: number, cfg: PoolMachineConfig): void {
  if (!ev.requests.length) {
    fx.push({ kind: 'move_reply', ref: ev.ref, reply: { v: 1, placed: [], refused: [] } });
    return;
  }
  const id = s.nextJob++;
  s.moves.set(id, { ref: ev.ref, pending: ev.requests.length, placed: [], refused: [] });
  for (const r of ev.requests) {
    const exclude = new Set([ev.from]);
    for (const t of s.instances.values()) if (t.status.queued >= cfg.moveQueueAbove) exclude.add(t.status.id);
    newJob(s, fx, { req: r, origin: { kind: 'move', move: id }, exclude, tried: new Set(exclude), attempts: 0 }, now, cfg);
  }
}

/** Held dispatches and the re-shard's waits move on (a status arrived, or the tick). */
function advance(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  if (!s.leader) return;
  const coming = holdable(s, now, cfg, 1);
  for (const [job, j] of s.jobs) {
    if (j.holdUntilMs === undefined || j.admitting) continue;
    if (views(s, j.tried).length > 0 || now > j.holdUntilMs || !coming) {
      // the hold is over: one more look, without holding again
      const next = { ...j, holdUntilMs: -Infinity };
      tryDispatch(s, fx, job, next, now, cfg);
    }
  }
  if (s.reshard) reshardAdvance(s, fx, now, cfg);
  else if (s.pendingReshard) resumeReshard(s, fx, now, cfg);
}

/** The previous leader's unfinished re-shard, begun again from the layout now once every instance is ready and nothing starts. */
function resumeReshard(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const live = aliveInstances(s);
  if (s.reconciling > 0 || s.starting.size || s.planning || !live.length || live.some((x) => x.state !== 'ready' && x.state !== 'sleeping')) return;
  const target = s.pendingReshard!;
  s.pendingReshard = undefined;
  beginReshard(s, fx, target, now, cfg);
}

// ------------------------------------------------------------------ assignment and reconciliation

function nodeCmd(s: PoolMachineState, fx: PoolEffect[], node: string | undefined, cmd: NodeCommand, purpose: 'reconcile' | 'reshard'): boolean {
  if (!node) return false;
  if (purpose === 'reconcile') s.reconciling++;
  fx.push({ kind: 'node', node, cmd, purpose });
  return true;
}

/** Instances this pool should run on its grants: the re-shard's layout where there is one, else initialTp. */
function reconcile(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const a = s.assignment;
  if (!a || !s.leader || s.reconciling > 0 || s.reshard) return;
  const granted = new Map(a.grants.map((g) => [g.node, new Set(g.gpuIds)]));
  const live = aliveInstances(s);
  // stop instances on GPUs no longer granted (scale-in, merge)
  for (const st of live) {
    const g = st.node ? granted.get(st.node) : undefined;
    if (a.state === 'retired' || !g || !st.gpuIds.every((x) => g.has(x))) {
      if (st.state === 'draining') continue;
      if (nodeCmd(s, fx, st.node, { v: 1, op: 'stop_instance', instanceId: st.id, graceMs: 30_000, reason: `GPUs of ${st.id} no longer granted to ${cfg.pool}` }, 'reconcile')) {
        fx.push({ kind: 'event', event: 'scale', summary: `${cfg.pool}: stop ${st.id} (GPUs returned)`, decision: { stop: st.id }, inputs: { epoch: a.epoch } });
      }
    }
  }
  if (a.state === 'retired') return;
  // a start the node took but whose instance never reported is forgotten (its GPUs are free again)
  for (const [id, st] of s.starting) if (now - st.atMs > cfg.healthDeadlineMs + 10_000) s.starting.delete(id);
  // start instances on granted GPUs nobody uses (after a re-shard: only what its layout misses)
  const missing = new Map<number, number>();
  if (s.target) {
    for (const t of s.target) missing.set(t.tp, t.count);
    for (const st of live) missing.set(st.tp, (missing.get(st.tp) ?? 0) - 1);
    for (const st of s.starting.values()) missing.set(st.gpuIds.length, (missing.get(st.gpuIds.length) ?? 0) - 1);
  }
  for (const g of a.grants) {
    let tp = s.target ? [...missing].filter(([, n]) => n > 0).map(([t]) => t).sort((x, y) => y - x)[0] ?? 0 : cfg.initialTp;
    if (!tp) break;
    while (tp > 1 && tp > g.gpuIds.length) tp /= 2;
    const used = new Set<number>();
    for (const st of live) if (st.node === g.node) for (const x of st.gpuIds) used.add(x);
    for (const st of s.starting.values()) if (st.node === g.node) for (const x of st.gpuIds) used.add(x);
    const free = g.gpuIds.filter((x) => !used.has(x)).sort((x, y) => x - y);
    // no target (first fill, or a successor of a leader whose re-shard unit was cut short): GPUs left after the
    // initialTp instances get the largest smaller degree the profile runs, so no granted GPU stays idle
    const groups = gpuGroups(free, tp);
    let left = s.target ? [] : free.slice(groups.length * tp);
    for (let k = tp / 2; k >= 1 && left.length; k /= 2) {
      if (!cfg.profile?.tpDegrees.includes(k)) continue;
      const more = gpuGroups(left, k);
      groups.push(...more);
      left = left.slice(more.length * k);
    }
    for (const group of groups) {
      if (s.target) {
        if ((missing.get(tp) ?? 0) <= 0) break;
        missing.set(tp, missing.get(tp)! - 1);
      }
      const instanceId = instanceIdOf(cfg.pool, g.node, group);
      if (s.starting.has(instanceId)) continue;
      s.starting.set(instanceId, { atMs: now, node: g.node, gpuIds: group });
      nodeCmd(s, fx, g.node, { v: 1, op: 'start_instance', instanceId, pool: cfg.pool, tp: group.length as 1 | 2 | 4 | 8, gpuIds: group, reason: `fill granted GPUs of ${cfg.pool}` }, 'reconcile');
      fx.push({ kind: 'event', event: 'scale', summary: `${cfg.pool}: start ${instanceId} (TP${group.length})`, decision: { start: instanceId, node: g.node, gpuIds: group, tp: group.length }, inputs: { epoch: a.epoch } });
    }
  }
}

/** The id of the instance on (node, GPUs): the node agent and the pool both derive the GPUs from it. */
export function instanceIdOf(pool: string, node: string, gpuIds: number[]): string {
  return `${pool}-${node}-g${gpuIds[0]}x${gpuIds.length}`;
}

function nodeResult(s: PoolMachineState, fx: PoolEffect[], cmd: NodeCommand, ok: boolean, purpose: 'reconcile' | 'reshard', now: number, cfg: PoolMachineConfig): void {
  if (purpose === 'reconcile') {
    s.reconciling = Math.max(0, s.reconciling - 1);
    // a start the node refused: its GPUs are free for the next reconciliation
    if (!ok && cmd.op === 'start_instance') s.starting.delete(cmd.instanceId);
    return;
  }
  const r = s.reshard;
  const p = r?.phase;
  if (!r || p?.kind !== 'start' || cmd.op !== 'start_instance' || cmd.instanceId !== p.id) return;
  if (ok) {
    s.starting.set(p.id, { atMs: now, node: p.node, gpuIds: p.gpuIds });
    s.reshard = { ...r, phase: { kind: 'ready', id: p.id, untilMs: now + cfg.healthDeadlineMs } };
  } else {
    // the node frees GPUs only once the old instance manager exited (clocks reset): retry while busy
    s.reshard = { ...r, phase: { ...p, inFlight: false, retryAtMs: now + 250 } };
  }
  reshardAdvance(s, fx, now, cfg);
}

// ------------------------------------------------------------------ re-shard epoch

function reshardEpoch(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig, force: boolean): void {
  if (!s.leader || s.reshard || s.reconciling > 0 || !s.assignment || !cfg.profile || s.starting.size || s.planning) return;
  const live = aliveInstances(s);
  // a change in progress: next epoch (an instance asleep through sleep mode is settled: one of the layout)
  if (!live.length || live.some((x) => x.state !== 'ready' && x.state !== 'sleeping')) return;
  // the pool's arrivals since the last epoch, those of instances stopped since included (its instances' estimates until it counted any)
  const { load: counted, next } = epochArrivalLoad(s.epochArrivals, cfg.epochMs, cfg.timeScale);
  s.epochArrivals = next;
  const measured = counted ?? poolEpochLoad(s);
  // the burst guard: the split keeps what the window's highest minute needs; the instances it does not need are left out
  s.recentLoad = recordPoolArrivals(s.recentLoad, {}, now, cfg.burstWindowMs ?? 0);
  const { load: peak, guarded } = guardedPoolLoad(measured, windowPeak(s.recentLoad, cfg.timeScale));
  const input: PoolShardInput = {
    profile: cfg.profile, load: measured, ...(guarded ? { peak, allowIdleGpus: true } : {}), gpus: s.assignment.grants.reduce((n, g) => n + g.gpuIds.length, 0), current: live.map((x) => x.tp), ...poolPrefixReuse(live),
    epochS: cfg.epochMs / 1000, gpusPerServer: grantGpusPerServer(s.assignment), headroom: cfg.headroom, ...(cfg.overhead ? { overhead: cfg.overhead } : {}),
  };
  if (cfg.planner === 'milp') {
    s.planning = true;
    fx.push({ kind: 'solve', input, force });
    return;
  }
  decideReshard(s, fx, planPoolShards(input), now, cfg, force);
}

function decideReshard(s: PoolMachineState, fx: PoolEffect[], plan: PoolShardDecision | undefined, now: number, cfg: PoolMachineConfig, force: boolean): void {
  if (!plan) return;
  const live = aliveInstances(s);
  let [take, summary] = [plan.take, plan.summary];
  // never dark while it carries load (a unit draining every serving instance first holds every request for an engine start)
  const dark = take && !cfg.reshardKeepsServing && Object.values(poolLoad(s)).some((v) => v > 0) ? darkReshardUnit(...reshardPlacement(s, plan.target)) : undefined;
  if (dark) {
    take = false;
    summary = `${summary}; not taken: its TP${dark.tp} unit on GPUs [${[...dark.gpus].sort((x, y) => x - y).join(',')}] drains ${dark.from.join(', ')} first and leaves the pool with no instance serving while the new one starts`;
  }
  fx.push({
    kind: 'event', event: 'reshard', summary: `${cfg.pool}: ${take ? 'take' : 'keep'} ${summary}`, decision: { take, target: plan.target, force, ...(dark ? { dark: true } : {}) },
    inputs: { ...plan.inputs, instances: live.map((x) => ({ id: x.id, tp: x.tp, node: x.node, gpuIds: x.gpuIds })) },
  });
  if (take) beginReshard(s, fx, plan.target, now, cfg);
}

/** The pool's instances on global GPU indices (server k of the grants = k * gps) and the staggered units to `target`. */
function reshardPlacement(s: PoolMachineState, target: InstanceConfig[]): [CurrentInstance[], StaggerUnit[]] {
  const a = s.assignment!;
  const gps = grantGpusPerServer(a);
  const nodeIdx = new Map(a.grants.map((g, k) => [g.node, k]));
  // inFlight: which of like instances a scale-in stops, and when (policy stopsByLoad)
  const current = aliveInstances(s).map((x) => ({ id: x.id, tp: x.tp, gpus: x.gpuIds.map((g) => (nodeIdx.get(x.node ?? '') ?? 0) * gps + g), inFlight: x.queued + x.running }));
  return [current, reshardSteps(current, target, gps, a.grants.flatMap((g, k) => g.gpuIds.map((x) => k * gps + x))).flat()];
}

/**
 * Staggered re-shard (policy staggerSteps over matchReshard: the placement that keeps the most weights in
 * place), one unit at a time, capacity added before it is removed. A unit whose GPUs are free (memory
 * allows) starts the new instance first and retires the old ones once it is ready; otherwise the old ones
 * drain first (the pool dispatches to the others, or holds requests while nothing is ready), then the new
 * one starts on their GPUs.
 */
function beginReshard(s: PoolMachineState, fx: PoolEffect[], target: InstanceConfig[], now: number, cfg: PoolMachineConfig): void {
  const a = s.assignment!;
  const gps = grantGpusPerServer(a);
  const nodeIdx = new Map(a.grants.map((g, k) => [g.node, k]));
  const granted = new Set(a.grants.flatMap((g, k) => g.gpuIds.map((x) => k * gps + x)));
  const [current, units] = reshardPlacement(s, target);
  if (units.some((u) => u.gpus.some((g) => !granted.has(g)))) {
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard placement leaves the granted GPUs; not executed`, decision: { target, units }, inputs: { grants: a.grants } });
    return;
  }
  fx.push({
    kind: 'event', event: 'reshard', summary: `${cfg.pool}: executing ${units.length} staggered unit(s)`, decision: { units: units.map((u) => ({ kind: u.kind, tp: u.tp, gpus: u.gpus, from: u.from })) },
    inputs: { current, target, gpusPerServer: gps },
  });
  // no command before the record is stored: a leader killed after its first drain leaves its successor the target
  s.reshard = { target, units, unit: -1, todo: [], gps, startedMs: now, current, nodeIdx, storeUntilMs: now + RESHARD_STORE_MS };
  fx.push({ kind: 'persist_reshard', epoch: a.epoch, target, state: 'running', ack: now });
}

/** How long a re-shard waits for its record to be stored before it is not executed, ms. */
const RESHARD_STORE_MS = 10_000;

/** The store's answer to the record of the re-shard begun at `ack`: its first unit begins, or it is not executed. */
function reshardStored(s: PoolMachineState, fx: PoolEffect[], ack: number, ok: boolean, now: number, cfg: PoolMachineConfig): void {
  const r = s.reshard;
  if (!r || r.storeUntilMs === undefined || r.startedMs !== ack) return;
  if (!ok || now > r.storeUntilMs) {
    s.reshard = undefined;
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard not executed: its record was not stored (a successor could not finish it)`, decision: { target: r.target, stored: false }, inputs: {} });
    return;
  }
  s.reshard = { ...r, storeUntilMs: undefined };
  nextUnit(s, fx, now, cfg);
  reshardAdvance(s, fx, now, cfg);
}

/** The steps of the next unit (or the end of the re-shard). */
function nextUnit(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const r = s.reshard!;
  const unit = r.unit + 1;
  const u = r.units[unit];
  if (!u) {
    s.target = r.target;
    s.reshard = undefined;
    if (s.assignment) fx.push({ kind: 'persist_reshard', epoch: s.assignment.epoch, target: r.target, state: 'complete' });
    fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: re-shard complete in ${now - r.startedMs} ms`, decision: { complete: true, target: r.target, instances: aliveInstances(s).map((x) => ({ id: x.id, tp: x.tp })) }, inputs: {} });
    return;
  }
  const a = s.assignment!;
  const node = a.grants[Math.floor(u.gpus[0]! / r.gps)]!.node;
  // ascending (the node agent starts an instance on these GPUs in this order); the instance id names the lowest GPU and the
  // count. The GPUs need not be adjacent: the matching keeps weights in place (TP4 [0,1,2,3] -> TP2 [0,2] and [1,3])
  const local = u.gpus.map((g) => g % r.gps).sort((x, y) => x - y);
  const toGlobal = (n: string | undefined, g: number) => (r.nodeIdx.get(n ?? '') ?? 0) * r.gps + g;
  const busy = new Set(aliveInstances(s).filter((x) => !u.from.includes(x.id)).flatMap((x) => x.gpuIds.map((g) => toGlobal(x.node, g))));
  const fromGpus = new Set(r.current.filter((c) => u.from.includes(c.id)).flatMap((c) => c.gpus));
  const id = instanceIdOf(cfg.pool, node, local);
  // policy unitSteps: the order the simulator's executor runs too
  const steps = unitSteps(u, (g) => fromGpus.has(g) || busy.has(g));
  const todo: Step[] = u.kind === 'stop'
    ? [{ kind: 'retire', ids: u.from, why: 're-shard: stop' }]
    : steps[0] === 'start'
      // memory allows: the new instance first, the old ones serve until it is ready
      ? steps.map((k): Step => (k === 'start' ? { kind: 'start', node, gpuIds: local, id, why: 're-shard: start' } : { kind: 'retire', ids: u.from, why: `re-shard: replaced by ${id}` }))
      : [{ kind: 'retire', ids: u.from, why: 're-shard: stop first (GPUs reused)' }, { kind: 'start', node, gpuIds: local, id, why: 're-shard: start on freed GPUs' }];
  s.reshard = { ...r, unit, todo, phase: undefined, unitNode: node, unitLocal: local };
}

type Step = { kind: 'retire'; ids: string[]; why: string } | { kind: 'start'; node: string; gpuIds: number[]; id: string; why: string };

/** Enter a step: its commands go out, its wait begins. */
function enter(s: PoolMachineState, fx: PoolEffect[], step: Step, now: number, cfg: PoolMachineConfig): Phase {
  if (step.kind === 'retire') {
    for (const id of step.ids) fx.push({ kind: 'drain', instance: id, reason: step.why });
    return { kind: 'drain', ids: step.ids, why: step.why, sinceMs: now, untilMs: now + 60_000 };
  }
  fx.push({ kind: 'node', node: step.node, cmd: startCmd(cfg.pool, step), purpose: 'reshard' });
  return { kind: 'start', node: step.node, gpuIds: step.gpuIds, id: step.id, why: step.why, untilMs: now + 30_000, retryAtMs: 0, inFlight: true };
}

function startCmd(pool: string, p: { node: string; gpuIds: number[]; id: string; why: string }): NodeCommand {
  return { v: 1, op: 'start_instance', instanceId: p.id, pool, tp: p.gpuIds.length as 1 | 2 | 4 | 8, gpuIds: p.gpuIds, reason: p.why };
}

/** The re-shard moves on as far as its waits allow. */
function reshardAdvance(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  for (let guard = 0; guard < 64 && s.reshard; guard++) {
    const r = s.reshard;
    if (r.storeUntilMs !== undefined) return now > r.storeUntilMs ? reshardStored(s, fx, r.startedMs, false, now, cfg) : undefined;
    if (!r.phase) {
      const [step, ...rest] = r.todo;
      if (!step) {
        fx.push({ kind: 'event', event: 'reshard', summary: `${cfg.pool}: unit ${r.units[r.unit]!.kind} TP${r.units[r.unit]!.tp} on ${r.unitNode} [${(r.unitLocal ?? []).join(',')}] done`, decision: { kind: r.units[r.unit]!.kind, tp: r.units[r.unit]!.tp, node: r.unitNode, gpuIds: r.unitLocal, from: r.units[r.unit]!.from }, inputs: {} });
        nextUnit(s, fx, now, cfg);
        continue;
      }
      s.reshard = { ...r, todo: rest, phase: enter(s, fx, step, now, cfg) };
      continue;
    }
    const p = r.phase;
    const inst = (id: string) => s.instances.get(id);
    let done = false;
    switch (p.kind) {
      case 'drain':
        // empty by a status sent after the drain (an older one may predate requests still in flight to it)
        if (p.ids.every((id) => { const t = inst(id); return !t?.alive || (t.lastSeenMs > p.sinceMs && t.status.queued === 0 && t.status.running === 0); }) || now > p.untilMs) {
          for (const id of p.ids) nodeCmd(s, fx, inst(id)?.status.node, { v: 1, op: 'stop_instance', instanceId: id, graceMs: 10_000, reason: p.why }, 'reshard');
          s.reshard = { ...r, phase: { kind: 'stopped', ids: p.ids, why: p.why, untilMs: now + 20_000 } };
          continue;
        }
        break;
      case 'stopped':
        done = p.ids.every((id) => !inst(id)?.alive) || now > p.untilMs;
        break;
      case 'start':
        if (p.inFlight) break;
        if (now >= p.untilMs) done = true; // the node never took it: the unit goes on without it
        else if (now >= p.retryAtMs) {
          fx.push({ kind: 'node', node: p.node, cmd: startCmd(cfg.pool, p), purpose: 'reshard' });
          s.reshard = { ...r, phase: { ...p, inFlight: true } };
        }
        break;
      case 'ready': {
        const t = inst(p.id);
        done = (t?.alive === true && t.status.state === 'ready') || now > p.untilMs;
        break;
      }
    }
    if (!done) return;
    s.reshard = { ...r, phase: undefined };
  }
}
