/**
 * The instance manager's brain as a pure state machine: `instanceStep(state, event, now) -> {state, effects}`.
 * No I/O, no wall clock, no timers: time comes in as `now` (ms), and everything the manager does to the
 * world leaves as an effect (start a request in the engine, set the GPU clock, move or reject requests,
 * publish an event, arm a timer). The live actor (actors/instance-manager) performs the effects and feeds
 * the outcomes back as events; a test drives it event by event on a virtual clock.
 *
 * It owns every decision of an instance (paper Sec. IV-C/D):
 * - admission: backpressure to the pool (refuse while a peer has room and the wait would eat half the TTFT
 *   SLO), the queue bound;
 * - the queue and the engine slots (which request starts next: FIFO, earliest TTFT deadline first once the
 *   emergency ladder reorders);
 * - the load estimate: arrivals per epoch, an EWMA of half weight per epoch (the dispatcher's view, with the
 *   window's rate: currentLoad; the pool's re-shard view, moving towards the next EWMA as the epoch goes:
 *   projectedLoad), and the clock's view max(EWMA, this window's rate) (a rise is followed at once, a fall
 *   through the EWMA);
 * - the clock, arbitrated between its four sources in one place (`clockSource`):
 *   1. the emergency ladder's max clock holds over everything while it is at step 2 or above;
 *   2. a pool's set_clock holds for one instance epoch;
 *   3. the instance epoch: the least-energy clock meeting the SLO at the measured load, never below the
 *      prefill floor (the clock the prompts awaiting prefill need to meet their TTFT deadlines);
 *   4. between epochs only raises: the load rise (every tick, when requests arrived) and the prefill rise
 *      (on admission), one raise in flight at a time;
 * - the emergency ladder (policy emergencyStep) with its predicted misses, peers and the moves.
 *
 * - the lifecycle, and the pool's sleep-mode standby carried out: when the instance stops admitting, when its engine
 *   sleeps, when a sleep gives up, when it serves again after a wake (instance-sleep.ts).
 *
 * Its parts: instance-types.ts (state, events, effects), instance-admission.ts (admission, queue, engine slots,
 * credits), instance-sleep.ts (lifecycle and sleep mode), instance-clock.ts (load and clock), instance-emergency.ts (the emergency ladder and the moves),
 * instance-load.ts (the load estimates), credits.ts (the admission credits).
 */
import { initialEmergencyState } from '../emergency.ts';
export { closeWindow, countArrivals, currentLoad, epochLoad, projectedLoad, type LoadWindow } from './instance-load.ts';
import { initialCreditLedger, recycleCredit } from './credits.ts';
import { maxClockOf, type InstanceEvent, type InstanceEffect, type InstanceMachineConfig, type InstanceMachineState, type InstanceStepResult } from './instance-types.ts';
export type { InstanceEffect, InstanceEvent, InstanceLifecycle, InstanceMachineConfig, InstanceMachineState, InstanceStepResult, MachineError, MachineRequest, PeerStatus } from './instance-types.ts';
export { SLEEP_DRAIN_DEADLINE_MS, type SleepMode } from './instance-types.ts';
import { admit, creditedStart, lend, pump, revoke } from './instance-admission.ts';
import { changeLifecycle, engineSlept, engineWoke, sleepCommand, sleepProgress, wakeCommand } from './instance-sleep.ts';
import { epoch, setClock } from './instance-clock.ts';
export { clockSource, decideClock, decidePrefillFloor, pendingPrefillTokens, uncachedLoad } from './instance-clock.ts';
import { move, moved, tick, tickWanted } from './instance-emergency.ts';
export { tickWanted } from './instance-emergency.ts';

export function initialInstanceState(nowMs: number): InstanceMachineState {
  return {
    lifecycle: 'starting', supportedMhz: [], clockMhz: 0, raising: false, forcedUntilMs: 0, emergencyMaxClock: false,
    emergency: initialEmergencyState(nowMs), edf: false, queue: [], running: new Map(), peers: new Map(),
    arrivals: {}, admitted: {}, windowStartMs: nowMs, arrivedSinceRiseCheck: false, load: {}, serviceMs: 1000,
    credits: initialCreditLedger(),
  };
}

/**
 * One transition. The state passed in is not modified: the machine works on a copy (collections copied
 * on write) and returns it. `inPlace`: the transition edits the state passed in and returns it (the same decisions
 * and effects), for an owner that keeps no earlier state: the instance manager, whose running map and queue a copy
 * per admission, start and end would copy three times per request (test/unit/instance-step-in-place.test.ts).
 */
export function instanceStep(prev: InstanceMachineState, ev: InstanceEvent, now: number, cfg: InstanceMachineConfig, inPlace = false): InstanceStepResult {
  const held = prev.running.size > 0 || prev.queue.length > 0;
  const s = inPlace ? prev : copyFor(prev, ev.type);
  const fx: InstanceEffect[] = [];
  switch (ev.type) {
    case 'start':
      fx.push({ kind: 'arm_timer', timer: 'epoch', everyMs: cfg.epochMs }, { kind: 'arm_timer', timer: 'tick', everyMs: cfg.tickMs ?? 100 });
      break;
    case 'gpu_ready': {
      s.supportedMhz = [...ev.supportedMhz].sort((a, b) => a - b);
      // max clock until the first epoch has measured the load: safe for the SLO
      setClock(s, fx, maxClockOf(s), 'start-up: max clock until the first epoch', {});
      break;
    }
    case 'lifecycle':
      changeLifecycle(s, fx, ev.state, ev.why, now, cfg);
      break;
    case 'sleep':
      sleepCommand(s, fx, ev.level, ev.why, now, cfg);
      break;
    case 'wake':
      wakeCommand(s, fx, ev.why, now, cfg);
      break;
    case 'engine_slept':
      engineSlept(s, fx, ev.ok, ev.error, now, cfg);
      break;
    case 'engine_woke':
      engineWoke(s, fx, ev.ok, ev.error, now, cfg);
      break;
    case 'admit':
      admit(s, fx, ev.req, now, cfg);
      if (ev.lendTo !== undefined && s.running.has(ev.req.id)) lend(s, fx, ev.req.id, ev.lendTo, now, cfg);
      break;
    case 'credited_start':
      creditedStart(s, fx, ev, now, cfg);
      break;
    case 'credit_recycled':
      s.credits = recycleCredit(s.credits, ev.gateway, ev.epoch, now);
      break;
    case 'first_token': {
      const r = s.running.get(ev.id);
      if (r && !r.prefilled) s.running.set(ev.id, { ...r, prefilled: true });
      break;
    }
    case 'finished': {
      const r = s.running.get(ev.id);
      if (r) {
        s.running.delete(ev.id);
        if (ev.ok) s.serviceMs = 0.8 * s.serviceMs + 0.2 * (now - r.startedMs);
      }
      pump(s, fx, now, cfg);
      break;
    }
    case 'cancel': {
      const i = s.queue.findIndex((q) => q.id === ev.id);
      if (i >= 0) {
        s.queue.splice(i, 1);
        fx.push({ kind: 'fail', id: ev.id, outcome: 'cancelled', error: { code: 'cancelled', message: `cancelled: ${ev.reason}`, retryable: false } });
      } else if (s.running.has(ev.id)) fx.push({ kind: 'abort', id: ev.id, reason: `cancelled: ${ev.reason}` });
      break;
    }
    case 'tick':
      tick(s, fx, now, cfg);
      // nothing left for the next ticks to act on: the timer stops until a step gives them something (below)
      if (!s.tickPaused && !tickWanted(s)) {
        s.tickPaused = true;
        fx.push({ kind: 'pause_timer', timer: 'tick' });
      }
      break;
    case 'epoch':
      epoch(s, fx, now, cfg);
      break;
    case 'pool_set_clock':
      s.forcedUntilMs = now + cfg.epochMs;
      // the emergency ladder's max clock holds over the pool's (clockSource)
      if (!s.emergencyMaxClock) setClock(s, fx, ev.clockMhz, `pool command: ${ev.reason}`, {});
      break;
    case 'clock_applied': {
      if (s.clockPending === ev.requestedMhz) s.clockPending = undefined;
      s.raising = false;
      if (ev.appliedMhz !== undefined && ev.appliedMhz !== s.clockMhz) {
        const from = s.clockMhz;
        s.clockMhz = ev.appliedMhz;
        fx.push({ kind: 'event', event: 'clock', summary: `clock ${from} -> ${s.clockMhz} MHz (${ev.why})`, decision: { clockMhz: s.clockMhz, from }, inputs: { ...ev.inputs, tp: cfg.tp } });
      }
      break;
    }
    case 'peer_status':
      s.peers.set(ev.id, { queued: ev.queued, running: ev.running, state: ev.state, seenMs: now });
      break;
    case 'peer_statuses':
      for (const p of ev.peers) s.peers.set(p.id, { queued: p.queued, running: p.running, state: p.state, seenMs: now });
      break;
    case 'moved':
      moved(s, fx, ev, now, cfg);
      break;
    case 'engine_crashed':
      // the engine restarted is awake: a sleep under way (falling, asleep, waking) ended with the process
      s.sleep = undefined;
      revoke(s, fx);
      move(s, fx, s.queue.length, 'engine crashed');
      break;
    case 'evacuate':
      revoke(s, fx);
      move(s, fx, s.queue.length, ev.why);
      break;
    case 'engine_restarted':
      if (s.lifecycle === 'restarting') {
        s.lifecycle = 'ready';
        fx.push({ kind: 'event', event: 'instance', summary: 'restarting -> ready (engine restarted)', decision: { state: 'ready', from: 'restarting' }, inputs: {} }, { kind: 'status' });
      }
      setClock(s, fx, s.clockMhz || maxClockOf(s), 'engine restarted: clock re-applied', {});
      pump(s, fx, now, cfg);
      break;
    case 'fail_queued':
      for (const q of s.queue.splice(0)) fx.push({ kind: 'fail', id: q.id, outcome: 'failed', error: ev.error });
      break;
    case 'prefix_cache':
      if (ev.lookup >= 0 && ev.hit >= 0) [s.promptTokens, s.cachedTokens] = [ev.lookup, Math.min(ev.hit, ev.lookup)];
      break;
  }
  // sleep mode: a wait to sleep ends, falls asleep or gives up (instance-sleep.ts)
  sleepProgress(s, fx, now, cfg);
  // a paused ladder tick runs again from the step that gives it something to act on (an admission, a sleep's wait)
  if (s.tickPaused && tickWanted(s)) {
    s.tickPaused = false;
    fx.push({ kind: 'arm_timer', timer: 'tick', everyMs: cfg.tickMs ?? 100 });
  }
  // a draining instance that has just emptied says so at once: the pool stops it on that status, not a status period later
  if ((s.lifecycle === 'draining' || s.lifecycle === 'sleeping') && !s.running.size && !s.queue.length && held && !fx.some((e) => e.kind === 'status')) fx.push({ kind: 'status' });
  return { state: s, effects: fx };
}

/**
 * The state a transition works on: the collections this event may change are copied, the others shared
 * (the simulator steps thousands of instances; copying a full queue on every peer status or epoch is most
 * of its time). Every other event copies all of them.
 */
function copyFor(prev: InstanceMachineState, type: InstanceEvent['type']): InstanceMachineState {
  switch (type) {
    case 'peer_status':
    case 'peer_statuses':
      return { ...prev, peers: new Map(prev.peers) };
    case 'epoch':
    case 'clock_applied':
    case 'pool_set_clock':
    case 'gpu_ready':
    case 'prefix_cache':
      return { ...prev };
    case 'tick':
      return { ...prev, queue: [...prev.queue], peers: new Map(prev.peers) };
    case 'first_token':
      return { ...prev, running: new Map(prev.running) };
    default:
      return { ...prev, queue: [...prev.queue], running: new Map(prev.running), peers: new Map(prev.peers), arrivals: { ...prev.arrivals } };
  }
}
