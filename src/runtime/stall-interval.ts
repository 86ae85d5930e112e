/**
 * An interval whose run after a stall of the process (its timer late by TIMER_STALL_MS or more: src/policy
 * timer-stall.ts) waits one I/O turn, so that what arrived during the stall (statuses, heartbeats) is read before it
 * decides on them. `live()` false at that turn (the caller cleared the interval meanwhile) drops that run; the
 * cluster planner's ticks check their lead themselves (#mayDecide).
 */
import { afterStall } from '../policy/timer-stall.ts';
import type { Clock } from './clock.ts';

export function stallSafeInterval(clock: Clock, fn: () => void, everyMs: number, live: () => boolean = () => true): unknown {
  let dueMs = clock.now() + everyMs;
  return clock.setInterval(() => {
    const now = clock.now();
    const when = afterStall(dueMs, now);
    dueMs = now + everyMs;
    if (when === 'now') fn();
    else setImmediate(() => live() && fn());
  }, everyMs);
}
