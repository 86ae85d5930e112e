/**
 * The RequestRecord of a leg whose instance did not record it (docs/DATAPATH.md "Request migration", docs/PROTOCOL.md
 * "Per-request records and billing"). Each instance records the legs it served, once, under the leg's id; an instance
 * that died before answering a leg's end report records nothing, and the leg's energy, which the gateway estimated
 * from that instance's telemetry (leg-energy.ts) for the client's usage, would be in no record. The gateway that
 * streamed the leg publishes its record instead, on the same subject, labelled: `energyEstimatedJ` (all of its
 * `energyJ`). So the records of a client's request (`id` or `request` its id) sum to its usage's energy, the estimated
 * part said as such, and no joule is in two records: an instance that was slow, not dead, and records the leg after
 * all uses the same id, and its record replaces the estimate.
 */
import type { Bus } from '../../src/runtime/bus.ts';
import { subjects } from '../../protocols/subjects.ts';
import { RequestRecord, type InferenceRequest } from '../../protocols/messages.ts';
import type { RequestType } from '../../protocols/request-types.ts';
import type { LegEnergy } from './leg-energy.ts';

/** The gateway's timing of the leg (legs.ts LegTiming): first token (wall ms), the gaps between tokens. */
interface Timing {
  firstMs?: number;
  tbtSum: number;
  tbtMax: number;
  tbtN: number;
}

/** Where a leg ran: its instance, pool and request type (the grant's or the admission's). */
export interface LegPlace {
  instance: string;
  pool?: string;
  type?: RequestType;
}

/**
 * The record of leg `leg` of the client's request `req`, which ended at `finishedMs` with `outcome` after the tokens
 * `t` timed (`completionTokens` of them per the engine, when it said), charged `energy`, the gateway's estimate.
 * Undefined without an estimate (the leg's instance gave its figure: its record is its own) or when the leg's pool
 * or type is not known (a record needs both).
 */
export function estimatedLegRecord(
  req: Pick<InferenceRequest, 'id' | 'model' | 'apiKeyId' | 'tenant'>, leg: InferenceRequest, place: LegPlace, outcome: 'ok' | 'failed' | 'timed_out',
  t: Timing, completionTokens: number, energy: LegEnergy | undefined, finishedMs: number,
): RequestRecord | undefined {
  const pool = place.pool ?? leg.pool;
  const type = place.type ?? leg.type;
  if (!energy || !pool || !type) return undefined;
  const ttftMs = t.firstMs !== undefined ? Math.max(0, t.firstMs - leg.arrivalMs) : undefined;
  const tbtMeanMs = t.tbtN > 0 ? t.tbtSum / t.tbtN : undefined;
  const rec: RequestRecord = {
    v: 1, id: leg.id, model: req.model, type, pool, instance: place.instance, outcome, promptTokens: leg.inputTokens, completionTokens,
    energyJ: energy.energyJ, energySource: energy.energySource, energyEstimatedJ: energy.energyJ, finishedMs,
    // the instance's verdict, on the gateway's timing of the leg (the instance times it from the same reports)
    sloMet: outcome === 'ok' && leg.slo !== undefined && (ttftMs ?? 0) <= leg.slo.ttftMs && (tbtMeanMs ?? 0) <= leg.slo.tbtMs,
  };
  if (leg.id !== req.id) rec.request = req.id;
  if (ttftMs !== undefined) rec.ttftMs = ttftMs;
  if (tbtMeanMs !== undefined) {
    rec.tbtMeanMs = tbtMeanMs;
    rec.tbtMaxMs = t.tbtMax;
  }
  if (leg.type) rec.predictedType = leg.type;
  if (req.apiKeyId !== undefined) rec.apiKeyId = req.apiKeyId;
  if (req.tenant !== undefined) rec.tenant = req.tenant;
  return rec;
}

/** Publishes `rec` (when there is one) on its pool's record subject; true when it went out. */
export function publishLegRecord(bus: Pick<Bus, 'publish'>, rec: RequestRecord | undefined): boolean {
  if (!rec) return false;
  try {
    bus.publish(subjects.telRequest(rec.pool), RequestRecord, rec);
    return true;
  } catch {
    // the connection is gone: the client's usage still says the estimate; the record is lost with the connection
    return false;
  }
}
