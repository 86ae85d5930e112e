/**
 * A pool lead that could not read the stored dispatched list at its lead handles the deaths it knows with an empty
 * list: what the dead process held ends with a retryable error (the gateway sends it again). The list read late
 * ('stored') then adopts none of those requests, so none is served twice; its entries this lead has not handled are
 * handled as at a lead. Event by event on a virtual clock.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-2', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
let n = 0;
const req = (): InferenceRequest => {
  const id = `late-r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS', pool: POOL };
};
const seqs = new Map<string, number>();
const status = (id: string, o: Partial<InstanceStatus> = {}): InstanceStatus => {
  const seq = o.seq ?? (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const g0 = Number(/-g(\d+)x4$/.exec(id)![1]);
  return {
    v: 1, id, pool: POOL, node: 'node-0', tp: 4, gpuIds: [g0, g0 + 1, g0 + 2, g0 + 3], state: 'ready', startedMs: T0, seq, sentMs: T0,
    clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, ...o,
  };
};
class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    return r.effects;
  }
}
const ended = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'end_stream' ? [e.req.id] : [])).sort();
const admitted = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'admit' ? [e.req.id] : [])).sort();

describe('pool machine: the dispatched list read late', () => {
  it('adopts none of the requests the lead already ended at a death; ends one it had not', () => {
    const victim = `${POOL}-node-0-g0x4`, peer = `${POOL}-node-0-g4x4`;
    const q1 = req(), q2 = req(), run = req(), after = req();
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(10, { type: 'status', status: status(victim, { queued: 2, running: 1, queuedIds: [q1.id, q2.id], runningIds: [run.id], runningSeqs: [4] }) });
    d.at(10, { type: 'status', status: status(peer) });
    // the node restarts the victim: a new process under its id (a standby notes the death)
    d.at(900, { type: 'status', status: status(victim, { seq: 1, startedMs: T0 + 800, state: 'starting' }) });
    d.at(1000, { type: 'status', status: status(peer) });
    // the lead without the list: every request the dead process held ends (retryable), none is re-dispatched here
    const atLead = d.at(1800, { type: 'lead', term: 2 });
    expect(ended(atLead)).toEqual([q1.id, q2.id, run.id].sort());
    expect(admitted(atLead)).toEqual([]);
    // the list read late names them, and `after` (dispatched to the dead process after its last status)
    const list = [q1, q2, run, after].map((r) => ({ req: r, instance: victim, atMs: T0 + 5, startedMs: T0 }));
    const late = d.at(4000, { type: 'stored', dispatched: list });
    expect(admitted(late)).toEqual([]);
    expect(ended(late)).toEqual([after.id]);
    expect([q1, q2, run].some((r) => d.s.outstanding.has(r.id))).toBe(false);
    expect(d.s.diedHandled).toBeUndefined();
  });

  it('re-dispatches none of the queued requests of an instance that went silent (the gateway retried them)', () => {
    const victim = `${POOL}-node-0-g8x4`, peer = `${POOL}-node-0-g12x4`;
    const q1 = req(), q2 = req(), run = req();
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(10, { type: 'status', status: status(victim, { queued: 2, running: 1, queuedIds: [q1.id, q2.id], runningIds: [run.id], runningSeqs: [4] }) });
    for (let ms = 500; ms <= 4000; ms += 500) d.at(ms, { type: 'status', status: status(peer) });
    d.at(4000, { type: 'sweep' });
    const atLead = d.at(4500, { type: 'lead', term: 2 });
    expect(ended(atLead)).toEqual([q1.id, q2.id, run.id].sort());
    const list = [q1, q2, run].map((r) => ({ req: r, instance: victim, atMs: T0 + 5, startedMs: T0 }));
    const late = d.at(6000, { type: 'stored', dispatched: list });
    expect(admitted(late)).toEqual([]);
    expect(ended(late)).toEqual([]);
  });
});
