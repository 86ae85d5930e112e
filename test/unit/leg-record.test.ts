/**
 * The records a billing consumer reads for a request that migrated (docs/PROTOCOL.md "Per-request records and
 * billing"): each leg recorded once under its own id, a continuation leg naming its client request (`request`), and the
 * leg whose instance died recorded by the gateway with its estimated energy labelled (`energyEstimatedJ`,
 * actors/gateway/leg-record.ts). Summed by client request, the records give the client's usage: its energy and its
 * estimated part. A stream resumed on another gateway whose leg's instance died too (legs.ts endForeignLeg) is
 * estimated and recorded the same way, from the leg's start in the journal (InstanceEnergyMeters.markAt).
 */
import { describe, expect, it } from 'vitest';
import { chargeLeg, continuation, endForeignLeg, legOf, resumedState, usageOf, type LegTiming, type StreamState } from '../../actors/gateway/legs.ts';
import { HISTORY_READINGS, InstanceEnergyMeters } from '../../actors/gateway/leg-energy.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import type { LegReply } from '../../protocols/messages.ts';
import { estimatedLegRecord, publishLegRecord } from '../../actors/gateway/leg-record.ts';
import { requestRecord } from '../../actors/instance-manager/status.ts';
import { RequestRecord, InferenceRequest, type RequestRecord as Rec } from '../../protocols/messages.ts';
import { subjects } from '../../protocols/subjects.ts';

const T0 = 1_700_000_000_000;
const req: InferenceRequest = {
  v: 1, id: 'r1', model: 'llama3.1-8b', kind: 'completion', prompt: 'Tell me', inputTokens: 2, maxTokens: 100, arrivalMs: T0, giveUpAtMs: T0 + 60_000,
  streamSubject: subjects.stream('r1'), apiKeyId: 'key-0123456789abcdef', tenant: 'acme', pool: 'pool-a', type: 'SM', slo: { ttftMs: 500, tbtMs: 100 },
};
const state = (): StreamState => ({ out: 0, sent: 0, text: '', textBytes: 0, keepText: true, energyJ: 0, legs: 0 });
const timing = (tokens: number): LegTiming => ({ tokens, firstMs: T0 + 200, tbtSum: 40 * (tokens - 1), tbtMax: 55, tbtN: tokens - 1 });

/** The energy and its estimated part a consumer sums per client request (`request`, else `id`), each id counted once. */
function byRequest(records: Rec[]): Map<string, { energyJ: number; estimatedJ: number; legs: number }> {
  const byId = new Map<string, Rec>();
  // an instance's record of a leg replaces the gateway's estimate of it (same id), never the reverse
  for (const r of records) if (!byId.has(r.id) || byId.get(r.id)!.energyEstimatedJ !== undefined) byId.set(r.id, r);
  const out = new Map<string, { energyJ: number; estimatedJ: number; legs: number }>();
  for (const r of byId.values()) {
    const k = r.request ?? r.id;
    const s = out.get(k) ?? { energyJ: 0, estimatedJ: 0, legs: 0 };
    out.set(k, { energyJ: s.energyJ + r.energyJ, estimatedJ: s.estimatedJ + (r.energyEstimatedJ ?? 0), legs: s.legs + 1 });
  }
  return out;
}

describe('the records of a request whose first instance died mid-stream', () => {
  it('the gateway records the dead leg with its estimate labelled, the next leg names its request, and they sum to the usage', () => {
    const st = state();
    const counters = { energyEstimated: 0 };
    // leg 1 on inst-a: 30 tokens, then its instance died and never answered the end report
    st.sent = 30;
    st.text = 'w '.repeat(30);
    const estimate = chargeLeg(st, undefined, undefined, () => ({ energyJ: 12.5, energySource: 'measured' }), counters)!;
    expect(estimate).toEqual({ energyJ: 12.5, energySource: 'measured' });
    const dead = estimatedLegRecord(req, req, { instance: 'inst-a', pool: 'pool-a', type: 'SM' }, 'failed', timing(30), 30, estimate, T0 + 1500)!;
    expect(dead).toEqual({
      v: 1, id: 'r1', model: 'llama3.1-8b', apiKeyId: 'key-0123456789abcdef', tenant: 'acme', type: 'SM', pool: 'pool-a', instance: 'inst-a', outcome: 'failed',
      promptTokens: 2, completionTokens: 30, ttftMs: 200, tbtMeanMs: 40, tbtMaxMs: 55, energyJ: 12.5, energySource: 'measured', energyEstimatedJ: 12.5,
      sloMet: false, predictedType: 'SM', finishedMs: T0 + 1500,
    });
    // leg 2 on inst-b: the continuation names its client request, and inst-b's record carries it
    st.legs = 1;
    const leg2 = continuation(req, st);
    expect([leg2.id, leg2.request, leg2.inputTokens]).toEqual(['r1-m1', 'r1', 32]);
    chargeLeg(st, { v: 1, ok: true, energyJ: 40, energySource: 'measured' }, undefined, () => ({ energyJ: 99, energySource: 'measured' }), counters);
    const rec2 = requestRecord({ id: 'inst-b', pool: 'pool-a' }, { ...InferenceRequest.decode(InferenceRequest.encode(leg2)), type: 'SM', slo: req.slo!, ttftDeadlineMs: T0 + 500 }, 'SM', 'ok', undefined, 70, 40, 'measured', T0 + 4000);
    expect(rec2).toMatchObject({ id: 'r1-m1', request: 'r1', energyJ: 40 });
    expect(rec2).not.toHaveProperty('energyEstimatedJ');
    // on the wire: both records pass the codec unchanged
    const wire = [dead, rec2].map((r) => RequestRecord.decode(RequestRecord.encode(r)));
    expect(wire).toEqual([dead, rec2]);
    const usage = usageOf({ ...st, promptTokens: 2, sent: 100 });
    expect(byRequest(wire).get('r1')).toEqual({ energyJ: usage.energyJ, estimatedJ: usage.energyEstimatedJ, legs: 2 });
    expect(usage).toMatchObject({ energyJ: 52.5, energyEstimatedJ: 12.5 });
    // the gateway counts the estimate it recorded (dynamollm_gateway_estimated_leg_energy_joules_total): no gateway reads the records
    expect(counters).toEqual({ energyEstimated: 1, estimatedMeasuredJ: 12.5 });
  });

  it('an estimated continuation leg names its request; an answered leg gets no estimate and no gateway record', () => {
    const st = { ...state(), sent: 10, text: 'x', legs: 2 };
    const leg = continuation(req, st);
    const rec = estimatedLegRecord(req, leg, { instance: 'inst-c' }, 'ok', timing(5), 5, { energyJ: 3, energySource: 'modelled' }, T0 + 9000)!;
    // pool and type from the leg when the grant said none; within its SLO: met
    expect(rec).toMatchObject({ id: 'r1-m2', request: 'r1', pool: 'pool-a', type: 'SM', outcome: 'ok', energyJ: 3, energyEstimatedJ: 3, energySource: 'modelled', sloMet: true });
    expect(chargeLeg(state(), { v: 1, ok: true, energyJ: 0, energySource: 'measured' }, undefined, () => ({ energyJ: 9, energySource: 'measured' }), { energyEstimated: 0 })).toBeUndefined();
    expect(chargeLeg(state(), undefined, 4, () => ({ energyJ: 9, energySource: 'measured' }), { energyEstimated: 0 })).toBeUndefined();
    // without a pool or a type there is no record to publish (its subject and schema need both)
    const { pool: _p, type: _t, ...bare } = req;
    expect(estimatedLegRecord(bare, bare, { instance: 'inst-a' }, 'failed', timing(3), 3, { energyJ: 1, energySource: 'measured' }, T0)).toBeUndefined();
  });

  it("the instance's own record of the leg (a slow instance, not a dead one) replaces the estimate: no joule counted twice", () => {
    const est = estimatedLegRecord(req, req, { instance: 'inst-a', pool: 'pool-a', type: 'SM' }, 'failed', timing(30), 30, { energyJ: 12.5, energySource: 'measured' }, T0)!;
    const late: Rec = { ...est, energyJ: 11, finishedMs: T0 + 100 };
    delete late.energyEstimatedJ;
    for (const order of [[est, late], [late, est]]) expect(byRequest(order).get('r1')).toEqual({ energyJ: 11, estimatedJ: 0, legs: 1 });
  });

  it('is published on its pool\'s record subject; a connection that is gone loses it without throwing', () => {
    const sent: [string, Rec][] = [];
    const rec = estimatedLegRecord(req, req, { instance: 'inst-a', pool: 'pool-a', type: 'SM' }, 'failed', timing(3), 3, { energyJ: 1, energySource: 'measured' }, T0)!;
    expect(publishLegRecord({ publish: ((s: string, _c: unknown, v: Rec) => void sent.push([s, v])) as never }, rec)).toBe(true);
    expect(sent).toEqual([[subjects.telRequest('pool-a'), rec]]);
    expect(publishLegRecord({ publish: () => { throw new Error('closed'); } }, rec)).toBe(false);
    expect(publishLegRecord({ publish: () => { throw new Error('unused'); } }, undefined)).toBe(false);
  });
});

describe('RequestRecord on the wire: the new fields optional and validated', () => {
  const base: Rec = {
    v: 1, id: 'r1', type: 'SM', pool: 'pool-a', outcome: 'ok', promptTokens: 2, completionTokens: 3, energyJ: 1, energySource: 'measured', sloMet: true, finishedMs: T0,
  };
  it('a record without them (an older publisher) still decodes; bad values are refused', () => {
    expect(RequestRecord.decode(RequestRecord.encode(base))).toEqual(base);
    expect(RequestRecord.decode(RequestRecord.encode({ ...base, request: 'r0', energyEstimatedJ: 1 }))).toEqual({ ...base, request: 'r0', energyEstimatedJ: 1 });
    expect(() => RequestRecord.decode(RequestRecord.encode({ ...base, energyEstimatedJ: -1 }))).toThrow();
    expect(() => RequestRecord.decode(RequestRecord.encode({ ...base, request: 'not an id' }))).toThrow();
    expect(() => InferenceRequest.decode(InferenceRequest.encode({ ...req, request: 'a.b' }))).toThrow();
  });
});

const tel = (energyJ: number, powerW: number, running: number, id = 'inst-a') => ({ id, energyJ, powerW, running, energySource: 'measured' as const });

describe("InstanceEnergyMeters.markAt: a leg another gateway started, marked from the meters' history", () => {
  it('gives the sum the live mark read at that time; a restarted process keeps the old one for the legs on it; past the history, a lower bound', () => {
    const clock = new ManualClock(T0);
    const meters = new InstanceEnergyMeters(clock);
    meters.add(tel(1000, 400, 1));
    clock.advance(1000);
    meters.add(tel(1400, 400, 1));
    clock.advance(200);
    const live = meters.mark('inst-a');
    clock.advance(800);
    meters.add(tel(2000, 600, 2));
    clock.advance(1000);
    meters.add(tel(2600, 600, 2));
    clock.advance(500);
    const late = meters.markAt('inst-a', T0 + 1200)!;
    expect(late).toEqual(live);
    expect(meters.estimate(late)).toEqual(meters.estimate(live));
    expect(meters.estimate(late)!.energyJ).toBeCloseTo(600 / 2 + 600 / 2 + (600 * 0.5) / 2, 9);
    // the instance restarted (a counter from 0): a leg that started before it is on the old process
    meters.add(tel(5, 100, 0));
    expect(meters.markAt('inst-a', T0 + 1200)).toEqual(live);
    expect(meters.markAt('inst-a', clock.now())!.process).toBe(live.process + 1);
    expect(meters.markAt('inst-z', T0)).toBeUndefined();
    // a leg older than the history kept: the oldest reading kept, so its estimate is at most the true share
    const long = new InstanceEnergyMeters(clock);
    for (let i = 0; i <= HISTORY_READINGS + 10; i++) {
      long.add(tel(100 * i, 100, 1, 'inst-b'));
      clock.advance(1000);
    }
    const m = long.markAt('inst-b', T0)!;
    expect(long.estimate(m)!.energyJ).toBeCloseTo(100 * (HISTORY_READINGS - 1) + 100, 6);
  });
});

describe('endForeignLeg: the leg a dead gateway streamed, on an instance that died too', () => {
  const meters = () => {
    const clock = new ManualClock(T0);
    const m = new InstanceEnergyMeters(clock);
    m.add(tel(0, 300, 1));
    clock.advance(1000);
    m.add(tel(300, 300, 1));
    clock.advance(1000);
    m.add(tel(600, 300, 1));
    return { clock, m };
  };
  /** A bus on which the leg's end report gets `answer` (undefined: no answer), keeping what is published. */
  const bus = (answer: LegReply | undefined) => {
    const published: [string, unknown][] = [];
    const b = {
      publish: (s: string, _c: unknown, v: unknown) => void published.push([s, v]),
      request: () => (answer ? Promise.resolve(answer) : Promise.reject(new Error('no responders'))),
    } as unknown as Bus;
    return { b, published };
  };
  const resume = async (answer: LegReply | undefined, startedMs: number | undefined) => {
    const { clock, m } = meters();
    const { b, published } = bus(answer);
    // the dead gateway's journal: leg r1-m1 on inst-a, 20 tokens after 10, started at T0 + 500, 4 J before it (1 J estimated)
    const st0 = { ...state(), sent: 10, legs: 1, energyJ: 4, energyEstimatedJ: 1, energySource: 'measured' as const };
    const leg = ResumeEntry.decode(ResumeEntry.encode({ v: 1, id: 'r1', gen: 0, leg: legOf('r1-m1', { instance: 'inst-a', pool: 'pool-a', type: 'SM' }, st0, startedMs) })).leg!;
    const st = resumedState(req, { sent: 30, text: 'x'.repeat(30), resumes: 0, leg }, 1 << 20);
    const counters = { energyEstimated: 0 };
    clock.advance(400); // the resume comes 400 ms after the instance's last reading
    await endForeignLeg(b, 50, req, { sent: 30, text: 'x'.repeat(30), resumes: 0, leg }, st, (i, at) => ((k) => k && (() => m.estimate(k)))(m.markAt(i, at)), counters, clock);
    const records = published.filter(([s]) => s === subjects.telRequest('pool-a')).map(([, v]) => v as Rec);
    return { st, counters, records, cancels: published.filter(([s]) => s === subjects.cancel('r1-m1')).length };
  };

  it('no answer: the leg is charged its share since its start in the journal, labelled, and the gateway records it', async () => {
    const { st, counters, records, cancels } = await resume(undefined, T0 + 500);
    // the readings at T0 + 1000 and T0 + 2000 (300 J each, the leg alone) and 400 ms at 300 W over the leg
    const e = 300 + 300 + 300 * 0.4;
    expect(st.energyJ).toBeCloseTo(4 + e, 9);
    expect(st.energyEstimatedJ).toBeCloseTo(1 + e, 9);
    expect(counters.energyEstimated).toBe(1);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ id: 'r1-m1', request: 'r1', instance: 'inst-a', pool: 'pool-a', type: 'SM', outcome: 'failed', completionTokens: 20, promptTokens: 12, energySource: 'measured' });
    expect(records[0]!.energyJ).toBeCloseTo(e, 9);
    expect(records[0]!.energyEstimatedJ).toBe(records[0]!.energyJ);
    expect(RequestRecord.decode(RequestRecord.encode(records[0]!))).toEqual(records[0]);
    expect(cancels).toBe(1);
  });

  it('an answer with a figure is taken as is; one without (the instance recorded the leg itself) adds nothing; no start in the journal: no estimate', async () => {
    const answered = await resume({ v: 1, ok: true, energyJ: 7, energySource: 'measured' }, T0 + 500);
    expect([answered.st.energyJ, answered.st.energyEstimatedJ, answered.counters.energyEstimated, answered.records.length]).toEqual([11, 1, 0, 0]);
    const notFound = await resume({ v: 1, ok: false, error: { code: 'not_found', message: 'no such leg', retryable: false } }, T0 + 500);
    expect([notFound.st.energyJ, notFound.counters.energyEstimated, notFound.records.length]).toEqual([4, 0, 0]);
    const older = await resume(undefined, undefined);
    expect([older.st.energyJ, older.counters.energyEstimated, older.records.length, older.cancels]).toEqual([4, 0, 0, 1]);
  });
});
