/**
 * The instance machine's state, events, effects and configuration (src/policy/machines/instance.ts instanceStep),
 * and the two readings of the state its parts share (maxClockOf, serving).
 */
import type { RequestType } from '../../../protocols/request-types.ts';
import type { Profile } from '../../model/profile-types.ts';
import type { EmergencyState, Justification } from '../emergency.ts';
import type { CreditConfig, CreditLedger, CreditLoan } from './credits.ts';

export type Load = Partial<Record<RequestType, number>>;

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
  /** a peer without a status for this long is not counted as room for moved or refused requests (policy suspect.ts), ms; absent: none is suspected. */
  suspectAfterMs?: number;
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
  /** how long a sleep waits for the requests held to finish before the instance serves again, ms. Default SLEEP_DRAIN_DEADLINE_MS. */
  sleepDrainDeadlineMs?: number;
}

/** How long a sleep waits for the instance's requests to finish before it gives up and serves again, ms. */
export const SLEEP_DRAIN_DEADLINE_MS = 600_000;

/**
 * vLLM sleep mode as the machine carries out its pool's 'sleep' and 'wake' (instance-sleep.ts): to-sleep (admits
 * nothing, finishes what it holds, until giveUpAtMs), falling (engine_sleep in flight), asleep, waking (engine_wake in
 * flight).
 */
export interface SleepMode {
  phase: 'to-sleep' | 'falling' | 'asleep' | 'waking';
  level: 1 | 2;
  /** to-sleep: past this time with requests still held, the instance serves again, ms. */
  giveUpAtMs: number;
  /** a wake came (its reason): the engine wakes once its fall is done (falling), or is waking for it. */
  wake?: string;
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

export interface Queued extends MachineRequest {
  /** when it entered this instance's queue, ms. */
  admittedMs: number;
}

export interface Running extends MachineRequest {
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
  /**
   * the ladder's tick timer is paused: the last tick found nothing it could act on (tickWanted false), and the step
   * that gives it something again re-arms it (instance.ts). Absent: armed, or never started.
   */
  tickPaused?: boolean;
  /** EWMA of the per-epoch arrival rate, req per modelled s (the dispatcher's load). */
  load: Load;
  /** EWMA of a request's time in the engine, ms (the miss prediction, the backpressure wait). */
  serviceMs: number;
  /** the immediate starts lent to gateways (credits.ts): their seats are kept out of the pump and the backpressure. */
  credits: CreditLedger;
  /** sleep mode under way (told to sleep, asleep, or waking); none: awake. */
  sleep?: SleepMode;
}

export type InstanceEvent =
  /** the actor is up: arm the timers. */
  | { type: 'start' }
  /** the GPU is open: its supported clocks (the machine starts at the max). */
  | { type: 'gpu_ready'; supportedMhz: number[] }
  | { type: 'lifecycle'; state: InstanceLifecycle; why: string }
  /** `lendTo`: the gateway that asked (InferenceRequest.creditTo) is lent credits when the request starts at once. */
  | { type: 'admit'; req: MachineRequest; lendTo?: string }
  /** a gateway started this request on a credit of `epoch` (LegReport 'credited'); `topUp`: it asks for a new loan, of `want` credits (its pace). */
  | { type: 'credited_start'; req: MachineRequest; gateway: string; epoch: number; topUp?: boolean; want?: number }
  /** the end report of a leg `gateway` started on a credit of `epoch` says it kept the leg's seat (LegReport.recycled): back in its loan. */
  | { type: 'credit_recycled'; gateway: string; epoch: number }
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
  | { type: 'prefix_cache'; lookup: number; hit: number }
  /** the pool's sleep command (vLLM sleep mode at `level`): see instance-sleep.ts. */
  | { type: 'sleep'; level: 1 | 2; why: string }
  /** the pool's wake command. */
  | { type: 'wake'; why: string }
  /** the outcome of an engine_sleep effect (the engine's sleep call answered, or failed). */
  | { type: 'engine_slept'; ok: boolean; error?: string }
  /** the outcome of an engine_wake effect. */
  | { type: 'engine_woke'; ok: boolean; error?: string };

export type InstanceEffect =
  | { kind: 'arm_timer'; timer: 'epoch' | 'tick'; everyMs: number }
  /** stop the periodic timer armed under this name until an arm_timer of it (an idle instance's ladder tick). */
  | { kind: 'pause_timer'; timer: 'tick' }
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
  | { kind: 'status' }
  /** put the engine to sleep (vLLM POST /sleep?level=N); answer with 'engine_slept'. */
  | { kind: 'engine_sleep'; level: 1 | 2 }
  /** wake the engine (vLLM POST /wake_up); answer with 'engine_woke'. */
  | { kind: 'engine_wake' };

export interface InstanceStepResult { state: InstanceMachineState; effects: InstanceEffect[] }

/** The GPU's highest supported clock (0 until the GPU is open). */
export const maxClockOf = (s: InstanceMachineState) => s.supportedMhz[s.supportedMhz.length - 1] ?? 0;
/** The instance serves what it holds (ready, draining, or going to sleep). */
export const serving = (s: InstanceMachineState) => s.lifecycle === 'ready' || s.lifecycle === 'draining' || s.lifecycle === 'sleeping';
