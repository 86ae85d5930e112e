/**
 * The simulator's pool leader (src/sim/pool-leader.ts): the pool machine's dispatch, event by event on a virtual
 * clock, over simulated instances. It sees them through their statuses (one per status interval, counted locally
 * in between), tries the next instance on a refusal (at most 4), holds a request while capacity is coming and
 * answers it once an instance is ready, and moves an instance's requests to peers with room.
 */
import { describe, it, expect } from 'vitest';
import { SimPoolLeader, type LeaderInstance } from '../../src/sim/pool-leader.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import type { Admission, InferenceRequest } from '../../protocols/messages.ts';

const cfg: PoolMachineConfig = {
  pool: 'pool-all', holder: 'sim', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 10_000,
  initialTp: 1, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};

/** A simulated instance whose status reports `queued` (no profile: the pool dispatches by least outstanding work per GPU). */
class Inst implements LeaderInstance {
  queued = 0;
  clockMhz = 1980;
  tp = 1;
  brain = { report: () => ({ queued: this.queued, running: 0, loadByType: {}, pendingPrefillTokens: 0 }) };
  constructor(public id: string, public state: LeaderInstance['state'] = 'active') {}
}

const req = (id: string): InferenceRequest => ({ v: 1, id, model: '', kind: 'completion', inputTokens: 100, maxTokens: 50, arrivalMs: 0, giveUpAtMs: 600_000, streamSubject: '', type: 'SS', moves: 0 });
const ok = (id: string, inst: string): Admission => ({ v: 1, id, ok: true, instance: inst });
const full = (id: string): Admission => ({ v: 1, id, ok: false, error: { code: 'overloaded', message: 'queue full', retryable: true } });

function leader(admit: (i: Inst, r: InferenceRequest) => Admission) {
  const asked: string[] = [];
  const answers: [string, Admission][] = [];
  const l = new SimPoolLeader<Inst>(cfg, ['SS'], {
    admit: (i, r) => {
      asked.push(i.id);
      return admit(i, r);
    },
    answer: (id, a) => answers.push([id, a]),
  }, 0);
  return { l, asked, answers };
}

describe('simulated pool leader (the pool machine dispatching)', () => {
  it('sees the instances through their statuses: counted locally until the next status interval', () => {
    const a = new Inst('a'), b = new Inst('b');
    const { l } = leader((i, r) => ok(r.id, i.id));
    expect(l.dispatch(req('r1'), [a, b], 0)?.instance).toBe('a');
    a.queued = 5; // a's queue grew: the leader does not know before a's next status
    expect(l.dispatch(req('r2'), [a, b], 10)?.instance).toBe('b'); // a counted 1 locally
    expect(l.dispatch(req('r3'), [a, b], 100)?.instance).toBe('a'); // a 1, b 1 as the leader counts
    expect(l.dispatch(req('r4'), [a, b], 600)?.instance).toBe('b'); // statuses due: a reports 5, b 0
  });

  it('tries the next instance on a refusal, at most 4, and answers with the last refusal', () => {
    const insts = ['a', 'b', 'c', 'd', 'e'].map((x) => new Inst(x));
    const { l, asked } = leader((_i, r) => full(r.id));
    const a = l.dispatch(req('r1'), insts, 0);
    expect(asked).toEqual(['a', 'b', 'c', 'd']);
    expect(a?.ok).toBe(false);
    expect(a?.error?.code).toBe('overloaded');
  });

  it('holds a request while its only instance starts and admits it once the instance is ready', () => {
    const a = new Inst('a', 'starting');
    const { l, asked, answers } = leader((i, r) => ok(r.id, i.id));
    expect(l.dispatch(req('r1'), [a], 4000)).toBeUndefined();
    expect(l.holding()).toBe(true);
    l.tick([a], 4100);
    expect(asked).toEqual([]);
    a.state = 'active';
    l.tick([a], 4200); // its state changed: a status now, and the held request goes to it
    expect(asked).toEqual(['a']);
    expect(answers).toEqual([['r1', { ...ok('r1', 'a'), pool: 'pool-all' }]]);
    expect(l.holding()).toBe(false);
  });

  it('refuses at once when every instance is ready and refusing (overload, not capacity coming)', () => {
    const a = new Inst('a');
    const { l } = leader((_i, r) => full(r.id));
    expect(l.dispatch(req('r1'), [a], 4000)?.error?.code).toBe('overloaded');
    expect(l.holding()).toBe(false);
  });

  it('moves an instance\'s requests to a peer with room: not back to it, not to a peer at moveQueueAbove', () => {
    const a = new Inst('a'), b = new Inst('b'), c = new Inst('c');
    b.queued = 4;
    const { l, asked } = leader((i, r) => ok(r.id, i.id));
    expect(l.move('a', [req('r1')], [a, b, c], 0)).toEqual([{ id: 'r1', instance: 'c' }]);
    expect(asked).toEqual(['c']);
  });

  it('forgets a stopped instance: no dispatch to it after its last status', () => {
    const a = new Inst('a'), b = new Inst('b');
    const { l } = leader((i, r) => ok(r.id, i.id));
    expect(l.dispatch(req('r1'), [a, b], 0)?.instance).toBe('a');
    b.queued = 9; // seen only with b's next status
    expect(l.dispatch(req('r2'), [b], 10)?.instance).toBe('b'); // a left the pool
    expect(l.dispatch(req('r3'), [b], 20)?.instance).toBe('b');
  });
});
