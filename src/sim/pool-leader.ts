/**
 * One simulated pool's leader: the pool machine (src/policy/machines/pool.ts, the code the live pool leader runs),
 * one for the pool's whole life, on the simulator's virtual clock, stepped with the events the live leader gets:
 * - 'lead' when the pool is made, 'assign' with the GPUs the simulated cluster level grants it (nodes and GPU ids,
 *   as the live cluster manager's assignment carries them);
 * - the instances' statuses: one per instance on its own schedule (`publish`, every `statusIntervalMs` from the
 *   instance's start, as the live instance manager's status timer: the simulator's event loop calls it) and one on
 *   each change of its state, built as the live instance manager builds its status (node, GPUs, state, process
 *   start, queue, running, loads, the cumulative admissions its burst window and epoch count from);
 * - 'dispatch' for a request, 'move' for an instance's emergency step 3, 'admit_result' for each admission it asked
 *   for, 'record' when a request ends, 'tick' while it holds requests or runs a re-shard;
 * - 'reshard_epoch' when the epoch timer it armed is due (`epochDue`; the simulator's event loop reads `nextEpochMs`).
 *
 * Its effects are carried out by the host, the simulator's node agents and engines: a node command starts or stops
 * a simulated instance (answered with 'node_result'), a drain drains one, a re-shard's record is stored at once
 * ('reshard_stored'), the MILP's solve is answered by HiGHS on this thread ('planned'), an 'admit' asks the simulated
 * instance (answered at once), a 'reply' or 'move_reply' answers the caller. The dispatched-list store has nothing to
 * keep in the simulator (no successor leader). No decision is taken here.
 */
import type { InstanceStatus, MoveReply, NodeCommand, PoolAssignment } from '../../protocols/control.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';
import type { RequestType } from '../../protocols/request-types.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../policy/machines/pool.ts';
import type { Eq1Input, Eq1Result } from '../policy/milp.ts';
import type { MilpSolveOutcome } from '../policy/pool-shards-milp.ts';
import type { InstanceBrain } from './instance-brain.ts';
import type { CoreRequest } from '../engine/core-types.ts';

export type { PoolMachineConfig } from '../policy/machines/pool.ts';

/** A simulated request as the pool leader gets it: its predicted type, lengths, TTFT deadline, moves; give-up time the gateway's 600 s. */
export function simRequest(r: CoreRequest, pred: RequestType, moves: number): InferenceRequest {
  return {
    v: 1, id: r.id, model: '', kind: 'completion', inputTokens: r.promptTokens, maxTokens: r.outputTokens, arrivalMs: r.arrivalMs, giveUpAtMs: r.arrivalMs + 600_000,
    streamSubject: '', type: pred, ttftDeadlineMs: r.ttftDeadlineMs ?? r.arrivalMs, moves,
  };
}

/** An instance's state as its status says it; stopping (its engine exiting): the live instance reports draining until its engine has exited. */
function stateOf(i: LeaderInstance): InstanceStatus['state'] {
  return i.state === 'active' ? (!i.brain && !i.served ? 'starting' : i.brain?.s?.lifecycle === 'sleeping' ? 'sleeping' : 'ready') : i.state === 'draining' || i.state === 'stopping' ? 'draining' : i.state === 'starting' ? 'starting' : 'stopped';
}

/** What the leader reads of a simulated instance (its status is built from it). */
export interface LeaderInstance {
  id: string;
  tp: number;
  clockMhz: number;
  state: 'starting' | 'active' | 'draining' | 'stopping' | 'stopped';
  /** the node and its GPUs the instance runs on (absent: a layout no node agent placed, the oracle's). */
  node?: string;
  gpuIds?: number[];
  /** when its process started (a status's startedMs: a new process under the same id is a restart), ms. */
  startedMs?: number;
  /** its instance machine (step fidelity): an active instance without one has no engine yet; one whose lifecycle is 'sleeping' (sleep mode, ./sleep-standby.ts) reports so (no dispatch to it). */
  brain?: Pick<InstanceBrain, 'report'> & { s?: { lifecycle: string } };
  /** fluid fidelity (no instance machine): an active instance serves. */
  served?: boolean;
}

/** The parts of a status the instance's engine and machine fill in (the live instance manager's #publishStatus). */
export type StatusReport = Partial<Pick<InstanceStatus, 'queued' | 'running' | 'loadByType' | 'epochLoadByType' | 'pendingPrefillTokens' | 'admittedByType' | 'prefixCacheTokens'>>;

export interface LeaderHooks<I> {
  /** the live 'admit' request to an instance, answered at once: the instance machine's admission. */
  admit(inst: I, req: InferenceRequest, now: number): Admission;
  /** the answer to a dispatch the machine held (`dispatch` returned undefined). */
  answer(id: string, admission: Admission, now: number): void;
  /** what the instance's status reports (default: its instance machine's report). */
  report?(inst: I, now: number): StatusReport;
  /** a node command carried out by the simulated node agent: whether the node took it (default: refused). */
  node?(node: string, cmd: NodeCommand, purpose: 'reconcile' | 'reshard', now: number): boolean;
  /** drain an instance: it takes no new request, and stops once its requests are done. */
  drain?(inst: I, now: number): void;
  /** the MILP planner's solve of Eq. 1 (HiGHS). */
  solve?(input: Eq1Input): Eq1Result;
  /** each decision event the machine publishes. */
  event?(e: Extract<PoolEffect, { kind: 'event' }>, now: number): void;
}

export class SimPoolLeader<I extends LeaderInstance> {
  #s: PoolMachineState;
  #cfg: PoolMachineConfig;
  readonly #hooks: LeaderHooks<I>;
  /** the instances by id as of the last sync, and the last status sent of each (when, in which state). */
  #byId = new Map<string, I>();
  readonly #sent = new Map<string, { atMs: number; state: InstanceStatus['state'] }>();
  #seq = 0;
  #nextRef = 1;
  /** dispatch calls not answered yet: the request id of each ref. */
  readonly #refs = new Map<number, string>();
  /** the ref whose caller waits for its answer now (synchronously), and that answer. */
  #waiting = 0;
  #reply?: Admission;
  #moveReply?: MoveReply;
  /** the timers the machine armed: when each is due next, and its period, ms. */
  readonly #timers = new Map<string, { nextMs: number; everyMs: number }>();
  /** events are being handled: a change of the instances seen meanwhile is reported once they are (`#syncDue`). */
  #depth = 0;
  #syncDue?: readonly I[];

  constructor(cfg: PoolMachineConfig, types: RequestType[], hooks: LeaderHooks<I>, now: number) {
    this.#cfg = cfg;
    this.#hooks = hooks;
    this.#s = initialPoolState(types);
    this.#run({ type: 'lead' }, now);
  }

  /** The machine's state (read-only: tests and the simulator's reports read it). */
  get state(): PoolMachineState {
    return this.#s;
  }

  /** The pool's types changed (a cluster epoch): dispatch scores instances by them. */
  setTypes(types: RequestType[]): void {
    if (this.#s.types !== types) this.#s = { ...this.#s, types };
  }

  /** Dispatches held now (the machine waits for a ready instance), or a re-shard under way: the caller ticks it while there are. */
  holding(): boolean {
    return this.#s.jobs.size > 0 || this.#s.reshard !== undefined || this.#s.pendingReshard !== undefined;
  }

  /** The pool's assignment from the cluster level (its grants), with the instances' statuses due first. */
  assign(assignment: PoolAssignment, instances: readonly I[], now: number): void {
    this.sync(instances, now);
    this.#run({ type: 'assign', ref: this.#nextRef++, assignment }, now);
  }

  /** When the re-shard epoch timer the machine armed is due next, ms (Infinity: none armed). */
  nextEpochMs(): number {
    return this.#timers.get('reshard')?.nextMs ?? Infinity;
  }

  /**
   * The re-shard epoch timer fired at `now` (or a forced epoch, `force`), with every instance's status first.
   * `cfg`: the machine's configuration for this epoch only (the simulator's warm start, where reaching the layout
   * before the trace costs nothing).
   */
  epoch(instances: readonly I[], now: number, opts: { force?: boolean; cfg?: Partial<PoolMachineConfig> } = {}): void {
    const t = this.#timers.get('reshard');
    if (t && !opts.force) while (t.nextMs <= now) t.nextMs += t.everyMs;
    this.sync(instances, now, 'all');
    const base = this.#cfg;
    if (opts.cfg) this.#cfg = { ...base, ...opts.cfg };
    try {
      this.#run({ type: 'reshard_epoch', ...(opts.force ? { force: true } : {}) }, now);
    } finally {
      this.#cfg = base;
    }
  }

  /** A request: the admission (ok, or the refusal), or undefined while the machine holds it (answered later). */
  dispatch(req: InferenceRequest, instances: readonly I[], now: number): Admission | undefined {
    this.sync(instances, now);
    const ref = this.#nextRef++;
    this.#refs.set(ref, req.id);
    const outer = this.#waiting;
    this.#waiting = ref;
    this.#reply = undefined;
    this.#run({ type: 'dispatch', ref, req }, now);
    this.#waiting = outer;
    const a = this.#reply;
    this.#reply = undefined;
    return a;
  }

  /** Emergency step 3 of `from`: its requests go to peers with room; the ids placed, each with its instance. */
  move(from: string, requests: InferenceRequest[], instances: readonly I[], now: number): MoveReply['placed'] {
    this.sync(instances, now);
    this.#moveReply = undefined;
    this.#run({ type: 'move', ref: this.#nextRef++, from, requests }, now);
    const r = this.#moveReply as MoveReply | undefined;
    this.#moveReply = undefined;
    return r?.placed ?? [];
  }

  /** A request ended on `instance` (its record). */
  record(id: string, instance: string, now: number): void {
    this.#run({ type: 'record', id, instance }, now);
  }

  /** The machine's tick (held dispatches and the re-shard's waits move on), with the statuses due. */
  tick(instances: readonly I[], now: number): void {
    this.sync(instances, now);
    this.#run({ type: 'tick' }, now);
  }

  /** One instance's periodic status (its status timer fired at `now`), with the statuses of changed states due. */
  publish(inst: I, instances: readonly I[], now: number): void {
    this.sync(instances, now, inst);
  }

  /**
   * The statuses due: an instance's on a change of its state (and `periodic`'s, its timer's; 'all': every
   * instance's); a stopped one's last. While the machine's events are being handled (an effect changed an
   * instance), they are sent once those are.
   */
  sync(instances: readonly I[], now: number, periodic?: I | 'all'): void {
    if (this.#depth > 0 && periodic === undefined) {
      this.#syncDue = instances;
      return;
    }
    const due: InstanceStatus[] = [];
    const seen = new Set<string>();
    for (const i of instances) {
      seen.add(i.id);
      this.#byId.set(i.id, i);
      const state = stateOf(i);
      const last = this.#sent.get(i.id);
      if (last && last.state === state && i !== periodic && periodic !== 'all') continue;
      this.#sent.set(i.id, { atMs: now, state });
      due.push(this.#statusOf(i, state, now));
    }
    if (this.#sent.size > seen.size) {
      for (const [id, last] of this.#sent) {
        if (seen.has(id)) continue;
        this.#sent.delete(id);
        const i = this.#byId.get(id);
        this.#byId.delete(id);
        if (i && last.state !== 'stopped') due.push(this.#statusOf(i, 'stopped', now));
      }
    }
    if (due.length) this.#run({ type: 'statuses', statuses: due }, now);
  }

  /** The status the live instance manager publishes (actors/instance-manager #publishStatus). */
  #statusOf(i: I, state: InstanceStatus['state'], now: number): InstanceStatus {
    const r: StatusReport = this.#hooks.report ? this.#hooks.report(i, now) : i.brain?.report(now) ?? {};
    return {
      v: 1, id: i.id, pool: this.#cfg.pool, ...(i.node !== undefined ? { node: i.node } : {}), tp: i.tp as InstanceStatus['tp'], gpuIds: i.gpuIds ?? [], state, startedMs: i.startedMs ?? 0,
      seq: ++this.#seq, sentMs: now, clockMhz: i.clockMhz, maxClockMhz: i.clockMhz, queued: r.queued ?? 0, running: r.running ?? 0, queuedIds: [], runningIds: [],
      loadByType: r.loadByType ?? {}, pendingPrefillTokens: r.pendingPrefillTokens ?? 0,
      ...(r.epochLoadByType ? { epochLoadByType: r.epochLoadByType } : {}), ...(r.admittedByType ? { admittedByType: r.admittedByType } : {}), ...(r.prefixCacheTokens ? { prefixCacheTokens: r.prefixCacheTokens } : {}),
    };
  }

  /** One event, and the events its effects answer (admissions, node commands, the re-shard's record, a solve: at once), in order. */
  #run(first: PoolEvent, now: number): void {
    const queue: PoolEvent[] = [first];
    this.#depth++;
    try {
      for (let ev = queue.shift(); ev; ev = queue.shift()) {
        const { state, effects } = poolStep(this.#s, ev, now, this.#cfg);
        this.#s = state;
        for (const e of effects) this.#perform(e, queue, now);
      }
    } finally {
      this.#depth--;
    }
    // the instances an effect changed report it now (a live instance's status on its change of state)
    if (this.#depth === 0 && this.#syncDue) {
      const due = this.#syncDue;
      this.#syncDue = undefined;
      this.sync(due, now);
    }
  }

  #perform(e: PoolEffect, queue: PoolEvent[], now: number): void {
    switch (e.kind) {
      case 'admit': {
        const inst = this.#byId.get(e.instance);
        const admission: Admission = inst ? this.#hooks.admit(inst, e.req, now) : { v: 1, id: e.req.id, ok: false, error: { code: 'unavailable', message: `no instance ${e.instance}`, retryable: true } };
        queue.push({ type: 'admit_result', job: e.job, admission });
        break;
      }
      case 'reply': {
        const id = this.#refs.get(e.ref);
        this.#refs.delete(e.ref);
        if (e.ref === this.#waiting) this.#reply = e.admission;
        else if (id !== undefined) this.#hooks.answer(id, e.admission, now);
        break;
      }
      case 'move_reply':
        this.#moveReply = e.reply;
        break;
      case 'arm_timer':
        this.#timers.set(e.timer, { nextMs: now + e.everyMs, everyMs: e.everyMs });
        break;
      case 'disarm_leader_timers':
        for (const k of [...this.#timers.keys()]) if (k !== 'sweep') this.#timers.delete(k);
        break;
      case 'pause_timer':
        this.#timers.delete(e.timer);
        break;
      case 'node':
        queue.push({ type: 'node_result', cmd: e.cmd, ok: this.#hooks.node?.(e.node, e.cmd, e.purpose, now) ?? false, purpose: e.purpose });
        break;
      case 'drain': {
        const inst = this.#byId.get(e.instance);
        if (inst) this.#hooks.drain?.(inst, now);
        break;
      }
      case 'persist_reshard':
        if (e.ack !== undefined) queue.push({ type: 'reshard_stored', ack: e.ack, ok: true });
        break;
      case 'solve': {
        if (!this.#hooks.solve) throw new Error(`${this.#cfg.pool}: planner 'milp' needs a solver`);
        let solved: MilpSolveOutcome;
        try {
          solved = { result: this.#hooks.solve(e.input) };
        } catch (err) {
          solved = { error: (err as Error).message };
        }
        queue.push({ type: 'planned', force: e.force, solved });
        break;
      }
      case 'event':
        this.#hooks.event?.(e, now);
        break;
      default:
        // held / hold_over / end_stream / persist_dispatched / forget_dispatched / resume / command_reply: no caller
        // waits on a stream, a store or a command in the simulator
        break;
    }
  }
}
