/**
 * The pool machine's dispatch with no ready instance, event by event on a virtual clock: it holds a request while
 * capacity is coming (an engine restarting, granted GPUs its reconciliation fills after a node agent died with its
 * instances) and admits it to the first instance that is ready; it refuses at once when nothing is coming (a
 * retired pool) and when MAX_HELD requests are held already.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { MAX_HELD, heldNow as heldIn } from '../../src/policy/machines/router.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const INST = `${POOL}-node-0-g0x4`;
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
const assignment = (state: PoolAssignment['state'] = 'active', epoch = 1): PoolAssignment => ({
  v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3] }], epoch, state, issuedBy: 'cm-1', atMs: T0,
});

let n = 0;
const req = (): InferenceRequest => {
  const id = `h${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS' };
};

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  ref = 0;
  seq = 0;
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    return r.effects;
  }
  status(ms: number, state: InstanceStatus['state'], startedMs = T0): PoolEffect[] {
    return this.at(ms, {
      type: 'status',
      status: {
        v: 1, id: INST, pool: POOL, node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state, startedMs, seq: ++this.seq, sentMs: T0 + ms,
        clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
      },
    });
  }
  dispatch(ms: number, r: InferenceRequest): PoolEffect[] {
    return this.at(ms, { type: 'dispatch', ref: ++this.ref, req: r });
  }
  /** leads with the assignment; its first instance started and ready. */
  static ready(a = assignment()): Drive {
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(0, { type: 'lead', term: 1 });
    for (const e of d.at(0, { type: 'assign', ref: 1, assignment: a })) if (e.kind === 'node') d.at(10, { type: 'node_result', cmd: e.cmd, ok: true, purpose: 'reconcile' });
    d.status(500, 'ready');
    return d;
  }
}
const admits = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'admit' ? [[e.instance, e.req.id]] : []));
const replies = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'reply' ? [e.admission] : []));
const held = (r: InferenceRequest, forMs: number, first = true): PoolEffect => ({ kind: 'held', req: r, forMs, first });
const overs = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'hold_over' ? [[e.id, e.outcome]] : []));

describe('pool machine: no ready instance, capacity coming', () => {
  it('an engine restarting: the request is held, then admitted when the instance is ready again', () => {
    const d = Drive.ready();
    expect(d.s.starting.size).toBe(0);
    d.status(1000, 'restarting');
    const r = req();
    // held for the health deadline at most: its caller is told so on the request's stream subject
    expect(d.dispatch(1100, r)).toEqual([held(r, 10_000)]);
    expect(heldIn(d.s.jobs.values())).toBe(1);
    expect(d.at(1200, { type: 'tick' })).toEqual([]);
    // a retry of the dispatch (the caller's attempt timed out) joins it and is told again, with the time left
    expect(d.dispatch(2000, r)).toEqual([held(r, 9100, false)]);
    const fx = d.status(2500, 'ready');
    expect(admits(fx)).toEqual([[INST, r.id]]);
    const job = fx.flatMap((e) => (e.kind === 'admit' ? [e.job] : []))[0]!;
    const done = d.at(2600, { type: 'admit_result', job, admission: { v: 1, id: r.id, ok: true, instance: INST } });
    expect(overs(done)).toEqual([[r.id, 'dispatched']]);
    expect(replies(done)).toHaveLength(2);
    expect(heldIn(d.s.jobs.values())).toBe(0);
  });

  it("several statuses in one event ('statuses', the simulator's) act as each status: the held request goes to the ready instance", () => {
    const d = Drive.ready();
    d.status(1000, 'restarting');
    const r = req();
    expect(d.dispatch(1100, r)).toEqual([held(r, 10_000)]);
    const st = (state: InstanceStatus['state'], seq: number): InstanceStatus => ({
      v: 1, id: INST, pool: POOL, node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state, startedMs: T0, seq, sentMs: T0 + 2500,
      clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
    });
    expect(admits(d.at(2500, { type: 'statuses', statuses: [st('restarting', 50), st('ready', 51)] }))).toEqual([[INST, r.id]]);
    expect(d.s.instances.get(INST)?.status.seq).toBe(51);
  });

  it('held requests go on by TTFT deadline when the instance is ready, not by arrival', () => {
    const d = Drive.ready();
    d.status(1000, 'restarting');
    // arrivals in the order late, early, middle deadline (an L prompt's long TTFT SLO arrives first)
    const late = { ...req(), arrivalMs: T0 + 1100, ttftDeadlineMs: T0 + 9000 };
    const early = { ...req(), arrivalMs: T0 + 1150, ttftDeadlineMs: T0 + 1400 };
    const middle = { ...req(), arrivalMs: T0 + 1200, ttftDeadlineMs: T0 + 3000 };
    for (const [i, r] of [late, early, middle].entries()) expect(d.dispatch(1100 + 50 * i, r)).toEqual([held(r, 10_000)]);
    expect(admits(d.status(2500, 'ready')).map(([, id]) => id)).toEqual([early.id, middle.id, late.id]);
  });

  it('a node agent died with its instance: held while the reconciliation starts another on the granted GPUs', () => {
    const d = Drive.ready();
    // no status for deadAfterMs: the sweep declares the instance dead
    d.at(4000, { type: 'sweep' });
    expect([...d.s.instances.values()].filter((t) => t.alive)).toHaveLength(0);
    const r = req();
    expect(replies(d.dispatch(4100, r))).toEqual([]);
    const start = d.at(6000, { type: 'reconcile' }).flatMap((e) => (e.kind === 'node' ? [e.cmd] : []));
    expect(start.map((c) => c.op)).toEqual(['start_instance']);
    d.at(6010, { type: 'node_result', cmd: start[0]!, ok: true, purpose: 'reconcile' });
    expect(admits(d.status(7000, 'ready', T0 + 6500))).toEqual([[INST, r.id]]);
  });

  it('a new leader with no assignment yet (its stored one not adopted: every instance died with their node agent) holds until the planner sends one', () => {
    // the pool's only instance died with its node agent; the leader died too, and its successor takes the lead
    // with the stored assignment but no live instance of the pool: it waits for the planner's assignment
    const d = new Drive();
    d.at(0, { type: 'start' });
    const lead = d.at(0, { type: 'lead', term: 2, stored: assignment('active', 3) });
    expect(lead.some((e) => e.kind === 'event' && /not adopted/.test(e.summary))).toBe(true);
    expect(d.s.assignment).toBeUndefined();
    // past deadAfterMs after the lead: the planner's assignment is still coming, and so is the capacity it grants
    const r = req();
    expect(d.dispatch(5000, r)).toEqual([held(r, 10_000)]);
    // the planner's assignment: the reconciliation starts an instance on the granted GPUs, ready later
    const start = d.at(6000, { type: 'assign', ref: 3, assignment: assignment('active', 4) }).flatMap((e) => (e.kind === 'node' ? [e.cmd] : []));
    expect(start.map((c) => c.op)).toEqual(['start_instance']);
    d.at(6010, { type: 'node_result', cmd: start[0]!, ok: true, purpose: 'reconcile' });
    expect(admits(d.status(9000, 'ready', T0 + 6500))).toEqual([[INST, r.id]]);
  });

  it("with the cluster's own store (up's private NATS) a new leader adopts the stored assignment with no live instance and starts its instances at once", () => {
    const d = new Drive();
    const own = { ...cfg, ownStore: true };
    d.s = poolStep(d.s, { type: 'start' }, T0, own).state;
    const lead = poolStep(d.s, { type: 'lead', term: 2, stored: assignment('active', 3) }, T0, own);
    d.s = lead.state;
    expect(d.s.assignment?.epoch).toBe(3);
    expect(lead.effects.some((e) => e.kind === 'event' && /not adopted/.test(e.summary))).toBe(false);
    // the reconciliation starts an instance on the stored grants without waiting for the planner
    expect(lead.effects.flatMap((e) => (e.kind === 'node' ? [e.cmd.op] : []))).toEqual(['start_instance']);
  });

  it('held no longer than the engine health deadline, then refused as overloaded', () => {
    const d = Drive.ready();
    d.status(1000, 'restarting');
    const r = req();
    d.dispatch(1100, r);
    expect(d.at(11_100, { type: 'tick' })).toEqual([]);
    const late = d.at(11_101, { type: 'tick' });
    expect(replies(late)).toMatchObject([{ id: r.id, ok: false, error: { code: 'overloaded', retryable: true } }]);
    expect(overs(late)).toEqual([[r.id, 'timed_out']]);
  });

  it('a hold that ends because nothing is coming any more, or the lead is lost, is refused (not timed out)', () => {
    const d = Drive.ready();
    d.status(1000, 'restarting');
    const r = req();
    d.dispatch(1100, r);
    // the pool is retired and its instance failed: nothing is coming, the hold ends before its bound
    d.at(1200, { type: 'assign', ref: 9, assignment: assignment('retired', 2) });
    const fx = d.status(1300, 'failed');
    expect(replies(fx)).toMatchObject([{ id: r.id, ok: false }]);
    expect(overs(fx)).toEqual([[r.id, 'refused']]);

    const e = Drive.ready();
    e.status(1000, 'restarting');
    const r2 = req();
    e.dispatch(1100, r2);
    expect(overs(e.at(1200, { type: 'lost' }))).toEqual([[r2.id, 'refused']]);
  });

  it('nothing coming (the pool retired) or MAX_HELD held already: refused at once', () => {
    const retired = Drive.ready();
    retired.at(600, { type: 'assign', ref: 2, assignment: assignment('retired', 2) });
    retired.status(1000, 'failed');
    expect(replies(retired.dispatch(1100, req()))).toMatchObject([{ ok: false, error: { code: 'overloaded' } }]);

    const full = Drive.ready();
    full.status(1000, 'restarting');
    for (let k = 0; k < MAX_HELD; k++) {
      const r = req();
      expect(full.dispatch(1100, r)).toEqual([held(r, 10_000)]);
    }
    const refused = full.dispatch(1200, req());
    expect(replies(refused)).toMatchObject([{ ok: false, error: { code: 'overloaded' } }]);
    // refused at once, never held: no hold outcome
    expect(overs(refused)).toEqual([]);
    expect(heldIn(full.s.jobs.values())).toBe(MAX_HELD);
    // the held ones all go to the instance once it is ready
    expect(admits(full.status(2000, 'ready'))).toHaveLength(MAX_HELD);
  });

  it('a status with no request held looks at each job once (no copy, filter or sort of them); a held one still goes on', () => {
    const d = Drive.ready();
    for (let k = 0; k < 20; k++) d.dispatch(600, req());
    expect(d.s.jobs.size).toBe(20);
    // each job's admission in flight: its record counts the reads of its hold
    let reads = 0;
    for (const [job, j] of d.s.jobs) {
      const { holdUntilMs, ...rest } = j;
      d.s.jobs.set(job, Object.defineProperty(rest, 'holdUntilMs', { enumerable: true, get: () => (reads++, holdUntilMs) }));
    }
    d.status(750, 'ready');
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThanOrEqual(20);
    // with one held (the instance restarting), the status that says it is ready admits it
    d.status(1000, 'restarting');
    const r = req();
    expect(d.dispatch(1100, r)).toEqual([held(r, 10_000)]);
    expect(admits(d.status(1500, 'ready'))).toEqual([[INST, r.id]]);
  });
});
