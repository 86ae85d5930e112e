/**
 * A pool that reuses prompt prefixes keeps its largest KV caches (src/policy/pool-shards.ts): its measured reuse
 * (poolPrefixReuse, from the instances' statuses), the TP degrees it may split into (prefixAwareTps), the re-shard
 * plan that sizes the largest-TP split for the prompt work its caches do not serve (planPoolShards with
 * `prefixReuse`), and the pool machine that reads the reuse from its instances' statuses (through the simulator's
 * pool epoch, src/sim/pool-brain.ts).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { planPoolShards, poolPrefixReuse, prefixAwareTps, PREFIX_REUSE_LARGEST_TP } from '../../src/policy/pool-shards.ts';
import { poolReshardDecision, type SimPoolInstance } from '../../src/sim/pool-brain.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';

const profile = profileFor('llama3.1-70b', 'h100', 'profiles/llama3.1-70b.h100.long.json');
const fmax = Math.max(...profile.clocksMhz);
const base = { profile, gpus: 32, current: [4, 4, 4, 4, 4, 4, 4, 4], epochS: 300, gpusPerServer: 8, headroom: 0.2 };

describe('measured prefix reuse', () => {
  it('is the cache hits over the lookups summed over the instances; nothing looked up, nothing measured', () => {
    expect(poolPrefixReuse([{ prefixCacheTokens: { lookup: 1000, hit: 600 } }, { prefixCacheTokens: { lookup: 3000, hit: 400 } }, {}])).toEqual({ prefixReuse: 0.25 });
    expect(poolPrefixReuse([{}, { prefixCacheTokens: { lookup: 0, hit: 0 } }])).toEqual({});
    expect(poolPrefixReuse([])).toEqual({});
  });

  it('limits the split to the largest TP degree that fits a server and the pool, from the threshold on', () => {
    expect(prefixAwareTps(profile, 32, 8, undefined)).toBeUndefined();
    expect(prefixAwareTps(profile, 32, 8, PREFIX_REUSE_LARGEST_TP - 0.01)).toBeUndefined();
    expect(prefixAwareTps(profile, 32, 8, PREFIX_REUSE_LARGEST_TP)).toEqual([8]);
    expect(prefixAwareTps(profile, 4, 8, 0.5)).toEqual([4]);
    expect(prefixAwareTps(profile, 32, 4, 0.5)).toEqual([4]);
  });
});

describe('re-shard plan of a pool that reuses prefixes', () => {
  it('without reuse a light LM load splits into TP2 instances; with reuse the pool goes to TP8 only', () => {
    const plain = planPoolShards({ ...base, load: { LM: 0.2 } })!;
    expect(plain.target.some((c) => c.tp === 2)).toBe(true);
    const reuse = planPoolShards({ ...base, load: { LM: 0.2 }, prefixReuse: 0.4 })!;
    expect(reuse.target.every((c) => c.tp === 8)).toBe(true);
    expect(reuse.take).toBe(true);
    expect(reuse.summary).toContain('prefix reuse 40%: TP8 only');
    expect(reuse.inputs.prefixReuse).toBe(0.4);
    // below the threshold the plan is the one without reuse
    expect(planPoolShards({ ...base, load: { LM: 0.2 }, prefixReuse: 0.1 })!.target).toEqual(plain.target);
  });

  it('sizes the TP8 split for the uncached share: a load TP8 carries only with the reuse counted stays on TP8', () => {
    // 0.8 req/s of LM: priced uncached, only the TP4 split of 32 GPUs carries it within SLO
    const plain = planPoolShards({ ...base, load: { LM: 0.8 } })!;
    expect(plain.target).toEqual([{ tp: 4, count: 8 }]);
    const reuse = planPoolShards({ ...base, load: { LM: 0.8 }, prefixReuse: 0.5 })!;
    expect(reuse.target).toEqual([{ tp: 8, count: 4 }]);
    expect(reuse.inputs.feasible).toBe(true);
  });

  it('keeps the split without reuse when TP8 cannot carry the load even with its caches (overload: the most capacity)', () => {
    const plain = planPoolShards({ ...base, load: { LM: 1.6 } })!;
    const reuse = planPoolShards({ ...base, load: { LM: 1.6 }, prefixReuse: 0.25 })!;
    expect(reuse.target).toEqual(plain.target);
    expect(reuse.summary).not.toContain('prefix reuse');
  });

  it('the burst guard leaves out the TP8 instances the uncached share of the peak does not need', () => {
    const reuse = planPoolShards({ ...base, current: [8, 8, 8, 8], load: { LM: 0.1 }, peak: { LM: 0.3 }, allowIdleGpus: true, prefixReuse: 0.5 })!;
    const used = reuse.target.reduce((n, c) => n + c.tp * c.count, 0);
    expect(reuse.target.every((c) => c.tp === 8)).toBe(true);
    expect(used).toBeLessThan(32);
    expect(reuse.inputs.trimmed).toBe(true);
  });
});

describe('the pool machine reads the reuse from its instances statuses', () => {
  const cfg: PoolMachineConfig = {
    pool: 'pool-LM', holder: 'sim', profile, headroom: 0.2, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 300_000,
    initialTp: 8, moveQueueAbove: 16, retryAfterS: 1, planner: 'heuristic', overhead: { tauMs: 50, resyncS: 2, instanceStartS: 300 },
  };
  const inst = (id: string, prefix?: { lookup: number; hit: number }): SimPoolInstance => ({ id, tp: 4, ready: true, clockMhz: fmax, load: { LM: 0.03 }, prefix });
  it('TP4 instances that serve 40% of their prompt tokens from cache re-shard to TP8; without counters they keep TP2/TP4', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const cached = poolReshardDecision(cfg, ['LM'], ids.map((id) => inst(id, { lookup: 10_000, hit: 4_000 })), 8, 300_000, 32)!;
    expect(cached.take).toBe(true);
    expect(cached.target.every((c) => c.tp === 8)).toBe(true);
    const plain = poolReshardDecision(cfg, ['LM'], ids.map((id) => inst(id)), 8, 300_000, 32);
    expect(plain?.target.every((c) => c.tp === 8) ?? false).toBe(false);
  });
});
