/**
 * The clock decisions the twin check compares (test/bench/twin.bench.ts) counted alike on both sides: the simulated GPU
 * takes its instance machine's set_clocks one after another, in the order they were asked for, as the live instance
 * manager's chain applies them; and the simulation counts over the span the live counters cover (SimOptions.untilMs),
 * its instances' epochs running on past its last request. The twin's clock window: deploy/replay-ci.yaml's 2 TP1
 * instances, one pool, the instance machines' clock and emergency ladder.
 */
import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';

const twin = (durationS: number, o: Partial<SimOptions> = {}): SimOptions => ({
  policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1, profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1,
  knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
  instanceLimits: { maxInEngine: 96, maxQueued: 512, rejectAfterMs: 5000, moveQueueAbove: 16, retryAfterS: 1 }, dispatch: 'policy', predictor: 'online',
  costs: { clockChangeMs: 82 },
  trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', startMs: 0, durationMs: durationS * 1000, speed: 1 },
  ...o,
});

describe('twin: the simulated clock decisions counted as the live ones', () => {
  it('each GPU takes its set_clocks in the order its machine asked for them, and ends at the clock its machine chose last', async () => {
    const asked = new Map<string, number[]>(), taken = new Map<string, number[]>(), last = new Map<string, number>();
    const push = (m: Map<string, number[]>, id: string, v: number) => void (m.get(id) ?? m.set(id, []).get(id)!).push(v);
    const r = await simulate(twin(420), undefined, {
      onInstanceStep: (id, _cfg, ev, _t, fx) => {
        for (const e of fx) if (e.kind === 'set_clock') push(asked, id, e.clockMhz);
        if (ev.type === 'clock_applied') {
          push(taken, id, ev.requestedMhz);
          last.set(id, ev.appliedMhz!);
        }
      },
    });
    expect(r.reconfigurations.clock).toBeGreaterThan(100);
    expect(asked.size).toBe(2);
    for (const [id, xs] of asked) {
      const ys = taken.get(id)!;
      // the start-up clock is applied once more as the GPU opens (InstanceBrain), before anything is asked after it
      expect(ys.slice(1)).toEqual(xs.slice(0, ys.length - 1));
      expect(ys.length - 1).toBeGreaterThanOrEqual(xs.length - 1); // at most the last one still in flight at the end
      expect(last.get(id)).toBe(xs[ys.length - 2]);
    }
  }, 120_000);

  it('counts the decisions and the energy over the span it is given, past its last request', async () => {
    const [own, spanned] = await Promise.all([simulate(twin(60)), simulate(twin(60, { untilMs: 75_000 }))]);
    expect(own.durationS).toBeLessThan(70);
    expect(spanned.durationS).toBeCloseTo(75, 6);
    // the same requests, served alike
    expect(spanned.latency.byType).toEqual(own.latency.byType);
    // the epochs after the last request lower the clocks of the idle instances: decisions the live counters see
    expect(spanned.reconfigurations.clock).toBeGreaterThan(own.reconfigurations.clock);
    // and the two idle GPUs' energy over the longer span (at least at the profile's lowest idle power, ~60 W each)
    expect(spanned.energyKWh * 3.6e6 - own.energyKWh * 3.6e6).toBeGreaterThan(2 * 60 * (75 - own.durationS) * 0.9);
  }, 120_000);
});
