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
 */
import type { RequestType } from '../../../protocols/request-types.ts';
import type { Profile } from '../../model/profile-types.ts';
import { chooseClock } from '../frequency.ts';
import { prefillClockFloor } from '../dispatch.ts';
import { riseRate } from '../arrival-rate.ts';
import { emergencyStep, initialEmergencyState, type EmergencyAction, type EmergencyState, type Justification } from '../emergency.ts';
import { DEFAULT_HEADROOM } from '../types.ts';
import { epochLoad } from './instance-load.ts';
export { currentLoad, epochLoad, projectedLoad } from './instance-load.ts';
import { creditsOutstanding, initialCreditLedger, lendFor, revokeCredits, spendCredit, type CreditConfig, type CreditLedger, type CreditLoan } from './credits.ts';

type Load = Partial<Record<RequestType, number>>;

/** What the machine needs to know of the instance and its configuration (units in the names). */
export interface InstanceMachineConfig {
  /** the instance's TP degree. */
  tp: number;
  /** the profile the clock is chosen from; without one the instance stays at max clock. */
  profile?: Profile;
  /** SLO capacity kept free by the clock choice; default DEFAULT_HEADROOM. */
  headroom?: number;
  /** instance epoch (the clock decision), ms. */
  epochMs: number;
  /** emergency ladder tick (and load-rise check), ms. Default 100. */
  tickMs?: number;
  /** most requests inside the engine at once. */
  maxInEngine: number;
  /** bound of the admission queue. */
  maxQueued: number;
  /** modelled seconds per wall second of the engine (an emulator at timeScale k runs k times faster: k); 1 for a real engine. */
  timeScale: number;
  /** a peer's status older than this is forgotten, ms. */
  deadAfterMs: number;
  /** a peer with fewer queued requests than this can take moved ones. */
  moveQueueAbove: number;
  /** a request waiting longer than this is rejected at emergency step 4, ms. */
  rejectAfterMs: number;
  /** Retry-After told to refused and rejected clients, s. */
  retryAfterS: number;
  /** at most this many requests moved per emergency step. Default 16. */
  maxMovePerStep?: number;
  /** run the emergency ladder on each tick; default true (false: a simulated policy without it, paper Sec. V). */
  emergency?: boolean;
  /** admission credits lent to gateways (credits.ts); absent or perGateway 0: none. */
  credits?: CreditConfig;
}

/** A request as the machine sees it (the body stays with the shell). */
export interface MachineRequest {
  id: string;
  type: RequestType;
  inputTokens: number;
  /** when the gateway accepted it, ms. */
  arrivalMs: number;
  /** arrival + its type's TTFT SLO, ms. */
  ttftDeadlineMs: number;
  ttftSloMs: number;
  /** times it was moved between instances. */
  moves: number;
  /** a readiness probe (InferenceRequest.probe): served, but not counted as traffic (arrivals, admitted). */
  probe?: boolean;
}

interface Queued extends MachineRequest {
  /** when it entered this instance's queue, ms. */
  admittedMs: number;
}

interface Running extends MachineRequest {
  startedMs: number;
  /** its first token came (its prompt is prefilled). */
  prefilled: boolean;
}

/** An error a request ends with (the wire error's fields). */
export interface MachineError { code: 'cancelled' | 'rejected' | 'overloaded' | 'unavailable' | 'engine_crashed'; message: string; retryable: boolean; retryAfterS?: number }

export interface PeerStatus { queued: number; running: number; state: string; seenMs: number }

/** sleeping: told to sleep (vLLM sleep mode): it admits nothing, finishes what it holds, then its engine sleeps; until woken. */
export type InstanceLifecycle = 'starting' | 'ready' | 'restarting' | 'draining' | 'stopped' | 'failed' | 'sleeping';

export interface InstanceMachineState {
  lifecycle: InstanceLifecycle;
  /** the GPU's supported clocks, ascending (empty until the GPU is open). */
  supportedMhz: number[];
  clockMhz: number;
  /** the clock asked for and not yet applied (a set_clock effect in flight). */
  clockPending?: number;
  /** a raise between epochs is in flight (one at a time). */
  raising: boolean;
  /** a pool's set_clock holds until this time, ms. */
  forcedUntilMs: number;
  /** the emergency ladder holds the max clock. */
  emergencyMaxClock: boolean;
  emergency: EmergencyState;
  /** the last emergency step taken (status), until the emergency is over. */
  emergencyStepName?: string;
  /** queue order: FIFO, or earliest TTFT deadline first after the ladder's reorder. */
  edf: boolean;
  queue: Queued[];
  running: Map<string, Running>;
  /** the requests of the move to peers in flight (one at a time), with the emergency step that asked for it. */
  moving?: { reqs: Queued[]; emergency?: { inputs: Record<string, unknown>; justification: Justification } };
  peers: Map<string, PeerStatus>;
  /** arrivals of this epoch's window, by type. */
  arrivals: Load;
  /** requests admitted since the machine started, by type (cumulative: status admittedByType). */
  admitted: Load;
  /**
   * the engine's prefix-cache counters (event prefix_cache: vLLM's prefix_cache_queries / prefix_cache_hits, prompt
   * tokens looked up in the cache and found there, cumulative): the uncached share prices the clock (uncachedLoad).
   */
  promptTokens?: number;
  cachedTokens?: number;
  windowStartMs: number;
  arrivedSinceRiseCheck: boolean;
  /** EWMA of the per-epoch arrival rate, req per modelled s (the dispatcher's load). */
  load: Load;
  /** EWMA of a request's time in the engine, ms (the miss prediction, the backpressure wait). */
  serviceMs: number;
  /** the immediate starts lent to gateways (credits.ts): their seats are kept out of the pump and the backpressure. */
  credits: CreditLedger;
}

export type InstanceEvent =
  /** the actor is up: arm the timers. */
  | { type: 'start' }
  /** the GPU is open: its supported clocks (the machine starts at the max). */
  | { type: 'gpu_ready'; supportedMhz: number[] }
  | { type: 'lifecycle'; state: InstanceLifecycle; why: string }
  /** `lendTo`: the gateway that asked (InferenceRequest.creditTo) is lent credits when the request starts at once. */
  | { type: 'admit'; req: MachineRequest; lendTo?: string }
  /** a gateway started this request on a credit of `epoch` (LegReport 'credited'); `topUp`: it asks for a new loan. */
  | { type: 'credited_start'; req: MachineRequest; gateway: string; epoch: number; topUp?: boolean }
  | { type: 'first_token'; id: string }
  /** a request left the engine (any outcome); `ok`: it completed (its time counts in the service EWMA). */
  | { type: 'finished'; id: string; ok: boolean }
  | { type: 'cancel'; id: string; reason: string }
  | { type: 'tick' }
  | { type: 'epoch' }
  | { type: 'pool_set_clock'; clockMhz: number; reason: string }
  /** the outcome of a set_clock effect: the clock the GPU took, or undefined when the change failed. */
  | { type: 'clock_applied'; requestedMhz: number; appliedMhz?: number; why: string; inputs: Record<string, unknown> }
  | { type: 'peer_status'; id: string; queued: number; running: number; state: string }
  /** several peers' statuses at once (the simulator hands over its pool's table in one event). */
  | { type: 'peer_statuses'; peers: { id: string; queued: number; running: number; state: string }[] }
  /** the outcome of a move effect: the ids a peer took; the others come back to the front of the queue. */
  | { type: 'moved'; ids: string[]; placed: string[]; error?: string }
  /** the engine crashed: move what waits to peers. */
  | { type: 'engine_crashed' }
  /** the engine is back after a crash: serve again, re-apply the clock (a restarted GPU context may have lost it). */
  | { type: 'engine_restarted' }
  /** end every queued request with this error (the engine is gone, the instance stopped). */
  | { type: 'fail_queued'; error: MachineError }
  /** stopping: move everything queued to peers. */
  | { type: 'evacuate'; why: string }
  /** the engine's prefix-cache counters, prompt tokens looked up and found cached (cumulative; vLLM's prefix_cache_queries / _hits). */
  | { type: 'prefix_cache'; lookup: number; hit: number };

export type InstanceEffect =
  | { kind: 'arm_timer'; timer: 'epoch' | 'tick'; everyMs: number }
  /** answer to an admit: accepted, or refused with a retryable error. */
  | { kind: 'admitted'; id: string }
  | { kind: 'refused'; id: string; code: 'unavailable' | 'overloaded'; message: string; retryAfterS: number }
  /** start this queued request in the engine; `credited`: a gateway started it on a credit (no grant to send). */
  | { kind: 'start'; id: string; credited?: boolean }
  /** tell `gateway` its loan (the admission reply of `id`, or the reply to its credited report). */
  | { kind: 'lent'; id: string; gateway: string; loan: CreditLoan }
  /** end a queued request with an error chunk (it never started). */
  | { kind: 'fail'; id: string; outcome: 'rejected' | 'failed' | 'cancelled'; error: MachineError }
  /** abort a running request. */
  | { kind: 'abort'; id: string; reason: string }
  | { kind: 'set_clock'; clockMhz: number; why: string; inputs: Record<string, unknown> }
  /** hand these queued requests (removed from the queue) to the pool leader for peers; answer with 'moved'. */
  | { kind: 'move'; ids: string[]; why: string; emergency?: { inputs: Record<string, unknown>; justification: Justification } }
  /** publish a decision event (the events stream). */
  | { kind: 'event'; event: 'instance' | 'clock' | 'emergency'; summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> }
  /** publish the status now (a state change). */
  | { kind: 'status' };

export interface InstanceStepResult { state: InstanceMachineState; effects: InstanceEffect[] }

export function initialInstanceState(nowMs: number): InstanceMachineState {
  return {
    lifecycle: 'starting', supportedMhz: [], clockMhz: 0, raising: false, forcedUntilMs: 0, emergencyMaxClock: false,
    emergency: initialEmergencyState(nowMs), edf: false, queue: [], running: new Map(), peers: new Map(),
    arrivals: {}, admitted: {}, windowStartMs: nowMs, arrivedSinceRiseCheck: false, load: {}, serviceMs: 1000,
    credits: initialCreditLedger(),
  };
}

const maxClockOf = (s: InstanceMachineState) => s.supportedMhz[s.supportedMhz.length - 1] ?? 0;
const serving = (s: InstanceMachineState) => s.lifecycle === 'ready' || s.lifecycle === 'draining' || s.lifecycle === 'sleeping';

/**
 * One transition. The state passed in is not modified: the machine works on a copy (collections copied
 * on write) and returns it.
 */
export function instanceStep(prev: InstanceMachineState, ev: InstanceEvent, now: number, cfg: InstanceMachineConfig): InstanceStepResult {
  const s = copyFor(prev, ev.type);
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
      if (s.lifecycle !== ev.state) {
        const from = s.lifecycle;
        s.lifecycle = ev.state;
        s.credits = revokeCredits(s.credits);
        fx.push({ kind: 'event', event: 'instance', summary: `${from} -> ${ev.state} (${ev.why})`, decision: { state: ev.state, from }, inputs: {} }, { kind: 'status' });
        pump(s, fx, now, cfg);
      }
      break;
    case 'admit':
      admit(s, fx, ev.req, now, cfg);
      if (ev.lendTo !== undefined && s.running.has(ev.req.id)) lend(s, fx, ev.req.id, ev.lendTo, now, cfg);
      break;
    case 'credited_start':
      creditedStart(s, fx, ev, now, cfg);
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
  // a draining instance that has just emptied says so at once: the pool stops it on that status, not a status period later
  if ((s.lifecycle === 'draining' || s.lifecycle === 'sleeping') && !s.running.size && !s.queue.length && (prev.running.size || prev.queue.length) && !fx.some((e) => e.kind === 'status')) fx.push({ kind: 'status' });
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

// ------------------------------------------------------------------ admission and the engine slots

function admit(s: InstanceMachineState, fx: InstanceEffect[], req: MachineRequest, now: number, cfg: InstanceMachineConfig): void {
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
function pump(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
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
function lend(s: InstanceMachineState, fx: InstanceEffect[], id: string, gateway: string, now: number, cfg: InstanceMachineConfig): void {
  const lent = lendFor(s, gateway, now, cfg.maxInEngine, cfg.credits);
  if (lent) [s.credits, fx[fx.length]] = [lent.ledger, { kind: 'lent', id, gateway, loan: lent.loan }];
}

/** A request a gateway started on a credit: in the engine already, so it runs whatever the ledger says (an overdraft is counted); an arrival like an admitted one. */
function creditedStart(s: InstanceMachineState, fx: InstanceEffect[], ev: Extract<InstanceEvent, { type: 'credited_start' }>, now: number, cfg: InstanceMachineConfig): void {
  if (s.running.has(ev.req.id) || s.queue.some((q) => q.id === ev.req.id)) return; // a duplicate report
  s.credits = spendCredit(s.credits, ev.gateway, ev.epoch, now).ledger;
  s.running.set(ev.req.id, { ...ev.req, startedMs: now, prefilled: false });
  countArrival(s, ev.req);
  fx.push({ kind: 'start', id: ev.req.id, credited: true });
  prefillRise(s, fx, now, cfg);
  if (ev.topUp) lend(s, fx, ev.req.id, ev.gateway, now, cfg);
}

/**
 * An arrival at this instance: its epoch's arrivals (the EWMA) and its admission counter (status admittedByType: the
 * pool's burst window). A moved request (an emergency step 3's, a dead peer's queue re-dispatched: moves > 0) is not
 * one: it arrived at the pool once, and the instance that first admitted it counted it; counted again here, the pool's
 * window and its summed load read each move as a second arrival.
 */
function countArrival(s: InstanceMachineState, req: MachineRequest): void {
  if (req.probe || req.moves > 0) return;
  s.arrivals[req.type] = (s.arrivals[req.type] ?? 0) + 1;
  s.admitted[req.type] = (s.admitted[req.type] ?? 0) + 1;
  s.arrivedSinceRiseCheck = true;
}

/** Every loan void (a new credit epoch), told in a status at once. */
function revoke(s: InstanceMachineState, fx: InstanceEffect[]): void {
  const before = s.credits.epoch;
  s.credits = revokeCredits(s.credits);
  if (s.credits.epoch !== before) fx.push({ kind: 'status' });
}

function peerWithRoom(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): { id: string; status: PeerStatus } | undefined {
  for (const [id, p] of s.peers) {
    if (p.state === 'ready' && now - p.seenMs <= cfg.deadAfterMs && p.queued === 0 && p.running < cfg.maxInEngine) return { id, status: p };
  }
  return undefined;
}

// ------------------------------------------------------------------ load and clock

/**
 * Where the clock may come from now: 'emergency' (max clock held), 'pool' (set_clock for its epoch), or
 * 'instance' (the epoch's choice and the raises between epochs).
 */
export function clockSource(s: InstanceMachineState, now: number): 'emergency' | 'pool' | 'instance' {
  if (s.emergencyMaxClock) return 'emergency';
  if (now < s.forcedUntilMs) return 'pool';
  return 'instance';
}

function setClock(s: InstanceMachineState, fx: InstanceEffect[], mhz: number, why: string, inputs: Record<string, unknown>): void {
  if (!s.supportedMhz.length) return;
  s.clockPending = mhz;
  fx.push({ kind: 'set_clock', clockMhz: mhz, why, inputs });
}

/** Closes the epoch's arrival window: the EWMA (half weight per epoch) and the clock's view max(EWMA, rate). */
function measureLoad(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): Load {
  const dt = Math.max(0.001, (now - s.windowStartMs) / 1000);
  const rate: Load = {};
  for (const [t, n] of Object.entries(s.arrivals) as [RequestType, number][]) rate[t] = n / dt / cfg.timeScale;
  const { load, forClock } = epochLoad(s.load, rate);
  s.arrivals = {};
  s.windowStartMs = now;
  s.load = load;
  return forClock;
}

/** Instance epoch: the least-energy clock meeting the SLO at this load (policy chooseClock), not below the prefill floor. */
function epoch(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!serving(s)) return;
  const load = measureLoad(s, now, cfg);
  if (clockSource(s, now) !== 'instance') return;
  const d = decideClock(cfg, uncachedLoad(s, load), s.supportedMhz);
  if (!d) return;
  const inputs = { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW };
  const floor = prefillFloor(s, now, cfg);
  if (floor !== undefined && floor > d.clockMhz) setClock(s, fx, floor, `${d.reason}; raised to ${floor} MHz for the prefill backlog`, inputs);
  else setClock(s, fx, d.clockMhz, d.reason, inputs);
}

/** A raise between epochs: one at a time, only from the instance's own source, only upwards. */
function raise(s: InstanceMachineState, fx: InstanceEffect[], mhz: number, now: number, why: string, inputs: Record<string, unknown>): void {
  if (s.raising || clockSource(s, now) !== 'instance' || mhz <= s.clockMhz) return;
  s.raising = true;
  setClock(s, fx, mhz, why, inputs);
}

/** On admission: raise the clock at once when the prefill backlog needs it. */
function prefillRise(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (s.raising || s.emergencyMaxClock || s.clockMhz >= maxClockOf(s)) return;
  const f = prefillFloor(s, now, cfg);
  if (f !== undefined) raise(s, fx, f, now, 'prefill backlog needs it', { pendingPrefillTokens: pendingPrefillTokens(s) });
}

/**
 * Between epochs (every tick, when requests arrived since the last check): the clock follows a load rise within the epoch
 * instead of at its end. The epoch's arrival rate so far (riseRate, over at least 1 s) against the EWMA, the larger per type; only raises. */
function loadRise(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!s.arrivedSinceRiseCheck || s.raising) return;
  s.arrivedSinceRiseCheck = false;
  if (clockSource(s, now) !== 'instance' || s.clockMhz >= maxClockOf(s)) return;
  const rate = riseRate(s.arrivals, Math.max(1, (now - s.windowStartMs) / 1000) * cfg.timeScale);
  const load: Load = { ...s.load };
  for (const [t, r] of Object.entries(rate) as [RequestType, number][]) load[t] = Math.max(load[t] ?? 0, r);
  const d = decideClock(cfg, uncachedLoad(s, load), s.supportedMhz);
  if (d) raise(s, fx, d.clockMhz, now, `load rose within the epoch: ${d.reason}`, { loadByType: load, feasible: d.feasible, predictedPowerW: d.powerW });
}

/**
 * The load the clock is priced at. The profile prices every prompt uncached; an engine with a prefix cache prefills
 * only what it does not hold, so where the engine reports its prefix-cache counters (event prefix_cache) the load is
 * scaled to the uncached share of the prompt tokens it looked up (the prompt work left; the L types the profile
 * prices are prefill-bound). Without such counts, the load as measured.
 */
export function uncachedLoad(s: Pick<InstanceMachineState, 'promptTokens' | 'cachedTokens'>, load: Load): Load {
  if (!s.promptTokens || !s.cachedTokens) return load;
  const f = Math.max(0, 1 - s.cachedTokens / s.promptTokens);
  const out: Load = {};
  for (const [t, v] of Object.entries(load) as [RequestType, number][]) out[t] = v * f;
  return out;
}

/** The least-energy clock meeting the SLO at this load (policy chooseClock), undefined without a profile for this TP. */
export function decideClock(
  cfg: Pick<InstanceMachineConfig, 'profile' | 'tp' | 'headroom'>,
  load: Load,
  supported: number[],
): { clockMhz: number; powerW: number; feasible: boolean; reason: string } | undefined {
  const profile = cfg.profile;
  if (!profile || !profile.tpDegrees.includes(cfg.tp)) return undefined;
  const d = chooseClock({ profile, tp: cfg.tp, loadByType: load, clocks: profileClocks(profile, supported), headroom: cfg.headroom ?? DEFAULT_HEADROOM });
  return { clockMhz: d.clockMhz, powerW: d.powerW, feasible: d.feasible, reason: d.reason };
}

/** The GPU's supported clocks inside the profile's range, as profile grid clocks (undefined: the profile's grid). */
function profileClocks(profile: Profile, supported: number[]): number[] | undefined {
  const lo = profile.clocksMhz[0]!, hi = profile.clocksMhz[profile.clocksMhz.length - 1]!;
  const inRange = supported.filter((f) => f >= lo && f <= hi);
  const clocks = inRange.length ? profile.clocksMhz.filter((f) => inRange.some((g) => Math.abs(g - f) <= 15)) : undefined;
  return clocks && clocks.length ? clocks : undefined;
}

/** The requests whose prompt is not prefilled yet: in the engine without a first token, then the queue in order. */
function* awaitingPrefill(s: InstanceMachineState): Generator<MachineRequest> {
  for (const r of s.running.values()) if (!r.prefilled) yield r;
  yield* s.queue;
}

/** Prompt tokens admitted but not prefilled yet. */
export function pendingPrefillTokens(s: InstanceMachineState): number {
  let n = 0;
  for (const r of awaitingPrefill(s)) n += r.inputTokens;
  return n;
}

/**
 * The clock the prefill backlog needs (policy prefillClockFloor): each prompt awaiting prefill with the
 * time left to its TTFT deadline. A prompt's length is known on arrival, so one far longer than its type's
 * profile cell raises the clock before its prefill, not after a miss.
 */
function prefillFloor(s: InstanceMachineState, now: number, cfg: InstanceMachineConfig): number | undefined {
  const backlog: { tokens: number; slackMs: number }[] = [];
  // whole prompts: which part the engine holds is known to it alone (vLLM says how much it reused after the prefill)
  for (const r of awaitingPrefill(s)) backlog.push({ tokens: Math.max(1, r.inputTokens), slackMs: r.ttftDeadlineMs - now });
  return decidePrefillFloor(cfg, backlog, s.supportedMhz);
}

/** The prefill floor of a backlog (policy prefillClockFloor on the GPU's clocks), undefined without a profile or backlog. */
export function decidePrefillFloor(cfg: Pick<InstanceMachineConfig, 'profile' | 'tp'>, backlog: { tokens: number; slackMs: number }[], supported: number[]): number | undefined {
  const profile = cfg.profile;
  if (!profile || !profile.tpDegrees.includes(cfg.tp) || !backlog.length) return undefined;
  return prefillClockFloor(profile, cfg.tp, backlog, 0, profileClocks(profile, supported));
}

// ------------------------------------------------------------------ emergency ladder

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

function tick(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  if (!serving(s)) return;
  loadRise(s, fx, now, cfg);
  if (cfg.emergency === false) return;
  let peersWithCapacity = 0;
  for (const [id, p] of s.peers) {
    if (now - p.seenMs > cfg.deadAfterMs) s.peers.delete(id);
    else if (p.state === 'ready' && p.queued < cfg.moveQueueAbove) peersWithCapacity++;
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
function move(s: InstanceMachineState, fx: InstanceEffect[], which: number | Set<string>, why: string, emergency?: { inputs: Record<string, unknown>; justification: Justification }): void {
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
function moved(s: InstanceMachineState, fx: InstanceEffect[], ev: { ids: string[]; placed: string[]; error?: string }, now: number, cfg: InstanceMachineConfig): void {
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
