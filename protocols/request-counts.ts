/**
 * RequestCounts: an instance manager's cumulative sums of the RequestRecords it published, in its periodic
 * InstanceTelemetry (`requests`). What a gateway's cluster-wide request series and its live dashboard read
 * (src/telemetry/request-counts.ts): a gateway process receives a few telemetry messages a second whatever the
 * request rate, and no record. Counts start from 0 at each start of the manager (`startedMs`, its incarnation); a
 * consumer adds the difference from the last counts it saw of that incarnation (docs/PROTOCOL.md "Per-request
 * records and billing"). Re-exported by messages.ts.
 */
import { z } from 'zod';
import { REQUEST_TYPES } from './request-types.ts';
import { OPEN_ENUM_MAX_CHARS } from './open-enum.ts';

const nonneg = z.number().finite().nonnegative();
const int = z.number().int().nonnegative();

/** The TTFT buckets of the instances' counts and of the gateway's dynamollm_request_ttft_seconds, upper bounds, s. */
export const REQUEST_TTFT_BUCKETS_S: readonly number[] = [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1, 1.5, 2, 3, 5, 10, 30];

/** The requests of one model name and request type an instance recorded since it started. */
export const requestCountGroup = z.object({
  /** the model name the requests asked for (RequestRecord.model; '' when none). */
  model: z.string().max(256),
  type: z.enum(REQUEST_TYPES),
  /**
   * records by outcome (RequestRecord.outcome, an open enum: a reader takes an outcome it does not know as 'failed',
   * as it takes such a record; an absent outcome: none).
   */
  outcomes: z.record(z.string().max(OPEN_ENUM_MAX_CHARS), int),
  /** of the `ok` records, those that missed their TTFT or TBT SLO (RequestRecord.sloMet false). */
  sloMissed: int,
  /**
   * the `ok` records' TTFTs by bucket of REQUEST_TTFT_BUCKETS_S, not cumulative: slot i counts TTFTs above bound i-1
   * up to bound i, the last slot those above the largest bound (an `ok` record without a TTFT is in none).
   */
  ttft: z.array(int).max(64),
  /** the sum of those TTFTs, s. */
  ttftSumS: nonneg,
  /** the records' energy (RequestRecord.energyJ) by its source, J (an absent source: none). */
  energyJ: z.object({ measured: nonneg, modelled: nonneg }).partial(),
});
export type RequestCountGroup = z.infer<typeof requestCountGroup>;

export const requestCounts = z.object({
  /** the manager's start (its InstanceStatus.startedMs): another value is another process, whose counts start from 0. */
  startedMs: nonneg,
  /** one per model name and request type recorded (at most 256: past it, new groups are not counted). */
  groups: z.array(requestCountGroup).max(256),
});
export type RequestCounts = z.infer<typeof requestCounts>;
