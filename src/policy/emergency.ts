/**
 * The emergency ladder of an instance (paper Sec. IV-D) as a pure transition function. When the instance
 * predicts SLO misses it escalates ONE level per step, strictly in the paper's order, and only after the
 * current level has had `escalateAfterMs` to work:
 *   1 reorder the queue by deadline (earliest first); 2 raise the GPUs to max clock;
 *   3 move not-yet-started requests to peers of the pool (via the pool manager);
 *   4 reject requests waiting longer than `rejectAfterMs` with a retryable error.
 * Once no miss is predicted and nothing waits past the threshold for `clearAfterMs`, it steps down one
 * level at a time. Every action carries the inputs that justified it (for the event stream).
 */
import type { RequestType } from '../../protocols/request-types.ts';
import { EMERGENCY_STEPS, type EmergencyStep } from './types.ts';

export interface EmergencyState {
  /** 0 = normal; 1..4 = EMERGENCY_STEPS[level - 1] and all levels below it active. */
  level: 0 | 1 | 2 | 3 | 4;
  /** when the current level was entered, ms. */
  sinceMs: number;
  /** since when the backlog has been clear, ms (null while it is not). */
  clearSinceMs: number | null;
}

export const initialEmergencyState = (nowMs = 0): EmergencyState => ({ level: 0, sinceMs: nowMs, clearSinceMs: null });

export interface QueuedRequest {
  id: string;
  /** when it entered this queue, ms. */
  arrivalMs: number;
  /** when its first token is due (arrival + its type's TTFT SLO), ms: the reorder is earliest-deadline-first on it. */
  ttftDeadlineMs: number;
  type: RequestType;
}

export interface EmergencyObservation {
  nowMs: number;
  /** requests not yet started (waiting in the engine / instance queue). */
  queue: QueuedRequest[];
  clockMhz: number;
  maxClockMhz: number;
  /** requests the instance predicts will miss their SLO with the current schedule. */
  predictedMissCount: number;
  /** peers in the pool reported to have spare capacity. */
  peersWithCapacity: number;
}

export interface EmergencyConfig {
  /** a request waiting longer than this is rejected at level 4, ms. Default 10000. */
  rejectAfterMs: number;
  /** time a level gets to clear the backlog before the next is tried, ms. Default 1000. */
  escalateAfterMs?: number;
  /** time the backlog must stay clear before stepping down one level, ms. Default 5000. */
  clearAfterMs?: number;
  /** Retry-After told to rejected clients, s. Default 1. */
  retryAfterS?: number;
  /** at most this many requests moved per step. Default 16. */
  maxMovePerStep?: number;
}

export interface Justification {
  level: number;
  step: EmergencyStep | 'normal';
  predictedMissCount: number;
  queueLength: number;
  clockMhz: number;
  maxClockMhz: number;
  peersWithCapacity: number;
  oldestWaitMs: number;
}

export type EmergencyAction =
  | { kind: 'reorder'; order: string[]; why: Justification }
  | { kind: 'max_clock'; clockMhz: number; why: Justification }
  | { kind: 'release_max_clock'; why: Justification }
  | { kind: 'move'; ids: string[]; why: Justification }
  | { kind: 'reject'; ids: string[]; retryAfterS: number; why: Justification };

export function emergencyStep(state: EmergencyState, obs: EmergencyObservation, cfg: EmergencyConfig): { state: EmergencyState; actions: EmergencyAction[] } {
  const escalateAfter = cfg.escalateAfterMs ?? 1000;
  const clearAfter = cfg.clearAfterMs ?? 5000;
  const retryAfterS = cfg.retryAfterS ?? 1;
  const maxMove = cfg.maxMovePerStep ?? 16;
  const now = obs.nowMs;
  const oldestWaitMs = obs.queue.reduce((m, q) => Math.max(m, now - q.arrivalMs), 0);
  const overdue = obs.queue.filter((q) => now - q.arrivalMs > cfg.rejectAfterMs);
  const trouble = obs.predictedMissCount > 0 || overdue.length > 0;
  let s: EmergencyState = { ...state };
  const before = s.level;
  if (trouble) {
    s.clearSinceMs = null;
    // level 3 with nobody to move to cannot help: it does not hold the ladder back
    const stuck = s.level === 3 && obs.peersWithCapacity === 0;
    if (s.level === 0 || (s.level < 4 && (now - s.sinceMs >= escalateAfter || stuck))) s = { level: (s.level + 1) as EmergencyState['level'], sinceMs: now, clearSinceMs: null };
  } else if (s.level > 0) {
    if (s.clearSinceMs === null) s.clearSinceMs = now;
    else if (now - s.clearSinceMs >= clearAfter) s = { level: (s.level - 1) as EmergencyState['level'], sinceMs: now, clearSinceMs: s.level - 1 > 0 ? now : null };
  }
  const why: Justification = {
    level: s.level,
    step: s.level ? EMERGENCY_STEPS[s.level - 1]! : 'normal',
    predictedMissCount: obs.predictedMissCount,
    queueLength: obs.queue.length,
    clockMhz: obs.clockMhz,
    maxClockMhz: obs.maxClockMhz,
    peersWithCapacity: obs.peersWithCapacity,
    oldestWaitMs,
  };
  const actions: EmergencyAction[] = [];
  const edf = [...obs.queue].sort((a, b) => a.ttftDeadlineMs - b.ttftDeadlineMs || a.arrivalMs - b.arrivalMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (s.level >= 1 && trouble) actions.push({ kind: 'reorder', order: edf.map((q) => q.id), why });
  if (s.level >= 2 && obs.clockMhz < obs.maxClockMhz) actions.push({ kind: 'max_clock', clockMhz: obs.maxClockMhz, why });
  if (before >= 2 && s.level < 2) actions.push({ kind: 'release_max_clock', why });
  // rejected requests are not also moved; actions stay listed in ladder order
  const rejected = new Set<string>(s.level >= 4 ? overdue.map((q) => q.id) : []);
  if (s.level >= 3 && trouble && obs.peersWithCapacity > 0) {
    // the requests at the back of the EDF order are the ones that would miss: move those
    const n = Math.min(Math.max(obs.predictedMissCount, overdue.length), maxMove);
    const ids = edf.filter((q) => !rejected.has(q.id)).slice(-n).map((q) => q.id);
    if (ids.length) actions.push({ kind: 'move', ids, why });
  }
  if (rejected.size) actions.push({ kind: 'reject', ids: [...rejected], retryAfterS, why });
  return { state: s, actions };
}
