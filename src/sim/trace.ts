/**
 * Request traces for the simulator and the replay tool.
 *
 * Formats read (detected from the first non-empty line):
 * - Azure LLM inference CSV, 2023 and 2024 releases: header `TIMESTAMP,ContextTokens,GeneratedTokens`
 *   (column order free, names case-insensitive). Timestamps `2023-11-16 18:15:46.6805900` (no zone, taken
 *   as UTC) or `2024-05-10 00:00:00.009930+00:00` (zone suffix honoured); a plain number is seconds.
 * - JSONL: one object per line `{timestamp, input_length, output_length}`; `timestamp` is seconds (number)
 *   or an ISO string.
 * Files are read as a stream (node:readline), so week-long traces of tens of millions of rows never sit in
 * memory. A bad row is an error naming the file and line, unless `skipBad` is set, in which case it is
 * counted (`stats.skipped`) and reported by the caller: never silently dropped.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { classifyLengths } from '../model/request-types.ts';
import type { RequestType } from '../../protocols/request-types.ts';

export interface TraceRecord {
  /** arrival time, ms relative to the first row of the trace. */
  tMs: number;
  inputTokens: number;
  outputTokens: number;
}

export class TraceFormatError extends Error {
  override name = 'TraceFormatError';
  readonly retryable = false;
  constructor(
    message: string,
    readonly file: string,
    readonly line: number,
  ) {
    super(`${file}:${line}: ${message}`);
  }
}

export interface ReadTraceOptions {
  /** stop after this many records (after the window filter). default: no limit. */
  limit?: number;
  /** skip records before this offset from the first row, ms. default 0. */
  startMs?: number;
  /** stop at startMs + durationMs, ms. default: to the end. */
  durationMs?: number;
  /** count and skip malformed rows instead of throwing. default false. */
  skipBad?: boolean;
  /** filled while reading: rows read, rows skipped as bad. */
  stats?: { rows: number; skipped: number };
  /** re-base tMs so the first record of the window is at 0. default false (tMs stays relative to row 1). */
  rebase?: boolean;
}

const TS_RE = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/** Parse a trace timestamp to epoch ms (fractional ms kept). Returns NaN when it is not one. */
export function parseTimestampMs(s: string): number {
  const t = s.trim();
  if (t === '') return NaN;
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t)) return Number(t) * 1000;
  const m = TS_RE.exec(t);
  if (!m) return NaN;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +sec);
  if (frac) ms += Number('0.' + frac) * 1000;
  if (zone && zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const offMin = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0');
    ms -= sign * offMin * 60_000;
  }
  return ms;
}

function parseCount(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 0 ? n : NaN;
}

type RowParser = (line: string) => { ts: number; input: number; output: number } | string;

function csvParser(header: string): RowParser | string {
  const cols = header.split(',').map((c) => c.trim().toLowerCase());
  const it = cols.indexOf('timestamp');
  const ii = cols.indexOf('contexttokens');
  const io = cols.indexOf('generatedtokens');
  if (it < 0 || ii < 0 || io < 0) return `expected a header with TIMESTAMP, ContextTokens, GeneratedTokens; got '${header}'`;
  const n = cols.length;
  return (line) => {
    const f = line.split(',');
    if (f.length !== n) return `expected ${n} fields, got ${f.length}`;
    const ts = parseTimestampMs(f[it]);
    if (!Number.isFinite(ts)) return `bad TIMESTAMP '${f[it]}'`;
    const input = parseCount(f[ii]);
    if (Number.isNaN(input)) return `bad ContextTokens '${f[ii]}'`;
    const output = parseCount(f[io]);
    if (Number.isNaN(output)) return `bad GeneratedTokens '${f[io]}'`;
    return { ts, input, output };
  };
}

const jsonlParser: RowParser = (line) => {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return 'not valid JSON';
  }
  if (typeof o !== 'object' || o === null) return 'expected a JSON object';
  const r = o as Record<string, unknown>;
  const ts = typeof r.timestamp === 'number' ? r.timestamp * 1000 : typeof r.timestamp === 'string' ? parseTimestampMs(r.timestamp) : NaN;
  if (!Number.isFinite(ts)) return `bad timestamp '${String(r.timestamp)}'`;
  const input = parseCount(r.input_length);
  if (Number.isNaN(input)) return `bad input_length '${String(r.input_length)}'`;
  const output = parseCount(r.output_length);
  if (Number.isNaN(output)) return `bad output_length '${String(r.output_length)}'`;
  return { ts, input, output };
};

/**
 * Stream a trace file. Records come in file order; `tMs` is relative to the first valid row (the Azure
 * traces are time-ordered; consumers that need monotonic time clamp small inversions).
 */
export async function* readTrace(path: string, opts: ReadTraceOptions = {}): AsyncGenerator<TraceRecord> {
  const startMs = opts.startMs ?? 0;
  const endMs = opts.durationMs === undefined ? Infinity : startMs + opts.durationMs;
  const limit = opts.limit ?? Infinity;
  const stats = opts.stats ?? { rows: 0, skipped: 0 };
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let parser: RowParser | undefined;
  let lineNo = 0;
  let t0 = NaN;
  let base = NaN;
  let emitted = 0;
  try {
    for await (const raw of rl) {
      lineNo++;
      const line = raw.trim();
      if (line === '') continue;
      if (!parser) {
        if (line.startsWith('{')) parser = jsonlParser;
        else {
          const p = csvParser(line);
          if (typeof p === 'string') throw new TraceFormatError(p, path, lineNo);
          parser = p;
          continue; // header row
        }
      }
      stats.rows++;
      const r = parser(line);
      if (typeof r === 'string') {
        if (opts.skipBad) {
          stats.skipped++;
          continue;
        }
        throw new TraceFormatError(r, path, lineNo);
      }
      if (Number.isNaN(t0)) t0 = r.ts;
      const rel = r.ts - t0;
      if (rel < startMs) continue;
      if (rel >= endMs) break;
      if (Number.isNaN(base)) base = opts.rebase ? rel : 0;
      yield { tMs: rel - base, inputTokens: r.input, outputTokens: r.output };
      if (++emitted >= limit) break;
    }
  } finally {
    rl.close();
  }
  if (!parser) throw new TraceFormatError('empty trace', path, lineNo);
}

/** Read a whole (small) trace into memory. */
export async function loadTrace(path: string, opts: ReadTraceOptions = {}): Promise<TraceRecord[]> {
  const out: TraceRecord[] = [];
  for await (const r of readTrace(path, opts)) out.push(r);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Synthetic traces

export interface SynthOptions {
  /** length of the trace, s. */
  durationS: number;
  /** average arrival rate over whole days, requests/s. */
  meanRps: number;
  /**
   * 'conversation' / 'coding': diurnal wave with a weekend dip, affinely mapped so that over whole days
   * peak/avg = peakToAvg and avg/valley = avgToValley (defaults: the paper's 1.7 and 3.3/1.7 for
   * conversation; 2.8 and 34.6/2.8 for coding). 'poisson': constant-rate Poisson. 'flat': evenly spaced.
   */
  shape: 'conversation' | 'coding' | 'flat' | 'poisson';
  peakToAvg?: number;
  avgToValley?: number;
  /** (input, output) pairs are drawn uniformly from these; default: a built-in lognormal mix. */
  lengthsFrom?: TraceRecord[];
  seed: number;
}

/** Deterministic PRNG (mulberry32): same seed, same trace. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BIN_S = 60;
const DAY_S = 86_400;

const shapeMemo = new Map<string, Float64Array>();
/**
 * Per-minute rate multipliers (mean 1 over whole days) for a shape, covering `durationS` (at least a week
 * is computed so the ratios hold over whole days and weeks).
 * Memoised (a run asks for the same shape in each of its passes); callers get a copy.
 */
export function shapeMultipliers(shape: SynthOptions['shape'], durationS: number, peakToAvg?: number, avgToValley?: number): Float64Array {
  const key = `${shape}|${durationS}|${peakToAvg}|${avgToValley}`;
  let m = shapeMemo.get(key);
  if (!m) {
    m = shapeMultipliersOnce(shape, durationS, peakToAvg, avgToValley);
    if (shapeMemo.size > 16) shapeMemo.clear();
    shapeMemo.set(key, m);
  }
  return m.slice();
}

function shapeMultipliersOnce(shape: SynthOptions['shape'], durationS: number, peakToAvg?: number, avgToValley?: number): Float64Array {
  const bins = Math.max(1, Math.ceil(durationS / BIN_S));
  if (shape === 'flat' || shape === 'poisson') return new Float64Array(bins).fill(1);
  const pa = peakToAvg ?? (shape === 'coding' ? 2.8 : 1.7);
  const av = avgToValley ?? (shape === 'coding' ? 34.6 / 2.8 : 3.3 / 1.7);
  const peak = pa;
  const valley = 1 / av;
  if (!(peak > 1 && valley < 1 && valley > 0)) throw new RangeError(`synthTrace: need peakToAvg > 1 and avgToValley > 1`);
  // Raw wave in [0,1] over one week of minute bins: a daily sine (peak mid-afternoon) times a weekday factor
  // (weekends at 85%); raised to a power p chosen so the mapped mean is exactly 1.
  const weekBins = (7 * DAY_S) / BIN_S;
  const raw = new Float64Array(weekBins);
  for (let i = 0; i < weekBins; i++) {
    const t = i * BIN_S;
    const day = Math.floor(t / DAY_S);
    const daily = (1 + Math.sin((2 * Math.PI * (t % DAY_S)) / DAY_S - Math.PI / 2 - Math.PI / 6)) / 2; // min ~ 02:00
    raw[i] = daily * (day >= 5 ? 0.85 : 1);
  }
  const target = (1 - valley) / (peak - valley); // needed mean of g in [0,1]
  const meanOf = (p: number) => {
    let s = 0;
    for (let i = 0; i < weekBins; i++) s += raw[i] ** p;
    return s / weekBins;
  };
  let lo = 0.01;
  let hi = 50;
  for (let k = 0; k < 60; k++) {
    const mid = Math.sqrt(lo * hi);
    if (meanOf(mid) > target) lo = mid;
    else hi = mid;
  }
  const p = Math.sqrt(lo * hi);
  const out = new Float64Array(bins);
  for (let i = 0; i < bins; i++) out[i] = valley + (peak - valley) * raw[i % weekBins] ** p;
  return out;
}

function defaultLengths(r: () => number): [number, number] {
  // Box-Muller lognormal, shaped like the Azure conversation trace (median input ~1k, output ~200).
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const input = Math.min(8192, Math.max(1, Math.round(Math.exp(6.7 + 0.9 * g()))));
  const output = Math.min(2048, Math.max(1, Math.round(Math.exp(5.2 + 0.9 * g()))));
  return [input, output];
}

/** Generate a synthetic trace lazily (a week at 100 req/s is 60M records: never materialised). */
export function* synthTrace(opts: SynthOptions): Generator<TraceRecord> {
  if (!(opts.durationS > 0) || !(opts.meanRps > 0)) throw new RangeError('synthTrace: durationS and meanRps must be > 0');
  const r = rng(opts.seed);
  const mult = shapeMultipliers(opts.shape, opts.durationS, opts.peakToAvg, opts.avgToValley);
  const lengths = opts.lengthsFrom;
  if (lengths && lengths.length === 0) throw new RangeError('synthTrace: lengthsFrom is empty');
  const draw = (): [number, number] => {
    if (!lengths) return defaultLengths(r);
    const x = lengths[Math.floor(r() * lengths.length)];
    return [x.inputTokens, x.outputTokens];
  };
  const endMs = opts.durationS * 1000;
  if (opts.shape === 'flat') {
    const gap = 1000 / opts.meanRps;
    for (let t = 0; t < endMs; t += gap) {
      const [i, o] = draw();
      yield { tMs: t, inputTokens: i, outputTokens: o };
    }
    return;
  }
  // Non-homogeneous Poisson with a piecewise-constant (per-minute) rate: consume unit-exponential "mass"
  // across bins, exact for piecewise-constant rates.
  let bin = 0;
  let tInBin = 0; // s
  while (true) {
    let e = -Math.log(1 - r());
    while (true) {
      if (bin >= mult.length) return;
      const rate = opts.meanRps * mult[bin];
      const left = BIN_S - tInBin;
      if (rate * left >= e) {
        tInBin += e / rate;
        break;
      }
      e -= rate * left;
      bin++;
      tInBin = 0;
    }
    const tMs = (bin * BIN_S + tInBin) * 1000;
    if (tMs >= endMs) return;
    if (lengths) {
      // draw() without its tuple (the same single draw from r)
      const x = lengths[Math.floor(r() * lengths.length)]!;
      yield { tMs, inputTokens: x.inputTokens, outputTokens: x.outputTokens };
      continue;
    }
    const [i, o] = draw();
    yield { tMs, inputTokens: i, outputTokens: o };
  }
}

const classMemo = new Map<number, RequestType | null>();
/**
 * classifyLengths (default thresholds) memoised on (input, output) tokens; null where it throws (negative or
 * over-long input). A week's fluid run classifies ~14 million records over three passes (rate scale, load
 * template, run) from a few thousand distinct length pairs.
 */
export function classifyCached(inputTokens: number, outputTokens: number): RequestType | null {
  // one small-integer key (a V8 Smi: hashed fast) for the common lengths; others are classified each time
  const memo = inputTokens >= 0 && outputTokens >= 0 && inputTokens < 2 ** 16 && outputTokens < 2 ** 14 && Number.isInteger(inputTokens) && Number.isInteger(outputTokens);
  const key = inputTokens * 2 ** 14 + outputTokens;
  if (memo) {
    const hit = classMemo.get(key);
    if (hit !== undefined) return hit;
  }
  let t: RequestType | null;
  try {
    t = classifyLengths(inputTokens, outputTokens);
  } catch {
    t = null;
  }
  if (memo) {
    if (classMemo.size >= 1_000_000) classMemo.clear();
    classMemo.set(key, t);
  }
  return t;
}

/** Visit every record of a source, synchronously when it is a sync iterable (for await costs a microtask per record). */
export async function forEachRecord(src: AsyncIterable<TraceRecord> | Iterable<TraceRecord>, f: (r: TraceRecord) => void): Promise<void> {
  if (Symbol.asyncIterator in src) for await (const r of src) f(r);
  else for (const r of src as Iterable<TraceRecord>) f(r);
}
