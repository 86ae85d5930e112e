/**
 * One simulated instance manager: the instance machine (src/policy/machines/instance.ts, the code the live
 * instance manager runs) on the simulator's virtual clock. The simulator feeds it the events the live
 * actor would (admissions, first tokens, completions, epochs, ticks, peers' statuses, the GPU clock's
 * changes) and interprets its effects through the hooks: start a request in the batching core, fail one,
 * change the clock, move requests to peers, put the engine to sleep and wake it. No decision is taken here.
 */
import {
  currentLoad, initialInstanceState, instanceStep, pendingPrefillTokens, projectedLoad,
  type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState,
} from '../policy/machines/instance.ts';
import type { LoadByType } from '../policy/types.ts';

export interface InstanceBrainHooks {
  /** start this admitted request in the engine. */
  start(id: string, now: number): void;
  /** the request ends without starting (rejected by the ladder, a full queue after a failed move). */
  fail(id: string, outcome: 'rejected' | 'failed' | 'cancelled', now: number): void;
  /** change the GPU clock; call `clockApplied` when it took effect. */
  setClock(mhz: number, why: string, inputs: Record<string, unknown>, now: number): void;
  /** place these queued requests on peers; returns the ids placed. */
  move(ids: string[], now: number): string[];
  /** a decision event (instance, clock, emergency). */
  event(e: Extract<InstanceEffect, { kind: 'event' }>, now: number): void;
  /** sleep mode: put the engine to sleep or wake it; answer with `step` 'engine_slept' / 'engine_woke' when done. */
  engine?(e: Extract<InstanceEffect, { kind: 'engine_sleep' | 'engine_wake' }>, now: number): void;
  /**
   * the engine's prefix-cache counters now (the core's; undefined: no cache): handed to the machine as the live
   * instance manager hands it the engine's scraped vllm:prefix_cache_queries / _hits, before an admission, a tick
   * or an epoch whenever they changed.
   */
  prefixCache?: () => { lookup: number; hit: number } | undefined;
  /** every transition, with its effects (tests replay them through instanceStep). */
  tap?: (ev: InstanceEvent, now: number, effects: InstanceEffect[]) => void;
}

/**
 * The live instance manager's defaults (actors/common/config.ts: engine.maxInEngine 64, engine.maxQueued 256,
 * emergency.rejectAfterMs 5000, moveQueueAbove 16, retryAfterS 1, liveness.deadAfterMs 3000; its ladder tick 100 ms).
 */
export const LIVE_INSTANCE_DEFAULTS = { maxInEngine: 64, maxQueued: 256, rejectAfterMs: 5000, moveQueueAbove: 16, retryAfterS: 1, deadAfterMs: 3000, tickMs: 100 } as const;

export class InstanceBrain {
  s: InstanceMachineState;
  readonly #cfg: InstanceMachineConfig;
  readonly #hooks: InstanceBrainHooks;
  /** events raised while effects are performed, stepped after them (in order). */
  readonly #pending: { ev: InstanceEvent; now: number }[] = [];
  #stepping = false;
  /** while an epoch before the simulation runs: its decision is not the simulation's, and its clock is applied at once. */
  #prior?: { clock?: { mhz: number; why: string; inputs: Record<string, unknown> } };

  /**
   * `windowStartMs`: when its load window opened (default now; earlier for an instance up before the simulation).
   * `priorEpochMs` (< now): an instance up before the simulation whose last epoch before it fell then, with nothing
   * arrived (a live instance up longer than an epoch before the trace): the machine runs that epoch, and its GPU is at
   * the clock it chose when the simulation starts. Its start-up, that decision and their clock changes are before the
   * simulation: the hooks' `event` and `setClock` do not hear of them (the tap does); the load window opens at that epoch.
   */
  constructor(cfg: InstanceMachineConfig, hooks: InstanceBrainHooks, now: number, supportedMhz: number[], windowStartMs = now, priorEpochMs?: number) {
    this.#cfg = cfg;
    this.#hooks = hooks;
    const t0 = priorEpochMs === undefined ? now : priorEpochMs - cfg.epochMs;
    // (forcedUntilMs: no pool clock before it; the machine's initial 0 would read as one at a time before 0)
    this.s = { ...initialInstanceState(t0), windowStartMs: priorEpochMs === undefined ? windowStartMs : t0, ...(priorEpochMs !== undefined ? { forcedUntilMs: t0 } : {}) };
    if (priorEpochMs !== undefined) this.#prior = {};
    this.step({ type: 'gpu_ready', supportedMhz }, t0);
    // the GPU opens at its max clock, and the machine hears that before the instance serves (the live actor awaits the
    // start-up clock before it admits): an admission at this instant then finds the clock set, not 0
    const max = supportedMhz.reduce((a, b) => Math.max(a, b), 0);
    if (this.s.clockPending === max) this.clockApplied(max, 'start-up: max clock until the first epoch', {}, t0);
    this.step({ type: 'lifecycle', state: 'ready', why: 'engine ready' }, t0);
    if (priorEpochMs !== undefined) {
      this.#prior = {};
      this.step({ type: 'epoch' }, priorEpochMs);
      const c = this.#prior?.clock;
      if (c) this.clockApplied(c.mhz, c.why, c.inputs, priorEpochMs);
      this.#prior = undefined;
    }
  }

  get config(): InstanceMachineConfig {
    return this.#cfg;
  }

  /** One event (and the events its effects raise). */
  step(ev: InstanceEvent, now: number): InstanceEffect[] {
    if (ev.type === 'admit' || ev.type === 'tick' || ev.type === 'epoch') {
      const c = this.#hooks.prefixCache?.();
      if (c && (c.lookup !== (this.s.promptTokens ?? 0) || c.hit !== (this.s.cachedTokens ?? 0))) this.#pending.push({ ev: { type: 'prefix_cache', lookup: c.lookup, hit: c.hit }, now });
    }
    this.#pending.push({ ev, now });
    if (this.#stepping) return [];
    this.#stepping = true;
    const all: InstanceEffect[] = [];
    try {
      for (let next = this.#pending.shift(); next; next = this.#pending.shift()) {
        const { state, effects } = instanceStep(this.s, next.ev, next.now, this.#cfg);
        this.s = state;
        this.#hooks.tap?.(next.ev, next.now, effects);
        for (const e of effects) {
          all.push(e);
          this.#perform(e, next.now);
        }
      }
    } finally {
      this.#stepping = false;
    }
    return all;
  }

  #perform(e: InstanceEffect, now: number): void {
    const h = this.#hooks;
    switch (e.kind) {
      case 'start':
        h.start(e.id, now);
        break;
      case 'fail':
        h.fail(e.id, e.outcome, now);
        break;
      case 'set_clock':
        if (this.#prior) this.#prior.clock = { mhz: e.clockMhz, why: e.why, inputs: e.inputs };
        else h.setClock(e.clockMhz, e.why, e.inputs, now);
        break;
      case 'move': {
        const placed = h.move(e.ids, now);
        this.#pending.push({ ev: { type: 'moved', ids: e.ids, placed }, now });
        break;
      }
      case 'event':
        if (!this.#prior) h.event(e, now);
        break;
      case 'engine_sleep':
      case 'engine_wake':
        h.engine?.(e, now);
        break;
      // the simulator's loop drives the epochs and ticks; admissions are answered by the caller reading the
      // effects; statuses are read from the state when a peer or the dispatcher needs them
      case 'arm_timer':
      case 'pause_timer':
      case 'admitted':
      case 'refused':
      case 'abort':
      case 'status':
        break;
    }
  }

  /** The clock the GPU took (the answer to a set_clock). */
  clockApplied(requestedMhz: number, why: string, inputs: Record<string, unknown>, now: number): void {
    this.step({ type: 'clock_applied', requestedMhz, appliedMhz: requestedMhz, why, inputs }, now);
  }

  /** The load the instance reports to its pool (req/s by type). */
  load(now: number): LoadByType {
    return currentLoad(this.s, now, this.#cfg);
  }

  /** The load its status tells the pool's re-shard epoch (epochLoadByType: policy projectedLoad). */
  epochLoad(now: number): LoadByType {
    return projectedLoad(this.s, now, this.#cfg);
  }

  /** What its status tells the pool (actors/instance-manager #publishStatus): queue, running, load, prompt tokens awaiting prefill. */
  report(now: number): { queued: number; running: number; loadByType: LoadByType; pendingPrefillTokens: number } {
    return { queued: this.s.queue.length, running: this.s.running.size, loadByType: currentLoad(this.s, now, this.#cfg), pendingPrefillTokens: pendingPrefillTokens(this.s) };
  }

  /** Prompt tokens admitted and not prefilled yet, whole prompts (its status's pendingPrefillTokens). */
  pendingPrefillTokens(): number {
    return pendingPrefillTokens(this.s);
  }

  /** Nothing for a tick to do: no queue, no emergency, no arrival since the last load-rise check. */
  idle(): boolean {
    return this.s.queue.length === 0 && this.s.emergency.level === 0 && !this.s.arrivedSinceRiseCheck && !this.s.moving;
  }
}
