/**
 * The pool leader's sleep-mode standby (live; the simulator's counterpart is src/sim/sleep-standby.ts): at each status
 * period, the pool's arrivals since the last one (the increments of its instances' cumulative admittedByType, as the
 * burst guard counts them) go into the standby window, and src/policy/sleep-standby.ts planStandby decides from the
 * instances' statuses which instances sleep (level) or wake; the result is the 'sleep' / 'wake' instance commands to
 * send. Pure: (state, statuses, now, config) -> (state, commands).
 *
 * The leader sees an instance through its status: 'ready' is awake; 'sleeping' is asleep, or on its way to sleep
 * (finishing its requests) or waking after a wake this leader sent (a wake it sent and the instance still reports
 * 'sleeping': waking); one told to sleep that reports ready for two periods more did not (it was busy, or refused):
 * awake, its dwell counted from the command, so it is not told again before the dwell. A wake unanswered past
 * `wakeBoundMs` (twice the modelled fall and wake at its level, plus four periods: the command lost, or the engine's
 * wake failed) reads asleep again, so the plan wakes it again while the load needs it (a second wake of an instance
 * already waking changes nothing there). Instances in any other state (starting, draining, ...) are not the standby's.
 */
import type { InstanceStatus } from '../../../protocols/control.ts';
import { REQUEST_TYPES, type RequestType } from '../../../protocols/request-types.ts';
import type { Profile } from '../../model/profile-types.ts';
import { level1SlotsPerServer, sleepTimeS, wakeTimeS, type SleepLevel } from '../../model/sleep.ts';
import type { ModelSpec } from '../../model/types.ts';
import { maxClockOf, maxLoadFn } from '../energy.ts';
import { admittedBetween } from '../pool-shards.ts';
import {
  STANDBY_DEFAULTS, STANDBY_WINDOW_DEFAULTS, instanceCapacity, planStandby, recordStandbyArrivals, standbyForecast,
  type StandbyConfig, type StandbyInstance, type StandbyWindow, type StandbyWindowConfig,
} from '../sleep-standby.ts';

/** a pool's mix of admissions decays with this time constant, ms (the capacity's mix: a re-shard epoch). */
const MIX_TAU_MS = 300_000;

export interface PoolStandbyConfig {
  profile: Profile;
  model: Pick<ModelSpec, 'paramsB' | 'dtypeBytes'>;
  /** fraction of SLO throughput kept free (the pool's headroom). */
  headroom: number;
  /** multiplies the profile's SLOs (the simulator's sloScale); default 1. */
  sloScale?: number;
  /** the status period, ms: the decision interval (part of the forecast's horizon). */
  periodMs: number;
  standby?: Partial<Omit<StandbyConfig, 'level1Slots'>>;
  window?: Partial<StandbyWindowConfig>;
}

export interface PoolStandbyState {
  window?: StandbyWindow;
  /** each instance's last status counted (its admissions' increments are the pool's arrivals). */
  seen: Map<string, Pick<InstanceStatus, 'startedMs' | 'seq' | 'admittedByType'>>;
  /** the last command sent to each instance, and when. */
  sent: Map<string, { op: 'sleep' | 'wake'; level: SleepLevel; atMs: number }>;
  mix: Partial<Record<RequestType, number>>;
  mixAtMs: number;
}

export interface StandbyCommand { instance: string; op: 'sleep' | 'wake'; level?: SleepLevel; reason: string }

export function initialPoolStandby(now: number): PoolStandbyState {
  return { seen: new Map(), sent: new Map(), mix: {}, mixAtMs: now };
}

/**
 * How long a wake this leader sent may go unanswered (the instance still reporting 'sleeping'), ms: twice the modelled
 * fall and wake at `level` (a wake during the fall waits for it), plus four status periods.
 */
export function wakeBoundMs(cfg: Pick<PoolStandbyConfig, 'model' | 'periodMs'>, tp: number, level: SleepLevel): number {
  return 2000 * (sleepTimeS(cfg.model, tp, level) + wakeTimeS(cfg.model, tp, level)) + 4 * cfg.periodMs;
}

/** One status period of the pool's standby: the arrivals counted, the plan made; the commands to send. */
export function poolStandbyStep(prev: PoolStandbyState, statuses: readonly InstanceStatus[], now: number, cfg: PoolStandbyConfig): { state: PoolStandbyState; commands: StandbyCommand[] } {
  const s: PoolStandbyState = { ...prev, seen: new Map(prev.seen), sent: new Map(prev.sent), mix: { ...prev.mix } };
  const decay = Math.exp(-(now - s.mixAtMs) / MIX_TAU_MS);
  for (const t of REQUEST_TYPES) if (s.mix[t] !== undefined) s.mix[t]! *= decay;
  s.mixAtMs = now;
  let arrived = 0;
  for (const st of statuses) {
    const add = admittedBetween(s.seen.get(st.id), st);
    for (const [t, n] of Object.entries(add ?? {}) as [RequestType, number][]) {
      arrived += n;
      s.mix[t] = (s.mix[t] ?? 0) + n;
    }
    s.seen.set(st.id, { startedMs: st.startedMs, seq: st.seq, admittedByType: st.admittedByType });
  }
  const ids = new Set(statuses.map((x) => x.id));
  for (const id of [...s.seen.keys()]) if (!ids.has(id)) s.seen.delete(id);
  for (const id of [...s.sent.keys()]) if (!ids.has(id)) s.sent.delete(id);
  const win = { ...STANDBY_WINDOW_DEFAULTS, ...cfg.window };
  s.window = recordStandbyArrivals(s.window, arrived, now, win);

  const mine = statuses.filter((x) => x.state === 'ready' || x.state === 'sleeping');
  if (!mine.length) return { state: s, commands: [] };
  const maxLoad = maxLoadFn(cfg.profile, cfg.sloScale ?? 1);
  const fmax = maxClockOf(cfg.profile);
  const mix = Object.keys(s.mix).length ? s.mix : Object.fromEntries(REQUEST_TYPES.map((t) => [t, 1]));
  const views: StandbyInstance[] = mine.map((x) => {
    const sent = s.sent.get(x.id);
    const level = sent?.level ?? 1;
    // told to sleep less than two periods ago and still reporting ready: on its way (its status not sent yet); woken
    // within its bound and still reporting sleeping: waking
    const phase = x.state === 'ready' ? (sent?.op === 'sleep' && now - sent.atMs <= 2 * cfg.periodMs ? 'to-sleep' : 'awake')
      : sent?.op === 'wake' && now - sent.atMs <= wakeBoundMs(cfg, x.tp, level) ? 'waking' : 'asleep';
    return {
      id: x.id, gpus: x.tp, capacity: instanceCapacity(maxLoad, x.tp, fmax, mix, cfg.headroom), phase, ...(phase === 'awake' ? {} : { level }),
      sinceMs: sent?.atMs ?? x.startedMs, wakeS: { 1: wakeTimeS(cfg.model, x.tp, 1), 2: wakeTimeS(cfg.model, x.tp, 2) }, outstanding: x.queued + x.running,
    };
  });
  const sleepers = views.filter((v) => v.phase === 'asleep');
  const horizonS = (sleepers.length ? Math.min(...sleepers.map((v) => v.wakeS[v.level ?? 1])) : Math.min(...views.map((v) => v.wakeS[1]))) + cfg.periodMs / 1000;
  const forecast = standbyForecast(s.window, now, horizonS, win);
  const servers = Math.max(1, new Set(mine.map((x) => x.node ?? x.id)).size);
  const plan = planStandby(views, forecast, now, { ...STANDBY_DEFAULTS, ...cfg.standby, level1Slots: level1SlotsPerServer(cfg.model) * servers });
  const why = `standby: band ${forecast.upper.toFixed(2)} req/s, awake capacity ${plan.awakeCapacity.toFixed(2)}`;
  const commands: StandbyCommand[] = [];
  for (const id of plan.wake) {
    commands.push({ instance: id, op: 'wake', reason: why });
    s.sent.set(id, { op: 'wake', level: s.sent.get(id)?.level ?? 1, atMs: now });
  }
  for (const x of plan.sleep) {
    commands.push({ instance: x.id, op: 'sleep', level: x.level, reason: why });
    s.sent.set(x.id, { op: 'sleep', level: x.level, atMs: now });
  }
  return { state: s, commands };
}
