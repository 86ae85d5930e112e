/**
 * The instance manager's messages about itself and its requests, assembled from its machine's state and its own
 * measures: InstanceStatus (liveness and the dispatch view), InstanceTelemetry, and each request's RequestRecord.
 * Pure builders; the manager publishes them (instance-manager.ts).
 */
import { RequestRecord, senderTrusted, type InstanceStatus, type InstanceTelemetry, type RequestCounts, type RequestType } from '../../protocols/index.ts';
import type { NatsConnectionId } from '../../protocols/nats-advisory.ts';
import { currentLoad, pendingPrefillTokens, projectedLoad, type InstanceMachineConfig, type InstanceMachineState } from '../../src/policy/machines/instance.ts';
import { creditsOutstanding } from '../../src/policy/machines/credits.ts';
import type { ClassifiedRequest } from '../../src/policy/slo.ts';
import { maxClockOf } from './machine-io.ts';
import type { Running } from './running.ts';

/** The instance as its messages name it. */
export interface StatusIdentity { id: string; pool: string; tp: 1 | 2 | 4 | 8; gpuIds: number[]; node?: string }

/** The status the instance publishes now (`seq`: its status sequence number). */
export function instanceStatus(
  o: StatusIdentity, startedMs: number, m: InstanceMachineState, cfg: InstanceMachineConfig, running: Running[],
  p: { seq: number; now: number; prefixCounts: { lookup: number; hit: number } | undefined; conn: NatsConnectionId | undefined },
): InstanceStatus {
  const now = p.now;
  const st: InstanceStatus = {
    v: 1, id: o.id, pool: o.pool, tp: o.tp, gpuIds: o.gpuIds, state: m.lifecycle,
    startedMs, seq: p.seq, sentMs: now, clockMhz: m.clockMhz, maxClockMhz: maxClockOf(m),
    queued: m.queue.length, running: running.length, queuedIds: m.queue.slice(0, 1024).map((q) => q.id),
    runningIds: running.slice(0, 1024).map((r) => r.req.id), runningSeqs: running.slice(0, 1024).map((r) => r.seq),
    loadByType: currentLoad(m, now, cfg), epochLoadByType: projectedLoad(m, now, cfg),
    admittedByType: { ...m.admitted },
    pendingPrefillTokens: pendingPrefillTokens(m),
  };
  if (p.prefixCounts) st.prefixCacheTokens = { ...p.prefixCounts };
  if (o.node) st.node = o.node;
  // the connection it goes out on: the server's word that it ended takes this instance out of dispatch at once
  if (p.conn) st.conn = p.conn;
  if (m.emergencyStepName) st.emergency = m.emergencyStepName;
  if (m.credits.epoch > 0) st.creditEpoch = m.credits.epoch;
  const lent = creditsOutstanding(m.credits, now);
  if (lent > 0) st.creditsOutstanding = lent;
  return st;
}

/**
 * The telemetry the instance publishes now: its GPU's reads, its load, the p99 TTFT and TBT of its recent samples, and
 * the sums of the request records it published since it started (`requests`: what the gateways' request series read).
 */
export function instanceTelemetry(
  o: StatusIdentity, m: InstanceMachineState, cfg: InstanceMachineConfig, running: number,
  p: { now: number; powerW: number; energyJ: number; emulatedGpu: boolean; staleMs: number | undefined; ttfts: number[]; tbts: number[]; requests?: RequestCounts },
): InstanceTelemetry {
  const now = p.now;
  const tel: InstanceTelemetry = {
    v: 1, id: o.id, pool: o.pool, tp: o.tp, gpus: o.gpuIds, clockMhz: m.clockMhz, maxClockMhz: maxClockOf(m),
    powerW: p.powerW, energyJ: p.energyJ, energySource: p.emulatedGpu ? 'modelled' : 'measured',
    queued: m.queue.length, running, loadByType: currentLoad(m, now, cfg), state: m.lifecycle, sentMs: now,
  };
  if (o.node) tel.node = o.node;
  if (p.staleMs !== undefined) tel.gpuStaleMs = p.staleMs;
  const t1 = p99Of(p.ttfts), t2 = p99Of(p.tbts);
  if (t1 !== undefined) tel.ttftP99Ms = t1;
  if (t2 !== undefined) tel.tbtP99Ms = t2;
  if (m.emergencyStepName) tel.emergency = m.emergencyStepName;
  if (p.requests) tel.requests = p.requests;
  return tel;
}

/**
 * The 99th percentile of recent samples (the telemetry's TTFT and TBT, up to 500 each per tick), undefined for none: a
 * typed copy sorts numerically without a comparator call per comparison.
 */
export function p99Of(samples: readonly number[]): number | undefined {
  if (samples.length === 0) return undefined;
  return Float64Array.from(samples).sort()[Math.min(samples.length - 1, Math.floor(samples.length * 0.99))];
}

/** A request's record: its outcome, tokens, energy, TTFT and TBT against its SLO. */
/** the instance's request records, built by requestRecord from its own values: packed without the sender-side check (each reader's decode validates). */
export const RecordCodec = senderTrusted(RequestRecord);

export function requestRecord(
  o: Pick<StatusIdentity, 'id' | 'pool'>, req: ClassifiedRequest, type: RequestType, outcome: RequestRecord['outcome'], r: Running | undefined,
  completionTokens: number, energyJ: number, energySource: 'measured' | 'modelled', finishedMs: number,
): RequestRecord {
  const slo = req.slo;
  const ttftMs = r?.firstTokenMs !== undefined ? Math.max(0, r.firstTokenMs - req.arrivalMs) : undefined;
  const tbtMeanMs = r && r.tbtN > 0 ? r.tbtSum / r.tbtN : undefined;
  const rec: RequestRecord = {
    v: 1, id: req.id, type, pool: o.pool, instance: o.id, outcome, promptTokens: req.inputTokens, completionTokens,
    energyJ, energySource, finishedMs,
    sloMet: outcome === 'ok' && (ttftMs ?? 0) <= slo.ttftMs && (tbtMeanMs ?? 0) <= slo.tbtMs,
  };
  if (ttftMs !== undefined) rec.ttftMs = ttftMs;
  if (tbtMeanMs !== undefined) rec.tbtMeanMs = tbtMeanMs;
  if (r && r.tbtN > 0) rec.tbtMaxMs = r.tbtMax;
  if (req.type) rec.predictedType = req.type;
  rec.model = req.model;
  if (req.apiKeyId !== undefined) rec.apiKeyId = req.apiKeyId;
  if (req.tenant !== undefined) rec.tenant = req.tenant;
  if (req.request !== undefined) rec.request = req.request;
  return rec;
}
