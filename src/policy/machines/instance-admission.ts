/**
 * The instance machine's admission and engine slots (src/policy/machines/instance.ts instanceStep): backpressure
 * to the pool, the queue bound and order, the pump that fills free engine slots, the arrivals counted, and the
 * admission credits lent to gateways (credits.ts). Pure helpers of instanceStep: they edit the state instanceStep
 * handed them and add effects.
 */
import { creditsOutstanding, lendFor, revokeCredits, spendCredit } from './credits.ts';
import { prefillRise } from './instance-clock.ts';
import { suspected } from '../suspect.ts';
import { countArrivals } from './instance-load.ts';
import { serving, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest, type PeerStatus, type Queued } from './instance-types.ts';

/** An admit: accepted (queued, started when a slot is free), or refused (lifecycle, backpressure to the pool, the queue bound). */
export function admit(s: InstanceMachineState, fx: InstanceEffect[], req: MachineRequest, now: number, cfg: InstanceMachineConfig): void {
  if (s.running.has(req.id) || s.queue.some((q) => q.id === req.id)) {
    fx.push({ kind: 'admitted', id: req.id });
    return;
  }
  if (s.lifecycle !== 'ready') {
    fx.push({ kind: 'refused', id: req.id, code: 'unavailable', message: `instance is ${s.lifecycle}`, retryAfterS: cfg.retryAfterS });
    return;
  }
  if (req.moves === 0 && s.running.size + creditsOutstanding(s.credits, now) >= cfg.maxInEngine) {
    // Backpressure to the pool: a request that would wait here for an engine slot (slots free at about
    // maxInEngine per mean service time) longer than half its TTFT SLO is refused (retryable) while a peer
    // has room, and the pool places it on another instance.
    const waitMs = ((s.queue.length + 1) * s.serviceMs) / cfg.maxInEngine;
    const peer = waitMs > req.ttftSloMs / 2 ? peerWithRoom(s, now, cfg) : undefined;
    if (peer) {
      // counted at once in this view as the peer's, where the pool places it: a burst that comes within one status
      // of the peer's fills its room here, then queues (two full peers, each seeing the other's last status, would
      // otherwise refuse every request of the burst)
      s.peers.set(peer.id, { ...peer.status, running: peer.status.running + 1 });
      fx.push({ kind: 'refused', id: req.id, code: 'overloaded', message: `engine full, ~${Math.round(waitMs)} ms to a free slot`, retryAfterS: cfg.retryAfterS });
      return;
    }
  }
  if (s.queue.length >= cfg.maxQueued) {
    fx.push({ kind: 'refused', id: req.id, code: 'overloaded', message: `instance admission queue full (bound ${cfg.maxQueued})`, retryAfterS: cfg.retryAfterS });
    return;
  }
  enqueue(s, { ...req, admittedMs: now });
  countArrival(s, req);
  fx.push({ kind: 'admitted', id: req.id });
  // the clock the prefill backlog needs is set before the prompt goes to the engine
  prefillRise(s, fx, now, cfg);
  pump(s, fx, now, cfg);
}

/** Into the queue: at its end (FIFO), or by TTFT deadline once the ladder reordered it. */
function enqueue(s: InstanceMachineState, q: Queued): void {
  if (!s.edf) {
    s.queue.push(q);
    return;
  }
  const i = s.queue.findIndex((x) => x.ttftDeadlineMs > q.ttftDeadlineMs);
  if (i < 0) s.queue.push(q);
  else s.queue.splice(i, 0, q);
}

/** Fill the free engine slots from the head of the queue. */
export function pump(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!serving(s)) return;
  // the seats of credits lent to gateways are theirs until spent or lapsed
  const lent = s.credits.loans.size ? creditsOutstanding(s.credits, now) : 0;
  while (s.running.size + lent < cfg.maxInEngine && s.queue.length > 0) {
    const q = s.queue.shift()!;
    s.running.set(q.id, { id: q.id, type: q.type, inputTokens: q.inputTokens, arrivalMs: q.arrivalMs, ttftDeadlineMs: q.ttftDeadlineMs, ttftSloMs: q.ttftSloMs, moves: q.moves, startedMs: now, prefilled: false });
    fx.push({ kind: 'start', id: q.id });
  }
}

/** Lends `gateway` credits (credits.ts lendFor); the loan goes in the reply of `id`. */
export function lend(s: InstanceMachineState, fx: InstanceEffect[], id: string, gateway: string, now: number, cfg: InstanceMachineConfig, want?: number): void {
  const lent = lendFor(s, gateway, now, cfg.maxInEngine, cfg.credits, want);
  if (lent) [s.credits, fx[fx.length]] = [lent.ledger, { kind: 'lent', id, gateway, loan: lent.loan }];
}

/** A request a gateway started on a credit: in the engine already, so it runs whatever the ledger says (an overdraft is counted); an arrival like an admitted one. */
export function creditedStart(s: InstanceMachineState, fx: InstanceEffect[], ev: Extract<InstanceEvent, { type: 'credited_start' }>, now: number, cfg: InstanceMachineConfig): void {
  if (s.running.has(ev.req.id) || s.queue.some((q) => q.id === ev.req.id)) return; // a duplicate report
  s.credits = spendCredit(s.credits, ev.gateway, ev.epoch, now).ledger;
  s.running.set(ev.req.id, { ...ev.req, startedMs: now, prefilled: false });
  countArrival(s, ev.req);
  fx.push({ kind: 'start', id: ev.req.id, credited: true });
  prefillRise(s, fx, now, cfg);
  if (ev.topUp) lend(s, fx, ev.req.id, ev.gateway, now, cfg, ev.want);
}

/**
 * An arrival at this instance: its epoch's arrivals (the EWMA) and its admission counter (status admittedByType: the
 * pool's burst window). A moved request (an emergency step 3's, a dead peer's queue re-dispatched: moves > 0) is not
 * one: it arrived at the pool once, and the instance that first admitted it counted it; counted again here, the pool's
 * window and its summed load read each move as a second arrival.
 */
function countArrival(s: InstanceMachineState, req: MachineRequest): void {
  if (req.probe || req.moves > 0) return;
  countArrivals(s, req.type);
  s.admitted[req.type] = (s.admitted[req.type] ?? 0) + 1;
  s.arrivedSinceRiseCheck = true;
}

/** Every loan void (a new credit epoch), told in a status at once. */
export function revoke(s: InstanceMachineState, fx: InstanceEffect[]): void {
  const before = s.credits.epoch;
  s.credits = revokeCredits(s.credits);
  if (s.credits.epoch !== before) fx.push({ kind: 'status' });
}

/** A ready peer, heard from within deadAfterMs and not suspected (policy suspect.ts), with nothing queued and a free engine slot. */
function peerWithRoom(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): { id: string; status: PeerStatus } | undefined {
  for (const [id, p] of s.peers) {
    if (p.state === 'ready' && now - p.seenMs <= cfg.deadAfterMs && !suspected(p.seenMs, now, cfg.suspectAfterMs) && p.queued === 0 && p.running < cfg.maxInEngine) return { id, status: p };
  }
  return undefined;
}
