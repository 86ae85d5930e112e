/**
 * Open enums (protocols/open-enum.ts; docs/PROTOCOL.md "Evolution within v1"): RequestRecord.outcome and
 * LegReport.outcome take a value newer than the reader's as 'failed' and keep the message; a known value passes the
 * compiled check unchanged; a closed enum still refuses a value outside it; the committed JSON Schemas (what a
 * non-TypeScript reader validates with) admit a newer value too.
 */
import { describe, expect, it } from 'vitest';
import { InstanceTelemetry, LegReport, ProtocolError, RequestRecord, packRaw } from '../../protocols/index.ts';
import { LEG_OUTCOMES, RECORD_OUTCOMES } from '../../protocols/request-record.ts';
import { OPEN_ENUM_MAX_CHARS } from '../../protocols/open-enum.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { SAMPLES } from '../fixtures/actors/samples.ts';
import { committedValidators } from '../helpers/json-schema.ts';

const record = SAMPLES.RequestRecord as RequestRecord;
const report = SAMPLES.LegReport as LegReport;

describe('an open enum read by the codec', () => {
  it("a RequestRecord with an outcome newer than the reader's decodes, as 'failed', with the rest of the record", () => {
    const r = RequestRecord.decode(packRaw({ ...record, outcome: 'preempted' }), 'dyn.v1.tel.req.p1');
    expect(r).toEqual({ ...record, outcome: 'failed' });
  });

  it("a LegReport end with an outcome newer than the reader's decodes, as 'failed'", () => {
    const r = LegReport.decode(packRaw({ ...report, outcome: 'evicted' }));
    expect(r).toEqual({ ...report, outcome: 'failed' });
  });

  it('every known outcome decodes as itself, passed by the compiled check (the same object, no zod copy)', () => {
    for (const outcome of RECORD_OUTCOMES) {
      const v = { ...record, outcome };
      expect(RequestRecord.check(v)).toBe(v);
      expect(RequestRecord.decode(RequestRecord.encode(v)).outcome).toBe(outcome);
    }
    for (const outcome of LEG_OUTCOMES) {
      const v = { ...report, outcome };
      expect(LegReport.check(v)).toBe(v);
    }
  });

  it('an outcome that is not a string of at most OPEN_ENUM_MAX_CHARS is invalid, as is a closed enum value outside it', () => {
    expect(() => RequestRecord.decode(packRaw({ ...record, outcome: 'x'.repeat(OPEN_ENUM_MAX_CHARS + 1) }))).toThrow(ProtocolError);
    expect(() => RequestRecord.decode(packRaw({ ...record, outcome: 3 }))).toThrow(ProtocolError);
    expect(RequestRecord.decode(packRaw({ ...record, outcome: 'x'.repeat(OPEN_ENUM_MAX_CHARS) })).outcome).toBe('failed');
    // closed: energySource, the request type, a report's phase
    expect(() => RequestRecord.decode(packRaw({ ...record, energySource: 'guessed' }))).toThrow(ProtocolError);
    expect(() => RequestRecord.decode(packRaw({ ...record, type: 'XL' }))).toThrow(ProtocolError);
    expect(() => LegReport.decode(packRaw({ ...report, phase: 'paused' }))).toThrow(ProtocolError);
  });

  it("the dashboard's counts take an instance's count of a newer outcome as failures", () => {
    const live = new LiveState();
    const counts = { startedMs: 1, groups: [{ model: 'm', type: 'SS' as const, outcomes: { ok: 2, preempted: 3 }, sloMissed: 0, ttft: [], ttftSumS: 0, energyJ: {} }] };
    const tel = InstanceTelemetry.decode(packRaw({ ...SAMPLES.InstanceTelemetry as InstanceTelemetry, requests: counts }));
    live.onInstance(tel);
    expect(live.snapshot().requests).toEqual({ ok: 2, rejected: 0, failed: 3, cancelled: 0, timed_out: 0 });
  });
});

describe('the committed JSON Schemas of an open enum', () => {
  const v = committedValidators();
  it('admit a newer outcome (a string of at most 64), refuse a longer one or another type; closed enums stay closed', () => {
    expect(v.RequestRecord!({ ...record, outcome: 'preempted' })).toBeNull();
    expect(v.LegReport!({ ...report, outcome: 'evicted' })).toBeNull();
    expect(v.RequestRecord!({ ...record, outcome: 'x'.repeat(65) })).not.toBeNull();
    expect(v.RequestRecord!({ ...record, outcome: 3 })).not.toBeNull();
    expect(v.RequestRecord!({ ...record, energySource: 'guessed' })).not.toBeNull();
  });
});
