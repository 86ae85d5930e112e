/**
 * Step fidelity, SimOptions.sleepStandby 'on' (policies with the cluster machine and the pools' dispatch): each
 * pool's instances sleep and wake through vLLM's sleep mode as the live pool leader decides: its step
 * (src/policy/machines/pool-standby.ts poolStandbyStep, on src/policy/sleep-standby.ts planStandby) runs every live
 * status interval (500 ms) on the statuses the pool's instances would send (their state, TP, queue and cumulative
 * admittedByType from their instance machines), and its 'sleep' / 'wake' commands go to the instance machines, as the
 * live instance manager hands them to its machine. The instance machine decides the rest (src/policy/machines/
 * instance-sleep.ts: it takes no new request, its status says 'sleeping', it finishes what it holds, its engine sleeps
 * once it holds nothing, it gives up at its deadline, it serves once woken); its engine_sleep and engine_wake are
 * carried out here on the engine model, with the times and power src/model/sleep.ts models:
 * - engine_sleep: the fall (sleepTimeS at loaded idle power), then asleep: its engine draws unloaded idle power (the
 *   batching core's sleeping state) and its prefix cache is gone; the machine hears 'engine_slept';
 * - engine_wake: wakeTimeS of its level at loaded idle power, then the machine hears 'engine_woke' and serves.
 * The pool's layout (re-shard epoch, cluster plan) counts a sleeping instance as one of its instances: it may drain
 * and stop it as any other.
 */
import type { InstanceStatus } from '../../protocols/control.ts';
import { sleepTimeS, wakeTimeS } from '../model/sleep.ts';
import type { InstanceEffect } from '../policy/machines/instance.ts';
import { initialPoolStandby, poolStandbyStep, type PoolStandbyConfig, type PoolStandbyState } from '../policy/machines/pool-standby.ts';
import { SimStepModel } from './step-model.ts';
import { PEER_STATUS_MS, type SimInstance, type SimPool } from './state.ts';
import type { SimResult } from './types.ts';

export abstract class SimSleepStandby extends SimStepModel {
  /** the earliest end of a fall into sleep or of a wake, ms. */
  protected sleepDueMs = Infinity;
  readonly #pools = new WeakMap<SimPool, PoolStandbyState>();
  readonly #counts = { sleeps: 0, level2: 0, wakes: 0, asleepJ: 0, asleepGpuMs: 0 };
  #seq = 0;
  #cfg?: PoolStandbyConfig;

  /** Whether this run sleeps instances (step fidelity, the cluster machine's policies with the pools' dispatch). */
  protected get sleepStandbyOn(): boolean {
    return this.o.sleepStandby === 'on' && this.fidelity === 'step' && this.knobs.dynamicInstances && !this.knobs.oracle && this.useDispatchPolicy;
  }

  /** Every status interval: each pool leader's standby step on its instances' statuses; its commands carried out. */
  protected sleepStandbyTick(now: number): void {
    this.#cfg ??= {
      profile: this.p, model: this.perf.model, headroom: this.headroom, periodMs: PEER_STATUS_MS, sloScale: this.sloScale,
      ...(this.o.sleepStandbyConfig ? { standby: this.o.sleepStandbyConfig } : {}), ...(this.o.sleepStandbyWindow ? { window: this.o.sleepStandbyWindow } : {}),
    };
    for (const pool of this.pools) {
      const statuses = pool.instances.filter((i) => i.brain).map((i) => this.#statusOf(i, now));
      const { state, commands } = poolStandbyStep(this.#pools.get(pool) ?? initialPoolStandby(now), statuses, now, this.#cfg);
      this.#pools.set(pool, state);
      for (const c of commands) {
        const inst = pool.instances.find((i) => i.id === c.instance);
        const b = inst?.brain;
        if (!inst || !b || inst.state !== 'active' || !inst.core) continue;
        if (c.op === 'sleep') {
          const level = c.level ?? 1;
          const was = b.s.lifecycle;
          b.step({ type: 'sleep', level, why: c.reason }, now);
          if (was === 'ready' && b.s.lifecycle === 'sleeping') {
            this.#counts.sleeps++;
            if (level === 2) this.#counts.level2++;
          }
        } else if (c.op === 'wake') b.step({ type: 'wake', why: c.reason }, now);
      }
    }
    this.sleepDue(now);
  }

  /** The status the live instance manager would send: 'sleeping' from its sleep command until it is awake again. */
  #statusOf(i: SimInstance, now: number): InstanceStatus {
    const r = i.brain!.report(now);
    const state: InstanceStatus['state'] = i.state === 'active' ? (i.brain!.s.lifecycle === 'sleeping' ? 'sleeping' : 'ready') : i.state === 'starting' ? 'starting' : i.state === 'stopped' ? 'stopped' : 'draining';
    return {
      v: 1, id: i.id, pool: i.pool.id, node: i.node ?? i.id, tp: i.tp as InstanceStatus['tp'], gpuIds: i.gpuIds ?? [], state, startedMs: i.startedMs, seq: ++this.#seq, sentMs: now,
      clockMhz: i.clockMhz, maxClockMhz: this.maxClock, queued: r.queued, running: r.running, queuedIds: [], runningIds: [], loadByType: r.loadByType,
      admittedByType: { ...i.brain!.s.admitted },
    };
  }

  /** Falls into sleep and wakes that end by now, each answered to the instance's machine. */
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
        if (s.phase === 'falling' && s.untilMs! <= now) {
          s.phase = 'asleep';
          s.asleepAtMs = now;
          i.core.setSleeping(true, now);
          // a wake that came during the fall: the machine's engine_wake starts it now (engineSleepMode)
          i.brain?.step({ type: 'engine_slept', ok: true }, now);
        } else if (s.phase === 'waking' && s.untilMs! <= now) {
          i.sleep = undefined;
          i.brain?.step({ type: 'engine_woke', ok: true }, now);
        }
        const z = i.sleep;
        if (z && (z.phase === 'falling' || z.phase === 'waking') && z.untilMs! < next) next = z.untilMs!;
      }
    this.sleepDueMs = next;
  }

  /** The instance machine's engine_sleep (the fall begins) or engine_wake (the wake begins, after the fall). */
  protected override engineSleepMode(i: SimInstance, e: Extract<InstanceEffect, { kind: 'engine_sleep' | 'engine_wake' }>, now: number): void {
    if (e.kind === 'engine_sleep') i.sleep = { phase: 'falling', level: e.level, sinceMs: now, untilMs: now + sleepTimeS(this.perf.model, i.tp, e.level) * 1000 };
    else {
      const level = i.sleep?.level ?? 1;
      this.#counts.wakes++;
      this.#leaveAsleep(i, now);
      i.core?.setSleeping(false, now);
      i.sleep = { phase: 'waking', level, sinceMs: now, untilMs: now + wakeTimeS(this.perf.model, i.tp, level) * 1000 };
    }
    if (i.sleep.untilMs! < this.sleepDueMs) this.sleepDueMs = i.sleep.untilMs!;
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
