/**
 * The pool machine's view of its instances (src/policy/machines/pool.ts poolStep): statuses (out of order, a
 * restarted process, a placeholder's first status), the liveness sweep, the dispatched list a successor adopts,
 * and what a death does: the dead instance's queued requests go to peers, its started streams end with a retryable
 * error; a standby keeps the death (a grave) for when it leads. Pure helpers of poolStep: they edit the state
 * poolStep handed them and add effects.
 */
import type { InstanceStatus } from '../../../protocols/control.ts';
import type { InferenceRequest } from '../../../protocols/messages.ts';
import { subjects } from '../../../protocols/subjects.ts';
import { resumeOrphanDrain } from './pool-takeover.ts';
import { trackedStatus } from './router.ts';
import { newJob } from './pool-dispatch.ts';
import { refusal, UNSEEN, type DispatchedListEntry, type Outstanding, type PoolEffect, type PoolMachineConfig, type PoolMachineState } from './pool-types.ts';

export function onStatus(s: PoolMachineState, fx: PoolEffect[], st: InstanceStatus, now: number, cfg: PoolMachineConfig): void {
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
    s.instances.set(st.id, trackedStatus(t, st, now));
    if (t && !t.alive) fx.push({ kind: 'event', event: 'instance', summary: `${st.id} is back (${st.state})`, decision: { instance: st.id, alive: true }, inputs: { startedMs: st.startedMs } });
    resumeOrphanDrain(s, fx, st, cfg);
    goneProcesses(s, fx, st, now, cfg);
    return;
  }
  // a new process under the same id: whatever the old one held is gone (a placeholder held nothing known)
  if (st.startedMs !== t.status.startedMs && t.status.startedMs !== UNSEEN) instanceDied(s, fx, st.id, 'restarted', t.status, now, cfg, (o) => o.startedMs !== st.startedMs);
  s.instances.set(st.id, trackedStatus(t, st, now));
  if (t.status.startedMs !== UNSEEN) return;
  resumeOrphanDrain(s, fx, st, cfg);
  goneProcesses(s, fx, st, now, cfg);
}

/**
 * Requests kept for an earlier process of an instance than the one reporting now `st` (the stored list says
 * which process each went to): that process is gone, and its death is applied to them, with its last status
 * where this replica saw it (a grave), else as unknown (their streams end with a retryable error).
 */
export function goneProcesses(s: PoolMachineState, fx: PoolEffect[], st: InstanceStatus, now: number, cfg: PoolMachineConfig): void {
  if (!s.leader) return;
  const gone = new Set<number>();
  for (const o of s.outstanding.values()) if (o.instance === st.id && o.startedMs !== undefined && o.startedMs !== st.startedMs) gone.add(o.startedMs);
  for (const started of gone) {
    const last = s.graves.get(st.id)?.find((g) => g.status.startedMs === started)?.status
      ?? { ...st, startedMs: started, state: 'failed' as const, queued: 0, running: 0, queuedIds: [], runningIds: [], runningSeqs: [] };
    instanceDied(s, fx, st.id, `its process of ${started} is gone`, last, now, cfg, (o) => o.startedMs === started);
  }
}

/**
 * The longest a replica's link may go unproven before the silence it hears counts as its own, ms: half of deadAfterMs.
 * An instance heard until the link was cut (its statuses come at least every deadAfterMs / 2, config validation) has
 * not been silent for deadAfterMs while the last proof is younger than this, so a cut never yields its death; the
 * link's proofs (the lease's round trips, every min(leaseTtlMs, deadAfterMs) / 3) come well within it.
 */
export const poolLinkProofGapMs = (deadAfterMs: number): number => Math.floor(deadAfterMs / 2);

/** A round trip to the bus sent at `sentMs` was answered: after a longer gap than linkProofGapMs the death clocks start again from it. */
export function linkProven(s: PoolMachineState, sentMs: number, cfg: PoolMachineConfig): void {
  if (cfg.linkProofGapMs === undefined || (s.linkProvenMs !== undefined && sentMs <= s.linkProvenMs)) return;
  if (s.linkProvenMs === undefined || sentMs - s.linkProvenMs > cfg.linkProofGapMs) s.linkUpMs = Math.max(s.linkUpMs ?? -Infinity, sentMs);
  s.linkProvenMs = sentMs;
}

/**
 * Whether this replica may reach a death verdict at `now`: its link is proven within linkProofGapMs (always, where
 * the link is not watched). Otherwise the silence it hears may be its own (a cut not noticed yet, a partition).
 */
export function linkProvenAt(s: PoolMachineState, now: number, cfg: PoolMachineConfig): boolean {
  return cfg.linkProofGapMs === undefined || (s.linkProvenMs !== undefined && now - s.linkProvenMs <= cfg.linkProofGapMs);
}

export function sweep(s: PoolMachineState, fx: PoolEffect[], now: number, cfg: PoolMachineConfig): void {
  const verdicts = linkProvenAt(s, now, cfg);
  for (const [id, t] of s.instances) {
    if (t.alive && verdicts && now - Math.max(t.lastSeenMs, s.linkUpMs ?? -Infinity) > cfg.deadAfterMs) {
      s.instances.set(id, { ...t, alive: false, deadMs: now });
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
export function adoptDispatched(s: PoolMachineState, fx: PoolEffect[], list: DispatchedListEntry[], now: number, cfg: PoolMachineConfig): void {
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
      lastSeenMs: now, alive: true, stateSinceMs: now,
    });
  }
}

/**
 * An instance died (or restarted): its queued requests go to peers, its started streams end with a
 * retryable error. Only the leader acts; a standby just marks it.
 */
export function instanceDied(s: PoolMachineState, fx: PoolEffect[], id: string, why: string, last: InstanceStatus, now: number, cfg: PoolMachineConfig, only?: (o: Outstanding) => boolean): void {
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
  if (s.diedHandled) s.diedHandled = [...s.diedHandled, ...failed, ...redispatch.map((r) => r.id)].slice(-DIED_HANDLED_MAX);
  for (const r of redispatch) newJob(s, fx, { req: r, origin: { kind: 'redispatch' }, exclude: new Set([id]), tried: new Set([id]), attempts: 0 }, now, cfg);
}

/** The most request ids a lead keeps as handled at a death until it reads the dispatched list (PoolMachineState.diedHandled). */
export const DIED_HANDLED_MAX = 8192;

/** The stream subject of a request id (every leg streams on its own id's subject), undefined for an id no subject can carry. */
function streamOf(id: string): string | undefined {
  try {
    return subjects.stream(id);
  } catch {
    return undefined;
  }
}
