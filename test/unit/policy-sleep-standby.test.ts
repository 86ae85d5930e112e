/**
 * The standby policy (src/policy/sleep-standby.ts), event by event: a pool's instances sleep while the others carry the
 * forecast's upper band with the margin, wake when the band rises above the awake capacity (an instance on its way to
 * sleep first, then the shortest wake), keep `minAwake` awake and each phase `minDwellMs`, sleep at level 2 once the
 * level-1 slots are taken, stop after `stopAfterMs`; the forecast reads the past buckets and a burst in the filling one.
 */
import { describe, expect, it } from 'vitest';
import {
  STANDBY_DEFAULTS, STANDBY_WINDOW_DEFAULTS, instanceCapacity, planStandby, recordStandbyArrivals, standbyForecast,
  type StandbyInstance, type StandbyWindow,
} from '../../src/policy/sleep-standby.ts';
import type { RequestType } from '../../protocols/request-types.ts';

const WAKE = { 1: 1.2, 2: 3.7 } as const;
const inst = (id: string, o: Partial<StandbyInstance> = {}): StandbyInstance => ({ id, gpus: 8, capacity: 1, phase: 'awake', sinceMs: 0, wakeS: WAKE, outstanding: 0, ...o });
const MIN = 60_000;

/** The plan applied to the instances, as a shell would (to-sleep instances idle at once here). */
function apply(xs: StandbyInstance[], plan: ReturnType<typeof planStandby>, now: number): StandbyInstance[] {
  return xs.flatMap((i) => {
    if (plan.stop.includes(i.id)) return [];
    if (plan.wake.includes(i.id)) return [{ ...i, phase: i.phase === 'to-sleep' ? 'awake' : 'waking', sinceMs: now }];
    const s = plan.sleep.find((x) => x.id === i.id);
    if (s) return [{ ...i, phase: 'asleep', level: s.level, sinceMs: now }];
    return [i];
  });
}

describe('planStandby, event by event', () => {
  it('quiet: sleeps what the others carry with the margin; a burst: wakes the one on its way to sleep, then the shortest wake', () => {
    // four TP8 instances of 1 req/s each, awake for a minute; the band 1.5 req/s: 2 carry 1.5 x 1.25
    let xs = ['a', 'b', 'c', 'd'].map((id) => inst(id));
    let p = planStandby(xs, { expected: 1, upper: 1.5 }, MIN);
    expect(p.sleep).toEqual([{ id: 'a', level: 1 }, { id: 'b', level: 1 }]);
    expect(p.wake).toEqual([]);
    expect(p.awakeCapacity).toBe(2);
    xs = apply(xs, p, MIN);
    // the same band a second later: nothing changes (c and d carry it, a and b asleep)
    p = planStandby(xs, { expected: 1, upper: 1.5 }, MIN + 1000);
    expect(p).toMatchObject({ wake: [], sleep: [], stop: [] });
    // b is on its way to sleep (requests finishing), a asleep: a burst to 2.5 req/s wakes b first (no wake time)
    xs = xs.map((i) => (i.id === 'b' ? { ...i, phase: 'to-sleep' } : i));
    p = planStandby(xs, { expected: 1.2, upper: 2.5 }, MIN + 2000);
    expect(p.wake).toEqual(['b']);
    expect(p.awakeCapacity).toBe(3);
    // 3.5 req/s: both
    p = planStandby(xs, { expected: 1.2, upper: 3.5 }, MIN + 2000);
    expect(p.wake).toEqual(['b', 'a']);
  });

  it('wakes the shortest wake first (level 1 before level 2, then the larger capacity), and a wake waits for no dwell', () => {
    const xs = [inst('awake', { sinceMs: 59_000 }), inst('l2', { phase: 'asleep', level: 2, sinceMs: 59_000, capacity: 4 }), inst('l1small', { phase: 'asleep', level: 1, sinceMs: 59_000, capacity: 0.5 }), inst('l1big', { phase: 'asleep', level: 1, sinceMs: 59_000, capacity: 2 })];
    expect(planStandby(xs, { expected: 1, upper: 2.8 }, MIN).wake).toEqual(['l1big']);
    expect(planStandby(xs, { expected: 1, upper: 3.2 }, MIN).wake).toEqual(['l1big', 'l1small']);
    expect(planStandby(xs, { expected: 1, upper: 4 }, MIN).wake).toEqual(['l1big', 'l1small', 'l2']);
  });

  it('sleeps the least capacity per GPU first, keeps minAwake and the dwell, and takes level 2 once the level-1 slots are full', () => {
    const xs = [inst('tp8', { gpus: 8, capacity: 2.4 }), inst('tp2', { gpus: 2, capacity: 0.56 }), inst('tp4', { gpus: 4, capacity: 1 }), inst('fresh', { gpus: 2, capacity: 0.3, sinceMs: 50_000 })];
    // no load: all but minAwake sleep; 'fresh' woke 10 s ago and stays; tp4 (0.25 per GPU) before tp2 (0.28) before tp8 (0.3)
    const p = planStandby(xs, { expected: 0, upper: 0 }, MIN, { ...STANDBY_DEFAULTS, level1Slots: 1 });
    expect(p.sleep).toEqual([{ id: 'tp4', level: 1 }, { id: 'tp2', level: 2 }, { id: 'tp8', level: 2 }]);
    expect(p.awakeCapacity).toBeCloseTo(0.3, 9);
    const two = planStandby(xs, { expected: 0, upper: 0 }, MIN, { ...STANDBY_DEFAULTS, minAwake: 2 });
    expect(two.sleep.map((s) => s.id)).toEqual(['tp4', 'tp2']);
    // one level-1 slot already held by a sleeper: the next sleeps at level 2
    const held = [...xs, inst('old', { phase: 'asleep', level: 1 })];
    expect(planStandby(held, { expected: 0, upper: 2.9 }, MIN, { ...STANDBY_DEFAULTS, level1Slots: 1, sleepMargin: 0 }).sleep).toEqual([{ id: 'tp4', level: 2 }]);
  });

  it('minAwake wakes a sleeper with no load at all; a long sleeper stops only with stopAfterMs set', () => {
    const xs = [inst('a', { phase: 'asleep', level: 1, sinceMs: 0 }), inst('b', { phase: 'asleep', level: 1, sinceMs: 0 })];
    expect(planStandby(xs, { expected: 0, upper: 0 }, 10 * MIN).wake).toEqual(['a']);
    const awake = [inst('c'), ...xs];
    expect(planStandby(awake, { expected: 0, upper: 0 }, 10 * MIN).stop).toEqual([]);
    expect(planStandby(awake, { expected: 0, upper: 0 }, 10 * MIN, { ...STANDBY_DEFAULTS, stopAfterMs: 5 * MIN }).stop).toEqual(['a', 'b']);
  });
});

describe('standbyForecast', () => {
  const feed = (perBucket: number[], t0 = 0): StandbyWindow => {
    let w: StandbyWindow | undefined;
    perBucket.forEach((n, k) => (w = recordStandbyArrivals(w, n, t0 + k * 10_000 + 5_000)));
    return w!;
  };
  it('steady 2 req/s: expected 2, the band the Poisson walk over the horizon, wider for a longer wake', () => {
    const w = feed([20, 20, 20, 20, 20, 20]);
    const f1 = standbyForecast(w, 60_000, 1.7);
    expect(f1.expected).toBeCloseTo(2, 9);
    // sigma = sqrt(2 x 2 / 10) = 0.632; z 2; sqrt(1.7 / 10)
    expect(f1.upper).toBeCloseTo(2 + 2 * Math.sqrt(0.4) * Math.sqrt(0.17), 9);
    expect(standbyForecast(w, 60_000, 4.2).upper).toBeGreaterThan(f1.upper);
  });
  it('a rising load: the last bucket sets the base; a burst shows in the filling bucket after a second', () => {
    const rising = standbyForecast(feed([5, 10, 20, 40]), 40_000, 1.7);
    expect(rising.expected).toBeCloseTo(75 / 40, 9);
    expect(rising.upper).toBeGreaterThan(4);
    let w = feed([10, 10, 10, 10, 10, 10]);
    const calm = standbyForecast(w, 60_500, 1.7).upper;
    w = recordStandbyArrivals(w, 12, 62_000);
    const burst = standbyForecast(w, 62_000, 1.7);
    expect(burst.upper).toBeGreaterThan(6);
    expect(burst.upper).toBeGreaterThan(calm * 3);
  });
  it('the window keeps its span: old buckets drop, quiet ones count as zero', () => {
    const short = { ...STANDBY_WINDOW_DEFAULTS, windowMs: 60_000 };
    let w: StandbyWindow | undefined;
    for (let k = 0; k < 6; k++) w = recordStandbyArrivals(w, 30, k * 10_000 + 5_000, short);
    w = recordStandbyArrivals(w, 0, 125_000, short);
    expect(w.buckets.length).toBeLessThanOrEqual(7);
    expect(standbyForecast(w, 125_000, 1, short).expected).toBeCloseTo(0, 9);
    expect(standbyForecast(undefined, 0, 1)).toEqual({ expected: 0, upper: 0 });
  });

  it('a burst within the window (180 s by default) keeps the band at its rate; once past, the band falls to the quiet rate', () => {
    // a 30-req burst in one bucket, then quiet minutes at 0.1 req/s
    const quiet = (buckets: number) => feed([30, ...new Array<number>(buckets).fill(1)]);
    expect(standbyForecast(quiet(16), 170_000, 2).upper).toBeGreaterThan(3); // the burst bucket (3 req/s) 170 s old
    expect(standbyForecast(quiet(21), 220_000, 2).upper).toBeLessThan(1); // dropped
    expect(standbyForecast(quiet(16), 170_000, 2, { ...STANDBY_WINDOW_DEFAULTS, peak: false }).upper).toBeLessThan(1.5);
  });
});

describe('instanceCapacity', () => {
  it('the mix harmonic of the types\' max loads, times 1 - headroom; 0 with an infeasible type', () => {
    const max = (t: RequestType) => ({ SS: 4, LL: 1 } as Partial<Record<RequestType, number>>)[t] ?? 0;
    expect(instanceCapacity(max, 8, 1980, { SS: 1 }, 0.2)).toBeCloseTo(3.2, 9);
    expect(instanceCapacity(max, 8, 1980, { SS: 1, LL: 1 }, 0)).toBeCloseTo(1 / (0.5 / 4 + 0.5 / 1), 9);
    expect(instanceCapacity(max, 8, 1980, { SS: 1, MM: 1 }, 0)).toBe(0);
    expect(instanceCapacity(max, 8, 1980, {}, 0)).toBe(0);
  });
});
