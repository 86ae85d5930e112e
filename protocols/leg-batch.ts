/**
 * The gateway's held leg reports to one instance as one message (actors/gateway/leg-reports.ts flushLegReports): on the
 * instance's leg subject (subjects.instanceLeg), published (no reply), only to an instance whose loan says it reads them
 * (CreditLoan.batches; an older instance gets each report alone). The instance reads its reports in their order, each
 * as the LegReport it is (actors/instance-manager/direct-legs.ts legReport).
 */
import { z } from 'zod';
import { codec, unpackRaw, type Codec } from './codec.ts';
import { ProtocolError } from './errors.ts';
import { LegReport, legReport } from './messages.ts';

/** Leg reports in one batch at most (the gateway's LEG_REPORT_BATCH bounds what it holds). */
export const LEG_REPORT_BATCH_MAX = 256;

export const legReportBatch = z.object({ v: z.literal(1), reports: z.array(legReport).min(1).max(LEG_REPORT_BATCH_MAX) });
export type LegReportBatch = z.infer<typeof legReportBatch>;
export const LegReportBatch = codec('LegReportBatch', legReportBatch);

/** What comes on an instance's leg subject: one report, or (to an instance that reads them) a batch. */
export type LegMessage = LegReport | LegReportBatch;
export const isLegBatch = (m: LegMessage): m is LegReportBatch => (m as { reports?: unknown }).reports !== undefined;

/** The instance's codec of its leg subject: a map with `reports` is checked as a LegReportBatch, any other as a LegReport. */
export const LegMessage: Codec<LegMessage> = {
  name: 'LegMessage',
  schema: z.union([legReportBatch, legReport]),
  check: (value, subject) => (value !== null && typeof value === 'object' && 'reports' in value ? LegReportBatch.check(value, subject) : LegReport.check(value, subject)),
  encode: (value) => (isLegBatch(value) ? LegReportBatch.encode(value) : LegReport.encode(value)),
  decode(bytes, subject) {
    let raw: unknown;
    try {
      raw = unpackRaw(bytes);
    } catch (cause) {
      throw new ProtocolError(`LegMessage: undecodable msgpack (${(cause as Error).message})`, { subject, cause });
    }
    return LegMessage.check(raw, subject);
  },
};
