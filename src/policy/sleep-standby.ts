/**
 * Standby through vLLM's sleep mode: which instances of a pool stay awake, which sleep (and at which level) and
 * which stop, from the forecast of the pool's load over the time a sleeping instance takes to wake. Pure; the
 * simulator (src/sim/sleep-standby.ts) runs it, with the same inputs the live pool leader has (its instances' statuses
 * and admission counters).
 *
 * Why: the cluster plan and the pools' burst guard hold instances for the highest minute of their windows (30 and
 * 15 min); between bursts those instances idle at their loaded idle power (H100: ~101 W a GPU at 800 MHz, 149 W at
 * max clock). Asleep they draw the unloaded idle power (69 W: src/model/sleep.ts), and they serve again after a
 * wake of seconds (level 1) instead of an engine start of minutes. So the pool keeps awake the capacity the load can
 * reach before a sleeper wakes, and sleeps the rest.
 *
 * The forecast (`standbyForecast`): the pool's arrivals in buckets of `bucketMs` over the last `windowMs`; the
 * expected rate is their mean, the base the higher of that and the busiest full bucket's rate (a burst seen within the
 * window comes back; with `peak` off the last bucket's: a burst that began) or the filling bucket's, and
 * the upper band over a horizon H (the next sleeper's wake plus the decision interval) base + z x sigma x sqrt(H /
 * bucket), sigma the spread of the rate's change from one bucket to the next (a random walk of the rate; at a steady
 * Poisson rate r it is sqrt(2 r / bucket), and it is never taken below that). It reads the past only.
 *
 * The plan (`planStandby`), event by event:
 * - awake capacity (awake and waking instances, each its SLO capacity at max clock for the pool's mix with the
 *   headroom kept) below the upper band, or fewer than `minAwake` awake: wake, an instance on its way to sleep first
 *   (it only stops taking requests), then the shortest wakes (level 1 before level 2), the largest capacity first;
 * - awake capacity above the upper band x (1 + sleepMargin) without one instance: that instance sleeps, the least
 *   capacity per GPU first (it frees the most GPUs for what it carries), never one that changed state less than
 *   `minDwellMs` ago, never below `minAwake`; at level 1 while the pool's level-1 slots (host RAM for the weights)
 *   last, else level 2;
 * - asleep longer than `stopAfterMs`: stopped (its GPUs freed for another layout). Asleep or stopped, a GPU draws the
 *   same unloaded idle power, so this only pays where the GPUs have another use; default never (the pool's re-shard
 *   epoch owns the layout).
 */
import type { RequestType } from '../../protocols/request-types.ts';
import type { SleepLevel } from '../model/sleep.ts';

export type StandbyPhase = 'awake' | 'to-sleep' | 'asleep' | 'waking';

export interface StandbyInstance {
  id: string;
  /** GPUs it holds (its TP degree). */
  gpus: number;
  /** req/s it carries within the SLO at max clock for the pool's mix, headroom kept (`instanceCapacity`). */
  capacity: number;
  /** awake; to-sleep: taking no request, its running ones finishing before it sleeps; asleep; waking. */
  phase: StandbyPhase;
  /** the sleep level (to-sleep, asleep, waking). */
  level?: SleepLevel;
  /** when its phase last changed, ms. */
  sinceMs: number;
  /** its wake time from each level, s (src/model/sleep.ts wakeTimeS). */
  wakeS: Readonly<Record<SleepLevel, number>>;
  /** requests it holds (queued and running): the fewer, the sooner it sleeps. */
  outstanding: number;
}

export interface StandbyForecast {
  /** the pool's expected arrival rate, req/s. */
  expected: number;
  /** its upper band over the horizon the forecast was made for, req/s. */
  upper: number;
}

export interface StandbyConfig {
  /** instances kept awake whatever the forecast; default 1. */
  minAwake: number;
  /** an instance sleeps only if the others carry the upper band x (1 + sleepMargin); default 0.25. */
  sleepMargin: number;
  /** least time between two changes of one instance's phase, ms (a wake for load is never held back); default 30 000. */
  minDwellMs: number;
  /** instances of the pool that may sleep at level 1 at once (host RAM for their weights); the others sleep at level 2. */
  level1Slots: number;
  /** asleep this long, an instance is stopped, ms; default Infinity (never). */
  stopAfterMs: number;
}

export const STANDBY_DEFAULTS: Readonly<StandbyConfig> = Object.freeze({ minAwake: 1, sleepMargin: 0.25, minDwellMs: 30_000, level1Slots: Infinity, stopAfterMs: Infinity });

export interface StandbyPlan {
  wake: string[];
  sleep: { id: string; level: SleepLevel }[];
  stop: string[];
  /** awake and waking capacity once the plan is carried out, req/s. */
  awakeCapacity: number;
  /** the upper band it planned for, req/s. */
  need: number;
}

const isAwake = (i: StandbyInstance) => i.phase === 'awake' || i.phase === 'waking';

/** Which instances of a pool wake, sleep (at which level) and stop now. */
export function planStandby(instances: readonly StandbyInstance[], forecast: StandbyForecast, now: number, cfg: StandbyConfig = STANDBY_DEFAULTS): StandbyPlan {
  const need = Math.max(0, forecast.upper, forecast.expected);
  const wake: string[] = [];
  const sleep: { id: string; level: SleepLevel }[] = [];
  const stop: string[] = [];
  let cap = 0;
  let awake = 0;
  for (const i of instances) if (isAwake(i)) {
    cap += i.capacity;
    awake++;
  }
  if (cap < need || awake < cfg.minAwake) {
    const order = (i: StandbyInstance) => (i.phase === 'to-sleep' ? 0 : i.wakeS[i.level ?? 1]);
    const sleepers = instances.filter((i) => i.phase === 'to-sleep' || i.phase === 'asleep').sort((a, b) => order(a) - order(b) || b.capacity - a.capacity || a.id.localeCompare(b.id));
    for (const i of sleepers) {
      if (cap >= need && awake >= cfg.minAwake) break;
      wake.push(i.id);
      cap += i.capacity;
      awake++;
    }
  } else {
    let level1 = instances.filter((i) => (i.phase === 'to-sleep' || i.phase === 'asleep') && (i.level ?? 1) === 1).length;
    const candidates = instances
      .filter((i) => i.phase === 'awake' && now - i.sinceMs >= cfg.minDwellMs)
      .sort((a, b) => a.capacity / a.gpus - b.capacity / b.gpus || a.outstanding - b.outstanding || a.id.localeCompare(b.id));
    for (const i of candidates) {
      if (awake <= cfg.minAwake) break;
      if (cap - i.capacity < need * (1 + cfg.sleepMargin)) continue;
      const level: SleepLevel = level1 < cfg.level1Slots ? 1 : 2;
      if (level === 1) level1++;
      sleep.push({ id: i.id, level });
      cap -= i.capacity;
      awake--;
    }
  }
  for (const i of instances) if (i.phase === 'asleep' && now - i.sinceMs >= cfg.stopAfterMs && !wake.includes(i.id)) stop.push(i.id);
  return { wake, sleep, stop, awakeCapacity: cap, need };
}

// ------------------------------------------------------------------ the forecast

export interface StandbyWindowConfig {
  /** bucket of the arrival counts, ms; default 10 000. */
  bucketMs: number;
  /** buckets kept (the expected rate's and the busiest bucket's span), ms; default 180 000 (on the coding hour a
   * 60-s or 120-s memory of the last burst puts so many instances to sleep that the next burst waits for their
   * wakes: SS and MS TTFT p99 outside the SLO; docs/SIMULATION.md). */
  windowMs: number;
  /** width of the upper band, in standard deviations of the rate's walk over the horizon; default 2. */
  z: number;
  /** the band's base is at least the window's busiest full bucket (a burst seen within windowMs comes back); default true. */
  peak: boolean;
}

export const STANDBY_WINDOW_DEFAULTS: Readonly<StandbyWindowConfig> = Object.freeze({ bucketMs: 10_000, windowMs: 180_000, z: 2, peak: true });

/** The pool's recent arrivals: counts per bucket (bucket start, ms), oldest first; the last one is filling. */
export interface StandbyWindow {
  buckets: { atMs: number; count: number }[];
  /** when counting began, ms (a bucket before it is not a quiet one). */
  sinceMs: number;
}

/** `n` arrivals at `now` added to the window; buckets older than windowMs dropped; empty buckets between kept as zeros. */
export function recordStandbyArrivals(w: StandbyWindow | undefined, n: number, now: number, cfg: StandbyWindowConfig = STANDBY_WINDOW_DEFAULTS): StandbyWindow {
  const at = Math.floor(now / cfg.bucketMs) * cfg.bucketMs;
  const buckets = w ? w.buckets.filter((b) => b.atMs > at - cfg.windowMs - cfg.bucketMs) : [];
  const last = buckets.at(-1);
  for (let t = last ? last.atMs + cfg.bucketMs : at; t <= at; t += cfg.bucketMs) buckets.push({ atMs: t, count: 0 });
  buckets[buckets.length - 1] = { atMs: at, count: buckets.at(-1)!.count + n };
  return { buckets: buckets.slice(-Math.ceil(cfg.windowMs / cfg.bucketMs) - 1), sinceMs: w?.sinceMs ?? now };
}

/** Expected rate and upper band over the next `horizonS` from the window's full buckets (the filling one is only read as a burst). */
export function standbyForecast(w: StandbyWindow | undefined, now: number, horizonS: number, cfg: StandbyWindowConfig = STANDBY_WINDOW_DEFAULTS): StandbyForecast {
  if (!w) return { expected: 0, upper: 0 };
  const bucketS = cfg.bucketMs / 1000;
  const full = w.buckets.filter((b) => b.atMs + cfg.bucketMs <= now && b.atMs > now - cfg.windowMs - cfg.bucketMs && b.atMs >= Math.floor(w.sinceMs / cfg.bucketMs) * cfg.bucketMs);
  const rates = full.map((b) => b.count / bucketS);
  const filling = w.buckets.at(-1);
  // the filling bucket, once a second of it has passed, read as a rate: a burst shows before its bucket closes
  const fillingS = filling && filling.atMs + cfg.bucketMs > now ? (now - Math.max(filling.atMs, w.sinceMs)) / 1000 : 0;
  const fillingRate = fillingS >= 1 ? filling!.count / fillingS : 0;
  if (!rates.length) return { expected: fillingRate, upper: fillingRate };
  const expected = rates.reduce((a, r) => a + r, 0) / rates.length;
  const base = Math.max(expected, cfg.peak ? Math.max(...rates) : rates.at(-1)!, fillingRate);
  let sq = 0;
  for (let k = 1; k < rates.length; k++) sq += (rates[k]! - rates[k - 1]!) ** 2;
  const walk = rates.length > 1 ? Math.sqrt(sq / (rates.length - 1)) : 0;
  const sigma = Math.max(walk, Math.sqrt((2 * base) / bucketS));
  return { expected, upper: base + cfg.z * sigma * Math.sqrt(Math.max(0, horizonS) / bucketS) };
}

/**
 * An instance's SLO capacity for a mix of types, req/s: the rate at which the mix keeps every type within its SLO
 * (1 / sum of share / max load of each type, at `clockMhz`), times (1 - headroom). 0 when a type of the mix has no
 * feasible load at that TP.
 */
export function instanceCapacity(maxLoad: (t: RequestType, tp: number, clockMhz: number) => number, tp: number, clockMhz: number, mix: Partial<Record<RequestType, number>>, headroom: number): number {
  let total = 0;
  for (const v of Object.values(mix)) total += v ?? 0;
  if (!(total > 0)) return 0;
  let inv = 0;
  for (const [t, v] of Object.entries(mix) as [RequestType, number][]) {
    if (!(v > 0)) continue;
    const m = maxLoad(t, tp, clockMhz);
    if (!(m > 0)) return 0;
    inv += v / total / m;
  }
  return (1 - headroom) / inv;
}
