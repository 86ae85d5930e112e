/**
 * The pooled twin check's statistics (test/bench/twin-stats.ts) on inputs whose answers are known: the nearest-rank
 * quantile, the log histogram's quantile (within its half bucket), the paired block bootstrap (identical sides give
 * the interval [1, 1]; a side scaled by 1.2 gives [1.2, 1.2]; one block per window gives no spread, so resampling stays
 * within each window; large samples of known distributions put the interval around the true ratio), the judgement by
 * the interval, the collector's blocks and the pooling over windows.
 */
import { describe, expect, it } from 'vitest';
import { bootstrapRatio, ttftQuantile, bucketOf, bucketValue, histQuantile, HistBuilder, pairedBlocks, pooledSum, poolTypes, quantile, verdict, WindowCollector, type BlockSamples, type Paired, type WindowSamples } from '../bench/twin-stats.ts';
import { poolReport } from '../bench/twin-pool.ts';
import { rng } from '../../src/sim/trace.ts';

const p99 = (bs: number[][]) => quantile(bs.flat(), 0.99);
const range = (n: number, from = 1) => Array.from({ length: n }, (_, i) => from + i);

describe('quantile and histograms', () => {
  it('takes the ceil(q n)-th smallest', () => {
    const xs = range(100).reverse();
    expect(quantile(xs, 0.99)).toBe(99);
    expect(quantile(xs, 0.5)).toBe(50);
    expect(quantile(xs, 1)).toBe(100);
    expect(quantile([7], 0.99)).toBe(7);
    expect(quantile([], 0.5)).toBeNaN();
  });

  it("gives the blocks' TTFT quantile as the quantile of their concatenation, ties and all", () => {
    const r = rng(9);
    for (let t = 0; t < 50; t++) {
      const blocks = range(1 + Math.floor(r() * 20)).map(() => ({ ttft: range(Math.floor(r() * 8)).map(() => Math.round(r() * 30)), tbt: [] }));
      const all = blocks.flatMap((b) => b.ttft);
      for (const q of [0.01, 0.5, 0.9, 0.99, 1]) expect(ttftQuantile(blocks, q)).toBe(quantile(all, q));
    }
    expect(ttftQuantile([{ ttft: [], tbt: [] }], 0.5)).toBeNaN();
  });

  it('puts a value in a 1% bucket whose middle is within 0.5% of it', () => {
    for (const x of [0.02, 0.5, 3.3, 17, 40, 123.4, 999, 25_000]) expect(Math.abs(bucketValue(bucketOf(x)) / x - 1)).toBeLessThan(0.0051);
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(15)).toBeLessThan(bucketOf(15.2));
  });

  it("gives the quantile of the histograms' summed values to the bucket", () => {
    const a = new HistBuilder();
    const b = new HistBuilder();
    const xs = range(1000).map((i) => i * 0.37);
    xs.forEach((x, i) => (i % 3 ? a : b).add(x));
    for (const q of [0.5, 0.9, 0.99]) expect(Math.abs(histQuantile([a.toSparse(), b.toSparse()], q) / quantile(xs, q) - 1)).toBeLessThan(0.0051);
    expect(histQuantile([], 0.99)).toBeNaN();
    const c = new HistBuilder();
    c.add(10, 99);
    c.add(1000);
    // 100 values: the 99th smallest is 10, the 100th 1000
    expect(histQuantile([c.toSparse()], 0.99)).toBeCloseTo(bucketValue(bucketOf(10)), 9);
    expect(histQuantile([c.toSparse()], 1)).toBeCloseTo(bucketValue(bucketOf(1000)), 9);
  });
});

describe('paired block bootstrap of a sim / live ratio', () => {
  const rand = rng(5);
  const blocksOf = (n: number, f: (x: number) => number): Paired<number[]>[] =>
    range(n).map(() => {
      const live = range(1 + Math.floor(rand() * 4)).map(() => 10 + 100 * rand() ** 3);
      return { live, sim: live.map(f) };
    });

  it('gives the interval [1, 1] when both sides have the same samples, block by block', () => {
    const ci = bootstrapRatio([blocksOf(30, (x) => x), blocksOf(20, (x) => x)], p99, { resamples: 300 });
    expect(ci).toMatchObject({ ratio: 1, lo: 1, hi: 1, resamples: 300 });
  });

  it('gives [1.2, 1.2] when every simulated sample is 1.2 times its live one', () => {
    const ci = bootstrapRatio([blocksOf(40, (x) => 1.2 * x)], p99, { resamples: 300 });
    for (const v of [ci.ratio, ci.lo, ci.hi]) expect(v).toBeCloseTo(1.2, 12);
  });

  it('resamples blocks within each window: one block per window leaves no spread', () => {
    const strata = [[{ live: [10, 50], sim: [12, 40] }], [{ live: [30], sim: [90] }]];
    const ci = bootstrapRatio(strata, p99, { resamples: 200 });
    // every resample is both windows' one block: the pooled p99s are 50 and 90
    expect(ci).toMatchObject({ live: 50, sim: 90, lo: 90 / 50, hi: 90 / 50, resamples: 200 });
  });

  it('puts the interval around the true ratio of two known distributions, narrower with more samples', () => {
    const r = rng(11);
    const exp = (scale: number) => -scale * Math.log(1 - r());
    const draw = (blocks: number, scale: number): Paired<number[]>[] => range(blocks).map(() => ({ live: range(10).map(() => exp(100)), sim: range(10).map(() => exp(100 * scale)) }));
    const big = bootstrapRatio([draw(300, 1.5), draw(300, 1.5)], p99, { resamples: 400 });
    expect(big.lo).toBeLessThan(1.5);
    expect(big.hi).toBeGreaterThan(1.5);
    expect(big.hi - big.lo).toBeLessThan(0.5);
    expect(verdict(big, 0.15)).toBe('outside');
    const same = bootstrapRatio([draw(300, 1), draw(300, 1)], p99, { resamples: 400 });
    expect(same.lo).toBeLessThan(1);
    expect(same.hi).toBeGreaterThan(1);
    const few = bootstrapRatio([draw(3, 1)], p99, { resamples: 400 });
    expect(few.hi - few.lo).toBeGreaterThan(same.hi - same.lo);
  });

  it('covers the true ratio about as often as its level says', () => {
    const r = rng(23);
    const exp = (scale: number) => -scale * Math.log(1 - r());
    let covered = 0;
    const trials = 60;
    for (let t = 0; t < trials; t++) {
      const blocks = range(40).map(() => ({ live: range(10).map(() => exp(100)), sim: range(10).map(() => exp(120)) }));
      const ci = bootstrapRatio([blocks], p99, { resamples: 200, seed: t });
      if (ci.lo <= 1.2 && 1.2 <= ci.hi) covered++;
    }
    // 95% intervals: 57 of 60 expected; a percentile interval of a p99 over 400 samples covers a little less
    expect(covered).toBeGreaterThanOrEqual(48);
  });

  it('is reproducible from its seed', () => {
    const strata = [blocksOf(25, (x) => x * (0.8 + 0.4 * rand()))];
    expect(bootstrapRatio(strata, p99, { seed: 3, resamples: 100 })).toEqual(bootstrapRatio(strata, p99, { seed: 3, resamples: 100 }));
  });
});

describe('judging by the interval', () => {
  it('is within, outside or undecided against the 15% target', () => {
    expect(verdict({ lo: 0.9, hi: 1.1 }, 0.15)).toBe('within');
    expect(verdict({ lo: 0.85, hi: 1.15 }, 0.15)).toBe('within');
    expect(verdict({ lo: 1.2, hi: 1.6 }, 0.15)).toBe('outside');
    expect(verdict({ lo: 0.3, hi: 0.8 }, 0.15)).toBe('outside');
    expect(verdict({ lo: 0.8, hi: 1.1 }, 0.15)).toBe('undecided');
    expect(verdict({ lo: 0.6, hi: 1.7 }, 0.15)).toBe('undecided');
    expect(verdict({ lo: NaN, hi: NaN }, 0.15)).toBe('undecided');
  });
});

describe('collecting and pooling windows', () => {
  const window = (label: string, fill: (c: WindowCollector) => void, energy: [number, number], clock: [number, number]): WindowSamples => {
    const c = new WindowCollector(10);
    fill(c);
    return { group: 'g', label, startS: 0, windowS: 30, speed: 1, blockS: 10, requests: { live: 0, sim: 0 }, energyJ: { live: energy[0], sim: energy[1] }, decisions: { live: { clock: clock[0] }, sim: { clock: clock[1] } }, blocks: JSON.parse(JSON.stringify(c.blocks())) as WindowSamples['blocks'] };
  };

  it("puts each request in its block of trace time, each side's, and pairs the blocks over the window", () => {
    const w = window('a', (c) => {
      c.addTtft('live', 'SS', 0, 5);
      c.addTtft('live', 'SS', 9_999, 6);
      c.addTtft('live', 'SS', 25_000, 7);
      c.addTtft('sim', 'SS', 10_000, 8);
      c.addTbt('live', 'SS', 0, [20, 30]);
      c.addTbt('sim', 'SS', 12_000, 40);
    }, [1, 1], [1, 1]);
    const b = pairedBlocks(w, 'SS');
    expect(b.map((x) => x.live.ttft)).toEqual([[5, 6], [], [7]]);
    expect(b.map((x) => x.sim.ttft)).toEqual([[], [8], []]);
    expect(b[0]!.live.tbt).toEqual([[bucketOf(20), 1], [bucketOf(30), 1]]);
    expect(b[1]!.sim.tbt).toEqual([[bucketOf(40), 1]]);
    expect(pairedBlocks(w, 'LL').every((x) => x.live.ttft.length === 0 && x.sim.ttft.length === 0)).toBe(true);
  });

  it("pools the windows' samples per type, and energy and decisions by their sums", () => {
    const fill = (offset: number) => (c: WindowCollector) => {
      for (let i = 0; i < 30; i++) {
        c.addTtft('live', 'MM', i * 1000, offset + i);
        c.addTtft('sim', 'MM', i * 1000, 2 * (offset + i));
        c.addTbt('live', 'MM', i * 1000, [offset + i]);
        c.addTbt('sim', 'MM', i * 1000, [offset + i]);
      }
    };
    const ws = [window('a', fill(0), [100, 110], [10, 9]), window('b', fill(100), [300, 290], [20, 24])];
    const [mm] = poolTypes(ws, { resamples: 200 });
    const liveAll = [...range(30, 0), ...range(30, 100)];
    expect(mm!.n).toEqual({ live: 60, sim: 60 });
    expect(mm!.ttftP99.live).toBe(quantile(liveAll, 0.99));
    expect(mm!.ttftP50.live).toBe(quantile(liveAll, 0.5));
    expect(mm!.ttftP99).toMatchObject({ lo: 2, hi: 2 });
    expect(mm!.tbtP99).toMatchObject({ ratio: 1, lo: 1, hi: 1 });
    expect(pooledSum(ws.map((w) => ({ live: w.energyJ.live!, sim: w.energyJ.sim })))).toEqual({ live: 400, sim: 400, ratio: 1, min: 290 / 300, max: 1.1 });
    const report = poolReport(ws, { resamples: 200, minP99N: 60 });
    expect(report).toContain('| energy J (modelled both sides, 2 windows) | 400 | 400 | 1.000 |');
    expect(report).toContain('| decisions: clock | 30 | 33 | 1.100 |');
    expect(report).toMatch(/\| p99 TTFT ms MM \| 129 \| 258 \| 2\.000 \| 2\.000-2\.000 \| \| 15% \| outside \|/);
    expect(report).toMatch(/p99 TTFT by its interval: within 15% 0, outside 1, undecided 0 \(.*\), informational 0/);
    expect(report).toContain('informational, not judged: the p99s of no type');
    // 60 requests a side: under the default 100 a type's p99 is informational, listed with the reason
    const few = poolReport(ws, { resamples: 200 });
    expect(few).toMatch(/\| p99 TTFT ms MM \| 129 \| 258 \| 2\.000 \| 2\.000-2\.000 \| \| 15% \| informational \(< 100 requests\) \|/);
    expect(few).toContain('informational, not judged: the p99s of MM (60 live, 60 sim) (fewer than 100 requests of the type on a side');
  });

  it('judges a decision kind with none live and some simulated as outside; lists the data path each window simulated', () => {
    const fill = (c: WindowCollector) => c.addTtft('live', 'SS', 0, 5);
    const a = { ...window('a', fill, [100, 100], [0, 0]), decisions: { live: { clock: 0, reshard: 0 }, sim: { clock: 0, reshard: 2 } }, requestPathMs: { toEngineMs: 4.5, startToEngineMs: 0.25, toClientMs: 1.4, hopRequests: 59, hopToEngineMs: 4.75, hopPathMs: 4.5, hopOutMs: 1.1 } };
    const b = window('b', fill, [100, 100], [0, 0]);
    const report = poolReport([a, b], { resamples: 50 });
    expect(report).toContain('| decisions: reshard | 0 | 2 | - | | - | 10% | outside |');
    expect(report).toContain('| decisions: clock | 0 | 0 | - | | - | 10% | within |');
    expect(report).toContain("a: - from the client's send to the gateway's arrival stamp, 4.5 to the instance, 0.25 from its start to the engine, 1.40 from the engine to the client (medians over 59 live requests: 4.75 from the gateway's arrival stamp to the engine, 4.50 less a queue's wait, 1.10 from the engine's first token to the gateway)");
  });

  it('counts a window shorter than its block as one block', () => {
    const blocks: BlockSamples[] = pairedBlocks({ group: 'g', label: 'x', startS: 0, windowS: 5, speed: 1, blockS: 10, requests: { live: 0, sim: 0 }, energyJ: { live: null, sim: 0 }, decisions: { live: {}, sim: {} }, blocks: { live: {}, sim: {} } }, 'SS').map((x) => x.live);
    expect(blocks).toHaveLength(1);
  });
});
