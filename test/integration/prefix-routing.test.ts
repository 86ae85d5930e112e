/**
 * Cache-aware routing live (issue 17): real nats-server, the cluster, pool and node actors as processes, three
 * emulated TP1 engines with automatic prefix caching, and the gateway's direct dispatch. 24 concurrent chat
 * sessions of four turns (each turn resends the conversation so far) go through a gateway with
 * `policy.prefixRouting: false`, then 24 others through one with it on; the engines' own prefix-cache
 * counters (vLLM's prefix_cache_queries/hits, in the instances' statuses) say how much of the prompts they served
 * from cache. The figures under load are test/bench/prefix-routing.bench.ts's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSessionsCluster, type SessionsCluster } from './prefix-sessions.ts';

let c: SessionsCluster;

beforeAll(async () => {
  c = await startSessionsCluster({ instances: 3 });
}, 120_000);

afterAll(async () => {
  await c?.stop();
}, 30_000);

describe('cache-aware routing through the gateway, on the engines\' prefix-cache counters', () => {
  it('sessions stick to the instance holding their history with routing on, spread without it; the engines serve more of the prompts from cache', async () => {
    const shape = { sessions: 24, turns: 4, thinkMs: 1200 };
    const off = await c.run({ routing: false, seed: 11, ...shape });
    const on = await c.run({ routing: true, seed: 12, ...shape });
    const say = JSON.stringify({ off, on });
    for (const r of [off, on]) {
      expect(r.failed, say).toBe(0);
      expect(r.requests).toBe(96);
      // every prompt token the sessions sent was looked up by an engine (the counters reached the statuses)
      expect(r.lookupTokens, say).toBeGreaterThan(96 * 500);
    }
    // the load spreads over the three instances either way
    expect(on.perInstance.filter((p) => p.requests > 0).length, say).toBeGreaterThanOrEqual(2);
    // a session's next turn goes where its history is (the gateway's chunk index names it), and the engines find it.
    // Each arm's share is read over its chance share (each turn placed at random with the arm's own spread over the
    // instances): without routing the energy-aware pick packs the load on few instances under a loaded box, which
    // raises the raw share with no stickiness (24 sessions, 72 next turns, 2-core box, three burners beside it:
    // off 0.35-0.46 at chance 0.34-0.44, on 0.68-0.72 at chance 0.33-0.34)
    expect(on.sameInstanceShare, say).toBeGreaterThanOrEqual(0.55);
    const lift = (r: typeof on) => r.sameInstanceShare - r.chanceSameShare;
    expect(lift(on) - lift(off), say).toBeGreaterThan(0.15);
    expect(on.hitShare - off.hitShare, say).toBeGreaterThan(0.03);
  }, 240_000);
});
