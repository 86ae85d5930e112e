/**
 * A strict parser of the Prometheus text exposition format (0.0.4), enough to read vLLM's /metrics and
 * to reject garbage with a line number instead of silently returning zeros. Also extracts the vLLM
 * families the instance manager needs (EngineMetrics).
 */
import { MetricsParseError } from './errors.ts';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help?: string;
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s: string, line: number): number {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  // Number('') is 0 and Number('0x10') is 16: be stricter than Number().
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new MetricsParseError(`bad sample value '${s}'`, line);
  return Number(s);
}

/** Family name of a sample (strip histogram/summary suffixes when the family is declared). */
function familyOf(name: string, families: Map<string, MetricFamily>): string {
  for (const suf of ['_bucket', '_sum', '_count', '_created', '_total']) {
    if (name.endsWith(suf)) {
      const base = name.slice(0, -suf.length);
      const f = families.get(base);
      if (f && (suf !== '_total' || f.type === 'counter')) return base;
    }
  }
  return name;
}

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i].trimEnd();
    const line = raw.trimStart();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!m) continue; // ordinary comment
      const [, kw, name, rest = ''] = m;
      if (!NAME_RE.test(name)) throw new MetricsParseError(`bad metric name '${name}'`, lineNo);
      let f = families.get(name);
      if (!f) families.set(name, (f = { name, type: 'untyped', samples: [] }));
      if (kw === 'TYPE') {
        if (!TYPES.has(rest.trim())) throw new MetricsParseError(`bad metric type '${rest}'`, lineNo);
        f.type = rest.trim() as MetricFamily['type'];
      } else f.help = rest;
      continue;
    }
    // name{labels} value [timestamp]
    let p = 0;
    while (p < line.length && /[a-zA-Z0-9_:]/.test(line[p])) p++;
    const name = line.slice(0, p);
    if (!NAME_RE.test(name)) throw new MetricsParseError(`bad metric name in '${line.slice(0, 60)}'`, lineNo);
    const labels: Record<string, string> = {};
    if (line[p] === '{') {
      p++;
      for (;;) {
        while (line[p] === ' ') p++;
        if (line[p] === '}') {
          p++;
          break;
        }
        const eq = line.indexOf('=', p);
        if (eq < 0) throw new MetricsParseError('unterminated label set', lineNo);
        const lname = line.slice(p, eq).trim();
        if (!LABEL_RE.test(lname)) throw new MetricsParseError(`bad label name '${lname}'`, lineNo);
        p = eq + 1;
        if (line[p] !== '"') throw new MetricsParseError(`label '${lname}' value is not quoted`, lineNo);
        p++;
        let v = '';
        for (;;) {
          if (p >= line.length) throw new MetricsParseError('unterminated label value', lineNo);
          const c = line[p++];
          if (c === '"') break;
          if (c === '\\') {
            const n = line[p++];
            v += n === 'n' ? '\n' : n;
          } else v += c;
        }
        labels[lname] = v;
        while (line[p] === ' ') p++;
        if (line[p] === ',') p++;
        else if (line[p] !== '}') throw new MetricsParseError(`expected ',' or '}' after label '${lname}'`, lineNo);
      }
    }
    const rest = line.slice(p).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new MetricsParseError(`expected 'value [timestamp]' after '${name}'`, lineNo);
    const value = parseValue(rest[0], lineNo);
    if (rest.length === 2 && !/^-?\d+$/.test(rest[1])) throw new MetricsParseError(`bad timestamp '${rest[1]}'`, lineNo);
    const fam = familyOf(name, families);
    let f = families.get(fam);
    if (!f) families.set(fam, (f = { name: fam, type: 'untyped', samples: [] }));
    f.samples.push({ name, labels, value });
  }
  return families;
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
      const b = parseValue(le, 0);
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
  return {
    numRequestsRunning: req(['vllm:num_requests_running']),
    numRequestsWaiting: req(['vllm:num_requests_waiting']),
    kvCacheUsage: req(['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc']),
    promptTokensTotal: counter('vllm:prompt_tokens'),
    generationTokensTotal: counter('vllm:generation_tokens'),
    requestSuccessTotal: counter('vllm:request_success'),
    preemptionsTotal: fam.has('vllm:num_preemptions') || fam.has('vllm:num_preemptions_total') ? counter('vllm:num_preemptions') : undefined,
    ttft: histogramOf(fam.get('vllm:time_to_first_token_seconds')),
    itl: histogramOf(fam.get('vllm:inter_token_latency_seconds')) ?? histogramOf(fam.get('vllm:time_per_output_token_seconds')),
    families: fam,
  };
}
