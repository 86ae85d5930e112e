/**
 * The simulator's cluster manager (src/sim/cluster-brain.ts) runs the live cluster machine with the live leader's
 * timers and observation: the observe and epoch timers are the ones the machine arms at its lead ('arm_timer',
 * run on the virtual clock from the lead), and every observation is what the live leader's #observedLoad sums (policy
 * observedLoad over the instances' status loads), so the same statuses give the machine the same series of events.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { ClusterBrain } from '../../src/sim/cluster-brain.ts';
import { clusterStep, initialClusterState, observedLoad, type ClusterEvent, type ClusterMachineConfig, type ClusterMachineState } from '../../src/policy/machines/cluster.ts';
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';

const profile = profileFor('llama2-70b', 'h100');
const cfg = (statusIntervalMs: number): ClusterMachineConfig => ({
  issuer: 'sim', profile, pools: REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] })), configuredPools: false, epochMs: 600_000, statusIntervalMs,
  minEpochGapMs: 600_000, instanceStartupMs: 300_000, recentWindowMs: 600_000, headroom: 0.2, splitTps: [8], forecastMargin: 0,
});
const servers = Array.from({ length: 8 }, (_, k) => ({ id: `server-${k}`, gpus: 8 }));

/** Two instances' statuses at time t (ms): their load estimates, one of them gone silent after 30 s (past deadAfterMs). */
function statusesAt(t: number): { st: { loadByType: Partial<Record<RequestType, number>> }; seenMs: number }[] {
  const ramp = 1 + t / 60_000;
  return [
    { st: { loadByType: { LS: 0.5 * ramp, LM: 0.2 } }, seenMs: t },
    { st: { loadByType: { LS: 0.3, LL: 0.1 * ramp } }, seenMs: Math.min(t, 30_000) },
  ];
}
const live = (t: number) => observedLoad(statusesAt(t), t, 3000);

describe('simulated cluster manager: the live machine, its timers and observation', () => {
  it("observes on the machine's observe timer, each observation the live leader's sum of the instances' loads", () => {
    for (const [interval, every] of [[250, 1000], [1000, 4000]] as const) {
      const b = new ClusterBrain(cfg(interval), servers, live, () => {});
      b.start({ LS: 1 });
      b.due(60_000);
      expect(b.observations.map((o) => o.atMs)).toEqual(Array.from({ length: 60_000 / every }, (_, k) => (k + 1) * every));
      for (const o of b.observations) expect(o.observed).toEqual(live(o.atMs));
      // the silent instance leaves the sum as it leaves the live leader's
      expect(b.observations.at(-1)!.observed.LL).toBeUndefined();
    }
  });

  it("feeds the machine the events a leader's timers give it: the same statuses, the same machine state", () => {
    const c = cfg(500);
    const sim = new ClusterBrain(c, servers, live, () => {});
    sim.start({ LS: 1 });
    sim.due(1_900_000);
    // a leader driven event by event: 'lead' at 0, its timers (observe every 2 s, the epoch every 10 min), the same warm first epoch
    let s: ClusterMachineState = initialClusterState(c);
    const step = (ev: ClusterEvent, t: number) => (s = clusterStep(s, ev, t, c).state);
    step({ type: 'lead' }, 0);
    step({ type: 'epoch', why: 'start', observed: live(0), servers, forecast: { LS: 1 } }, 0);
    for (let t = 2000; t <= 1_900_000; t += 2000) {
      if (t % 600_000 === 0) step({ type: 'epoch', why: 'epoch', observed: live(t), servers }, t);
      step({ type: 'observe', observed: live(t), servers }, t);
    }
    expect(sim.s.epoch).toBe(s.epoch);
    expect(sim.s.forecaster).toEqual(s.forecaster);
    expect([...sim.s.assignments.values()].map((a) => [a.pool, a.epoch, a.grants.length])).toEqual([...s.assignments.values()].map((a) => [a.pool, a.epoch, a.grants.length]));
    // its epochs run on the machine's epoch timer: at 10, 20 and 30 min from the lead (and the start)
    expect(s.lastEpochMs).toBeGreaterThanOrEqual(1_800_000);
    expect(sim.s.lastEpochMs).toBe(s.lastEpochMs);
  });
});
