/**
 * The simulator's pool epoch is the live pool machine's re-shard decision (src/sim/pool-brain.ts): the
 * simulated instances' statuses (TP, readiness, measured load) in, the decision the machine publishes out.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { burstWindowOf, poolReshardDecision, recordFluidPoolArrivals, recordSimPoolArrivals, type SimPoolInstance } from '../../src/sim/pool-brain.ts';
import { planPoolShards, windowPeak } from '../../src/policy/pool-shards.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import { maxLoadOf } from '../../src/model/profile.ts';

const profile = profileFor('llama2-70b', 'h100');
const fmax = Math.max(...profile.clocksMhz);
const cfg: PoolMachineConfig = {
  pool: 'pool-SM', holder: 'sim', profile, headroom: 0.2, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 300_000,
  initialTp: 8, moveQueueAbove: 16, retryAfterS: 1, planner: 'heuristic', overhead: { tauMs: 50, resyncS: 2, instanceStartS: 300 },
};
const inst = (id: string, tp: number, load: number, ready = true): SimPoolInstance => ({ id, tp, ready, clockMhz: fmax, load: load > 0 ? { SM: load } : {} });

describe('simulated pool epoch: the pool machine decides', () => {
  it('a lightly loaded pool of two TP8 servers re-shards to the layout the live planner picks for the measured load', () => {
    // 8% of a TP8's capacity each: 8xTP2 then carries the load with room (at 10%, 10% more load would take 8xTP2 to
    // its capacity, where its power rises past 2xTP8's: a near tie the pool holds, RESHARD_MARGIN)
    const light = 0.08 * maxLoadOf(profile, 'SM', 8, fmax);
    const d = poolReshardDecision(cfg, ['SM'], [inst('a', 8, light), inst('b', 8, light)], 8, 0);
    // what the live pool leader plans for the sum of its instances' loads on 16 GPUs
    const live = planPoolShards({ profile, load: { SM: 2 * light }, gpus: 16, current: [8, 8], epochS: 300, gpusPerServer: 8, headroom: 0.2, overhead: cfg.overhead });
    expect(d).toMatchObject({ take: live!.take, target: live!.target, recentLoad: [] });
    expect(d!.event.summary).toBe(`pool-SM: ${live!.take ? 'take' : 'keep'} ${live!.summary}`);
    expect(d!.take).toBe(true);
    expect(d!.target).not.toEqual([{ tp: 8, count: 2 }]);
  });

  it('a pool at its TP8 capacity keeps its layout', () => {
    const heavy = 0.75 * maxLoadOf(profile, 'SM', 8, fmax);
    const d = poolReshardDecision(cfg, ['SM'], [inst('a', 8, heavy), inst('b', 8, heavy)], 8, 0);
    expect(d?.take).toBe(false);
  });

  it('no decision while an instance is still starting (the live epoch waits for a settled pool)', () => {
    const light = 0.1 * maxLoadOf(profile, 'SM', 8, fmax);
    expect(poolReshardDecision(cfg, ['SM'], [inst('a', 8, light), inst('b', 8, light, false)], 8, 0)).toBeUndefined();
  });

  it('packs mixed TP degrees onto whole servers, so the machine sees every GPU as granted and used', () => {
    const light = 0.1 * maxLoadOf(profile, 'SM', 4, fmax);
    // 2 x TP4 + 4 x TP2 = 16 GPUs on two servers: no reconciliation start or stop, so the epoch plans
    const d = poolReshardDecision(cfg, ['SM'], [inst('a', 2, light), inst('b', 4, light), inst('c', 2, light), inst('d', 4, light), inst('e', 2, light), inst('f', 2, light)], 8, 0);
    expect(d).toBeDefined();
    expect(d!.target.reduce((n, c) => n + c.tp * c.count, 0)).toBe(16);
  });

  it('carries the machine\'s burst window and its layout across epochs: GPUs the layout left out stay granted and out', () => {
    const light = 0.1 * maxLoadOf(profile, 'SM', 8, fmax);
    // one TP8 serving on a pool of 16 GPUs (the last epoch left a server out); 600 SM requests arrived in one minute
    const counts = (sm: number) => [0, sm, 0, 0, 0, 0, 0, 0, 0]; // REQUEST_TYPES order: SS, SM, ...
    const pool = {};
    recordFluidPoolArrivals(pool, counts(600), 120_000, 1_800_000);
    const window = burstWindowOf(pool);
    expect(window).toEqual([{ atMs: 120_000, counts: { SM: 600 } }]);
    const c = { ...cfg, burstWindowMs: 1_800_000 };
    const d = poolReshardDecision(c, ['SM'], [inst('a', 8, light)], 8, 300_000, 16, pool)!;
    const live = planPoolShards({ profile, load: { SM: light }, peak: { SM: Math.max(light, windowPeak(window).SM!) }, allowIdleGpus: true, gpus: 16, current: [8], epochS: 300, gpusPerServer: 8, headroom: 0.2, overhead: cfg.overhead })!;
    // (the machine may still keep its layout: a unit that would drain the only serving instance first is never taken)
    expect(d.target).toEqual(live.target);
    expect(d.recentLoad).toEqual(window);
    expect(burstWindowOf(pool)).toEqual(window); // carried to the next epoch
    // without the burst the same pool keeps fewer GPUs in instances than with it
    const calmPool = {};
    recordFluidPoolArrivals(calmPool, counts(6), 120_000, 1_800_000);
    const calm = poolReshardDecision(c, ['SM'], [inst('a', 8, light)], 8, 300_000, 16, calmPool)!;
    const used = (t: { tp: number; count: number }[]) => t.reduce((n, x) => n + x.tp * x.count, 0);
    expect(used(calm.target)).toBeLessThan(used(d.target));
    expect(used(d.target)).toBeLessThanOrEqual(16);
  });

  it("fluid fidelity: the epoch reads the arrivals routed to the pool over its ticks, not its instances' estimates", () => {
    const light = 0.08 * maxLoadOf(profile, 'SM', 8, fmax);
    const pool = {};
    // 5-s ticks: nothing for the first minute, then 3 * light req/s of SM to the 300-s epoch (a tick with no arrival is counted empty)
    for (let t = 0; t < 300_000; t += 5000) recordFluidPoolArrivals(pool, [0, t >= 60_000 ? 3 * light * 5 : 0, 0, 0, 0, 0, 0, 0, 0], t + 5000, 0, t);
    // the instances' estimates lag at light (the fluid model's decayed offered load)
    const d = poolReshardDecision(cfg, ['SM'], [inst('a', 8, light), inst('b', 8, light)], 8, 300_000, 16, pool)!;
    expect((d.event.inputs.loadByType as { SM: number }).SM).toBeCloseTo(3 * light, 6);
    // the count restarts at the epoch: the empty tick after it is in the next epoch's span
    recordFluidPoolArrivals(pool, [], 305_000, 0, 300_000);
    for (let t = 305_000; t < 600_000; t += 5000) recordFluidPoolArrivals(pool, [0, light * 5, 0, 0, 0, 0, 0, 0, 0], t + 5000, 0, t);
    const d2 = poolReshardDecision(cfg, ['SM'], [inst('a', 8, 3 * light), inst('b', 8, 3 * light)], 8, 600_000, 16, pool)!;
    expect((d2.event.inputs.loadByType as { SM: number }).SM).toBeCloseTo((light * 295) / 300, 6);
  });

  it("step fidelity: the window gets the instance machines' admissions, minutes counted from the first ones recorded (the live machine's trafficAtMs)", () => {
    const a = { brain: { s: { admitted: {} as Record<string, number> } } };
    const pool = { instances: [a] };
    recordSimPoolArrivals(pool, 2_500, 1_800_000); // nothing admitted yet
    a.brain.s.admitted = { SM: 4 };
    recordSimPoolArrivals(pool, 3_000, 1_800_000);
    a.brain.s.admitted = { SM: 9 };
    recordSimPoolArrivals(pool, 62_500, 1_800_000); // 59.5 s after the first traffic: its first minute
    a.brain.s.admitted = { SM: 10 };
    recordSimPoolArrivals(pool, 63_000, 1_800_000);
    expect(burstWindowOf(pool)).toEqual([{ atMs: 3_000, counts: { SM: 9 } }, { atMs: 63_000, counts: { SM: 1 } }]);
  });
});
