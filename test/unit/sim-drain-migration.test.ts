/**
 * Scale-in and re-shard with request migration: src/policy drainMigrations picks the requests a draining instance
 * hands to its peers, and the simulator (src/sim/drain-migration.ts) continues them there; measured from the pool's
 * drain decision to the instance's GPUs free.
 */
import { describe, expect, it } from 'vitest';
import { continuable, drainMigrations, drainingRequests, legsToMigrate } from '../../src/policy/drain-migration.ts';
import { legOf } from '../../actors/instance-manager/drain-migrate.ts';
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
    // a continuation (moved before, or migrated after a failure) stays where it is
    expect(drainMigrations(reqs.map((r) => (r.id === 'b' ? { ...r, continued: true } : r)), { minRemainingS: 5 })).toEqual(['e']);
  });

  it("src/policy legsToMigrate over the live instance manager's running legs (actors/instance-manager/drain-migrate.ts legOf): direct legs with a first token that the gateway can continue, their tokens counted at their TBT (actors/instance-manager/drain-migrate.ts)", () => {
    const running = [
      { req: { id: 'd1', direct: true, maxTokens: 300 }, firstTokenMs: 1000, tbtSum: 0, tbtN: 0 }, // 2 s at 50 ms: 41 tokens
      { req: { id: 'd2', direct: true, maxTokens: 300 }, tbtSum: 0, tbtN: 0 }, // no first token yet: left
      { req: { id: 'r1', maxTokens: 300 }, firstTokenMs: 1000, tbtSum: 0, tbtN: 0 }, // relayed: left
      { req: { id: 'd3', direct: true, maxTokens: 300, migration: 1 }, firstTokenMs: 1000, tbtSum: 0, tbtN: 0 }, // a continuation
      { req: { id: 'd4', direct: true, maxTokens: 60 }, firstTokenMs: 1000, tbtSum: 0, tbtN: 0 }, // 19 left: 0.95 s
      { req: { id: 'd5', direct: true, maxTokens: 300, prompt: [1, 2, 3] }, firstTokenMs: 1000, tbtSum: 0, tbtN: 0 }, // token ids: no text to extend
      { req: { id: 'd6', direct: true, maxTokens: 300, prompt: 'hi', params: { echo: true } }, firstTokenMs: 1000, tbtSum: 0, tbtN: 0 }, // echo
    ];
    const legs = running.map(legOf);
    expect(drainingRequests(legs, 3000, [40, 60])).toEqual([
      { id: 'd1', generated: 41, remaining: 259, tbtMs: 50, continued: false },
      { id: 'd3', generated: 41, remaining: 259, tbtMs: 50, continued: true },
      { id: 'd4', generated: 41, remaining: 19, tbtMs: 50, continued: false },
    ]);
    expect(legsToMigrate(legs, 3000, [40, 60], { minRemainingS: 5 })).toEqual(['d1']);
    expect(continuable({ prompt: 'a' })).toBe(true);
    expect(continuable({ messages: [] })).toBe(true);
    expect(continuable({ prompt: [1, 2] })).toBe(false);
    expect(continuable({ prompt: 'a', params: { echo: true } })).toBe(false);
    // no TBT sample yet: the TBT SLO (100 ms), 21 tokens after 2 s
    expect(drainingRequests(legs, 3000, [])[0]).toEqual({ id: 'd1', generated: 21, remaining: 279, tbtMs: 100, continued: false });
  });
});

describe('simulate: a drained instance hands its requests to its peers', () => {
  // the twin's window (with the twin's engine stop): 4xTP2 re-sharded to 1xTP2 at t = 30 s, three stop units one
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
