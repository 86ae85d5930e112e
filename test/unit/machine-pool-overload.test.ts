/**
 * The pool machine's holds (policy capacityComing) with two instances: every instance restarting (held, admitted
 * when one is ready, an instance tried while not ready tried again), a leader that has heard of no instance yet
 * (held for deadAfterMs), against overload (every instance ready and full), which is refused at once even
 * with GPUs granted.
 */
import { describe, it, expect } from 'vitest';
import { admits, Drive, POOL, replies, req, status, T0, twoReady } from '../helpers/pool-machine.ts';

describe('pool machine: holds for missing capacity', () => {
  it('every instance restarting (capacity only missing for now): requests are held and admitted once one is ready, not refused', () => {
    const d = twoReady();
    const a = `${POOL}-node-0-g0x4`, b = `${POOL}-node-0-g4x4`;
    // both processes restart: new processes report starting
    d.at(4000, { type: 'status', status: status(a, { state: 'starting', startedMs: T0 + 3900, seq: 1 }) });
    d.at(4000, { type: 'status', status: status(b, { state: 'restarting' }) });
    const rs = [req(), req(), req()];
    for (const [k, r] of rs.entries()) expect(d.dispatch(4100 + k, r).map((e) => e.kind === 'held' && [e.req.id, e.first])).toEqual([[r.id, true]]);
    expect(d.at(4500, { type: 'tick' })).toEqual([]);
    const fx = d.at(5000, { type: 'status', status: status(a, { startedMs: T0 + 3900 }) });
    expect(admits(fx).map((e) => [e.instance, e.req.id])).toEqual(rs.map((r) => [a, r.id]));
    // one admit refused as unavailable (its engine not up yet) while b restarts: held again, and tried again on a once a reports again
    const rehold = d.at(5010, { type: 'admit_result', job: admits(fx)[0]!.job, admission: { v: 1, id: rs[0]!.id, ok: false, error: { code: 'unavailable', message: 'engine restarting', retryable: true } } });
    // held again until the first hold's end (its caller told so), not a new hold
    expect(rehold.map((e) => e.kind === 'held' && [e.req.id, e.first, e.forMs])).toEqual([[rs[0]!.id, false, 4100 + 10_000 - 5010]]);
    const again = d.at(5300, { type: 'status', status: status(b) });
    expect(admits(again).map((e) => e.req.id)).toEqual([rs[0]!.id]);
  });

  it('every instance ready and full is overload: refused at once, though GPUs are granted; a retried instance restarting is not', () => {
    const d = twoReady();
    const fx0 = d.at(20, { type: 'assign', ref: 1, assignment: { v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 } });
    expect(fx0.filter((e) => e.kind === 'node')).toEqual([]);
    const r = req();
    const full = { v: 1 as const, id: r.id, ok: false, error: { code: 'overloaded' as const, message: 'engine full', retryable: true } };
    const [x] = admits(d.dispatch(4000, r));
    const [y] = admits(d.at(4001, { type: 'admit_result', job: x!.job, admission: full }));
    expect(replies(d.at(4002, { type: 'admit_result', job: y!.job, admission: full }))[0]!.admission.error).toEqual(full.error);
  });

  it('a leader that has heard of no instance yet holds for deadAfterMs, and the first ready instance takes the request', () => {
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.lead(0);
    const r = req();
    expect(d.dispatch(10, r).map((e) => e.kind)).toEqual(['held']);
    expect(admits(d.at(300, { type: 'status', status: status(`${POOL}-node-0-g0x4`) })).map((e) => e.req.id)).toEqual([r.id]);
    // past deadAfterMs with nothing granted nor heard of: refused at once
    const e = new Drive();
    e.lead(0);
    expect(replies(e.dispatch(3010, req()))).toHaveLength(1);
  });
});
