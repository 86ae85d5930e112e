/**
 * The gateway's routing (src/policy/machines/router.ts): from the cluster's routing table and the instances'
 * statuses it picks what intake and the pool leader would pick. Each check drives the pool machine
 * (src/policy/machines/pool.ts) with the same statuses and requests and compares its admit effects with the
 * router's choices; the pool order is intakePools' over the same table.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { MAX_ELECTION_ROLES, TABLE_STALE_MS, electionLeaderSeen, initialElectionState, initialRouterState, lastElectionMs, routerCapacityComing, routerConnectionEnded, routerForgetAfterMs, routerGone, routerHeard, routerHolderGone, routerLink, routerPick, routerPools, routerStatus, routerTable, routerView, type RouterConfig } from '../../src/policy/machines/router.ts';
import type { InstanceStatus, RoutingTable } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';
import type { RequestType } from '../../protocols/request-types.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const DEAD = 3000;
const rc: RouterConfig = { profile, headroom: 0, deadAfterMs: DEAD };
const pc = (pool: string): PoolMachineConfig => ({
  pool, holder: 'pm-1', profile, headroom: 0, deadAfterMs: DEAD, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
});

let n = 0;
function req(type: RequestType, inputTokens = 100): InferenceRequest {
  const id = `r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type };
}

const seqs = new Map<string, number>();
function status(pool: string, id: string, tp: 1 | 2 | 4 | 8, o: Partial<InstanceStatus> = {}): InstanceStatus {
  const seq = o.seq ?? (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  return {
    v: 1, id, pool, node: 'node-0', tp, gpuIds: Array.from({ length: tp }, (_, i) => i), state: 'ready', startedMs: T0, seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
}

const table = (o: Partial<RoutingTable> = {}): RoutingTable => ({
  v: 1, routes: { SS: 'pool-SS', SM: 'pool-SM', SL: 'pool-LL', ML: 'pool-LL', LL: 'pool-LL' },
  pools: [{ pool: 'pool-SS', types: ['SS'], retired: false }, { pool: 'pool-SM', types: ['SM'], retired: false }, { pool: 'pool-LL', types: ['SL', 'ML', 'LL'], retired: false }],
  epoch: 3, issuedBy: 'cm-0', sentMs: T0, ...o,
});

/** The pool machine as a leader with the given statuses; `dispatch` returns the instance its admit effect names. */
function poolLeader(pool: string, types: RequestType[], statuses: InstanceStatus[]) {
  let s: PoolMachineState = initialPoolState(types);
  let ref = 0;
  const step = (ev: Parameters<typeof poolStep>[1]): PoolEffect[] => {
    const r = poolStep(s, ev, T0, pc(pool));
    s = r.state;
    return r.effects;
  };
  step({ type: 'start' });
  step({ type: 'lead' });
  for (const st of statuses) step({ type: 'status', status: st });
  return {
    dispatch(r: InferenceRequest): string {
      const fx = step({ type: 'dispatch', ref: ++ref, req: r });
      const admit = fx.find((e): e is Extract<PoolEffect, { kind: 'admit' }> => e.kind === 'admit');
      if (!admit) throw new Error(`no admit: ${JSON.stringify(fx)}`);
      step({ type: 'admit_result', job: admit.job, admission: { v: 1, id: r.id, ok: true, instance: admit.instance } });
      return admit.instance;
    },
  };
}

describe('gateway routing (router machine)', () => {
  it('picks the instance the pool leader picks, request after request of a burst (the same local count between statuses)', () => {
    const sts = [
      status('pool-SS', 'a', 8, { clockMhz: 1200, loadByType: { SS: 2 } }),
      status('pool-SS', 'b', 4, { queued: 2, running: 3, loadByType: { SS: 1 } }),
      status('pool-SS', 'c', 2, { running: 1, pendingPrefillTokens: 4000, loadByType: { SS: 0.5 } }),
    ];
    const s = initialRouterState();
    routerTable(s, table(), T0);
    for (const st of sts) routerStatus(s, st, T0);
    const leader = poolLeader('pool-SS', ['SS'], sts);
    const picks: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = req('SS', 100 + 37 * i);
      const mine = routerPick(s, 'pool-SS', r, new Set(), T0, rc);
      expect(mine).toBe(leader.dispatch(r));
      picks.push(mine!);
    }
    // a burst spreads: more than one instance took part
    expect(new Set(picks).size).toBeGreaterThan(1);
  });

  it('tries the pools intake would, skips retired pools and pools with nothing ready, and nothing without a table', () => {
    const s = initialRouterState();
    routerStatus(s, status('pool-SM', 'm1', 4), T0);
    routerStatus(s, status('pool-LL', 'l1', 8), T0);
    expect(routerPools(s, 'SM', T0, rc)).toEqual([]); // no table yet: intake decides
    routerTable(s, table(), T0);
    expect(routerPools(s, 'SM', T0, rc)).toEqual(['pool-SM', 'pool-LL']);
    expect(routerPools(s, 'SS', T0, rc)).toEqual(['pool-SM', 'pool-LL']); // pool-SS has no instance in the view: the longer pools
    routerTable(s, table({ epoch: 4, pools: [{ pool: 'pool-SM', types: ['SM'], retired: true }, { pool: 'pool-LL', types: ['SL', 'ML', 'LL'], retired: false }] }), T0);
    expect(routerPools(s, 'SM', T0, rc)).toEqual(['pool-LL']);
    // an older table (a previous leader's snapshot in flight) changes nothing
    routerTable(s, table({ epoch: 2 }), T0 + 1000);
    expect(routerPools(s, 'SM', T0 + 1000, rc)).toEqual(['pool-LL']);
    // ... unless the table held went stale (no snapshot of its leader since): a cluster started afresh counts epochs anew
    routerStatus(s, status('pool-SM', 'm1', 4), T0 + TABLE_STALE_MS);
    routerStatus(s, status('pool-LL', 'l1', 8), T0 + TABLE_STALE_MS);
    routerTable(s, table({ epoch: 1 }), T0 + TABLE_STALE_MS);
    expect(routerPools(s, 'SM', T0 + TABLE_STALE_MS, rc)).toEqual(['pool-SM', 'pool-LL']);
  });

  it('an instance silent for deadAfterMs, stopped, not ready, excluded or gone takes nothing; an older status is ignored', () => {
    const s = initialRouterState();
    routerTable(s, table(), T0);
    routerStatus(s, status('pool-SS', 'a', 4), T0);
    routerStatus(s, status('pool-SS', 'b', 4, { queued: 50 }), T0 + 2000);
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(['b']), T0 + 1000, rc)).toBe('a');
    // a is silent past deadAfterMs: only b (even with its queue) takes requests
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(), T0 + DEAD + 1, rc)).toBe('b');
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(['b']), T0 + DEAD + 1, rc)).toBeUndefined();
    // b did not answer (no responders): out until its next status
    routerGone(s, 'pool-SS', 'b');
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(), T0 + DEAD + 100, rc)).toBeUndefined();
    routerStatus(s, status('pool-SS', 'b', 4, { state: 'draining' }), T0 + DEAD + 200);
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(), T0 + DEAD + 300, rc)).toBeUndefined();
    const seq = seqs.get('b')!;
    routerStatus(s, status('pool-SS', 'b', 4, { seq: seq - 1 }), T0 + DEAD + 300); // out of order: still draining
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(), T0 + DEAD + 300, rc)).toBeUndefined();
    routerStatus(s, status('pool-SS', 'b', 4), T0 + DEAD + 400);
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(), T0 + DEAD + 400, rc)).toBe('b');
    routerStatus(s, status('pool-SS', 'b', 4, { state: 'stopped' }), T0 + DEAD + 500);
    expect(routerPick(s, 'pool-SS', req('SS'), new Set(), T0 + DEAD + 500, rc)).toBeUndefined();
  });
  it("a holder is not called gone for the silence of this view's own link: down, or unheard past routerLinkGapMs; back, its silence counts from the link's return", () => {
    const s = initialRouterState();
    const heard = (ms: number, ids: string[]) => {
      routerHeard(s, T0 + ms, rc);
      for (const id of ids) routerStatus(s, status('pool-SS', id, 4), T0 + ms);
    };
    routerTable(s, table(), T0);
    // h holds the request (admitted at 0), p is a peer; both report every 250 ms until 1000
    for (let t = 0; t <= 1000; t += 250) heard(t, ['h', 'p']);
    // a cut this view's client has not noticed: nothing heard from 1000 on
    expect(routerHolderGone(s, 'h', T0, T0, T0 + 4100, rc)).toBe(false);
    // heard again at 6000 (a table first, then the peer): h's silence counts from 6000
    heard(6000, []);
    heard(6100, ['p']);
    expect(routerHolderGone(s, 'h', T0, T0, T0 + 6200, rc)).toBe(false);
    heard(6250, ['h']);
    expect(routerHolderGone(s, 'h', T0, T0, T0 + 6300, rc)).toBe(false);
    // the link itself down (the bus's disconnect) past deadAfterMs: no verdict; back up, deadAfterMs from then
    routerLink(s, false, T0 + 6400);
    expect(routerHolderGone(s, 'h', T0, T0, T0 + 10_000, rc)).toBe(false);
    routerLink(s, true, T0 + 10_000);
    for (let t = 10_000; t <= 13_500; t += 250) heard(t, ['p']);
    expect(routerHolderGone(s, 'h', T0, T0, T0 + 13_000, rc)).toBe(false);
    // h really is gone: silent while the view hears the bus, deadAfterMs after the link's return
    expect(routerHolderGone(s, 'h', T0, T0, T0 + 13_001, rc)).toBe(true);
  });
  it("the process holding a routed request is gone: silent for deadAfterMs, replaced by a later process, or not answering; never for a process the view has not seen yet", () => {
    const s = initialRouterState();
    routerTable(s, table(), T0);
    routerStatus(s, status('pool-SS', 'h', 4, { startedMs: T0 - 10_000 }), T0);
    const P = T0 - 10_000;
    // admitted at T0 + 500 by that process: alive while its statuses (or the admission itself) are recent
    expect(routerHolderGone(s, 'h', P, T0 + 500, T0 + DEAD, rc)).toBe(false);
    expect(routerHolderGone(s, 'h', P, T0 + 500, T0 + 500 + DEAD + 1, rc)).toBe(true);
    routerStatus(s, status('pool-SS', 'h', 4, { startedMs: P }), T0 + 3000);
    expect(routerHolderGone(s, 'h', P, T0 + 500, T0 + 3000 + DEAD, rc)).toBe(false);
    // a new process under the id: the one that admitted the request is gone at once
    routerStatus(s, status('pool-SS', 'h', 4, { startedMs: T0 + 3100, seq: 1 }), T0 + 3200);
    expect(routerHolderGone(s, 'h', P, T0 + 500, T0 + 3200, rc)).toBe(true);
    // the new process admitted a request before its first status reached this view: not gone while the admission is recent
    const s2 = initialRouterState();
    routerTable(s2, table(), T0);
    routerStatus(s2, status('pool-SS', 'k', 4, { startedMs: P }), T0);
    expect(routerHolderGone(s2, 'k', T0 + 4000, T0 + 5000, T0 + 5000 + DEAD, rc)).toBe(false);
    expect(routerHolderGone(s2, 'k', T0 + 4000, T0 + 5000, T0 + 5000 + DEAD + 1, rc)).toBe(true);
    // an admission that got no responders since: gone until its next status
    routerGone(s2, 'pool-SS', 'k');
    expect(routerHolderGone(s2, 'k', P, T0, T0 + 100, rc)).toBe(true);
    routerStatus(s2, status('pool-SS', 'k', 4, { startedMs: P }), T0 + 200);
    expect(routerHolderGone(s2, 'k', P, T0, T0 + 300, rc)).toBe(false);
    // an instance the view does not hold (never seen, or stopped) is never called gone
    expect(routerHolderGone(s2, 'nobody', P, T0, T0 + 100 * DEAD, rc)).toBe(false);
    // without a start in the admission (an older instance), silence alone decides
    expect(routerHolderGone(s2, 'k', undefined, T0, T0 + 200 + DEAD, rc)).toBe(false);
    expect(routerHolderGone(s2, 'k', undefined, T0, T0 + 200 + DEAD + 1, rc)).toBe(true);
  });
});

describe('instances the gateway forgets (routerSweep, run by routerView, routerPick and the status feed)', () => {
  it('an instance killed (its statuses stop, no `stopped`) leaves the view after routerForgetAfterMs; a live one stays; its connection ending later does not bring it back', () => {
    const s = initialRouterState();
    routerTable(s, table(), T0);
    const c = { server: 'SRV', client: 7 };
    routerStatus(s, status('pool-SS', 'killed', 4, { conn: c }), T0);
    const forget = routerForgetAfterMs(DEAD);
    expect(forget).toBeGreaterThanOrEqual(10 * DEAD);
    const outIds = (now: number) => routerView(s, now, rc).pools.find((p) => p.pool === 'pool-SS')?.out.map((o) => o.id) ?? [];
    let now = T0;
    for (; now <= T0 + forget + 2 * DEAD; now += 500) {
      routerStatus(s, status('pool-SS', 'live', 4), now);
      // dead and still in the view (lapsed) up to the bound
      if (now > T0 + DEAD && now <= T0 + forget) expect(outIds(now)).toEqual(['killed']);
      if (now > T0 + DEAD) expect(routerPick(s, 'pool-SS', req('SS'), new Set(), now, rc)).toBe('live');
    }
    expect(outIds(now)).toEqual([]);
    expect([...s.byPool.get('pool-SS')!.keys()]).toEqual(['live']);
    routerConnectionEnded(s, c, now, rc);
    expect(routerView(s, now, rc).pools.find((p) => p.pool === 'pool-SS')).toEqual({ pool: 'pool-SS', ready: ['live'], out: [] });
    // a later status under the id tracks it anew
    routerStatus(s, status('pool-SS', 'killed', 4, { startedMs: now }), now);
    expect(routerView(s, now, rc).pools.find((p) => p.pool === 'pool-SS')?.ready).toEqual(['killed', 'live']);
  });
});

describe('leader elections the gateway follows (electionLeaderSeen, lastElectionMs)', () => {
  const DEAD = 1500;
  const HOLD = 60_000;
  it('a leader beating is no election; one silent past deadAfterMs is under way until its successor beats, then ended then', () => {
    const s = initialElectionState();
    for (let t = 0; t <= 1000; t += 250) electionLeaderSeen(s, 'pool:a', t, DEAD);
    expect(lastElectionMs(s, 2000, DEAD, HOLD)).toBeUndefined();
    // the leader's last beat at 1000: dead after 2500, under way from then on
    expect(lastElectionMs(s, 2400, DEAD, HOLD)).toBeUndefined();
    expect(lastElectionMs(s, 2600, DEAD, HOLD)).toBe(2600);
    expect(lastElectionMs(s, 9000, DEAD, HOLD)).toBe(9000);
    // the successor beats at 9500: the election ended then, and stays the last one
    electionLeaderSeen(s, 'pool:a', 9500, DEAD);
    expect(lastElectionMs(s, 9600, DEAD, HOLD)).toBe(9500);
    electionLeaderSeen(s, 'pool:a', 9750, DEAD);
    expect(lastElectionMs(s, 9900, DEAD, HOLD)).toBe(9500);
  });
  it('a leader silent for holdMs is no longer waited for; the latest of several roles counts', () => {
    const s = initialElectionState();
    electionLeaderSeen(s, 'cluster', 0, DEAD);
    electionLeaderSeen(s, 'pool:b', 0, DEAD);
    expect(lastElectionMs(s, HOLD - 1, DEAD, HOLD)).toBe(HOLD - 1);
    expect(lastElectionMs(s, HOLD + 1, DEAD, HOLD)).toBeUndefined();
    electionLeaderSeen(s, 'pool:b', HOLD + 10, DEAD);
    expect(lastElectionMs(s, HOLD + 20, DEAD, HOLD)).toBe(HOLD + 10);
  });
  it(`follows at most ${MAX_ELECTION_ROLES} roles`, () => {
    const s = initialElectionState();
    for (let i = 0; i < MAX_ELECTION_ROLES + 10; i++) electionLeaderSeen(s, `pool:${i}`, 0, DEAD);
    expect(s.roles.size).toBe(MAX_ELECTION_ROLES);
  });
});

describe('capacity coming in the gateway view (routerCapacityComing)', () => {
  const cfg: RouterConfig = { headroom: 0, deadAfterMs: 1500 };
  const st = (state: InstanceStatus['state'], seq: number): InstanceStatus => ({
    v: 1, id: 'pool-a-n0-g0x2', pool: 'pool-a', node: 'n0', tp: 2, gpuIds: [0, 1], state, startedMs: 1, seq, sentMs: 0, clockMhz: 1980, maxClockMhz: 1980,
    queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
  });
  it('none seen: nothing coming; ready and alive: nothing coming; starting, or silent past deadAfterMs within holdMs: coming', () => {
    const s = initialRouterState();
    expect(routerCapacityComing(s, 0, cfg, 30_000)).toBe(false);
    routerStatus(s, st('ready', 1), 0);
    expect(routerCapacityComing(s, 1000, cfg, 30_000)).toBe(false);
    // silent past deadAfterMs: dead, its node agent starts it again
    expect(routerCapacityComing(s, 2000, cfg, 30_000)).toBe(true);
    routerStatus(s, st('starting', 2), 2500);
    expect(routerCapacityComing(s, 3000, cfg, 30_000)).toBe(true);
    // not heard of for holdMs: no longer waited for
    expect(routerCapacityComing(s, 2500 + 30_000, cfg, 30_000)).toBe(false);
    routerStatus(s, st('ready', 3), 9000);
    expect(routerCapacityComing(s, 9100, cfg, 30_000)).toBe(false);
  });
  it('no instance seen while the routing table names an active pool (every instance restarting, a view just begun): coming; a retired pool only: not', () => {
    const s = initialRouterState();
    const table = (retired: boolean): RoutingTable => ({ v: 1, routes: { SS: 'pool-a' }, pools: [{ pool: 'pool-a', types: ['SS'], retired }], epoch: 1, issuedBy: 'cm-0', sentMs: 0 });
    routerTable(s, table(true), 0);
    expect(routerCapacityComing(s, 10, cfg, 30_000)).toBe(false);
    routerTable(s, table(false), 20);
    expect(routerCapacityComing(s, 30, cfg, 30_000)).toBe(true);
    routerStatus(s, st('ready', 1), 40);
    expect(routerCapacityComing(s, 50, cfg, 30_000)).toBe(false);
  });
});
