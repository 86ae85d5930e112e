/**
 * Latency statistics for the simulator: exact samples where they are few (TTFT: one per request) and a
 * log-bucketed histogram where they are many (TBT: one per token; an hour is millions). The histogram's
 * buckets are 0.5% wide, so a percentile read from it is within 0.5% of the exact one.
 */
const LOG_BASE = Math.log(1.005);
const MIN_MS = 0.01;
const BUCKETS = Math.ceil(Math.log(1e7 / MIN_MS) / LOG_BASE) + 1; // 0.01 ms .. 10^7 ms

export class LogHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  total = 0;
  add(ms: number, weight = 1): void {
    const v = ms < MIN_MS ? MIN_MS : ms;
    let b = Math.floor(Math.log(v / MIN_MS) / LOG_BASE);
    if (b >= BUCKETS) b = BUCKETS - 1;
    this.counts[b] += weight;
    this.total += weight;
  }
  /** q in [0,1]; NaN when empty. Returns the bucket's upper edge (conservative). */
  quantile(q: number): number {
    if (this.total <= 0) return NaN;
    const target = q * this.total;
    let acc = 0;
    for (let b = 0; b < BUCKETS; b++) {
      acc += this.counts[b];
      if (acc >= target && this.counts[b] > 0) return MIN_MS * Math.exp((b + 1) * LOG_BASE);
    }
    return MIN_MS * Math.exp(BUCKETS * LOG_BASE);
  }
  /** fraction of weight at or below ms. */
  fractionBelow(ms: number): number {
    if (this.total <= 0) return NaN;
    const lim = Math.floor(Math.log(Math.max(ms, MIN_MS) / MIN_MS) / LOG_BASE);
    let acc = 0;
    for (let b = 0; b < Math.min(lim, BUCKETS); b++) acc += this.counts[b];
    return acc / this.total;
  }
  merge(o: LogHistogram): void {
    for (let b = 0; b < BUCKETS; b++) this.counts[b] += o.counts[b];
    this.total += o.total;
  }
  /** points of the CDF for plotting, at most n. */
  cdf(n = 100): { ms: number; p: number }[] {
    const out: { ms: number; p: number }[] = [];
    if (this.total <= 0) return out;
    for (let i = 1; i <= n; i++) {
      const p = i / n;
      out.push({ ms: this.quantile(Math.min(p, 0.9999)), p });
    }
    return out;
  }
}

/** Exact percentile of an unsorted array (sorts a copy). */
export function percentile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return NaN;
  const a = Float64Array.from(values as ArrayLike<number>).sort();
  const i = Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1));
  return a[i];
}
