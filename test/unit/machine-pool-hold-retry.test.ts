/**
 * The pool machine's hold while its instances are replaced or restarted, event by event on a virtual clock:
 * - an instance that refused a request as not ready (its engine had just died; the pool's view still said ready)
 *   is tried again once it is ready, instead of the hold ending in an 'overloaded' refusal (a 429 to the client);
 * - a hold lasts up to the request's hold limit from its arrival (gateway.holdLimitMs), not only the engine health
 *   deadline, so an engine slower to start than that deadline still serves the request.
 * Real overload (every instance ready and refusing as full) is still refused at once (machine-pool-overload.test.ts).
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-all';
const A = `${POOL}-node-0-g0x2`;
const B = `${POOL}-node-0-g2x2`;
const base: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 1500, statusIntervalMs: 250, epochMs: 600_000, healthDeadlineMs: 10_000,
  initialTp: 2, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
const assignment: PoolAssignment = { v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 };

let n = 0;
const req = (arrivalMs: number): InferenceRequest => {
  const id = `r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0 + arrivalMs, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS' };
};

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  ref = 0;
  seq = 0;
  constructor(readonly cfg: PoolMachineConfig) {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'lead', term: 1 });
    for (const e of this.at(0, { type: 'assign', ref: 1, assignment })) if (e.kind === 'node') this.at(10, { type: 'node_result', cmd: e.cmd, ok: true, purpose: 'reconcile' });
  }
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, this.cfg);
    this.s = r.state;
    return r.effects;
  }
  status(ms: number, id: string, state: InstanceStatus['state'], startedMs = T0): PoolEffect[] {
    return this.at(ms, {
      type: 'status',
      status: {
        v: 1, id, pool: POOL, node: 'node-0', tp: 2, gpuIds: id === A ? [0, 1] : [2, 3], state, startedMs, seq: ++this.seq, sentMs: T0 + ms,
        clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
      },
    });
  }
  dispatch(ms: number, r: InferenceRequest): PoolEffect[] {
    return this.at(ms, { type: 'dispatch', ref: ++this.ref, req: r });
  }
}
const admits = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'admit' ? [{ job: e.job, instance: e.instance, id: e.req.id }] : []));
const replies = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'reply' ? [e.admission] : []));
const holds = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'held' ? [e.forMs] : []));

describe('pool machine: a hold while instances are replaced ends in an admission, not a 429', () => {
  it('an instance that refused as not ready (stale view) is tried again once it is ready; the other one is gone meanwhile', () => {
    const d = new Drive(base);
    d.status(300, A, 'ready');
    d.status(300, B, 'starting'); // B: its node agent's restart, say
    const r = req(1000);
    // the view says A is ready: the admit goes there, and A refuses (its engine died a moment ago)
    const first = admits(d.dispatch(1000, r));
    expect(first.map((x) => x.instance)).toEqual([A]);
    const refused = d.at(1010, { type: 'admit_result', job: first[0]!.job, admission: { v: 1, id: r.id, ok: false, error: { code: 'unavailable', message: 'instance is restarting', retryable: true } } });
    // B is coming: the request is held
    expect(replies(refused)).toEqual([]);
    expect(holds(refused)).toHaveLength(1);
    d.status(1250, A, 'restarting');
    // B's process goes away (its instance manager stopped with its node agent): no longer tracked
    expect(replies(d.status(1500, B, 'stopped'))).toEqual([]);
    // A's engine is back: the held request goes to A (no 'overloaded' refusal for want of an untried ready instance)
    const back = d.status(4000, A, 'ready');
    expect(replies(back)).toEqual([]);
    expect(admits(back).map((x) => [x.instance, x.id])).toEqual([[A, r.id]]);
  });

  it('held up to its hold limit from its arrival (gateway.holdLimitMs), past the engine health deadline', () => {
    const d = new Drive({ ...base, holdLimitMs: 30_000 });
    d.status(300, A, 'restarting');
    d.status(300, B, 'starting');
    const r = req(900);
    // the hold lasts until 30 s after the request's arrival (not 10 s, the health deadline)
    expect(holds(d.dispatch(1000, r))).toEqual([29_900]);
    for (let t = 2000; t <= 24_000; t += 1000) {
      d.status(t, A, 'restarting');
      d.status(t, B, 'starting');
      expect(replies(d.at(t + 1, { type: 'tick' }))).toEqual([]);
    }
    // an engine ready 24.5 s after the request's arrival, slower than the 10-s health deadline: it serves the request
    expect(admits(d.status(25_400, A, 'ready')).map((x) => [x.instance, x.id])).toEqual([[A, r.id]]);
  });

  it('past its hold limit the request is refused as before (the gateway answered it already)', () => {
    const d = new Drive({ ...base, holdLimitMs: 30_000 });
    d.status(300, A, 'restarting');
    d.status(300, B, 'starting');
    const r = req(900);
    d.dispatch(1000, r);
    for (let t = 2000; t <= 30_000; t += 1000) {
      d.status(t, A, 'restarting');
      d.status(t, B, 'starting');
    }
    expect(replies(d.at(30_901, { type: 'tick' }))).toMatchObject([{ id: r.id, ok: false, error: { retryable: true } }]);
  });
});
