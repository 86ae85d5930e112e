import { describe, expect, it } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';

// test/fixtures/traces/prefix-long.jsonl: 10 minutes of the synthetic long-context trace (src/sim/prefix-trace.ts,
// `npx tsx scripts/synth-prefix-trace.ts test/fixtures/traces/prefix-long.jsonl 10 0.05 3`): ms timestamps, hash_ids
const base: Omit<SimOptions, 'policy'> = {
  trace: { kind: 'file', path: 'test/fixtures/traces/prefix-long.jsonl' },
  model: 'llama3.1-70b', gpu: 'h100', servers: 2, fidelity: 'step', rateScale: 1, seed: 1,
};

describe('simulate on a long-context trace with prefix hashes', () => {
  it('reads ms timestamps, serves long prompts as L types, caches prefixes, routes to the holder when asked', async () => {
    const off = await simulate({ ...base, policy: 'single-pool', prefixCaching: false });
    const on = await simulate({ ...base, policy: 'single-pool' });
    const routed = await simulate({ ...base, policy: 'single-pool', prefixRouting: true });
    expect(off.durationS).toBeLessThan(700); // 10 minutes, not 10,000
    for (const r of [off, on, routed]) {
      expect(r.requests).toBe(74);
      expect(r.refusedOverContext + r.unservable + r.rejected + r.latency.requests).toBe(r.requests); // every request accounted for
    }
    expect(off.prefixCache).toBeUndefined();
    expect(on.prefixCache!.hitTokens).toBeGreaterThan(0);
    expect(routed.prefixCache!.hitTokens).toBeGreaterThan(on.prefixCache!.hitTokens);
    expect(on.energyKWh).toBeLessThan(off.energyKWh);
  }, 60_000);

  it('refuses requests over the context apart from SLO misses', async () => {
    const r = await simulate({ ...base, policy: 'single-pool', maxContext: 8192 });
    expect(r.maxContext).toBe(8192);
    expect(r.refusedOverContext).toBeGreaterThan(10);
    expect(r.latency.requests).toBe(r.requests - r.refusedOverContext - r.rejected - r.unservable);
    expect(r.notes.some((n) => /refused: prompt \+ output over the 8192-token context/.test(n))).toBe(true);
  }, 60_000);
});
