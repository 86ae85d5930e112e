/**
 * The pool machine's lead is bounded by its lease (state leaseUntilMs, fed by the shell at the lead and at each
 * acknowledged renewal): an event at or past that time ends the lead before it decides anything ('lease_lapsed'),
 * and a dispatch, a move or a command is refused (retryable), not served. And (storeBeforeReply, the live leader) an
 * admitted request's answer waits for its dispatched entry's store. Event by event on a virtual clock.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const INST = `${POOL}-node-0-g0x4`;
const base: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
let n = 0;
const req = (): InferenceRequest => {
  const id = `lease-r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS', pool: POOL };
};
let seq = 0;
const status = (): InstanceStatus => ({
  v: 1, id: INST, pool: POOL, node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state: 'ready', startedMs: T0, seq: ++seq, sentMs: T0,
  clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
});
class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  constructor(readonly cfg: PoolMachineConfig = base) {}
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, this.cfg);
    this.s = r.state;
    return r.effects;
  }
}
const admits = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'admit' ? [e] : []));
const replies = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'reply' ? [e] : []));

/** A replica that leads with its lease held until T0+1000 (renewed to T0+2000 at 900), one ready instance. */
function leading(cfg?: PoolMachineConfig): Drive {
  const d = new Drive(cfg);
  d.at(0, { type: 'start' });
  d.at(10, { type: 'status', status: status() });
  d.at(20, { type: 'lead', term: 1, leaseUntilMs: T0 + 1000 });
  d.at(900, { type: 'lease', untilMs: T0 + 2000 });
  return d;
}

describe('pool machine: the lead bounded by its lease', () => {
  it('serves a dispatch before its lease bound; at or past it (a stall) refuses it, sends no admit, and steps down', () => {
    const d = leading();
    const early = req();
    expect(admits(d.at(1999, { type: 'dispatch', ref: 1, req: early })).map((a) => a.req.id)).toEqual([early.id]);
    // the process stalled past its lease: the first event after it (here a dispatch queued meanwhile) ends the lead
    const late = req();
    const fx = d.at(2000, { type: 'dispatch', ref: 2, req: late });
    expect(admits(fx)).toEqual([]);
    expect(fx.find((e) => e.kind === 'lease_lapsed')).toEqual({ kind: 'lease_lapsed', untilMs: T0 + 2000 });
    expect(fx.some((e) => e.kind === 'disarm_leader_timers')).toBe(true);
    const answers = replies(fx);
    // the dispatch under way (its admit in flight) and the new one: both refused, retryable, for the leader to take
    expect(answers.map((r) => [r.ref, r.admission.ok, r.admission.error?.code, r.admission.error?.retryable])).toEqual([[1, false, 'unavailable', true], [2, false, 'unavailable', true]]);
    expect(d.s.leader).toBe(false);
    // the lease's own 'lost' that follows ends nothing more
    expect(d.at(2001, { type: 'lost' })).toEqual([]);
    // later calls still queued: refused, none admitted
    const after = req();
    const more = d.at(2100, { type: 'dispatch', ref: 3, req: after });
    expect(admits(more)).toEqual([]);
    expect(replies(more)[0]!.admission.error?.code).toBe('unavailable');
  });

  it('any event past the bound ends the lead (a status, a tick): no re-dispatch, no move, no command is decided after it', () => {
    const d = leading();
    const fx = d.at(2500, { type: 'status', status: status() });
    expect(fx.map((e) => e.kind)).toContain('lease_lapsed');
    expect(d.s.leader).toBe(false);
    const mv = d.at(2600, { type: 'move', ref: 7, from: 'x', requests: [req()] });
    expect(mv).toEqual([expect.objectContaining({ kind: 'move_reply', ref: 7, reply: expect.objectContaining({ placed: [] }) })]);
    const cmd = d.at(2600, { type: 'reshard_now', ref: 8 });
    expect(cmd).toEqual([expect.objectContaining({ kind: 'command_reply', ref: 8, ok: false })]);
  });

  it('a renewal moves the bound: the same instant after it is still leading', () => {
    const d = leading();
    d.at(1900, { type: 'lease', untilMs: T0 + 3000 });
    const r = req();
    const fx = d.at(2500, { type: 'dispatch', ref: 1, req: r });
    expect(fx.some((e) => e.kind === 'lease_lapsed')).toBe(false);
    expect(admits(fx).map((a) => a.req.id)).toEqual([r.id]);
  });

  it('a lead without a lease bound (the simulator) never lapses', () => {
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(10, { type: 'status', status: status() });
    d.at(20, { type: 'lead', term: 1 });
    const r = req();
    expect(admits(d.at(3_600_000, { type: 'dispatch', ref: 1, req: r })).map((a) => a.req.id)).toEqual([r.id]);
  });
});

describe('pool machine: an admission answered once its dispatched entry is stored (storeBeforeReply)', () => {
  const cfg = { ...base, storeBeforeReply: true };

  it('no reply until the store answers; a retry of the id joins it; the reply is the admission', () => {
    const d = leading(cfg);
    const r = req();
    const [ad] = admits(d.at(100, { type: 'dispatch', ref: 1, req: r }));
    const fx = d.at(110, { type: 'admit_result', job: ad!.job, admission: { v: 1, id: r.id, ok: true, instance: INST } });
    const persist = fx.find((e) => e.kind === 'persist_dispatched');
    expect(persist).toMatchObject({ kind: 'persist_dispatched', instance: INST, ack: ad!.job });
    expect(replies(fx)).toEqual([]);
    expect(replies(d.at(120, { type: 'dispatch', ref: 2, req: r }))).toEqual([]);
    const done = d.at(130, { type: 'dispatched_stored', ack: ad!.job, ok: true });
    expect(replies(done).map((x) => [x.ref, x.admission.ok, x.admission.instance])).toEqual([[2, true, INST], [1, true, INST]]);
    expect(d.s.jobs.size).toBe(0);
    expect(d.s.outstanding.get(r.id)?.instance).toBe(INST);
  });

  it('a failed store: the admission is answered all the same (its instance runs it), the entry written again, a failure event', () => {
    const d = leading(cfg);
    const r = req();
    const [ad] = admits(d.at(100, { type: 'dispatch', ref: 1, req: r }));
    d.at(110, { type: 'admit_result', job: ad!.job, admission: { v: 1, id: r.id, ok: true, instance: INST } });
    const fx = d.at(1110, { type: 'dispatched_stored', ack: ad!.job, ok: false });
    expect(replies(fx).map((x) => x.admission.ok)).toEqual([true]);
    expect(fx.find((e) => e.kind === 'persist_dispatched')).toMatchObject({ instance: INST });
    expect(fx.find((e) => e.kind === 'persist_dispatched')).not.toHaveProperty('ack');
    expect(fx.some((e) => e.kind === 'event' && e.event === 'failure')).toBe(true);
  });

  it('the lead ending while an entry is stored answers with the admission, not a refusal (no second dispatch elsewhere)', () => {
    const d = leading(cfg);
    const r = req();
    const [ad] = admits(d.at(100, { type: 'dispatch', ref: 1, req: r }));
    d.at(110, { type: 'admit_result', job: ad!.job, admission: { v: 1, id: r.id, ok: true, instance: INST } });
    const fx = d.at(2000, { type: 'tick' });
    expect(fx.some((e) => e.kind === 'lease_lapsed')).toBe(true);
    expect(replies(fx).map((x) => [x.admission.ok, x.admission.instance])).toEqual([[true, INST]]);
  });
});
