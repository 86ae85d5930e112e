/**
 * A request's hold limit at the gateway (GatewayServer, gateway.holdLimitMs): how long it may wait for its answer
 * to begin, from its arrival. docs/DATAPATH.md "Holds have a limit".
 */
import type { Clock } from '../../src/runtime/clock.ts';
import { DynError } from '../../protocols/errors.ts';

/** The abort reason of a request past its hold limit (answered with a 503 already). */
export const holdPassed = (): DynError => new DynError('unavailable', 'the request did not start within the gateway\'s hold limit', { retryable: true, retryAfterS: 1 });

/**
 * A request's hold limit at the gateway: `ms` after the request arrived, unless its answer has begun (begin(): its
 * first token came; or `waiting` says no: a response went out) or it ended (clear()), `onExpire` answers it, `passed`
 * becomes true and the callbacks given to onPass run (the request's abort). Timers on the injected clock.
 */
export class HoldLimit {
  passed = false;
  readonly #timer: unknown;
  readonly #onPass: (() => void)[] = [];

  constructor(private readonly clock: Clock, ms: number, waiting: () => boolean, onExpire: () => void) {
    this.#timer = clock.setTimeout(() => {
      if (!waiting()) return;
      this.passed = true;
      onExpire();
      for (const f of this.#onPass) f();
    }, ms);
  }

  begin(): void {
    this.clear();
  }

  onPass(f: () => void): void {
    if (this.passed) f();
    else this.#onPass.push(f);
  }

  clear(): void {
    this.clock.clearTimeout(this.#timer);
  }
}
