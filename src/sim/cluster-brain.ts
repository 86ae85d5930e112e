/**
 * The simulated cluster manager: the live cluster manager's machine (src/policy/machines/cluster.ts) on the
 * simulator's virtual clock, with its own forecaster. Every minute it observes the minute that just ended (the
 * arrivals by predicted type, what a live forecaster counts); its epochs plan for the forecast of that past (Holt
 * trend, the highest minute of its recent window, a day's or a week's template, times its safety margin); a
 * forecast change on two observations in a row runs an epoch early (at most once per minEpochGapMs), and a rise it
 * forecasts for the next epoch arms a start-ahead epoch. Only the first plan (t = 0, no history yet) is given a
 * load: the trace starts warm. No decision is taken here; the simulator installs the assignments it issues.
 * With the machine's server power (cfg.power) the servers are simulated too: a power-off takes a server down at
 * once, a power-on brings it up (its node agent reporting) cfg.power.bootMs later; the driver always succeeds.
 */
import { REQUEST_TYPES, type RequestType } from '../../protocols/request-types.ts';
import { clusterStep, initialClusterState, type ClusterEffect, type ClusterMachineConfig, type ClusterMachineState, type ClusterServer } from '../policy/machines/cluster.ts';
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

export class ClusterBrain {
  /** each type's pool's measured prefix reuse at an epoch (prefixReuseByType), as the live pools would report it. */
  prefixReuse?: () => LoadByType;
  s: ClusterMachineState;
  private observeMs = 60_000;
  private epochMs: number;
  private startAhead?: { atMs: number; forecast: LoadByType };
  /** servers up (node agent reporting) since when; booting ones with the time they come up. */
  private up = new Map<string, number>();
  private booting = new Map<string, number>();
  /** the power commands issued. */
  powerOns = 0;
  powerOffs = 0;
  power?: SimServerPower;

  /**
   * `perMin(t, b)`: arrivals of predicted type t in minute b; `firstEpochMs`: the epoch timer's first firing
   * (then every cfg.epochMs); `onPlan`: called with the machine's state after a step that assigned pools.
   */
  constructor(
    readonly cfg: ClusterMachineConfig,
    readonly servers: ClusterServer[],
    firstEpochMs: number,
    private readonly perMin: (t: RequestType, b: number) => number,
    private readonly onPlan: (state: ClusterMachineState, effects: ClusterEffect[], now: number, initial: boolean) => void,
  ) {
    this.s = initialClusterState(cfg);
    this.epochMs = firstEpochMs;
    for (const x of servers) this.up.set(x.id, -1);
  }

  /** Servers up, by id (with cfg.power; every server otherwise). */
  isUp(id: string): boolean {
    return this.up.has(id);
  }

  /** The first plan (t = 0), for the load it is given. */
  start(forecast: LoadByType): void {
    this.step(0, { type: 'epoch', why: 'start', forecast }, true);
  }

  /** Run the machine's timers due at or before t, each at its own time: minute observations, the epoch, a start-ahead epoch. */
  due(t: number): void {
    while (true) {
      const at = this.nextMs();
      if (at > t) return;
      const booted = [...this.booting].find(([, upAt]) => upAt === at);
      if (booted) {
        this.booting.delete(booted[0]);
        this.up.set(booted[0], at);
        this.step(at, { type: 'power_tick' });
      } else if (this.s.power?.wake?.atMs === at && at !== this.observeMs && at !== this.epochMs) {
        this.step(at, { type: 'power_tick' });
      } else if (this.startAhead?.atMs === at) {
        const extra = this.startAhead.forecast;
        this.startAhead = undefined;
        this.step(at, { type: 'epoch', why: 'start ahead of the next epoch', extra });
      } else if (this.epochMs === at) {
        this.epochMs += this.cfg.epochMs;
        this.step(at, { type: 'epoch', why: 'epoch timer' });
      } else {
        this.observeMs += 60_000;
        this.step(at, { type: 'observe' });
      }
    }
  }

  nextMs(): number {
    let t = Math.min(this.observeMs, this.epochMs, this.startAhead?.atMs ?? Infinity, this.s.power?.wake?.atMs ?? Infinity);
    for (const upAt of this.booting.values()) t = Math.min(t, upAt);
    return t;
  }

  private step(now: number, ev: Ev, initial = false): void {
    const observed: LoadByType = {};
    if (ev.type === 'observe') {
      // the minute that just ended, req/s by predicted type
      const b = Math.floor(now / 60_000) - 1;
      if (b >= 0) for (const t of REQUEST_TYPES) if (this.perMin(t, b) > 0) observed[t] = this.perMin(t, b) / 60;
    }
    const seen = this.cfg.power ? { alive: [...this.up].map(([id, upSinceMs]) => ({ id, upSinceMs })), busy: this.power?.busy() ?? [] } : {};
    const mev = ev.type === 'observe' || ev.type === 'power_tick'
      ? { type: ev.type, observed, servers: this.servers, ...seen }
      : { type: 'epoch' as const, why: ev.why, observed, servers: this.servers, ...(ev.forecast ? { forecast: ev.forecast } : {}), ...(ev.extra ? { extra: ev.extra } : {}), ...(this.prefixReuse ? { prefixReuse: this.prefixReuse() } : {}), ...seen };
    this.power?.before(now);
    const { state, effects } = clusterStep(this.s, mev, now, this.cfg);
    this.s = state;
    this.powerEffects(effects, now);
    for (const e of effects) if (e.kind === 'arm_timer' && e.timer === 'start_ahead' && 'inMs' in e) this.startAhead = { atMs: now + e.inMs, forecast: e.forecast ?? {} };
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
