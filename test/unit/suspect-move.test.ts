/**
 * Moves to peers suspect a silent peer before its death (policy suspect.ts heard), on a virtual clock driving the
 * machines event by event: a peer silent past suspectAfterMs (a host cut off by a partition: its statuses just stop)
 * takes no moved request from the pool machine (emergency step 3, an engine crash, a stop) and does not count as room
 * at the instance machine (the ladder's move step, the backpressure to the pool); its next status takes it back at
 * once. With every peer silent, a move moves nothing (its requests stay with the instance that is heard). The pool
 * choice (the gateway's routerPools, intake's intakePools) skips a pool whose ready instances are all suspected while a
 * longer pool has one heard.
 */
import { describe, expect, it } from 'vitest';
import { heard } from '../../src/policy/suspect.ts';
import { initialRouterState, routerPools, routerStatus, routerTable, type RouterConfig } from '../../src/policy/machines/router.ts';
import { intakePools } from '../../src/policy/machines/cluster.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest } from '../../src/policy/machines/instance.ts';
import { profileFor } from '../../src/sim/index.ts';
import { instanceStatusMaker, requestMaker } from '../helpers/instance-status.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const [A, B, C] = ['i-a', 'i-b', 'i-c'];
const status = instanceStatusMaker(POOL, T0);
const req = requestMaker(T0);
let n = 0;

describe('heard (policy suspect.ts): the candidates of a move', () => {
  it('keeps those heard within suspectAfterMs, none when all are silent (no least-silent fallback), all without a threshold', () => {
    const seen = new Map([[A, 1000], [B, 1600], [C, 1900]]);
    const at = (now: number, after?: number) => heard([A, B, C], (x) => seen.get(x)!, now, after);
    expect(at(2000, 750)).toEqual([B, C]);
    expect(at(2600, 750)).toEqual([C]);
    expect(at(5000, 750)).toEqual([]);
    expect(at(5000)).toEqual([A, B, C]);
  });
});

describe('the pool machine\'s move (poolStep) sends no moved request to a peer silent past suspectAfterMs', () => {
  const cfg: PoolMachineConfig = { pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 2000, suspectAfterMs: 750, statusIntervalMs: 250, epochMs: 300_000, healthDeadlineMs: 10_000, initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic' };
  let s: PoolMachineState;
  const at = (ms: number, ev: PoolEvent): PoolEffect[] => {
    const r = poolStep(s, ev, T0 + ms, cfg);
    s = r.state;
    return r.effects;
  };
  /** a move of `k` requests from `from` at `ms`, each admit answered at once: the instances they went to, and the pool's reply. */
  const move = (ms: number, from: string, k: number) => {
    const to: string[] = [];
    let reply: Extract<PoolEffect, { kind: 'move_reply' }>['reply'] | undefined;
    const fx = at(ms, { type: 'move', ref: ++n, from, requests: Array.from({ length: k }, req) });
    while (fx.length) {
      const e = fx.shift()!;
      if (e.kind === 'move_reply') reply = e.reply;
      if (e.kind !== 'admit') continue;
      to.push(e.instance);
      fx.push(...at(ms, { type: 'admit_result', job: e.job, admission: { v: 1, id: e.req.id, ok: true, instance: e.instance } }));
    }
    return { to: [...new Set(to)].sort(), placed: reply?.placed.length, refused: reply?.refused.length };
  };
  const start = () => {
    s = initialPoolState(['SS']);
    at(0, { type: 'start' });
    at(0, { type: 'lead', term: 1 });
  };

  it('a move goes to the heard peers only, and to a silent peer again after its next status', () => {
    start();
    for (const id of [A, B, C]) at(0, { type: 'status', status: status(id) });
    expect(move(10, A, 4).to).toEqual([B, C]);
    // C's statuses stop (a partition); A's and B's come every 250 ms
    for (let t = 250; t <= 1000; t += 250) for (const id of [A, B]) at(t, { type: 'status', status: status(id) });
    expect(move(1000, A, 4)).toEqual({ to: [B], placed: 4, refused: 0 });
    // the partition heals: C's next status takes it back at once (B's says the moved requests started)
    for (const id of [A, B, C]) at(1250, { type: 'status', status: status(id) });
    expect(move(1260, A, 4).to).toEqual([B, C]);
  });

  it('every peer silent past suspectAfterMs: a move moves nothing (refused, the requests stay with their instance), then goes after a status', () => {
    start();
    // A stops (draining) and moves its queue; its only peer C is cut off, and silent past suspectAfterMs
    for (const id of [A, C]) at(0, { type: 'status', status: status(id) });
    for (let t = 250; t <= 1000; t += 250) at(t, { type: 'status', status: status(A, { state: 'draining' }) });
    expect(move(1000, A, 3)).toEqual({ to: [], placed: 0, refused: 3 });
    // the leader's own loop stalled: every instance silent, the mover too: still no move into the silence
    expect(move(1900, A, 2)).toEqual({ to: [], placed: 0, refused: 2 });
    at(1950, { type: 'status', status: status(C) });
    expect(move(1960, A, 3)).toEqual({ to: [C], placed: 3, refused: 0 });
  });
});

describe('the instance machine counts no peer silent past suspectAfterMs as room', () => {
  const profile = profileFor('llama2-70b', 'h100');
  const CLOCKS = profile.clocksMhz;
  const MAX = CLOCKS[CLOCKS.length - 1]!;
  const icfg: InstanceMachineConfig = {
    tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 1, maxQueued: 32, timeScale: 1, deadAfterMs: 3000, suspectAfterMs: 750,
    moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16,
  };
  let s: InstanceMachineState;
  const at = (ms: number, ev: InstanceEvent): InstanceEffect[] => {
    const r = instanceStep(s, ev, T0 + ms, icfg);
    s = r.state;
    return r.effects;
  };
  const mreq = (type: 'LL' | 'MM' | 'SS', ms: number, o: Partial<MachineRequest> = {}): MachineRequest => {
    const ttftSloMs = type === 'LL' ? 2000 : type === 'MM' ? 400 : 250;
    return { id: `m${++n}`, type, inputTokens: type === 'LL' ? 100 : 150, arrivalMs: T0 + ms, ttftDeadlineMs: T0 + ms + ttftSloMs, ttftSloMs, moves: 0, ...o };
  };
  const ready = (clockMhz: number) => {
    s = initialInstanceState(T0);
    at(0, { type: 'start' });
    at(0, { type: 'gpu_ready', supportedMhz: [...CLOCKS].reverse() });
    at(0, { type: 'clock_applied', requestedMhz: MAX, appliedMhz: clockMhz, why: 'start-up', inputs: {} });
    at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
  };
  const kinds = (fx: InstanceEffect[]) => fx.map((e) => e.kind);
  const peer = (ms: number) => at(ms, { type: 'peer_status', id: 'peer', queued: 0, running: 0, state: 'ready' });

  it('the ladder\'s move step: no move to a peer silent past suspectAfterMs (the ladder goes on), a move after its next status', () => {
    ready(1400);
    at(0, { type: 'admit', req: mreq('LL', 0) }); // the one engine slot, 1 s of service: every queued request predicts a miss
    for (let i = 0; i < 6; i++) at(10 + i, { type: 'admit', req: mreq('MM', 10 + i) });
    peer(20);
    at(100, { type: 'tick' }); // step 1: reorder
    at(1100, { type: 'tick' }); // step 2: max clock
    // step 3 at 2100: the peer last heard at 20 (2080 ms: suspected, not yet dead) is no room, nothing moves
    const s3 = at(2100, { type: 'tick' });
    expect(kinds(s3)).not.toContain('move');
    expect(s.emergency.level).toBe(3);
    expect(s.peers.has('peer')).toBe(true);
    expect(s.queue.length).toBe(6);
    // nobody heard to move to: level 3 does not hold the ladder back
    at(2200, { type: 'tick' });
    expect(s.emergency.level).toBe(4);
    // the peer's next status: the move goes
    peer(2250);
    const mv = at(2300, { type: 'tick' }).find((e) => e.kind === 'move');
    expect(mv).toMatchObject({ kind: 'move', why: 'emergency: backlog' });
    expect((mv as { ids: string[] }).ids).toHaveLength(6);
  });

  it('the backpressure to the pool: no refusal for a peer silent past suspectAfterMs, a refusal again after its next status', () => {
    ready(MAX);
    at(0, { type: 'admit', req: mreq('LL', 0) }); // in the engine; the service time is 1000 ms
    peer(20);
    // 780 ms after its status the peer is suspected (not dead): the request is queued here, not refused toward silence
    expect(kinds(at(800, { type: 'admit', req: mreq('SS', 800) }))).toContain('admitted');
    peer(900);
    expect(at(910, { type: 'admit', req: mreq('SS', 910) })).toMatchObject([{ kind: 'refused', code: 'overloaded' }]);
  });
});

describe('the pool choice (routerPools, intakePools) skips a pool whose ready instances are all silent past suspectAfterMs', () => {
  const rc: RouterConfig = { headroom: 0, deadAfterMs: 2000, suspectAfterMs: 750 };
  const ss = instanceStatusMaker('pool-SS', T0), ll = instanceStatusMaker('pool-LL', T0);

  it('a longer pool heard takes the type while its own pool is silent; its next status brings it back; all silent: both', () => {
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { SS: 'pool-SS', LL: 'pool-LL' }, pools: [{ pool: 'pool-SS', types: ['SS'], retired: false }, { pool: 'pool-LL', types: ['LL'], retired: false }], epoch: 1, issuedBy: 'cm', sentMs: T0 }, T0);
    routerStatus(s, ss(A), T0);
    routerStatus(s, ll(B), T0);
    expect(routerPools(s, 'SS', T0 + 10, rc)).toEqual(['pool-SS', 'pool-LL']);
    // pool-SS's host is cut off; pool-LL's statuses come every 250 ms
    for (let t = 250; t <= 1000; t += 250) routerStatus(s, ll(B), T0 + t);
    expect(routerPools(s, 'SS', T0 + 1000, rc)).toEqual(['pool-LL']);
    routerStatus(s, ss(A), T0 + 1100);
    expect(routerPools(s, 'SS', T0 + 1100, rc)).toEqual(['pool-SS', 'pool-LL']);
    // the gateway's loop stalled: every instance silent past suspectAfterMs, none dead: both pools, as without the suspicion
    expect(routerPools(s, 'SS', T0 + 1900, rc)).toEqual(['pool-SS', 'pool-LL']);
  });

  it('intake: heard pools first, then the live ready ones, then every candidate', () => {
    const m = { route: new Map([['SS', 'pool-SS'], ['LL', 'pool-LL']] as const), assignments: new Map() };
    const sets = (ready: string[], heardOnes: string[]) => intakePools(m, 'SS', (p) => ready.includes(p), (p) => heardOnes.includes(p));
    expect(sets(['pool-SS', 'pool-LL'], ['pool-LL'])).toEqual(['pool-LL']);
    expect(sets(['pool-SS', 'pool-LL'], [])).toEqual(['pool-SS', 'pool-LL']);
    expect(sets(['pool-SS'], [])).toEqual(['pool-SS']);
    expect(sets([], [])).toEqual(['pool-SS', 'pool-LL']);
  });
});
