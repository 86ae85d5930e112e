import { describe, it, expect } from 'vitest';
import { paperProfile, MEDIUM } from '../fixtures/paper-profile.ts';
import { planCluster, serversToStartAhead, planSharding, overheadTable } from '../../src/policy/index.ts';
import { maxLoadOf } from '../../src/model/profile.ts';

const p = paperProfile();
const ML = (t: Parameters<typeof MEDIUM>[0]) => maxLoadOf(p, t, 8, 2000); // per 8-GPU server

describe('planCluster', () => {
  it('gives floor(PL/ML) servers and forwards the remainder to the next longer pool; LL rounds up', () => {
    const plan = planCluster({ forecastPeak: { SS: 2.5 * ML('SS'), LL: 1.2 * ML('LL') }, profile: p, totalServers: 40, gpusPerServer: 8 });
    const ss = plan.pools.find((x) => x.pool.id === 'pool-SS')!;
    expect(ss.servers).toBe(2);
    const r = plan.rationale.find((x) => x.type === 'SS')!;
    expect(r.forwarded).toBeCloseTo(0.5 * ML('SS'), 6);
    // 0.5 server of SS + 1.2 of LL = 1.7 -> LL gets ceil = 2 and serves part of SS
    const ll = plan.pools.find((x) => x.pool.id === 'pool-LL')!;
    expect(ll.servers).toBe(2);
    expect(ll.forecastLoad.SS).toBeCloseTo(0.5 * ML('SS'), 6);
    expect(plan.routing.SS!.map((x) => x.pool)).toEqual(['pool-SS', 'pool-LL']);
    expect(plan.totalServers).toBe(4);
    expect(plan.capped).toBe(false);
  });

  it('merges a pool whose load vanishes into the next pool that has servers', () => {
    const plan = planCluster({ forecastPeak: { SL: 0.3 * ML('SL'), MS: 1.9 * ML('MS'), LL: 1 * ML('LL') }, profile: p, totalServers: 40, gpusPerServer: 8 });
    expect(plan.pools.find((x) => x.pool.id === 'pool-SL')).toBeUndefined();
    expect(plan.merges).toContainEqual({ from: 'pool-SL', into: 'pool-MS' });
    const ms = plan.pools.find((x) => x.pool.id === 'pool-MS')!;
    expect(ms.pool.types).toEqual(['SL', 'MS']);
    expect(ms.servers).toBe(2); // 0.3 + 1.9 = 2.2 -> 2, remainder 0.2 forwarded on
    const withKnob = planCluster({ forecastPeak: { MS: 1.5 * ML('MS'), LL: 1 * ML('LL') }, profile: p, totalServers: 40, gpusPerServer: 8, minLoadToKeepPool: 2 * ML('MS') });
    expect(withKnob.merges).toContainEqual({ from: 'pool-MS', into: 'pool-MM' });
    expect(withKnob.pools.find((x) => x.pool.id === 'pool-MS')).toBeUndefined();
  });

  it('caps at the servers available and flags it', () => {
    const plan = planCluster({ forecastPeak: { SS: 10 * ML('SS'), LL: 10 * ML('LL') }, profile: p, totalServers: 12, gpusPerServer: 8 });
    expect(plan.neededServers).toBe(20);
    expect(plan.totalServers).toBe(12);
    expect(plan.capped).toBe(true);
  });

  it('serversToStartAhead starts the added servers one startup time before the epoch', () => {
    const cur = planCluster({ forecastPeak: { LL: 1 * ML('LL') }, profile: p, totalServers: 40, gpusPerServer: 8 });
    const next = planCluster({ forecastPeak: { LL: 3 * ML('LL') }, profile: p, totalServers: 40, gpusPerServer: 8 });
    expect(serversToStartAhead(cur, next, 7 * 60_000, 30 * 60_000)).toEqual([{ poolId: 'pool-LL', servers: 2, startInMs: 23 * 60_000, readyInTime: true }]);
  });
});

describe('planSharding', () => {
  const o = overheadTable();
  it('chooses the least-energy feasible split and takes it only when the gain pays the cost', () => {
    const load = { MM: 2 * MEDIUM('MM') };
    const plan = planSharding({ profile: p, loadByType: load, gpus: 8, current: [{ tp: 8, count: 1 }], epochS: 300, overhead: o });
    expect(plan.feasible).toBe(true);
    // one TP4 at max clock carries 2x medium MM (Table II 'high' is feasible there) at less energy than TP8
    expect(plan.target).toEqual([{ tp: 4, count: 1 }]);
    expect(plan.targetEnergyJ).toBeLessThan(plan.currentEnergyJ);
    expect(plan.take).toBe(plan.currentEnergyJ - plan.targetEnergyJ > plan.costJ);
    // TP8 -> TP4 is a local re-shard (Table VI: 1 tau), far cheaper than a new instance
    expect(plan.costJ).toBeLessThan(o.instanceStartS * 440);
    const shortEpoch = planSharding({ profile: p, loadByType: load, gpus: 8, current: [{ tp: 8, count: 1 }], epochS: 0.01, overhead: o });
    expect(shortEpoch.take).toBe(false);
  });

  it('takes a feasible split regardless of cost when the current one cannot carry the load, and flags overload', () => {
    const load = { LL: 1.5 * MEDIUM('LL') };
    const plan = planSharding({ profile: p, loadByType: load, gpus: 16, current: [{ tp: 8, count: 1 }], epochS: 1, overhead: o });
    expect(plan.currentFeasible).toBe(false);
    expect(plan.target).toEqual([{ tp: 8, count: 2 }]);
    expect(plan.take).toBe(true);
    const over = planSharding({ profile: p, loadByType: { LL: 5 * MEDIUM('LL') }, gpus: 16, current: [], epochS: 300, overhead: o });
    expect(over.feasible).toBe(false);
    expect(over.reason).toMatch(/overloaded/);
  });
});
