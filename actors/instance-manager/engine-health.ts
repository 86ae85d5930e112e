/**
 * The instance manager's health watch of its running engine (docs/DATAPATH.md "A hung engine"): a frozen engine
 * (SIGSTOPped, a hung GPU) keeps its process and its port, so no exit says it is gone. While the engine is ready,
 * the manager probes its /health within a deadline at `timeouts.engineHealth.intervalMs` (not when tokens came
 * within the interval); `misses` failures in a row make it hung: the manager leaves `ready` (its status says
 * `restarting`, so dispatch stops), SIGKILLs it, and the engine restarts as after a crash (its streams end with a
 * retryable error and continue on peers). The decisions are src/policy engine-liveness.ts's; this is their shell.
 */
import { within, type Clock } from '../../src/runtime/clock.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { healthProbeDue, healthProbed, healthProbeSent, healthTokens, newHealthWatch, type EngineHealthSettings, type HealthWatch } from '../../src/policy/engine-liveness.ts';

export interface EngineHealthHost {
  readonly clock: Clock;
  readonly engine: Pick<Engine, 'state' | 'probeHealth' | 'killHung'>;
  readonly settings: EngineHealthSettings;
  /** `misses` probes in a row failed: the engine is hung (out of dispatch here; SIGKILLed once this returns). */
  hung(misses: number): void;
}

export class EngineHealth {
  #w: HealthWatch = newHealthWatch();
  #lastTokenMs: number | undefined;
  /** the engine's process as the watch knows it: a probe's answer counts only for the process it was sent to. */
  #gen = 0;

  constructor(private readonly h: EngineHealthHost) {}

  /** how often to call tick, ms: twice an interval, so a probe is never more than half an interval late. */
  get tickMs(): number {
    return Math.max(100, Math.floor(this.h.settings.intervalMs / 2));
  }

  /** tokens came from the engine (relayed, or a gateway's first-token report): it works. */
  tokens(): void {
    this.#lastTokenMs = this.h.clock.now();
    this.#w = healthTokens(this.#w);
  }

  /** the engine was restarted (a new process): the watch starts again. */
  restarted(): void {
    this.#gen++;
    this.#w = newHealthWatch();
  }

  tick(): void {
    const { clock, engine, settings } = this.h;
    const now = clock.now();
    if (!healthProbeDue(this.#w, engine.state === 'ready', now, this.#lastTokenMs, settings)) return;
    this.#w = healthProbeSent(this.#w, now);
    const gen = this.#gen;
    within(engine.probeHealth(settings.deadlineMs), settings.deadlineMs, 'the engine health probe', clock).then(
      (ok) => this.#answered(gen, ok),
      () => this.#answered(gen, false),
    );
  }

  #answered(gen: number, ok: boolean): void {
    if (gen !== this.#gen) return;
    const { w, verdict } = healthProbed(this.#w, ok, this.h.settings);
    this.#w = w;
    if (verdict !== 'hung') return;
    this.#gen++;
    this.h.hung(this.h.settings.misses);
    this.h.engine.killHung();
  }
}
