/**
 * The engine twin (test/bench/engine-twin.ts): one emulated engine in real time against the simulator's step model
 * of one instance, the same requests at the same sends. Both run the same batching core, so on the engine's own
 * timeline each request's TTFT and token gaps must equal the simulation's; what the real-time driver could add (when
 * it forms a step, which requests join it) shows as a request one step (10-20 ms) early or late, and every step after
 * it shifted. Wall-clock latencies on this shared machine are not asserted (benchmarks report them).
 */
import { describe, expect, it } from 'vitest';
import { engineTwin } from '../bench/engine-twin.ts';

describe('engine twin: emulated engine against the simulator on one instance', () => {
  it('per request, TTFT and mean TBT on the engine timeline agree with the simulation', async () => {
    // 60 s of the conversation trace at speed 2 (30 s wall, 191 requests): bursts that queue behind running decodes
    const { report, pairs } = await engineTwin({ trace: 'data/traces/AzureLLMInferenceTrace_conv.csv', profile: 'profiles/llama3.1-8b.h100.tp1.json', startS: 0, durationS: 60, speed: 2, tp: 1, timeScale: 1, live: 'driver' });
    expect(report.requests).toBeGreaterThan(100);
    expect(report.paired).toBe(report.requests);
    // the comparison holds while the driver kept its timeline: a process starved past its lag bound (250 ms) skips ahead
    expect(report.driverPulls, 'the emulator process was starved past the driver\'s lag bound: rerun on a less loaded host').toEqual({ count: 0, ms: 0 });
    const ttftOff = pairs.filter((x) => !(Math.abs(x.sim.ttftMs - x.live.coreTtftMs!) <= 0.01));
    const tbtOff = pairs.filter((x) => !(Math.abs(x.sim.tbtMeanMs - x.live.coreTbtMeanMs!) <= 0.001));
    const show = (xs: typeof pairs) => `${xs.length} of ${pairs.length}: ` + xs.slice(0, 6).map((x) => `${x.arrivalMs.toFixed(1)} ms: live ${x.live.coreTtftMs!.toFixed(3)} / ${x.live.coreTbtMeanMs!.toFixed(3)}, sim ${x.sim.ttftMs.toFixed(3)} / ${x.sim.tbtMeanMs.toFixed(3)}`).join('; ');
    // the same core on the same arrivals: every step alike, so every request's first token and gaps alike (to rounding)
    expect(ttftOff, `TTFT off by > 0.01 ms: ${show(ttftOff)}`).toEqual([]);
    expect(tbtOff, `mean TBT off by > 0.001 ms: ${show(tbtOff)}`).toEqual([]);
  }, 120_000);
});
