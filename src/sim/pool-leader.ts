/**
 * One simulated pool leader's dispatch: the pool machine (src/policy/machines/pool.ts, the code the live pool
 * leader runs) on the simulator's virtual clock, stepped with the events the live leader gets: 'dispatch' for a
 * request, 'move' for an instance's emergency step 3, 'admit_result' for each admission it asked for, 'statuses'
 * with the instance statuses due, 'record' when a request ends, 'tick' while it holds requests. Its tries, its local
 * count between two statuses, its holds (no instance ready while capacity is coming) and its choice (policy
 * dispatchRequest) are the machine's.
 *
 * The machine sees the pool's instances as the live leader does, through their statuses: one per instance on its own
 * schedule (`publish`, every `statusIntervalMs` from the instance's start, as the live instance manager's status
 * timer: the simulator's event loop calls it) and one on each change of its state, built as the live instance manager
 * builds its status from its machine (queue length, running, currentLoad, pendingPrefillTokens). Between two statuses
 * the machine counts what it sent an instance (its local view); the status of an instance is as old as its last
 * publication, not the dispatch's. The effects are performed here:
 * an 'admit' asks the simulated instance (the hook answers at once), a 'reply' or 'move_reply' answers the caller
 * (a held dispatch later, through the `answer` hook). The other effects (timers, the dispatched-list store,
 * reconciliation, decision events) have nothing to act on in the simulator: the pool's layout is ./pool-brain.ts's
 * re-shard epoch. No decision is taken here.
 */
import type { InstanceStatus, MoveReply } from '../../protocols/control.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';
import type { RequestType } from '../../protocols/request-types.ts';
import { initialPoolState, poolStep, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../policy/machines/pool.ts';
import type { InstanceBrain } from './instance-brain.ts';
import type { CoreRequest } from '../engine/core-types.ts';

/** A simulated request as the pool leader gets it: its predicted type, lengths, TTFT deadline, moves; give-up time the gateway's 600 s. */
export function simRequest(r: CoreRequest, pred: RequestType, moves: number): InferenceRequest {
  return {
    v: 1, id: r.id, model: '', kind: 'completion', inputTokens: r.promptTokens, maxTokens: r.outputTokens, arrivalMs: r.arrivalMs, giveUpAtMs: r.arrivalMs + 600_000,
    streamSubject: '', type: pred, ttftDeadlineMs: r.ttftDeadlineMs ?? r.arrivalMs, moves,
  };
}

/** An instance's state as its status says it; stopping (its engine exiting): the live instance reports draining until its engine has exited. */
function stateOf(i: LeaderInstance): InstanceStatus['state'] {
  return i.state === 'active' ? (!i.brain ? 'starting' : i.brain.s?.lifecycle === 'sleeping' ? 'sleeping' : 'ready') : i.state === 'draining' || i.state === 'stopping' ? 'draining' : i.state === 'starting' ? 'starting' : 'stopped';
}

/** What the leader reads of a simulated instance (its status is built from its instance machine). */
export interface LeaderInstance {
  id: string;
  tp: number;
  clockMhz: number;
  state: 'starting' | 'active' | 'draining' | 'stopping' | 'stopped';
  /** its instance machine (step fidelity): an active instance without one has no engine yet; one whose lifecycle is 'sleeping' (sleep mode, ./sleep-standby.ts) reports so (no dispatch to it). */
  brain?: Pick<InstanceBrain, 'report'> & { s?: { lifecycle: string } };
}

export interface LeaderHooks<I extends LeaderInstance> {
  /** the live 'admit' request to an instance, answered at once: the instance machine's admission. */
  admit(inst: I, req: InferenceRequest, now: number): Admission;
  /** the answer to a dispatch the machine held (`dispatch` returned undefined). */
  answer(id: string, admission: Admission, now: number): void;
}

export class SimPoolLeader<I extends LeaderInstance> {
  #s: PoolMachineState;
  readonly #cfg: PoolMachineConfig;
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

  constructor(cfg: PoolMachineConfig, types: RequestType[], hooks: LeaderHooks<I>, now: number) {
    this.#cfg = cfg;
    this.#hooks = hooks;
    this.#s = initialPoolState(types);
    this.#run({ type: 'lead' }, now);
  }

  /** The pool's types changed (a cluster epoch): dispatch scores instances by them. */
  setTypes(types: RequestType[]): void {
    if (this.#s.types !== types) this.#s = { ...this.#s, types };
  }

  /** Dispatches held now (the machine waits for a ready instance): the caller ticks it while there are. */
  holding(): boolean {
    return this.#s.jobs.size > 0;
  }

  /** A request: the admission (ok, or the refusal), or undefined while the machine holds it (answered later). */
  dispatch(req: InferenceRequest, instances: readonly I[], now: number): Admission | undefined {
    this.sync(instances, now);
    const ref = this.#nextRef++;
    this.#refs.set(ref, req.id);
    this.#waiting = ref;
    this.#reply = undefined;
    this.#run({ type: 'dispatch', ref, req }, now);
    this.#waiting = 0;
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

  /** The machine's tick (held dispatches move on), with the statuses due. */
  tick(instances: readonly I[], now: number): void {
    this.sync(instances, now);
    this.#run({ type: 'tick' }, now);
  }

  /** One instance's periodic status (its status timer fired at `now`), with the statuses of changed states due. */
  publish(inst: I, instances: readonly I[], now: number): void {
    this.sync(instances, now, inst);
  }

  /** The statuses due: an instance's on a change of its state (and `periodic`'s, its timer's); a stopped one's last. */
  sync(instances: readonly I[], now: number, periodic?: I): void {
    const due: InstanceStatus[] = [];
    const seen = new Set<string>();
    for (const i of instances) {
      seen.add(i.id);
      this.#byId.set(i.id, i);
      const state = stateOf(i);
      const last = this.#sent.get(i.id);
      if (last && last.state === state && i !== periodic) continue;
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

  /** The status the live instance manager publishes (actors/instance-manager #publishStatus), from the instance's machine. */
  #statusOf(i: I, state: InstanceStatus['state'], now: number): InstanceStatus {
    const r = i.brain?.report(now);
    return {
      v: 1, id: i.id, pool: this.#cfg.pool, tp: i.tp as InstanceStatus['tp'], gpuIds: [], state, startedMs: 0, seq: ++this.#seq, sentMs: now,
      clockMhz: i.clockMhz, maxClockMhz: i.clockMhz, queued: r?.queued ?? 0, running: r?.running ?? 0, queuedIds: [], runningIds: [],
      loadByType: r?.loadByType ?? {}, pendingPrefillTokens: r?.pendingPrefillTokens ?? 0,
    };
  }

  /** One event, and the events its effects answer (admissions are answered at once), in order. */
  #run(first: PoolEvent, now: number): void {
    const queue: PoolEvent[] = [first];
    for (let ev = queue.shift(); ev; ev = queue.shift()) {
      const { state, effects } = poolStep(this.#s, ev, now, this.#cfg);
      this.#s = state;
      for (const e of effects) {
        if (e.kind === 'admit') {
          const inst = this.#byId.get(e.instance);
          const admission: Admission = inst ? this.#hooks.admit(inst, e.req, now) : { v: 1, id: e.req.id, ok: false, error: { code: 'unavailable', message: `no instance ${e.instance}`, retryable: true } };
          queue.push({ type: 'admit_result', job: e.job, admission });
        } else if (e.kind === 'reply') {
          const id = this.#refs.get(e.ref);
          this.#refs.delete(e.ref);
          if (e.ref === this.#waiting) this.#reply = e.admission;
          else if (id !== undefined) this.#hooks.answer(id, e.admission, now);
        } else if (e.kind === 'move_reply') this.#moveReply = e.reply;
      }
    }
  }
}
