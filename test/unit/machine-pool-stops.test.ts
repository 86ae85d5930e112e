/**
 * The pool machine's scale-in, event by event on a virtual clock: of instances alike in weights (one TP, one
 * server), a re-shard keeps the one holding the fewest requests and stops the others busiest first (policy
 * stopsByLoad on the statuses' queued + running). A stop unit waits until its instance has drained, and the next
 * unit waits for it: the longest drain begins first, while the others still serve, and which instance stops when
 * does not hang on which one the dispatch happened to fill (live and simulated alike).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import { milpSolved } from '../helpers/milp-solved.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 2, moveQueueAbove: 4, retryAfterS: 1, planner: 'milp', profile: profileFor('llama2-70b', 'h100'),
};
const assignment: PoolAssignment = { v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 };

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  seqs = new Map<string, number>();
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    // the shell's store acknowledges a re-shard's record at once (its first command waits for that)
    const acks = r.effects.flatMap((e) => (e.kind === 'persist_reshard' && e.ack !== undefined ? [e.ack] : []));
    return [...r.effects, ...acks.flatMap((ack) => this.at(ms, { type: 'reshard_stored', ack, ok: true }))];
  }
  status(id: string, o: Partial<InstanceStatus> = {}): InstanceStatus {
    const seq = (this.seqs.get(id) ?? 0) + 1;
    this.seqs.set(id, seq);
    const g0 = Number(/-g(\d+)x2$/.exec(id)![1]);
    return {
      v: 1, id, pool: POOL, node: 'node-0', tp: 2, gpuIds: [g0, g0 + 1], state: 'ready', startedMs: T0, seq, sentMs: T0,
      clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: { SS: 10 }, ...o,
    };
  }
}
const nodeCmds = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'node' ? [e.cmd] : []));
const drains = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'drain' ? [e.instance] : []));

describe('pool machine: which instances a scale-in stops, and when', () => {
  it('4xTP2 -> 1xTP2 keeps the instance holding the fewest requests and stops the others busiest first', () => {
    const d = new Drive();
    d.at(0, { type: 'lead', term: 1 });
    for (const cmd of nodeCmds(d.at(0, { type: 'assign', ref: 1, assignment }))) d.at(10, { type: 'node_result', cmd, ok: true, purpose: 'reconcile' });
    const [g0, g2, g4, g6] = [0, 2, 4, 6].map((g) => `${POOL}-node-0-g${g}x2`) as [string, string, string, string];
    const work: Record<string, Partial<InstanceStatus>> = { [g0]: { running: 1 }, [g2]: { queued: 1, running: 6 }, [g4]: {}, [g6]: { running: 2 } };
    for (const id of [g0, g2, g4, g6]) d.at(20, { type: 'status', status: d.status(id, work[id]) });
    d.at(30, { type: 'reshard_epoch' });
    let t = 40;
    let out = d.at(t, milpSolved([{ tp: 2, count: 1 }]));
    const drained: string[] = [];
    for (let unit = 0; unit < 3; unit++) {
      const [drain, ...more] = drains(out);
      expect(more).toEqual([]);
      drained.push(drain!);
      // the instance empties and is stopped; once it has stopped the next unit begins
      out = d.at((t += 100), { type: 'status', status: d.status(drain!, { state: 'draining' }) });
      expect(nodeCmds(out).map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', drain]]);
      out = d.at((t += 100), { type: 'status', status: d.status(drain!, { state: 'stopped' }) });
    }
    expect(drained).toEqual([g2, g6, g0]);
    expect(d.s.reshard).toBeUndefined();
    expect([...d.s.instances.values()].filter((x) => x.alive && x.status.state === 'ready').map((x) => x.status.id)).toEqual([g4]);
  });
});
