import { describe, expect, it } from 'vitest';
import { PrefixCache } from '../../src/engine/prefix-cache.ts';
import { BatchingCore } from '../../src/engine/core.ts';
import { createPerfModel } from '../../src/model/perf.ts';
import { preferPrefixHolder, prefixHitShare } from '../../src/policy/prefix.ts';
import type { CoreRequest } from '../../src/engine/core-types.ts';

describe('PrefixCache (LRU of prefix blocks)', () => {
  it('matches leading blocks only, keeps the last prompt token to compute, evicts least recently used', () => {
    const c = new PrefixCache(512, 4);
    c.insert([1, 2, 3]);
    expect(c.matchedBlocks([1, 2, 9, 3])).toBe(2); // a prefix: stops at the first miss
    expect(c.matchedBlocks([9, 2])).toBe(0);
    expect(c.acquire([1, 2, 3], 1536)).toBe(1024); // all three cached; whole blocks within the first 1,535 tokens (vLLM computes the last one)
    expect(c.acquire([1, 2, 3, 4], 2000)).toBe(1536);
    c.insert([1, 7]); // 1 most recent: order 2, 3, 1, 7
    c.insert([8]); // over capacity 4: evicts 2 (least recently used)
    expect(c.size).toBe(4);
    expect(c.matchedBlocks([1, 7])).toBe(2);
    expect(c.matchedBlocks([2])).toBe(0);
    expect(c.hitTokens).toBe(1024 + 1536);
  });
});

describe('BatchingCore with prefix caching', () => {
  const perf = createPerfModel('llama3.1-70b', 'h100');
  const hashes = Array.from({ length: 32 }, (_, i) => 1000 + i); // 16k tokens in 512-token blocks
  const req = (id: string, at: number): CoreRequest => ({ id, arrivalMs: at, promptTokens: 16_384, outputTokens: 4, prefixHashes: hashes });
  const ttftAndEnergy = (core: BatchingCore, r: CoreRequest): { ttft: number; j: number } => {
    core.idleUntil(r.arrivalMs);
    const j0 = core.stats().energyJ;
    core.submit(r);
    let t = r.arrivalMs;
    let first = -1;
    while (core.hasWork()) {
      const s = core.step(t)!;
      t = s.startMs + s.durationMs;
      for (const e of s.events) if (e.kind === 'first_token') first = e.atMs;
    }
    return { ttft: first - r.arrivalMs, j: core.stats().energyJ - j0 };
  };

  it('charges prefill only for blocks the instance has not cached', () => {
    const counters = { hitTokens: 0, lookupTokens: 0 };
    const core = new BatchingCore({ perf, tp: 8, clockMhz: 1980, prefixCacheBlockTokens: 512, prefixCacheCounters: counters });
    const cold = ttftAndEnergy(core, req('a', 0));
    expect(core.cachedPrefixTokens(hashes, 16_384)).toBe(15_872);
    const warm = ttftAndEnergy(core, req('b', 60_000));
    expect(counters).toEqual({ hitTokens: 15_872, lookupTokens: 2 * 16_384 });
    expect(warm.ttft).toBeLessThan(cold.ttft / 5);
    expect(warm.j).toBeLessThan(cold.j / 3);
    // without caching the same request costs the same twice
    const off = new BatchingCore({ perf, tp: 8, clockMhz: 1980 });
    const a = ttftAndEnergy(off, req('a', 0));
    const b = ttftAndEnergy(off, req('b', 60_000));
    expect(b.ttft).toBeCloseTo(a.ttft, 6);
    expect(off.cachedPrefixTokens(hashes, 16_384)).toBe(0);
  });

  it('sizes the LRU from the KV capacity and drops it when the engine sleeps', () => {
    const core = new BatchingCore({ perf, tp: 8, clockMhz: 1980, prefixCacheBlockTokens: 512, kvCapacityTokens: 8192 });
    ttftAndEnergy(core, { id: 'x', arrivalMs: 0, promptTokens: 4096, outputTokens: 2, prefixHashes: [1, 2, 3, 4, 5, 6, 7, 8] });
    ttftAndEnergy(core, { id: 'y', arrivalMs: 10_000, promptTokens: 6144, outputTokens: 2, prefixHashes: [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22] });
    // 16 blocks fit: the first prompt's oldest 4 blocks were evicted, so its prefix is gone
    expect(core.cachedPrefixTokens([1, 2, 3, 4, 5, 6, 7, 8], 4096)).toBe(0);
    expect(core.cachedPrefixTokens([11, 12], 1024)).toBe(512);
    expect(core.cachedPrefixTokens([11, 12], 1025)).toBe(1024);
    core.setSleeping(true, 20_000);
    expect(core.cachedPrefixTokens([11, 12], 1024)).toBe(0);
  });
});

describe('preferPrefixHolder (cache-aware routing, src/policy)', () => {
  it('picks the eligible instance with the least prefill before the first token; none cached: no preference', () => {
    const c = (id: string, cached: number, pending: number, tp = 8) => ({ id, tp, cachedPrefixTokens: cached, pendingPrefillTokens: pending });
    expect(preferPrefixHolder(10_000, [c('a', 0, 0), c('b', 0, 0)])).toBeUndefined();
    expect(preferPrefixHolder(10_000, [c('a', 0, 0), c('b', 8192, 0)])).toBe('b');
    // the holder is busy: 8192 cached but 30k tokens waiting there costs more than a cold idle instance
    expect(preferPrefixHolder(10_000, [c('a', 0, 0), c('b', 8192, 30_000)])).toBe('a');
    // per GPU: a TP2 holder with the prefix vs a TP8 cold one
    expect(preferPrefixHolder(10_000, [c('a', 0, 0, 8), c('b', 9000, 0, 2)])).toBe('b');
  });

  it('counts the pending prompts at the share its cache serves: a holder with a modest queue of cached turns wins, a long one loses', () => {
    const c = (id: string, cached: number, pending: number, cachedShare: number) => ({ id, tp: 1, cachedPrefixTokens: cached, pendingPrefillTokens: pending, cachedShare });
    // 8,000 of 10,000 tokens cached at b, 12,000 tokens waiting there of which its cache serves 80%: 2,000 + 2,400
    // before the first token, against 10,000 on the idle a
    expect(preferPrefixHolder(10_000, [c('a', 0, 0, 0.8), c('b', 8000, 12_000, 0.8)])).toBe('b');
    expect(prefixHitShare({ lookup: 50_000, hit: 40_000 })).toBeCloseTo(0.8, 12);
    expect(prefixHitShare({ lookup: 0, hit: 0 })).toBe(0);
    // the guard: 60,000 waiting at 80% is 12,000 uncached tokens, more than its cache saves (8,000)
    expect(preferPrefixHolder(10_000, [c('a', 0, 0, 0.8), c('b', 8000, 60_000, 0.8)])).toBe('a');
    // without a measured share the pending prompts count whole
    expect(preferPrefixHolder(10_000, [c('a', 0, 0, 0), c('b', 8000, 12_000, 0)])).toBe('a');
  });
});
