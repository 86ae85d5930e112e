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
 *
 * Its parts: pool-types.ts (state, events, effects), pool-instances.ts (instance tracking and deaths),
 * pool-dispatch.ts (dispatch, holds, moves), pool-reconcile.ts (reconciliation), pool-reshard.ts (the re-shard
 * epoch and its staggered execution), pool-takeover.ts (what a successor takes over of a re-shard).
 */
import type { RequestType } from '../../../protocols/request-types.ts';
import type { PoolAssignment } from '../../../protocols/control.ts';
import { connectionEndedSeen, endedKeepMs, initialEndedConnections } from '../connection-ended.ts';
import { aliveInstances } from './router.ts';
export { aliveInstances, poolDispatchView, poolLoad } from './router.ts';
import { adoptReshard, adoptReshardOnAssign, resumeOrphanDrain } from './pool-takeover.ts';
import { addEpochArrivals, admittedBetween, recordPoolArrivals } from '../pool-shards.ts';
import { refusal, type DispatchJob, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState, type PoolStepResult } from './pool-types.ts';
import { admitResult, dispatch, dispatchedStored, finish, holdable, move, tryDispatch, views } from './pool-dispatch.ts';
import { adoptDispatched, linkProven, onStatus, sweep } from './pool-instances.ts';
import { reconcile } from './pool-reconcile.ts';
import { milpShardDecision } from '../pool-shards-milp.ts';
import { decideReshard, nodeResult, reshardAdvance, reshardEpoch, reshardStored, resumeReshard } from './pool-reshard.ts';
export type { DispatchedListEntry, PoolEffect, PoolEvent, PoolMachineConfig, PoolMachineState, PoolStepResult, StoredReshard, TrackedInstance } from './pool-types.ts';
export { instanceIdOf } from './pool-reconcile.ts';
export { poolLinkProofGapMs } from './pool-instances.ts';

export function initialPoolState(types: RequestType[]): PoolMachineState {
  return { leader: false, types, instances: new Map(), outstanding: new Map(), graves: new Map(), starting: new Map(), jobs: new Map(), moves: new Map(), nextJob: 1, reconciling: 0, recentLoad: [], ended: initialEndedConnections() };
}

/** Ready-check period of the waits (held dispatches, re-shard steps), ms. */
export const POOL_TICK_MS = 100;

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
  // a lead past its lease (a process resumed after a stall longer than the lease, its step-down timer not run yet) may
  // be another replica's by now: it ends before this event decides anything (what the event asks is refused below)
  if (s.leader && s.leaseUntilMs !== undefined && now >= s.leaseUntilMs && ev.type !== 'lease' && ev.type !== 'lead' && ev.type !== 'lost') {
    fx.push({ kind: 'lease_lapsed', untilMs: s.leaseUntilMs });
    leaveLead(s, fx, now, cfg, `${cfg.holder} stopped leading ${cfg.pool}: its lease may have lapsed ${now - s.leaseUntilMs} ms ago`, { lapsedMs: now - s.leaseUntilMs });
  }
  switch (ev.type) {
    case 'start':
      fx.push({ kind: 'arm_timer', timer: 'sweep', everyMs: Math.max(50, Math.floor(cfg.deadAfterMs / 4)) });
      break;
    case 'lead':
      s.leader = true;
      s.leaseUntilMs = ev.leaseUntilMs;
      s.tickPaused = undefined; // armed below
      s.ledAtMs = now;
      fx.push({ kind: 'event', event: 'lease', summary: `${cfg.holder} leads ${cfg.pool}`, decision: { leader: cfg.holder, term: ev.term }, inputs: { pool: cfg.pool } });
      s.assignmentUnread = ev.unread === true;
      adoptStored(s, fx, ev.stored, cfg);
      s.diedHandled = ev.dispatched === undefined ? [] : undefined;
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
    case 'stored':
      // the reads a lead began without, answered now
      if (!s.leader) break;
      if (ev.assignment) {
        s.assignmentUnread = false;
        adoptStored(s, fx, ev.assignment.stored, cfg);
      }
      if (ev.dispatched) {
        // what this lead already ended or re-dispatched at a death is not the list's to handle again
        const handled = new Set(s.diedHandled ?? []);
        s.diedHandled = undefined;
        adoptDispatched(s, fx, ev.dispatched.filter((d) => !handled.has(d.req.id)), now, cfg);
      }
      if (ev.reshard && !s.reshard) adoptReshard(s, fx, ev.reshard, cfg);
      reconcile(s, fx, now, cfg);
      break;
    case 'lease':
      if (s.leader) s.leaseUntilMs = ev.untilMs;
      break;
    case 'lost':
      // a lead already ended (its lease lapsed by this replica's clock), or none begun: nothing left to end
      if (!s.leader) break;
      leaveLead(s, fx, now, cfg, `${cfg.holder} lost the lead of ${cfg.pool}`, {});
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
      if (ev.stalledMs !== undefined && ev.stalledMs > 0) s.linkUpMs = now;
      if (!s.linkDown) sweep(s, fx, now, cfg);
      break;
    case 'conn_ended':
      s.ended = connectionEndedSeen(s.ended, ev.conn, now, endedKeepMs(cfg.deadAfterMs));
      break;
    case 'link':
      // the silence heard while its own link was down is not its instances': their death verdict counts from the link's
      // return (sweep), but their suspicion counts from their last status as ever, so an instance that died meanwhile
      // (a host lost with this replica's NATS node) leaves dispatch once a peer is heard again, not suspectAfterMs later
      if (ev.up && s.linkDown) s.linkUpMs = now;
      s.linkDown = !ev.up;
      break;
    case 'link_proven':
      linkProven(s, ev.sentMs, cfg);
      break;
    case 'tick':
      advance(s, fx, now, cfg);
      // nothing held and no re-shard under way: the timer stops until a step gives the tick something (below)
      if (s.leader && !s.tickPaused && !poolTickWanted(s)) {
        s.tickPaused = true;
        fx.push({ kind: 'pause_timer', timer: 'tick' });
      }
      break;
    case 'dispatch':
      if (!s.leader) fx.push({ kind: 'reply', ref: ev.ref, admission: { v: 1, id: ev.req.id, ok: false, pool: cfg.pool, error: notLeading(cfg) } });
      else dispatch(s, fx, ev.ref, ev.req, now, cfg);
      break;
    case 'dispatched_stored':
      dispatchedStored(s, fx, ev, now, cfg);
      break;
    case 'admit_result':
      admitResult(s, fx, ev, now, cfg);
      break;
    case 'move':
      if (!s.leader) fx.push({ kind: 'move_reply', ref: ev.ref, reply: { v: 1, placed: [], refused: ev.requests.map((r) => ({ id: r.id, error: notLeading(cfg) })) } });
      else move(s, fx, ev, now, cfg);
      break;
    case 'assign': {
      const a = ev.assignment;
      if (!s.leader) {
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: false, error: notLeading(cfg) });
      } else if (a.pool !== cfg.pool) {
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: false, error: { code: 'invalid_request', message: `assignment for ${a.pool} sent to ${cfg.pool}`, retryable: false } });
      } else if (s.assignment && a.epoch < s.assignment.epoch) {
        // the planner's is older than the one held: that one is no earlier lead's stale copy
        s.assignmentUnread = false;
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: true, detail: { ignored: 'stale epoch' } });
      } else {
        s.assignmentUnread = false;
        setAssignment(s, a);
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: true, detail: { epoch: a.epoch } });
        adoptReshardOnAssign(s, fx, a, cfg);
        reconcile(s, fx, now, cfg);
      }
      break;
    }
    case 'reshard_now':
      if (!s.leader) {
        fx.push({ kind: 'command_reply', ref: ev.ref, ok: false, error: notLeading(cfg) });
        break;
      }
      fx.push({ kind: 'command_reply', ref: ev.ref, ok: true });
      reshardEpoch(s, fx, now, cfg, true);
      break;
    case 'reconcile':
      reconcile(s, fx, now, cfg);
      break;
    case 'reshard_epoch':
      reshardEpoch(s, fx, now, cfg, ev.force ?? false);
      break;
    case 'planned': {
      const p = s.planning;
      s.planning = undefined;
      if (p && ev.solved && s.leader && !s.reshard && !s.assignmentUnread) decideReshard(s, fx, milpShardDecision(p.input, p.heuristic, ev.solved), now, cfg, ev.force ?? false);
      break;
    }
    case 'node_result':
      nodeResult(s, fx, ev.cmd, ev.ok, ev.purpose, now, cfg);
      break;
    case 'reshard_stored':
      reshardStored(s, fx, ev.ack, ev.ok, now, cfg);
      break;
  }
  // a paused tick runs again from the step that holds a dispatch or starts a re-shard
  if (s.tickPaused && poolTickWanted(s)) {
    s.tickPaused = false;
    fx.push({ kind: 'arm_timer', timer: 'tick', everyMs: POOL_TICK_MS });
  }
  return { state: s, effects: fx };
}

/** The refusal of what only a leader does, asked of a replica that does not lead (its lease lapsed): the caller retries on the leader. */
const notLeading = (cfg: PoolMachineConfig) => refusal(cfg, 'unavailable', `${cfg.holder} does not lead ${cfg.pool}`);

/**
 * The lead ends (the lease lost, or lapsed by this replica's clock): the leader's timers and waits stop, and every
 * dispatch under way is answered: a refusal (retryable: its caller tries the new leader), except an admission whose
 * entry is being stored, which stands (its instance runs the request).
 */
function leaveLead(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig, summary: string, inputs: Record<string, unknown>): void {
  s.leader = false;
  s.leaseUntilMs = undefined;
  s.tickPaused = undefined; // disarmed with the leader's timers
  s.assignmentUnread = false;
  s.diedHandled = undefined;
  fx.push({ kind: 'event', event: 'lease', summary, decision: { leader: null }, inputs: { pool: cfg.pool, ...inputs } }, { kind: 'disarm_leader_timers' });
  s.reshard = undefined;
  s.pendingReshard = undefined;
  s.unadoptedReshard = undefined;
  s.planning = undefined;
  s.reconciling = 0;
  s.trafficAtMs = undefined;
  s.epochArrivals = undefined;
  for (const [job, j] of s.jobs) finish(s, fx, job, j, now, cfg, j.storing ? undefined : refusal(cfg, 'unavailable', `${cfg.holder} no longer leads ${cfg.pool}`), j.storing);
}

/**
 * Whether the leader's tick may act (advance): a dispatch job held or waiting for its next try, a re-shard under
 * way or one waiting to resume. Otherwise a tick changes nothing.
 */
export function poolTickWanted(s: PoolMachineState): boolean {
  return s.leader && (s.jobs.size > 0 || s.reshard !== undefined || s.pendingReshard !== undefined);
}

/**
 * Whether a request record (subjects.telRequest) can change the machine: a 'record' acts only on an outstanding entry
 * (a request it dispatched, or one of the dispatched list it adopted), and a dispatch under way (a job) makes one.
 * Otherwise every record is another's (the gateway routed the request itself) and the shell need not receive it.
 */
export function poolRecordsWanted(s: PoolMachineState): boolean {
  return s.outstanding.size > 0 || s.jobs.size > 0;
}

/**
 * The assignment the store holds, read by a new leader: taken when newer than the one held. A store of the cluster's
 * own (`ownStore`) is this run's; another (a shared NATS server keeps a previous run's KV) is this cluster's only when
 * an instance of the pool is alive or the planner already sent this replica one; otherwise the planner sends the
 * current one (it re-sends an assignment to a pool whose status shows an older epoch) and nothing starts from a
 * previous plan.
 */
function adoptStored(s: PoolMachineState, fx: PoolEffect[], stored: PoolAssignment | undefined, cfg: PoolMachineConfig): void {
  if (!stored || (s.assignment && stored.epoch <= s.assignment.epoch)) return;
  if (s.assignment || aliveInstances(s).length > 0 || cfg.ownStore) setAssignment(s, stored);
  else {
    s.unadopted = stored;
    fx.push({ kind: 'event', event: 'lease', summary: `${cfg.pool}: stored assignment (epoch ${stored.epoch}) not adopted: no live instance of the pool; waiting for the cluster planner`,
      decision: { adopted: false, storedEpoch: stored.epoch }, inputs: { pool: cfg.pool, issuedBy: stored.issuedBy, atMs: stored.atMs } });
  }
}

function setAssignment(s: PoolMachineState, a: PoolAssignment): void {
  if (a.epoch !== s.assignment?.epoch) s.pendingReshard = undefined;
  s.assignment = a;
  s.types = a.types;
}

/** A dispatch held, or past its hold, waiting for its next try (not an admission in flight). */
const waiting = (j: DispatchJob): boolean => j.holdUntilMs !== undefined && !j.admitting;

/** Held dispatches and the re-shard's waits move on (a status arrived, or the tick). */
function advance(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  if (!s.leader) return;
  if (s.jobs.size) advanceHeld(s, fx, now, cfg);
  if (s.reshard) reshardAdvance(s, fx, now, cfg);
  else if (s.pendingReshard) resumeReshard(s, fx, now, cfg);
}

/** The held dispatches that may go on do (an instance to try, the hold over, or no capacity coming); nothing to do with none held. */
function advanceHeld(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  // one look per job, no copy, before the work below (every status, every 250 ms per instance, comes through here)
  let any = false;
  for (const j of s.jobs.values()) {
    if (waiting(j)) {
      any = true;
      break;
    }
  }
  if (!any) return;
  const coming = holdable(s, now, cfg, 1);
  // the held requests go on by TTFT deadline, the earliest first (a request not yet classified by its arrival)
  const byDeadline = [...s.jobs].filter(([, j]) => waiting(j))
    .sort(([, a], [, b]) => (a.req.ttftDeadlineMs ?? a.req.arrivalMs) - (b.req.ttftDeadlineMs ?? b.req.arrivalMs));
  for (const [job] of byDeadline) {
    const j = s.jobs.get(job);
    if (!j || j.holdUntilMs === undefined || j.admitting) continue;
    if (views(s, j.tried, now, cfg).length > 0 || now > j.holdUntilMs || !coming) {
      // the hold is over: one more look, without holding again
      const next = { ...j, holdUntilMs: -Infinity };
      tryDispatch(s, fx, job, next, now, cfg);
    }
  }
}
