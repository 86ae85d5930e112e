/**
 * Input classes whose pools reuse prompt prefixes get one pool (src/policy/cluster.ts sharedPrefixClasses and
 * planCluster `sharedPrefixClasses`); the cluster machine takes the pools' measured reuse with the epoch event and
 * plans with it; the simulator hands it each type's pool's reuse (src/sim/cluster-brain.ts prefixReuseByType).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { planCluster, sharedPrefixClasses } from '../../src/policy/cluster.ts';
import { PREFIX_REUSE_LARGEST_TP } from '../../src/policy/pool-shards.ts';
import { clusterStep, initialClusterState, type ClusterEffect, type ClusterMachineConfig } from '../../src/policy/machines/cluster.ts';
import { prefixReuseByType } from '../../src/sim/cluster-brain.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';

const profile = profileFor('llama3.1-70b', 'h100', 'profiles/llama3.1-70b.h100.long.json');
const forecastPeak = { LS: 0.1, LM: 0.5, LL: 0.4 };
const base = { profile, totalServers: 12, gpusPerServer: 8, forecastPeak, splitTps: [2, 4, 8] as const };
const poolsOf = (r: ReturnType<typeof planCluster>) => r.pools.map((p) => [p.pool.id, [...p.pool.types].sort()]);

describe('shared-prefix input classes', () => {
  it('are the input classes of types whose pool reuses at least PREFIX_REUSE_LARGEST_TP of its prompt tokens', () => {
    expect(sharedPrefixClasses({ LS: 0.5, LM: 0.1, MM: PREFIX_REUSE_LARGEST_TP - 0.01 })).toEqual(['L']);
    expect(sharedPrefixClasses({ MM: PREFIX_REUSE_LARGEST_TP, LL: 0.3 })).toEqual(['L', 'M']);
    expect(sharedPrefixClasses({})).toEqual([]);
  });

  it("merge the class's shorter-output types into the pool of its longest outputs; other classes keep their pools", () => {
    const plain = planCluster(base);
    expect(plain.pools.map((p) => p.pool.id)).toContain('pool-LM');
    const shared = planCluster({ ...base, sharedPrefixClasses: ['L'] });
    const l = shared.pools.filter((p) => p.pool.types.some((t) => t[0] === 'L'));
    expect(l.map((p) => p.pool.id)).toEqual(['pool-LL']);
    expect([...l[0]!.pool.types].sort()).toEqual(['LL', 'LM', 'LS']);
    expect(shared.routing.LS).toEqual([{ pool: 'pool-LL', share: 1 }]);
    expect(shared.routing.LM).toEqual([{ pool: 'pool-LL', share: 1 }]);
    // another class shared changes nothing for the L types
    expect(poolsOf(planCluster({ ...base, sharedPrefixClasses: ['M'] }))).toEqual(poolsOf(plain));
  });
});

describe('cluster machine with the pools measured reuse', () => {
  const cfg: ClusterMachineConfig = {
    issuer: 'cm-1', profile, pools: REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] })), configuredPools: false, epochMs: 1_800_000, statusIntervalMs: 500,
    minEpochGapMs: 60_000, instanceStartupMs: 300_000, recentWindowMs: 300_000, splitTps: [2, 4, 8],
  };
  const servers = Array.from({ length: 12 }, (_, k) => ({ id: `node-${k}`, gpus: 8 }));
  const activePools = (fx: ClusterEffect[]) => fx.flatMap((e) => (e.kind === 'assign' && e.assignment.state === 'active' ? [e.assignment.pool] : [])).sort();
  it('an epoch that reports L pools reusing prefixes plans one L pool; without reuse, the L types split over pools', () => {
    const s0 = initialClusterState(cfg);
    const plain = clusterStep(s0, { type: 'epoch', why: 'start', observed: {}, servers, forecast: forecastPeak }, 0, cfg);
    expect(activePools(plain.effects)).toContain('pool-LM');
    expect(activePools(plain.effects).length).toBeGreaterThan(1);
    const shared = clusterStep(s0, { type: 'epoch', why: 'start', observed: {}, servers, forecast: forecastPeak, prefixReuse: { LS: 0.5, LM: 0.5, LL: 0.5 } }, 0, cfg);
    expect(shared.state.sharedClasses).toEqual(['L']);
    expect(activePools(shared.effects)).toEqual(['pool-LL']);
  });

  it("the simulator's per-type reuse sums each pool's engines' lookups and hits", () => {
    const core = (lookup: number, hit: number) => ({ prefixCacheTokens: () => ({ lookup, hit }) });
    expect(prefixReuseByType([
      { types: ['LS', 'LM'], instances: [{ core: core(1000, 300) }, { core: core(1000, 500) }, {}] },
      { types: ['LL'], instances: [{ core: { prefixCacheTokens: () => undefined } }] },
    ])).toEqual({ LS: 0.4, LM: 0.4 });
  });
});
