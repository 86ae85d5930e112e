/**
 * The pool machine (src/policy/machines/pool.ts), driven event by event on a virtual clock: the view of the
 * instances, dispatch with its tries and holds, the death of an instance, moves, the assignment and its
 * reconciliation, the re-shard epoch and its staggered steps, as the effects it asks for.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { planPoolShards } from '../../src/policy/pool-shards.ts';
import { poolLoad, POOL_TICK_MS, type PoolEffect, type PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import type { NodeCommand, PoolAssignment } from '../../protocols/control.ts';
import { milpSolved } from '../helpers/milp-solved.ts';
import { admits, cfg, Drive, POOL, replies, req, status, T0, twoReady } from '../helpers/pool-machine.ts';

const profile = profileFor('llama2-70b', 'h100');
const assignment = (grants: { node: string; gpuIds: number[] }[], epoch = 1, o: Partial<PoolAssignment> = {}): PoolAssignment => ({
  v: 1, pool: POOL, types: ['SS'], grants, epoch, state: 'active', issuedBy: 'cm-1', atMs: T0, ...o,
});
const G8 = (node: string) => ({ node, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] });

const kinds = (fx: PoolEffect[]) => fx.map((e) => e.kind);
const nodeCmds = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'node' ? [e.cmd] : []));
const events = (fx: PoolEffect[], kind?: string) => fx.flatMap((e) => (e.kind === 'event' && (!kind || e.event === kind) ? [e] : []));
const ok = (id: string, instance: string) => ({ v: 1 as const, id, ok: true, instance });

describe('pool machine: timers, lead, reconciliation', () => {
  it('arms the sweep on start; the leader arms its loops and fills the granted GPUs with initialTp instances', () => {
    const d = new Drive();
    expect(d.at(0, { type: 'start' })).toEqual([{ kind: 'arm_timer', timer: 'sweep', everyMs: 750 }]);
    const fx = d.lead(0, assignment([G8('node-0'), G8('node-1')]));
    expect(fx.filter((e) => e.kind === 'arm_timer')).toEqual([
      { kind: 'arm_timer', timer: 'reconcile', everyMs: 2000 },
      { kind: 'arm_timer', timer: 'reshard', everyMs: 300_000 },
      { kind: 'arm_timer', timer: 'status', everyMs: 1000 },
      { kind: 'arm_timer', timer: 'tick', everyMs: POOL_TICK_MS },
    ]);
    expect(nodeCmds(fx).map((c) => [c.op, c.instanceId, c.op === 'start_instance' ? c.gpuIds : []])).toEqual([
      ['start_instance', `${POOL}-node-0-g0x4`, [0, 1, 2, 3]], ['start_instance', `${POOL}-node-0-g4x4`, [4, 5, 6, 7]],
      ['start_instance', `${POOL}-node-1-g0x4`, [0, 1, 2, 3]], ['start_instance', `${POOL}-node-1-g4x4`, [4, 5, 6, 7]],
    ]);
    expect([...d.s.starting.keys()]).toHaveLength(4);
    // the next reconciliation waits for the node's answers, then starts nothing twice
    expect(nodeCmds(d.at(2000, { type: 'reconcile' }))).toEqual([]);
    for (const c of nodeCmds(fx)) d.at(2100, { type: 'node_result', cmd: c, ok: true, purpose: 'reconcile' });
    expect(nodeCmds(d.at(4000, { type: 'reconcile' }))).toEqual([]);
  });

  it('a leader that takes over a re-shard cut short fills the GPUs it left free with the largest degree the profile runs', () => {
    // the dead leader's unit stopped a TP4 on [0-3] and started a TP2 on [0,1]; [2,3] are granted and idle
    const d = new Drive(cfg({ profile }));
    d.at(0, { type: 'start' });
    d.at(5, { type: 'status', status: status(`${POOL}-node-0-g0x2`) });
    d.at(5, { type: 'status', status: status(`${POOL}-node-0-g4x4`) });
    const fx = d.leadStored(10, assignment([G8('node-0')], 3));
    expect(nodeCmds(fx).map((c) => [c.op, c.instanceId, c.op === 'start_instance' ? c.gpuIds : []])).toEqual([['start_instance', `${POOL}-node-0-g2x2`, [2, 3]]]);
    // a degree the profile does not run is never started: without TP2 in it (or without a profile) the GPUs wait for the planner
    const noTp2 = new Drive(cfg({ profile: { ...profile, tpDegrees: profile.tpDegrees.filter((t) => t !== 2) } }));
    noTp2.at(0, { type: 'start' });
    noTp2.at(5, { type: 'status', status: status(`${POOL}-node-0-g0x2`) });
    noTp2.at(5, { type: 'status', status: status(`${POOL}-node-0-g4x4`) });
    expect(nodeCmds(noTp2.leadStored(10, assignment([G8('node-0')], 3)))).toEqual([]);
  });

  it('a stored assignment is adopted on a failover (an instance of the pool alive), not from a previous run (none alive)', () => {
    // a previous run's plan in the store, nothing of the pool alive: nothing starts; the planner's assignment does
    const fresh = new Drive();
    fresh.at(0, { type: 'start' });
    const fx = fresh.leadStored(0, assignment([G8('node-0'), G8('node-1')], 7));
    expect(nodeCmds(fx)).toEqual([]);
    expect(fresh.s.assignment).toBeUndefined();
    expect(events(fx, 'lease').map((e) => e.summary).join('\n')).toMatch(/stored assignment \(epoch 7\) not adopted: no live instance/);
    expect(nodeCmds(fresh.at(10, { type: 'assign', ref: 1, assignment: assignment([{ node: 'node-1', gpuIds: [0, 1, 2, 3] }], 8) })).map((c) => c.instanceId)).toEqual([`${POOL}-node-1-g0x4`]);
    // a failover: the standby tracks a live instance of the pool, so the store is this cluster's
    const standby = new Drive();
    standby.at(0, { type: 'start' });
    standby.at(5, { type: 'status', status: status(`${POOL}-node-0-g0x4`) });
    const fx2 = standby.leadStored(10, assignment([{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], 7));
    expect(standby.s.assignment?.epoch).toBe(7);
    expect(nodeCmds(fx2).map((c) => c.instanceId)).toEqual([`${POOL}-node-0-g4x4`]);
  });

  it('a start the node refused is retried by a later reconciliation; one never reporting is stopped on its node after the health deadline', () => {
    const d = new Drive();
    const fx = d.lead(0, assignment([{ node: 'node-0', gpuIds: [0, 1, 2, 3] }]));
    const [cmd] = nodeCmds(fx);
    d.at(100, { type: 'node_result', cmd: cmd!, ok: false, purpose: 'reconcile' });
    expect(d.s.starting.size).toBe(0);
    // its backoff (1 s after the refusal) is over by the next reconciliation
    const again = nodeCmds(d.at(2000, { type: 'reconcile' }));
    expect(again.map((c) => c.instanceId)).toEqual([`${POOL}-node-0-g0x4`]);
    d.at(2100, { type: 'node_result', cmd: again[0]!, ok: true, purpose: 'reconcile' });
    expect(nodeCmds(d.at(4000, { type: 'reconcile' }))).toEqual([]);
    // healthDeadline (10 s) + 10 s without a status: stopped on its node (which holds its GPUs until then), then started anew
    const stop = nodeCmds(d.at(22_200, { type: 'reconcile' }));
    expect(stop.map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', `${POOL}-node-0-g0x4`]]);
    expect(nodeCmds(d.at(22_300, { type: 'reconcile' }))).toEqual([]);
    d.at(22_400, { type: 'node_result', cmd: stop[0]!, ok: true, purpose: 'reconcile' });
    expect(nodeCmds(d.at(24_200, { type: 'reconcile' })).map((c) => [c.op, c.instanceId])).toEqual([['start_instance', `${POOL}-node-0-g0x4`]]);
  });

  it('assignments: another pool\'s is an error, a stale epoch is ignored, a new one stops instances on GPUs no longer granted', () => {
    const d = twoReady();
    let fx = d.at(20, { type: 'assign', ref: 1, assignment: { ...assignment([G8('node-0')]), pool: 'pool-LL' } });
    expect(fx).toEqual([{ kind: 'command_reply', ref: 1, ok: false, error: { code: 'invalid_request', message: `assignment for pool-LL sent to ${POOL}`, retryable: false } }]);
    fx = d.at(30, { type: 'assign', ref: 2, assignment: assignment([G8('node-0')], 5) });
    expect(fx[0]).toEqual({ kind: 'command_reply', ref: 2, ok: true, detail: { epoch: 5 } });
    expect(nodeCmds(fx)).toEqual([]); // both instances sit on granted GPUs
    expect(d.at(40, { type: 'assign', ref: 3, assignment: assignment([], 4) })).toEqual([{ kind: 'command_reply', ref: 3, ok: true, detail: { ignored: 'stale epoch' } }]);
    fx = d.at(50, { type: 'assign', ref: 4, assignment: assignment([{ node: 'node-0', gpuIds: [0, 1, 2, 3] }], 6) });
    expect(nodeCmds(fx).map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', `${POOL}-node-0-g4x4`]]);
    expect(events(fx, 'scale').map((e) => e.summary)).toEqual([`${POOL}: stop ${POOL}-node-0-g4x4 (GPUs returned)`]);
    // a retired pool stops everything and starts nothing
    d.at(60, { type: 'node_result', cmd: nodeCmds(fx)[0]!, ok: true, purpose: 'reconcile' });
    fx = d.at(70, { type: 'assign', ref: 5, assignment: assignment([G8('node-0')], 7, { state: 'retired' }) });
    expect(nodeCmds(fx).map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', `${POOL}-node-0-g0x4`], ['stop_instance', `${POOL}-node-0-g4x4`]]);
  });
});

describe('pool machine: instance tracking', () => {
  it('ignores an out-of-order status, forgets a stopped instance, sums the alive instances\' loads', () => {
    const d = twoReady();
    const id = `${POOL}-node-0-g0x4`;
    d.at(20, { type: 'status', status: status(id, { seq: 10, queued: 3, loadByType: { SS: 2 } }) });
    d.at(30, { type: 'status', status: status(id, { seq: 9, queued: 7 }) });
    expect(d.s.instances.get(id)!.status.queued).toBe(3);
    d.at(40, { type: 'status', status: status(`${POOL}-node-0-g4x4`, { loadByType: { SS: 1.5, SM: 1 } }) });
    expect(poolLoad(d.s)).toEqual({ SS: 3.5, SM: 1 });
    d.at(50, { type: 'status', status: status(id, { seq: 11, state: 'stopped' }) });
    expect([...d.s.instances.keys()]).toEqual([`${POOL}-node-0-g4x4`]);
  });

  it('no status for deadAfterMs: dead; its queued requests go to a peer (moves + 1), its streams end with a retryable error at the next seq', () => {
    const d = twoReady();
    const a = `${POOL}-node-0-g0x4`, b = `${POOL}-node-0-g4x4`;
    const r1 = req(), r2 = req();
    // both admitted on a (b looks loaded)
    d.at(15, { type: 'status', status: status(b, { queued: 3, running: 4 }) });
    for (const r of [r1, r2]) {
      const [ad] = admits(d.dispatch(20, r));
      expect(ad!.instance).toBe(a);
      d.at(25, { type: 'admit_result', job: ad!.job, admission: ok(r.id, a) });
    }
    d.at(100, { type: 'status', status: status(a, { queued: 1, running: 1, queuedIds: [r2.id], runningIds: [r1.id], runningSeqs: [7] }) });
    d.at(3000, { type: 'status', status: status(b, { queued: 0, running: 0 }) });
    expect(d.at(3100, { type: 'sweep' })).toEqual([]); // 3000 ms since a's status: not yet
    const fx = d.at(3101, { type: 'sweep' });
    expect(d.s.instances.get(a)!.alive).toBe(false);
    const ended = fx.filter((e) => e.kind === 'end_stream');
    expect(ended).toEqual([{ kind: 'end_stream', req: { ...r1, pool: POOL }, seq: 7, instance: a, error: { code: 'unavailable', message: `instance ${a} died (no status for 3001 ms) while serving the request`, retryable: true, retryAfterS: 1 } }]);
    expect(admits(fx).map((e) => [e.instance, e.req.id, e.req.moves])).toEqual([[b, r2.id, 1]]);
    expect(events(fx, 'failure')[0]!.decision).toEqual({ instance: a, redispatched: [r2.id], failed: [r1.id] });
    // the peer refuses and the dead one may be restarting: held up to the engine health deadline, then the stream ends with the refusal
    const r2m = { ...r2, pool: POOL, moves: 1 };
    expect(d.at(3200, { type: 'admit_result', job: admits(fx)[0]!.job, admission: { v: 1, id: r2.id, ok: false, error: { code: 'overloaded', message: 'full', retryable: true } } })).toEqual([{ kind: 'held', req: r2m, forMs: 10_000, first: true }]);
    // nothing held any more: the tick pauses (machine-pool-tick.test.ts)
    expect(d.at(13_201, { type: 'tick' })).toEqual([{ kind: 'hold_over', id: r2.id, outcome: 'timed_out' }, { kind: 'end_stream', req: r2m, seq: 0, error: { code: 'overloaded', message: 'full', retryable: true } }, { kind: 'pause_timer', timer: 'tick' }]);
  });

  it('a new process under the same id (restart): the old one\'s requests are handled as a death; a standby only tracks', () => {
    const d = twoReady();
    const a = `${POOL}-node-0-g0x4`;
    const r = req();
    d.at(16, { type: 'status', status: status(`${POOL}-node-0-g4x4`, { queued: 9 }) });
    const [ad] = admits(d.dispatch(20, r));
    d.at(25, { type: 'admit_result', job: ad!.job, admission: ok(r.id, a) });
    const fx = d.at(40, { type: 'status', status: status(a, { seq: 1, startedMs: T0 + 30 }) });
    expect(fx.filter((e) => e.kind === 'end_stream').map((e) => e.kind === 'end_stream' && e.req.id)).toEqual([r.id]);
    const standby = new Drive();
    standby.at(0, { type: 'status', status: status(a) });
    expect(standby.at(5000, { type: 'sweep' })).toEqual([]);
    expect(standby.s.instances.get(a)!.alive).toBe(false);
  });
});

describe('pool machine: dispatch', () => {
  it('a burst spreads before the next status (the local count), the admission carries the pool, the record ends the tracking', () => {
    const d = twoReady();
    const r1 = req(), r2 = req();
    const [a1] = admits(d.dispatch(20, r1));
    const [a2] = admits(d.dispatch(20, r2));
    expect(new Set([a1!.instance, a2!.instance]).size).toBe(2);
    expect(a1!.req.pool).toBe(POOL);
    const fx = d.at(30, { type: 'admit_result', job: a1!.job, admission: ok(r1.id, a1!.instance) });
    // the admission is kept in the store a successor reads, then answered
    expect(fx).toEqual([
      { kind: 'persist_dispatched', req: { ...r1, pool: POOL }, instance: a1!.instance, atMs: T0 + 30, startedMs: T0 },
      { kind: 'reply', ref: 1, admission: { ...ok(r1.id, a1!.instance), pool: POOL } },
    ]);
    expect(d.s.outstanding.get(r1.id)?.instance).toBe(a1!.instance);
    expect(d.at(40, { type: 'record', id: r1.id, instance: 'elsewhere' })).toEqual([]);
    expect(d.s.outstanding.has(r1.id)).toBe(true);
    expect(d.at(50, { type: 'record', id: r1.id, instance: a1!.instance })).toEqual([{ kind: 'forget_dispatched', id: r1.id }]);
    expect(d.s.outstanding.has(r1.id)).toBe(false);
  });

  it('a retryable refusal tries the next instance; a non-retryable one ends it; a timed-out admit is not tried again', () => {
    const d = twoReady();
    const r = req();
    const [first] = admits(d.dispatch(20, r));
    const refused = { v: 1 as const, id: r.id, ok: false, error: { code: 'overloaded' as const, message: 'busy', retryable: true } };
    const [second] = admits(d.at(25, { type: 'admit_result', job: first!.job, admission: refused }));
    expect(second!.instance).not.toBe(first!.instance);
    // both tried: the last refusal is the answer
    expect(d.at(30, { type: 'admit_result', job: second!.job, admission: refused })).toEqual([{ kind: 'reply', ref: 1, admission: { v: 1, id: r.id, ok: false, pool: POOL, error: refused.error } }]);

    const r2 = req();
    const [x] = admits(d.dispatch(40, r2));
    const bad = { code: 'invalid_request' as const, message: 'no', retryable: false };
    expect(replies(d.at(45, { type: 'admit_result', job: x!.job, admission: { v: 1, id: r2.id, ok: false, error: bad } }))[0]!.admission.error).toEqual(bad);

    const r3 = req();
    const [y] = admits(d.dispatch(50, r3));
    const fx = d.at(60, { type: 'admit_result', job: y!.job, error: { code: 'timeout', message: 'admit timed out', retryable: false }, timedOut: true });
    expect(kinds(fx)).toEqual(['reply']);
    expect(replies(fx)[0]!.admission.error).toEqual({ code: 'timeout', message: 'admit timed out', retryable: true });
  });

  it('at most 4 tries', () => {
    const d = new Drive();
    d.lead(0);
    for (let g = 0; g < 8; g++) d.at(1, { type: 'status', status: status(`${POOL}-node-0-g${g}x1`) });
    const r = req();
    let fx = d.dispatch(10, r);
    const tried: string[] = [];
    for (let k = 0; k < 4; k++) {
      const [ad] = admits(fx);
      tried.push(ad!.instance);
      fx = d.at(11 + k, { type: 'admit_result', job: ad!.job, error: { code: 'unavailable', message: 'down', retryable: true } });
    }
    expect(new Set(tried).size).toBe(4);
    expect(kinds(fx)).toEqual(['reply']);
  });

  it('no ready instance while capacity starts: the request is held until one is ready, or refused past the health deadline', () => {
    const d = new Drive();
    d.lead(0, assignment([{ node: 'node-0', gpuIds: [0, 1, 2, 3] }]));
    expect(d.s.starting.size).toBe(1);
    const r = req();
    expect(d.dispatch(100, r)).toEqual([{ kind: 'held', req: r, forMs: 10_000, first: true }]);
    expect(d.at(200, { type: 'tick' })).toEqual([]);
    const fx = d.at(900, { type: 'status', status: status(`${POOL}-node-0-g0x4`) });
    expect(admits(fx).map((e) => [e.instance, e.req.id])).toEqual([[`${POOL}-node-0-g0x4`, r.id]]);
    const d2 = new Drive();
    d2.lead(0, assignment([{ node: 'node-0', gpuIds: [0, 1, 2, 3] }]));
    const r2 = req();
    d2.dispatch(100, r2);
    expect(d2.at(10_100, { type: 'tick' })).toEqual([]);
    const late = d2.at(10_101, { type: 'tick' });
    expect(replies(late)[0]!.admission).toEqual({ v: 1, id: r2.id, ok: false, pool: POOL, error: { code: 'overloaded', message: `pool ${POOL} has no ready instance`, retryable: true, retryAfterS: 1 } });
    // nothing starting or granted, past deadAfterMs since the lead (machine-pool-overload): no hold at all
    const d3 = new Drive();
    expect(replies([...d3.lead(0), ...d3.dispatch(3010, req())])).toHaveLength(1);
  });

  it('losing the lead answers every pending dispatch and stops the leader\'s timers', () => {
    const d = twoReady();
    const r = req();
    d.dispatch(20, r);
    const fx = d.at(30, { type: 'lost' });
    expect(kinds(fx)).toEqual(['event', 'disarm_leader_timers', 'reply']);
    expect(replies(fx)[0]!.admission.error?.code).toBe('unavailable');
    expect(d.s.jobs.size).toBe(0);
  });
});

describe('pool machine: moves', () => {
  it('moved requests go to peers with room (never back, never to a full peer); the reply lists placed and refused', () => {
    const d = new Drive();
    d.lead(0);
    const [from, full, room] = [`${POOL}-node-0-g0x2`, `${POOL}-node-0-g2x2`, `${POOL}-node-0-g4x2`];
    d.at(1, { type: 'status', status: status(from, { queued: 9 }) });
    d.at(1, { type: 'status', status: status(full, { queued: 4 }) });
    d.at(1, { type: 'status', status: status(room, { queued: 0 }) });
    const r1 = req({ moves: 1 }), r2 = req({ moves: 1 });
    const fx = d.at(10, { type: 'move', ref: 7, from, requests: [r1, r2] });
    const ad = admits(fx);
    expect(ad.map((e) => e.instance)).toEqual([room, room]);
    expect(kinds(d.at(20, { type: 'admit_result', job: ad[0]!.job, admission: ok(r1.id, room) }))).toEqual(['persist_dispatched']);
    const last = d.at(30, { type: 'admit_result', job: ad[1]!.job, admission: { v: 1, id: r2.id, ok: false, error: { code: 'overloaded', message: 'full now', retryable: true } } });
    expect(last).toEqual([{ kind: 'move_reply', ref: 7, reply: { v: 1, placed: [{ id: r1.id, instance: room }], refused: [{ id: r2.id, error: { code: 'overloaded', message: 'full now', retryable: true } }] } }]);
  });
});

describe('pool machine: re-shard', () => {
  const hot = { SS: 40 };
  /** a leader of one 8-GPU grant running two TP4 instances under load. */
  function loaded(c: PoolMachineConfig): Drive {
    const d = new Drive(c);
    const fx = d.lead(0, assignment([G8('node-0')]));
    for (const cmd of nodeCmds(fx)) d.at(10, { type: 'node_result', cmd, ok: true, purpose: 'reconcile' });
    d.at(20, { type: 'status', status: status(`${POOL}-node-0-g0x4`, { loadByType: hot }) });
    d.at(20, { type: 'status', status: status(`${POOL}-node-0-g4x4`, { loadByType: hot }) });
    return d;
  }

  it('the epoch plans with policy planSharding on the pool\'s measured load and reports take or keep', () => {
    const d = loaded(cfg({ profile }));
    const fx = d.at(300_000, { type: 'reshard_epoch' });
    const plan = planPoolShards({ profile, load: { SS: 80 }, gpus: 8, current: [4, 4], epochS: 300, gpusPerServer: 8, headroom: 0 })!;
    const [ev] = events(fx, 'reshard');
    expect(ev!.summary).toBe(`${POOL}: ${plan.take ? 'take' : 'keep'} ${plan.summary}`);
    expect(ev!.decision).toEqual({ take: plan.take, target: plan.target, force: false });
  });

  it('no epoch while an instance is not ready, a start is pending, or without a profile', () => {
    expect(loaded(cfg()).at(300_000, { type: 'reshard_epoch' })).toEqual([]);
    const d = loaded(cfg({ profile }));
    d.at(30, { type: 'status', status: status(`${POOL}-node-0-g0x4`, { state: 'draining' }) });
    expect(d.at(300_000, { type: 'reshard_epoch' })).toEqual([]);
  });

  it('the leader dies during a re-shard: its successor resumes the instances that re-shard drained (they serve again)', () => {
    const a = `${POOL}-node-0-g0x4`, b = `${POOL}-node-0-g4x4`;
    const leader = loaded(cfg({ profile, planner: 'milp' }));
    leader.at(300_000, { type: 'reshard_epoch' });
    leader.at(300_050, { type: 'status', status: status(a, { loadByType: {} }) });
    leader.at(300_050, { type: 'status', status: status(b, { loadByType: {} }) });
    const out = leader.at(300_100, milpSolved([{ tp: 8, count: 1 }]));
    expect(out.filter((e) => e.kind === 'drain').map((e) => e.kind === 'drain' && e.instance).sort()).toEqual([a, b]);
    // a standby saw both instances, then both draining; the leader dies before it stops them
    const standby = new Drive(cfg({ profile, planner: 'milp', holder: 'pm-2' }));
    standby.at(0, { type: 'start' });
    standby.at(300_150, { type: 'status', status: status(a, { state: 'draining' }) });
    standby.at(300_150, { type: 'status', status: status(b, { state: 'draining' }) });
    const fx = standby.leadStored(302_000, assignment([G8('node-0')]));
    expect(fx.filter((e) => e.kind === 'resume').map((e) => e.kind === 'resume' && e.instance).sort()).toEqual([a, b]);
    expect(nodeCmds(fx)).toEqual([]);
    // they resume: the new leader dispatches to them again
    standby.at(302_100, { type: 'status', status: status(a) });
    standby.at(302_100, { type: 'status', status: status(b) });
    expect(admits(standby.dispatch(302_200, req({ giveUpAtMs: T0 + 900_000 })))).toHaveLength(1);
    // a leader that leads with a ready pool resumes nothing
    expect(new Drive().lead(0).filter((e) => e.kind === 'resume')).toEqual([]);
  });

  it('MILP: the plan is a solve effect; a plan that is taken runs its units one by one, each wait bounded', () => {
    const d = loaded(cfg({ profile, planner: 'milp' }));
    const fx = d.at(300_000, { type: 'reshard_epoch' });
    expect(fx).toEqual([{ kind: 'solve', force: false, input: { profile, pools: [{ id: 'pool', loadByType: { SS: 80 } }], gpus: 8, epochS: 300, clocks: [Math.max(...profile.clocksMhz)] } }]);
    expect(d.at(300_001, { type: 'reshard_epoch' })).toEqual([]); // one solve at a time
    // 2xTP4 -> 1xTP8: the TP8 needs the GPUs of both: drain both, stop them, start the TP8 on the freed GPUs;
    // taken only while the pool carries no load (a pool with load is never left with no instance serving)
    const a = `${POOL}-node-0-g0x4`, b = `${POOL}-node-0-g4x4`;
    d.at(300_050, { type: 'status', status: status(a, { loadByType: {} }) });
    d.at(300_050, { type: 'status', status: status(b, { loadByType: {} }) });
    let t = 300_100;
    let out = d.at(t, milpSolved([{ tp: 8, count: 1 }]));
    expect(events(out, 'reshard').map((e) => e.summary)).toEqual([`${POOL}: take 2xTP4 -> 1xTP8 (MILP): the current split cannot carry the load within SLO`, `${POOL}: executing 1 staggered unit(s)`]);
    expect(out.filter((e) => e.kind === 'drain').map((e) => e.kind === 'drain' && e.instance).sort()).toEqual([a, b]);
    // requests arriving now are held (nothing ready once both drain)
    d.at(t + 10, { type: 'status', status: status(a, { state: 'draining', queued: 0, running: 1 }) });
    d.at(t + 10, { type: 'status', status: status(b, { state: 'draining', queued: 0, running: 0 }) });
    const r = req({ giveUpAtMs: T0 + t + 600_000 });
    expect(kinds(d.dispatch(t + 20, r))).toEqual(['held']);
    out = d.at(t + 200, { type: 'status', status: status(a, { state: 'draining', queued: 0, running: 0 }) });
    expect(nodeCmds(out).map((c) => [c.op, c.instanceId])).toEqual([['stop_instance', a], ['stop_instance', b]]);
    expect(d.at(t + 300, { type: 'tick' })).toEqual([]);
    d.at(t + 400, { type: 'status', status: status(a, { state: 'stopped' }) });
    out = d.at(t + 500, { type: 'status', status: status(b, { state: 'stopped' }) });
    const tp8 = `${POOL}-node-0-g0x8`;
    const [start] = nodeCmds(out);
    expect(start).toMatchObject({ op: 'start_instance', instanceId: tp8, tp: 8, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] });
    // the node is still busy (the old managers exiting): retried every 250 ms
    d.at(t + 510, { type: 'node_result', cmd: start!, ok: false, purpose: 'reshard' });
    expect(nodeCmds(d.at(t + 700, { type: 'tick' }))).toEqual([]);
    const retry = nodeCmds(d.at(t + 800, { type: 'tick' }));
    expect(retry.map((c) => c.instanceId)).toEqual([tp8]);
    d.at(t + 900, { type: 'node_result', cmd: retry[0]!, ok: true, purpose: 'reshard' });
    t += 5000;
    out = d.at(t, { type: 'status', status: status(tp8, { state: 'ready' }) });
    expect(admits(out).map((e) => [e.instance, e.req.id])).toEqual([[tp8, r.id]]);
    const msgs = events(out, 'reshard').map((e) => e.summary);
    expect(msgs).toEqual([`${POOL}: unit reshard TP8 on node-0 [0,1,2,3,4,5,6,7] done`, `${POOL}: re-shard complete in 5000 ms`]);
    expect(d.s.reshard).toBeUndefined();
    expect(d.s.target).toEqual([{ tp: 8, count: 1 }]);
    // the reconciliation now keeps the re-shard's layout (no initialTp fill)
    expect(nodeCmds(d.at(t + 2000, { type: 'reconcile' }))).toEqual([]);
  });

  it('a plan whose unit drains every serving instance first is kept while the pool carries load (it would be dark for an engine start)', () => {
    const d = loaded(cfg({ profile, planner: 'milp' }));
    d.at(300_000, { type: 'reshard_epoch' });
    const out = d.at(300_100, milpSolved([{ tp: 8, count: 1 }]));
    const [ev, ...rest] = events(out, 'reshard');
    expect(rest).toEqual([]);
    expect(ev!.summary).toBe(`${POOL}: keep 2xTP4 -> 1xTP8 (MILP): the current split cannot carry the load within SLO; not taken: its TP8 unit on GPUs [0,1,2,3,4,5,6,7] drains ${POOL}-node-0-g0x4, ${POOL}-node-0-g4x4 first and leaves the pool with no instance serving while the new one starts`);
    expect(ev!.decision).toEqual({ take: false, target: [{ tp: 8, count: 1 }], force: false, dark: true });
    expect(out.some((e) => e.kind === 'drain' || e.kind === 'node')).toBe(false);
    expect(d.s.reshard).toBeUndefined();
    // 2xTP4 -> 4xTP2 keeps serving: each TP2 pair replaces one TP4 while the other serves
    d.at(300_150, { type: 'reshard_epoch' });
    const ok2 = d.at(300_200, milpSolved([{ tp: 2, count: 4 }]));
    expect(events(ok2, 'reshard')[0]!.decision).toEqual({ take: true, target: [{ tp: 2, count: 4 }], force: false });
    expect(ok2.filter((e) => e.kind === 'drain')).toHaveLength(1);
  });

  it('a unit whose GPUs are free starts its instance without stopping any; the request held meanwhile goes to the first ready one', () => {
    const d = new Drive(cfg({ profile, planner: 'milp' }));
    const fx = d.lead(0, assignment([G8('node-0'), G8('node-1')]));
    for (const cmd of nodeCmds(fx)) d.at(10, { type: 'node_result', cmd, ok: false, purpose: 'reconcile' });
    const old = `${POOL}-node-0-g0x4`;
    d.at(20, { type: 'status', status: status(old, { loadByType: hot }) });
    d.at(30, { type: 'reshard_epoch' });
    const out = d.at(40, milpSolved([{ tp: 8, count: 1 }, { tp: 4, count: 1 }]));
    expect(nodeCmds(out).map((c) => [c.op, c.instanceId])).toEqual([['start_instance', `${POOL}-node-1-g0x8`]]);
    expect(out.some((e) => e.kind === 'drain')).toBe(false);
    d.at(50, { type: 'node_result', cmd: nodeCmds(out)[0]!, ok: true, purpose: 'reshard' });
    const done = d.at(60, { type: 'status', status: status(`${POOL}-node-1-g0x8`) });
    expect(events(done, 'reshard').at(-1)!.summary).toBe(`${POOL}: re-shard complete in 20 ms`);
    expect(done.some((e) => e.kind === 'drain' || e.kind === 'node')).toBe(false);
  });

  it('a pool whose TP4 leaves granted GPUs out (burst guard) takes 1xTP4 -> 2xTP2 under load, starting beside it first', () => {
    const d = new Drive(cfg({ profile, planner: 'milp' })), t4 = `${POOL}-node-0-g0x4`, tp2 = `${POOL}-node-0-g4x2`;
    for (const cmd of nodeCmds(d.lead(0, assignment([G8('node-0')])))) d.at(10, { type: 'node_result', cmd, ok: false, purpose: 'reconcile' });
    d.at(20, { type: 'status', status: status(t4, { gpuIds: [0, 2, 1, 3], loadByType: hot }) }); // as a merge of 2 TP2s leaves it
    d.at(30, { type: 'reshard_epoch' });
    const out = d.at(40, milpSolved([{ tp: 2, count: 2 }]));
    expect([events(out, 'reshard')[0]!.decision, out.some((e) => e.kind === 'drain'), nodeCmds(out)]).toMatchObject([{ take: true }, false, [{ instanceId: tp2, gpuIds: [4, 5] }]]);
    d.at(50, { type: 'node_result', cmd: nodeCmds(out)[0]!, ok: true, purpose: 'reshard' });
    expect(d.at(60, { type: 'status', status: status(tp2, { loadByType: hot }) }).filter((e) => e.kind === 'drain').map((e) => e.kind === 'drain' && e.instance)).toEqual([t4]);
  });

  it('a placement outside the granted GPUs is not executed', () => {
    const d = new Drive(cfg({ profile, planner: 'milp' }));
    d.lead(0, assignment([{ node: 'node-0', gpuIds: [0, 1, 2, 3] }]));
    d.at(10, { type: 'node_result', cmd: { v: 1, op: 'start_instance', instanceId: `${POOL}-node-0-g0x4`, pool: POOL, tp: 4, gpuIds: [0, 1, 2, 3], reason: '' } satisfies NodeCommand, ok: true, purpose: 'reconcile' });
    d.at(20, { type: 'status', status: status(`${POOL}-node-0-g0x4`, { loadByType: hot }) });
    d.at(30, { type: 'reshard_epoch' });
    const out = d.at(40, milpSolved([{ tp: 8, count: 1 }]));
    expect(events(out, 'reshard').map((e) => e.summary)).toEqual([`${POOL}: take 1xTP4 -> 1xTP8 (MILP): the current split cannot carry the load within SLO`, `${POOL}: re-shard placement leaves the granted GPUs; not executed`]);
    expect(d.s.reshard).toBeUndefined();
  });
});

describe('pool machine: failover of the leader (issue 13)', () => {
  it('dispatch is idempotent by request id: a retry joins the dispatch in flight, or gets the admission granted', () => {
    const d = twoReady();
    const r = req();
    const [a] = admits(d.dispatch(20, r));
    // the caller timed out and sent it again: no second admit, one answer for both
    expect(admits(d.dispatch(25, r))).toEqual([]);
    const fx = d.at(30, { type: 'admit_result', job: a!.job, admission: ok(r.id, a!.instance) });
    expect(replies(fx).map((e) => [e.ref, e.admission.ok, e.admission.instance])).toEqual([[2, true, a!.instance], [1, true, a!.instance]]);
    // a third copy after the answer: the same admission, nothing dispatched
    const again = d.dispatch(40, r);
    expect(kinds(again)).toEqual(['reply']);
    expect(replies(again)[0]!.admission).toEqual({ v: 1, id: r.id, ok: true, pool: POOL, instance: a!.instance });
  });

  it('a successor adopts the stored list: the requests of an instance dead before it led are re-dispatched (queued) or ended (started)', () => {
    const dead = `${POOL}-node-0-g0x4`, peer = `${POOL}-node-0-g4x4`;
    const q1 = req(), q2 = req(), run = req();
    const d = new Drive();
    d.at(0, { type: 'start' });
    // a standby: it sees both instances, then the first one stops reporting (holding q1, q2 queued and `run` running)
    d.at(10, { type: 'status', status: status(dead, { queued: 2, running: 1, queuedIds: [q1.id, q2.id], runningIds: [run.id], runningSeqs: [7] }) });
    d.at(10, { type: 'status', status: status(peer) });
    d.at(3000, { type: 'status', status: status(peer) });
    const swept = d.at(3100, { type: 'sweep' });
    expect(kinds(swept)).toEqual([]); // a standby only marks it
    expect(d.s.instances.get(dead)?.alive).toBe(false);
    // it leads now, with the list its predecessor stored
    const list = [q1, q2, run].map((r) => ({ req: { ...r, pool: POOL }, instance: dead, atMs: T0 + 5 }));
    const fx = d.at(3200, { type: 'lead', term: 2, dispatched: list });
    expect(admits(fx).map((e) => [e.req.id, e.instance, e.req.moves])).toEqual([[q1.id, peer, 1], [q2.id, peer, 1]]);
    const ended = fx.flatMap((e) => (e.kind === 'end_stream' ? [e] : []));
    expect(ended.map((e) => [e.req.id, e.seq, e.error.retryable])).toEqual([[run.id, 7, true]]);
    expect(fx.filter((e) => e.kind === 'forget_dispatched').map((e) => (e as { id: string }).id).sort()).toEqual([q1.id, q2.id, run.id].sort());
    expect(events(fx, 'failure')).toHaveLength(1);
    // the re-dispatched ones are kept again under their new instance
    const placed = d.at(3300, { type: 'admit_result', job: admits(fx)[0]!.job, admission: ok(q1.id, peer) });
    expect(placed.filter((e) => e.kind === 'persist_dispatched').map((e) => (e as { instance: string }).instance)).toEqual([peer]);
  });

  it('a standby that saw an instance go silent and come back as the same process (NATS restarted) leads without ending its streams', () => {
    const inst = `${POOL}-node-0-g0x4`, peer = `${POOL}-node-0-g4x4`;
    const run = req(), q = req();
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(10, { type: 'status', status: status(inst, { queued: 1, running: 1, queuedIds: [q.id], runningIds: [run.id], runningSeqs: [5] }) });
    d.at(10, { type: 'status', status: status(peer) });
    // NATS is down: no status from anyone; the standby marks both dead (it keeps their last status)
    d.at(3100, { type: 'sweep' });
    expect(d.s.instances.get(inst)?.alive).toBe(false);
    // NATS is back: the same processes report again, still serving
    d.at(4000, { type: 'status', status: status(inst, { queued: 0, running: 2, runningIds: [run.id, q.id], runningSeqs: [40, 3] }) });
    d.at(4000, { type: 'status', status: status(peer) });
    expect(d.s.graves.size).toBe(0);
    // this replica's lease lapsed during the outage too: it leads again with the list it stored
    const list = [run, q].map((r) => ({ req: { ...r, pool: POOL }, instance: inst, atMs: T0 + 5, startedMs: T0 }));
    const fx = d.at(4500, { type: 'lead', term: 2, dispatched: list });
    expect(fx.filter((e) => e.kind === 'end_stream' || e.kind === 'admit')).toEqual([]);
    expect(events(fx, 'failure')).toEqual([]);
    expect(d.s.outstanding.has(run.id) && d.s.outstanding.has(q.id)).toBe(true);
  });

  it('a standby that sees the instance restart (a new process under its id) before it leads still re-dispatches what the old process queued', () => {
    const victim = `${POOL}-node-0-g0x4`, peer = `${POOL}-node-0-g4x4`;
    const q1 = req(), q2 = req(), run = req(), lost = req();
    const d = new Drive();
    d.at(0, { type: 'start' });
    // the old process holds q1, q2 (queued) and `run`; `lost` too, which the dead leader never stored
    d.at(10, { type: 'status', status: status(victim, { startedMs: T0, queued: 3, running: 1, queuedIds: [q1.id, q2.id, lost.id], runningIds: [run.id], runningSeqs: [4] }) });
    d.at(10, { type: 'status', status: status(peer) });
    // the node restarts it: the new process reports before this replica leads (a standby only notes the death)
    expect(kinds(d.at(900, { type: 'status', status: status(victim, { seq: 1, startedMs: T0 + 800, state: 'starting' }) }))).toEqual([]);
    d.at(1000, { type: 'status', status: status(peer) });
    const list = [q1, q2, run].map((r) => ({ req: { ...r, pool: POOL }, instance: victim, atMs: T0 + 5, startedMs: T0 }));
    const fx = d.at(1800, { type: 'lead', term: 2, dispatched: list });
    expect(admits(fx).map((e) => [e.req.id, e.instance])).toEqual([[q1.id, peer], [q2.id, peer]]);
    const ended = fx.flatMap((e) => (e.kind === 'end_stream' ? [e] : []));
    expect(ended.map((e) => [e.req.id, e.req.streamSubject, e.error.retryable]).sort()).toEqual([[lost.id, `dyn.v1.stream.${lost.id}`, true], [run.id, run.streamSubject, true]].sort());
    expect(d.s.graves.size).toBe(0);
    // an entry of a process this replica never saw (no grave) and a new process reporting: that entry's stream ends
    const d2 = new Drive();
    d2.at(0, { type: 'start' });
    d2.at(10, { type: 'status', status: status(victim, { startedMs: T0 + 800 }) });
    d2.at(10, { type: 'status', status: status(peer) });
    const x = req(), y = req();
    const fx2 = d2.at(500, { type: 'lead', term: 3, dispatched: [{ req: x, instance: victim, atMs: T0, startedMs: T0 }, { req: y, instance: victim, atMs: T0 + 900, startedMs: T0 + 800 }] });
    expect(fx2.flatMap((e) => (e.kind === 'end_stream' ? [e.req.id] : []))).toEqual([x.id]);
    expect(d2.s.outstanding.has(y.id)).toBe(true);
  });

  it('an instance the successor never heard of gets deadAfterMs to report: its first status keeps its requests, silence ends them', () => {
    const d = new Drive();
    d.at(0, { type: 'start' });
    const a = req(), b = req();
    const fx = d.at(0, { type: 'lead', dispatched: [{ req: a, instance: `${POOL}-node-1-g0x4`, atMs: T0 }, { req: b, instance: `${POOL}-node-2-g0x4`, atMs: T0 }] });
    expect(kinds(fx).filter((k) => k === 'end_stream' || k === 'admit')).toEqual([]);
    // the first reports (a new process under that id would have a different startedMs: no death for a placeholder)
    expect(events(d.at(500, { type: 'status', status: status(`${POOL}-node-1-g0x4`, { runningIds: [a.id], running: 1 }) }), 'failure')).toEqual([]);
    expect(d.s.outstanding.get(a.id)?.instance).toBe(`${POOL}-node-1-g0x4`);
    // the second never does: after deadAfterMs its request ends explicitly
    d.at(2000, { type: 'status', status: status(`${POOL}-node-1-g0x4`, { runningIds: [a.id], running: 1 }) });
    const swept = d.at(3100, { type: 'sweep' });
    expect(swept.flatMap((e) => (e.kind === 'end_stream' ? [e.req.id] : []))).toEqual([b.id]);
    expect(d.s.outstanding.has(a.id)).toBe(true);
  });
});
