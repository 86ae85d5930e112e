/**
 * A machine's periodic timers by name, as its shell runs its arm_timer / pause_timer effects: arming a name again
 * replaces its timer, pausing stops it until the next arm, and once cleared (the actor stopping) none runs again.
 */
import type { Clock } from './clock.ts';

export class NamedTimers {
  readonly #timers = new Map<string, unknown>();
  #cleared = false;
  constructor(private readonly clock: Clock) {}

  arm(name: string, everyMs: number, fn: () => void): undefined {
    if (this.#cleared) return undefined;
    this.pause(name);
    this.#timers.set(name, this.clock.setInterval(fn, everyMs));
    return undefined;
  }

  pause(name: string): undefined {
    const t = this.#timers.get(name);
    if (t !== undefined) this.clock.clearInterval(t);
    this.#timers.delete(name);
    return undefined;
  }

  armed(name: string): boolean {
    return this.#timers.has(name);
  }

  clear(): void {
    for (const name of [...this.#timers.keys()]) this.pause(name);
    this.#cleared = true;
  }
}
