/**
 * The twin check's prediction over phase draws (test/bench/twin-phases.ts, twin-pool.ts --phases) on inputs whose
 * answers are known: the draws are seeded and in range, the point estimate is the median of the draws' pooled p99s
 * (not the p99 of every draw's samples together), its paired block-bootstrap interval is a point when every draw
 * scales the live samples alike, the draws' TTFTs land in the window's blocks of trace time, the report carries the
 * phase-median rows, and a samples file without its simulation's options is rebuilt from its spec or refused.
 */
import { describe, expect, it } from 'vitest';
import { legacySimulation, median, phaseDraws, phaseMedianDecisions, phaseMedianTypes, simulateDraws, type DrawBlocks } from '../bench/twin-phases.ts';
import { poolReport } from '../bench/twin-pool.ts';
import { reshardSpec } from '../bench/twin-reshard.bench.ts';
import { TRACE, twinSpec } from '../bench/twin.bench.ts';
import type { BlockSamples, WindowSamples } from '../bench/twin-stats.ts';
import type { SimOptions } from '../../src/sim/types.ts';

const range = (n: number, from = 1) => Array.from({ length: n }, (_, i) => from + i);

/** A window of `blocks` 10-s blocks of type LM, block b's live TTFTs `base + b + 1..10`. */
function window(startS: number, base: number, blocks = 3): WindowSamples {
  const live: Record<string, BlockSamples> = {};
  for (let b = 0; b < blocks; b++) live[b] = { ttft: range(10).map((x) => base + b * 10 + x), tbt: [] };
  return {
    group: 'g', label: `from ${startS} s`, startS, windowS: blocks * 10, speed: 1, blockS: 10,
    requests: { live: blocks * 10, sim: blocks * 10 }, energyJ: { live: 1, sim: 1 }, decisions: { live: {}, sim: {} },
    blocks: { live: { LM: live }, sim: { LM: live } },
  };
}

/** A draw of a window: its live samples scaled by `f`. */
const scaled = (w: WindowSamples, f: number): DrawBlocks => ({ LM: Object.fromEntries(Object.entries(w.blocks.live.LM!).map(([b, s]) => [b, { ttft: s.ttft.map((x) => x * f), tbt: [] }])) });

describe('phase draws', () => {
  it('are seeded, one per instance in range, at the window status interval', () => {
    const s = { epochMs: 5000, statusIntervalMs: 500, instances: 4 };
    const a = phaseDraws(8, s, 16);
    expect(a).toEqual(phaseDraws(8, s, 16));
    expect(a).not.toEqual(phaseDraws(8, s, 17));
    expect(a).toHaveLength(8);
    for (const d of a) {
      expect(d.instanceEpochPhaseMs).toHaveLength(4);
      expect(d.instanceStatusIntervalMs).toBe(500);
      for (const p of d.instanceEpochPhaseMs as number[]) expect(p > 0 && p <= 5000).toBe(true);
      for (const p of d.instanceStatusPhaseMs as number[]) expect(p >= 1 && p < 500).toBe(true);
    }
    // the draws differ from each other and between instances
    expect(new Set(a.map((d) => (d.instanceEpochPhaseMs as number[])[0])).size).toBe(8);
    expect(new Set(a[0]!.instanceEpochPhaseMs as number[]).size).toBe(4);
  });

  it('takes the median as the middle value or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 5])).toBe(5);
    expect(median([])).toBeNaN();
  });
});

describe('the median over phase draws', () => {
  const ws = [window(0, 100), window(30, 0)];
  const factors = [1.5, 0.8, 1.1];
  const draws = ws.map((w) => factors.map((f) => scaled(w, f)));

  it("is the median of each draw's pooled p99, with a point interval when every draw scales the live samples alike", () => {
    const [t] = phaseMedianTypes(ws, draws, { resamples: 300 });
    expect(t!.type).toBe('LM');
    expect(t!.n).toEqual({ live: 60, sim: 60 });
    // pooled over both windows, the p99 (the 60th of 60 samples) is window 0's largest, 130
    expect(t!.ci.live).toBe(130);
    expect(t!.perDraw.map((x) => x / 130)).toEqual(factors.map((f) => expect.closeTo(f, 9)));
    expect(t!.ci.sim).toBeCloseTo(130 * 1.1, 9);
    expect(t!.ci.ratio).toBeCloseTo(1.1, 9);
    // every resample of the same blocks on both sides gives the same ratio: the interval is the point
    expect(t!.ci.lo).toBeCloseTo(1.1, 9);
    expect(t!.ci.hi).toBeCloseTo(1.1, 9);
    // not the p99 of every draw's samples together (that is the largest draw's, 1.5)
    expect(Math.abs(t!.ci.ratio - 1.5)).toBeGreaterThan(0.3);
  });

  it('resamples the same blocks live and in every draw', () => {
    // each draw's block b the live one scaled by (1 + b / 10): a draw's p99 over resampled blocks moves with the
    // live one's only if the same blocks are drawn on both sides; the interval spans block 0's to block 2's ratio
    const one = [window(0, 0)];
    const byBlock: DrawBlocks = { LM: Object.fromEntries(Object.entries(one[0]!.blocks.live.LM!).map(([b, s]) => [b, { ttft: s.ttft.map((x) => x * (1 + Number(b) / 10)), tbt: [] }])) };
    const [t] = phaseMedianTypes(one, [[byBlock, byBlock, byBlock]], { resamples: 400 });
    expect(t!.ci.ratio).toBeCloseTo(1.2, 9);
    expect(t!.ci.lo).toBeGreaterThanOrEqual(1.1 - 1e-9);
    expect(t!.ci.hi).toBeLessThanOrEqual(1.2 + 1e-9);
    expect(t!.ci.lo).toBeLessThan(1.2 - 1e-9);
  });

  it('refuses windows with different numbers of draws', () => {
    expect(() => phaseMedianTypes(ws, [draws[0]!, draws[1]!.slice(1)])).toThrow(/same number/);
  });

  it("is reported next to the aligned simulation, judged by its point and by its interval", () => {
    const report = poolReport(ws, { resamples: 200, minP99N: 10, draws });
    expect(report).toContain('### p99 TTFT over 3 phase draws');
    // live p99 130, the aligned simulation (the live samples) 1.000, the draws 0.800-1.500, median 143, 1.100
    expect(report).toMatch(/\| LM \(60, 60\) \| 130 \| 1\.000 \| 0\.800-1\.500 \| 143 \| 1\.100 \| within \| 1\.100-1\.100 \| within \|/);
    expect(poolReport(ws, { resamples: 200, minP99N: 10, draws: ws.map((w) => [1.3, 1.2, 1.25].map((f) => scaled(w, f))) })).toMatch(/\| 1\.250 \| outside \| 1\.250-1\.250 \| outside \|/);
    expect(poolReport(ws, { resamples: 200, minP99N: 10 })).not.toContain('phase draws');
  });
});

describe('re-simulating a window', () => {
  it("runs the recorded options at each draw and keeps each draw's TTFTs by block of trace time", async () => {
    const w = { ...window(0, 0), speed: 2 };
    const sim = { options: { policy: 'dynamollm', trace: { kind: 'file', path: 'x', startMs: 0, durationMs: 30_000, speed: 2 } } as unknown as SimOptions, aligned: {}, epochMs: 5000, statusIntervalMs: 500, instances: 2 };
    const draws = phaseDraws(2, sim, 16);
    const seen: unknown[] = [];
    const out = await simulateDraws(w, sim, draws, async (opts, _p, hooks) => {
      seen.push(opts);
      // arrivals at 4 s and 6 s of simulated time: 8 s and 12 s of trace time at speed 2 (blocks 0 and 1)
      hooks.onRequest({ arrivalMs: 4000, type: 'LM', ttftMs: (opts.instanceEpochPhaseMs as number[])[0]! });
      hooks.onRequest({ arrivalMs: 6000, type: 'LS', ttftMs: 7 });
    });
    expect(seen).toEqual(draws.map((d) => ({ ...sim.options, ...d })));
    expect(out).toEqual(draws.map((d) => ({ LM: { 0: { ttft: [(d.instanceEpochPhaseMs as number[])[0]], tbt: [] } }, LS: { 1: { ttft: [7], tbt: [] } } })));
  });

  it("keeps each draw's decision counts by the live counter's kinds", async () => {
    const w = window(0, 0);
    const sim = { options: { policy: 'dynamollm' } as unknown as SimOptions, aligned: {}, epochMs: 5000, statusIntervalMs: 500, instances: 2 };
    const decisions: Record<string, number>[] = [];
    let k = 0;
    await simulateDraws(w, sim, phaseDraws(3, sim, 16), async () => ({ reconfigurations: { clock: 10 + k++, instanceStart: 1, reshard: 2, emergency: 0 } }), decisions);
    expect(decisions).toEqual([10, 11, 12].map((clock) => ({ clock, instance_start: 1, reshard: 2, emergency: 0 })));
  });

  it('rebuilds the options of a samples file written without them from its spec, or says why it cannot', () => {
    const w: WindowSamples = { ...window(720, 0), group: 'deploy/twin.yaml, 720 s of trace at speed 2', windowS: 720, speed: 2, requestPathMs: { toEngineMs: 1, startToEngineMs: 0.2, toClientMs: 0.7, hopRequests: 10 } };
    const specs = [twinSpec(), reshardSpec()];
    const s = legacySimulation(w, specs, 1, TRACE);
    expect(s.instances).toBe(4);
    expect(s.epochMs).toBe(5000);
    expect(s.options.trace).toEqual({ kind: 'file', path: TRACE, startMs: 720_000, durationMs: 720_000, speed: 2 });
    expect(s.options.costs?.clockChangeMs).toBe(1);
    expect(s.options.requestPathMs).toEqual({ toEngineMs: 1, toClientMs: 0.7, startToEngineMs: 0.2 });
    expect(() => legacySimulation(w, specs, undefined, TRACE)).toThrow(/--clock-change-ms/);
    expect(() => legacySimulation({ ...w, group: 'deploy/other.yaml, 1 s' }, specs, 1, TRACE)).toThrow(/no twin spec/);
  });
});

describe('decision counts over the phase draws', () => {
  it("sums each draw over the windows and takes the median over the draws against the live sum", () => {
    // a clock count that moves with the phase: the live phases' draw low (27 of 36), the draws around it
    const a = { ...window(0, 0), decisions: { live: { clock: 36, reshard: 0 }, sim: { clock: 27, reshard: 0 } } };
    const b = { ...window(360, 0), decisions: { live: { clock: 74, reshard: 0 }, sim: { clock: 73, reshard: 0 } } };
    const d = (clocks: number[]) => clocks.map((clock) => ({ clock, reshard: 0 }));
    const out = phaseMedianDecisions([a, b], [d([45, 36, 38, 33]), d([63, 89, 69, 58])]);
    // per draw: 108, 125, 107, 91; median (107 + 108) / 2
    expect(out).toEqual([{ kind: 'clock', live: 110, perDraw: [108, 125, 107, 91], median: 107.5 }, { kind: 'reshard', live: 0, perDraw: [0, 0, 0, 0], median: 0 }]);
    const report = poolReport([a, b], { resamples: 50, minP99N: 10, drawDecisions: [d([45, 36, 38, 33]), d([63, 89, 69, 58])] });
    expect(report).toContain('| clock | 110 | 0.909 | 0.827-1.136 | 107.5 | 0.977 | within |');
    expect(report).toContain('| reshard | 0 | - | - | 0 | - | within |');
    expect(() => phaseMedianDecisions([a, b], [d([1])])).toThrow(/one list of draws per window/);
  });
});
