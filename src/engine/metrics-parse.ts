/**
 * A strict parser of the Prometheus text exposition format (0.0.4), enough to read vLLM's /metrics and
 * to reject garbage with a line number instead of silently returning zeros. Also extracts the vLLM
 * families the instance manager needs (EngineMetrics).
 */
import { MetricsParseError } from './errors.ts';
import { parsePrometheusText as parseText, parseValue, PromParseError, type PromFamily, type PromSample } from '../telemetry/prom-parse.ts';

// One strict text-format parser for the whole project (src/telemetry/prom-parse.ts); here its errors become
// MetricsParseError (retryable: the next scrape may be fine), which is what the engine manager reports.
export type Sample = PromSample;
export type MetricFamily = PromFamily;

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  try {
    return parseText(text);
  } catch (err) {
    if (err instanceof PromParseError) {
      const m = /^line (\d+): (.*)$/s.exec(err.message);
      throw m ? new MetricsParseError(m[2], Number(m[1])) : new MetricsParseError(err.message);
    }
    throw err;
  }
}

export interface Histogram {
  /** cumulative counts per upper bound (seconds), ascending, last is +Inf. */
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

/** The vLLM load and latency figures the instance manager reads (summed over model_name labels). */
export interface EngineMetrics {
  /** vllm:num_requests_running */
  numRequestsRunning: number;
  /** vllm:num_requests_waiting */
  numRequestsWaiting: number;
  /** vllm:kv_cache_usage_perc (or the older vllm:gpu_cache_usage_perc), fraction 0..1. */
  kvCacheUsage: number;
  /** vllm:prompt_tokens_total */
  promptTokensTotal: number;
  /** vllm:generation_tokens_total */
  generationTokensTotal: number;
  /** vllm:request_success_total (all finish reasons). */
  requestSuccessTotal: number;
  /** vllm:time_to_first_token_seconds */
  ttft?: Histogram;
  /** vllm:inter_token_latency_seconds (or vllm:time_per_output_token_seconds). */
  itl?: Histogram;
  /** vllm:num_preemptions_total when exposed. */
  preemptionsTotal?: number;
  /**
   * vLLM v1's prefix-cache counters, prompt tokens looked up in the cache (vllm:prefix_cache_queries_total) and
   * found there (vllm:prefix_cache_hits_total), cumulative since the engine started; absent when not exposed.
   */
  prefixCache?: { queries: number; hits: number };
  /** all parsed families, for anything else. */
  families: Map<string, MetricFamily>;
}

function sumOf(f: MetricFamily | undefined, sampleName: string): number | undefined {
  if (!f) return undefined;
  let s = 0;
  let seen = false;
  for (const x of f.samples) {
    if (x.name === sampleName) {
      s += x.value;
      seen = true;
    }
  }
  return seen ? s : undefined;
}

function histogramOf(f: MetricFamily | undefined): Histogram | undefined {
  if (!f) return undefined;
  const byLe = new Map<number, number>();
  let sum = 0;
  let count = 0;
  for (const x of f.samples) {
    if (x.name === `${f.name}_bucket`) {
      const le = x.labels.le;
      if (le === undefined) throw new MetricsParseError(`${f.name}_bucket without 'le' label`);
      const b = le === '+Inf' || le === 'Inf' ? Infinity : Number(le);
      if (Number.isNaN(b)) throw new MetricsParseError(`${f.name}_bucket has a bad 'le' label '${le}'`);
      byLe.set(b, (byLe.get(b) ?? 0) + x.value);
    } else if (x.name === `${f.name}_sum`) sum += x.value;
    else if (x.name === `${f.name}_count`) count += x.value;
  }
  if (byLe.size === 0) return undefined;
  const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c }));
  return { buckets, sum, count };
}

/** Quantile of a cumulative histogram by linear interpolation inside the bucket (as PromQL does). */
export function histogramQuantile(h: Histogram, q: number): number {
  const total = h.buckets.at(-1)?.count ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1e-12, b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** Parse vLLM /metrics text; throws MetricsParseError on bad format or missing load gauges. */
export function parseVllmMetrics(text: string): EngineMetrics {
  const fam = parsePrometheusText(text);
  const req = (names: string[]): number => {
    for (const n of names) {
      const v = sumOf(fam.get(n), n);
      if (v !== undefined && !Number.isNaN(v)) return v;
    }
    throw new MetricsParseError(`required metric ${names.join(' / ')} missing`);
  };
  const counter = (n: string): number => {
    const f = fam.get(n);
    return sumOf(f, `${n}_total`) ?? sumOf(f, n) ?? sumOf(fam.get(`${n}_total`), `${n}_total`) ?? 0;
  };
  const has = (n: string) => fam.has(n) || fam.has(`${n}_total`);
  return {
    numRequestsRunning: req(['vllm:num_requests_running']),
    numRequestsWaiting: req(['vllm:num_requests_waiting']),
    kvCacheUsage: req(['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc']),
    promptTokensTotal: counter('vllm:prompt_tokens'),
    generationTokensTotal: counter('vllm:generation_tokens'),
    requestSuccessTotal: counter('vllm:request_success'),
    preemptionsTotal: fam.has('vllm:num_preemptions') || fam.has('vllm:num_preemptions_total') ? counter('vllm:num_preemptions') : undefined,
    ...(has('vllm:prefix_cache_queries') && has('vllm:prefix_cache_hits') ? { prefixCache: { queries: counter('vllm:prefix_cache_queries'), hits: counter('vllm:prefix_cache_hits') } } : {}),
    ttft: histogramOf(fam.get('vllm:time_to_first_token_seconds')),
    itl: histogramOf(fam.get('vllm:inter_token_latency_seconds')) ?? histogramOf(fam.get('vllm:time_per_output_token_seconds')),
    families: fam,
  };
}

const PREFIX_QUERIES = 'vllm:prefix_cache_queries';
const PREFIX_HITS = 'vllm:prefix_cache_hits';

/**
 * vLLM v1's prefix-cache counters from a /metrics text, as `parseVllmMetrics(text).prefixCache` reads them (each the
 * sum over its label sets of its `_total` samples, else of its samples without the suffix; absent unless both are
 * named by a sample, HELP or TYPE line), without parsing the other ~180 lines: the instance manager reads only these
 * two every second while its engine runs requests, and the whole text's parse (its histograms) is most of that
 * read's CPU. Only the lines of these two families are checked (MetricsParseError on a bad value or label set).
 */
export function parseVllmPrefixCache(text: string): { queries: number; hits: number } | undefined {
  const q = { named: false, total: 0, totalSeen: false, plain: 0 };
  const h = { named: false, total: 0, totalSeen: false, plain: 0 };
  let from = 0;
  for (;;) {
    const at = text.indexOf('vllm:prefix_cache_', from);
    if (at < 0) break;
    const eol = text.indexOf('\n', at);
    const end = eol < 0 ? text.length : eol;
    from = end;
    const bol = text.lastIndexOf('\n', at) + 1;
    const line = text.slice(bol, end);
    const name = /^vllm:prefix_cache_[a-zA-Z0-9_:]*/.exec(text.slice(at, end))![0];
    const base = name.endsWith('_total') ? name.slice(0, -6) : name;
    const c = base === PREFIX_QUERIES ? q : base === PREFIX_HITS ? h : undefined;
    if (!c) continue;
    if (bol !== at) {
      // a name inside another line: only HELP/TYPE lines name these families (a label value may hold anything)
      if (/^#\s+(HELP|TYPE)\s+$/.test(text.slice(bol, at))) c.named = true;
      continue;
    }
    c.named = true;
    const value = sampleValue(line, name.length, text, bol);
    if (name === base) c.plain += value;
    else {
      c.total += value;
      c.totalSeen = true;
    }
  }
  if (!q.named || !h.named) return undefined;
  return { queries: q.totalSeen ? q.total : q.plain, hits: h.totalSeen ? h.total : h.plain };
}

/** The value of a sample line whose name ends at `p` (an optional label set, the value, an optional timestamp). */
function sampleValue(line: string, p: number, text: string, bol: number): number {
  const ln = () => text.slice(0, bol).split('\n').length;
  if (line[p] === '{') {
    // skip the label set: quoted values may hold '}' and escapes
    let inQuote = false;
    for (p++; ; p++) {
      const ch = line[p];
      if (ch === undefined) throw new MetricsParseError('unterminated label set', ln());
      if (inQuote) {
        if (ch === '\\') p++;
        else if (ch === '"') inQuote = false;
      } else if (ch === '"') inQuote = true;
      else if (ch === '}') break;
    }
    p++;
  }
  const rest = line.slice(p).trim().split(/\s+/);
  if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new MetricsParseError("expected 'value [timestamp]'", ln());
  try {
    return parseValue(rest[0]!, 0);
  } catch {
    throw new MetricsParseError(`bad value '${rest[0]}'`, ln());
  }
}
