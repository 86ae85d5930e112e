import { DEFAULT_HEADROOM } from '../../src/policy/types.ts';
import { describe, it, expect } from 'vitest';
import { paperProfile, MEDIUM } from '../fixtures/paper-profile.ts';
import { chooseInstance, dispatchRequest, NoInstanceError, emergencyStep, initialEmergencyState, type InstanceView, type EmergencyObservation, type EmergencyState } from '../../src/policy/index.ts';
import { maxLoadOf } from '../../src/model/profile.ts';
import { pickInstance } from '../../actors/common/policy.ts';

const p = paperProfile();
const inst = (id: string, tp: 2 | 4 | 8, mm: number, healthy = true): InstanceView => ({ id, tp, clockMhz: 2000, healthy, load: { MM: mm }, queued: 0, running: 0 });

describe('chooseInstance', () => {
  const cap4 = maxLoadOf(p, 'MM', 4, 2000);
  it('respects each instance SLO throughput cap and health', () => {
    const full = inst('a', 4, cap4 - 0.01);
    const sick = inst('b', 4, 1, false);
    const ok = inst('c', 8, 1);
    expect(chooseInstance({ type: 'MM' }, [full, sick, ok], p)).toMatchObject({ id: 'c' });
    expect(chooseInstance({ type: 'MM' }, [full], p)).toMatchObject({ reject: 'all_at_capacity', retryable: true });
    expect(chooseInstance({ type: 'MM' }, [sick], p)).toMatchObject({ reject: 'no_healthy_instance' });
  });

  it('prefers least marginal energy and breaks ties deterministically', () => {
    const a = inst('a', 4, MEDIUM('MM')), b = inst('b', 8, MEDIUM('MM'));
    const d = chooseInstance({ type: 'MM' }, [b, a], p);
    expect('id' in d && d.id).toBe('a'); // TP4 adds less energy per MM request than TP8 (Table I/II)
    const twins = [inst('y', 4, 1), inst('x', 4, 1)];
    expect(chooseInstance({ type: 'MM' }, twins, p)).toMatchObject({ id: 'x' });
  });
});

describe('dispatchRequest (chooseInstance + the overflow rule of the live pool leader)', () => {
  const cap4 = maxLoadOf(p, 'MM', 4, 2000);
  it('is chooseInstance under the cap, else least (running + 2 x queued) / tp with ties to the larger TP', () => {
    const a = inst('a', 4, MEDIUM('MM')), b = inst('b', 8, MEDIUM('MM'));
    expect(dispatchRequest({ type: 'MM' }, [b, a], p, ['MM'])).toEqual({ id: 'a', atCapacity: false, capped: false });
    const full4 = { ...inst('f4', 4, cap4), running: 4, queued: 0 }; // 1 per GPU
    const full8 = { ...inst('f8', 8, 10 * cap4), running: 6, queued: 1 }; // 1 per GPU: tie -> larger TP
    const busy2 = { ...inst('b2', 2, 10 * cap4), running: 1, queued: 1 }; // 1.5 per GPU
    expect(dispatchRequest({ type: 'MM' }, [full4, busy2, full8], p, ['MM'])).toEqual({ id: 'f8', atCapacity: true, capped: true });
    expect(dispatchRequest({ type: 'MM' }, [full4, busy2], p, ['MM'])).toEqual({ id: 'f4', atCapacity: true, capped: true });
    // no profile, or a TP outside it: the overflow rule; no type: the pool's first type
    expect(dispatchRequest({}, [busy2, full4], undefined, ['MM'])).toEqual({ id: 'f4', atCapacity: true, capped: false });
    const tp1 = { ...inst('t1', 4, 0), tp: 1 as unknown as 4 };
    expect(dispatchRequest({ type: 'MM' }, [tp1], p, [])).toMatchObject({ id: 't1', atCapacity: true, capped: false });
    expect(() => dispatchRequest({ type: 'MM' }, [], p, ['MM'])).toThrow(NoInstanceError);
  });

  it('prefer (cache-aware routing) names one of the eligible instances, and at capacity one of all; else the energy choice', () => {
    const a = inst('a', 4, MEDIUM('MM')), b = inst('b', 8, MEDIUM('MM')), full = { ...inst('f', 4, cap4), running: 9 };
    const offered: string[][] = [];
    const prefer = (want: string) => (ids: string[]) => (offered.push(ids), ids.includes(want) ? want : undefined);
    expect(dispatchRequest({ type: 'MM' }, [b, a, full], p, ['MM'], { prefer: prefer('b') })).toEqual({ id: 'b', atCapacity: false, capped: false });
    expect(offered.at(-1)).toEqual(['b', 'a']); // the tier's eligible ones: not the full instance
    expect(dispatchRequest({ type: 'MM' }, [b, a, full], p, ['MM'], { prefer: prefer('f') })).toEqual({ id: 'a', atCapacity: false, capped: false });
    expect(dispatchRequest({ type: 'MM' }, [full, { ...full, id: 'g', running: 1 }], p, ['MM'], { prefer: prefer('f') })).toEqual({ id: 'f', atCapacity: true, capped: true });
    expect(dispatchRequest({ type: 'MM' }, [full, { ...full, id: 'g', running: 1 }], p, ['MM'])).toEqual({ id: 'g', atCapacity: true, capped: true });
  });

  it('takes exactly the decision of the live adapter (actors/common/policy.ts pickInstance) on random views', () => {
    let seed = 9;
    const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let overflow = 0;
    for (let n = 0; n < 200; n++) {
      const views = Array.from({ length: 1 + Math.floor(r() * 5) }, (_, i) => ({
        ...inst(`i${i}`, ([2, 4, 8] as const)[Math.floor(r() * 3)], r() * 2 * cap4, r() > 0.1),
        running: Math.floor(r() * 6), queued: Math.floor(r() * 3),
      }));
      const type = (['MS', 'MM', 'ML'] as const)[n % 3];
      const live = pickInstance({ type } as Parameters<typeof pickInstance>[0], views, p, ['MM']);
      const ours = dispatchRequest({ type }, views, p, ['MM'], { headroom: DEFAULT_HEADROOM });
      expect(ours).toEqual(live);
      if (ours.atCapacity) overflow++;
    }
    expect(overflow).toBeGreaterThan(10);
    expect(overflow).toBeLessThan(190);
  });
});

describe('emergency ladder', () => {
  const cfg = { rejectAfterMs: 5000, escalateAfterMs: 1000, clearAfterMs: 3000, retryAfterS: 2 };
  const q = (now: number) => [
    { id: 'late', arrivalMs: now - 6000, ttftDeadlineMs: now + 5000, type: 'MM' as const },
    { id: 'urgent', arrivalMs: now - 100, ttftDeadlineMs: now + 100, type: 'SS' as const },
    { id: 'mid', arrivalMs: now - 200, ttftDeadlineMs: now + 1000, type: 'MS' as const },
  ];
  const obs = (now: number, miss: number, peers = 1, clock = 1200): EmergencyObservation => ({ nowMs: now, queue: miss ? q(now) : [], clockMhz: clock, maxClockMhz: 1980, predictedMissCount: miss, peersWithCapacity: peers });

  it('escalates one level per step in the paper order, and only after a level had its time', () => {
    let s: EmergencyState = initialEmergencyState(0);
    const kinds: string[][] = [];
    for (const t of [0, 500, 1000, 2000, 3000]) {
      const r = emergencyStep(s, obs(t, 2), cfg);
      s = r.state;
      kinds.push(r.actions.map((a) => a.kind));
    }
    expect(kinds).toEqual([
      ['reorder'],
      ['reorder'], // 500 ms < escalateAfterMs: stays at level 1
      ['reorder', 'max_clock'],
      ['reorder', 'max_clock', 'move'],
      ['reorder', 'max_clock', 'move', 'reject'],
    ]);
    const r = emergencyStep(s, obs(3500, 2), cfg);
    const reorder = r.actions.find((a) => a.kind === 'reorder')!;
    expect(reorder.kind === 'reorder' && reorder.order).toEqual(['urgent', 'mid', 'late']);
    const rej = r.actions.find((a) => a.kind === 'reject')!;
    expect(rej).toMatchObject({ ids: ['late'], retryAfterS: 2 });
    const mv = r.actions.find((a) => a.kind === 'move')!;
    expect(mv.kind === 'move' && mv.ids).not.toContain('late');
    expect(rej.why).toMatchObject({ level: 4, step: 'reject', predictedMissCount: 2, oldestWaitMs: 6000 });
  });

  it('skips past moving when no peer has capacity', () => {
    let s: EmergencyState = { level: 3, sinceMs: 0, clearSinceMs: null };
    const r = emergencyStep(s, obs(100, 1, 0), cfg);
    s = r.state;
    expect(s.level).toBe(4);
    expect(r.actions.map((a) => a.kind)).not.toContain('move');
  });

  it('de-escalates one level per clear period once the backlog clears, releasing max clock', () => {
    let s: EmergencyState = { level: 4, sinceMs: 0, clearSinceMs: null };
    const levels: number[] = [];
    const released: number[] = [];
    for (let t = 10_000; t <= 25_000; t += 1000) {
      const r = emergencyStep(s, obs(t, 0, 1, 1980), cfg);
      s = r.state;
      levels.push(s.level);
      if (r.actions.some((a) => a.kind === 'release_max_clock')) released.push(s.level);
    }
    expect(levels[0]).toBe(4);
    expect(levels[levels.length - 1]).toBe(0);
    for (let i = 1; i < levels.length; i++) expect(levels[i - 1]! - levels[i]!).toBeLessThanOrEqual(1);
    expect(released).toEqual([1]);
    // trouble again: straight back to level 1, not to where it was
    expect(emergencyStep(s, obs(30_000, 1), cfg).state.level).toBe(1);
  });
});

import { readFileSync } from 'node:fs';
import { parseProfile } from '../../src/model/profile.ts';
// the generated H100 profile: its SLO throughput and concurrency depend on the clock (the fixture's do not)
const real = parseProfile(JSON.parse(readFileSync(new URL('../../profiles/llama2-70b.h100.json', import.meta.url), 'utf8')));

describe('instantaneous headroom (running + queued vs the SLO concurrency)', () => {
  it('skips an instance whose in-flight requests already fill its SLO concurrency, even with a low EWMA rate', async () => {
    const { maxConcurrencyOf, instantHeadroom } = await import('../../src/policy/dispatch.ts');
    const n = maxConcurrencyOf(p, 'MM', 4, 2000);
    expect(n).toBeGreaterThanOrEqual(1);
    const busy: InstanceView = { ...inst('a', 4, 0.1), running: Math.ceil(n) };
    const idle: InstanceView = inst('b', 4, 0.1);
    expect(instantHeadroom(busy, 'MM', p, 2000)).toBe(false);
    expect(instantHeadroom(idle, 'MM', p, 2000)).toBe(true);
    // same EWMA load: without the instant check the tie goes to 'a' (id order); with it, to the idle one
    expect(chooseInstance({ type: 'MM' }, [busy, idle], p, { instantaneous: false })).toMatchObject({ id: 'a' });
    expect(chooseInstance({ type: 'MM' }, [busy, idle], p)).toMatchObject({ id: 'b' });
    // nothing with room: all_at_capacity, and dispatchRequest overflows to the least outstanding per GPU
    expect(chooseInstance({ type: 'MM' }, [busy], p)).toMatchObject({ reject: 'all_at_capacity' });
    expect(dispatchRequest({ type: 'MM' }, [busy], p, ['MM'])).toEqual({ id: 'a', atCapacity: true, capped: true });
  });

  it('prefers instances with room at their current clock, then those with room at max clock', async () => {
    const { maxConcurrencyOf } = await import('../../src/policy/dispatch.ts');
    const lo = Math.min(...real.clocksMhz);
    const fmax = Math.max(...real.clocksMhz);
    const nLo = maxConcurrencyOf(real, 'SS', 8, lo);
    const nHi = maxConcurrencyOf(real, 'SS', 8, fmax);
    expect(Math.ceil(nLo) + 1).toBeLessThan(nHi); // the lowest clock holds fewer SS in flight within the SLO
    const slow: InstanceView = { id: 's', tp: 8, clockMhz: lo, healthy: true, load: { SS: 0.1 }, queued: 0, running: Math.ceil(nLo) };
    const fast: InstanceView = { id: 't', tp: 8, clockMhz: fmax, healthy: true, load: { SS: 0.1 }, queued: 0, running: Math.ceil(nLo) };
    expect(chooseInstance({ type: 'SS' }, [slow, fast], real)).toMatchObject({ id: 't' });
    expect(chooseInstance({ type: 'SS' }, [slow], real)).toMatchObject({ id: 's' }); // room only at max clock: tier 2
  });

  it("an instance reporting its GPU's applied clock (off the profile's grid by a few MHz) is priced and admitted at the profile clock it was set to, not at max clock", async () => {
    const { maxConcurrencyOf, profileClockOf } = await import('../../src/policy/dispatch.ts');
    const lo = Math.min(...real.clocksMhz);
    const fmax = Math.max(...real.clocksMhz);
    const nLo = maxConcurrencyOf(real, 'SS', 8, lo);
    // an H100 applies 800 MHz as 795; the same in-flight requests as above: room only at max clock
    const applied = lo - 5;
    expect(real.clocksMhz).not.toContain(applied);
    expect(profileClockOf(real, applied)).toBe(lo);
    expect(profileClockOf(real, lo - 40)).toBeUndefined();
    const slow: InstanceView = { id: 's', tp: 8, clockMhz: applied, healthy: true, load: { SS: 0.1 }, queued: 0, running: Math.ceil(nLo) };
    const idle: InstanceView = { id: 't', tp: 8, clockMhz: applied, healthy: true, load: {}, queued: 0, running: 0 };
    const onGrid = (v: InstanceView): InstanceView => ({ ...v, clockMhz: lo });
    // the choice and its price are those of the same instances reporting the profile clock (the simulator's)
    const live = chooseInstance({ type: 'SS' }, [slow, idle], real);
    const sim = chooseInstance({ type: 'SS' }, [onGrid(slow), onGrid(idle)], real);
    expect(sim).toMatchObject({ id: 't' });
    expect(live).toEqual(sim);
    expect(fmax).toBeGreaterThan(lo);
    // the twin check's re-shard window (Llama-3.1-8B, TP2): a busy instance at 1000 MHz applied as 990 with 150 requests
    // in flight has no room at its clock; the idle one at 800 (795) takes the request, as in the simulator
    const small = parseProfile(JSON.parse(readFileSync(new URL('../../profiles/llama3.1-8b.h100.chunked.json', import.meta.url), 'utf8')));
    const view = (id: string, clockMhz: number, mm: number, running: number): InstanceView => ({ id, tp: 2, clockMhz, healthy: true, load: mm ? { MM: mm } : {}, queued: 0, running });
    expect(chooseInstance({ type: 'MM' }, [view('busy', 1000, 3, 150), view('idle', 800, 0, 0)], small, { headroom: 0.2 })).toMatchObject({ id: 'idle' });
    expect(chooseInstance({ type: 'MM' }, [view('busy', 990, 3, 150), view('idle', 795, 0, 0)], small, { headroom: 0.2 })).toMatchObject({ id: 'idle' });
  });
});

describe('SLO concurrency where the SLO limit falls between a feasible and a saturated grid load', () => {
  it('reads the latencies of the last feasible cell, not a blend with the saturated one', async () => {
    const { maxConcurrencyOf } = await import('../../src/policy/dispatch.ts');
    const { interpolate } = await import('../../src/model/profile.ts');
    const p8b = parseProfile(JSON.parse(readFileSync(new URL('../../profiles/llama3.1-8b.h100.json', import.meta.url), 'utf8')));
    const ml = maxLoadOf(p8b, 'SS', 2, 1980);
    // the profile's SS grid has a saturated cell (1e6 ms) right above the SLO max load: interpolating at ml blends
    // it in, far above any sane SS latency (well under a second)
    expect(interpolate(p8b, 'SS', 2, 1980, ml).ttftP50Ms).toBeGreaterThan(2_000);
    const n = maxConcurrencyOf(p8b, 'SS', 2, 1980);
    // Little's law at ml with sane latencies: SS is ~180 in / 55 out tokens, well under a second end to end
    const below = p8b.loads.SS!.filter((l) => l <= ml).at(-1)!;
    const c = interpolate(p8b, 'SS', 2, 1980, below);
    const N = (ml * (c.ttftP50Ms + c.tbtP50Ms * 54)) / 1000;
    expect(n).toBeCloseTo(N + 2 * Math.sqrt(N), 6);
    expect(n).toBeLessThan(1000);
  });
});

describe('pending prefill at an instance (prompt tokens not yet prefilled)', () => {
  it('skips an instance whose prefill backlog would hold a short prompt past half its TTFT SLO, not a long one', async () => {
    const { prefillRateOf, instantHeadroom } = await import('../../src/policy/dispatch.ts');
    const fmax = Math.max(...real.clocksMhz);
    const rate = prefillRateOf(real, 8, fmax); // prompt tokens per ms, unloaded
    expect(rate).toBeGreaterThan(1);
    const backlog = Math.ceil(rate * 250); // ~250 ms of prefill ahead: over half of SS's 250 ms, under half of LL's 2000 ms
    const busy: InstanceView = { id: 'a', tp: 8, clockMhz: fmax, healthy: true, load: { LL: 0.1 }, queued: 0, running: 2, pendingPrefillTokens: backlog };
    const free: InstanceView = { ...busy, id: 'b', pendingPrefillTokens: 0 };
    expect(instantHeadroom(busy, 'SS', real, fmax)).toBe(false);
    expect(instantHeadroom(busy, 'LL', real, fmax)).toBe(true);
    expect(instantHeadroom(free, 'SS', real, fmax)).toBe(true);
    // without the field (the simulator, older instance managers) the request-count rule alone decides
    const { pendingPrefillTokens: _, ...legacy } = busy;
    expect(instantHeadroom(legacy, 'SS', real, fmax)).toBe(true);
    // the energy-preferred instance with the backlog loses the short prompt to the free one
    expect(chooseInstance({ type: 'SS' }, [busy, free], real)).toMatchObject({ id: 'b' });
  });
});

describe('prefillClockFloor (the clock a prefill backlog needs; prompt lengths are known on arrival)', () => {
  it('is the lowest clock at which every prompt in the backlog is prefilled within 0.8 of its time left', async () => {
    const { prefillClockFloor, prefillRateOf, PREFILL_CLOCK_SHARE } = await import('../../src/policy/dispatch.ts');
    const clocks = [...real.clocksMhz].sort((a, b) => a - b);
    const fmin = clocks[0]!, fmax = clocks.at(-1)!;
    expect(prefillClockFloor(real, 2, [])).toBe(fmin);
    // a representative long prompt fits at the lowest clock; a 7k-token one (same type, same 2 s SLO) does not
    const fits = (tokens: number, slack: number, c: number, busy = 0) => busy + tokens / prefillRateOf(real, 2, c) <= PREFILL_CLOCK_SHARE * slack;
    expect(fits(1000, 2000, fmin)).toBe(true);
    expect(prefillClockFloor(real, 2, [{ tokens: 1000, slackMs: 2000 }])).toBe(fmin);
    const long = [{ tokens: 7400, slackMs: 2000 }];
    const f = prefillClockFloor(real, 2, long);
    expect(fits(7400, 2000, fmin)).toBe(false);
    expect(f).toBeGreaterThan(fmin);
    expect(fits(7400, 2000, f)).toBe(true);
    const below = clocks.filter((c) => c < f).at(-1)!;
    expect(fits(7400, 2000, below)).toBe(false); // the lowest such clock
    // a short prompt queued behind the long one, with its 250 ms SLO: unmeetable at any clock -> max clock
    expect(prefillClockFloor(real, 2, [...long, { tokens: 100, slackMs: 250 }])).toBe(fmax);
    // the committed rest of the step in progress counts at every clock
    const g = prefillClockFloor(real, 2, long, 300);
    expect(g).toBeGreaterThan(f);
    expect(fits(7400, 2000, g, 300)).toBe(true);
    expect(g).toBeLessThan(fmax);
    // an overdue prompt: max clock
    expect(prefillClockFloor(real, 2, [{ tokens: 10, slackMs: -5 }])).toBe(fmax);
    // candidate clocks restrict the answer (the live GPU's supported set)
    expect(prefillClockFloor(real, 2, long, 0, [fmin, fmax])).toBe(fmax);
  });
});

describe('chooseClock peakLoadByType', () => {
  it('provisions the clock for the recent peak, not the mean', async () => {
    const { chooseClock } = await import('../../src/policy/frequency.ts');
    const { utilisationOf } = await import('../../src/policy/energy.ts');
    const m = maxLoadOf(real, 'MM', 8, Math.max(...real.clocksMhz));
    let checked = 0;
    for (const frac of [0.9, 0.7, 0.5, 0.3]) {
      const mean = chooseClock({ profile: real, tp: 8, loadByType: { MM: 0.05 * m } });
      const peak = chooseClock({ profile: real, tp: 8, loadByType: { MM: 0.05 * m }, peakLoadByType: { MM: frac * m } });
      expect(utilisationOf(real, 8, peak.clockMhz, { MM: frac * m })).toBeLessThanOrEqual(1 + 1e-9);
      if (utilisationOf(real, 8, mean.clockMhz, { MM: frac * m }) > 1) {
        expect(peak.clockMhz).toBeGreaterThan(mean.clockMhz);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
    const peak = chooseClock({ profile: real, tp: 8, loadByType: { MM: 0.05 * m }, peakLoadByType: { MM: 0.9 * m } });
    expect(peak.feasible).toBe(true);
  });
});
