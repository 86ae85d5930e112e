/**
 * A new pool leader asked to dispatch a request id its dispatched list lacks, while a live instance's status lists that
 * id (a predecessor admitted it there and died before storing the entry; the gateway sends it again under the same id):
 * the request is adopted for that instance and its admission answered, never admitted a second time elsewhere. Event
 * by event on a virtual clock (src/policy/machines/pool-dispatch.ts heldBy).
 */
import { describe, expect, it } from 'vitest';
import { Drive, POOL, admits, replies, req, status } from '../helpers/pool-machine.ts';
import { HELD_IDS_AFTER_LEAD_MS } from '../../src/policy/machines/pool-dispatch.ts';

const A = `${POOL}-node-0-g0x4`, B = `${POOL}-node-0-g4x4`;

function leader(heldQueued: string[], heldRunning: string[]): Drive {
  const d = new Drive();
  d.at(0, { type: 'start' });
  d.lead(0);
  // A holds the ids (loaded: the dispatch policy would pick the idle B for a new admission)
  d.at(10, { type: 'status', status: status(A, { queued: heldQueued.length, running: heldRunning.length + 6, queuedIds: heldQueued, runningIds: heldRunning }) });
  d.at(10, { type: 'status', status: status(B) });
  return d;
}

describe('pool machine: a dispatch of an id a live instance holds', () => {
  it('is answered with that instance and stored for it, no admit sent', () => {
    const running = req(), queued = req();
    const d = leader([queued.id], [running.id]);
    for (const r of [running, queued]) {
      const fx = d.dispatch(200, r);
      expect(admits(fx)).toEqual([]);
      expect(replies(fx).map((e) => [e.admission.ok, e.admission.instance])).toEqual([[true, A]]);
      expect(fx.filter((e) => e.kind === 'persist_dispatched').map((e) => e.kind === 'persist_dispatched' && e.instance)).toEqual([A]);
      expect(d.s.outstanding.get(r.id)?.instance).toBe(A);
    }
  });

  it('an id no instance lists is admitted as usual, and so is one asked long after the lead', () => {
    const fresh = req();
    const d = leader([], []);
    expect(admits(d.dispatch(200, fresh)).map((e) => e.req.id)).toEqual([fresh.id]);
    const late = req();
    const d2 = leader([late.id], []);
    d2.at(HELD_IDS_AFTER_LEAD_MS, { type: 'status', status: status(A, { queued: 1, queuedIds: [late.id] }) });
    d2.at(HELD_IDS_AFTER_LEAD_MS, { type: 'status', status: status(B) });
    expect(admits(d2.dispatch(HELD_IDS_AFTER_LEAD_MS + 10, late)).length).toBe(1);
  });
});
