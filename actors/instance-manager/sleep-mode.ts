/**
 * The instance manager's lifecycle commands from its pool leader: 'drain' and 'resume' (re-shard and scale-in
 * steps), and its part of the pool's sleep-mode standby (src/policy/sleep-standby.ts): the 'sleep' and 'wake'
 * instance commands, carried out on the engine (vLLM sleep mode: POST /sleep?level=N, POST /wake_up). The
 * decision is the pool leader's; the instance machine's lifecycle 'sleeping' makes it admit nothing and report
 * 'sleeping', while the requests it holds finish. This shell waits for them, then puts the engine to sleep; a wake
 * waits for a sleep call in flight, wakes the engine and turns the instance ready again. Both answer at once (a
 * wake takes seconds: src/model/sleep.ts); the status says when the instance serves.
 */
import type { Logger } from 'pino';
import type { Ack, InstanceCommand } from '../../protocols/index.ts';
import type { Engine } from '../../src/engine/index.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { InstanceLifecycle } from '../../src/policy/machines/instance.ts';

/** How long a sleep waits for the instance's requests to finish before it gives up and serves again, ms. */
export const SLEEP_DRAIN_DEADLINE_MS = 600_000;
const POLL_MS = 50;

export interface SleepModeDeps {
  engine: Pick<Engine, 'sleep' | 'wakeUp'>;
  clock: Clock;
  log: Logger;
  state: () => InstanceLifecycle;
  /** requests the instance holds: queued, and running. */
  queued: () => number;
  running: () => number;
  /** the instance machine's lifecycle event. */
  lifecycle: (state: 'sleeping' | 'ready' | 'draining', why: string) => void;
}

export class LifecycleCommands {
  /** the engine is asleep (its sleep call answered), or a sleep call is in flight. */
  #asleep = false;
  /** the sleep or wake under way: the next one waits for it. */
  #op: Promise<void> = Promise.resolve();
  /** bumped by each command: a drain wait of an earlier sleep gives up. */
  #gen = 0;

  constructor(private readonly d: SleepModeDeps) {}

  /** A lifecycle command (set_clock is the instance machine's, not here); `stopping`: the instance is stopping. */
  command(cmd: InstanceCommand, stopping: boolean): Ack {
    const st = this.d.state();
    switch (cmd.op) {
      case 'drain':
        // a sleeping instance drains too (a re-shard or scale-in stops it): it holds nothing, or finishes what it holds
        if (st === 'ready' || st === 'sleeping') {
          this.#gen++;
          this.d.lifecycle('draining', cmd.reason);
        }
        return { v: 1, ok: true, detail: { queued: this.d.queued(), running: this.d.running() } };
      case 'resume':
        // an instance that is stopping stays stopping
        if (st === 'draining' && !stopping) this.d.lifecycle('ready', cmd.reason);
        return { v: 1, ok: true };
      case 'sleep':
        return this.sleep(cmd.level ?? 1, cmd.reason);
      case 'wake':
        return this.wake(cmd.reason);
      default:
        return { v: 1, ok: false, error: { code: 'invalid_request', message: `not a lifecycle command: ${cmd.op}`, retryable: false } };
    }
  }

  /** Whether the engine is asleep (or falling asleep). */
  get asleep(): boolean {
    return this.#asleep;
  }

  sleep(level: 1 | 2, why: string): Ack {
    const st = this.d.state();
    if (st === 'sleeping') return { v: 1, ok: true, detail: { already: true } };
    if (st !== 'ready') return { v: 1, ok: false, error: { code: 'unavailable', message: `cannot sleep while ${st}`, retryable: true } };
    this.d.lifecycle('sleeping', why);
    const gen = ++this.#gen;
    this.#op = this.#op.then(() => this.#sleepWhenIdle(level, gen));
    return { v: 1, ok: true, detail: { level, held: (this.d.queued() + this.d.running()) } };
  }

  wake(why: string): Ack {
    if (this.d.state() !== 'sleeping') return { v: 1, ok: true, detail: { already: true } };
    const gen = ++this.#gen;
    this.#op = this.#op.then(async () => {
      if (gen !== this.#gen || this.d.state() !== 'sleeping') return;
      if (this.#asleep) {
        try {
          await this.d.engine.wakeUp();
          this.#asleep = false;
        } catch (err) {
          this.d.log.warn({ err: (err as Error).message }, 'engine wake failed: the instance stays sleeping');
          return;
        }
      }
      if (this.d.state() === 'sleeping') this.d.lifecycle('ready', why);
    });
    return { v: 1, ok: true };
  }

  async #sleepWhenIdle(level: 1 | 2, gen: number): Promise<void> {
    const until = this.d.clock.now() + SLEEP_DRAIN_DEADLINE_MS;
    while ((this.d.queued() + this.d.running()) > 0 && gen === this.#gen && this.d.state() === 'sleeping' && this.d.clock.now() < until) await this.d.clock.sleep(POLL_MS);
    if (gen !== this.#gen || this.d.state() !== 'sleeping') return;
    if ((this.d.queued() + this.d.running()) > 0) {
      this.d.log.warn({ held: (this.d.queued() + this.d.running()) }, 'requests still held at the sleep deadline: serving again');
      this.d.lifecycle('ready', 'sleep gave up: requests still held');
      return;
    }
    this.#asleep = true;
    try {
      await this.d.engine.sleep(level);
    } catch (err) {
      this.#asleep = false;
      this.d.log.warn({ err: (err as Error).message, level }, 'engine sleep failed: serving again');
      if (this.d.state() === 'sleeping') this.d.lifecycle('ready', 'engine sleep failed');
    }
  }
}
