import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import { profileFor } from '../../src/sim/index.ts';
import { leastLoadedBusyFraction } from '../../src/sim/fluid.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base: Omit<SimOptions, 'policy' | 'fidelity'> = {
  model: 'llama2-70b', gpu: 'h100', servers: 12,
  trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 5 * 60_000 },
};

describe('simulator', () => {
  // Issue 7: within 5%. Measured (conv trace, single-pool, rate 1): 15 min step 10.15 vs fluid 9.95 kWh (-2.0%),
  // whole hour -0.7%; at rate auto x0.678, whole hour +0.1%. Was -7.3% / -11.2%: fluid read each instance's
  // busy fraction as independent Poisson streams (1 - exp(-x)), but least-outstanding dispatch sends arrivals
  // to empty instances first (core busy 97% vs 89%: src/sim/fluid.ts), and read types past their grid top at
  // the top cell's power (src/sim/decide.ts typePowerW).
  it('step and fluid agree on energy within 5% (single-pool, first 15 minutes of the conversation trace)', async () => {
    const w = { ...base, trace: { ...base.trace, durationMs: 15 * 60_000 } } as typeof base;
    const s = await simulate({ ...w, policy: 'single-pool', fidelity: 'step' });
    const f = await simulate({ ...w, policy: 'single-pool', fidelity: 'fluid' });
    expect(s.requests).toBe(f.requests);
    expect(s.energySource.kind).toBe('modelled');
    expect(Math.abs(f.energyKWh / s.energyKWh - 1)).toBeLessThan(0.05);
  }, 60_000);

  // The whole hour, as documented (docs/SIMULATION.md, --rate-scale auto): the policies whose dispatch fluid models
  // in the mean (one least-loaded pool; pools sized per epoch; TP per epoch) agree within 5%. Not asserted:
  // multi-pool / scale-freq (-10%: step's per-request EWMA dispatch gate), dynamollm (+6.6%) and oracle (-7.7%):
  // energy-ordered dispatch concentrates load and shot noise lifts clocks, which fluid's mean shares do not see.
  it.each(['single-pool', 'scale-inst', 'scale-shard'] as const)('step and fluid agree on energy within 5% on the conversation hour: %s', async (policy) => {
    const w = { model: 'llama2-70b', gpu: 'h100', servers: 12, rateScale: 'auto', trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv' } } as const;
    const s = await simulate({ ...w, policy, fidelity: 'step' });
    const f = await simulate({ ...w, policy, fidelity: 'fluid' });
    expect(s.durationS).toBeGreaterThan(3500);
    expect(s.requests).toBe(f.requests);
    expect(Math.abs(f.energyKWh / s.energyKWh - 1)).toBeLessThan(0.05);
  }, 120_000);

  it('least-outstanding dispatch keeps instances busier than independent streams (fluid busy fraction)', () => {
    // one instance: the profile's own M/G/inf busy fraction
    expect(leastLoadedBusyFraction(1, 2.26)).toBeCloseTo(1 - Math.exp(-2.26), 12);
    // 12 TP8 instances at the conversation hour's occupancy: the batching core measured 98.7% busy (Poisson
    // times) and 97.3% (trace times) under least-outstanding dispatch, 88.5% under a random split
    const b12 = leastLoadedBusyFraction(12, 2.26);
    expect(b12).toBeGreaterThan(0.97);
    expect(b12).toBeLessThanOrEqual(1);
    // never below the independent split, growing with the pool size at a fixed per-instance occupancy
    for (const x of [0.1, 0.5, 1, 3]) {
      expect(leastLoadedBusyFraction(4, x)).toBeGreaterThanOrEqual(1 - Math.exp(-x));
      expect(leastLoadedBusyFraction(24, x)).toBeGreaterThanOrEqual(leastLoadedBusyFraction(4, x) - 0.005);
    }
    // at most every instance busy, at least the pool's load spread one request per instance (x < 1)
    expect(leastLoadedBusyFraction(24, 0.3)).toBeLessThan(0.32);
  });

  it('fluid keeps the instance load estimate the clock reads at the offered rate (no double decay)', async () => {
    // scale-freq on a constant-rate trace: each fluid instance's clock is the instance machine's rule on its share
    // of the pool's arrivals over the epoch (epochLoad, decideClock); a clock read at a fraction of the offered load
    // (an EWMA decayed twice: ~62% of it) met the SLO for 72.8% of LM requests
    const r = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 4, policy: 'scale-freq', fidelity: 'fluid', rateScale: 'auto', trace: { kind: 'synth', shape: 'poisson', durationS: 1800, meanRps: 2, seed: 3 } });
    expect(r.reconfigurations.clock).toBeGreaterThan(0);
    for (const [t, a] of Object.entries(r.sloAttainment)) if ((r.latency.byType[t as keyof typeof r.latency.byType]?.requests ?? 0) >= 100) expect(a, t).toBeGreaterThan(0.95);
  }, 60_000);

  it('accounts every request and charges reconfigurations for dynamic policies', async () => {
    const r = await simulate({ ...base, policy: 'scale-freq', fidelity: 'step' });
    let done = 0;
    for (const s of Object.values(r.latency.byType)) done += s!.requests;
    expect(done + r.rejected + r.unservable).toBe(r.requests);
    expect(r.reconfigurations.clock).toBeGreaterThan(0);
    expect(r.energyKWh).toBeGreaterThan(0);
  }, 60_000);

  it('an instance raises its clock before prefilling a prompt its clock would miss the TTFT SLO on (coding trace)', async () => {
    // The long class spans 1k-8k input tokens; its profile cell is the mean (~3k). Without the prefill floor a
    // 7k-token prompt reaching an idle TP2 instance at 800 MHz prefilled in 2.7 s against the 2 s SLO: first 10
    // min of the coding trace, LS TTFT p99 2720 ms, attainment 95.6%. With it: p99 1177 ms, attainment 97.96%
    // with the clock's rise read as (N - 1) / t (riseRate; 1061 ms and 98.40% with N / t, whose higher clocks also
    // cut TBT misses): the floor keeps TTFT in its SLO, and attainment stays clear of the floorless 95.6%.
    const r = await simulate({
      model: 'llama2-70b', gpu: 'h100', servers: 12, policy: 'dynamollm', fidelity: 'step', rateScale: 'auto',
      profilePath: 'profiles/llama2-70b.h100.code.json',
      trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_code.csv', durationMs: 10 * 60_000 },
    });
    const ls = r.latency.byType.LS!;
    expect(ls.requests).toBeGreaterThan(500);
    expect(ls.ttftP99Ms).toBeLessThanOrEqual(2000);
    expect(r.sloAttainment.LS).toBeGreaterThan(0.975);
  }, 60_000);

  it('prints beside each run the paper figures that apply to it (Fig. 7 for the conversation hour, -47%/-56% for a week)', async () => {
    const { paperFiguresFor } = await import('../../src/sim/types.ts');
    expect(paperFiguresFor({ kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv' }, 3600).figures).toMatchObject({ 'multi-pool': 20, dynamollm: -35 });
    expect(paperFiguresFor({ kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_code.csv' }, 3600).figures).toEqual({});
    expect(paperFiguresFor({ kind: 'synth', shape: 'conversation', durationS: 7 * 86400, meanRps: 5, seed: 1 }, 7 * 86400).figures).toEqual({ dynamollm: -47 });
    expect(paperFiguresFor({ kind: 'synth', shape: 'coding', durationS: 7 * 86400, meanRps: 5, seed: 1 }, 7 * 86400).figures).toEqual({ dynamollm: -56 });
    expect(paperFiguresFor({ kind: 'synth', shape: 'conversation', durationS: 86400, meanRps: 5, seed: 1 }, 86400).figures).toEqual({});
  });

  it('step batches with the scheduler budget the profile records (Profile.scheduler)', async () => {
    // the same profile with vLLM's max_num_seqs at 2: the core may run only 2 requests at once, so requests queue
    // and TTFT grows; without the field the core's default (256) applies
    const p = profileFor('llama2-70b', 'h100');
    const dir = mkdtempSync(join(tmpdir(), 'sim-sched-'));
    try {
      const narrow = join(dir, 'narrow.json');
      writeFileSync(narrow, JSON.stringify({ ...p, scheduler: { maxNumBatchedTokens: 8192, maxNumSeqs: 2 } }));
      const wide = join(dir, 'wide.json');
      writeFileSync(wide, JSON.stringify({ ...p, scheduler: { maxNumBatchedTokens: 8192, maxNumSeqs: 256 } }));
      const o = { model: 'llama2-70b', gpu: 'h100', servers: 1, policy: 'single-pool', fidelity: 'step', trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', limit: 60 } } as const;
      const def = await simulate({ ...o });
      const w = await simulate({ ...o, profilePath: wide });
      const n = await simulate({ ...o, profilePath: narrow });
      // 256 is the core's default: the explicit budget changes nothing
      expect(w.latency.ttftP99Ms).toBe(def.latency.ttftP99Ms);
      expect(w.energyKWh).toBeCloseTo(def.energyKWh, 12);
      // 60 requests over ~12 s on one instance, 2 at a time: most wait for a slot
      expect(n.latency.ttftP50Ms).toBeGreaterThan(5 * w.latency.ttftP50Ms);
      expect(n.latency.tbtP50Ms).toBeLessThan(w.latency.tbtP50Ms);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
