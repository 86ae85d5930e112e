/**
 * The cluster manager's scaling machine (src/policy/machines/cluster.ts), driven event by event on a
 * virtual clock: the forecast samples, when an epoch runs, the plan and the server placement, the
 * assignments that change.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { planCluster } from '../../src/policy/cluster.ts';
import { maxLoadOf } from '../../src/model/profile.ts';
import { LoadForecaster } from '../../src/policy/forecast.ts';
import {
  aliveServers, clusterStep, keepSilentForMs, keptServers, initialClusterState, intakePools, longerType, sampleMsOf,
  type ClusterEffect, type ClusterEvent, type ClusterMachineConfig, type ClusterMachineState,
} from '../../src/policy/machines/cluster.ts';
import { REQUEST_TYPES } from '../../protocols/request-types.ts';
import type { PoolAssignment } from '../../protocols/control.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const SERVERS = [0, 1, 2, 3, 4, 5].map((i) => ({ id: `node-${i}`, gpus: 8 }));
const POOLS = REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] }));

const cfg = (o: Partial<ClusterMachineConfig> = {}): ClusterMachineConfig => ({
  issuer: 'cm-1', profile, pools: POOLS, configuredPools: false, epochMs: 1_800_000, statusIntervalMs: 500,
  minEpochGapMs: 60_000, instanceStartupMs: 300_000, recentWindowMs: 300_000, ...o,
});

class Drive {
  s: ClusterMachineState;
  constructor(readonly c: ClusterMachineConfig = cfg()) {
    this.s = initialClusterState(c);
  }
  at(ms: number, ev: ClusterEvent): ClusterEffect[] {
    const { state, effects } = clusterStep(this.s, ev, T0 + ms, this.c);
    expect(state).not.toBe(this.s);
    this.s = state;
    return effects;
  }
}
const assigned = (fx: ClusterEffect[]) => fx.flatMap((e) => (e.kind === 'assign' ? [e.assignment] : []));
const serversOf = (as: PoolAssignment[]) => Object.fromEntries(as.filter((a) => a.state === 'active').map((a) => [a.pool, a.grants.map((g) => g.node)]));

describe('cluster machine', () => {
  it('arms its timers when it leads: observation, epoch, and a first epoch once the nodes reported', () => {
    const d = new Drive();
    expect(d.at(0, { type: 'lead' })).toEqual([
      { kind: 'arm_timer', timer: 'observe', everyMs: 2000 },
      { kind: 'arm_timer', timer: 'epoch', everyMs: 1_800_000 },
      { kind: 'arm_timer', timer: 'first_epoch', inMs: 1500 },
    ]);
  });

  it('configured pools: an even split of every server, assignments only when they change', () => {
    const pools = [{ id: 'short', types: ['SS', 'SM'] as const }, { id: 'long', types: ['LL'] as const }].map((p) => ({ ...p, types: [...p.types] }));
    const d = new Drive(cfg({ pools, configuredPools: true }));
    const fx = d.at(0, { type: 'epoch', why: 'start', observed: {}, servers: SERVERS.slice(0, 3) });
    const as = assigned(fx);
    expect(as.map((a) => [a.pool, a.state, a.epoch, a.grants])).toEqual([
      ['short', 'active', 1, [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }, { node: 'node-2', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }]],
      ['long', 'active', 1, [{ node: 'node-1', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }]],
    ]);
    expect(fx.find((e) => e.kind === 'event')).toMatchObject({ event: 'scale', decision: { epoch: 1, why: 'start' } });
    expect(d.s.route.get('SM')).toBe('short');
    // the same servers again: nothing changes, nothing is sent (the epoch number still moves on)
    expect(d.at(1000, { type: 'epoch', why: 'epoch', observed: {}, servers: SERVERS.slice(0, 3) })).toEqual([]);
    expect(d.s.epoch).toBe(2);
    // one server per pool when there are more pools than servers: a server's GPUs are shared
    const d1 = new Drive(cfg({ pools, configuredPools: true }));
    expect(assigned(d1.at(0, { type: 'epoch', why: 'start', observed: {}, servers: SERVERS.slice(0, 1) })).map((a) => a.grants)).toEqual([
      [{ node: 'node-0', gpuIds: [0, 1, 2, 3] }], [{ node: 'node-0', gpuIds: [4, 5, 6, 7] }],
    ]);
  });

  it("a new leader's first epoch keeps a silent server's grants; a server back from silence gets its share again", () => {
    const pools = [{ id: 'all', types: [...REQUEST_TYPES] }];
    const three = SERVERS.slice(0, 3);
    const nodesOf = (a: PoolAssignment | undefined) => a?.grants.map((g) => g.node);
    // the previous leader's plan: every server granted to the pool
    const d = new Drive(cfg({ pools, configuredPools: true }));
    d.at(0, { type: 'assignments_loaded', assignments: [{ v: 1, pool: 'all', types: [...REQUEST_TYPES], grants: three.map((x) => ({ node: x.id, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] })), epoch: 4, state: 'active', issuedBy: 'cm-0', atMs: 0 }] });
    d.at(0, { type: 'lead' });
    // node-2 silent (a partition) when the new leader's first epoch runs: its grants stay, nothing is re-assigned
    expect(assigned(d.at(1500, { type: 'epoch', why: 'start', observed: {}, servers: three.slice(0, 2), keep: SERVERS, silentMs: { 'node-2': 10_000 } }))).toEqual([]);
    expect(nodesOf(d.s.assignments.get('all'))).toEqual(['node-0', 'node-1', 'node-2']);
    // a server no assignment grants is not kept (the plan places over those alive)
    expect(keptServers(three.slice(0, 2), SERVERS, d.s.assignments, { 'node-2': 10_000, 'node-3': 0 }, 30_000).map((x) => x.id)).toEqual(['node-0', 'node-1', 'node-2']);
    // a timed epoch while node-2 is still silent places over the servers alive: node-2's grants go
    expect(nodesOf(assigned(d.at(60_000, { type: 'epoch', why: 'epoch', observed: {}, servers: three.slice(0, 2) }))[0])).toEqual(['node-0', 'node-1']);
    // node-2 reports again: the next observation places the plan again over the three, without waiting for the epoch timer
    const back = d.at(62_000, { type: 'observe', observed: {}, servers: three });
    expect(nodesOf(assigned(back)[0])).toEqual(['node-0', 'node-1', 'node-2']);
    expect(back.find((e) => e.kind === 'event')).toMatchObject({ event: 'scale', decision: { why: 'servers back: node-2' } });
    // and once: the next observation changes nothing
    expect(assigned(d.at(64_000, { type: 'observe', observed: {}, servers: three }))).toEqual([]);
  });

  it("a new leader's first epoch keeps a server silent briefly, not one silent past keepSilentForMs (10 x deadAfterMs, at least 30 s)", () => {
    const pools = [{ id: 'all', types: [...REQUEST_TYPES] }];
    const three = SERVERS.slice(0, 3);
    const loaded = () => {
      const d = new Drive(cfg({ pools, configuredPools: true, keepSilentForMs: keepSilentForMs(3000) }));
      d.at(0, { type: 'assignments_loaded', assignments: [{ v: 1, pool: 'all', types: [...REQUEST_TYPES], grants: three.map((x) => ({ node: x.id, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] })), epoch: 4, state: 'active', issuedBy: 'cm-0', atMs: 0 }] });
      d.at(0, { type: 'lead' });
      return d;
    };
    expect(keepSilentForMs(3000)).toBe(30_000);
    expect(keepSilentForMs(5000)).toBe(50_000);
    // node-2 silent 12 s (a partition and its heal's elections): its grants stay
    const brief = loaded();
    expect(assigned(brief.at(1500, { type: 'epoch', why: 'start', observed: {}, servers: three.slice(0, 2), keep: SERVERS, silentMs: { 'node-2': 12_000 } }))).toEqual([]);
    expect(brief.s.assignments.get('all')?.grants.map((g) => g.node)).toEqual(['node-0', 'node-1', 'node-2']);
    // node-2 silent 40 s (dead): the first epoch places over the servers alive, node-2's grants go
    const dead = loaded();
    const fx = assigned(dead.at(1500, { type: 'epoch', why: 'start', observed: {}, servers: three.slice(0, 2), keep: SERVERS, silentMs: { 'node-2': 40_000 } }));
    expect(fx.map((a) => a.grants.map((g) => g.node))).toEqual([['node-0', 'node-1']]);
    // a server whose silence is unknown is not kept either
    const unknown = loaded();
    expect(assigned(unknown.at(1500, { type: 'epoch', why: 'start', observed: {}, servers: three.slice(0, 2), keep: SERVERS })).map((a) => a.grants.map((g) => g.node))).toEqual([['node-0', 'node-1']]);
  });

  it('without load the longest pool keeps one server and serves every type; the others merge into it', () => {
    const d = new Drive();
    const fx = d.at(0, { type: 'epoch', why: 'start', observed: {}, servers: SERVERS });
    const active = assigned(fx).filter((a) => a.state === 'active');
    expect(active.map((a) => [a.pool, a.grants.length, a.types.length])).toEqual([['pool-LL', 1, 9]]);
    expect(assigned(fx).filter((a) => a.state === 'retired').every((a) => a.mergedInto === 'pool-LL')).toBe(true);
    expect(fx.filter((e) => e.kind === 'event' && e.event === 'merge').length).toBe(8);
  });

  it("plans whole servers per pool from the forecast of the observed load, and a pool keeps the servers it holds", () => {
    const d = new Drive();
    const load = { SS: 50, MM: 6, LL: 1 };
    // one sample per sample period (a minute here); more often is ignored
    d.at(0, { type: 'observe', observed: load, servers: SERVERS });
    d.at(1000, { type: 'observe', observed: { SS: 100 }, servers: SERVERS });
    expect(d.s.forecaster.history.SS).toEqual([[T0, 50]]);
    const fx = d.at(2000, { type: 'epoch', why: 'epoch', observed: load, servers: SERVERS });
    const forecast = new LoadForecaster({ recentWindowMs: 300_000 }, d.s.forecaster).forecast(T0 + 2000, 1_800_000);
    const plan = planCluster({ forecastPeak: forecast, profile, totalServers: 6, gpusPerServer: 8 });
    const want = Object.fromEntries(plan.pools.filter((p) => p.servers > 0).map((p) => [p.pool.id, p.servers]));
    const got = serversOf(assigned(fx));
    expect(Object.keys(got).length).toBeGreaterThan(2);
    expect(Object.fromEntries(Object.entries(got).map(([p, ns]) => [p, ns.length]))).toEqual(want);
    expect(d.s.planServers).toEqual(new Map(Object.entries(want)));
    // the forecast travels in the assignment, per type of the pool
    expect(assigned(fx).find((a) => a.pool === 'pool-SS')!.forecast!.SS).toBeCloseTo(forecast.SS!, 9);
    // the same load again: every pool keeps the servers it holds, nothing is sent
    expect(assigned(d.at(3000, { type: 'epoch', why: 'epoch', observed: load, servers: SERVERS }))).toEqual([]);
    // SS grows: pools whose server count stays keep the very same nodes
    d.at(70_000, { type: 'observe', observed: { SS: 100, MM: 6, LL: 1 }, servers: SERVERS });
    const grown = serversOf(assigned(d.at(80_000, { type: 'epoch', why: 'epoch', observed: {}, servers: SERVERS })));
    for (const [pool, nodes] of Object.entries(grown)) if (got[pool] && got[pool]!.length === nodes.length) expect(nodes).toEqual(got[pool]);
    expect(grown['pool-SS']!.length).toBeGreaterThan(got['pool-SS']!.length);
    for (const n of got['pool-SS']!) expect(grown['pool-SS']).toContain(n);
  });

  it('runs the epoch early when the plan of the forecast differs on two observations in a row, at most once per gap', () => {
    const d = new Drive(cfg({ epochMs: 600_000 })); // sample period 20 s
    expect(sampleMsOf(d.c)).toBe(20_000);
    d.at(0, { type: 'observe', observed: { SS: 1 }, servers: SERVERS });
    d.at(0, { type: 'epoch', why: 'start', observed: { SS: 1 }, servers: SERVERS });
    const before = d.s.planServers;
    // the load jumps (past the recent window's max, which floors the forecast)
    const big = { SS: 1, MM: 6, LL: 1.5 };
    expect(d.at(20_000, { type: 'observe', observed: big, servers: SERVERS })).toEqual([]); // first mismatch
    expect(d.s.mismatchTicks).toBe(1);
    // the second is before the minimum gap since the last epoch (60 s): no epoch yet, the count goes on
    expect(d.at(40_000, { type: 'observe', observed: big, servers: SERVERS })).toEqual([]);
    const fx = d.at(60_000, { type: 'observe', observed: big, servers: SERVERS });
    expect(fx.find((e) => e.kind === 'event' && e.event === 'scale')).toMatchObject({ decision: { why: expect.stringMatching(/^forecast change: plan /) } });
    expect(d.s.planServers).not.toEqual(before);
    expect(d.s.mismatchTicks).toBe(0);
    expect(d.s.lastEpochMs).toBe(T0 + 60_000);
  });

  it('arms the start-ahead epoch when the next epoch forecast needs more servers, and plans for that forecast when it fires', () => {
    const MIN = 60_000, DAY = 24 * 60 * MIN;
    const d = new Drive(cfg({ epochMs: 10 * MIN, instanceStartupMs: 2 * MIN }));
    // a day of history, one sample a minute: MM at 0.5 req/s, except a peak of 8 req/s 20 minutes in
    const f = new LoadForecaster({ recentWindowMs: 300_000 });
    for (let m = 0; m <= 24 * 60 + 5; m++) f.observe(T0 + m * MIN, { MM: m === 20 ? 8 : 0.5 });
    d.s = { ...d.s, forecaster: f.snapshot(), lastSampleMs: T0 + DAY + 5 * MIN };
    // now (a day and 5 minutes in) the template of this epoch misses yesterday's peak, the next epoch's holds it
    const now = DAY + 5 * MIN;
    const fx = d.at(now, { type: 'epoch', why: 'epoch', observed: { MM: 0.5 }, servers: SERVERS });
    const arm = fx.find((e) => e.kind === 'arm_timer');
    expect(arm).toMatchObject({ kind: 'arm_timer', timer: 'start_ahead', inMs: 8 * MIN });
    const next = (arm as { forecast: Record<string, number> }).forecast;
    expect(next.MM).toBeGreaterThan(8);
    expect(d.s.lastForecast!.MM).toBeLessThan(1);
    expect(fx.find((e) => e.kind === 'event' && e.summary.startsWith('start ahead'))).toBeDefined();
    // when it fires it plans for that forecast, without arming another
    const ahead = d.at(now + 8 * MIN, { type: 'epoch', why: 'start ahead of the next epoch', observed: { MM: 0.5 }, servers: SERVERS, extra: next });
    expect(ahead.some((e) => e.kind === 'arm_timer')).toBe(false);
    expect(d.s.lastForecast!.MM).toBeGreaterThanOrEqual(next.MM!);
    expect(serversOf(assigned(ahead))['pool-MM']!.length).toBeGreaterThan(serversOf(assigned(fx))['pool-MM']?.length ?? 0);
  });

  it('plans for a forecast the caller gives (the simulator), sized with the headroom, and starts nothing ahead for it', () => {
    // one server carries ML req/s of MM at TP8 and max clock: pool-MM gets floor(forecast / ML) servers and
    // the remainder goes on to the last pool (LL, which rounds up); with 20% headroom forecast / 0.8
    const ml = maxLoadOf(profile, 'MM', 8, Math.max(...profile.clocksMhz));
    const gpusOf = (fx: ClusterEffect[]) => Object.fromEntries(assigned(fx).filter((a) => a.state === 'active').map((a) => [a.pool, a.grants.length]));
    const plain = new Drive(cfg());
    const a = plain.at(0, { type: 'epoch', why: 'sim', observed: {}, servers: SERVERS, forecast: { MM: 3.5 * ml } });
    expect(gpusOf(a)).toEqual({ 'pool-MM': 3, 'pool-LL': 1 });
    expect(a.some((e) => e.kind === 'arm_timer')).toBe(false);
    const withHeadroom = new Drive(cfg({ headroom: 0.2 }));
    const b = withHeadroom.at(0, { type: 'epoch', why: 'sim', observed: {}, servers: SERVERS, forecast: { MM: 3.5 * ml } });
    // 3.5 / 0.8 = 4.375 ML: 4 servers for MM, the remainder to LL
    expect(gpusOf(b)).toEqual({ 'pool-MM': 4, 'pool-LL': 1 });
    expect(b.find((e) => e.kind === 'event' && e.event === 'scale')).toMatchObject({ decision: { epoch: 1, why: 'sim' }, inputs: { forecast: { MM: 3.5 * ml } } });
    // more than the servers: the plan is capped, and the decision says by how much
    const c = new Drive(cfg()).at(0, { type: 'epoch', why: 'sim', observed: {}, servers: SERVERS, forecast: { MM: 9 * ml } });
    expect(c.find((e) => e.kind === 'event' && e.event === 'scale')).toMatchObject({ decision: { capped: { needed: 9, have: 6 } } });
  });

  it('with pools that re-shard (splitTps), sizes a server at the TP split that carries the most of a type', () => {
    // Llama2-70B LS on H100: four TP2 instances carry ~2.6x what one TP8 instance does within the SLO, so a plan
    // sized at TP8 for pools that re-shard to TP2 holds over twice the servers the load needs
    const fmax = Math.max(...profile.clocksMhz);
    const tp8 = maxLoadOf(profile, 'LS', 8, fmax);
    const tp2 = 4 * maxLoadOf(profile, 'LS', 2, fmax);
    expect(tp2).toBeGreaterThan(2 * tp8);
    const forecast = { LS: 5.5 * tp8 };
    const gpusOf = (fx: ClusterEffect[]) => Object.fromEntries(assigned(fx).filter((a) => a.state === 'active').map((a) => [a.pool, a.grants.length]));
    // the paper's TP8 servers (the default): floor(5.5) = 5 servers for LS, the remainder to LL
    const paper = new Drive(cfg()).at(0, { type: 'epoch', why: 'sim', observed: {}, servers: SERVERS, forecast });
    expect(gpusOf(paper)).toEqual({ 'pool-LS': 5, 'pool-LL': 1 });
    // split into TP2/TP4/TP8 as the pool's re-shard plan does: floor(5.5 x tp8 / tp2) servers
    const split = new Drive(cfg({ splitTps: [2, 4, 8] })).at(0, { type: 'epoch', why: 'sim', observed: {}, servers: SERVERS, forecast });
    const want = Math.floor((5.5 * tp8) / tp2);
    expect(want).toBeLessThan(3);
    expect(gpusOf(split)).toEqual({ ...(want > 0 ? { 'pool-LS': want } : {}), 'pool-LL': 1 });
    // a TP degree outside the split list does not count: TP8 alone is the paper's plan again
    expect(gpusOf(new Drive(cfg({ splitTps: [8] })).at(0, { type: 'epoch', why: 'sim', observed: {}, servers: SERVERS, forecast }))).toEqual({ 'pool-LS': 5, 'pool-LL': 1 });
  });

  it('forecastMargin replaces the forecaster\'s safety margin on the peak it plans for (default +10%)', () => {
    const run = (c: ClusterMachineConfig) => {
      const d = new Drive(c);
      d.at(0, { type: 'observe', observed: { MM: 4 }, servers: SERVERS });
      d.at(60_000, { type: 'observe', observed: { MM: 4 }, servers: SERVERS });
      d.at(61_000, { type: 'epoch', why: 'epoch', observed: {}, servers: SERVERS });
      return d.s.lastForecast!.MM!;
    };
    expect(run(cfg())).toBeCloseTo(4.4, 9);
    expect(run(cfg({ forecastMargin: 0 }))).toBeCloseTo(4, 9);
    expect(run(cfg({ forecastMargin: 0.25 }))).toBeCloseTo(5, 9);
  });

  it('takes stored assignments (route, epoch) but never an older epoch over a newer one', () => {
    const d = new Drive();
    const a = (epoch: number, types: PoolAssignment['types']): PoolAssignment => ({ v: 1, pool: 'pool-LL', types, grants: [{ node: 'node-0', gpuIds: [0] }], epoch, state: 'active', issuedBy: 'x', atMs: 0 });
    d.at(0, { type: 'assignments_loaded', assignments: [a(7, ['LL', 'SS'])] });
    expect(d.s.epoch).toBe(7);
    expect(d.s.route.get('SS')).toBe('pool-LL');
    d.at(1, { type: 'assignments_loaded', assignments: [a(5, ['LL'])] });
    expect(d.s.assignments.get('pool-LL')!.epoch).toBe(7);
  });

  it('counts a server alive while its agent reported within 3 x deadAfterMs, every configured one before any did', () => {
    const seen = new Map([['node-1', T0 - 2000], ['node-2', T0 - 10_000]]);
    expect(aliveServers(SERVERS, seen, T0, 3000).map((s) => s.id)).toEqual(['node-1']);
    expect(aliveServers(SERVERS, new Map(), T0, 3000)).toBe(SERVERS);
  });
});

describe('cluster machine: intake routing', () => {
  const pools = REQUEST_TYPES.map((t) => ({ id: `pool-${t}`, types: [t] }));
  const active = (pool: string, types: PoolAssignment['types'], state: PoolAssignment['state'] = 'active'): PoolAssignment => ({ v: 1, pool, types, grants: [], epoch: 1, state, issuedBy: 'x', atMs: 0 });

  it('spills to the pools serving longer requests, in the plan\'s pool order: input class first, then output', () => {
    expect(longerType('SS')).toBe('SM');
    expect(longerType('SL')).toBe('MS');
    expect(longerType('ML')).toBe('LS');
    expect(longerType('LL')).toBeUndefined();
    const s = initialClusterState({ pools });
    expect(intakePools(s, 'MM', () => true)).toEqual(['pool-MM', 'pool-ML', 'pool-LS', 'pool-LM', 'pool-LL']);
  });

  it("an epoch sizes for a type's remainder the pool intake spills that type to (ML's: the LS pool)", () => {
    const f = Math.max(...profile.clocksMhz);
    const per = (t: 'ML' | 'LS' | 'LL') => maxLoadOf(profile, t, 8, f);
    const servers = Array.from({ length: 12 }, (_, i) => ({ id: `node-${i}`, gpus: 8 }));
    const d = new Drive(cfg({ splitTps: [8] }));
    // ML at 1.5 servers' worth: one server and half a server of ML forwarded; LS at 0.6 of a server, LL at 1
    const fx = d.at(0, { type: 'epoch', why: 'start', observed: {}, servers, forecast: { ML: 1.5 * per('ML'), LS: 0.6 * per('LS'), LL: 1 * per('LL') } });
    const by = Object.fromEntries(assigned(fx).filter((a) => a.state === 'active').map((a) => [a.pool, a]));
    // the LS pool's one server exists for ML's half (0.6 + 0.5 -> 1): ML's overflow goes there first
    expect(Object.keys(by).sort()).toEqual(['pool-LL', 'pool-LS', 'pool-ML']);
    expect(by['pool-LS']!.grants).toHaveLength(1);
    expect(intakePools(d.s, 'ML', () => true)).toEqual(['pool-ML', 'pool-LS', 'pool-LL']);
    expect(intakePools(d.s, 'LS', () => true)).toEqual(['pool-LS', 'pool-LL']);
  });

  it('skips retired pools, and pools without a ready instance while a longer pool has one', () => {
    const s = initialClusterState({ pools });
    for (const x of ['pool-SL', 'pool-MM', 'pool-LS', 'pool-LM']) s.assignments.set(x, active(x, [x.slice(5) as 'SL'], 'retired'));
    s.route.set('SL', 'pool-MS'); // merged: SL routes to the MS pool
    expect(intakePools(s, 'SM', () => true)).toEqual(['pool-SM', 'pool-MS', 'pool-ML', 'pool-LL']);
    // pool-SM was just granted servers (nothing ready yet): the longer pools serve meanwhile
    expect(intakePools(s, 'SM', (p) => p !== 'pool-SM')).toEqual(['pool-MS', 'pool-ML', 'pool-LL']);
    // nothing ready anywhere: every candidate is tried (the pool leader holds the request while it starts)
    expect(intakePools(s, 'SM', () => false)).toEqual(['pool-SM', 'pool-MS', 'pool-ML', 'pool-LL']);
  });
});
