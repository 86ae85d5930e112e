/**
 * The instance machine's emergency ladder (src/policy/machines/instance.ts instanceStep): the predicted misses, the
 * ladder's steps (policy emergencyStep: reorder, max clock, move to peers, reject) and the moves of queued requests
 * to peers (emergency step 3, an engine crash, a stop) with the pool's answer. Pure helpers of instanceStep: they
 * edit the state instanceStep handed them and add effects.
 */
import { emergencyStep, type EmergencyAction, type Justification } from '../emergency.ts';
import { suspected } from '../suspect.ts';
import { epoch, loadRise, setClock } from './instance-clock.ts';
import { pump, revoke } from './instance-admission.ts';
import { maxClockOf, serving, type InstanceEffect, type InstanceMachineConfig, type InstanceMachineState, type Queued } from './instance-types.ts';

/**
 * Predicted SLO misses among the queued requests: a request at queue position k starts after about
 * k / maxInEngine mean service times; it misses when that start is past its TTFT deadline.
 */
function predictedMisses(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): number {
  let misses = 0;
  const full = s.running.size >= cfg.maxInEngine ? 1 : 0;
  s.queue.forEach((q, k) => {
    if (now + (Math.floor(k / cfg.maxInEngine) + full) * s.serviceMs > q.ttftDeadlineMs) misses++;
  });
  return misses;
}

/**
 * Whether a tick may act: a serving instance with requests queued (the ladder's predicted misses, the overdue), the
 * ladder above step 0 or holding the max clock (its clearing is timed), arrivals not yet looked at for a load rise,
 * or a sleep waiting for its requests (its give-up is timed). Otherwise a tick changes nothing but forgetting peers
 * silent past deadAfterMs, which every reader of the peers also skips by their age (peerWithRoom, the tick's count).
 */
export function tickWanted(s: InstanceMachineState): boolean {
  if (!serving(s)) return false;
  return s.queue.length > 0 || s.arrivedSinceRiseCheck || s.emergency.level > 0 || s.emergencyMaxClock || s.sleep?.phase === 'to-sleep';
}

/** The ladder tick: the load rise, peers forgotten when silent past deadAfterMs (not counted past suspectAfterMs), and one step of the emergency ladder. */
export function tick(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!serving(s)) return;
  loadRise(s, fx, now, cfg);
  if (cfg.emergency === false) return;
  let peersWithCapacity = 0;
  for (const [id, p] of s.peers) {
    if (now - p.seenMs > cfg.deadAfterMs) s.peers.delete(id);
    else if (p.state === 'ready' && p.queued < cfg.moveQueueAbove && !suspected(p.seenMs, now, cfg.suspectAfterMs)) peersWithCapacity++;
  }
  const maxMhz = maxClockOf(s);
  const predictedMissCount = predictedMisses(s, now, cfg);
  const before = s.emergency.level;
  const { state, actions } = emergencyStep(s.emergency, {
    nowMs: now,
    queue: s.queue.map((q) => ({ id: q.id, arrivalMs: q.admittedMs, ttftDeadlineMs: q.ttftDeadlineMs, type: q.type })),
    clockMhz: s.clockMhz, maxClockMhz: maxMhz, predictedMissCount, peersWithCapacity,
  }, { rejectAfterMs: cfg.rejectAfterMs, retryAfterS: cfg.retryAfterS, maxMovePerStep: cfg.maxMovePerStep ?? 16 });
  s.emergency = state;
  const inputs = { queueLength: s.queue.length, predictedMissCount, peersWithCapacity, clockMhz: s.clockMhz, level: state.level };
  const stepTaken = (step: string, decision: Record<string, unknown>, why?: Justification) => {
    s.emergencyStepName = step;
    revoke(s, fx); // a gateway's credits would start requests past the ladder
    fx.push({ kind: 'event', event: 'emergency', summary: `emergency step ${step}`, decision: { step, ...decision }, inputs: why ? { ...inputs, why } : inputs });
  };
  if (state.level === 0 && before > 0) {
    fx.push({ kind: 'event', event: 'emergency', summary: 'emergency over', decision: { step: 'clear', from: before }, inputs });
    s.emergencyMaxClock = false;
    s.emergencyStepName = undefined;
    if (s.edf) {
      s.edf = false;
      s.queue.sort((a, b) => a.admittedMs - b.admittedMs);
    }
  }
  if (state.level >= 2 && !s.emergencyMaxClock && !actions.some((a) => a.kind === 'max_clock')) {
    // step 2 reached with the clock already at max: hold it there (the epoch must not lower it)
    s.emergencyMaxClock = true;
    stepTaken('max_clock', { clockMhz: s.clockMhz, alreadyAtMax: true });
  }
  for (const a of actions) emergencyAction(s, fx, a, now, cfg, stepTaken, inputs);
}

function emergencyAction(
  s: InstanceMachineState, fx: InstanceEffect[], a: EmergencyAction, now: number, cfg: InstanceMachineConfig,
  stepTaken: (step: string, decision: Record<string, unknown>, why?: Justification) => void, inputs: Record<string, unknown>,
): void {
  switch (a.kind) {
    case 'reorder':
      if (!s.edf) {
        s.edf = true;
        s.queue.sort((x, y) => x.ttftDeadlineMs - y.ttftDeadlineMs || x.admittedMs - y.admittedMs);
        stepTaken('reorder', { queued: s.queue.length }, a.why);
      }
      break;
    case 'max_clock':
      if (!s.emergencyMaxClock) {
        s.emergencyMaxClock = true;
        stepTaken('max_clock', { clockMhz: a.clockMhz }, a.why);
        setClock(s, fx, a.clockMhz, 'emergency: max clock', inputs);
      }
      break;
    case 'release_max_clock':
      s.emergencyMaxClock = false;
      epoch(s, fx, now, cfg);
      break;
    case 'move':
      move(s, fx, new Set(a.ids), 'emergency: backlog', { inputs, justification: a.why });
      break;
    case 'reject': {
      const rejected: string[] = [];
      for (const id of a.ids) {
        const i = s.queue.findIndex((q) => q.id === id);
        if (i < 0) continue;
        const [q] = s.queue.splice(i, 1);
        rejected.push(id);
        fx.push({ kind: 'fail', id, outcome: 'rejected', error: { code: 'rejected', retryable: true, retryAfterS: a.retryAfterS, message: `waited ${now - q!.admittedMs} ms (> ${cfg.rejectAfterMs} ms) in an overloaded instance` } });
      }
      if (rejected.length) stepTaken('reject', { rejected, retryAfterS: a.retryAfterS }, a.why);
      break;
    }
  }
}

/** Emergency step 3 (and engine crash, stop): hand queued requests to the pool leader for peers; one move at a time. */
export function move(s: InstanceMachineState, fx: InstanceEffect[], which: number | Set<string>, why: string, emergency?: { inputs: Record<string, unknown>; justification: Justification }): void {
  if (s.moving) return;
  let reqs: Queued[];
  if (typeof which === 'number') {
    const n = Math.min(which, 256);
    reqs = n > 0 ? s.queue.splice(Math.max(0, s.queue.length - n)) : [];
  } else {
    reqs = [];
    for (const id of [...which].slice(0, 256)) {
      const i = s.queue.findIndex((q) => q.id === id);
      if (i >= 0) reqs.push(...s.queue.splice(i, 1));
    }
  }
  if (!reqs.length) return;
  s.moving = emergency ? { reqs, emergency } : { reqs };
  fx.push({ kind: 'move', ids: reqs.map((q) => q.id), why, ...(emergency ? { emergency } : {}) });
}

/** The pool's answer to a move: the requests no peer took go back to the front of the queue, in their order. */
export function moved(s: InstanceMachineState, fx: InstanceEffect[], ev: { ids: string[]; placed: string[]; error?: string }, now: number, cfg: InstanceMachineConfig): void {
  const m = s.moving;
  s.moving = undefined;
  if (!m) return;
  const placed = new Set(ev.placed);
  // (a request a peer handed back before this answer was admitted again: it is queued already)
  const back = m.reqs.filter((q) => !placed.has(q.id) && !s.running.has(q.id) && !s.queue.some((x) => x.id === q.id));
  const room = Math.max(0, cfg.maxQueued - s.queue.length);
  s.queue.unshift(...back.slice(0, room));
  for (const q of back.slice(room)) fx.push({ kind: 'fail', id: q.id, outcome: 'rejected', error: { code: 'overloaded', retryable: true, retryAfterS: cfg.retryAfterS, message: `instance admission queue full (bound ${cfg.maxQueued})` } });
  if (m.emergency) {
    const decision = ev.error !== undefined ? { asked: m.reqs.length, placed: [], error: ev.error } : { asked: m.reqs.length, placed: ev.placed, refused: back.length };
    s.emergencyStepName = 'move_to_peers';
    fx.push({ kind: 'event', event: 'emergency', summary: 'emergency step move_to_peers', decision: { step: 'move_to_peers', ...decision }, inputs: { ...m.emergency.inputs, why: m.emergency.justification } });
  }
  pump(s, fx, now, cfg);
}
