/**
 * RequestRecord: one record per finished, failed or cancelled request or leg (subjects.telRequest, kept in the
 * DYN_V1_REQUESTS stream), what billing, carbon accounting and dashboards read (docs/PROTOCOL.md "Per-request records
 * and billing"). Re-exported by messages.ts.
 */
import { z } from 'zod';
import { codec } from './codec.ts';
import { REQUEST_TYPES } from './request-types.ts';
import { openEnum } from './open-enum.ts';

const v = z.literal(1);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);
const nonneg = z.number().finite().nonnegative();
const int = z.number().int().nonnegative();
const requestType = z.enum(REQUEST_TYPES);

/**
 * How a request or leg ended (RequestRecord.outcome; 'timed_out': at its give-up time). Open enums (protocols/open-enum.ts):
 * a reader takes a value newer than these as 'failed' and keeps the record.
 */
export const RECORD_OUTCOMES = ['ok', 'rejected', 'failed', 'cancelled', 'timed_out'] as const;
/** How a direct leg ended (LegReport.outcome, its end report): RECORD_OUTCOMES but 'rejected'. */
export const LEG_OUTCOMES = ['ok', 'failed', 'cancelled', 'timed_out'] as const;
export const recordOutcome = openEnum(RECORD_OUTCOMES, 'failed');
export const legOutcome = openEnum(LEG_OUTCOMES, 'failed');

/**
 * One finished (or failed) request, or one leg of a request that migrated, for latency/SLO/energy accounting
 * (billing per request's energy: keyed by `id`, charged to `apiKeyId`/`tenant` for `model`). Published by the
 * instance that served it; for a leg whose instance died before recording it, by the gateway that streamed it, with
 * its estimated energy (`energyEstimatedJ`). A client request's energy is the sum over the records whose `id` or
 * `request` is its id, each record id counted once: every leg is recorded under its own id, and a consumer keeps one
 * record per id (the instance's over the gateway's estimate, which it replaces when a slow instance records the leg).
 */
export const requestRecord = z.object({
  v,
  /** the request's id, or a continuation leg's own (`<request>-m<n>`, see `request`). */
  id,
  /** a continuation leg (after a migration or a resume): the client's request id; absent: `id` is the client's. */
  request: id.optional(),
  model: z.string().max(256).optional(),
  apiKeyId: z.string().max(64).optional(),
  tenant: z.string().max(128).optional(),
  type: requestType,
  pool: z.string().max(128),
  instance: z.string().max(128).optional(),
  outcome: recordOutcome,
  promptTokens: int,
  completionTokens: int,
  ttftMs: nonneg.optional(),
  /** mean and max time between tokens of this request, ms. */
  tbtMeanMs: nonneg.optional(),
  tbtMaxMs: nonneg.optional(),
  /** GPU energy of this request, J: the engine's own figure when it reports one (the emulator does), else its
   * share of its instance's energy while it ran (each second's energy split evenly over the running requests). */
  energyJ: nonneg,
  /** where the energy readings behind energyJ came from (the estimate's too: its instance's telemetry). */
  energySource: z.enum(['measured', 'modelled']),
  /**
   * of energyJ, the part estimated, J: present only on the record a gateway publishes for a leg whose instance died
   * before recording it (all of energyJ: that instance's telemetry shared as the instance shares it, plus the reading
   * it did not live to take; docs/DATAPATH.md "Request migration"); the client's usage says it too
   * (Usage.energyEstimatedJ). An instance that was slow, not dead, may record the same leg (same `id`) after it: its
   * record, without this field, replaces the estimate.
   */
  energyEstimatedJ: nonneg.optional(),
  sloMet: z.boolean(),
  predictedType: requestType.optional(),
  finishedMs: nonneg,
});
export type RequestRecord = z.infer<typeof requestRecord>;
export const RequestRecord = codec('RequestRecord', requestRecord);
