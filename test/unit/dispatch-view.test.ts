/**
 * The dispatchers' views as they report them (protocols DispatchView, subjects.dispatchView): the gateway's routing
 * view (policy routerView) and the pool leader's (poolDispatchView) list ready exactly the instances their dispatch
 * picks, and say why each other one takes no request (policy outOfDispatch); and how `dynamollm chaos` times a kill's
 * leave of them (src/cli/chaos-views.ts ViewLeave, timeByViews).
 */
import { describe, expect, it } from 'vitest';
import { initialRouterState, routerConnectionEnded, routerGone, routerPick, routerStatus, routerTable, routerView, type RouterConfig } from '../../src/policy/machines/router.ts';
import { initialPoolState, poolDispatchView, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { ViewLeave, prunePoolOf, pruneDispatchers, timeByViews, type Dispatcher } from '../../src/cli/chaos-views.ts';
import type { Kill } from '../../src/cli/commands/chaos.ts';
import { DispatchView, type DispatchView as DispatchViewT, type InferenceRequest } from '../../protocols/index.ts';
import { instanceStatusMaker } from '../helpers/instance-status.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const SRV = 'NSERVER';
const conn = (client: number) => ({ server: SRV, client });
const [A, B, C, D] = ['i-a', 'i-b', 'i-c', 'i-d'];
const status = instanceStatusMaker(POOL, T0);
let n = 0;
function req(): InferenceRequest {
  const id = `r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS' };
}

describe('the gateway\'s routing view (routerView)', () => {
  const rc: RouterConfig = { headroom: 0, deadAfterMs: 1500 };
  it('lists ready what routerPick picks, and why and since when each other instance is out: state, dead, lapsed, conn_ended', () => {
    const s = initialRouterState();
    expect(routerView(s, T0, rc)).toEqual({ routing: false, pools: [] });
    routerTable(s, { v: 1, routes: { SS: POOL }, pools: [{ pool: POOL, types: ['SS'], retired: false }], epoch: 1, issuedBy: 'cm', sentMs: T0 }, T0);
    routerStatus(s, status(A, { conn: conn(1) }), T0);
    routerStatus(s, status(B, { conn: conn(2) }), T0);
    routerStatus(s, status(C, { conn: conn(3), state: 'starting' }), T0);
    routerStatus(s, status(D, { conn: conn(4) }), T0 + 1000);
    const picks = (now: number) => {
      const got = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const id = routerPick(s, POOL, req(), got, now, rc);
        if (id === undefined) break;
        got.add(id);
      }
      return [...got].sort();
    };
    expect(routerView(s, T0 + 100, rc)).toEqual({ routing: true, pools: [{ pool: POOL, ready: [A, B, D], out: [{ id: C, state: 'starting', why: 'state', sinceMs: T0 }] }] });
    expect(picks(T0 + 100)).toEqual([A, B, D]);
    routerConnectionEnded(s, conn(1), T0 + 200, rc);
    routerGone(s, POOL, B, T0 + 250);
    const early = routerView(s, T0 + 300, rc);
    expect(early.pools[0]).toEqual({ pool: POOL, ready: [D], out: [{ id: A, state: 'ready', why: 'conn_ended', sinceMs: T0 + 200 }, { id: B, state: 'ready', why: 'dead', sinceMs: T0 + 250 }, { id: C, state: 'starting', why: 'state', sinceMs: T0 }] });
    expect(picks(T0 + 300)).toEqual([D]);
    expect(() => DispatchView.check({ v: 1, kind: 'gateway', id: 'gw-0', atMs: T0, ...early })).not.toThrow();
    // D's statuses lapse (the last came at T0 + 1000): out since T0 + 2500; the others keep their earlier reasons
    routerStatus(s, status(C, { conn: conn(3), state: 'starting' }), T0 + 2000);
    const late = routerView(s, T0 + 2600, rc);
    expect(late.pools[0]!.ready).toEqual([]);
    expect(late.pools[0]!.out).toEqual([
      { id: A, state: 'ready', why: 'conn_ended', sinceMs: T0 + 200 }, { id: B, state: 'ready', why: 'dead', sinceMs: T0 + 250 },
      // the same process in the same state: out since its first status in it
      { id: C, state: 'starting', why: 'state', sinceMs: T0 }, { id: D, state: 'ready', why: 'lapsed', sinceMs: T0 + 2500 },
    ]);
    expect(picks(T0 + 2600)).toEqual([]);
    routerStatus(s, status(D, { conn: conn(4) }), T0 + 2700);
    expect(routerView(s, T0 + 2700, rc).pools[0]!.ready).toEqual([D]);
    // a stopped instance is forgotten: in neither list
    routerStatus(s, status(D, { conn: conn(4), state: 'stopped' }), T0 + 2800);
    expect(routerView(s, T0 + 2800, rc).pools[0]!.ready).toEqual([]);
    expect(routerView(s, T0 + 2800, rc).pools[0]!.out.map((o) => o.id)).toEqual([A, B, C]);
  });
});

describe('the pool leader\'s dispatch view (poolDispatchView)', () => {
  const cfg: PoolMachineConfig = { pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 1500, statusIntervalMs: 250, epochMs: 300_000, healthDeadlineMs: 10_000, initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic' };
  let s: PoolMachineState;
  const at = (ms: number, ev: PoolEvent): PoolEffect[] => {
    const r = poolStep(s, ev, T0 + ms, cfg);
    s = r.state;
    return r.effects;
  };
  const admitted = (ms: number): string[] => [...new Set(Array.from({ length: 8 }, () => at(ms, { type: 'dispatch', ref: n, req: req() }).flatMap((e) => (e.kind === 'admit' ? [e.instance] : []))).flat())].sort();

  it('leader only once it leads; ready what dispatch admits on; out with why (conn_ended, state, dead after the sweep)', () => {
    s = initialPoolState(['SS']);
    at(0, { type: 'start' });
    at(10, { type: 'status', status: status(A, { conn: conn(1) }) });
    at(10, { type: 'status', status: status(B, { conn: conn(2) }) });
    expect(poolDispatchView(s, POOL)).toEqual({ pool: POOL, leader: false, ready: [A, B], out: [] });
    at(20, { type: 'lead', term: 1 });
    at(30, { type: 'status', status: status(C, { conn: conn(3), state: 'restarting' }) });
    expect(poolDispatchView(s, POOL)).toEqual({ pool: POOL, leader: true, ready: [A, B], out: [{ id: C, state: 'restarting', why: 'state', sinceMs: T0 + 30 }] });
    expect(admitted(40)).toEqual([A, B]);
    at(50, { type: 'conn_ended', conn: conn(1) });
    expect(poolDispatchView(s, POOL).ready).toEqual([B]);
    expect(poolDispatchView(s, POOL).out).toContainEqual({ id: A, state: 'ready', why: 'conn_ended', sinceMs: T0 + 50 });
    expect(admitted(60)).toEqual([B]);
    // A's and B's statuses lapse: the sweep's death verdict (A was out since its connection ended)
    at(2000, { type: 'status', status: status(C, { conn: conn(3), state: 'restarting' }) });
    at(2000, { type: 'sweep' });
    expect(poolDispatchView(s, POOL)).toEqual({
      pool: POOL, leader: true, ready: [],
      out: [{ id: A, state: 'ready', why: 'conn_ended', sinceMs: T0 + 50 }, { id: B, state: 'ready', why: 'dead', sinceMs: T0 + 2000 }, { id: C, state: 'restarting', why: 'state', sinceMs: T0 + 30 }],
    });
    // its restarted process: ready again
    at(2100, { type: 'status', status: status(B, { conn: conn(5), startedMs: T0 + 1900 }) });
    expect(poolDispatchView(s, POOL).ready).toEqual([B]);
  });
});

describe('dynamollm chaos: a kill\'s leave of the dispatchers\' views (ViewLeave, timeByViews)', () => {
  const gw = (id: string, ready: string[], out: DispatchViewT['pools'][number]['out'] = [], routing = true): DispatchViewT => ({ v: 1, kind: 'gateway', id, atMs: 0, routing, pools: [{ pool: POOL, ready, out }] });
  const pm = (id: string, leader: boolean, ready: string[], out: DispatchViewT['pools'][number]['out'] = []): DispatchViewT => ({ v: 1, kind: 'pool', id, atMs: 0, pools: [{ pool: POOL, leader, ready, out }] });

  it('times each routing gateway from answers to requests sent after the kill; the figure is the latest, once every live gateway has dropped it', () => {
    const atMs = 10_000;
    const leave = new ViewLeave(A, atMs);
    const last = new Map<string, number>();
    const seen = (v: DispatchViewT, sentMs: number, now: number) => {
      last.set(v.id, now);
      leave.seen(v, sentMs, now, POOL);
    };
    const k: Kill = { kind: 'instance', id: A, pid: 1, atMs };
    const views = { leave, lastAnswer: (id: string) => last.get(id) ?? 0, routing: () => true };
    // an answer to a request sent before the kill says nothing of the leave
    seen(gw('gw-0', [B], [{ id: A, state: 'ready', why: 'conn_ended' }]), atMs - 10, atMs + 40);
    // a gateway that does not route is not counted
    seen(gw('gw-9', [B], [], false), atMs + 10, atMs + 50);
    seen(gw('gw-1', [A, B]), atMs + 10, atMs + 60);
    timeByViews(k, views, atMs + 60);
    expect(k.outOfGatewayMs).toBeUndefined();
    // timed by the view's own word of when it left (sinceMs), not by the answer's arrival
    seen(gw('gw-0', [B], [{ id: A, state: 'ready', why: 'conn_ended', sinceMs: atMs + 35 }]), atMs + 100, atMs + 120);
    timeByViews(k, views, atMs + 120);
    expect(k.outOfGatewayMs, 'gw-1 still routes to it').toBeUndefined();
    // a view without a time for it (no longer tracked): the answer's arrival
    seen(gw('gw-1', [B]), atMs + 1400, atMs + 1450);
    // a later answer listing it ready again (its restarted process) changes nothing
    seen(gw('gw-0', [A, B]), atMs + 1500, atMs + 1520);
    timeByViews(k, views, atMs + 1520);
    expect(k).toMatchObject({
      outOfGatewayMs: 1450, gatewayOutWhy: 'absent', gatewaySeenMs: 1450,
      gatewaysOut: { 'gw-0': { outMs: 35, seenMs: 120, why: 'conn_ended' }, 'gw-1': { outMs: 1450, seenMs: 1450, why: 'absent' } },
    });
    expect(k.outOfPoolMs).toBeUndefined();
  });

  it('does not wait for a gateway that stopped answering (killed), and takes the pool figure from a leader of the instance\'s pool only', () => {
    const atMs = 20_000;
    const leave = new ViewLeave(A, atMs);
    const last = new Map<string, number>();
    const seen = (v: DispatchViewT, sentMs: number, now: number) => {
      last.set(v.id, now);
      leave.seen(v, sentMs, now, POOL);
    };
    const k: Kill = { kind: 'engine', id: 'e', pid: 2, atMs };
    const views = { leave, lastAnswer: (id: string) => last.get(id) ?? 0, routing: () => true };
    seen(gw('gw-0', [A, B]), atMs + 10, atMs + 20);
    // out since before the kill (it was restarting already): 0
    seen(gw('gw-1', [B], [{ id: A, state: 'restarting', why: 'state', sinceMs: atMs - 500 }]), atMs + 10, atMs + 30);
    // a standby's view is not where requests go
    seen(pm('pm-1', false, [B]), atMs + 10, atMs + 40);
    timeByViews(k, views, atMs + 1000);
    expect(k.outOfGatewayMs).toBeUndefined();
    expect(k.outOfPoolMs).toBeUndefined();
    // a leader cut off from the harness for 5 s: timed by its own word
    seen(pm('pm-0', true, [B], [{ id: A, state: 'restarting', why: 'state', sinceMs: atMs + 60 }]), atMs + 50, atMs + 5000);
    // gw-0 answered last 20 ms after the kill: 2 s later it is gone and not waited for
    timeByViews(k, views, atMs + 2100);
    expect(k).toMatchObject({ outOfGatewayMs: 0, gatewayOutWhy: 'state', gatewaySeenMs: 30, outOfPoolMs: 60, poolOutWhy: 'state', poolSeenMs: 5000 });
  });
});

describe('dynamollm chaos: what DispatchViews remembers is bounded (pruneDispatchers, prunePoolOf)', () => {
  it('forgets a dispatcher silent past forgetMs unless a request to it is in flight, and an instance no view listed for forgetMs unless a kill of it is followed', () => {
    const now = 100_000;
    const FORGET = 10_000;
    const d = (id: string, hbMs: number, busy = false): [string, Dispatcher] => [`gateway/${id}`, { kind: 'gateway', id, hbMs, busy, answerMs: 0 }];
    const actors = new Map([d('live', now - 500), d('gone', now - FORGET - 1), d('gone-busy', now - FORGET - 1, true), d('edge', now - FORGET)]);
    pruneDispatchers(actors, now, FORGET);
    expect([...actors.keys()].sort()).toEqual(['gateway/edge', 'gateway/gone-busy', 'gateway/live']);
    const poolOf = new Map([['fresh', { pool: POOL, seenMs: now - 100 }], ['old', { pool: POOL, seenMs: now - FORGET - 1 }], ['old-followed', { pool: POOL, seenMs: now - FORGET - 1 }]]);
    prunePoolOf(poolOf, now, FORGET, (id) => id === 'old-followed');
    expect([...poolOf.keys()].sort()).toEqual(['fresh', 'old-followed']);
  });
});
