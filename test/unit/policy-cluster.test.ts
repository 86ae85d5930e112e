import { describe, it, expect } from 'vitest';
import { paperProfile, MEDIUM } from '../fixtures/paper-profile.ts';
import { planCluster, serversToStartAhead, planSharding, overheadTable } from '../../src/policy/index.ts';
import { POOL_ORDER, longerType, poolIdOf, serverCapacity } from '../../src/policy/cluster.ts';
import type { RequestType } from '../../protocols/request-types.ts';
import { profileFor } from '../../src/sim/index.ts';
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

  it("forwards each type's remainder only along its longerType chain, the pools intake spills it to", () => {
    // every type at 1.5 servers' worth: every pool forwards half a server of load
    const peak = Object.fromEntries(POOL_ORDER.map((t) => [t, 1.5 * ML(t)]));
    const plan = planCluster({ forecastPeak: peak, profile: p, totalServers: 100, gpusPerServer: 8 });
    for (const t of POOL_ORDER) {
      const chain: string[] = [];
      for (let x: RequestType | undefined = t; x; x = longerType(x)) chain.push(poolIdOf(x));
      const pools = plan.routing[t]!.map((r) => r.pool);
      expect(pools.every((x) => chain.includes(x)), `${t}: ${pools.join(',')} off its chain ${chain.join(',')}`).toBe(true);
    }
    // ML's remainder: the LS pool, next in the order
    const ml = planCluster({ forecastPeak: { ML: 1.5 * ML('ML'), LS: 1 * ML('LS'), LL: 1 * ML('LL') }, profile: p, totalServers: 100, gpusPerServer: 8 });
    expect(ml.routing.ML!.map((r) => r.pool)).toEqual(['pool-ML', 'pool-LS', 'pool-LL']);
    expect(ml.pools.find((x) => x.pool.id === 'pool-LS')!.forecastLoad.ML).toBeGreaterThan(0);
  });

  it('caps at the servers available and flags it', () => {
    const plan = planCluster({ forecastPeak: { SS: 10 * ML('SS'), LL: 10 * ML('LL') }, profile: p, totalServers: 12, gpusPerServer: 8 });
    expect(plan.neededServers).toBe(20);
    expect(plan.totalServers).toBe(12);
    expect(plan.capped).toBe(true);
  });

  it('serverCapacity: a server split into the TP degree of splitTps that carries the most (TP8 alone by default)', () => {
    const h = profileFor('llama2-70b', 'h100');
    const f = Math.max(...h.clocksMhz);
    expect(serverCapacity(h, 'LS', 8)).toBeCloseTo(maxLoadOf(h, 'LS', 8, f), 9);
    const best = Math.max(4 * maxLoadOf(h, 'LS', 2, f), 2 * maxLoadOf(h, 'LS', 4, f), maxLoadOf(h, 'LS', 8, f));
    expect(serverCapacity(h, 'LS', 8, [2, 4, 8])).toBeCloseTo(best, 9);
    expect(serverCapacity(h, 'LS', 8, [2, 4, 8])).toBeGreaterThan(2 * serverCapacity(h, 'LS', 8));
    // 16-GPU servers hold twice the instances
    expect(serverCapacity(h, 'LS', 16, [2, 4, 8])).toBeCloseTo(2 * best, 9);
    // planCluster sizes with it: LS at 3 TP8 servers' capacity needs one server of TP2 instances
    const plan = planCluster({ forecastPeak: { LS: 3 * maxLoadOf(h, 'LS', 8, f) }, profile: h, totalServers: 12, gpusPerServer: 8, splitTps: [2, 4, 8] });
    expect(plan.rationale.find((x) => x.type === 'LS')!.maxLoadPerServer).toBeCloseTo(best, 9);
    expect(plan.totalServers).toBeLessThan(planCluster({ forecastPeak: { LS: 3 * maxLoadOf(h, 'LS', 8, f) }, profile: h, totalServers: 12, gpusPerServer: 8 }).totalServers);
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
    // opt-in old behaviour (GPUs may stay out of any instance): one TP4 at max clock carries 2x medium MM
    // (Table II 'high' is feasible there) at less energy than TP8
    const plan = planSharding({ profile: p, loadByType: load, gpus: 8, current: [{ tp: 8, count: 1 }], epochS: 300, overhead: o, allowIdleGpus: true });
    expect(plan.feasible).toBe(true);
    expect(plan.target).toEqual([{ tp: 4, count: 1 }]);
    expect(plan.targetEnergyJ).toBeLessThan(plan.currentEnergyJ);
    expect(plan.take).toBe(plan.currentEnergyJ - plan.targetEnergyJ > plan.costJ);
    // TP8 -> TP4 is a local re-shard (Table VI: 1 tau), far cheaper than a new instance
    expect(plan.costJ).toBeLessThan(o.instanceStartS * 440);
    const shortEpoch = planSharding({ profile: p, loadByType: load, gpus: 8, current: [{ tp: 8, count: 1 }], epochS: 0.01, overhead: o, allowIdleGpus: true });
    expect(shortEpoch.take).toBe(false);
  });

  it('splits ALL of the pool GPUs into instances by default (paper: the pool splits its N GPUs)', () => {
    const use = (t: { tp: number; count: number }[]) => t.reduce((s, c) => s + c.tp * c.count, 0);
    for (const gpus of [8, 16, 24, 40]) {
      for (const load of [{}, { SS: 0.2 * MEDIUM('SS') }, { MM: 2 * MEDIUM('MM') }, { LL: 1.5 * MEDIUM('LL') }]) {
        const plan = planSharding({ profile: p, loadByType: load, gpus, current: [{ tp: 8, count: gpus / 8 }], epochS: 300, overhead: o });
        expect(use(plan.target)).toBe(gpus);
        // the old behaviour, opted in, never uses more and at low load sheds GPUs
        const old = planSharding({ profile: p, loadByType: load, gpus, current: [{ tp: 8, count: gpus / 8 }], epochS: 300, overhead: o, allowIdleGpus: true });
        expect(use(old.target)).toBeLessThanOrEqual(gpus);
        expect(old.targetEnergyJ).toBeLessThanOrEqual(plan.targetEnergyJ + 1e-6);
      }
    }
    // TP degrees that cannot cover the pool exactly: the most GPUs they can cover (12 GPUs, TP8 only -> 8)
    const t8 = planSharding({ profile: p, loadByType: { MM: 0.5 }, gpus: 12, current: [], epochS: 300, overhead: o, tps: [8] });
    expect(t8.target).toEqual([{ tp: 8, count: 1 }]);
    const mixed = planSharding({ profile: p, loadByType: { MM: 0.5 }, gpus: 12, current: [], epochS: 300, overhead: o });
    expect(use(mixed.target)).toBe(12);
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
