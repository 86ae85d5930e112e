/**
 * The instance machine stepped in place (src/policy/machines/instance.ts instanceStep, `inPlace`), as the instance
 * manager steps it: the same effects and the same state as the copying step, event after event, over admissions
 * with credits lent, credited starts, first tokens, ends, a cancel, peers' statuses, ticks, an epoch, an emergency's
 * moves and a drain that empties; and the state passed in is the one returned (no running map or queue copied).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type MachineRequest } from '../../src/policy/machines/instance.ts';

const profile = profileFor('llama2-70b', 'h100');
const CLOCKS = profile.clocksMhz;
const MAX = CLOCKS[CLOCKS.length - 1]!;
const T0 = 1_700_000_000_000;
const cfg: InstanceMachineConfig = {
  tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 4, maxQueued: 64, timeScale: 1, deadAfterMs: 3000,
  moveQueueAbove: 2, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16, credits: { perGateway: 3, ttlMs: 2000 },
};
let n = 0;
const req = (atMs: number, o: Partial<MachineRequest> = {}): MachineRequest => ({ id: `p${++n}`, type: 'SS', inputTokens: 100, arrivalMs: T0 + atMs, ttftDeadlineMs: T0 + atMs + 250, ttftSloMs: 250, moves: 0, ...o });

/** A script of events: the live instance's, one request after another and a burst that queues and is moved. */
function script(): [number, InstanceEvent][] {
  const ev: [number, InstanceEvent][] = [
    [0, { type: 'start' }],
    [0, { type: 'gpu_ready', supportedMhz: [...CLOCKS] }],
    [0, { type: 'clock_applied', requestedMhz: MAX, appliedMhz: MAX, why: 'start-up', inputs: {} }],
    [0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' }],
    [1, { type: 'peer_status', id: 'peer-1', queued: 0, running: 0, state: 'ready' }],
  ];
  const a = req(2);
  ev.push([2, { type: 'admit', req: a, lendTo: 'gw-a' }], [3, { type: 'first_token', id: a.id }]);
  const c1 = req(4), c2 = req(4);
  ev.push([4, { type: 'credited_start', req: c1, gateway: 'gw-a', epoch: 0 }], [4, { type: 'credited_start', req: c2, gateway: 'gw-a', epoch: 0, topUp: true }]);
  ev.push([5, { type: 'first_token', id: c1.id }], [6, { type: 'finished', id: c1.id, ok: true }], [6, { type: 'finished', id: a.id, ok: true }]);
  ev.push([50, { type: 'tick' }], [5000, { type: 'epoch' }]);
  // a burst past the engine's slots: it queues, one is cancelled, the ladder moves the rest to the peer
  const burst = Array.from({ length: 8 }, () => req(5100));
  for (const b of burst) ev.push([5100, { type: 'admit', req: b }]);
  ev.push([5101, { type: 'cancel', id: burst[6]!.id, reason: 'client gone' }], [5101, { type: 'peer_status', id: 'peer-1', queued: 0, running: 0, state: 'ready' }]);
  for (let t = 5200; t <= 5600; t += 100) ev.push([t, { type: 'tick' }]);
  ev.push([5700, { type: 'evacuate', why: 'test' }]);
  // a drain that empties: the status goes out at once
  ev.push([5800, { type: 'lifecycle', state: 'draining', why: 'drain' }]);
  for (const id of [c2.id, ...burst.map((b) => b.id)]) ev.push([5900, { type: 'finished', id, ok: true }]);
  return ev;
}

/** The effects with what a move's `ids` refer to: an effect may name the ids the step took (compared by value). */
const plain = (fx: InstanceEffect[]) => JSON.parse(JSON.stringify(fx)) as unknown;

describe('the instance machine stepped in place', () => {
  it('gives the copying step\'s effects and state at every event, and returns the state passed in', () => {
    let copy = initialInstanceState(T0);
    let own = initialInstanceState(T0);
    const kinds = new Set<string>();
    for (const [ms, ev] of script()) {
      const a = instanceStep(copy, ev, T0 + ms, cfg);
      // the moved event answers the move this step asked for: the same for both (placed: every id)
      const b = instanceStep(own, ev, T0 + ms, cfg, true);
      expect(b.state).toBe(own);
      expect(a.state).not.toBe(copy);
      expect(plain(b.effects)).toEqual(plain(a.effects));
      expect(b.state).toEqual(a.state);
      for (const e of a.effects) kinds.add(e.kind);
      copy = a.state;
      own = b.state;
      const move = a.effects.find((e): e is Extract<InstanceEffect, { kind: 'move' }> => e.kind === 'move');
      if (move) {
        const placed: InstanceEvent = { type: 'moved', ids: move.ids, placed: move.ids.slice(0, 1) };
        const ma = instanceStep(copy, placed, T0 + ms, cfg), mb = instanceStep(own, placed, T0 + ms, cfg, true);
        expect(plain(mb.effects)).toEqual(plain(ma.effects));
        expect(mb.state).toEqual(ma.state);
        for (const e of ma.effects) kinds.add(e.kind);
        copy = ma.state;
        own = mb.state;
      }
    }
    // the script reached what it means to: loans, credited starts, queueing, a cancel, moves and the drain's status
    for (const k of ['lent', 'start', 'admitted', 'fail', 'move', 'status', 'set_clock', 'arm_timer']) expect(kinds).toContain(k);
    expect(own.running.size).toBe(0);
  });
});
