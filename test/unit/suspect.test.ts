/**
 * Suspect before dead (policy suspect.ts), on a virtual clock: an instance silent past suspectAfterMs (a host cut
 * off by a partition: no reset, its statuses just stop) leaves the gateway's routing and the pool leader's dispatch
 * at once, keeps its in-flight requests (its death, and what the death does to them, waits for deadAfterMs), and
 * takes requests again at its next status; when every instance of a pool is silent that long (the dispatcher's own
 * event loop stalled), dispatch keeps the least silent ones instead of refusing; when every heard instance refused a
 * request, it goes on to the silent ones still alive, the least silent first.
 */
import { describe, expect, it } from 'vitest';
import { INSTANCE_STATUS_MS, instanceStatusMs, suspectAfterMsOf, suspected, unsuspected } from '../../src/policy/suspect.ts';
import { initialRouterState, routerHolderGone, routerPick, routerStatus, routerTable, routerView, type RouterConfig, type RouterState } from '../../src/policy/machines/router.ts';
import { initialPoolState, poolDispatchView, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { instanceStatusMaker, requestMaker } from '../helpers/instance-status.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const [A, B, C] = ['i-a', 'i-b', 'i-c'];
const status = instanceStatusMaker(POOL, T0);
const req = requestMaker(T0);
let n = 0;

describe('the suspicion (policy suspect.ts)', () => {
  it('derives its defaults from the status intervals: 250-ms instance statuses (the actors\' interval where shorter), 3 of them', () => {
    expect(instanceStatusMs({ statusIntervalMs: 1000 })).toBe(INSTANCE_STATUS_MS);
    expect(suspectAfterMsOf({ statusIntervalMs: 1000 })).toBe(750);
    expect(instanceStatusMs({ statusIntervalMs: 100 })).toBe(100);
    expect(suspectAfterMsOf({ statusIntervalMs: 100 })).toBe(300);
    expect(suspectAfterMsOf({ statusIntervalMs: 1000, instanceStatusIntervalMs: 400 })).toBe(1200);
    expect(suspectAfterMsOf({ statusIntervalMs: 1000, suspectAfterMs: 900 })).toBe(900);
  });

  it('keeps the heard candidates; when all are silent, the least silent ones (within suspectAfterMs of the freshest), never none', () => {
    const seen = new Map([[A, 1000], [B, 1600], [C, 1900]]);
    const at = (now: number, after?: number) => unsuspected([A, B, C], (x) => seen.get(x)!, now, after);
    expect(suspected(1000, 1750, 750)).toBe(false);
    expect(suspected(1000, 1751, 750)).toBe(true);
    expect(at(2000, 750)).toEqual([B, C]);
    expect(at(2300, 750)).toEqual([B, C]);
    expect(at(2600, 750)).toEqual([C]);
    // every one silent past 750 ms: C (heard last) and B (300 ms before it) stay, A (900 ms before) does not
    expect(at(5000, 750)).toEqual([B, C]);
    expect(at(5000)).toEqual([A, B, C]);
    expect(unsuspected([], () => 0, 5000, 750)).toEqual([]);
  });
});

describe('the gateway\'s routing (routerPick, routerView) suspects a silent instance before its death', () => {
  const rc: RouterConfig = { headroom: 0, deadAfterMs: 2000, suspectAfterMs: 750 };
  /** the instances 8 requests at `now` are routed to, none refused (each counted in the view, so a burst spreads) */
  const picks = (s: RouterState, now: number): string[] => {
    const got = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const id = routerPick(s, POOL, req(), new Set(), now, rc);
      if (id !== undefined) got.add(id);
    }
    return [...got].sort();
  };
  const heard = (s: RouterState, ids: string[], now: number) => {
    for (const id of ids) routerStatus(s, status(id), now);
  };

  it('out of dispatch after suspectAfterMs of silence, its request not called gone until deadAfterMs; back at its next status', () => {
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { SS: POOL }, pools: [{ pool: POOL, types: ['SS'], retired: false }], epoch: 1, issuedBy: 'cm', sentMs: T0 }, T0);
    heard(s, [A, B, C], T0);
    expect(picks(s, T0 + 10)).toEqual([A, B, C]);
    // C's host is cut off at T0 + 100: its statuses stop; A's and B's come every 250 ms
    for (let t = 250; t <= 1000; t += 250) heard(s, [A, B], T0 + t);
    expect(picks(s, T0 + 700)).toEqual([A, B, C]);
    expect(picks(s, T0 + 800)).toEqual([A, B]);
    expect(routerView(s, T0 + 800, rc).pools[0]).toEqual({ pool: POOL, ready: [A, B], out: [{ id: C, state: 'ready', why: 'suspect', sinceMs: T0 + 750 }] });
    // a request C admitted just before the cut is still its: not gone (no migration, no error) before deadAfterMs
    expect(routerHolderGone(s, C, T0, T0 + 50, T0 + 1500, rc)).toBe(false);
    expect(routerHolderGone(s, C, T0, T0 + 50, T0 + 2100, rc)).toBe(true);
    // the partition heals: C's next status takes it back at once
    heard(s, [A, B], T0 + 1250);
    heard(s, [C], T0 + 1300);
    expect(picks(s, T0 + 1300)).toEqual([A, B, C]);
    expect(routerView(s, T0 + 1300, rc).pools[0]!.ready).toEqual([A, B, C]);
  });

  it('every instance silent past suspectAfterMs (the gateway\'s loop stalled): the least silent still take requests', () => {
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { SS: POOL }, pools: [{ pool: POOL, types: ['SS'], retired: false }], epoch: 1, issuedBy: 'cm', sentMs: T0 }, T0);
    heard(s, [C], T0);
    heard(s, [A, B], T0 + 900);
    // 800 ms without a status read: all three suspected; A and B (heard last) are still dispatched to, C (900 ms before them) is not
    expect(picks(s, T0 + 1700)).toEqual([A, B]);
    expect(routerView(s, T0 + 1700, rc).pools[0]!.ready).toEqual([A, B]);
    // past deadAfterMs the lapse verdict holds, as without the suspicion
    expect(picks(s, T0 + 3000)).toEqual([]);
  });
});

describe('the pool leader\'s dispatch (poolStep) suspects a silent instance before its death', () => {
  const cfg: PoolMachineConfig = { pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 2000, suspectAfterMs: 750, statusIntervalMs: 250, epochMs: 300_000, healthDeadlineMs: 10_000, initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic' };
  let s: PoolMachineState;
  const at = (ms: number, ev: PoolEvent): PoolEffect[] => {
    const r = poolStep(s, ev, T0 + ms, cfg);
    s = r.state;
    return r.effects;
  };
  const heard = (ids: string[], ms: number) => {
    for (const id of ids) at(ms, { type: 'status', status: status(id) });
  };
  /** the instances 8 dispatches at `ms` are sent to, each admitted at once */
  const admitted = (ms: number): string[] => {
    const got = new Set<string>();
    for (let i = 0; i < 8; i++) {
      for (const e of at(ms, { type: 'dispatch', ref: ++n, req: req() })) {
        if (e.kind !== 'admit') continue;
        got.add(e.instance);
        at(ms, { type: 'admit_result', job: e.job, admission: { v: 1, id: e.req.id, ok: true, instance: e.instance } });
      }
    }
    return [...got].sort();
  };
  const deaths = (fx: PoolEffect[]) => fx.filter((e) => e.kind === 'end_stream' || (e.kind === 'event' && e.event === 'failure'));

  it('no new request to it after suspectAfterMs, its requests kept (no death, no stream ended) until deadAfterMs; back at its next status', () => {
    s = initialPoolState(['SS']);
    at(0, { type: 'start' });
    at(0, { type: 'lead', term: 1 });
    heard([A, B, C], 0);
    expect(admitted(10)).toEqual([A, B, C]);
    const cHolds = [...s.outstanding.values()].filter((o) => o.instance === C).map((o) => o.req.id);
    expect(cHolds.length).toBeGreaterThan(0);
    // C's statuses stop (a partition); A's and B's come every 250 ms
    for (let t = 250; t <= 1000; t += 250) heard([A, B], t);
    expect(admitted(800)).toEqual([A, B]);
    expect(poolDispatchView(s, POOL, T0 + 800, cfg.suspectAfterMs)).toEqual({ pool: POOL, leader: true, ready: [A, B], out: [{ id: C, state: 'ready', why: 'suspect', sinceMs: T0 + 750 }] });
    expect(deaths(at(1000, { type: 'sweep' }))).toEqual([]);
    expect(cHolds.every((id) => s.outstanding.get(id)?.instance === C)).toBe(true);
    // the partition heals within deadAfterMs: C takes requests again at its first status
    heard([A, B], 1250);
    heard([C], 1300);
    expect(admitted(1310)).toEqual([A, B, C]);
    expect(poolDispatchView(s, POOL, T0 + 1310, cfg.suspectAfterMs).ready).toEqual([A, B, C]);
    // silent past deadAfterMs: dead, and its started streams end (the death's work, not the suspicion's)
    for (let t = 1500; t <= 3500; t += 250) heard([A, B], t);
    const fx = at(3500, { type: 'sweep' });
    expect(deaths(fx).filter((e) => e.kind === 'end_stream').length).toBeGreaterThan(0);
  });

  it('every instance silent past suspectAfterMs (the leader\'s loop stalled): the least silent still take requests, none refused or held', () => {
    s = initialPoolState(['SS']);
    at(0, { type: 'start' });
    at(0, { type: 'lead', term: 1 });
    heard([C], 0);
    heard([A, B], 900);
    const fx = at(1700, { type: 'dispatch', ref: 1, req: req() });
    expect(fx.filter((e) => e.kind === 'held' || (e.kind === 'reply' && !e.admission.ok))).toEqual([]);
    expect(fx.flatMap((e) => (e.kind === 'admit' ? [e.instance] : []))).toHaveLength(1);
    expect(admitted(1700)).toEqual([A, B]);
  });
});

describe('a request every heard instance refused goes on to the silent ones still alive, the least silent first', () => {
  // B silent 1000 ms and C silent 2000 ms at T0 + 2000: both suspected (750 ms), neither dead (3000 ms)
  const DEAD = 3000;
  const full = (id: string) => ({ v: 1 as const, id, ok: false, error: { code: 'overloaded' as const, message: 'engine full', retryable: true } });

  it('the pool leader\'s dispatch (poolStep): A refuses, B then C are tried; every one refusing is overload (no hold)', () => {
    const run = (suspectAfterMs: number | undefined, refuse: Set<string>) => {
      const cfg: PoolMachineConfig = { pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: DEAD, ...(suspectAfterMs !== undefined ? { suspectAfterMs } : {}), statusIntervalMs: 250, epochMs: 300_000, healthDeadlineMs: 10_000, initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic' };
      let s = initialPoolState(['SS']);
      const at = (ms: number, ev: PoolEvent): PoolEffect[] => {
        const r = poolStep(s, ev, T0 + ms, cfg);
        s = r.state;
        return r.effects;
      };
      at(0, { type: 'start' });
      at(0, { type: 'lead', term: 1 });
      for (const id of [A, B, C]) at(0, { type: 'status', status: status(id) });
      at(1000, { type: 'status', status: status(B) });
      for (let t = 250; t <= 2000; t += 250) at(t, { type: 'status', status: status(A) });
      const tried: string[] = [];
      const fx = at(2000, { type: 'dispatch', ref: 1, req: req() });
      for (let e = fx.shift(); e; e = fx.shift()) {
        if (e.kind === 'reply') return { tried, reply: e.admission };
        if (e.kind === 'held') return { tried, held: true };
        if (e.kind !== 'admit') continue;
        tried.push(e.instance);
        fx.push(...at(2000, { type: 'admit_result', job: e.job, admission: refuse.has(e.instance) ? full(e.req.id) : { v: 1, id: e.req.id, ok: true, instance: e.instance } }));
      }
      return { tried };
    };
    const heardOneFull = run(750, new Set([A]));
    expect(heardOneFull.tried).toEqual([A, B]);
    expect(heardOneFull.reply).toMatchObject({ ok: true, instance: B });
    // without the suspicion the same run ends at B as well
    expect(run(undefined, new Set([A])).reply).toMatchObject({ ok: true, instance: B });
    expect(run(750, new Set([A, B])).tried).toEqual([A, B, C]);
    const allFull = run(750, new Set([A, B, C]));
    expect(allFull.tried).toEqual([A, B, C]);
    expect(allFull.reply).toMatchObject({ ok: false, error: { code: 'overloaded' } });
  });

  it('the gateway\'s routing (routerPick): with A tried, B; with A and B tried, C; none once all are tried', () => {
    const rc: RouterConfig = { headroom: 0, deadAfterMs: DEAD, suspectAfterMs: 750 };
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { SS: POOL }, pools: [{ pool: POOL, types: ['SS'], retired: false }], epoch: 1, issuedBy: 'cm', sentMs: T0 }, T0);
    for (const id of [A, B, C]) routerStatus(s, status(id), T0);
    routerStatus(s, status(B), T0 + 1000);
    for (let t = 250; t <= 2000; t += 250) routerStatus(s, status(A), T0 + t);
    const pick = (tried: string[]) => routerPick(s, POOL, req(), new Set(tried), T0 + 2000, rc);
    expect(pick([])).toBe(A);
    expect(pick([A])).toBe(B);
    expect(pick([A, B])).toBe(C);
    expect(pick([A, B, C])).toBeUndefined();
    // the view lists what a request nothing refused may go to: the heard one
    expect(routerView(s, T0 + 2000, rc).pools[0]!.ready).toEqual([A]);
  });
});
