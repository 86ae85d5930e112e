/**
 * A pool leader that took the lead without reading the stored assignment (its KV did not answer within the takeover
 * budget: JetStream electing its leaders, as after a partition heals) holds only the assignment of its own earlier
 * lead, which may be stale. It starts and stops nothing on it until the assignment is confirmed: by the planner's
 * `assign`, or by a later read of the store (`stored`); then reconciliation follows the confirmed one.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { NodeCommand, PoolAssignment } from '../../protocols/control.ts';
import { instanceStatusMaker } from '../helpers/instance-status.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 8, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
const G8 = (node: string) => ({ node, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] });
const assignment = (epoch: number, nodes: string[]): PoolAssignment => ({ v: 1, pool: POOL, types: ['SS'], grants: nodes.map(G8), epoch, state: 'active', issuedBy: 'cm-1', atMs: T0 + epoch });
const status = instanceStatusMaker(POOL, T0);
const on = (node: string) => status(`${POOL}-${node}-g0x8`, { node, tp: 8, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] });

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    return r.effects;
  }
}
const nodeCmds = (fx: PoolEffect[]): NodeCommand[] => fx.flatMap((e) => (e.kind === 'node' ? [e.cmd] : []));

/** A replica that led on epoch 1 (node-0 only), lost the lead, and meanwhile saw node-1's instance (granted by a later epoch). */
function replicaWithAnOldAssignment(): Drive {
  const d = new Drive();
  d.at(0, { type: 'lead', term: 1 });
  for (const cmd of nodeCmds(d.at(0, { type: 'assign', ref: 1, assignment: assignment(1, ['node-0']) }))) d.at(10, { type: 'node_result', cmd, ok: true, purpose: 'reconcile' });
  d.at(100, { type: 'status', status: on('node-0') });
  d.at(200, { type: 'lost' });
  d.at(300, { type: 'status', status: on('node-0') });
  d.at(300, { type: 'status', status: on('node-1') });
  return d;
}

describe('pool machine: a lead taken without reading the stored assignment', () => {
  it('stops nothing on the assignment of an earlier lead until the planner confirms one', () => {
    const d = replicaWithAnOldAssignment();
    expect(nodeCmds(d.at(1000, { type: 'lead', term: 3, unread: true }))).toEqual([]);
    expect(nodeCmds(d.at(1500, { type: 'reconcile' }))).toEqual([]);
    // the planner's assignment (epoch 3: both nodes): node-1's instance is the pool's, nothing stops or starts
    expect(nodeCmds(d.at(2000, { type: 'assign', ref: 2, assignment: assignment(3, ['node-0', 'node-1']) }))).toEqual([]);
    expect(d.s.assignment?.epoch).toBe(3);
    expect(nodeCmds(d.at(2500, { type: 'reconcile' }))).toEqual([]);
  });

  it('follows the stored assignment a later read finds, a shrunken one included', () => {
    const kept = replicaWithAnOldAssignment();
    kept.at(1000, { type: 'lead', term: 3, unread: true });
    expect(nodeCmds(kept.at(3000, { type: 'stored', assignment: { stored: assignment(3, ['node-0', 'node-1']) } }))).toEqual([]);
    expect(kept.s.assignment?.epoch).toBe(3);
    // a store that really took node-1 away: once read, its instance stops
    const shrunk = replicaWithAnOldAssignment();
    shrunk.at(1000, { type: 'lead', term: 3, unread: true });
    expect(nodeCmds(shrunk.at(3000, { type: 'stored', assignment: { stored: assignment(3, ['node-0']) } })).map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', `${POOL}-node-1-g0x8`]]);
  });

  it('reconciles at once on an assignment it read at the lead', () => {
    const d = replicaWithAnOldAssignment();
    // read at the lead (epoch 1 stored, the one it holds): node-1's GPUs are not the pool's, its instance stops
    expect(nodeCmds(d.at(1000, { type: 'lead', term: 3, stored: assignment(1, ['node-0']) })).map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', `${POOL}-node-1-g0x8`]]);
  });
});
