/**
 * Request traces for the simulator and the replay tool.
 *
 * Formats read (detected from the first non-empty line):
 * - Azure LLM inference CSV, 2023 and 2024 releases: header `TIMESTAMP,ContextTokens,GeneratedTokens`
 *   (column order free, names case-insensitive). Timestamps `2023-11-16 18:15:46.6805900` (no zone, taken
 *   as UTC) or `2024-05-10 00:00:00.009930+00:00` (zone suffix honoured); a plain number is seconds.
 * - BurstGPT CSV: header `Timestamp,...,Request tokens,Response tokens,...` (numeric timestamps).
 * - JSONL: one object per line. Field names as public traces spell them: the time in `timestamp`, `time`,
 *   `arrival_time` or `arrival_timestamp` (a number or an ISO string); the prompt in `input_length`,
 *   `input_tokens`, `prompt_tokens` or `prompt_len`; the output in `output_length`, `output_tokens`,
 *   `completion_tokens` or `output_len`; optional `hash_ids`, the prefix-block hashes of the prompt
 *   (Mooncake/Kimi traces: one id per block of 512 tokens, equal ids = equal prefix content).
 * Numeric timestamps are in the unit `timeUnit` says (s, ms or us); 'auto' (the default) decides from the first
 * rows (see detectTimeUnit) and reports its choice in `stats`. ISO strings carry their own unit.
 * Files are read as a stream (node:readline), so week-long traces of tens of millions of rows never sit in
 * memory. A bad row is an error naming the file and line, unless `skipBad` is set, in which case it is
 * counted (`stats.skipped`) and reported by the caller: never silently dropped.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { classifyLengths, DEFAULT_THRESHOLDS } from '../model/request-types.ts';
import type { ClassThresholds } from '../model/types.ts';
import type { RequestType } from '../../protocols/request-types.ts';

export interface TraceRecord {
  /** arrival time, ms relative to the first row of the trace. */
  tMs: number;
  inputTokens: number;
  outputTokens: number;
  /** prefix-block hashes of the prompt, when the trace carries them (block size: the trace's, e.g. 512 tokens). */
  hashIds?: number[];
}

export const TIME_UNITS = ['s', 'ms', 'us'] as const;
export type TimeUnit = (typeof TIME_UNITS)[number];
const UNIT_MS: Record<TimeUnit, number> = { s: 1000, ms: 1, us: 0.001 };

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
  /** filled while reading: rows read, rows skipped as bad, the time unit of numeric timestamps and why. */
  stats?: TraceStats;
  /** unit of numeric timestamps; default 'auto' (detectTimeUnit over the first rows). */
  timeUnit?: TimeUnit | 'auto';
  /** re-base tMs so the first record of the window is at 0. default false (tMs stays relative to row 1). */
  rebase?: boolean;
  /**
   * time compression, as `replay --speed`: tMs = trace time / speed (the window, startMs and durationMs, is in
   * trace time). default 1.
   */
  speed?: number;
}

export interface TraceStats {
  rows: number;
  skipped: number;
  timeUnit?: TimeUnit;
  /** how the unit was chosen ('given', or the auto-detection's evidence). */
  timeUnitReason?: string;
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

/** A timestamp field: a number in the trace's unit (numeric: true), or epoch ms from a date string. */
function parseTs(v: unknown): { ts: number; numeric: boolean } {
  if (typeof v === 'number') return { ts: v, numeric: true };
  if (typeof v !== 'string') return { ts: NaN, numeric: false };
  const t = v.trim();
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t)) return { ts: Number(t), numeric: true };
  return { ts: parseTimestampMs(t), numeric: false };
}

function parseCount(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 0 ? n : NaN;
}

interface Row {
  ts: number;
  /** ts is a number in the trace's time unit (else epoch ms from a date string). */
  numeric: boolean;
  input: number;
  output: number;
  hashIds?: number[];
}
type RowParser = (line: string) => Row | string;

const CSV_INPUT = ['contexttokens', 'request tokens'];
const CSV_OUTPUT = ['generatedtokens', 'response tokens'];

function csvParser(header: string): RowParser | string {
  const cols = header.split(',').map((c) => c.trim().toLowerCase());
  const it = cols.indexOf('timestamp');
  const ii = cols.findIndex((c) => CSV_INPUT.includes(c));
  const io = cols.findIndex((c) => CSV_OUTPUT.includes(c));
  if (it < 0 || ii < 0 || io < 0) return `expected a header with TIMESTAMP, ContextTokens, GeneratedTokens (or BurstGPT's Timestamp, Request tokens, Response tokens); got '${header}'`;
  const n = cols.length;
  return (line) => {
    const f = line.split(',');
    if (f.length !== n) return `expected ${n} fields, got ${f.length}`;
    const { ts, numeric } = parseTs(f[it]);
    if (!Number.isFinite(ts)) return `bad TIMESTAMP '${f[it]}'`;
    const input = parseCount(f[ii]);
    if (Number.isNaN(input)) return `bad ContextTokens '${f[ii]}'`;
    const output = parseCount(f[io]);
    if (Number.isNaN(output)) return `bad GeneratedTokens '${f[io]}'`;
    return { ts, numeric, input, output };
  };
}

const J_TIME = ['timestamp', 'time', 'arrival_time', 'arrival_timestamp'];
const J_INPUT = ['input_length', 'input_tokens', 'prompt_tokens', 'prompt_len'];
const J_OUTPUT = ['output_length', 'output_tokens', 'completion_tokens', 'output_len'];
const pick = (r: Record<string, unknown>, names: string[]): [string, unknown] => {
  for (const n of names) if (r[n] !== undefined) return [n, r[n]];
  return [names[0], undefined];
};

const jsonlParser: RowParser = (line) => {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return 'not valid JSON';
  }
  if (typeof o !== 'object' || o === null) return 'expected a JSON object';
  const r = o as Record<string, unknown>;
  const [tn, tv] = pick(r, J_TIME);
  const { ts, numeric } = parseTs(tv);
  if (!Number.isFinite(ts)) return `bad ${tn} '${String(tv)}' (time field: ${J_TIME.join(', ')})`;
  const [inn, inv] = pick(r, J_INPUT);
  const input = parseCount(inv);
  if (Number.isNaN(input)) return `bad ${inn} '${String(inv)}' (prompt field: ${J_INPUT.join(', ')})`;
  const [on, ov] = pick(r, J_OUTPUT);
  const output = parseCount(ov);
  if (Number.isNaN(output)) return `bad ${on} '${String(ov)}' (output field: ${J_OUTPUT.join(', ')})`;
  if (r.hash_ids === undefined) return { ts, numeric, input, output };
  if (!Array.isArray(r.hash_ids) || !r.hash_ids.every((h) => typeof h === 'number' && Number.isInteger(h))) return 'hash_ids must be an array of integers';
  return { ts, numeric, input, output, hashIds: r.hash_ids as number[] };
};

/** Rows auto-detection looks at. */
export const DETECT_ROWS = 1000;

/**
 * The unit of numeric timestamps, from the first rows' values (`ts`, raw numbers in file order):
 * - epoch-sized values: by magnitude (>= 1e14 us, >= 1e11 ms, >= 1e8 s: each is after 1973 in its unit);
 * - relative values (a trace starting at 0): seconds unless every value is an integer and reading them as
 *   seconds gives fewer than one request per 100 s on average over the rows looked at (the public Mooncake
 *   traces read as seconds give 0.001-0.007 req/s; BurstGPT's integer seconds average 0.13 req/s); then ms,
 *   and us by the same rule one step down.
 * Returns the unit and the evidence, for the caller to print.
 */
export function detectTimeUnit(ts: readonly number[]): { unit: TimeUnit; reason: string } {
  if (!ts.length) return { unit: 's', reason: 'no numeric timestamps; seconds' };
  const first = ts[0];
  const abs = Math.abs(first);
  if (abs >= 1e14) return { unit: 'us', reason: `epoch-sized first timestamp ${first} (>= 1e14): microseconds` };
  if (abs >= 1e11) return { unit: 'ms', reason: `epoch-sized first timestamp ${first} (>= 1e11): milliseconds` };
  if (abs >= 1e8) return { unit: 's', reason: `epoch-sized first timestamp ${first} (>= 1e8): seconds` };
  let lo = Infinity, hi = -Infinity, ints = true;
  for (const t of ts) {
    if (t < lo) lo = t;
    if (t > hi) hi = t;
    if (!Number.isInteger(t)) ints = false;
  }
  const span = hi - lo;
  const n = ts.length;
  if (!(span > 0) || n < 2) return { unit: 's', reason: `${n} row(s) over a span of 0: seconds` };
  const rate = (unitS: number) => (n - 1) / (span * unitS);
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(2));
  const MIN_RPS = 0.01;
  const ev = `${n} rows over ${span} units`;
  if (!ints) return { unit: 's', reason: `fractional timestamps, ${ev}: seconds (${fmt(rate(1))} req/s)` };
  if (rate(1) >= MIN_RPS) return { unit: 's', reason: `integer timestamps, ${ev}: as seconds ${fmt(rate(1))} req/s` };
  if (rate(1e-3) >= MIN_RPS) return { unit: 'ms', reason: `integer timestamps, ${ev}: as seconds ${fmt(rate(1))} req/s (< ${MIN_RPS}), as ms ${fmt(rate(1e-3))} req/s` };
  return { unit: 'us', reason: `integer timestamps, ${ev}: as ms ${fmt(rate(1e-3))} req/s (< ${MIN_RPS}), as us ${fmt(rate(1e-6))} req/s` };
}

/** Detect the time unit of a trace file's numeric timestamps from its first DETECT_ROWS rows (undefined for date strings). */
export async function detectTraceTimeUnit(path: string): Promise<{ unit: TimeUnit; reason: string } | undefined> {
  const stats: TraceStats = { rows: 0, skipped: 0 };
  for await (const _ of readTrace(path, { limit: 1, stats, skipBad: true })) break;
  return stats.timeUnit === undefined ? undefined : { unit: stats.timeUnit, reason: stats.timeUnitReason ?? '' };
}

/**
 * Stream a trace file. Records come in file order; `tMs` is relative to the first valid row (the Azure
 * traces are time-ordered; consumers that need monotonic time clamp small inversions).
 */
export async function* readTrace(path: string, opts: ReadTraceOptions = {}): AsyncGenerator<TraceRecord> {
  const startMs = opts.startMs ?? 0;
  const endMs = opts.durationMs === undefined ? Infinity : startMs + opts.durationMs;
  const limit = opts.limit ?? Infinity;
  const speed = opts.speed ?? 1;
  if (!(speed > 0 && Number.isFinite(speed))) throw new RangeError(`trace speed must be a positive number, got ${opts.speed}`);
  if (!(startMs >= 0 && Number.isFinite(startMs))) throw new RangeError(`trace window start must be a number >= 0, got ${opts.startMs}`);
  const stats = opts.stats ?? { rows: 0, skipped: 0 };
  const input = createReadStream(path, { encoding: 'utf8' });
  const rl = createInterface({ input, crlfDelay: Infinity });
  let parser: RowParser | undefined;
  let lineNo = 0;
  let t0 = NaN;
  let base = NaN;
  let emitted = 0;
  let unitMs = NaN;
  if (opts.timeUnit !== undefined && opts.timeUnit !== 'auto') {
    unitMs = UNIT_MS[opts.timeUnit];
    stats.timeUnit = opts.timeUnit;
    stats.timeUnitReason = 'given';
  }
  // rows held back until the time unit is known (auto: the first DETECT_ROWS numeric rows decide)
  let held: Row[] | null = Number.isNaN(unitMs) ? [] : null;
  let done = false;
  // returns true when the caller should stop
  function* emit(r: Row): Generator<TraceRecord, boolean> {
    const ts = r.numeric ? r.ts * unitMs : r.ts;
    if (Number.isNaN(t0)) t0 = ts;
    const rel = ts - t0;
    if (rel < startMs) return false;
    if (rel >= endMs) return true;
    if (Number.isNaN(base)) base = opts.rebase ? rel : 0;
    const rec: TraceRecord = { tMs: (rel - base) / speed, inputTokens: r.input, outputTokens: r.output };
    if (r.hashIds) rec.hashIds = r.hashIds;
    yield rec;
    return ++emitted >= limit;
  }
  function* release(): Generator<TraceRecord, boolean> {
    const rows = held ?? [];
    held = null;
    if (Number.isNaN(unitMs)) {
      const numeric = rows.filter((r) => r.numeric).map((r) => r.ts);
      if (numeric.length) {
        const d = detectTimeUnit(numeric);
        unitMs = UNIT_MS[d.unit];
        stats.timeUnit = d.unit;
        stats.timeUnitReason = `auto: ${d.reason}`;
      } else unitMs = 1000;
    }
    for (const r of rows) if (yield* emit(r)) return true;
    return false;
  }
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
      if (held) {
        held.push(r);
        if (held.length < DETECT_ROWS) continue;
        if ((done = yield* release())) break;
        continue;
      }
      if ((done = yield* emit(r))) break;
    }
    if (!done && held) yield* release();
  } finally {
    rl.close();
    // closing the reader leaves its file open when it stopped early (a bad row, a limit): one descriptor per call
    input.destroy();
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

const classMemos = new WeakMap<ClassThresholds, Map<number, RequestType | null>>();
/**
 * classifyLengths memoised on (input, output) tokens, one memo per thresholds object (pass the same object for a
 * run); null where it throws (negative or over-long input). `thresholds` are the cluster's (SimOptions `thresholds`,
 * the config's), its L input bound widened to a long-context model's context (simThresholds), so the model's long
 * prompts are L-input requests rather than unservable. A week's fluid run classifies ~14 million records over three
 * passes (rate scale, load template, run) from a few thousand distinct length pairs.
 */
export function classifyCached(inputTokens: number, outputTokens: number, thresholds: ClassThresholds = DEFAULT_THRESHOLDS): RequestType | null {
  let classMemo = classMemos.get(thresholds);
  if (!classMemo) {
    classMemo = new Map();
    classMemos.set(thresholds, classMemo);
  }
  // one small-integer key (a V8 Smi: hashed fast) for the common lengths; others are classified each time
  const memo = inputTokens >= 0 && outputTokens >= 0 && inputTokens < 2 ** 17 && outputTokens < 2 ** 13 && Number.isInteger(inputTokens) && Number.isInteger(outputTokens);
  const key = inputTokens * 2 ** 13 + outputTokens;
  if (memo) {
    const hit = classMemo.get(key);
    if (hit !== undefined) return hit;
  }
  let t: RequestType | null;
  try {
    t = classifyLengths(inputTokens, outputTokens, thresholds);
  } catch {
    t = null;
  }
  if (memo) {
    if (classMemo.size >= 1_000_000) classMemo.clear();
    classMemo.set(key, t);
  }
  return t;
}

/**
 * The L input class's upper bound for a model: the thresholds' (`inputL`, Table IV's 8192 by default), or the
 * model's context when longer (Table IV's classes were drawn for 4k-8k models; a 128k model serves longer prompts,
 * in the L pools).
 */
export function longInputClassBound(maxContext: number, inputL: number = DEFAULT_THRESHOLDS.inputUpper.L): number {
  return Math.max(inputL, maxContext);
}

/** The simulator's class thresholds for a model: `th` with its L input bound widened to the context (longInputClassBound). */
export function simThresholds(th: ClassThresholds, maxContext: number): ClassThresholds {
  return { inputUpper: { ...th.inputUpper, L: longInputClassBound(maxContext, th.inputUpper.L) }, outputUpper: { ...th.outputUpper } };
}

/** A request the model cannot take: prompt + output over its context (vLLM refuses it with a 400). */
export function overContext(r: { inputTokens: number; outputTokens: number }, maxContext: number): boolean {
  return r.inputTokens + r.outputTokens > maxContext;
}

/** Visit every record of a source, synchronously when it is a sync iterable (for await costs a microtask per record). */
export async function forEachRecord(src: AsyncIterable<TraceRecord> | Iterable<TraceRecord>, f: (r: TraceRecord) => void): Promise<void> {
  if (Symbol.asyncIterator in src) for await (const r of src) f(r);
  else for (const r of src as Iterable<TraceRecord>) f(r);
}
