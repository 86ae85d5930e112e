/**
 * Statistics of the pooled twin check (test/bench/twin-pool.ts). Several windows of one cluster shape (the trace's
 * windows at different offsets), each run live and simulated, pool their per-type latency samples; each sim / live
 * quantile ratio comes with a bootstrap confidence interval, so "within 15%" is judged by the interval, not by one
 * tail quantile over a few requests (a type's p99 over 20 requests is its largest TTFT).
 *
 * The bootstrap is paired and by blocks of trace time: each window is cut into blocks of `blockS` seconds of trace
 * time (from the window's first row); a resample draws, within each window, as many blocks as it has, with
 * replacement, and takes the same blocks on both sides (the same trace requests, live and simulated), so a burst's
 * requests, whose TTFTs share its queue, stay together, and the two sides' tails move together as the trace's do.
 * The interval is the percentile interval of the resampled ratios.
 *
 * TTFT samples are kept exact; TBT samples (one per token) in log histograms of 1% buckets, whose quantile is the
 * bucket's geometric middle, within 0.5% of every value in it.
 */
import { rng } from '../../src/sim/trace.ts';
import type { SimOptions } from '../../src/sim/types.ts';

/** The nearest-rank quantile, as the replay's and the simulator's percentiles: the ceil(q n)-th smallest; NaN for none. */
export function quantile(xs: ArrayLike<number>, q: number): number {
  if (xs.length === 0) return NaN;
  const a = Float64Array.from(xs).sort();
  return a[Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1))]!;
}

/** A log histogram: [bucket, count] pairs, buckets ascending. */
export type SparseHist = [number, number][];

const HIST_MIN_MS = 0.01;
const HIST_LOG_STEP = Math.log1p(0.01);

/** The 1%-wide bucket of a value, ms (every value at or below 0.01 ms in bucket 0). */
export function bucketOf(x: number): number {
  return x <= HIST_MIN_MS ? 0 : Math.floor(Math.log(x / HIST_MIN_MS) / HIST_LOG_STEP);
}

/** A bucket's value: its geometric middle, ms. */
export function bucketValue(b: number): number {
  return HIST_MIN_MS * Math.exp((b + 0.5) * HIST_LOG_STEP);
}

/** Counts values into histogram buckets. */
export class HistBuilder {
  private readonly counts = new Map<number, number>();
  add(x: number, n = 1): void {
    const b = bucketOf(x);
    this.counts.set(b, (this.counts.get(b) ?? 0) + n);
  }
  get size(): number {
    return this.counts.size;
  }
  toSparse(): SparseHist {
    return [...this.counts.entries()].sort((a, b) => a[0] - b[0]);
  }
}

/** The nearest-rank quantile of the sum of histograms (as `quantile` of their values, to the bucket); NaN for none. */
export function histQuantile(hists: readonly SparseHist[], q: number): number {
  let top = -1;
  let total = 0;
  for (let j = 0; j < hists.length; j++) {
    const h = hists[j]!;
    for (let i = 0; i < h.length; i++) {
      const e = h[i]!;
      if (e[0] > top) {
        if (e[0] >= scratch.length) {
          const grown = new Float64Array(2 * (e[0] + 1));
          grown.set(scratch.subarray(0, top + 1));
          scratch = grown;
        }
        scratch.fill(0, top + 1, e[0] + 1);
        top = e[0];
      }
      scratch[e[0]]! += e[1];
      total += e[1];
    }
  }
  if (total === 0) return NaN;
  const counts = scratch;
  // from the top: a high quantile's bucket is near it
  const above = total - Math.min(total, Math.max(1, Math.ceil(q * total)));
  let seen = 0;
  for (let b = top; b > 0; b--) {
    seen += counts[b]!;
    if (seen > above) return bucketValue(b);
  }
  return bucketValue(0);
}

/** histQuantile's counts, reused between calls (a bootstrap calls it thousands of times). */
let scratch = new Float64Array(2048);

/** The k-th smallest (0-based) of a[0..n), rearranging them (quickselect). */
function select(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const mid = (lo + hi) >> 1;
    // the median of three as the pivot
    const x = a[lo]!, y = a[mid]!, z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

let pool = new Float64Array(4096);

/** The nearest-rank quantile of the blocks' TTFTs together (as `quantile` of their concatenation); NaN for none. */
export function ttftQuantile(blocks: readonly BlockSamples[], q: number): number {
  let n = 0;
  for (let j = 0; j < blocks.length; j++) n += blocks[j]!.ttft.length;
  if (n === 0) return NaN;
  if (pool.length < n) pool = new Float64Array(2 * n);
  let k = 0;
  for (let j = 0; j < blocks.length; j++) {
    const t = blocks[j]!.ttft;
    for (let i = 0; i < t.length; i++) pool[k++] = t[i]!;
  }
  return select(pool, n, Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1)));
}

/** One block of trace time, on both sides. */
export interface Paired<B> {
  live: B;
  sim: B;
}

export interface RatioCI {
  /** the statistic over every block, live and simulated. */
  live: number;
  sim: number;
  /** sim / live over every block. */
  ratio: number;
  /** the percentile interval of the resampled ratios at `level`. */
  lo: number;
  hi: number;
  /** resamples that gave a ratio (a resample with no sample of a side gives none). */
  resamples: number;
}

/**
 * The sim / live ratio of `stat` over pooled blocks with its paired block-bootstrap interval. `strata`: one list of
 * blocks per window (a resample draws within each window as many of its blocks as it has, with replacement, the same
 * ones on both sides). `stat` takes a list of blocks of one side. Seeded: the same inputs give the same interval.
 */
export function bootstrapRatio<B>(
  strata: readonly (readonly Paired<B>[])[],
  stat: (blocks: B[]) => number,
  opts: { resamples?: number; level?: number; seed?: number } = {},
): RatioCI {
  const all = strata.flat();
  const live = stat(all.map((x) => x.live));
  const sim = stat(all.map((x) => x.sim));
  const R = opts.resamples ?? 1000;
  const level = opts.level ?? 0.95;
  const rand = rng(opts.seed ?? 16);
  const ratios: number[] = [];
  const l: B[] = [];
  const s: B[] = [];
  for (let r = 0; r < R; r++) {
    l.length = 0;
    s.length = 0;
    for (const blocks of strata) {
      for (let k = 0; k < blocks.length; k++) {
        const b = blocks[Math.floor(rand() * blocks.length)]!;
        l.push(b.live);
        s.push(b.sim);
      }
    }
    const x = stat(s) / stat(l);
    if (Number.isFinite(x)) ratios.push(x);
  }
  ratios.sort((a, b) => a - b);
  const tail = (1 - level) / 2;
  return { live, sim, ratio: sim / live, lo: quantile(ratios, tail), hi: quantile(ratios, 1 - tail), resamples: ratios.length };
}

/** Judged by the interval: 'within' when it lies inside [1 - tol, 1 + tol], 'outside' when it lies wholly outside, else 'undecided' (the samples cannot settle it). */
export function verdict(ci: Pick<RatioCI, 'lo' | 'hi'>, tol: number): 'within' | 'outside' | 'undecided' {
  if (!Number.isFinite(ci.lo) || !Number.isFinite(ci.hi)) return 'undecided';
  if (ci.lo >= 1 - tol && ci.hi <= 1 + tol) return 'within';
  if (ci.hi < 1 - tol || ci.lo > 1 + tol) return 'outside';
  return 'undecided';
}

export type Side = 'live' | 'sim';

/** One block's samples of one type on one side: the TTFTs of its requests, the histogram of their TBTs. */
export interface BlockSamples {
  ttft: number[];
  tbt: SparseHist;
}

/** What one twin window leaves for pooling (twin.bench.ts with TWIN_SAMPLES=FILE). */
export interface WindowSamples {
  /** windows of one group (config, speed, length) pool together. */
  group: string;
  label: string;
  startS: number;
  windowS: number;
  speed: number;
  /** the bootstrap's block, s of trace time. */
  blockS: number;
  /** requests served. */
  requests: Record<Side, number>;
  /** the cluster's energy over the window, J (modelled both sides); live null when its counters were not read. */
  energyJ: { live: number | null; sim: number };
  /** decisions by kind (src/telemetry reconfigurationOf's). */
  decisions: Record<Side, Record<string, number>>;
  /** per side, per type, per block index (its trace time from the window's first row / blockS). */
  blocks: Record<Side, Record<string, Record<string, BlockSamples>>>;
  /**
   * the data path's time the window's simulation took (SimOptions.requestPathMs; toGatewayMs: twin.bench.ts gatewayInOf), ms, each measured in the window's
   * live run (twin.bench.ts), over how many live requests the hop to and from the engine was (0: none measured), and
   * its medians as measured (twin.bench.ts engineHopOf: from the gateway's arrival stamp to the engine's receipt, the
   * same less a queue's wait, and from the engine's first token to the gateway's read).
   */
  requestPathMs?: { toGatewayMs?: number; toEngineMs: number; startToEngineMs: number; toClientMs: number; hopRequests: number; hopToEngineMs?: number; hopPathMs?: number; hopOutMs?: number };
  /** what the window's simulation needs to be run again at other phases (twin-phases.ts); absent in older files. */
  simulation?: TwinSimulation;
}

/** The phase options of one simulation (SimOptions' instance epoch and status schedules). */
export type PhaseOptions = Pick<SimOptions, 'instanceEpochPhaseMs' | 'instanceEpochBeforeTrace' | 'instanceStatusPhaseMs' | 'instanceStatusIntervalMs'>;

/** What a window's simulation needs to be run again (twin.bench.ts writes it into the samples file). */
export interface TwinSimulation {
  /** the simulation's options as the window's live run set them, without the phases (no callbacks: JSON). */
  options: SimOptions;
  /** the phases aligned to the live run's (its epochs' and statuses' as its log showed them; empty when unknown). */
  aligned: PhaseOptions;
  /** the instances' clock epoch, ms. */
  epochMs: number;
  /** the instances' status interval, ms (the live one's as measured, else its config's). */
  statusIntervalMs: number;
  /** the instances the cluster starts with. */
  instances: number;
}


/** Collects one window's per-request samples by side, type and block of trace time. */
export class WindowCollector {
  private readonly ttft = new Map<string, number[]>();
  private readonly tbt = new Map<string, HistBuilder>();
  constructor(readonly blockS: number) {}
  private key(side: Side, type: string, traceMs: number): string {
    return `${side}|${type}|${Math.max(0, Math.floor(traceMs / (this.blockS * 1000)))}`;
  }
  /** a request's TTFT, its arrival `traceMs` after the window's first row (trace time). */
  addTtft(side: Side, type: string, traceMs: number, ttftMs: number): void {
    const k = this.key(side, type, traceMs);
    const xs = this.ttft.get(k);
    if (xs) xs.push(ttftMs);
    else this.ttft.set(k, [ttftMs]);
  }
  /** a request's token gaps. */
  addTbt(side: Side, type: string, traceMs: number, gapsMs: number | readonly number[]): void {
    const k = this.key(side, type, traceMs);
    let h = this.tbt.get(k);
    if (!h) this.tbt.set(k, (h = new HistBuilder()));
    for (const g of typeof gapsMs === 'number' ? [gapsMs] : gapsMs) h.add(g);
  }
  blocks(): WindowSamples['blocks'] {
    const out: WindowSamples['blocks'] = { live: {}, sim: {} };
    const at = (k: string): BlockSamples => {
      const [side, type, block] = k.split('|') as [Side, string, string];
      const byBlock = (out[side][type] ??= {});
      return (byBlock[block] ??= { ttft: [], tbt: [] });
    };
    for (const [k, xs] of this.ttft) at(k).ttft = xs;
    for (const [k, h] of this.tbt) at(k).tbt = h.toSparse();
    return out;
  }
}

const EMPTY: BlockSamples = { ttft: [], tbt: [] };

/** A type's blocks in one window, paired by block index over the whole window (a block with no request of the type is empty on both sides). */
export function pairedBlocks(w: WindowSamples, type: string): Paired<BlockSamples>[] {
  const n = Math.max(1, Math.ceil(w.windowS / w.blockS));
  return Array.from({ length: n }, (_, i) => ({ live: w.blocks.live[type]?.[i] ?? EMPTY, sim: w.blocks.sim[type]?.[i] ?? EMPTY }));
}

export interface PooledType {
  type: string;
  n: Record<Side, number>;
  ttftP50: RatioCI;
  ttftP99: RatioCI;
  tbtP99: RatioCI;
}

/** Each type's pooled p50 and p99 TTFT and p99 TBT over windows of one group, sim / live with their intervals. */
export function poolTypes(windows: readonly WindowSamples[], opts: { resamples?: number; level?: number; seed?: number } = {}): PooledType[] {
  const types = [...new Set(windows.flatMap((w) => [...Object.keys(w.blocks.live), ...Object.keys(w.blocks.sim)]))].sort();
  const ttftQ = (q: number) => (bs: BlockSamples[]) => ttftQuantile(bs, q);
  const tbtQ = (q: number) => (bs: BlockSamples[]) => histQuantile(bs.map((b) => b.tbt), q);
  return types.map((type) => {
    const strata = windows.map((w) => pairedBlocks(w, type));
    const count = (side: Side) => strata.flat().reduce((a, b) => a + b[side].ttft.length, 0);
    return {
      type,
      n: { live: count('live'), sim: count('sim') },
      ttftP50: bootstrapRatio(strata, ttftQ(0.5), opts),
      ttftP99: bootstrapRatio(strata, ttftQ(0.99), opts),
      tbtP99: bootstrapRatio(strata, tbtQ(0.99), opts),
    };
  });
}

/** A window-level quantity pooled: sim / live of the sums, and each window's own ratio's range. */
export function pooledSum(pairs: readonly { live: number; sim: number }[]): { live: number; sim: number; ratio: number; min: number; max: number } {
  const live = pairs.reduce((a, x) => a + x.live, 0);
  const sim = pairs.reduce((a, x) => a + x.sim, 0);
  const each = pairs.filter((x) => x.live > 0).map((x) => x.sim / x.live);
  return { live, sim, ratio: live > 0 ? sim / live : NaN, min: each.length ? Math.min(...each) : NaN, max: each.length ? Math.max(...each) : NaN };
}
