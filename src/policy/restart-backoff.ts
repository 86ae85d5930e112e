/**
 * When a supervised process that died is started again (src/runtime/supervisor.ts runs it; pure, so it runs on any
 * clock). A death ends either a stable run or a failed start:
 *   - stable: the process said it was ready (it finished its start and did its job: an actor running, a gateway
 *     standby waiting for its port) and stayed ready for at least `minReadyMs`, or it lived longer than the cap
 *     (`maxMs`). Its crash-loop count starts over (as Kubernetes resets a container's back-off after a stable run) and
 *     it starts again after `initialMs`. Killing a process that serves, however often, costs its restart nothing but
 *     that pause: its replacement is what the role waits for. A stable death never makes a process flapping: one that
 *     lived longer than the cap is restarted at most once a cap by its own life, and one that was ready paid a whole
 *     start before it.
 *   - failed start: it died before it was ready, or within minReadyMs of it (a process that crashes on its first
 *     work), and sooner than the cap. Exponential backoff: initialMs x factor^n for the n-th failed start in a row,
 *     capped at maxMs; past `flapMaxRestarts` failed starts within `flapWindowMs` the process is flapping and waits
 *     the cap before each further start, until a stable run.
 */

export interface RestartBackoff {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** more failed starts than this within flapWindowMs: flapping (the cap before each restart). */
  flapMaxRestarts: number;
  flapWindowMs: number;
  /** a process that said it was ready and died sooner than this after it counts as a failed start. */
  minReadyMs: number;
}

export const DEFAULT_RESTART_BACKOFF: RestartBackoff = { initialMs: 500, maxMs: 10_000, factor: 2, flapMaxRestarts: 5, flapWindowMs: 60_000, minReadyMs: 1000 };

/** A process's crash-loop record across its restarts. */
export interface RestartHistory {
  /** failed starts in a row (sets the backoff). */
  failures: number;
  /** when the failed starts within the flapping window ended. */
  recent: readonly number[];
  /** a flapping episode is under way (reported once, at its start). */
  flapping: boolean;
}

export const NO_RESTARTS: RestartHistory = { failures: 0, recent: [], flapping: false };

/** One run of the process, times on the supervisor's clock, ms. */
export interface ProcessRun {
  spawnedMs: number;
  /** when it said it was ready (absent: never). */
  readyMs?: number;
  exitedMs: number;
}

export interface RestartDecision {
  delayMs: number;
  stable: boolean;
  /** this restart begins a flapping episode (report it). */
  flappingStarts: boolean;
  history: RestartHistory;
}

/** Whether a run that ended at `run.exitedMs` was stable (see the module comment). */
export function stableRun(run: ProcessRun, b: RestartBackoff): boolean {
  if (run.readyMs !== undefined && run.exitedMs - run.readyMs >= b.minReadyMs) return true;
  return run.exitedMs - run.spawnedMs > b.maxMs;
}

/** The delay before the next start of a process whose run `run` just ended, and its history after it. */
export function restartAfter(h: RestartHistory, run: ProcessRun, b: RestartBackoff): RestartDecision {
  if (stableRun(run, b)) return { delayMs: b.initialMs, stable: true, flappingStarts: false, history: NO_RESTARTS };
  const now = run.exitedMs;
  const recent = h.recent.filter((t) => now - t < b.flapWindowMs);
  const flapping = recent.length >= b.flapMaxRestarts;
  const delayMs = flapping ? b.maxMs : Math.min(b.maxMs, b.initialMs * b.factor ** h.failures);
  return {
    delayMs,
    stable: false,
    flappingStarts: flapping && !h.flapping,
    history: { failures: h.failures + 1, recent: [...recent, now], flapping: h.flapping || flapping },
  };
}
