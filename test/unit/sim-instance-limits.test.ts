/**
 * The simulated instance managers are bounded as the live config bounds the live ones (SimOptions.instanceLimits:
 * engine.maxInEngine, engine.maxQueued, the emergency section), not by the live defaults whatever the config says.
 * The twin check's cluster (deploy/twin.yaml) keeps up to 96 requests in each engine: bounded at the default 64, the
 * simulated instance left alone during the 4xTP2 -> 1xTP2 -> 2xTP2 re-shards kept a standing queue of slot-bound
 * requests (p99 TTFT about 1 s for every type) that the live one, with 96 seats, never had.
 */
import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import { instanceLimitsOf } from '../../src/sim/ledger.ts';

/** the twin check's re-shard window (test/bench/twin-reshard.bench.ts), its first 150 s of trace at speed 2. */
const twin = (instanceLimits?: SimOptions['instanceLimits']): SimOptions => ({
  policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1,
  profilePath: 'profiles/llama3.1-8b.h100.chunked.json', servers: 1, gpusPerServer: 8, instanceTp: 2, asConfigured: true,
  epochs: { clusterS: 3600, poolS: 30, instanceS: 5 }, reshardExecution: 'units', costs: { instanceStartS: 4, instanceStopS: 0.5 },
  knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
  dispatch: 'policy', predictor: 'online',
  trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 150_000, speed: 2 },
  ...(instanceLimits ? { instanceLimits } : {}),
});

/** Runs the window; per instance the most requests its machine had in the engine at once, and the bounds it ran with. */
async function run(o: SimOptions) {
  const peak = new Map<string, { running: number; maxInEngine: number; maxQueued: number }>();
  const running = new Map<string, Set<string>>();
  const r = await simulate(o, undefined, {
    onInstanceStep: (id, cfg, ev, _t, fx) => {
      const set = running.get(id) ?? new Set<string>();
      running.set(id, set);
      if (ev.type === 'finished') set.delete(ev.id);
      for (const e of fx) if (e.kind === 'start') set.add(e.id);
      const p = peak.get(id) ?? { running: 0, maxInEngine: cfg.maxInEngine, maxQueued: cfg.maxQueued };
      p.running = Math.max(p.running, set.size);
      peak.set(id, p);
    },
  });
  return { r, peak };
}

describe('simulator: the instance managers\' limits', () => {
  it("the config's maxInEngine bounds the simulated engines: 96 seats are used past 64, and 8 are never exceeded", async () => {
    const wide = await run(twin({ maxInEngine: 96, maxQueued: 512 }));
    const most = Math.max(...[...wide.peak.values()].map((p) => p.running));
    // the instance alone through the burst holds more than the default's 64 requests at once, never more than 96
    expect(most).toBeGreaterThan(64);
    expect(most).toBeLessThanOrEqual(96);
    for (const p of wide.peak.values()) expect([p.maxInEngine, p.maxQueued]).toEqual([96, 512]);

    const narrow = await run(twin({ maxInEngine: 8 }));
    for (const p of narrow.peak.values()) expect(p.running).toBeLessThanOrEqual(8);
    // with 8 seats the requests wait for a slot: the tail TTFT grows past the 96-seat run's
    const p99 = (x: Awaited<ReturnType<typeof run>>) => Math.max(...Object.values(x.r.latency.byType).map((t) => t?.ttftP99Ms ?? 0));
    expect(p99(narrow)).toBeGreaterThan(2 * p99(wide));
  }, 120_000);

  it('limits are validated: whole numbers >= 1 for the bounds, > 0 for the times', () => {
    expect(instanceLimitsOf({})).toEqual({ maxInEngine: 64, maxQueued: 256, rejectAfterMs: 5000, moveQueueAbove: 16, retryAfterS: 1 });
    expect(() => instanceLimitsOf({ maxInEngine: 0 })).toThrow(/maxInEngine/);
    expect(() => instanceLimitsOf({ maxQueued: 2.5 })).toThrow(/maxQueued/);
    expect(() => instanceLimitsOf({ rejectAfterMs: -1 })).toThrow(/rejectAfterMs/);
    expect(() => instanceLimitsOf({ moveQueueAbove: -1 })).toThrow(/moveQueueAbove/);
  });
});
