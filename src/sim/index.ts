/**
 * Public API of the simulator: `simulate(opts)` runs one policy; `simulateMany` runs several, in worker
 * threads when there is more than one (see ./parallel.ts). Energy figures are modelled (src/model), with
 * the profile's provenance and calibration stated in every result.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createPerfModel, generateProfile, parseProfile, type Profile } from '../model/index.ts';
import { Simulation } from './engine.ts';
import { loadTrace, readTrace, synthTrace, type TraceRecord } from './trace.ts';
import type { SimOptions, SimResult, TraceSource } from './types.ts';

export * from './types.ts';
export { readTrace, synthTrace, loadTrace, type TraceRecord } from './trace.ts';
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

/** A re-startable record source for a trace (file or synthetic), time-compressed by rateScale. */
export async function recordSource(src: TraceSource, rateScale = 1): Promise<() => AsyncIterable<TraceRecord> | Iterable<TraceRecord>> {
  const scale = (r: TraceRecord): TraceRecord => (rateScale === 1 ? r : { ...r, tMs: r.tMs / rateScale });
  if (src.kind === 'file') {
    return () => (async function* () {
      for await (const r of readTrace(src.path, { startMs: src.startMs, durationMs: src.durationMs, limit: src.limit, skipBad: src.skipBad, rebase: true })) yield scale(r);
    })();
  }
  const lengthsFrom = src.lengthsFromFile ? await loadTrace(src.lengthsFromFile) : undefined;
  return () => (function* () {
    for (const r of synthTrace({ ...src, lengthsFrom })) yield scale(r);
  })();
}

export async function simulate(opts: SimOptions, onProgress?: (f: number) => void): Promise<SimResult> {
  const profile = profileFor(opts.model, opts.gpu, opts.profilePath);
  const perf = createPerfModel(opts.model, opts.gpu);
  const records = await recordSource(opts.trace, opts.rateScale ?? 1);
  const sim = new Simulation({ opts, profile, perf, records, carbonAt: carbonLookup(opts.carbon), onProgress });
  return sim.run();
}
