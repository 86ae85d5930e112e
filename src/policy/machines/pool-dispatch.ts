/**
 * The pool machine's dispatch (src/policy/machines/pool.ts poolStep): idempotent by request id, the instance the
 * policy chooses (dispatchRequest), the next best on a refusal (at most DISPATCH_TRIES), the hold while capacity is
 * coming, the answer to whoever waits (a dispatch call, a move, a re-dispatch after a death), and the moves of
 * emergency step 3. Pure helpers of poolStep: they edit the state poolStep handed them and add effects.
 */
import type { Admission, InferenceRequest } from '../../../protocols/messages.ts';
import type { WireError } from '../../../protocols/errors.ts';
import { dispatchRequest } from '../dispatch.ts';
import { aliveAt, capacityComing, countDispatched, dispatchViews, type DispatchViewOf } from './router.ts';
import { refusal, UNSEEN, type DispatchJob, type MoveJob, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState, type TrackedInstance } from './pool-types.ts';

/** Tries of one dispatch (the chosen instance, then the next best on each refusal). */
const DISPATCH_TRIES = 4;

/** Whether a request with no ready instance may be held: capacity is coming (router capacityComing); `self`: held jobs not to count. */
export const holdable = (s: PoolMachineState, now: number, cfg: PoolMachineConfig, self = 0) => capacityComing({
  reshard: s.reshard !== undefined, starting: s.starting.size, held: [...s.jobs.values()].filter((j) => (j.holdUntilMs ?? -Infinity) > -Infinity).length - self,
  instances: s.instances.values(), assignment: s.assignment ?? s.unadopted, newLeader: s.ledAtMs !== undefined && now - s.ledAtMs < cfg.deadAfterMs });
/**
 * The dispatch views of the instances alive, not on an ended connection and not suspected at `now` (policy suspect.ts),
 * less `exclude`; the untried suspected ones once every heard one is excluded, unless for a `move` (router dispatchViews).
 */
export function views(s: PoolMachineState, exclude: Set<string>, now: number, cfg: PoolMachineConfig, move = false): DispatchViewOf[] {
  return dispatchViews(s.instances.values(), exclude, aliveAt(0, s.ended), { now, afterMs: cfg.suspectAfterMs, heardOnly: move });
}

/**
 * A dispatch call, idempotent by request id: one already admitted gets its admission again (the caller's
 * first answer was lost), one being dispatched is joined (a retry after the caller's timeout).
 */
export function dispatch(s: PoolMachineState, fx: PoolEffect[], ref: number, req: InferenceRequest, now: number, cfg: PoolMachineConfig): void {
  const o = s.outstanding.get(req.id);
  // admitted, its entry not stored yet: the retry is answered with the first call (cfg.storeBeforeReply)
  for (const [job, j] of o ? s.jobs : []) {
    if (j.req.id === req.id && j.storing) {
      s.jobs.set(job, { ...j, joined: [...(j.joined ?? []), ref] });
      return;
    }
  }
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
  const holder = now - (s.ledAtMs ?? -Infinity) < HELD_IDS_AFTER_LEAD_MS ? heldBy(s, req.id) : undefined;
  if (holder) return adoptHeld(s, fx, ref, req, holder, now, cfg);
  newJob(s, fx, { req, origin: { kind: 'dispatch', ref }, exclude: new Set(), tried: new Set(), attempts: 0 }, now, cfg);
}

/**
 * How long after it took the lead a leader looks for a dispatch's id in its live instances' statuses, ms: the longest a
 * gateway sends an admission again under the same id (its holdLimitMs, 60 s by default).
 */
export const HELD_IDS_AFTER_LEAD_MS = 60_000;

/**
 * The live instance whose last status lists `id` as queued or running: a predecessor admitted it there and died before
 * its dispatched entry was stored (this leader's list lacks it), and the caller sends it again under the same id.
 */
export function heldBy(s: PoolMachineState, id: string): TrackedInstance | undefined {
  for (const t of s.instances.values()) if (t.alive && (t.status.queuedIds.includes(id) || t.status.runningIds.includes(id))) return t;
  return undefined;
}

/** A dispatch of a request a live instance holds already: its entry stored for that instance and the admission answered, never a second admission. */
function adoptHeld(s: PoolMachineState, fx: PoolEffect[], ref: number, req: InferenceRequest, t: TrackedInstance, now: number, cfg: PoolMachineConfig): void {
  const instance = t.status.id;
  const proc = t.status.startedMs !== UNSEEN ? { startedMs: t.status.startedMs } : {};
  const r = { ...req, pool: cfg.pool };
  s.outstanding.set(req.id, { req: r, instance, atMs: now, ...proc });
  fx.push({ kind: 'persist_dispatched', req: r, instance, atMs: now, ...proc });
  fx.push({ kind: 'event', event: 'failure', summary: `${cfg.pool}: request ${req.id} is held by ${instance} already (admitted before this leader's list knew it)`, decision: { instance, adopted: true }, inputs: { pool: cfg.pool, id: req.id } });
  fx.push({ kind: 'reply', ref, admission: { v: 1, id: req.id, ok: true, pool: cfg.pool, instance } });
}

export function newJob(s: PoolMachineState, fx: PoolEffect[], j: DispatchJob, now: number, cfg: PoolMachineConfig): void {
  const job = s.nextJob++;
  s.jobs.set(job, j);
  tryDispatch(s, fx, job, j, now, cfg);
}

/** The next try of a dispatch: hold it, send it to the best instance not tried yet, or give up. */
export function tryDispatch(s: PoolMachineState, fx: PoolEffect[], job: number, j: DispatchJob, now: number, cfg: PoolMachineConfig): void {
  // a moved request goes only to a peer heard within suspectAfterMs, none when every peer is silent (views: heardOnly)
  let v = views(s, j.tried, now, cfg, j.origin.kind === 'move');
  if (!v.length && j.origin.kind !== 'move' && (j.holdEndMs !== undefined || holdable(s, now, cfg))) {
    // capacity is coming (a re-shard, a start, an engine restart, granted GPUs the reconciliation fills): hold the
    // request until an instance is ready, bounded by its give-up time and the engine health deadline (a second
    // hold after a refused admit ends with the first). An instance it tried that is not ready now is tried again.
    const until = j.holdUntilMs ?? j.holdEndMs ?? Math.min(j.req.giveUpAtMs - 1000, Math.max(now + cfg.healthDeadlineMs, j.req.arrivalMs + (cfg.holdLimitMs ?? 0)));
    if (now <= until) {
      const ready = new Set(views(s, new Set(), now, cfg).map((x) => x.id));
      const tried = new Set([...j.tried].filter((id) => (ready.has(id) && !j.unready?.has(id)) || j.exclude.has(id)));
      s.jobs.set(job, { ...j, tried, attempts: Math.min(j.attempts, tried.size), holdUntilMs: until, holdEndMs: until });
      fx.push({ kind: 'held', req: j.req, forMs: until - now, first: j.holdEndMs === undefined });
      return;
    }
    v = views(s, j.tried, now, cfg);
  }
  if (!v.length || j.attempts >= DISPATCH_TRIES) return finish(s, fx, job, j, now, cfg, j.lastError ?? refusal(cfg, 'overloaded', `pool ${cfg.pool} has no ready instance`));
  const { id: choice, capped } = dispatchRequest(j.req, v, cfg.profile, s.types, { headroom: cfg.headroom, ...(cfg.prefer ? { prefer: (ids: string[]) => cfg.prefer!(j.req, ids) } : {}) });
  // at its SLO cap, a request the intake may spill goes on to the next pool (spillPasses); else counted at once in the local view so a burst spreads before the next status
  if (capped && j.req.spill && j.origin.kind === 'dispatch' && j.attempts === 0) return finish(s, fx, job, j, now, cfg, refusal(cfg, 'overloaded', `pool ${cfg.pool}: every instance at its SLO cap`));
  s.instances.set(choice, countDispatched(s.instances.get(choice)!, j.req.inputTokens));
  s.jobs.set(job, { ...j, tried: new Set([...j.tried, choice]), attempts: j.attempts + 1, admitting: choice, holdUntilMs: undefined });
  fx.push({ kind: 'admit', job, instance: choice, req: { ...j.req, pool: cfg.pool } });
}

export function admitResult(s: PoolMachineState, fx: PoolEffect[], ev: Extract<PoolEvent, { type: 'admit_result' }>, now: number, cfg: PoolMachineConfig): void {
  const j = s.jobs.get(ev.job);
  if (!j?.admitting) return;
  const a = ev.admission;
  if (a?.ok) {
    const req = { ...j.req, pool: cfg.pool };
    const started = s.instances.get(j.admitting)?.status.startedMs;
    const proc = started !== undefined && started !== UNSEEN ? { startedMs: started } : {};
    s.outstanding.set(j.req.id, { req, instance: j.admitting, atMs: now, ...proc });
    if (cfg.storeBeforeReply) {
      // answered once its entry is stored ('dispatched_stored'): a caller that has its admission finds the request in
      // the list a successor reads, also when this leader dies right after answering
      s.jobs.set(ev.job, { ...j, admitting: undefined, storing: { ...a, pool: cfg.pool } });
      fx.push({ kind: 'persist_dispatched', req, instance: j.admitting, atMs: now, ...proc, ack: ev.job });
      return;
    }
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

/**
 * The store's answer to an admitted request's entry: its admission goes to whoever waits, stored or not. A store
 * that failed (or did not answer within the shell's deadline) does not turn the admission into a refusal: the
 * instance runs the request, and a refusal would have its caller dispatch it a second time (a successor that lacks
 * the entry sends it to another instance: two streams). The entry is written once more without waiting, and the
 * failure is an event.
 */
export function dispatchedStored(s: PoolMachineState, fx: PoolEffect[], ev: Extract<PoolEvent, { type: 'dispatched_stored' }>, now: number, cfg: PoolMachineConfig): void {
  const j = s.jobs.get(ev.ack);
  if (!j?.storing) return;
  if (!ev.ok) {
    const o = s.outstanding.get(j.req.id);
    if (o && s.leader) fx.push({ kind: 'persist_dispatched', req: o.req, instance: o.instance, atMs: o.atMs, ...(o.startedMs !== undefined ? { startedMs: o.startedMs } : {}) });
    fx.push({ kind: 'event', event: 'failure', summary: `${cfg.pool}: request ${j.req.id} admitted on ${j.storing.instance ?? '?'} answered without its dispatched entry stored (written again)`,
      decision: { answered: 'admission', rewrite: o !== undefined && s.leader }, inputs: { pool: cfg.pool, id: j.req.id } });
  }
  finish(s, fx, ev.ack, j, now, cfg, undefined, j.storing);
}

/** The dispatch is over: answer whoever waits for it. */
export function finish(s: PoolMachineState, fx: PoolEffect[], job: number, j: DispatchJob, now: number, cfg: PoolMachineConfig, error?: WireError, accepted?: Admission): void {
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

/** Emergency step 3 of an instance (an engine crash, a stop): its requests go to heard peers with room (a peer as loaded helps nobody, a silent one may be cut off). */
export function move(s: PoolMachineState, fx: PoolEffect[], ev: Extract<PoolEvent, { type: 'move' }>, now: number, cfg: PoolMachineConfig): void {
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
