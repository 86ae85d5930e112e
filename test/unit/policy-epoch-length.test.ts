/**
 * A shorter cluster epoch while the forecast is confident (src/policy/epoch-length.ts), event by event: the error of a
 * minute against the forecaster's prediction of it, the length it sets, and the cluster machine (the one the live
 * cluster manager and the simulator run) taking a short epoch that scales in, and not taking one on a miss or a rise.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { LoadForecaster } from '../../src/policy/forecast.ts';
import { epochAfterObservation, epochAfterRun, forecastError, initialEpochLength, meanError, type EpochLengthConfig } from '../../src/policy/epoch-length.ts';
import { clusterStep, initialClusterState, scalesIn, type ClusterEffect, type ClusterEvent, type ClusterMachineConfig, type ClusterMachineState } from '../../src/policy/machines/cluster.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';

const MIN = 60_000;

describe('forecast error in units of counting noise', () => {
  it('is the mean over types of (O - P)^2 / max(P, 1) in counts per sample', () => {
    // 60 predicted, 66 observed over a minute: 36 / 60
    expect(forecastError({ SS: 1 }, { SS: 1.1 }, 60)).toBeCloseTo(0.6, 12);
    // a type the forecast did not name: one request counts (1 - 0)^2 / 1; mean with an exact type
    expect(forecastError({ MM: 2 }, { MM: 2, LL: 1 / 60 }, 60)).toBeCloseTo(0.5, 12);
    // a type predicted and not seen: 30^2 / 30
    expect(forecastError({ LL: 0.5 }, {}, 60)).toBeCloseTo(30, 12);
    expect(forecastError({}, {}, 60)).toBeUndefined();
    expect(forecastError({ SS: 0 }, { SS: 0 }, 60)).toBeUndefined();
  });

  it("the forecaster's prediction is Holt's level and damped slope, before the minute is fed in", () => {
    const f = new LoadForecaster();
    expect(f.predict(0)).toEqual({});
    f.observe(0, { MM: 2 });
    expect(f.predict(MIN).MM).toBeCloseTo(2, 12);
    f.observe(MIN, { MM: 4 });
    // level 0.5 * 4 + 0.5 * 2 = 3, slope 0.2 * 1 = 0.2 per minute, damped by phi = 0.9 over one minute
    expect(f.predict(2 * MIN).MM).toBeCloseTo(3 + 0.2 * 0.9, 12);
  });
});

describe('epoch length, event by event', () => {
  const cfg: EpochLengthConfig = { fullMs: 30 * MIN, floorMs: 5 * MIN, confidentError: 4, unconfidentError: 9, samples: 3 };

  it('shortens to the floor at an epoch once a full window of errors is confident, back to full at once on a miss', () => {
    let s = initialEpochLength(cfg);
    expect(s.lenMs).toBe(30 * MIN);
    s = epochAfterObservation(s, 1, cfg);
    s = epochAfterObservation(s, 2, cfg);
    // two errors of a window of three: not yet
    expect(epochAfterRun(s, cfg).lenMs).toBe(30 * MIN);
    s = epochAfterObservation(s, undefined, cfg); // nothing to score: no sample
    expect(s.errors).toEqual([1, 2]);
    s = epochAfterObservation(s, 3, cfg);
    expect(meanError(s)).toBe(2);
    // an observation alone does not shorten it; the epoch does
    expect(s.lenMs).toBe(30 * MIN);
    s = epochAfterRun(s, cfg);
    expect(s.lenMs).toBe(5 * MIN);
    // mean (2 + 3 + 20) / 3 = 8.3: between the thresholds, the length stays, also at an epoch
    s = epochAfterObservation(s, 20, cfg);
    expect(s.lenMs).toBe(5 * MIN);
    expect(epochAfterRun(s, cfg).lenMs).toBe(5 * MIN);
    // mean (3 + 20 + 20) / 3 = 14.3 > 9: back to the full epoch on the observation
    s = epochAfterObservation(s, 20, cfg);
    expect(s.errors).toEqual([3, 20, 20]);
    expect(s.lenMs).toBe(30 * MIN);
    expect(epochAfterRun(s, cfg).lenMs).toBe(30 * MIN);
    // confident again: (20 + 1 + 1) / 3 = 7.3 stays full; (1 + 1 + 1) shortens at the next epoch
    s = epochAfterObservation(epochAfterObservation(s, 1, cfg), 1, cfg);
    expect(epochAfterRun(s, cfg).lenMs).toBe(30 * MIN);
    s = epochAfterRun(epochAfterObservation(s, 1, cfg), cfg);
    expect(s.lenMs).toBe(5 * MIN);
  });

  it('a scale-in is a plan where no pool gains a server and one loses one', () => {
    const m = (o: Record<string, number>) => new Map(Object.entries(o));
    expect(scalesIn(m({ a: 3, b: 1 }), m({ a: 2, b: 1 }))).toBe(true);
    expect(scalesIn(m({ a: 3, b: 1 }), m({ a: 2 }))).toBe(true);
    expect(scalesIn(m({ a: 3, b: 1 }), m({ a: 3, b: 1 }))).toBe(false);
    expect(scalesIn(m({ a: 3, b: 1 }), m({ a: 1, b: 2 }))).toBe(false);
    expect(scalesIn(m({ a: 3 }), m({ a: 2, c: 1 }))).toBe(false);
  });
});

describe('cluster machine with a shorter epoch when the forecast is confident', () => {
  const profile = profileFor('llama2-70b', 'h100');
  const SERVERS = [0, 1, 2, 3, 4, 5].map((i) => ({ id: `node-${i}`, gpus: 8 }));
  // the simulator's settings: a 30-min epoch and window, early re-plans at most once an epoch, no forecast margin
  const base: ClusterMachineConfig = {
    issuer: 'cm-1', profile, pools: REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] })), configuredPools: false, epochMs: 30 * MIN,
    statusIntervalMs: 500, minEpochGapMs: 30 * MIN, instanceStartupMs: 5 * MIN, recentWindowMs: 30 * MIN, forecastMargin: 0,
  };
  const adaptive: ClusterMachineConfig = { ...base, adaptiveEpoch: { floorMs: 5 * MIN, confidentError: 4, unconfidentError: 9, samples: 3 } };

  const servers = (s: ClusterMachineState) => [...(s.planServers?.values() ?? [])].reduce((a, b) => a + b, 0);
  /** Observes `load(m)` (MM, req/s) every minute from 0 to 29, with the epoch timer at minute 10; the epochs after it. */
  function run(c: ClusterMachineConfig, load: (m: number) => number): { s: ClusterMachineState; planned: number; epochs: { m: number; why: string; servers: number }[] } {
    let s = initialClusterState(c);
    let planned = 0;
    const epochs: { m: number; why: string; servers: number }[] = [];
    const step = (m: number, ev: ClusterEvent) => {
      const r = clusterStep(s, ev, m * MIN, c);
      s = r.state;
      for (const e of r.effects as ClusterEffect[]) {
        if (e.kind === 'event' && e.event === 'scale' && typeof e.decision.why === 'string' && m > 10) {
          epochs.push({ m, why: e.decision.why, servers: [...(s.planServers?.values() ?? [])].reduce((a, b) => a + b, 0) });
        }
      }
    };
    for (let m = 0; m < 30; m++) {
      step(m, { type: 'observe', observed: { MM: load(m) }, servers: SERVERS });
      if (m === 10) {
        step(m, { type: 'epoch', why: 'epoch timer', observed: { MM: load(m) }, servers: SERVERS });
        planned = servers(s);
      }
    }
    return { s, planned, epochs };
  }

  it('a load that falls as forecast: a short epoch scales in before the full epoch; without the rule none does', () => {
    // 32 req/s of MM (three servers at their best split), then -1 req/s a minute from minute 10: Holt follows it
    const load = (m: number) => (m <= 10 ? 32 : 32 - (m - 10));
    const on = run(adaptive, load);
    expect(on.s.epochLen?.lenMs).toBe(5 * MIN);
    expect(meanError(on.s.epochLen!)).toBeLessThan(4);
    const short = on.epochs.filter((e) => e.why.startsWith('short epoch'));
    expect(short.length).toBeGreaterThan(0);
    // each short epoch at least the floor after the last one, each taking a server away
    expect(short[0]!.m).toBeGreaterThanOrEqual(15);
    expect(short.every((e, k) => k === 0 || e.m - short[k - 1]!.m >= 5)).toBe(true);
    expect(short.every((e, k) => e.servers < (k === 0 ? on.planned : short[k - 1]!.servers))).toBe(true);
    expect(servers(on.s)).toBeLessThan(on.planned);
    const off = run(base, load);
    expect(off.planned).toBe(on.planned);
    expect(off.epochs).toEqual([]);
    expect(servers(off.s)).toBe(off.planned);
  });

  it('a step the forecast missed puts the full epoch back: no short epoch', () => {
    // steady, then a third of it at once: the miss is hundreds of times counting noise
    const on = run(adaptive, (m) => (m <= 10 ? 32 : 10));
    expect(on.s.epochLen?.lenMs).toBe(30 * MIN);
    expect(on.epochs).toEqual([]);
  });

  it('a rise scales out on the forecast-change and timer epochs only: a confident short epoch never adds servers', () => {
    const on = run(adaptive, (m) => (m <= 10 ? 20 : 20 + (m - 10)));
    expect(on.s.epochLen?.lenMs).toBe(5 * MIN);
    expect(on.epochs.filter((e) => e.why.startsWith('short epoch'))).toEqual([]);
  });
});
