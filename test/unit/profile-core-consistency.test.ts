/**
 * The generated profile (src/model/generate.ts, analytic) and the batching core the emulator and simulator run
 * (src/engine/core.ts) describe the same engine: the core, fed Poisson arrivals on a virtual clock, reproduces
 * the generator's p50 TTFT, p50 TBT and average instance power within 10% on cells across models, TP degrees,
 * clocks, request types and loads inside the SLO region. Catches drift between the two (e.g. the scheduler budget:
 * both use DEFAULT_SCHEDULER). Virtual time, no wall clock: runs in about a second.
 */
import { describe, expect, it } from 'vitest';
import { BatchingCore } from '../../src/engine/core.ts';
import { createPerfModel, DEFAULT_REQUEST_TYPES, DEFAULT_SCHEDULER, steadyState } from '../../src/model/index.ts';
import { percentile, poissonArrivals, rng } from '../../src/telemetry/profiler.ts';

/** Runs the core on a virtual clock: Poisson arrivals for durS seconds, statistics after a 10% warm-up. */
function runCore(model: string, tp: number, clockMhz: number, type: string, load: number, durS: number, seed = 7, maxNumBatchedTokens?: number) {
  const perf = createPerfModel(model, 'h100');
  const t = DEFAULT_REQUEST_TYPES.find((x) => x.type === type)!;
  const core = new BatchingCore({ perf, tp, clockMhz, maxNumBatchedTokens });
  const arrivals = poissonArrivals(load, durS, rng(seed)).map((s) => s * 1000);
  const endMs = durS * 1000, warmMs = endMs * 0.1;
  const arrivedAt = new Map<string, number>(), lastAt = new Map<string, number>();
  const ttft: number[] = [], tbt: number[] = [];
  let i = 0, now = 0, e0 = NaN, warmFrom = 0;
  while (now < endMs && (i < arrivals.length || core.hasWork())) {
    if (!core.hasWork()) now = Math.max(now, arrivals[i]!); // idle until the next arrival
    for (; i < arrivals.length && arrivals[i]! <= now; i++) {
      core.submit({ id: `r${i}`, arrivalMs: arrivals[i]!, promptTokens: t.inputTokens, outputTokens: t.outputTokens });
      arrivedAt.set(`r${i}`, arrivals[i]!);
    }
    if (Number.isNaN(e0) && now >= warmMs) {
      core.idleUntil(now);
      e0 = core.stats().energyJ;
      warmFrom = now;
    }
    const r = core.step(now);
    if (!r) continue;
    now = r.startMs + r.durationMs;
    for (const ev of r.events) {
      const a = arrivedAt.get(ev.id)!;
      if (ev.kind === 'first_token') {
        if (a >= warmMs) ttft.push(ev.atMs - a);
        lastAt.set(ev.id, ev.atMs);
      } else if (ev.kind === 'token') {
        if (a >= warmMs) tbt.push(ev.atMs - lastAt.get(ev.id)!);
        lastAt.set(ev.id, ev.atMs);
      }
    }
  }
  core.idleUntil(Math.max(now, endMs));
  const spanS = (Math.max(now, endMs) - warmFrom) / 1000;
  return { ttftP50: percentile(ttft, 50), tbtP50: percentile(tbt, 50), tbtP99: percentile(tbt, 99), powerW: (core.stats().energyJ - e0) / spanS, requests: ttft.length };
}
// (model, tp, clock, type, load req/s): short and long prompts, short and long outputs, TP1-8, light to heavy load
const CELLS: [string, number, number, string, number][] = [
  ['llama3.1-8b', 1, 1200, 'SM', 2],
  ['llama3.1-8b', 1, 1980, 'MS', 8],
  ['llama2-70b', 2, 1200, 'LS', 0.5],
  ['llama2-70b', 4, 1200, 'MM', 3],
  ['llama2-70b', 4, 1980, 'SS', 10],
  ['llama2-70b', 8, 1600, 'LL', 2],
  ['llama3.1-70b', 4, 1200, 'ML', 1],
];

describe('generated profile vs the batching core (virtual time)', () => {
  it('uses the core default scheduler budget', () => {
    const core = new BatchingCore({ perf: createPerfModel('llama3.1-8b', 'h100'), tp: 1, clockMhz: 1980 });
    expect(core.maxNumBatchedTokens).toBe(DEFAULT_SCHEDULER.maxNumBatchedTokens);
    expect(core.maxNumSeqs).toBe(DEFAULT_SCHEDULER.maxNumSeqs);
  });
  it.each(CELLS)('%s TP%i %i MHz %s at %f req/s: p50 TTFT/TBT and power within 10 percent', (model, tp, clock, type, load) => {
    const perf = createPerfModel(model, 'h100');
    const t = DEFAULT_REQUEST_TYPES.find((x) => x.type === type)!;
    const s = steadyState(perf, t, tp, clock, load);
    expect(s.saturated).toBe(false);
    const sim = runCore(model, tp, clock, type, load, 400);
    expect(sim.requests).toBeGreaterThan(100);
    const rows = [
      ['ttftP50', s.ttftP50Ms, sim.ttftP50],
      ['tbtP50', s.tbtP50Ms, sim.tbtP50],
      ['powerW', s.gpuPowerW * tp, sim.powerW],
    ] as const;
    const misses = rows.filter(([, m, c]) => Math.abs(c / m - 1) > 0.1).map(([k, m, c]) => `${k}: model ${m.toFixed(1)} core ${c.toFixed(1)}`);
    expect(misses).toEqual([]);
  });

  // chunked prefill: prompts longer than the step budget are prefilled over several steps in both
  it.each([
    ['llama2-70b', 4, 1600, 'LS', 0.6],
    ['llama2-70b', 8, 1200, 'LM', 1],
  ] as [string, number, number, string, number][])('budget 512: %s TP%i %i MHz %s at %f req/s agrees, and chunks bound the TBT tail', (model, tp, clock, type, load) => {
    const perf = createPerfModel(model, 'h100');
    const t = DEFAULT_REQUEST_TYPES.find((x) => x.type === type)!;
    expect(t.inputTokens).toBeGreaterThan(1024); // several chunks per prompt
    const chunked = steadyState(perf, t, tp, clock, load, { maxNumBatchedTokens: 512 });
    const whole = steadyState(perf, t, tp, clock, load, { maxNumBatchedTokens: 8192 });
    expect(chunked.saturated).toBe(false);
    // a decode never waits for a whole long prompt, only for one chunk; the prompt itself takes longer
    expect(chunked.tbtP99Ms).toBeLessThan(0.6 * whole.tbtP99Ms);
    expect(chunked.ttftP50Ms).toBeGreaterThan(whole.ttftP50Ms);
    const sim = runCore(model, tp, clock, type, load, 400, 7, 512);
    expect(sim.requests).toBeGreaterThan(150);
    const rows = [
      ['ttftP50', chunked.ttftP50Ms, sim.ttftP50],
      ['tbtP50', chunked.tbtP50Ms, sim.tbtP50],
      ['tbtP99', chunked.tbtP99Ms, sim.tbtP99],
      ['powerW', chunked.gpuPowerW * tp, sim.powerW],
    ] as const;
    const misses = rows.filter(([, m, c]) => Math.abs(c / m - 1) > 0.1).map(([k, m, c]) => `${k}: model ${m.toFixed(1)} core ${c.toFixed(1)}`);
    expect(misses).toEqual([]);
  });
});
