/**
 * A Prometheus histogram for observations made per token (the gateway's TBT): a child's observe() is a bucket
 * search and three additions on that label set's own counts, where prom-client's Histogram validates and
 * hashes the labels on every observation. It registers in a prom-client Registry as its own metrics do (a
 * `get()` giving the same value list prom-client's Histogram gives: cumulative `_bucket` series with `le`,
 * then `+Inf`, `_sum` and `_count` per label set), so /metrics prints it the same way. `add` takes observations
 * counted elsewhere by bucket (the instances' request TTFTs, src/telemetry/request-counts.ts).
 */
import type { Registry } from 'prom-client';

interface Series {
  labels: Record<string, string>;
  /** observations per bucket (not cumulative); the last slot is past the largest bound. */
  counts: number[];
  sum: number;
  count: number;
  /** its observer (labels() gives it, no object made per call). */
  child: TokenHistogramChild;
}

export interface TokenHistogramChild {
  observe(value: number): void;
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

export class TokenHistogram<L extends string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: number[];
  private series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    buckets: readonly number[],
    registers: readonly Registry[],
  ) {
    this.bounds = [...buckets].sort((a, b) => a - b);
    for (const r of registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The series of these label values (looked up once: keep the child for a stream's tokens): its one child, made with it. */
  labels(l: Record<L, string>): TokenHistogramChild {
    return this.seriesOf(l).child;
  }

  observe(l: Record<L, string>, value: number): void {
    this.labels(l).observe(value);
  }

  /** Adds observations counted elsewhere: `counts` per bucket of this histogram's (not cumulative; the last slot past the largest), their sum. */
  add(l: Record<L, string>, counts: readonly number[], sum: number): void {
    const s = this.seriesOf(l);
    for (let i = 0; i < s.counts.length; i++) {
      const n = counts[i] ?? 0;
      s.counts[i]! += n;
      s.count += n;
    }
    s.sum += sum;
  }

  private seriesOf(l: Record<L, string>): Series {
    let key = '';
    for (const n of this.labelNames) key += `${l[n]}\u0000`;
    const s = this.series.get(key);
    if (s) return s;
    const labels: Record<string, string> = {};
    for (const n of this.labelNames) labels[n] = l[n];
    const series: Series = { labels, counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0, child: undefined as unknown as TokenHistogramChild };
    const bounds = this.bounds;
    series.child = {
      observe(value: number): void {
        if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
        let i = 0;
        while (i < bounds.length && value > bounds[i]!) i++;
        series.counts[i]!++;
        series.sum += value;
        series.count++;
      },
    };
    this.series.set(key, series);
    return series;
  }

  reset(): void {
    this.series = new Map();
  }

  async get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: MetricValue[] }> {
    await Promise.resolve();
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ value: acc, labels: { ...s.labels, le: this.bounds[i]! }, metricName: bucket });
      }
      values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: bucket });
      values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
