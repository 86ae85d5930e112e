/**
 * Scale-in and re-shard with request migration: src/policy drainMigrations picks the requests a draining instance
 * hands to its peers, and the simulator (src/sim/drain-migration.ts) continues them there; measured from the pool's
 * drain decision to the instance's GPUs free.
 */
import { describe, expect, it } from 'vitest';
import { drainMigrations } from '../../src/policy/drain-migration.ts';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';

describe('drainMigrations', () => {
  it('moves the requests with more than minRemainingS of decode left at their TBT, longest first', () => {
    const reqs = [
      { id: 'a', generated: 10, remaining: 100, tbtMs: 40 }, // 4 s
      { id: 'b', generated: 0, remaining: 500, tbtMs: 40 }, // 20 s, not started
      { id: 'c', generated: 300, remaining: 20, tbtMs: 40 }, // 0.8 s
      { id: 'd', generated: 50, remaining: 0, tbtMs: 40 }, // done
      { id: 'e', generated: 5, remaining: 200, tbtMs: 80 }, // 16 s
    ];
    expect(drainMigrations(reqs, { minRemainingS: 5 })).toEqual(['b', 'e']);
    expect(drainMigrations(reqs, { minRemainingS: 1 })).toEqual(['b', 'e', 'a']);
    expect(drainMigrations(reqs, { minRemainingS: 0 })).toEqual(['b', 'e', 'a', 'c']);
    expect(drainMigrations(reqs, { minRemainingS: 60 })).toEqual([]);
  });
});

describe('simulate: a drained instance hands its requests to its peers', () => {
  // the twin's window (as sim-reshard-exec's engine stop): 4xTP2 re-sharded to 1xTP2 at t = 30 s, three stop units one
  // after the other, each draining an instance
  const run = (drainMigration?: SimOptions['drainMigration']) => simulate({
    policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1, dispatch: 'policy', predictor: 'online',
    profilePath: 'profiles/llama3.1-8b.h100.chunked.json', servers: 1, gpusPerServer: 8, instanceTp: 2, asConfigured: true,
    epochs: { clusterS: 3600, poolS: 30, instanceS: 5 }, reshardExecution: 'units', costs: { instanceStartS: 4, instanceStopS: 2 },
    knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
    trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 120_000, speed: 2 },
    ...(drainMigration ? { drainMigration } : {}),
  });

  it('the drains end sooner, every request still served once, the moved ones prefilled again on the peer', async () => {
    const drain = await run();
    const move = await run({ minRemainingS: 0 });
    const served = (r: typeof drain) => Object.values(r.latency.byType).reduce((a, x) => a + (x?.requests ?? 0), 0);
    for (const r of [drain, move]) {
      expect(r.drains?.count).toBe(3);
      expect(served(r) + r.rejected).toBe(r.requests);
    }
    expect(move.requests).toBe(drain.requests);
    expect(drain.drains!.migrated).toBe(0);
    expect(move.drains!.migrated).toBeGreaterThan(0);
    expect(move.drains!.reprefillTokens).toBeGreaterThan(0);
    // draining waits for the longest request; a move leaves the engine's exit (2 s) and what no peer took
    expect(move.drains!.meanS).toBeLessThan(drain.drains!.meanS);
    expect(move.drains!.maxS).toBeLessThan(drain.drains!.maxS);
    expect(move.drains!.p50S).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
