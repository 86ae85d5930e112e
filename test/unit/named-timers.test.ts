/**
 * A machine's timers as its shell runs its arm_timer / pause_timer effects (src/runtime/named-timers.ts), on a
 * manual clock: a paused timer does not fire, arming a name again replaces its timer (never two), and once cleared
 * (the actor stopping) an arm starts nothing.
 */
import { describe, it, expect } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import { NamedTimers } from '../../src/runtime/named-timers.ts';

describe('NamedTimers', () => {
  it('pause stops a timer until it is armed again; arming twice keeps one; clear stops all and for good', () => {
    const clock = new ManualClock(0);
    const t = new NamedTimers(clock);
    const fired: string[] = [];
    t.arm('tick', 100, () => fired.push(`tick@${clock.now()}`));
    t.arm('epoch', 1000, () => fired.push(`epoch@${clock.now()}`));
    clock.advance(250);
    expect(fired).toEqual(['tick@100', 'tick@200']);
    t.pause('tick');
    expect(t.armed('tick')).toBe(false);
    clock.advance(1000);
    expect(fired).toEqual(['tick@100', 'tick@200', 'epoch@1000']);
    // armed again at 1250, twice: one timer, its period from the last arm
    t.arm('tick', 100, () => fired.push(`tick@${clock.now()}`));
    t.arm('tick', 100, () => fired.push(`tick@${clock.now()}`));
    clock.advance(200);
    expect(fired.slice(3)).toEqual(['tick@1350', 'tick@1450']);
    t.clear();
    t.arm('tick', 100, () => fired.push('after clear'));
    clock.advance(5000);
    expect(fired).toHaveLength(5);
    expect(t.armed('tick')).toBe(false);
  });
});
