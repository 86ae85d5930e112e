/**
 * Pool dispatch decisions per second (src/policy/dispatch.ts dispatchRequest, what the pool leader runs for
 * every request) on one pool of 16 TP2 Llama-3.1-8B instances (deploy/replay-large.yaml's layout) at a
 * mixed load of all nine types (~48 req/s over the pool, the conversation trace's mix), against a baseline
 * measured in the same run: the straightforward formulation of the same rule (energy.ts mixCurve + powerAt
 * per instance, built whole on every request, with none of dispatch.ts's memoised points), whose decisions the fast path must
 * equal (checked on every baseline call). Profile energy is modelled (profiles/llama3.1-8b.h100.json).
 *
 * Three rows: the baseline; `cold`, every request sees new load objects (no score reuse: the simulator's
 * case, or a status for every instance between two requests); `live`, the pool leader's pattern (each
 * dispatch bumps the chosen instance's queue, one instance's status, with a new EWMA load, arrives every
 * third request: 48 req/s against 16 statuses/s).
 */
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { maxLoadOf } from '../../src/model/profile.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { dispatchRequest, instantHeadroom, leastOutstandingPerGpu, type DispatchView } from '../../src/policy/dispatch.ts';
import { maxClockOf, mixCurve, powerAt, totalLoad, utilisationOf } from '../../src/policy/energy.ts';
import { DEFAULT_HEADROOM, type InstanceView, type LoadByType } from '../../src/policy/types.ts';
import type { BenchSection } from './types.ts';

/** The conversation trace's type mix (FACTS.md), shares of requests. */
const MIX: Record<RequestType, number> = { SS: 0.14, SM: 0.18, SL: 0.01, MS: 0.05, MM: 0.06, ML: 0.22, LS: 0.14, LM: 0.09, LL: 0.11 };
const INSTANCES = 16;

function rng(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

/** One instance's EWMA load: 1.5..4.5 req/s (48 req/s over 16), the trace's mix, jittered per type. */
function loadOf(r: () => number): LoadByType {
  const total = 1.5 + r() * 3;
  const load: LoadByType = {};
  for (const t of REQUEST_TYPES) if (r() < 0.8) load[t] = MIX[t] * total * (0.5 + r());
  return load;
}

function makeViews(p: Profile, r: () => number): DispatchView[] {
  return Array.from({ length: INSTANCES }, (_, i) => ({
    id: `pool-all-n${i >> 2}-g${(i % 4) * 2}x2`,
    tp: 2,
    // the clock epoch picks grid clocks; the upper part of the grid at this load
    clockMhz: p.clocksMhz[2 + Math.floor(r() * (p.clocksMhz.length - 2))]!,
    healthy: true,
    load: loadOf(r),
    queued: Math.floor(r() * 3),
    running: Math.floor(r() * 30),
  }));
}

/** A request type drawn from the mix. */
function typeOf(r: () => number): RequestType {
  let x = r();
  for (const t of REQUEST_TYPES) if ((x -= MIX[t]) <= 0) return t;
  return 'LL';
}

// ---------------------------------------------------------------- baseline: the rule, written plainly

function refMarginal(p: Profile, inst: InstanceView, after: LoadByType, fmax: number, d: number): number {
  const clock = p.clocksMhz.includes(inst.clockMhz) && utilisationOf(p, inst.tp, inst.clockMhz, after) <= 1 ? inst.clockMhz : fmax;
  const cb = mixCurve(p, inst.load, inst.tp, clock);
  const ca = mixCurve(p, after, inst.tp, clock);
  if (!ca) return Infinity;
  const before = cb ? powerAt(cb, totalLoad(inst.load)) : powerAt(ca, 0);
  return (powerAt(ca, totalLoad(after)) - before) / d;
}

function refByRate(type: RequestType, views: InstanceView[], p: Profile, d: number, h: number): string | undefined {
  const fmax = maxClockOf(p);
  let best: { id: string; e: number; u: number } | null = null;
  for (const inst of views) {
    const ml = maxLoadOf(p, type, inst.tp, fmax);
    if (!(ml > 0)) continue;
    const uAfter = utilisationOf(p, inst.tp, fmax, inst.load) + d / ml;
    if (!(uAfter <= 1 - h + 1e-12)) continue;
    const e = refMarginal(p, inst, { ...inst.load, [type]: (inst.load[type] ?? 0) + d }, fmax, d);
    if (!best || e < best.e - 1e-9 || (Math.abs(e - best.e) <= 1e-9 && (uAfter < best.u - 1e-12 || (Math.abs(uAfter - best.u) <= 1e-12 && inst.id < best.id)))) best = { id: inst.id, e, u: uAfter };
  }
  return best?.id;
}

function refDispatch(type: RequestType, views: DispatchView[], p: Profile, h: number): { id: string; atCapacity: boolean } {
  const fmax = maxClockOf(p);
  const healthy = (views as InstanceView[]).filter((v) => v.healthy);
  const now = healthy.filter((v) => instantHeadroom(v, type, p, p.clocksMhz.includes(v.clockMhz) ? v.clockMhz : fmax));
  const id = (now.length ? refByRate(type, now, p, 0.1, h) : undefined)
    ?? refByRate(type, healthy.filter((v) => instantHeadroom(v, type, p, fmax)), p, 0.1, h);
  return id ? { id, atCapacity: false } : { id: leastOutstandingPerGpu(views).id, atCapacity: true };
}

// ---------------------------------------------------------------- timing

function rate(minMs: number, step: () => void): number {
  let n = 0;
  const t0 = performance.now();
  do { step(); n++; } while (performance.now() - t0 < minMs);
  return n / ((performance.now() - t0) / 1000);
}

export async function bench(): Promise<BenchSection> {
  const here = dirname(fileURLToPath(import.meta.url));
  const profile = loadProfile(join(here, '..', '..', 'profiles', 'llama3.1-8b.h100.json'));
  const types = [...REQUEST_TYPES];
  const h = DEFAULT_HEADROOM;
  const opts = { headroom: h };
  const r = rng(42);

  // baseline, checking the fast path's decision on every call
  let mismatches = 0, checked = 0, atCap = 0;
  rate(1500, () => {
    const views = makeViews(profile, r);
    const type = typeOf(r);
    const want = refDispatch(type, views, profile, h);
    const got = dispatchRequest({ type }, views, profile, types, opts);
    checked++;
    if (got.id !== want.id || got.atCapacity !== want.atCapacity) mismatches++;
    if (got.atCapacity) atCap++;
  });
  // the check above runs the fast path too: the baseline's own rate is that of refDispatch alone
  const baseOnly = rate(1000, () => { refDispatch(typeOf(r), makeViews(profile, r), profile, h); });

  // cold: new load objects for every request (view building outside the timed part)
  const batch = 256;
  let coldN = 0, coldMs = 0;
  while (coldMs < 1500) {
    const sets = Array.from({ length: batch }, () => makeViews(profile, r));
    const ts = Array.from({ length: batch }, () => typeOf(r));
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) dispatchRequest({ type: ts[i] }, sets[i]!, profile, types, opts);
    coldMs += performance.now() - t0;
    coldN += batch;
  }
  const cold = coldN / (coldMs / 1000);

  // live: one pool's views, updated as the pool leader does
  const views = makeViews(profile, r);
  let k = 0;
  const live = rate(1500, () => {
    const d = dispatchRequest({ type: typeOf(r) }, views, profile, types, opts);
    const i = views.findIndex((v) => v.id === d.id);
    views[i] = { ...views[i]!, queued: views[i]!.queued + 1 };
    if (++k % 3 === 0) {
      const j = Math.floor(r() * INSTANCES);
      views[j] = { ...views[j]!, load: loadOf(r), queued: Math.floor(r() * 3), running: Math.floor(r() * 30) };
    }
  });

  const row = (path: string, perS: number) => ({ path, 'decisions/s': perS.toFixed(0), 'us/decision': (1e6 / perS).toFixed(1), 'vs baseline': `${(perS / baseOnly).toFixed(0)}x` });
  return {
    title: 'Pool dispatch: decisions/s, 16 TP2 Llama-3.1-8B instances, mixed nine-type load',
    notes: [
      `Profile profiles/llama3.1-8b.h100.json (${profile.source.kind}, ${profile.source.generatedBy}); headroom ${h}; ~3 req/s EWMA per instance in the conversation trace's type mix.`,
      `Decisions equal to the baseline's on ${checked - mismatches} of ${checked} random pools (${mismatches} differ; ${atCap} overflowed at capacity).`,
    ],
    rows: [row('baseline: mixCurve + powerAt per instance per request', baseOnly), row('dispatchRequest, cold (new loads every request)', cold), row('dispatchRequest, live pattern (leader)', live)],
  };
}
