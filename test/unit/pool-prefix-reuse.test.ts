/**
 * A pool that reuses prompt prefixes keeps its largest KV caches (src/policy/pool-shards.ts): its measured reuse
 * (poolPrefixReuse, from the instances' statuses), the TP degrees it may split into (prefixAwareTps), the re-shard
 * plan that sizes the largest-TP split for the prompt work its caches do not serve (planPoolShards with
 * `prefixReuse`), and the pool machine that reads the reuse from its instances' statuses (through the simulator's
 * pool level, src/sim/pool-leader.ts).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { planPoolShards, poolPrefixReuse, prefixAwareTps, PREFIX_REUSE_LARGEST_TP } from '../../src/policy/pool-shards.ts';
import { epochDecision, type PoolView } from '../helpers/sim-pool.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { InstanceStatus, type PoolAssignment } from '../../protocols/index.ts';

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
  const inst = (id: string, prefix?: { lookup: number; hit: number }): PoolView => ({ id, tp: 4, ready: true, clockMhz: fmax, load: { LM: 0.03 }, prefix });
  it('TP4 instances that serve 40% of their prompt tokens from cache re-shard to TP8; without counters they keep TP2/TP4', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const cached = epochDecision(cfg, ['LM'], ids.map((id) => inst(id, { lookup: 10_000, hit: 4_000 })), 8, 300_000, 32)!;
    expect(cached.take).toBe(true);
    expect(cached.target.every((c) => c.tp === 8)).toBe(true);
    const plain = epochDecision(cfg, ['LM'], ids.map((id) => inst(id)), 8, 300_000, 32);
    expect(plain?.target.every((c) => c.tp === 8) ?? false).toBe(false);
  });

  it("the live pool leader decides on the statuses the instance managers publish as the simulator's pool epoch does on the same engine counters", () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const counts = ids.map((_, k) => ({ lookup: 10_000 + 1000 * k, hit: 3_000 + 700 * k }));
    const now = 300_000;
    const sim = epochDecision(cfg, ['LM'], ids.map((id, k) => inst(id, counts[k])), 8, now, 32)!;
    // the live leader: each instance's status as the instance manager publishes it (through the wire codec:
    // validated), its stored assignment (four 8-GPU servers, which those instances fill), then its re-shard epoch timer
    const assignment: PoolAssignment = {
      v: 1, pool: cfg.pool, types: ['LM'], epoch: 3, state: 'active', issuedBy: 'cm-0', atMs: 1000,
      grants: [0, 1, 2, 3].map((n) => ({ node: `n${n}`, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] })),
    };
    let s: PoolMachineState = initialPoolState(['LM']);
    const step = (ev: Parameters<typeof poolStep>[1]): PoolEffect[] => {
      const r = poolStep(s, ev, now, cfg);
      s = r.state;
      return r.effects;
    };
    ids.forEach((id, k) => {
      const published: InstanceStatus = {
        v: 1, id: `pool-LM-${id}`, pool: cfg.pool, node: `n${k >> 1}`, tp: 4, gpuIds: k % 2 ? [4, 5, 6, 7] : [0, 1, 2, 3], state: 'ready', startedMs: 5000 + k, seq: 40 + k, sentMs: now - 100,
        clockMhz: fmax, maxClockMhz: fmax, queued: 0, running: 0, queuedIds: [], runningIds: [], runningSeqs: [], loadByType: { LM: 0.03 }, admittedByType: { LM: 9 },
        pendingPrefillTokens: 0, prefixCacheTokens: counts[k],
      };
      step({ type: 'status', status: InstanceStatus.decode(InstanceStatus.encode(published)) });
    });
    step({ type: 'lead', stored: assignment });
    const ev = step({ type: 'reshard_epoch' }).find((e): e is Extract<PoolEffect, { kind: 'event' }> => e.kind === 'event' && e.event === 'reshard');
    expect(ev).toBeDefined();
    const lookup = counts.reduce((n, c) => n + c.lookup, 0), hit = counts.reduce((n, c) => n + c.hit, 0);
    expect(ev!.inputs.prefixReuse).toBeCloseTo(hit / lookup, 12);
    expect({ take: ev!.decision.take, target: ev!.decision.target }).toEqual({ take: sim.take, target: sim.target });
    expect(sim.target.every((c) => c.tp === 8)).toBe(true);
  });
});
