/**
 * The one place where actors call src/policy: adapts the actors' inputs (wire messages, config) to the
 * pure policy functions. No decision logic of its own beyond the interim fallbacks marked INTERIM, which
 * stand in for policy functions still being written (src/policy chooseInstance, emergencyStep,
 * planSharding) and are to be replaced by calls to them.
 */
import type { InferenceRequest, RequestType } from '../../protocols/index.ts';
import { inputClassOf } from '../../protocols/request-types.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { classifyRequest } from '../../src/policy/classify.ts';
import { chooseClock } from '../../src/policy/frequency.ts';
import type { ClassThresholds } from '../../src/model/types.ts';
import type { ClusterConfig } from './config.ts';

export function thresholdsOf(c: ClusterConfig): ClassThresholds {
  return {
    inputUpper: { S: c.thresholds.input.S, M: c.thresholds.input.M, L: c.thresholds.input.L },
    outputUpper: { S: c.thresholds.output.S, M: c.thresholds.output.M, L: Number.POSITIVE_INFINITY },
  } as ClassThresholds;
}

/** The SLO (p99 TTFT by input class, TBT) of a type under this config. */
export function sloOf(t: RequestType, c: ClusterConfig): { ttftMs: number; tbtMs: number } {
  return { ttftMs: c.slo.ttftMs[inputClassOf(t)], tbtMs: c.slo.tbtMs };
}

/** Type of a request that reached an instance without one (direct admission): max_tokens as the output. */
export function classifyForRecord(req: InferenceRequest, c: ClusterConfig): RequestType {
  try {
    return classifyRequest(Math.min(req.inputTokens, c.thresholds.input.L), req.predictedOutputTokens ?? req.maxTokens, thresholdsOf(c));
  } catch {
    return 'LL';
  }
}

/** Instance epoch: the least-energy clock meeting the SLO at this load (policy chooseClock). */
export function decideClock(
  profile: Profile | undefined,
  tp: number,
  load: Partial<Record<RequestType, number>>,
  supported: number[],
): { clockMhz: number; powerW: number; feasible: boolean; reason: string } | undefined {
  if (!profile || !profile.tpDegrees.includes(tp)) return undefined;
  const lo = profile.clocksMhz[0]!, hi = profile.clocksMhz[profile.clocksMhz.length - 1]!;
  // candidate clocks: the GPU's supported clocks inside the profiled range (the profile's grid otherwise)
  const inRange = supported.filter((f) => f >= lo && f <= hi);
  const clocks = inRange.length ? profile.clocksMhz.filter((f) => inRange.some((g) => Math.abs(g - f) <= 15)) : undefined;
  const d = chooseClock({ profile, tp, loadByType: load, clocks: clocks && clocks.length ? clocks : undefined });
  return { clockMhz: d.clockMhz, powerW: d.powerW, feasible: d.feasible, reason: d.reason };
}

export interface EmergencyObservation {
  nowMs: number;
  queued: number;
  running: number;
  oldestWaitMs: number;
  maxInEngine: number;
  /** tightest TTFT SLO among queued requests, ms (Infinity when none). */
  ttftSloMs: number;
  clockMhz: number;
  maxClockMhz: number;
  reordered: boolean;
  atMaxClock: boolean;
}

export interface EmergencyDecision {
  over: boolean;
  steps: ('reorder' | 'max_clock' | 'move_to_peers' | 'reject')[];
  moveCount?: number;
}

/**
 * INTERIM (until src/policy emergencyStep lands): the paper's ladder. An emergency starts when requests
 * wait in the admission queue (the engine is full) longer than half the tightest TTFT SLO; steps escalate
 * in order: reorder by deadline, max clock, move to peers once the backlog exceeds moveQueueAbove,
 * reject those past rejectAfterMs. It ends when the queue is empty.
 */
export function decideEmergency(o: EmergencyObservation, c: ClusterConfig): EmergencyDecision {
  if (o.queued === 0) return { over: true, steps: [] };
  const steps: EmergencyDecision['steps'] = [];
  const pressed = o.oldestWaitMs > Math.min(o.ttftSloMs, 2000) / 2;
  if (!pressed && !o.reordered) return { over: false, steps: [] };
  steps.push('reorder');
  if (o.reordered) steps.push('max_clock');
  if (o.atMaxClock && o.queued > c.emergency.moveQueueAbove) steps.push('move_to_peers');
  if (o.atMaxClock && o.oldestWaitMs > c.emergency.rejectAfterMs) steps.push('reject');
  return { over: false, steps, moveCount: Math.max(1, o.queued - c.emergency.moveQueueAbove) };
}

export interface InstanceViewLike {
  id: string;
  tp: number;
  clockMhz: number;
  healthy: boolean;
  load: Partial<Record<RequestType, number>>;
  queued: number;
  running: number;
}

/**
 * INTERIM (until src/policy chooseInstance lands): the instance with the least outstanding work per GPU
 * (queued weighted double: it has not started), ties to the larger TP. Returns an id of `views` (non-empty).
 */
export function pickInstance(_req: InferenceRequest, views: InstanceViewLike[], _profile: Profile | undefined, _types: RequestType[]): string {
  let best = views[0]!;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const v of views) {
    const s = (v.running + 2 * v.queued) / v.tp;
    if (s < bestScore || (s === bestScore && v.tp > best.tp)) {
      best = v;
      bestScore = s;
    }
  }
  return best.id;
}

export interface PoolShardInput {
  profile: Profile;
  load: Partial<Record<RequestType, number>>;
  gpus: number;
  current: number[];
  epochS: number;
  force: boolean;
}

/** Re-shard decision of a pool: returns undefined until src/policy planSharding is wired (INTERIM). */
export function planPoolShards(_i: PoolShardInput): { take: boolean; tp?: number; target: unknown; summary: string; inputs: Record<string, unknown> } | undefined {
  return undefined;
}
