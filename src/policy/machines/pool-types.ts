/**
 * The pool machine's state, events, effects and configuration (src/policy/machines/pool.ts poolStep), and the few
 * constants its parts share. Types only, plus `refusal` and `UNSEEN`: every part of the machine imports from here.
 */
import type { RequestType } from '../../../protocols/request-types.ts';
import type { InstanceStatus, MoveReply, NodeCommand, PoolAssignment } from '../../../protocols/control.ts';
import type { Admission, InferenceRequest } from '../../../protocols/messages.ts';
import type { WireError } from '../../../protocols/errors.ts';
import type { NatsConnectionId } from '../../../protocols/nats-advisory.ts';
import type { EndedConnections } from '../connection-ended.ts';
import type { Profile } from '../../model/profile-types.ts';
import type { InstanceConfig } from '../types.ts';
import type { HoldOutcome } from './router.ts';
import type { EpochArrivals, PoolLoadSample, PoolShardDecision, PoolShardInput, StaggerUnit } from '../pool-shards.ts';
import type { MilpSolveOutcome } from '../pool-shards-milp.ts';
import type { Eq1Input } from '../milp.ts';

export interface PoolMachineConfig {
  pool: string;
  /** the replica's id (decision events name it). */
  holder: string;
  profile?: Profile;
  /** SLO capacity kept free by dispatch and the re-shard plan. */
  headroom: number;
  /** an instance without a status for this long is dead, ms. */
  deadAfterMs: number;
  /**
   * the longest this replica's link to the bus may go unproven, ms: a death verdict needs a round trip to the bus
   * (its lease's, 'link_proven') answered within this long, and counts an instance's silence from the end of the last
   * stretch without one at the earliest (poolLinkProofGapMs: deadAfterMs / 2). Absent: the link is not watched (the
   * simulator's pools, whose bus never fails).
   */
  linkProofGapMs?: number;
  /** an instance without a status for this long takes no new request while another is heard, and keeps what it holds (policy suspect.ts), ms; absent: none is suspected. */
  suspectAfterMs?: number;
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
  /** 'milp': the re-shard plan's Eq. 1 is solved by an effect ('solve') answered with 'planned'; the machine decides on it (policy milpShardDecision). */
  planner: 'heuristic' | 'milp';
  /** the burst guard's window, ms: the re-shard plan carries the highest load measured at the epochs within it. 0/absent: none. */
  burstWindowMs?: number;
  /**
   * true where a re-shard's old instances serve until the new layout is up (the paper's NVLink re-shard, the
   * simulator's `overlap`): every unit starts its new instance first, beside the ones it replaces, and retires them
   * once it is ready; no unit is dark. Absent live (engines start anew: a unit on held GPUs stops them first).
   */
  reshardKeepsServing?: boolean;
  /** reconfiguration costs the re-shard plan weighs (default: policy overheadTable's). */
  overhead?: PoolShardInput['overhead'];
  /** cache-aware routing (policy dispatchRequest `prefer`; the simulator's --prefix-routing): absent live. */
  prefer?: (req: InferenceRequest, eligibleIds: string[]) => string | undefined;
  /** the NATS store is the cluster's own, created with it (config nats.ownStore): what it holds is this run's. */
  ownStore?: boolean;
  /**
   * true where the shell stores the dispatched list (the live pool leader): an admitted request's answer waits for
   * its entry's store ('persist_dispatched' with `ack`, answered by 'dispatched_stored'), so a successor reads every
   * request whose admission a caller got. Absent (the simulator: no store to lose): answered at once.
   */
  storeBeforeReply?: boolean;
}

/** `stateSinceMs`: when its process's status first said its state; `deadMs`: when this view took it for dead (alive false); both ms, what a view reports as out since (policy outOfDispatchSince). */
export interface TrackedInstance {
  status: InstanceStatus; lastSeenMs: number; alive: boolean; stateSinceMs?: number; deadMs?: number;
  /** the status as received, copied once (countDispatched), and the requests this view sent the instance since it: `status` is it with them counted. */
  received?: InstanceStatus; dispatched?: { n: number; tokens: number };
}
/** A dispatched request: the instance it went to, and that instance's process (startedMs) as the leader saw it. */
export interface Outstanding { req: InferenceRequest; instance: string; atMs: number; startedMs?: number }
/** An entry of the stored list of dispatched requests (what a successor adopts). */
export type DispatchedListEntry = Outstanding;

/** Who waits for a dispatch: a dispatch call (ref), a move (its job), or nobody (a re-dispatch after a death). */
export type Origin = { kind: 'dispatch'; ref: number } | { kind: 'move'; move: number } | { kind: 'redispatch' };

export interface DispatchJob {
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
  /** admitted, its entry being stored (cfg.storeBeforeReply): this admission is the answer once the store answers. */
  storing?: Admission;
}

export interface MoveJob { ref: number; pending: number; placed: MoveReply['placed']; refused: MoveReply['refused'] }

/** The wait of a re-shard step: retire (drained, then stopped) or start (the node took it, then ready). */
export type Phase =
  | { kind: 'drain'; ids: string[]; why: string; sinceMs: number; untilMs: number }
  | { kind: 'stopped'; ids: string[]; why: string; untilMs: number }
  | { kind: 'start'; node: string; gpuIds: number[]; id: string; why: string; untilMs: number; retryAtMs: number; inFlight: boolean }
  | { kind: 'ready'; id: string; untilMs: number };

export interface ReshardRun {
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
  /**
   * while leading: until when its lease holds by this replica's own clock (the shell's LeaderLease.leaderUntilMs()
   * after its last renewal a majority acknowledged, the safety margin taken off), ms. At or past it the lease may
   * be another replica's: the step steps down first ('lease_lapsed') and refuses what the event asked (a dispatch,
   * a move, a command). Absent: no lease bounds the lead (the simulator's leaders).
   */
  leaseUntilMs?: number;
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
  /**
   * while a lead has not read the stored dispatched list (its lead came without it): the request ids this lead ended
   * or re-dispatched at an instance's death (the latest DIED_HANDLED_MAX). The list read late adopts none of them:
   * each was handled once already (the gateway retries an ended stream). Undefined once the list is read.
   */
  diedHandled?: string[];
  /** instances a node was asked to start (not yet reporting): when, on which node and GPUs (a re-shard's may not be contiguous). */
  starting: Map<string, { atMs: number; node: string; gpuIds: number[] }>;
  /**
   * starts of its reconciliation a node refused (its GPUs still held), by instance id: how many in a row, and when
   * the next may go (pool-reconcile.ts startBackoffMs). Replaced, never edited. Absent: none refused.
   */
  refusedStarts?: ReadonlyMap<string, { count: number; retryAtMs: number }>;
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
  /**
   * led without reading the stored assignment (its store did not answer): the one this replica holds may be an earlier
   * lead's, so reconciliation starts and stops nothing until the planner sends one or a later read (`stored`) answers.
   */
  assignmentUnread?: boolean;
  /** this replica's link to the bus is down ('link' event): the sweep gives no verdict meanwhile. */
  linkDown?: boolean;
  /** when its link last came back after being down or unproven: the sweep's death verdict counts an instance's silence from then at the earliest, ms. */
  linkUpMs?: number;
  /** the send time of the latest round trip to the bus that was answered ('link_proven'), ms. */
  linkProvenMs?: number;
  /** when, leading, it first saw its instances admit requests: its re-shard epochs count from then, ms. */
  trafficAtMs?: number;
  /** node commands of a reconciliation not yet answered (no re-shard epoch meanwhile). */
  reconciling: number;
  /** a MILP solve of the re-shard epoch is under way: its input and the heuristic's decision of it (the rule's baseline, policy milpShardDecision). */
  planning?: { input: PoolShardInput; heuristic: PoolShardDecision };
  reshard?: ReshardRun;
  /**
   * the leader's 100-ms tick timer is paused: the last tick found no held dispatch and no re-shard to move on
   * (poolTickWanted false); the step that gives it one re-arms it (pool.ts). Absent: armed, or not leading.
   */
  tickPaused?: boolean;
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
  | { type: 'lead'; term?: number; stored?: PoolAssignment; dispatched?: DispatchedListEntry[]; reshard?: StoredReshard; unread?: boolean; leaseUntilMs?: number }
  /** the lease was renewed (acknowledged by a majority): the lead holds until `untilMs` (state leaseUntilMs). */
  | { type: 'lease'; untilMs: number }
  /**
   * the takeover reads that did not answer by the lead, answered later: `assignment` when the assignment's read did
   * (`stored` undefined: none stored), `dispatched` (and `reshard`) when the dispatched list's did.
   */
  | { type: 'stored'; assignment?: { stored?: PoolAssignment }; dispatched?: DispatchedListEntry[]; reshard?: StoredReshard }
  | { type: 'lost' }
  /** an instance's status, or several at once, in order (the simulator hands over those due in one event). */
  | { type: 'status'; status: InstanceStatus } | { type: 'statuses'; statuses: InstanceStatus[] }
  /** a request's record: it ended (on `instance`). */
  | { type: 'record'; id: string; instance?: string }
  /**
   * the death check. `stalledMs`: its timer ran this late, after this replica's process was stopped (policy
   * timer-stall.ts): the statuses of the stall wait unread, so every instance gets deadAfterMs from now, as after its link's return.
   */
  | { type: 'sweep'; stalledMs?: number }
  /** the NATS server said a connection ended (a ClientDisconnect advisory): the instance reporting on it leaves dispatch. */
  | { type: 'conn_ended'; conn: NatsConnectionId }
  /**
   * this replica's own link to the bus went down / came back. Silence heard while it is down is not the
   * instances' (no death verdict from it); when it comes back, every live instance gets deadAfterMs from then
   * to report, as after a new leader takes over. The suspicion still counts from each instance's last status.
   */
  | { type: 'link'; up: boolean }
  /**
   * a round trip to the bus sent at `sentMs` was answered (the lease's renewal or read, by a majority of its
   * buckets): the link worked then. A cut the client has not noticed yet (no ping answer for seconds, a partition)
   * shows as the absence of these; a proof after a gap longer than linkProofGapMs starts the instances' death
   * clocks again from it, as the link's return does.
   */
  | { type: 'link_proven'; sentMs: number }
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
  /** the solver's answer to a 'solve' effect (absent: none, the epoch decides nothing). */
  | { type: 'planned'; solved?: MilpSolveOutcome; force?: boolean }
  /** the answer to a 'node' effect. */
  | { type: 'node_result'; cmd: NodeCommand; ok: boolean; purpose: 'reconcile' | 'reshard' }
  /** the answer to a 'persist_reshard' with `ack` (the store acknowledged the record, or failed). */
  | { type: 'reshard_stored'; ack: number; ok: boolean }
  /** the answer to a 'persist_dispatched' with `ack` (the store acknowledged the entry, or failed or did not answer in time). */
  | { type: 'dispatched_stored'; ack: number; ok: boolean };

export type PoolEffect =
  | { kind: 'arm_timer'; timer: 'sweep' | 'tick' | 'reconcile' | 'reshard' | 'status'; everyMs: number }
  /** stop the leader's timers (the sweep stays). */
  | { kind: 'disarm_leader_timers' }
  /** stop the leader's tick until an arm_timer of it (a pool with nothing held and no re-shard under way). */
  | { kind: 'pause_timer'; timer: 'tick' }
  /** ask an instance to admit the request; answer with 'admit_result'. */
  | { kind: 'admit'; job: number; instance: string; req: InferenceRequest }
  | { kind: 'reply'; ref: number; admission: Admission }
  | { kind: 'move_reply'; ref: number; reply: MoveReply }
  | { kind: 'command_reply'; ref: number; ok: boolean; detail?: Record<string, unknown>; error?: WireError }
  /** keep (replace) a dispatched request in the store a successor reads; with `ack`, answer with 'dispatched_stored'. */
  | { kind: 'persist_dispatched'; req: InferenceRequest; instance: string; atMs: number; startedMs?: number; ack?: number }
  /** the lease may have lapsed (state leaseUntilMs): the machine no longer leads; stop serving and give the lease up. */
  | { kind: 'lease_lapsed'; untilMs: number }
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
  /** solve Eq. 1 for the re-shard plan (the MILP); answer with 'planned'. */
  | { kind: 'solve'; input: Eq1Input; force: boolean }
  | { kind: 'event'; event: 'lease' | 'instance' | 'failure' | 'scale' | 'reshard'; summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> };

export interface PoolStepResult { state: PoolMachineState; effects: PoolEffect[] }

/** A leader's re-shard as its successor reads it back: its target, planned on assignment `epoch`, still running or complete. */
export interface StoredReshard { epoch: number; target: InstanceConfig[]; state: 'running' | 'complete' }

/** A step of a re-shard unit: retire instances (drain, then stop), or start one. */
export type Step = { kind: 'retire'; ids: string[]; why: string } | { kind: 'start'; node: string; gpuIds: number[]; id: string; why: string };

/** startedMs of a placeholder for an instance the list names and no status has shown yet. */
export const UNSEEN = -1;

/** A retryable refusal, with the pool's Retry-After. */
export function refusal(cfg: PoolMachineConfig, code: 'overloaded' | 'unavailable', message: string): WireError {
  return { code, message, retryable: true, retryAfterS: cfg.retryAfterS };
}
