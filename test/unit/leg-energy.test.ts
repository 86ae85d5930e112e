/**
 * The energy of a leg whose instance died before answering its end report (actors/gateway/leg-energy.ts, src/policy
 * energy.ts ShareMeter): the gateway charges it what the instance's own rule (requestShareJ: each reading's increment
 * split evenly over the requests running then) gave it, plus the estimated increment of the reading the instance did
 * not live to take; bounded memory; the figure reaches the client's usage labelled as an estimate.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import { meterReading, meteredLegJ, newShareMeter, requestShareJ } from '../../src/policy/energy.ts';
import { InstanceEnergyMeters } from '../../actors/gateway/leg-energy.ts';
import { chargeLeg, usageOf, type StreamState } from '../../actors/gateway/legs.ts';
import { usageOut } from '../../actors/gateway/openai.ts';
import { legOf, resumedState } from '../../actors/gateway/legs.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const tel = (energyJ: number, powerW: number, running: number, id = 'inst-a') => ({ id, energyJ, powerW, running, energySource: 'measured' as const });
const state = (): StreamState => ({ out: 0, sent: 0, text: '', textBytes: 0, keepText: true, energyJ: 0, legs: 0 });

describe('requestShareJ (the instance manager attribution rule)', () => {
  it('splits an increment evenly over the requests running at the reading; nothing running or no increment: nothing', () => {
    expect(requestShareJ(600, 3)).toBe(200);
    expect(requestShareJ(600, 0)).toBe(0);
    expect(requestShareJ(-5, 2)).toBe(0);
  });
});

describe('ShareMeter: a leg charged what the instance would have given it', () => {
  it('matches the instance rule applied reading by reading to a request that ran through them', () => {
    // the instance manager's loop (instance-manager.ts #telemetry): at each reading, every running request gets its share
    const readings = [
      { atMs: 0, energyJ: 0, powerW: 300, running: 1, ids: ['x'] },
      { atMs: 1000, energyJ: 300, powerW: 500, running: 2, ids: ['x', 'leg'] },
      { atMs: 2000, energyJ: 800, powerW: 600, running: 2, ids: ['x', 'leg'] },
      { atMs: 3000, energyJ: 1400, powerW: 600, running: 3, ids: ['x', 'leg', 'y'] },
    ];
    const given = new Map<string, number>();
    const m = newShareMeter();
    let mark = 0;
    for (const [i, r] of readings.entries()) {
      if (i > 0) for (const id of r.ids) given.set(id, (given.get(id) ?? 0) + requestShareJ(r.energyJ - readings[i - 1]!.energyJ, r.ids.length));
      meterReading(m, r);
      if (r.atMs === 0) mark = m.shareJ; // the leg starts after the first reading
    }
    // the leg ended right at the last reading: no increment to estimate
    expect(meteredLegJ(m, mark, 500, 3000)).toBeCloseTo(given.get('leg')!, 9);
    expect(given.get('leg')).toBeCloseTo(300 / 2 + 500 / 2 + 600 / 3, 9);
  });

  it('adds the increment the dead instance did not read: the last power over the time since, at most one interval, shared with this leg counted', () => {
    const m = newShareMeter();
    for (const r of [
      { atMs: 0, energyJ: 0, powerW: 300, running: 1 },
      { atMs: 1000, energyJ: 300, powerW: 500, running: 2 },
      { atMs: 2000, energyJ: 800, powerW: 600, running: 2 },
      { atMs: 3000, energyJ: 1400, powerW: 600, running: 3 },
    ]) meterReading(m, r);
    // a leg from 1500 (sum then: 150, after the 1000 reading) to 3400: the readings at 2000 and 3000, and 400 ms at 600 W over 3
    expect(meteredLegJ(m, 150, 1500, 3400)).toBeCloseTo(500 / 2 + 600 / 3 + (600 * 0.4) / 3, 9);
    // a leg from 3100 to 3500, no reading inside: 400 ms at 600 W over the 3 running then and this one
    expect(meteredLegJ(m, m.shareJ, 3100, 3500)).toBeCloseTo((600 * 0.4) / 4, 9);
    // silent for 7 s (the instance hung before it died): one reading interval at most
    expect(meteredLegJ(m, m.shareJ, 3100, 10_000)).toBeCloseTo((600 * 1.0) / 4, 9);
  });
});

describe('InstanceEnergyMeters (the gateway)', () => {
  it('estimates a leg from the telemetry it read on its own clock; a restarted instance process keeps the old meter for its legs', () => {
    const clock = new ManualClock(T0);
    const meters = new InstanceEnergyMeters(clock);
    meters.add(tel(1000, 400, 1));
    clock.advance(1000);
    meters.add(tel(1400, 400, 1));
    clock.advance(200);
    const leg = meters.mark('inst-a');
    clock.advance(800);
    meters.add(tel(2000, 600, 2)); // the leg and one other
    clock.advance(1000);
    meters.add(tel(2600, 600, 2));
    clock.advance(500); // the instance dies 500 ms after its last reading
    expect(meters.estimate(leg)).toEqual({ energyJ: expect.closeTo(600 / 2 + 600 / 2 + (600 * 0.5) / 2, 9), energySource: 'measured' });
    // a new process under the same id (its counter starts at 0): the leg is still charged from its own process's readings
    meters.add(tel(5, 100, 0));
    expect(meters.estimate(leg)!.energyJ).toBeCloseTo(600 / 2 + 600 / 2 + (600 * 0.5) / 2, 9);
    const leg2 = meters.mark('inst-a');
    clock.advance(1000);
    meters.add(tel(205, 200, 1));
    expect(meters.estimate(leg2)!.energyJ).toBeCloseTo(200, 9);
    // an instance never heard of: no estimate (not a 0 J one)
    expect(meters.estimate(meters.mark('inst-z'))).toBeUndefined();
  });

  it('keeps at most its bound of instances, the least recently heard of going first', () => {
    const clock = new ManualClock(T0);
    const meters = new InstanceEnergyMeters(clock, undefined, 3);
    for (let i = 0; i < 10; i++) meters.add(tel(10, 100, 1, `i${i}`));
    expect(meters.size).toBe(3);
    const kept = meters.mark('i9');
    meters.add(tel(10, 100, 1, 'i10'));
    clock.advance(1000);
    meters.add(tel(110, 100, 1, 'i9'));
    expect(meters.estimate(kept)!.energyJ).toBeCloseTo(100, 9);
    expect(meters.estimate({ instance: 'i0', process: 0, shareJ: 0, atMs: T0 })).toBeUndefined();
    expect(meters.size).toBe(3);
  });
});

describe('chargeLeg: the estimate only where the instance did not answer, labelled in the usage', () => {
  it('an unanswered end report takes the estimate; an answer or an engine figure is used as is', () => {
    const counters = { energyEstimated: 0 };
    const st = state();
    chargeLeg(st, undefined, undefined, () => ({ energyJ: 12.5, energySource: 'measured' }), counters);
    chargeLeg(st, { v: 1, ok: true, energyJ: 30, energySource: 'measured' }, undefined, () => ({ energyJ: 99, energySource: 'measured' }), counters, 'measured');
    chargeLeg(st, undefined, 4, () => ({ energyJ: 99, energySource: 'modelled' }), counters);
    expect(st.energyJ).toBeCloseTo(46.5, 9);
    expect(st.energyEstimatedJ).toBeCloseTo(12.5, 9);
    expect(counters.energyEstimated).toBe(1);
    const u = usageOf({ ...st, promptTokens: 13, sent: 300 });
    expect(u).toMatchObject({ promptTokens: 13, completionTokens: 300, energyJ: 46.5, energySource: 'measured', energyEstimatedJ: 12.5 });
    expect(usageOut(u, 0, 0)).toMatchObject({ energy_joules: 46.5, energy_estimated_joules: 12.5 });
    // nothing estimated: no field
    expect(usageOut(usageOf({ ...state(), energyJ: 3, energySource: 'modelled' }), 0, 0)).not.toHaveProperty('energy_estimated_joules');
  });

  it('an answer without a figure (a restarted instance, or one that ended the leg when its engine crashed: not_found) takes the estimate; one with a figure is never estimated too', () => {
    const counters = { energyEstimated: 0 };
    const st = state();
    const notFound = { v: 1 as const, ok: false, error: { code: 'not_found' as const, message: 'instance i holds no direct request r', retryable: false } };
    chargeLeg(st, notFound, undefined, () => ({ energyJ: 7.5, energySource: 'measured' }), counters);
    expect([st.energyJ, st.energyEstimatedJ, counters.energyEstimated, st.energySource]).toEqual([7.5, 7.5, 1, 'measured']);
    // answered with its figure (0 J included): that figure alone
    chargeLeg(st, { v: 1, ok: true, energyJ: 0, energySource: 'measured' }, undefined, () => ({ energyJ: 99, energySource: 'measured' }), counters);
    chargeLeg(st, { v: 1, ok: true, energyJ: 20, energySource: 'measured' }, undefined, () => ({ energyJ: 99, energySource: 'measured' }), counters);
    // an engine figure with an answer that has none: the engine's figure
    chargeLeg(st, notFound, 3, () => ({ energyJ: 99, energySource: 'modelled' }), counters);
    expect([st.energyJ, st.energyEstimatedJ, counters.energyEstimated]).toEqual([30.5, 7.5, 1]);
  });
});

describe('a resumed stream keeps the label of its estimated energy', () => {
  it('the journal records the estimated part of the energy before a leg, and a resume on another gateway restores it', () => {
    const st = state();
    const counters = { energyEstimated: 0 };
    chargeLeg(st, undefined, undefined, () => ({ energyJ: 12.5, energySource: 'measured' }), counters);
    chargeLeg(st, { v: 1, ok: true, energyJ: 30, energySource: 'measured' }, undefined, undefined, counters);
    st.sent = 40;
    st.legs = 2;
    const leg = ResumeEntry.decode(ResumeEntry.encode({ v: 1, id: 'r1', gen: 1, leg: legOf('r1', { instance: 'inst-b' }, st) })).leg!;
    expect(leg).toMatchObject({ energyJ: 42.5, energyEstimatedJ: 12.5 });
    const req: InferenceRequest = {
      v: 1, id: 'r1', model: 'm', kind: 'completion', prompt: 'Hi', inputTokens: 2, maxTokens: 100, arrivalMs: 0, giveUpAtMs: 60_000, streamSubject: 'dyn.v1.stream.r1',
    };
    const resumed = resumedState(req, { sent: 40, text: 'x'.repeat(40), resumes: 0, leg }, 1 << 20);
    chargeLeg(resumed, { v: 1, ok: true, energyJ: 5, energySource: 'measured' }, undefined, undefined, counters);
    expect(usageOut(usageOf(resumed), 0, 0)).toMatchObject({ energy_joules: 47.5, energy_estimated_joules: 12.5 });
    // nothing estimated: the journal has no such field
    expect(legOf('r2', { instance: 'inst-b' }, { ...state(), energyJ: 3 })).not.toHaveProperty('energyEstimatedJ');
  });
});
