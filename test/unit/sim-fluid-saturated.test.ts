/**
 * Fluid fidelity on a saturated instance: a load at or past the first load the profile generator found saturated
 * (latencies SATURATED_MS, a sentinel, not a latency) has no steady-state latency. Such requests are reported as
 * saturated (latency.saturated; a percentile among them is Infinity, printed "saturated"), never as hours of latency
 * in a minute's window. And a run where no type had the 100 requests the p99 verdict needs reports it as not judged.
 */
import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import { table } from '../../src/sim/report.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import type { SimOptions } from '../../src/sim/types.ts';

// the audit's run: dynamollm's first minute on 8 servers at 5 req/s, its pools still at their start clocks
const OPTS: SimOptions = {
  policy: 'dynamollm', trace: { kind: 'synth', shape: 'flat', durationS: 86_400, meanRps: 5, seed: 1, durationMs: 60_000 },
  model: 'llama2-70b', gpu: 'h100', servers: 8, fidelity: 'fluid', seed: 1,
};

describe('fluid fidelity: a saturated instance is reported as saturated', () => {
  it('no modelled latency exceeds the window; the saturated requests are counted, SLO misses', async () => {
    const r = await simulate(OPTS);
    const l = r.latency;
    for (const s of [l, ...Object.values(l.byType)]) {
      for (const x of [s!.ttftP50Ms, s!.ttftP99Ms, s!.tbtP50Ms, s!.tbtP99Ms]) {
        // finite: a modelled latency, within the 60-s window; else saturated (Infinity)
        if (Number.isFinite(x)) expect(x).toBeLessThan(60_000);
        else expect(x).toBe(Infinity);
      }
      if (s!.saturated && s!.saturated / s!.requests > 0.01) expect(s!.ttftP99Ms).toBe(Infinity);
    }
    expect(l.saturated).toBeGreaterThan(0);
    for (const t of REQUEST_TYPES) {
      const s = l.byType[t];
      // a type's saturated requests miss their SLO
      // (the counts are rounded: half a request either way)
      if (s?.saturated) expect(r.sloAttainment[t]!).toBeLessThanOrEqual(1 - (s.saturated - 0.5) / (s.requests + 0.5));
    }
    expect(r.notes.some((n) => n.startsWith('saturated: '))).toBe(true);
    const text = table([r]);
    expect(text).toMatch(/\/saturated/);
    expect(text).not.toMatch(/\d{6,}/); // no 6-digit latency
  });

  it('p99WithinSlo is null (not judged) when no type had 100 requests: in the result, its JSON and the table', async () => {
    const r = await simulate(OPTS);
    expect(Math.max(...Object.values(r.latency.byType).map((s) => s!.requests))).toBeLessThan(100);
    expect(r.p99WithinSlo).toBeNull();
    expect(JSON.parse(JSON.stringify(r)).p99WithinSlo).toBeNull();
    expect(table([r])).toMatch(/not judged/);
  });
});
