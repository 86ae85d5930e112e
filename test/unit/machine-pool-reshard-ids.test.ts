/**
 * The pool machine's re-shard back from one TP4 to two TP2s (the twin run of deploy/twin.yaml from 2160 s of the
 * conversation trace), event by event on a virtual clock: every instance it has a node start runs on an aligned
 * block of GPUs, the one its id names (`g<first>x<tp>`) and the one `dynamollm up` made a NATS credential for
 * (possibleInstances): an id outside them names no seed file, so its instance manager cannot connect and its
 * supervisor restarts it for ever while its node holds its GPUs. An instance started that never reports is stopped on
 * its node once its wait is over (the node frees its GPUs only then), and a start its node refuses is asked again
 * only after a backoff that doubles with each refusal in a row.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { START_BACKOFF_MAX_MS } from '../../src/policy/machines/pool-reconcile.ts';
import { possibleInstances } from '../../src/runtime/nats-server-config.ts';
import type { InstanceStatus, NodeCommand, PoolAssignment } from '../../protocols/control.ts';
import { milpSolved } from '../helpers/milp-solved.ts';

const profile = profileFor('llama3.1-8b', 'h100');
const T0 = 1_700_000_000_000;
const POOL = 'pool-all';
const NODE = 'n0';
const id = (g: number, tp: number) => `${POOL}-${NODE}-g${g}x${tp}`;
const TP4 = id(0, 4);
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 60_000,
  initialTp: 2, moveQueueAbove: 16, retryAfterS: 1, planner: 'milp', profile,
};
/** the instance ids `dynamollm up` makes credentials for on this cluster (one 8-GPU node, one pool). */
const credentialed = new Set(possibleInstances({ clusterId: 'c', clusterManagers: [], poolManagers: [], gateways: [], nodes: [{ id: NODE, gpus: 8 }], pools: [POOL] }).map((i) => i.id));
const seqs = new Map<string, number>();
function status(inst: string, o: Partial<InstanceStatus> = {}): InstanceStatus {
  const seq = (seqs.get(inst) ?? 0) + 1;
  seqs.set(inst, seq);
  const [, g0, tp] = /-g(\d+)x(\d+)$/.exec(inst)!.map(Number);
  return {
    v: 1, id: inst, pool: POOL, node: NODE, tp: tp as 1 | 2 | 4 | 8, gpuIds: Array.from({ length: tp! }, (_, i) => g0! + i), state: 'ready', startedMs: T0, seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
}
const assignment: PoolAssignment = { v: 1, pool: POOL, types: ['SS'], grants: [{ node: NODE, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 };

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  /** every node command the machine sent, with its time. */
  sent: { ms: number; cmd: NodeCommand }[] = [];
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    for (const e of r.effects) if (e.kind === 'node') this.sent.push({ ms, cmd: e.cmd });
    // the store acknowledges a re-shard's record at once
    const acks = r.effects.flatMap((e) => (e.kind === 'persist_reshard' && e.ack !== undefined ? [e.ack] : []));
    return [...r.effects, ...acks.flatMap((ack) => this.at(ms, { type: 'reshard_stored', ack, ok: true }))];
  }
  starts(fx: PoolEffect[]): NodeCommand[] {
    return fx.flatMap((e) => (e.kind === 'node' && e.cmd.op === 'start_instance' ? [e.cmd] : []));
  }
}
const summaries = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'event' && e.event === 'reshard' ? [e.summary] : []));

/** A leader of one TP4 on GPUs 0-3 (the layout of a complete 4xTP2 -> 1xTP4, GPUs 4-7 granted and free) that takes 1xTP4 -> 2xTP2 at 30 s. */
function tp4Leader(): { d: Drive; begun: PoolEffect[] } {
  const d = new Drive();
  d.at(0, { type: 'start' });
  d.at(0, { type: 'status', status: status(TP4, { loadByType: { SS: 1 } }) });
  d.at(0, { type: 'lead', term: 1, stored: assignment, reshard: { epoch: 1, target: [{ tp: 4, count: 1 }], state: 'complete' } });
  d.at(10, { type: 'status', status: status(TP4, { loadByType: { SS: 1 } }) });
  expect(d.sent).toEqual([]);
  const fx = d.at(30_000, { type: 'reshard_epoch' });
  expect(fx.some((e) => e.kind === 'solve')).toBe(true);
  return { d, begun: d.at(30_100, milpSolved([{ tp: 2, count: 2 }])) };
}

describe('pool machine: 1xTP4 -> 2xTP2 on a node with the TP4\'s old GPUs', () => {
  it('starts each TP2 on an aligned block whose id has a credential, and completes with both serving', () => {
    const { d, begun } = tp4Leader();
    expect(summaries(begun).some((x) => x.includes('take 1xTP4 -> 2xTP2'))).toBe(true);
    // unit 1: the first TP2 starts beside the TP4, on free GPUs
    const [first] = d.starts(begun);
    expect(first).toMatchObject({ instanceId: id(4, 2), gpuIds: [4, 5] });
    d.at(30_200, { type: 'node_result', cmd: first!, ok: true, purpose: 'reshard' });
    let fx = d.at(33_000, { type: 'status', status: status(id(4, 2)) });
    expect(fx).toContainEqual(expect.objectContaining({ kind: 'drain', instance: TP4 }));
    fx = d.at(33_500, { type: 'status', status: status(TP4, { state: 'draining' }) });
    expect(fx.flatMap((e) => (e.kind === 'node' ? [[e.cmd.op, e.cmd.instanceId]] : []))).toEqual([['stop_instance', TP4]]);
    // unit 2: the TP4 gone, the second TP2 starts on its GPUs
    fx = d.at(34_000, { type: 'status', status: status(TP4, { state: 'stopped' }) });
    fx = [...fx, ...d.at(34_100, { type: 'tick' })];
    const [second] = d.starts(fx);
    expect(second).toMatchObject({ instanceId: id(0, 2), gpuIds: [0, 1] });
    d.at(34_200, { type: 'node_result', cmd: second!, ok: true, purpose: 'reshard' });
    fx = d.at(37_000, { type: 'status', status: status(id(0, 2)) });
    expect(summaries(fx).at(-1)).toMatch(/re-shard complete/);
    // every start names a credentialed id, and the id's aligned block is the GPUs it asks for
    const started = d.sent.filter((x) => x.cmd.op === 'start_instance').map((x) => x.cmd);
    expect(started.map((c) => c.instanceId)).toEqual([id(4, 2), id(0, 2)]);
    for (const c of started) {
      expect(credentialed.has(c.instanceId)).toBe(true);
      expect(status(c.instanceId).gpuIds).toEqual(c.gpuIds);
    }
  });

  it('a started instance that never reports is stopped on its node when its wait ends, so its GPUs come back', () => {
    const { d, begun } = tp4Leader();
    const [first] = d.starts(begun);
    d.at(30_200, { type: 'node_result', cmd: first!, ok: true, purpose: 'reshard' });
    // no status from it (its process cannot connect): the TP4 keeps serving for healthDeadlineMs
    for (let ms = 31_000; ms <= 30_200 + cfg.healthDeadlineMs; ms += 1000) d.at(ms, { type: 'status', status: status(TP4) });
    const fx = d.at(30_300 + cfg.healthDeadlineMs, { type: 'tick' });
    expect(fx.flatMap((e) => (e.kind === 'node' ? [[e.cmd.op, e.cmd.instanceId, e.node]] : []))).toContainEqual(['stop_instance', first!.instanceId, NODE]);
    expect(d.s.starting.has(first!.instanceId)).toBe(false);
  });
});

describe('pool machine: a reconciliation start its node refuses', () => {
  it('is asked again after a backoff that doubles up to its cap, and goes to another free block meanwhile', () => {
    const d = new Drive();
    const kept = id(4, 2);
    d.at(0, { type: 'start' });
    d.at(0, { type: 'status', status: status(kept) });
    // the layout of a re-shard to 2xTP2 that ended with one TP2: the reconciliation starts the missing one
    const led = d.at(0, { type: 'lead', term: 1, stored: assignment, reshard: { epoch: 1, target: [{ tp: 2, count: 2 }], state: 'complete' } });
    // the node refuses every start (GPUs 0-3 and 6-7 held by processes the pool does not know of)
    for (let ms = 0; ms <= 300_000; ms += 2000) {
      const fx = ms === 0 ? led : d.at(ms, { type: 'reconcile' });
      for (const c of d.starts(fx)) d.at(ms + 5, { type: 'node_result', cmd: c, ok: false, purpose: 'reconcile' });
      d.at(ms + 10, { type: 'status', status: status(kept) });
    }
    const starts = d.sent.filter((x) => x.cmd.op === 'start_instance');
    const byId = new Map<string, number[]>();
    for (const x of starts) byId.set(x.cmd.instanceId, [...(byId.get(x.cmd.instanceId) ?? []), x.ms]);
    // every free aligned block is tried (another block while one waits its backoff)
    expect([...byId.keys()].sort()).toEqual([id(0, 2), id(2, 2), id(6, 2)]);
    for (const times of byId.values()) {
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      // 1, 2, 4, 8, 16, 30, 30 ... s, at the reconciliation's 2-s period
      for (const [i, g] of gaps.entries()) expect(g).toBeGreaterThanOrEqual(Math.min(START_BACKOFF_MAX_MS, 1000 * 2 ** i));
      expect(times.length).toBeLessThanOrEqual(14);
    }
    // a start the node takes clears its backoff
    const c = starts.at(-1)!.cmd;
    d.at(300_100, { type: 'node_result', cmd: c, ok: true, purpose: 'reconcile' });
    expect(d.s.refusedStarts?.has(c.instanceId) ?? false).toBe(false);
  });
});
