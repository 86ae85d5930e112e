/**
 * An instance's load estimate (the instance machine's, ./instance.ts): the epoch's EWMA rule and the views of it the
 * instance reports, pure functions of its arrival window.
 */
import type { RequestType } from '../../../protocols/request-types.ts';

type Load = Partial<Record<RequestType, number>>;

/** What the estimate reads of an instance machine's state: the EWMA, the epoch's arrivals so far and when the epoch began. */
export interface LoadWindow {
  /** EWMA of the per-epoch arrival rate, req per modelled s. */
  load: Load;
  /** arrivals of this epoch's window, by type. */
  arrivals: Load;
  windowStartMs: number;
}

/**
 * The epoch's load rule: the EWMA of the arrival rate (half weight per epoch; a type's first epoch takes
 * its rate), and the clock's view max(EWMA, rate): the clock follows a rise at once (the SLO is at stake)
 * and a fall through the EWMA (no flapping). Rates under 1e-3 req/s are dropped.
 */
export function epochLoad(ewma: Load, rate: Load): { load: Load; forClock: Load } {
  const load: Load = {};
  const forClock: Load = {};
  const types = new Set([...Object.keys(rate), ...Object.keys(ewma)] as RequestType[]);
  for (const t of types) {
    const r = rate[t] ?? 0;
    const v = 0.5 * r + 0.5 * (ewma[t] ?? r);
    if (v > 1e-3) load[t] = v;
    const c = Math.max(v, r);
    if (c > 1e-3) forClock[t] = c;
  }
  return { load, forClock };
}

/**
 * Closes the epoch's arrival window at `now` (the instance machine's epoch, ./instance-clock.ts; the simulator's fluid
 * instances on their share of their pool's arrivals): epochLoad's rule over the window's arrival rate, and the window
 * opened again at `now`.
 */
export function closeWindow(w: LoadWindow, now: number, cfg: { timeScale: number }): { window: LoadWindow; forClock: Load } {
  const dt = Math.max(0.001, (now - w.windowStartMs) / 1000);
  const rate: Load = {};
  for (const [t, n] of Object.entries(w.arrivals) as [RequestType, number][]) rate[t] = n / dt / cfg.timeScale;
  const { load, forClock } = epochLoad(w.load, rate);
  return { window: { load, arrivals: {}, windowStartMs: now }, forClock };
}

/** `n` arrivals of type `t` in the window (one admission; a fluid instance's fractional share of its pool's). */
export function countArrivals(w: Pick<LoadWindow, 'arrivals'>, t: RequestType, n = 1): void {
  w.arrivals[t] = (w.arrivals[t] ?? 0) + n;
}

/** Load for the dispatcher: the last epoch's EWMA blended with arrivals since (so a step shows at once). */
export function currentLoad(s: LoadWindow, now: number, cfg: { timeScale: number }): Load {
  const dt = (now - s.windowStartMs) / 1000;
  const out: Load = { ...s.load };
  if (dt > 0.5) for (const [t, n] of Object.entries(s.arrivals) as [RequestType, number][]) out[t] = Math.max(out[t] ?? 0, n / dt / cfg.timeScale);
  return out;
}

/**
 * The load for the pool's re-shard epoch (status epochLoadByType): what the EWMA would read if the epoch closed now,
 * weighted by the part of the epoch gone, EWMA + min(1, dt / epoch) x (next EWMA - EWMA), the next EWMA by epochLoad's
 * rule over the arrivals since the epoch began. It runs from the EWMA at the epoch's start to the next EWMA at its
 * close (continuous across it), and a steady load reads its rate wherever in the epoch it is read: the live pool
 * reads its instances' statuses at any point of their epochs, the simulator's pool epoch right at their close. The
 * dispatcher's view (currentLoad) takes the rate over the arrivals since the epoch from half a second on, which
 * reads a clump of a few arrivals as several times the load: summed over types and instances, the pool's load at
 * up to 2x the arrivals at some points of the epoch and at the EWMA at its close.
 */
export function projectedLoad(s: LoadWindow, now: number, cfg: { timeScale: number; epochMs: number }): Load {
  const dt = (now - s.windowStartMs) / 1000;
  if (!(dt > 0) || !(cfg.epochMs > 0)) return { ...s.load };
  const out: Load = {};
  const w = Math.min(1, (dt * 1000) / cfg.epochMs);
  const rate: Load = {};
  for (const [t, n] of Object.entries(s.arrivals) as [RequestType, number][]) rate[t] = n / dt / cfg.timeScale;
  const next = epochLoad(s.load, rate).load;
  for (const t of new Set([...Object.keys(s.load), ...Object.keys(next)] as RequestType[])) {
    const v = (s.load[t] ?? 0) + w * ((next[t] ?? 0) - (s.load[t] ?? 0));
    if (v > 1e-3) out[t] = v;
  }
  return out;
}
