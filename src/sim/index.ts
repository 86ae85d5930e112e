/**
 * Public API of the simulator: `simulate(opts)` runs one policy; `simulateMany` runs several, in worker
 * threads when there is more than one (see ./parallel.ts). Energy figures are modelled (src/model), with
 * the profile's provenance and calibration stated in every result.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createPerfModel, generateProfile, parseProfile, perfModelOfProfile, type Profile } from '../model/index.ts';
import { DEFAULT_CONTEXT_FLOOR, Simulation, type EngineInputs } from './engine.ts';
import { classifyCached, forEachRecord, loadTrace, overContext, readTrace, rng, simThresholds, synthTrace, type TraceRecord } from './trace.ts';
import { DEFAULT_SLO_SETTINGS, DEFAULT_THRESHOLDS, thresholdsOf, type ClassThresholds } from '../policy/slo.ts';
import { maxLoadOf } from '../model/profile.ts';
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import type { HighsLike } from '../policy/milp.ts';
import type { SimOptions, SimResult, TraceSource } from './types.ts';

export * from './types.ts';
export { readTrace, synthTrace, loadTrace, detectTimeUnit, detectTraceTimeUnit, type TraceRecord, type TimeUnit } from './trace.ts';
export { POLICY_KNOBS, DEFAULT_COSTS, DEFAULT_EPOCHS } from './engine.ts';

const profileCache = new Map<string, Profile>();

/** The profile the sim decides with: opts.profilePath, else profiles/<model>.<gpu>.json, else generated from the model. */
export function profileFor(model: string, gpu: string, path?: string): Profile {
  const p = path ?? `profiles/${model}.${gpu}.json`;
  const key = `${model}|${gpu}|${p}`;
  let prof = profileCache.get(key);
  if (!prof) {
    prof = existsSync(p) ? parseProfile(JSON.parse(readFileSync(p, 'utf8'))) : generateProfile(createPerfModel(model, gpu));
    profileCache.set(key, prof);
  }
  return prof;
}

/** Carbon intensity lookup: a constant (gCO2/kWh) or a CSV `time_s,gco2_per_kwh` (step function, wraps around). */
export function carbonLookup(c: number | string | undefined): (tS: number) => number {
  if (c === undefined) return () => 400;
  if (typeof c === 'number') return () => c;
  const rows = readFileSync(c, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !/^[a-z_]/i.test(l));
  const pts = rows.map((l, i) => {
    const [a, b] = l.split(',').map(Number);
    if (!Number.isFinite(a) || !Number.isFinite(b)) throw new Error(`${c}: bad carbon row ${i + 1}: '${l}'`);
    return [a, b] as const;
  });
  if (!pts.length) throw new Error(`${c}: no carbon rows`);
  const span = pts[pts.length - 1][0] + (pts.length > 1 ? pts[1][0] - pts[0][0] : 3600);
  return (tS) => {
    const t = span > 0 ? tS % span : tS;
    let v = pts[0][1];
    for (const [ts, g] of pts) if (ts <= t) v = g;
    return v;
  };
}

/**
 * Replicate (k > 1) or thin (k < 1) a time-ordered record stream, keeping its duration: each record is
 * emitted floor(k) or ceil(k) times (the fraction drawn per record), copies after the first jittered by up
 * to `jitterMs`; a small heap keeps the output time-ordered. Deterministic for a seed.
 */
export function* amplify(src: Iterable<TraceRecord>, k: number, seed: number, jitterMs = 2000): Generator<TraceRecord> {
  if (k === 1) {
    yield* src;
    return;
  }
  const r = rng(seed);
  const heap: TraceRecord[] = [];
  const push = (x: TraceRecord) => {
    let i = heap.length;
    heap.push(x);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p].tMs <= x.tMs) break;
      heap[i] = heap[p];
      i = p;
    }
    heap[i] = x;
  };
  const pop = (): TraceRecord => {
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length) {
      let i = 0;
      while (true) {
        let c = 2 * i + 1;
        if (c >= heap.length) break;
        if (c + 1 < heap.length && heap[c + 1].tMs < heap[c].tMs) c++;
        if (heap[c].tMs >= last.tMs) break;
        heap[i] = heap[c];
        i = c;
      }
      heap[i] = last;
    }
    return top;
  };
  for (const x of src) {
    while (heap.length && heap[0].tMs <= x.tMs) yield pop();
    const n = Math.floor(k) + (r() < k - Math.floor(k) ? 1 : 0);
    for (let j = 0; j < n; j++) push(j === 0 ? x : { ...x, tMs: x.tMs + r() * jitterMs });
  }
  while (heap.length) yield pop();
}

async function* amplifyAsync(src: AsyncIterable<TraceRecord>, k: number, seed: number): AsyncGenerator<TraceRecord> {
  // batch the async source into sync chunks so the sync amplifier does the work
  const buf: TraceRecord[] = [];
  for await (const x of src) buf.push(x);
  yield* amplify(buf, k, seed);
}

/** A re-startable record source for a trace (file or synthetic), its arrival rate multiplied by rateScale. */
export async function recordSource(src: TraceSource, rateScale = 1, seed = 7): Promise<() => AsyncIterable<TraceRecord> | Iterable<TraceRecord>> {
  if (!(rateScale > 0)) throw new RangeError(`rateScale must be > 0, got ${rateScale}`);
  if (src.kind === 'file') {
    const read = () => readTrace(src.path, { startMs: src.startMs, durationMs: src.durationMs, limit: src.limit, skipBad: src.skipBad, rebase: true, timeUnit: src.timeUnit, speed: src.speed });
    if (rateScale === 1) return read;
    return () => amplifyAsync(read(), rateScale, seed + 101);
  }
  const lengthsFrom = src.lengthsFromFile ? await loadTrace(src.lengthsFromFile) : undefined;
  const gen = () => synthTrace({ ...src, meanRps: src.meanRps * rateScale, lengthsFrom });
  if (src.startMs === undefined && src.durationMs === undefined) return gen;
  const from = src.startMs ?? 0;
  const until = src.durationMs !== undefined ? from + src.durationMs : Infinity;
  return () => synthWindow(gen(), from, until);
}

/** The records of a synthetic trace in [fromMs, untilMs), their times from fromMs (the days' records are drawn whole, so a window holds the day's own requests). */
export function* synthWindow(src: Iterable<TraceRecord>, fromMs: number, untilMs: number): Generator<TraceRecord> {
  for (const x of src) {
    if (x.tMs >= untilMs) return;
    if (x.tMs >= fromMs) yield { ...x, tMs: x.tMs - fromMs };
  }
}

/**
 * The rate factor of `--rate-scale auto`: single-pool sizing for the trace's peak (5-minute average of
 * the per-minute arrivals, utilisation sum_t load_t / maxLoad_t at TP8 and max clock from the profile, with
 * `headroom` kept free) needs exactly `servers` servers after scaling. Requests are classified under `thresholds`
 * (the cluster's, SimOptions `thresholds`), their L input bound widened to the context as the run's (simThresholds).
 */
export async function autoRateScale(records: () => AsyncIterable<TraceRecord> | Iterable<TraceRecord>, profile: Profile, servers: number, gpusPerServer: number, headroom: number, maxContext = DEFAULT_CONTEXT_FLOOR, thresholds: ClassThresholds = DEFAULT_THRESHOLDS): Promise<number> {
  const th = simThresholds(thresholds, maxContext);
  const fmax = profile.clocksMhz[profile.clocksMhz.length - 1];
  const perMin: number[] = []; // utilisation-minutes: sum over requests of 1/maxLoad_t, per minute bin
  const inv = new Map<RequestType, number>();
  for (const t of REQUEST_TYPES) {
    const ml = maxLoadOf(profile, t, 8, fmax);
    inv.set(t, ml > 0 ? 1 / ml : 0);
  }
  await forEachRecord(records(), (r) => {
    const t = classifyCached(r.inputTokens, r.outputTokens, th);
    if (t === null || overContext(r, maxContext)) return;
    const b = Math.floor(r.tMs / 60000);
    while (perMin.length <= b) perMin.push(0);
    perMin[b] += inv.get(t)!;
  });
  let peak = 0;
  for (let b = 0; b < perMin.length; b++) {
    let s = 0, n = 0;
    for (let k = Math.max(0, b - 4); k <= b; k++, n++) s += perMin[k];
    peak = Math.max(peak, s / n / 60);
  }
  if (!(peak > 0)) throw new RangeError('rate-scale auto: the trace has no servable load');
  const instances = Math.floor((servers * gpusPerServer) / 8);
  return (instances * (1 - headroom)) / peak;
}

const autoCache = new Map<string, number>();
let highsP: Promise<HighsLike> | null = null;
/** HiGHS, loaded once per thread (the oracle's Eq. 1 solver and the pools' MILP planner's, the same one the live MilpPlanner worker uses). */
export function loadHighs(): Promise<HighsLike> {
  highsP ??= (async () => {
    const m = (await import('highs')) as unknown as { default: unknown };
    const loader = (typeof m.default === 'function' ? m.default : (m.default as { default: unknown }).default) as () => Promise<unknown>;
    return (await loader()) as HighsLike;
  })();
  return highsP;
}

/**
 * `taps.onInstanceStep`: every transition of every instance machine (step fidelity), for tests that replay them;
 * `taps.onPoolDecision`: each pool machine's re-shard decision with its inputs (the twin check's log);
 * `taps.onRequest`: each request served, its arrival, true type and TTFT (the twin check's per-request log);
 * `taps.onTokenGap`: each gap between a request's tokens after its first, with its arrival and true type (its TBTs).
 */
export async function simulate(opts: SimOptions, onProgress?: (f: number) => void, taps: Pick<EngineInputs, 'onInstanceStep' | 'onPoolDecision' | 'onRequest' | 'onTokenGap'> = {}): Promise<SimResult> {
  const profile = profileFor(opts.model, opts.gpu, opts.profilePath);
  // the step model is the one the profile was generated from (its engine generation), as in the emulator
  const perf = profile.source.kind === 'model' && profile.model === opts.model && profile.gpu === opts.gpu ? perfModelOfProfile(profile) : createPerfModel(opts.model, opts.gpu);
  let rateScale = opts.rateScale ?? 1;
  if (rateScale === 'auto') {
    // one pre-pass per (trace, profile, servers, headroom) in this thread: serial multi-policy runs share it
    const maxContext = opts.maxContext ?? Math.max(perf.model.maxContext, DEFAULT_CONTEXT_FLOOR);
    const thresholds = thresholdsOf({ thresholds: opts.thresholds ?? DEFAULT_SLO_SETTINGS.thresholds });
    const key = JSON.stringify([opts.trace, opts.model, opts.gpu, opts.profilePath, opts.servers, opts.headroom, maxContext, thresholds]);
    let k = autoCache.get(key);
    if (k === undefined) autoCache.set(key, (k = await autoRateScale(await recordSource(opts.trace, 1, opts.seed), profile, opts.servers, perf.gpu.gpusPerServer, opts.headroom ?? 0.2, maxContext, thresholds)));
    rateScale = k;
  }
  const records = await recordSource(opts.trace, rateScale, opts.seed);
  const highs = opts.policy === 'oracle' || opts.poolPlanner === 'milp' ? await loadHighs() : undefined;
  const sim = new Simulation({ opts: { ...opts, rateScale }, profile, perf, records, carbonAt: carbonLookup(opts.carbon), onProgress, highs, ...taps });
  return sim.run();
}
