/**
 * Liveness watchdog of a supervised process: alive (its pid exists) is not the same as serving. A process stopped by
 * SIGSTOP, or whose event loop is stuck, keeps its pid, its listening port and its GPUs, and a supervisor that reacts
 * to exits only never replaces it. So each child that can answer is probed every `intervalMs`, and one that missed
 * `misses` probes in a row, silent at least `misses x intervalMs`, is killed (SIGKILL: a stopped process cannot
 * handle SIGTERM) and then restarted as after any death.
 *
 * A probe is answered when the child showed a sign of life since the previous probe: a Node child's liveness beat
 * (src/runtime/liveness-beat.ts: a timer of its own event loop touching a file), a nats-server's INFO greeting on its
 * client port within the probe's deadline.
 *
 * Why probes in a row and a least silence, not silence alone: a loaded host stalls the supervisor too. After a stall
 * of its own, the supervisor's first probe finds every child silent for the whole stall; counting probes (each one a
 * fresh chance for the child, spaced by the supervisor's own timer) makes a stall of the whole host cost one miss,
 * not a kill. The least silence keeps probes that came bunched (timers fired late together) from adding up to a kill
 * too early.
 *
 * A child that is starting gets `startGraceMs` before its silence counts: it loads its code before its first beat.
 * Its first sign of life ends the grace.
 *
 * Pure: times in, decisions out (the supervisor, the node agent and the NATS launcher run it on their clock).
 */

export interface WatchdogSettings {
  /** ms between two probes. */
  intervalMs: number;
  /** probes missed in a row that kill the child (with at least misses x intervalMs of silence). */
  misses: number;
  /** ms from a start during which a child that never answered yet is not counted silent. */
  startGraceMs: number;
}

/**
 * Defaults: a probe a second, a kill after 8 missed in a row (8 s of silence at least), 30 s to start.
 * 8 s is well above the stalls a loaded shared 2-core host gives a healthy process (the cluster's own death verdict,
 * liveness.deadAfterMs, is 3 s; a replaced process costs a restart, seconds of start-up on such a host), and well
 * below the time a client waits for a hung gateway or a held instance (60 s stream timeout). 30 s of grace covers a
 * Node actor's start on that host (its beat begins at the CLI's first import, before its modules load).
 */
export const WATCHDOG_DEFAULTS: WatchdogSettings = { intervalMs: 1000, misses: 8, startGraceMs: 30_000 };

/** Probes missed in a row after which a process counts as unresponsive to a start request for its id (node agent). */
export const UNRESPONSIVE_MISSES = 2;

export interface WatchdogState {
  /** when the process started (or was adopted), ms. */
  startedMs: number;
  /** when it last answered a probe, ms; undefined: never since its start. */
  answeredMs?: number;
  /** probes missed in a row. */
  misses: number;
}

export type WatchdogVerdict =
  /** answered: alive. */
  | { kind: 'ok' }
  /** silent, but starting: not counted. */
  | { kind: 'grace' }
  /** silent: one more miss. */
  | { kind: 'miss'; misses: number; silentMs: number }
  /** silent for too long: kill it. */
  | { kind: 'kill'; misses: number; silentMs: number };

/** The state of a process that starts (or is adopted) at `nowMs`. */
export function watchdogStart(nowMs: number): WatchdogState {
  return { startedMs: nowMs, misses: 0 };
}

/** The process's silence at `nowMs`: since its last answer, else since its start. */
export function silentMs(s: WatchdogState, nowMs: number): number {
  return nowMs - (s.answeredMs ?? s.startedMs);
}

/** One probe's outcome at `nowMs` (`answered`: a sign of life since the previous probe): the next state and the verdict. */
export function watchdogProbe(s: WatchdogState, nowMs: number, answered: boolean, w: WatchdogSettings): { state: WatchdogState; verdict: WatchdogVerdict } {
  if (answered) return { state: { ...s, answeredMs: nowMs, misses: 0 }, verdict: { kind: 'ok' } };
  if (s.answeredMs === undefined && nowMs - s.startedMs < w.startGraceMs) return { state: s, verdict: { kind: 'grace' } };
  const misses = s.misses + 1;
  const silent = silentMs(s, nowMs);
  const state = { ...s, misses };
  if (misses >= w.misses && silent >= w.misses * w.intervalMs) return { state, verdict: { kind: 'kill', misses, silentMs: silent } };
  return { state, verdict: { kind: 'miss', misses, silentMs: silent } };
}

/**
 * Whether a process counts as unresponsive: it missed UNRESPONSIVE_MISSES probes in a row. A node agent asked to
 * start an instance whose manager is unresponsive (its pool leader found it silent for its whole death window and
 * wants it back) replaces it instead of answering that it runs.
 */
export function unresponsive(s: WatchdogState): boolean {
  return s.misses >= UNRESPONSIVE_MISSES;
}

/** Settings checked: each a positive integer (ms, count). */
export function watchdogSettings(w: Partial<WatchdogSettings> = {}): WatchdogSettings {
  const out = { ...WATCHDOG_DEFAULTS, ...Object.fromEntries(Object.entries(w).filter(([, v]) => v !== undefined)) } as WatchdogSettings;
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`watchdog ${k} must be a positive integer, got ${String(v)}`);
  }
  return out;
}
