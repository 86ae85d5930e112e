/**
 * Server power in the cluster machine (src/policy/machines/cluster-power.ts through clusterStep), event by event on
 * a virtual clock: drained servers powered off beyond the reserve, never one with a grant or an instance; the driver's
 * outcome; a plan short of powered servers powers on the rest and grants them once their node agents report; a
 * server that does not come back within its boot deadline is failed and planned around; servers a start-ahead epoch
 * needs are powered on a boot time before it; nothing at all without the power config.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { LoadForecaster } from '../../src/policy/forecast.ts';
import { maxLoadOf } from '../../src/model/profile.ts';
import { clusterStep, initialClusterState, type ClusterEffect, type ClusterEvent, type ClusterMachineConfig, type ClusterMachineState } from '../../src/policy/machines/cluster.ts';
import { serverPowerConfig } from '../../src/policy/machines/cluster-power.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const MIN = 60_000;
const SERVERS = [0, 1, 2, 3, 4, 5].map((i) => ({ id: `node-${i}`, gpus: 8 }));
const POOLS = REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] }));
const POWER = serverPowerConfig({ bootS: 120, bootDeadlineS: 600, reserveServers: 1 });

const cfg = (o: Partial<ClusterMachineConfig> = {}): ClusterMachineConfig => ({
  issuer: 'cm-1', profile, pools: POOLS, configuredPools: false, epochMs: 30 * MIN, statusIntervalMs: 500,
  minEpochGapMs: MIN, instanceStartupMs: 5 * MIN, recentWindowMs: 5 * MIN, power: POWER, ...o,
});

class Drive {
  s: ClusterMachineState;
  /** when each server's node agent began reporting (absent: not reporting). */
  up = new Map<string, number>();
  constructor(readonly c: ClusterMachineConfig = cfg()) {
    this.s = initialClusterState(c);
    for (const x of SERVERS) this.up.set(x.id, T0 - 1000);
  }
  alive() {
    return [...this.up].map(([id, upSinceMs]) => ({ id, upSinceMs }));
  }
  at(ms: number, ev: ClusterEvent): ClusterEffect[] {
    const { state, effects } = clusterStep(this.s, ev, T0 + ms, this.c);
    this.s = state;
    return effects;
  }
  observe(ms: number, observed: Record<string, number> = {}, busy: string[] = []) {
    return this.at(ms, { type: 'observe', observed, servers: SERVERS, alive: this.alive(), busy });
  }
  epoch(ms: number, why = 'epoch', o: Partial<Extract<ClusterEvent, { type: 'epoch' }>> = {}) {
    return this.at(ms, { type: 'epoch', why, observed: {}, servers: SERVERS, alive: this.alive(), busy: [], ...o });
  }
  /** the driver did it: the server's agent stops reporting when off. */
  done(ms: number, fx: ClusterEffect[], ok = true) {
    for (const [action, server] of powers(fx)) {
      this.at(ms, { type: 'power_result', result: { server: server!, action: action as 'on' | 'off', ok, ...(ok ? {} : { error: 'exit 1' }) } });
      if (ok && action === 'off') this.up.delete(server!);
    }
  }
  state(id: string) {
    return this.s.power!.servers.get(id)!.state;
  }
}
const powers = (fx: ClusterEffect[]) => fx.flatMap((e) => (e.kind === 'power' ? [[e.action, e.server]] : []));
const granted = (s: ClusterMachineState) => [...s.assignments.values()].filter((a) => a.state === 'active').flatMap((a) => a.grants.map((g) => g.node)).sort();
const powerEvents = (fx: ClusterEffect[]) => fx.flatMap((e) => (e.kind === 'event' && e.event === 'power' ? [e.summary] : []));

/** A machine that planned one server (no load) and powered off the drained ones beyond the reserve: node-0 granted, node-5 the reserve. */
function quiet(): Drive {
  const d = new Drive();
  d.epoch(0, 'start');
  d.observe(2000);
  d.done(2000 + POWER.idleBeforeOffMs, d.observe(2000 + POWER.idleBeforeOffMs));
  return d;
}

describe('cluster machine: server power', () => {
  it('powers off drained servers idle for idleBeforeOff beyond the reserve, never one with a grant or an instance; a refused power-off stays on', () => {
    const d = new Drive();
    const start = d.epoch(0, 'start');
    expect(powers(start)).toEqual([]);
    expect(granted(d.s)).toEqual(['node-0']);
    // node-2 still holds an instance (draining): not a candidate
    expect(powers(d.observe(2000, {}, ['node-2']))).toEqual([]);
    expect(powers(d.observe(2000 + POWER.idleBeforeOffMs - 1, {}, ['node-2']))).toEqual([]);
    const off = d.observe(2000 + POWER.idleBeforeOffMs, {}, ['node-2']);
    // idle: node-1, 3, 4, 5; the reserve keeps one (the last by id among equals)
    expect(powers(off)).toEqual([['off', 'node-1'], ['off', 'node-3'], ['off', 'node-4']]);
    expect(powerEvents(off)[0]).toMatch(/^power off node-1: no grant and no instance for 120 s/);
    expect(['node-0', 'node-1', 'node-2', 'node-5'].map((x) => d.state(x))).toEqual(['on', 'stopping', 'on', 'on']);
    // the driver: node-1 and node-3 off, node-4 refused (it stays on, idle again from now)
    const t = 2000 + POWER.idleBeforeOffMs;
    d.done(t + 5000, off.filter((e) => e.kind !== 'power' || e.server !== 'node-4'));
    const refused = d.at(t + 5000, { type: 'power_result', result: { server: 'node-4', action: 'off', ok: false, error: 'timeout' } });
    expect(powerEvents(refused)).toEqual(['power off node-4 failed: timeout; it stays on']);
    expect(['node-1', 'node-3', 'node-4'].map((x) => d.state(x))).toEqual(['off', 'off', 'on']);
    // node-2 drained: three idle (node-5 for 126 s, node-4 again for 1 s, node-2 new); the oldest goes, one is kept
    expect(powers(d.observe(t + 6000))).toEqual([['off', 'node-5']]);
    // node-4 is tried again once idle long enough; node-2 stays, the reserve
    expect(powers(d.observe(t + 5000 + POWER.idleBeforeOffMs))).toEqual([['off', 'node-4']]);
    expect(powers(d.observe(t + 7000 + POWER.idleBeforeOffMs))).toEqual([]);
    expect(d.state('node-2')).toBe('on');
    expect(granted(d.s)).toEqual(['node-0']);
  });

  it('a plan short of powered servers grants what is up, powers on the rest, and grants each once its node agent reports', () => {
    const d = quiet();
    expect(['node-1', 'node-2', 'node-3', 'node-4'].map((x) => d.state(x))).toEqual(['off', 'off', 'off', 'off']);
    // MM load for 3.5 servers (+ LL): the plan wants more servers than node-0 and the reserve node-5
    const ml = maxLoadOf(profile, 'MM', 8, Math.max(...profile.clocksMhz));
    const t = 10 * MIN;
    d.observe(t, { MM: 3.5 * ml });
    const fx = d.epoch(t + 1000, 'epoch', { observed: { MM: 3.5 * ml } });
    const wanted = [...d.s.planServers!.values()].reduce((a, b) => a + b, 0);
    expect(wanted).toBeGreaterThanOrEqual(4);
    expect(granted(d.s)).toEqual(['node-0', 'node-5']);
    const on = powers(fx);
    expect(on).toEqual(['node-1', 'node-2', 'node-3', 'node-4'].slice(0, wanted - 2).map((x) => ['on', x]));
    expect(d.s.power!.shortfall).toBe(wanted - 2);
    // the driver's command returned: still booting until the agent reports
    d.done(t + 2000, fx);
    expect(d.state('node-1')).toBe('booting');
    // a status from before the power-on (a lingering one) does not count
    d.up.set('node-1', T0 + t);
    expect(powers(d.observe(t + 30_000, { MM: 3.5 * ml }))).toEqual([]);
    expect(d.state('node-1')).toBe('booting');
    // node-1 boots: the plan in force is placed again at once, node-1 granted
    d.up.set('node-1', T0 + t + 95_000);
    const up = d.observe(t + 96_000, { MM: 3.5 * ml });
    expect(powerEvents(up)[0]).toMatch(/^node-1 up 95 s after its power-on/);
    expect(up.find((e) => e.kind === 'event' && e.event === 'scale')).toMatchObject({ decision: { why: 'servers powered on (node-1 up)' } });
    expect(granted(d.s)).toEqual(['node-0', 'node-1', 'node-5']);
    expect(d.s.power!.shortfall).toBe(wanted - 3);
  });

  it('a server not up within its boot deadline (or whose power-on the driver refused) is failed: the plan leaves it out and powers on another', () => {
    const d = quiet();
    const ml = maxLoadOf(profile, 'MM', 8, Math.max(...profile.clocksMhz));
    const tick = (ms: number) => d.at(ms, { type: 'power_tick', observed: {}, servers: SERVERS, alive: d.alive(), busy: [] });
    const t = 10 * MIN;
    // the plan of a forecast (as the simulator gives it): more servers than node-0 and the reserve node-5
    const fx = d.epoch(t, 'epoch', { forecast: { MM: 2.5 * ml } });
    const wanted = [...d.s.planServers!.values()].reduce((a, b) => a + b, 0);
    expect(wanted).toBe(3);
    expect(powers(fx)).toEqual([['on', 'node-1']]);
    // node-1 never reports
    expect(powers(tick(t + POWER.bootDeadlineMs))).toEqual([]);
    expect(d.state('node-1')).toBe('booting');
    const failed = tick(t + POWER.bootDeadlineMs + 1000);
    expect(d.state('node-1')).toBe('failed');
    expect(powerEvents(failed)[0]).toBe('node-1 not up 600 s after its power-on: failed, left out of the plan');
    // the plan in force placed again, without node-1: another server powered on in its place
    expect(powers(failed)).toEqual([['on', 'node-2']]);
    // a power-on the driver refuses: failed at once, and the next observation powers on another
    const refused = d.at(t + 700_000, { type: 'power_result', result: { server: 'node-2', action: 'on', ok: false, error: 'exit 1: BMC unreachable' } });
    expect(powerEvents(refused)).toEqual(['power on node-2 failed: exit 1: BMC unreachable; failed, left out of the plan']);
    expect(powers(tick(t + 701_000))).toEqual([['on', 'node-3']]);
    d.up.set('node-3', T0 + t + 760_000);
    tick(t + 761_000);
    expect(granted(d.s)).toEqual(['node-0', 'node-3', 'node-5']);
    expect(d.s.power!.shortfall).toBe(0);
    // a failed server whose agent reports again is on (and idle: a candidate for the reserve or a power-off)
    d.up.set('node-1', T0 + t + 800_000);
    tick(t + 801_000);
    expect(d.state('node-1')).toBe('on');
  });

  it('servers a start-ahead epoch needs are powered on a boot time before it, and are up when it grants them', () => {
    const DAY = 24 * 60 * MIN;
    const d = new Drive(cfg({ epochMs: 10 * MIN, instanceStartupMs: 2 * MIN }));
    // only node-0 reports: the others are off
    for (const x of ['node-1', 'node-2', 'node-3', 'node-4', 'node-5']) d.up.delete(x);
    const f = new LoadForecaster({ recentWindowMs: 300_000 });
    for (let m = 0; m <= 24 * 60 + 5; m++) f.observe(T0 + m * MIN, { MM: m === 20 ? 8 : 0.5 });
    d.s = { ...d.s, forecaster: f.snapshot(), lastSampleMs: T0 + DAY + 5 * MIN };
    const now = DAY + 5 * MIN;
    const fx = d.epoch(now);
    expect(fx.find((e) => e.kind === 'arm_timer')).toMatchObject({ timer: 'start_ahead', inMs: 8 * MIN });
    const planned = [...d.s.planServers!.values()].reduce((a, b) => a + b, 0);
    expect(powers(fx)).toEqual([]);
    const wake = d.s.power!.wake!;
    expect(wake.atMs).toBe(T0 + now + 8 * MIN - POWER.bootMs);
    expect(wake.servers).toBeGreaterThan(planned);
    // status ticks (no forecast sample: an early epoch on the forecast's change is tested apart)
    const tick = (ms: number) => d.at(ms, { type: 'power_tick', observed: {}, servers: SERVERS, alive: d.alive(), busy: [] });
    expect(powers(tick(now + 8 * MIN - POWER.bootMs - 1000))).toEqual([]);
    const woke = tick(now + 8 * MIN - POWER.bootMs);
    const on = powers(woke).map(([, x]) => x!);
    expect(on).toEqual(['node-1', 'node-2', 'node-3', 'node-4', 'node-5'].slice(0, wake.servers - 1));
    expect(on.length).toBeGreaterThan(0);
    expect(powerEvents(woke)[0]).toMatch(/ahead of the start-ahead epoch/);
    for (const x of on) d.up.set(x, T0 + now + 7 * MIN);
    tick(now + 7 * MIN + 1000);
    // the start-ahead epoch finds them up and grants them
    const ahead = d.epoch(now + 8 * MIN, 'start ahead of the next epoch', { observed: { MM: 0.5 }, extra: (fx.find((e) => e.kind === 'arm_timer') as { forecast: Record<string, number> }).forecast });
    expect(powers(ahead)).toEqual([]);
    for (const x of on) expect(granted(d.s)).toContain(x);
  });

  it('without the power config no server is ever powered off or on', () => {
    const d = new Drive(cfg({ power: undefined }));
    d.epoch(0, 'start');
    const fx = [d.observe(2000), d.observe(10 * MIN), d.observe(20 * MIN)].flat();
    expect(powers(fx)).toEqual([]);
    expect(d.s.power).toBeUndefined();
  });
});
