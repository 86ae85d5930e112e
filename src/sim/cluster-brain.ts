/**
 * The simulated cluster manager: the live cluster manager's machine (src/policy/machines/cluster.ts) on the
 * simulator's virtual clock, its timers the ones the machine arms and its observation the live leader's. At t = 0 it
 * leads ('lead'): the machine arms its observe and epoch timers (and a first-epoch one) and this class runs them on the
 * virtual clock as the live leader's injected clock does (an interval from its lead, a one-shot start-ahead epoch
 * replacing the one armed before). Each observe tick and each epoch carry what the live leader observes (policy
 * observedLoad: the sum of the live instances' load estimates, the `loadByType` their statuses carry; the caller hands
 * each instance's estimate at that time). The trace starts warm: the machine's first epoch runs at t = 0 on the first
 * epoch's forecast, in place of its first-epoch timer (live: a few seconds after the lead, on the load its instances
 * report by then); every later epoch plans from the machine's own forecaster. No decision is taken here; the simulator
 * installs the assignments it issues.
 * With the machine's server power (cfg.power) the servers are simulated too: a power-off takes a server down at
 * once, a power-on brings it up (its node agent reporting) cfg.power.bootMs later; the driver always succeeds.
 */
import type { RequestType } from '../../protocols/request-types.ts';
import { clusterStep, initialClusterState, type ClusterEffect, type ClusterEvent, type ClusterMachineConfig, type ClusterMachineState, type ClusterServer } from '../policy/machines/cluster.ts';
import type { LoadByType } from '../policy/types.ts';
import { prefixReuseByType as policyPrefixReuseByType } from '../policy/pool-shards.ts';

type Ev = { type: 'observe' } | { type: 'power_tick' } | { type: 'epoch'; why: string; forecast?: LoadByType; extra?: LoadByType };

/** What the simulator tells the brain about its servers (with cfg.power). */
export interface SimServerPower {
  /** servers granted to no pool that still hold an instance (draining there). */
  busy: () => string[];
  /** called before each step, so the simulator accounts the servers' power up to then. */
  before: (now: number) => void;
}

/** A periodic timer the machine armed: its period and its next firing, ms. */
interface Interval { everyMs: number; nextMs: number }

export class ClusterBrain {
  /** each type's pool's measured prefix reuse at an epoch (prefixReuseByType), as the live pools would report it. */
  prefixReuse?: () => LoadByType;
  s: ClusterMachineState;
  /** the machine's periodic timers (arm_timer everyMs), each from the time it was armed. */
  private readonly intervals = new Map<'observe' | 'epoch', Interval>();
  private startAhead?: { atMs: number; forecast: LoadByType };
  /** the observations the machine was given, in order (what the live leader's observe ticks carry). */
  readonly observations: { atMs: number; observed: LoadByType }[] = [];
  /** servers up (node agent reporting) since when; booting ones with the time they come up. */
  private up = new Map<string, number>();
  private booting = new Map<string, number>();
  /** the power commands issued. */
  powerOns = 0;
  powerOffs = 0;
  power?: SimServerPower;

  /**
   * `observe(now)`: what the live leader's observation sums, each live instance's load estimate at `now` (its status's
   * loadByType); `onPlan`: called with the machine's state after a step that assigned pools.
   */
  constructor(
    readonly cfg: ClusterMachineConfig,
    readonly servers: ClusterServer[],
    private readonly observe: (now: number) => LoadByType,
    private readonly onPlan: (state: ClusterMachineState, effects: ClusterEffect[], now: number, initial: boolean) => void,
  ) {
    this.s = initialClusterState(cfg);
    for (const x of servers) this.up.set(x.id, -1);
  }

  /** Servers up, by id (with cfg.power; every server otherwise). */
  isUp(id: string): boolean {
    return this.up.has(id);
  }

  /** It leads at t = 0 (its timers armed), and its first plan runs then, for the load it is given (the trace starts warm). */
  start(forecast: LoadByType): void {
    this.lead(0);
    this.step(0, { type: 'epoch', why: 'start', forecast }, true);
  }

  /** The machine's 'lead': the timers it arms run from `now`; its first-epoch timer is the warm start's epoch (start()). */
  private lead(now: number): void {
    this.power?.before(now);
    const { state, effects } = clusterStep(this.s, { type: 'lead' }, now, this.cfg);
    this.s = state;
    this.timers(effects, now);
  }

  /** The machine's timers on the virtual clock: an interval from now (re-armed: replaced), a start-ahead epoch replacing the one before. */
  private timers(effects: ClusterEffect[], now: number): void {
    for (const e of effects) {
      if (e.kind !== 'arm_timer') continue;
      if ('everyMs' in e) {
        if (e.timer === 'observe' || e.timer === 'epoch') this.intervals.set(e.timer, { everyMs: e.everyMs, nextMs: now + e.everyMs });
      } else if (e.timer === 'start_ahead') this.startAhead = { atMs: now + e.inMs, forecast: e.forecast ?? {} };
    }
  }

  /** Run the machine's timers due at or before t, each at its own time: observe ticks, the epoch, a start-ahead epoch. */
  due(t: number): void {
    while (true) {
      const at = this.nextMs();
      if (at > t) return;
      const booted = [...this.booting].find(([, upAt]) => upAt === at);
      const observe = this.intervals.get('observe');
      const epoch = this.intervals.get('epoch');
      if (booted) {
        this.booting.delete(booted[0]);
        this.up.set(booted[0], at);
        this.step(at, { type: 'power_tick' });
      } else if (this.s.power?.wake?.atMs === at && at !== observe?.nextMs && at !== epoch?.nextMs) {
        this.step(at, { type: 'power_tick' });
      } else if (this.startAhead?.atMs === at) {
        const extra = this.startAhead.forecast;
        this.startAhead = undefined;
        this.step(at, { type: 'epoch', why: 'start ahead of the next epoch', extra });
      } else if (epoch?.nextMs === at) {
        epoch.nextMs += epoch.everyMs;
        this.step(at, { type: 'epoch', why: 'epoch' });
      } else if (observe?.nextMs === at) {
        observe.nextMs += observe.everyMs;
        this.step(at, { type: 'observe' });
      } else return;
    }
  }

  nextMs(): number {
    let t = Math.min(this.intervals.get('observe')?.nextMs ?? Infinity, this.intervals.get('epoch')?.nextMs ?? Infinity, this.startAhead?.atMs ?? Infinity, this.s.power?.wake?.atMs ?? Infinity);
    for (const upAt of this.booting.values()) t = Math.min(t, upAt);
    return t;
  }

  private step(now: number, ev: Ev, initial = false): void {
    // what the live leader's #observation carries: the instances' load estimates, summed (policy observedLoad)
    const observed = this.observe(now);
    if (ev.type === 'observe') this.observations.push({ atMs: now, observed });
    const seen = this.cfg.power ? { alive: [...this.up].map(([id, upSinceMs]) => ({ id, upSinceMs })), busy: this.power?.busy() ?? [] } : {};
    const mev: ClusterEvent = ev.type === 'observe' || ev.type === 'power_tick'
      ? { type: ev.type, observed, servers: this.servers, ...seen }
      : { type: 'epoch' as const, why: ev.why, observed, servers: this.servers, ...(ev.forecast ? { forecast: ev.forecast } : {}), ...(ev.extra ? { extra: ev.extra } : {}), ...(this.prefixReuse ? { prefixReuse: this.prefixReuse() } : {}), ...seen };
    this.power?.before(now);
    const { state, effects } = clusterStep(this.s, mev, now, this.cfg);
    this.s = state;
    this.powerEffects(effects, now);
    this.timers(effects, now);
    if (effects.some((e) => e.kind === 'assign')) this.onPlan(state, effects, now, initial);
  }

  /** The machine's power commands on the simulated servers; the driver answers at once. */
  private powerEffects(effects: ClusterEffect[], now: number): void {
    for (const e of effects) {
      if (e.kind !== 'power') continue;
      if (e.action === 'on') {
        this.powerOns++;
        this.booting.set(e.server, now + (this.cfg.power?.bootMs ?? 0));
      } else {
        this.powerOffs++;
        this.up.delete(e.server);
      }
      this.s = clusterStep(this.s, { type: 'power_result', result: { server: e.server, action: e.action, ok: true } }, now, this.cfg).state;
    }
  }
}

/** Each type's pool's prefix reuse (policy prefixReuseByType) from the pool's instances' engine counters, the shape the live statuses carry. */
export function prefixReuseByType(pools: readonly { types: readonly RequestType[]; instances: readonly { core?: { prefixCacheTokens(): { lookup: number; hit: number } | undefined } }[] }[]): LoadByType {
  return policyPrefixReuseByType(pools.map((p) => ({ types: p.types, statuses: p.instances.map((i) => ({ prefixCacheTokens: i.core?.prefixCacheTokens() })) })));
}
