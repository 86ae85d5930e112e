/**
 * Liveness verdicts after a process stall (src/policy/timer-stall.ts): a check whose timer fires far later than it was
 * due ran after the process was stopped, and the stall is not its peers' silence. The rule on its own, the instance's
 * gateway watch (actors/instance-manager/gateway-watch.ts) on a clock that jumps as a SIGSTOP/SIGCONT makes it, and the
 * pool machine's death check told of a stall.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import { TIMER_STALL_MS, afterStall, creditStall, timerStallMs } from '../../src/policy/timer-stall.ts';
import { GONE_AFTER_MS, GatewayWatch } from '../../actors/instance-manager/gateway-watch.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import type { Heartbeat } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;

/** A manual clock whose time can jump without firing timers: the next timer then fires late, as after a SIGCONT. */
class StoppableClock extends ManualClock {
  #jump = 0;
  override now(): number {
    return super.now() + this.#jump;
  }
  /** the process was stopped `ms`: wall time moved, no timer ran. */
  stop(ms: number): void {
    this.#jump += ms;
  }
}

describe('timer stall rule', () => {
  it('a timer late by the threshold or more measures a stall; one a little late (a busy loop) does not', () => {
    expect(timerStallMs(T0, T0)).toBe(0);
    expect(timerStallMs(T0, T0 + TIMER_STALL_MS - 1)).toBe(0);
    expect(timerStallMs(T0, T0 + TIMER_STALL_MS)).toBe(TIMER_STALL_MS);
    expect(timerStallMs(T0, T0 + 12_000)).toBe(12_000);
    expect(timerStallMs(T0, T0 + 300, 250)).toBe(300);
    expect(creditStall(T0, 12_000)).toBe(T0 + 12_000);
    expect(afterStall(T0, T0 + 200)).toBe('now');
    expect(afterStall(T0, T0 + 5000)).toBe('after_io');
  });

  it('the gateway watch does not end a leg for a stall of its own process, and still ends it when the gateway stays silent', () => {
    const clock = new StoppableClock(T0);
    const GRACE = 1000;
    const w = new GatewayWatch(clock, GRACE);
    const bus = { subscribe: () => ({ unsubscribe() {} }), on() {}, off() {} } as unknown as Bus;
    w.start(bus);
    const gw = { id: 'gw-0', startedMs: T0 - 60_000 };
    const beat = (seq: number): Heartbeat => ({ v: 1, kind: 'gateway', id: gw.id, seq, startedMs: gw.startedMs, sentMs: clock.now(), state: 'running', load: { queued: 0, running: 0 } });
    w.observe(beat(1));
    const ended: number[] = [];
    w.watch(gw, () => ended.push(clock.now() - T0));
    clock.advance(1000);
    w.observe(beat(2));
    // stopped for 12 s (past GONE_AFTER_MS + the grace): the first check after the resume runs before the socket is read
    clock.stop(12_000);
    clock.advance(500);
    expect(ended).toEqual([]);
    // the gateway beats on (read now): the leg stays
    w.observe(beat(3));
    const last = clock.now();
    clock.advance(GONE_AFTER_MS);
    expect(ended).toEqual([]);
    // then it falls silent: the leg ends GONE_AFTER_MS + the grace after its last beat, as without a stall
    clock.advance(GRACE + 600);
    expect(ended).toHaveLength(1);
    expect(ended[0]! - (last - T0)).toBeGreaterThan(GONE_AFTER_MS + GRACE - 1);
    w.stop();
  });
});
