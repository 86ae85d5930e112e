/**
 * Step fidelity, SimOptions.sleepStandby 'on' (policies with the cluster machine and the pools' dispatch): each
 * pool's instances sleep and wake through vLLM's sleep mode as src/policy/sleep-standby.ts decides, every live
 * status interval (500 ms), on what the live pool leader reads: the admissions its instances count (their
 * cumulative admittedByType) and their TP. This file only carries the decision out, with the times and power
 * src/model/sleep.ts models:
 * - to sleep: the instance takes no new request (its status says 'sleeping', so dispatch passes it over), finishes
 *   what it holds, then falls asleep (sleepTimeS at loaded idle power); asleep its engine draws unloaded idle power
 *   (the batching core's sleeping state) and its prefix cache is gone;
 * - to wake: wakeTimeS of its level at loaded idle power (after the fall, if it was still falling), then it serves
 *   again; an instance still finishing its requests before sleeping serves again at once.
 * The pool's layout (re-shard epoch, cluster plan) counts a sleeping instance as one of its instances: it may drain
 * and stop it as any other.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { level1SlotsPerServer, sleepTimeS, wakeTimeS, type SleepLevel } from '../model/sleep.ts';
import { maxLoadFn } from '../policy/energy.ts';
import {
  STANDBY_DEFAULTS, STANDBY_WINDOW_DEFAULTS, instanceCapacity, planStandby, recordStandbyArrivals, standbyForecast,
  type StandbyConfig, type StandbyInstance, type StandbyWindow, type StandbyWindowConfig,
} from '../policy/sleep-standby.ts';
import { SimStepModel } from './step-model.ts';
import { PEER_STATUS_MS, type SimInstance, type SimPool } from './state.ts';
import type { SimResult } from './types.ts';

/** a pool's mix of admissions decays with this time constant, ms (the capacity's mix: a re-shard epoch). */
const MIX_TAU_MS = 300_000;

interface PoolStandby {
  window?: StandbyWindow;
  mix: Float64Array;
  mixAtMs: number;
}

export abstract class SimSleepStandby extends SimStepModel {
  /** the earliest end of a fall into sleep or of a wake, ms. */
  protected sleepDueMs = Infinity;
  readonly #pools = new WeakMap<SimPool, PoolStandby>();
  readonly #seen = new WeakMap<SimInstance, Partial<Record<RequestType, number>>>();
  readonly #counts = { sleeps: 0, level2: 0, wakes: 0, asleepJ: 0, asleepGpuMs: 0 };
  #maxLoad?: (t: RequestType, tp: number, clockMhz: number) => number;
  #cfg?: StandbyConfig;
  #win?: StandbyWindowConfig;

  /** Whether this run sleeps instances (step fidelity, the cluster machine's policies with the pools' dispatch). */
  protected get sleepStandbyOn(): boolean {
    return this.o.sleepStandby === 'on' && this.fidelity === 'step' && this.knobs.dynamicInstances && !this.knobs.oracle && this.useDispatchPolicy;
  }

  /** Every status interval: each pool's arrivals counted, its plan made and carried out. */
  protected sleepStandbyTick(now: number): void {
    this.#cfg ??= { ...STANDBY_DEFAULTS, ...this.o.sleepStandbyConfig };
    this.#win ??= { ...STANDBY_WINDOW_DEFAULTS, ...this.o.sleepStandbyWindow };
    this.#maxLoad ??= maxLoadFn(this.p, this.sloScale);
    for (const pool of this.pools) {
      const ps = this.#pools.get(pool) ?? { mix: new Float64Array(9), mixAtMs: now };
      this.#pools.set(pool, ps);
      const arrived = this.#admissions(pool, ps, now);
      ps.window = recordStandbyArrivals(ps.window, arrived, now, this.#win);
      const live = pool.instances.filter((i) => i.state === 'active' && i.brain && i.core);
      if (!live.length || !pool.types.length) continue;
      const mix: Partial<Record<RequestType, number>> = {};
      REQUEST_TYPES.forEach((t, k) => {
        if (ps.mix[k]! > 0) mix[t] = ps.mix[k]!;
      });
      if (!Object.keys(mix).length) for (const t of pool.types) mix[t] = 1;
      const views = live.map((i) => this.#view(i, mix));
      const sleepers = views.filter((v) => v.phase === 'asleep');
      const horizonS = (sleepers.length ? Math.min(...sleepers.map((v) => v.wakeS[v.level ?? 1])) : Math.min(...views.map((v) => v.wakeS[1]))) + PEER_STATUS_MS / 1000;
      const forecast = standbyForecast(ps.window, now, horizonS, this.#win);
      const servers = Math.max(1, Math.ceil(pool.gpus / this.gpusPerServer));
      const plan = planStandby(views, forecast, now, { ...this.#cfg, level1Slots: level1SlotsPerServer(this.perf.model) * servers });
      const byId = new Map(live.map((i) => [i.id, i]));
      for (const id of plan.wake) this.#wakeUp(byId.get(id)!, now);
      for (const s of plan.sleep) this.#toSleep(byId.get(s.id)!, s.level, now);
      for (const id of plan.stop) this.drain(byId.get(id)!, now);
    }
    this.sleepDue(now);
  }

  /** Falls into sleep and wakes that end by now; instances to sleep that hold nothing any more begin their fall. */
  protected sleepDue(now: number): void {
    let next = Infinity;
    for (const pool of this.pools)
      for (const i of pool.instances) {
        const s = i.sleep;
        if (!s) continue;
        if (i.state !== 'active' || !i.core) {
          // drained or stopped by the layout: its sleep is over
          this.#leaveAsleep(i, now);
          i.sleep = undefined;
          continue;
        }
        if (s.phase === 'to-sleep' && i.outstanding === 0 && !i.core.hasWork()) {
          s.phase = 'falling';
          s.untilMs = now + sleepTimeS(this.perf.model, i.tp, s.level) * 1000;
        }
        if (s.phase === 'falling' && s.untilMs! <= now) {
          s.phase = 'asleep';
          s.sinceMs = now;
          s.asleepAtMs = now;
          i.core.setSleeping(true, now);
        } else if (s.phase === 'waking' && s.untilMs! <= now) {
          i.sleep = undefined;
          i.standbySinceMs = now;
          continue;
        }
        if ((s.phase === 'falling' || s.phase === 'waking') && s.untilMs! < next) next = s.untilMs!;
      }
    this.sleepDueMs = next;
  }

  /** The run's result with what sleep mode did (counts, GPU-hours asleep, the asleep part of the instances' idle energy). */
  protected withSleepStandby(r: SimResult, endMs: number): SimResult {
    if (!this.sleepStandbyOn) return r;
    for (const p of this.pools) for (const i of p.instances) this.#leaveAsleep(i, endMs);
    const c = this.#counts;
    return {
      ...r,
      ...(r.energyBreakdown ? { energyBreakdown: { ...r.energyBreakdown, instanceAsleepKWh: c.asleepJ / 3.6e6 } } : {}),
      sleepStandby: { sleeps: c.sleeps, level2Sleeps: c.level2, wakes: c.wakes, asleepGpuHours: c.asleepGpuMs / 3.6e6 },
    };
  }

  /** The pool's admissions since the last tick (its instance machines' cumulative counters), and its mix updated. */
  #admissions(pool: SimPool, ps: PoolStandby, now: number): number {
    const decay = Math.exp(-(now - ps.mixAtMs) / MIX_TAU_MS);
    for (let k = 0; k < 9; k++) ps.mix[k]! *= decay;
    ps.mixAtMs = now;
    let n = 0;
    for (const i of pool.instances) {
      const cur = i.brain?.s.admitted;
      if (!cur) continue;
      const last = this.#seen.get(i) ?? {};
      REQUEST_TYPES.forEach((t, k) => {
        const d = (cur[t] ?? 0) - (last[t] ?? 0);
        if (d > 0) {
          n += d;
          ps.mix[k]! += d;
        }
      });
      this.#seen.set(i, { ...cur });
    }
    return n;
  }

  #view(i: SimInstance, mix: Partial<Record<RequestType, number>>): StandbyInstance {
    const s = i.sleep;
    const phase = !s ? 'awake' : s.phase === 'falling' ? 'asleep' : s.phase;
    return {
      id: i.id, gpus: i.tp, capacity: instanceCapacity(this.#maxLoad!, i.tp, this.maxClock, mix, this.headroom), phase, ...(s ? { level: s.level } : {}),
      sinceMs: s ? s.sinceMs : (i.standbySinceMs ?? i.readyAtMs), wakeS: { 1: wakeTimeS(this.perf.model, i.tp, 1), 2: wakeTimeS(this.perf.model, i.tp, 2) }, outstanding: i.outstanding,
    };
  }

  #toSleep(i: SimInstance, level: SleepLevel, now: number): void {
    this.#counts.sleeps++;
    if (level === 2) this.#counts.level2++;
    i.sleep = { phase: 'to-sleep', level, sinceMs: now };
    if (now < this.sleepDueMs) this.sleepDueMs = now;
  }

  #wakeUp(i: SimInstance, now: number): void {
    const s = i.sleep;
    if (!s) return;
    if (s.phase === 'to-sleep') {
      i.sleep = undefined;
      i.standbySinceMs = now;
      return;
    }
    this.#counts.wakes++;
    const from = s.phase === 'falling' ? s.untilMs! : now;
    this.#leaveAsleep(i, now);
    i.core?.setSleeping(false, now);
    i.sleep = { phase: 'waking', level: s.level, sinceMs: now, untilMs: from + wakeTimeS(this.perf.model, i.tp, s.level) * 1000 };
    if (i.sleep.untilMs! < this.sleepDueMs) this.sleepDueMs = i.sleep.untilMs!;
  }

  /** An asleep instance leaves sleep (a wake, a drain, the run's end): its asleep time and energy counted. */
  #leaveAsleep(i: SimInstance, now: number): void {
    const s = i.sleep;
    if (!s || s.asleepAtMs === undefined) return;
    const ms = Math.max(0, now - s.asleepAtMs);
    this.#counts.asleepGpuMs += ms * i.tp;
    this.#counts.asleepJ += (this.perf.idlePowerW(i.tp, i.clockMhz, false) * i.tp * ms) / 1000;
    s.asleepAtMs = undefined;
  }
}
