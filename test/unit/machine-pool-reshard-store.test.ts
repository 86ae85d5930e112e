/**
 * The pool machine's re-shard across a leader's death (issue 13), event by event on a virtual clock: the leader
 * stores its re-shard when it begins ('persist_reshard' running, acknowledged by the store before its first
 * command: a re-shard whose record is not stored is not executed) and when it ends (complete); a successor
 * leading on the same assignment epoch with a running one finishes it to its target, from the layout it finds
 * once every instance serves again; without it (or on another epoch) the successor leaves the layout as it is. A
 * successor that sees no live instance at its lead leaves the stored assignment to the planner, and finishes the
 * re-shard when the planner sends that same assignment; instances that report again drained serve again.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState, type StoredReshard } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import { milpSolved } from '../helpers/milp-solved.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const A = `${POOL}-node-0-g0x4`;
const B = `${POOL}-node-0-g4x4`;
const TP8 = `${POOL}-node-0-g0x8`;
const cfg = (holder: string): PoolMachineConfig => ({
  pool: POOL, holder, headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'milp', profile,
});
const seqs = new Map<string, number>();
function status(id: string, o: Partial<InstanceStatus> = {}): InstanceStatus {
  const seq = (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const [, g0, tp] = /-g(\d+)x(\d+)$/.exec(id)!.map(Number);
  return {
    v: 1, id, pool: POOL, node: 'node-0', tp: tp as 1 | 2 | 4 | 8, gpuIds: Array.from({ length: tp! }, (_, i) => g0! + i), state: 'ready', startedMs: T0, seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
}
const assignment = (epoch = 1): PoolAssignment => ({
  v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch, state: 'active', issuedBy: 'cm-1', atMs: T0,
});

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  /** `store`: the shell's store acknowledges a re-shard's record at once (false: the test answers it). */
  constructor(readonly c: PoolMachineConfig, readonly store = true) {}
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, this.c);
    this.s = r.state;
    const acks = this.store ? r.effects.flatMap((e) => (e.kind === 'persist_reshard' && e.ack !== undefined ? [e.ack] : [])) : [];
    return [...r.effects, ...acks.flatMap((ack) => this.at(ms, { type: 'reshard_stored', ack, ok: true }))];
  }
}
const of = <K extends PoolEffect['kind']>(fx: PoolEffect[], kind: K) => fx.filter((e): e is Extract<PoolEffect, { kind: K }> => e.kind === kind);
const summaries = (fx: PoolEffect[]) => of(fx, 'event').filter((e) => e.event === 'reshard').map((e) => e.summary);
const commanded = (fx: PoolEffect[], k: 'drain' | 'resume') => fx.flatMap((e) => ((e.kind === 'drain' || e.kind === 'resume') && e.kind === k ? [e.instance] : [])).sort();
const drained = (fx: PoolEffect[]) => commanded(fx, 'drain');

/** A leader of 2xTP4 on one 8-GPU grant that takes the MILP's 2xTP4 -> 1xTP8 (both drain first) at 300.1 s; `store`: as Drive's. */
function takes(store = true): { leader: Drive; begun: PoolEffect[] } {
  const leader = new Drive(cfg('pm-1'), store);
  leader.at(0, { type: 'lead', term: 1 });
  for (const e of of(leader.at(0, { type: 'assign', ref: 1, assignment: assignment() }), 'node')) leader.at(10, { type: 'node_result', cmd: e.cmd, ok: true, purpose: 'reconcile' });
  // load at the epoch (the MILP has something to solve), none when its answer comes (a loaded pool is never left dark)
  leader.at(20, { type: 'status', status: status(A, { loadByType: { SS: 1 } }) });
  leader.at(20, { type: 'status', status: status(B, { loadByType: { SS: 1 } }) });
  leader.at(300_000, { type: 'reshard_epoch' });
  leader.at(300_050, { type: 'status', status: status(A) });
  leader.at(300_050, { type: 'status', status: status(B) });
  return { leader, begun: leader.at(300_100, milpSolved([{ tp: 8, count: 1 }])) };
}

/** takes(), and a standby that saw both instances drain. */
function cutShort(): { leader: Drive; standby: Drive; begun: PoolEffect[] } {
  const { leader, begun } = takes();
  const standby = new Drive(cfg('pm-2'));
  standby.at(0, { type: 'start' });
  standby.at(300_150, { type: 'status', status: status(A, { state: 'draining' }) });
  standby.at(300_150, { type: 'status', status: status(B, { state: 'draining' }) });
  return { leader, standby, begun };
}

describe('pool machine: a re-shard cut short by the leader\'s death', () => {
  it('no command of a re-shard goes out before the store has its record: a leader killed after its first drain leaves the target to its successor', () => {
    const { leader, begun } = takes(false);
    const [rec] = of(begun, 'persist_reshard');
    expect(rec).toMatchObject({ epoch: 1, target: [{ tp: 8, count: 1 }], state: 'running' });
    expect([...drained(begun), ...of(begun, 'node').map((e) => e.cmd.instanceId)]).toEqual([]);
    expect(drained(leader.at(300_200, { type: 'tick' }))).toEqual([]);
    // the store acknowledges it: the first unit begins
    expect(drained(leader.at(300_300, { type: 'reshard_stored', ack: rec!.ack!, ok: true }))).toEqual([A, B]);
  });

  it('a re-shard whose record the store refuses, or does not acknowledge within its bound, is not executed', () => {
    const refused = takes(false);
    const [r1] = of(refused.begun, 'persist_reshard');
    let fx = refused.leader.at(300_300, { type: 'reshard_stored', ack: r1!.ack!, ok: false });
    expect(summaries(fx)).toEqual([`${POOL}: re-shard not executed: its record was not stored (a successor could not finish it)`]);
    expect(drained([...fx, ...refused.leader.at(300_400, { type: 'tick' })])).toEqual([]);
    expect(refused.leader.s.reshard).toBeUndefined();
    const silent = takes(false);
    const [r2] = of(silent.begun, 'persist_reshard');
    expect(summaries(silent.leader.at(310_000, { type: 'tick' }))).toEqual([]);
    fx = silent.leader.at(310_200, { type: 'tick' });
    expect(summaries(fx)).toEqual([`${POOL}: re-shard not executed: its record was not stored (a successor could not finish it)`]);
    // an answer after the bound changes nothing
    expect(drained([...fx, ...silent.leader.at(310_300, { type: 'reshard_stored', ack: r2!.ack!, ok: true })])).toEqual([]);
  });

  it('the leader stores it when it begins; a successor on the same assignment finishes it to its target once every instance serves again', () => {
    const { standby, begun } = cutShort();
    expect(drained(begun)).toEqual([A, B]);
    const stored = of(begun, 'persist_reshard');
    expect(stored).toEqual([{ kind: 'persist_reshard', epoch: 1, target: [{ tp: 8, count: 1 }], state: 'running', ack: expect.any(Number) }]);
    const { kind: _k, ack: _a, ...rec } = stored[0]!;
    let fx = standby.at(302_000, { type: 'lead', term: 2, stored: assignment(), reshard: rec });
    expect(commanded(fx, 'resume')).toEqual([A, B]);
    expect(summaries(fx)).toEqual([`${POOL}: finishing the previous leader's re-shard`]);
    // nothing while they are still draining; once both serve, the re-shard begins again from that layout
    expect(drained(standby.at(302_050, { type: 'tick' }))).toEqual([]);
    standby.at(302_100, { type: 'status', status: status(A) });
    fx = standby.at(302_100, { type: 'status', status: status(B) });
    expect(summaries(fx)).toEqual([`${POOL}: executing 1 staggered unit(s)`]);
    expect(drained(fx)).toEqual([A, B]);
    expect(of(fx, 'persist_reshard')).toEqual([{ kind: 'persist_reshard', epoch: 1, target: [{ tp: 8, count: 1 }], state: 'running', ack: expect.any(Number) }]);
    // it runs to the end: both stop, the TP8 starts and is ready; stored complete
    standby.at(302_200, { type: 'status', status: status(A, { state: 'draining' }) });
    const stops = of(standby.at(302_200, { type: 'status', status: status(B, { state: 'draining' }) }), 'node');
    expect(stops.map((e) => [e.cmd.op, e.cmd.instanceId])).toEqual([['stop_instance', A], ['stop_instance', B]]);
    standby.at(302_300, { type: 'status', status: status(A, { state: 'stopped' }) });
    const [start] = of(standby.at(302_300, { type: 'status', status: status(B, { state: 'stopped' }) }), 'node');
    expect(start?.cmd).toMatchObject({ op: 'start_instance', instanceId: TP8, tp: 8 });
    standby.at(302_400, { type: 'node_result', cmd: start!.cmd, ok: true, purpose: 'reshard' });
    fx = standby.at(307_000, { type: 'status', status: status(TP8) });
    expect(summaries(fx).at(-1)).toMatch(/re-shard complete/);
    expect(of(fx, 'persist_reshard')).toEqual([{ kind: 'persist_reshard', epoch: 1, target: [{ tp: 8, count: 1 }], state: 'complete' }]);
    expect(standby.s.target).toEqual([{ tp: 8, count: 1 }]);
  });

  it('without the stored re-shard, or with one of another assignment epoch, the successor leaves the layout as it is', () => {
    for (const reshard of [undefined, { epoch: 1, target: [{ tp: 8 as const, count: 1 }], state: 'running' as const }] satisfies (StoredReshard | undefined)[]) {
      const { standby } = cutShort();
      standby.at(302_000, { type: 'lead', term: 2, stored: assignment(reshard ? 2 : 1), ...(reshard ? { reshard } : {}) });
      standby.at(302_100, { type: 'status', status: status(A) });
      const fx = standby.at(302_100, { type: 'status', status: status(B) });
      expect(drained([...fx, ...standby.at(302_200, { type: 'tick' })])).toEqual([]);
      expect(standby.s.reshard).toBeUndefined();
      expect(standby.s.target).toBeUndefined();
    }
  });

  it('a successor whose view of the instances lapsed at its lead finishes it once the planner sends the stored assignment, and resumes the drained instances as they report again', () => {
    const { standby, begun } = cutShort();
    const { kind: _k, ack: _a, ...rec } = of(begun, 'persist_reshard')[0]!;
    // no status from either instance for deadAfterMs (a loaded machine): the standby counts them dead, then leads
    standby.at(303_200, { type: 'sweep' });
    expect([...standby.s.instances.values()].filter((t) => t.alive)).toEqual([]);
    let fx = standby.at(303_300, { type: 'lead', term: 2, stored: assignment(), reshard: rec });
    // no live instance: the stored assignment waits for the planner (a shared server may hold a previous run's)
    expect(standby.s.assignment).toBeUndefined();
    expect(commanded(fx, 'resume')).toEqual([]);
    // they report again, still drained by the dead leader's re-shard: they serve again
    fx = [...standby.at(303_400, { type: 'status', status: status(A, { state: 'draining' }) }), ...standby.at(303_400, { type: 'status', status: status(B, { state: 'draining' }) })];
    expect(commanded(fx, 'resume')).toEqual([A, B]);
    // the planner re-sends the assignment the store held (the pool's status shows none): the stored re-shard is this cluster's
    fx = standby.at(303_500, { type: 'assign', ref: 7, assignment: assignment() });
    expect(summaries(fx)).toEqual([`${POOL}: finishing the previous leader's re-shard`]);
    standby.at(303_600, { type: 'status', status: status(A) });
    fx = standby.at(303_600, { type: 'status', status: status(B) });
    expect(summaries(fx)).toEqual([`${POOL}: executing 1 staggered unit(s)`]);
    expect(drained(fx)).toEqual([A, B]);
  });

  it('a stored re-shard waiting for its assignment is dropped when the planner sends another one', () => {
    const { standby, begun } = cutShort();
    const { kind: _k, ack: _a, ...rec } = of(begun, 'persist_reshard')[0]!;
    standby.at(303_200, { type: 'sweep' });
    standby.at(303_300, { type: 'lead', term: 2, stored: assignment(), reshard: rec });
    // the same epoch issued anew (another run's planner on a shared server starts its epochs at 1 too)
    const fx = standby.at(303_500, { type: 'assign', ref: 7, assignment: { ...assignment(), issuedBy: 'cm-9', atMs: T0 + 303_000 } });
    expect(summaries(fx)).toEqual([]);
    standby.at(303_600, { type: 'status', status: status(A) });
    expect(drained(standby.at(303_600, { type: 'status', status: status(B) }))).toEqual([]);
    expect(standby.s.target).toBeUndefined();
  });

  it('a complete one gives the successor the layout its reconciliation fills to', () => {
    const standby = new Drive(cfg('pm-2'));
    standby.at(0, { type: 'start' });
    standby.at(10, { type: 'status', status: status(TP8) });
    const fx = standby.at(20, { type: 'lead', term: 2, stored: assignment(), reshard: { epoch: 1, target: [{ tp: 8, count: 1 }], state: 'complete' } });
    expect(summaries(fx)).toEqual([]);
    expect(standby.s.target).toEqual([{ tp: 8, count: 1 }]);
    expect(standby.s.pendingReshard).toBeUndefined();
  });
});
