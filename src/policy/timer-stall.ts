/**
 * Liveness verdicts after a process stall. A process that was stopped (SIGSTOP, a frozen VM, a starved host) runs its
 * due timers before it reads the sockets that filled meanwhile (Node: timers come before the poll phase, and an
 * epoll_wait cut short by SIGCONT returns no events). A liveness check run then finds every peer silent for the whole
 * stall, though their heartbeats, statuses or stream bytes wait unread in its own sockets: a false death verdict.
 *
 * The rule: a check that fires at least TIMER_STALL_MS after it was due measures the stall (its lateness), and
 * - a check of "last heard at T" credits the stall to T: nothing could be heard while the process did not run
 *   (creditStall), so the peer gets its whole window again, counted from the resume;
 * - a check that cannot shift its inputs (a state machine stepped on its own clock) runs after one I/O turn
 *   (afterStall: 'after_io'), when what was queued during the stall has been read.
 * A check on time (ManualClock, the simulator) is never late: the rule changes nothing there.
 */

/** A timer that fires this late (ms) or later ran after a stall of the process, not a busy event loop. */
export const TIMER_STALL_MS = 1000;

/** The stall a timer's lateness shows, ms: `firedMs - dueMs` when at least `thresholdMs`, else 0. */
export function timerStallMs(dueMs: number, firedMs: number, thresholdMs = TIMER_STALL_MS): number {
  const late = firedMs - dueMs;
  return late >= thresholdMs ? late : 0;
}

/** When a "last heard at" time is judged after a stall of `stallMs`: the stall does not count as silence. */
export function creditStall(lastHeardMs: number, stallMs: number): number {
  return lastHeardMs + stallMs;
}

/** Whether a check due at `dueMs` and firing at `firedMs` decides now, or after one I/O turn (a stall: queued input unread). */
export function afterStall(dueMs: number, firedMs: number, thresholdMs = TIMER_STALL_MS): 'now' | 'after_io' {
  return timerStallMs(dueMs, firedMs, thresholdMs) > 0 ? 'after_io' : 'now';
}
