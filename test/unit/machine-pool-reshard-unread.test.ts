/**
 * A pool leader whose stored assignment is unconfirmed (assignmentUnread: it took the lead without reading the store)
 * holds only its earlier lead's grants, which the planner may have given another pool since. Its re-shard epoch plans
 * nothing over them (no solve, no drain, no stop, no start) until the assignment is confirmed; then the epoch plans
 * as before. Event by event on a virtual clock.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import { milpSolved } from '../helpers/milp-solved.ts';

const profile = profileFor('llama2-70b', 'h100');
const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const A = `${POOL}-node-0-g0x4`;
const B = `${POOL}-node-0-g4x4`;
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'milp', profile,
};
let seq = 0;
const status = (id: string, o: Partial<InstanceStatus> = {}): InstanceStatus => {
  const [, g0, tp] = /-g(\d+)x(\d+)$/.exec(id)!.map(Number);
  return {
    v: 1, id, pool: POOL, node: 'node-0', tp: tp as 1 | 2 | 4 | 8, gpuIds: Array.from({ length: tp! }, (_, i) => g0! + i), state: 'ready', startedMs: T0, seq: ++seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
};
const assignment = (epoch: number): PoolAssignment => ({
  v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch, state: 'active', issuedBy: 'cm-1', atMs: T0,
});

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    // the store acknowledges a re-shard's record at once
    const acks = r.effects.flatMap((e) => (e.kind === 'persist_reshard' && e.ack !== undefined ? [e.ack] : []));
    return [...r.effects, ...acks.flatMap((ack) => this.at(ms, { type: 'reshard_stored', ack, ok: true }))];
  }
}
/** What would touch an instance or a GPU: a solve, a drain, a node command (start/stop). */
const acts = (fx: PoolEffect[]) => fx.filter((e) => e.kind === 'solve' || e.kind === 'drain' || e.kind === 'node').map((e) => e.kind);

/** A replica that led on epoch 1 (2xTP4 on node-0's 8 GPUs), lost the lead, and leads again without reading the store. */
function unreadLeader(): Drive {
  const d = new Drive();
  d.at(0, { type: 'lead', term: 1 });
  for (const e of d.at(0, { type: 'assign', ref: 1, assignment: assignment(1) })) if (e.kind === 'node') d.at(10, { type: 'node_result', cmd: e.cmd, ok: true, purpose: 'reconcile' });
  d.at(20, { type: 'status', status: status(A) });
  d.at(20, { type: 'status', status: status(B) });
  d.at(100, { type: 'lost' });
  d.at(1000, { type: 'lead', term: 3, unread: true });
  d.at(1100, { type: 'status', status: status(A, { loadByType: { SS: 1 } }) });
  d.at(1100, { type: 'status', status: status(B, { loadByType: { SS: 1 } }) });
  return d;
}

describe('pool machine: the re-shard epoch of a lead whose assignment is unread', () => {
  it('plans, drains, stops and starts nothing while the assignment is unread', () => {
    const d = unreadLeader();
    expect(d.s.assignmentUnread).toBe(true);
    expect(acts(d.at(300_000, { type: 'reshard_epoch' }))).toEqual([]);
    expect(acts(d.at(300_050, { type: 'reshard_now', ref: 9 }))).toEqual([]);
    // a MILP answer (2xTP4 -> 1xTP8: both drain first) finds no plan to take
    expect(acts(d.at(300_100, milpSolved([{ tp: 8, count: 1 }])))).toEqual([]);
    expect(d.s.reshard).toBeUndefined();
  });

  it('plans again once the planner confirms the assignment', () => {
    const d = unreadLeader();
    d.at(2000, { type: 'assign', ref: 2, assignment: assignment(3) });
    expect(d.s.assignmentUnread).toBe(false);
    expect(acts(d.at(300_000, { type: 'reshard_epoch' }))).toEqual(['solve']);
    d.at(300_050, { type: 'status', status: status(A) });
    d.at(300_050, { type: 'status', status: status(B) });
    expect(acts(d.at(300_100, milpSolved([{ tp: 8, count: 1 }])))).toContain('drain');
  });
});
