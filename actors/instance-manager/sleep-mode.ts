/**
 * The instance manager's lifecycle commands from its pool leader: 'drain' and 'resume' (re-shard and scale-in
 * steps), and its part of the pool's sleep-mode standby (src/policy/sleep-standby.ts): the 'sleep' and 'wake'
 * instance commands. The decisions are the instance machine's (src/policy/machines/instance-sleep.ts: it stops
 * admitting, puts the engine to sleep once it holds nothing, gives up at its deadline, wakes): this shell hands it the
 * commands and carries out its engine_sleep and engine_wake on the engine (vLLM sleep mode: POST /sleep?level=N,
 * POST /wake_up), one call at a time, each answered back to the machine. Commands answer at once (a wake takes seconds:
 * src/model/sleep.ts); the status says when the instance serves.
 */
import type { Logger } from 'pino';
import type { Ack, InstanceCommand } from '../../protocols/index.ts';
import type { Engine } from '../../src/engine/index.ts';
import type { InstanceEvent, InstanceLifecycle } from '../../src/policy/machines/instance.ts';

export interface SleepModeDeps {
  engine: Pick<Engine, 'sleep' | 'wakeUp'>;
  log: Logger;
  state: () => InstanceLifecycle;
  /** requests the instance holds: queued, and running. */
  queued: () => number;
  running: () => number;
  /** the instance machine's lifecycle event (a drain also hands requests to peers). */
  lifecycle: (state: 'ready' | 'draining', why: string) => void;
  /** one instance machine transition. */
  step: (ev: InstanceEvent) => void;
}

export class LifecycleCommands {
  /** the engine call under way: the next one waits for it. */
  #op: Promise<void> = Promise.resolve();

  constructor(private readonly d: SleepModeDeps) {}

  /** A lifecycle command (set_clock is the instance machine's, not here); `stopping`: the instance is stopping. */
  command(cmd: InstanceCommand, stopping: boolean): Ack {
    const st = this.d.state();
    switch (cmd.op) {
      case 'drain':
        // a sleeping instance drains too (a re-shard or scale-in stops it): it holds nothing, or finishes what it holds
        if (st === 'ready' || st === 'sleeping') this.d.lifecycle('draining', cmd.reason);
        return { v: 1, ok: true, detail: { queued: this.d.queued(), running: this.d.running() } };
      case 'resume':
        // an instance that is stopping stays stopping; one whose engine sleeps turns 'sleeping' and serves once woken (the machine's)
        if (st === 'draining' && !stopping) this.d.lifecycle('ready', cmd.reason);
        return { v: 1, ok: true };
      case 'sleep':
        if (st === 'sleeping') return { v: 1, ok: true, detail: { already: true } };
        if (st !== 'ready') return { v: 1, ok: false, error: { code: 'unavailable', message: `cannot sleep while ${st}`, retryable: true } };
        this.d.step({ type: 'sleep', level: cmd.level ?? 1, why: cmd.reason });
        return { v: 1, ok: true, detail: { level: cmd.level ?? 1, held: this.d.queued() + this.d.running() } };
      case 'wake':
        if (st !== 'sleeping') return { v: 1, ok: true, detail: { already: true } };
        this.d.step({ type: 'wake', why: cmd.reason });
        return { v: 1, ok: true };
      default:
        return { v: 1, ok: false, error: { code: 'invalid_request', message: `not a lifecycle command: ${cmd.op}`, retryable: false } };
    }
  }

  /** The machine's engine_sleep / engine_wake: the engine call, its outcome back to the machine. */
  engine(e: { kind: 'engine_sleep'; level: 1 | 2 } | { kind: 'engine_wake' }): void {
    this.#op = this.#op.then(async () => {
      try {
        if (e.kind === 'engine_sleep') await this.d.engine.sleep(e.level);
        else await this.d.engine.wakeUp();
        this.d.step(e.kind === 'engine_sleep' ? { type: 'engine_slept', ok: true } : { type: 'engine_woke', ok: true });
      } catch (err) {
        const error = (err as Error).message;
        this.d.log.warn({ err: error }, e.kind === 'engine_sleep' ? 'engine sleep failed: serving again' : 'engine wake failed: the instance stays sleeping');
        this.d.step(e.kind === 'engine_sleep' ? { type: 'engine_slept', ok: false, error } : { type: 'engine_woke', ok: false, error });
      }
    });
  }
}
