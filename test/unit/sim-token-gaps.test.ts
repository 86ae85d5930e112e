/**
 * The simulator's per-request TBT tap (`simulate`'s taps.onTokenGap, step fidelity; the pooled twin check's simulated
 * TBT samples): each served request's tokens after its first give one gap each, with the request's arrival and true
 * type, so a type's gaps number its requests' output tokens less one each, and their p99 is the simulator's own p99 TBT
 * of the type (its histogram's, to a bucket).
 */
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import { readTrace } from '../../src/sim/trace.ts';
import { classifyLengths } from '../../src/model/request-types.ts';
import { quantile } from '../bench/twin-stats.ts';

const TRACE = 'data/traces/AzureLLMInferenceTrace_conv.csv';

describe('simulated token gaps (taps.onTokenGap)', () => {
  it("gives every served request's gaps, by its true type and arrival", async () => {
    const want: Record<string, number> = {};
    const arrivals = new Set<number>();
    for await (const r of readTrace(TRACE, { startMs: 30_000, durationMs: 20_000, rebase: true })) {
      const t = classifyLengths(r.inputTokens, r.outputTokens);
      want[t] = (want[t] ?? 0) + Math.max(1, r.outputTokens) - 1;
      arrivals.add(r.tMs);
    }
    const gaps: Record<string, number[]> = {};
    const seen = new Set<number>();
    const r = await simulate(
      {
        policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1,
        profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1,
        knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
        dispatch: 'policy', trace: { kind: 'file', path: TRACE, startMs: 30_000, durationMs: 20_000 },
      },
      undefined,
      {
        onTokenGap: (g) => {
          (gaps[g.type] ??= []).push(g.gapMs);
          seen.add(g.arrivalMs);
        },
      },
    );
    expect(Object.keys(want).length).toBeGreaterThan(3);
    expect(Object.fromEntries(Object.entries(gaps).map(([t, xs]) => [t, xs.length]))).toEqual(Object.fromEntries(Object.entries(want).filter(([, n]) => n > 0)));
    for (const a of seen) expect(arrivals.has(a)).toBe(true);
    for (const [t, xs] of Object.entries(gaps)) {
      const own = r.latency.byType[t as keyof typeof r.latency.byType]!.tbtP99Ms;
      expect(Math.abs(quantile(xs, 0.99) / own - 1)).toBeLessThan(0.05);
    }
  }, 60_000);
});
