/**
 * The pool machine's liveness verdicts against its own link to the bus, event by event on a virtual clock: the
 * silence a replica hears while its own connection is down (a NATS restart) is not its instances'; once the link
 * is back, each live instance gets deadAfterMs from then to report before it is declared dead. Its suspicion (policy
 * suspect.ts) is not reset by the link's return: an instance that died while the link was down (its host lost with
 * the replica's NATS node) leaves dispatch once a peer is heard again, and a healthy one is back at its next status.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolDispatchView, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const A = `${POOL}-node-0-g0x4`, B = `${POOL}-node-0-g4x4`;
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
/** the same pool suspecting an instance silent for 3 of its 500-ms statuses */
const SUSPECT_MS = 1500;
const suspecting: PoolMachineConfig = { ...cfg, suspectAfterMs: SUSPECT_MS };

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  seq = 0;
  constructor(readonly c: PoolMachineConfig = cfg) {}
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, this.c);
    this.s = r.state;
    return r.effects;
  }
  status(ms: number, id: string): PoolEffect[] {
    const g0 = id === A ? 0 : 4;
    return this.at(ms, {
      type: 'status',
      status: {
        v: 1, id, pool: POOL, node: 'node-0', tp: 4, gpuIds: [g0, g0 + 1, g0 + 2, g0 + 3], state: 'ready', startedMs: T0, seq: ++this.seq, sentMs: T0 + ms,
        clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
      },
    });
  }
  /** a leader with two ready instances heard at 10 ms */
  static leading(c: PoolMachineConfig = cfg): Drive {
    const d = new Drive(c);
    d.at(0, { type: 'start' });
    d.at(0, { type: 'lead', term: 1 });
    d.status(10, A);
    d.status(10, B);
    return d;
  }
  alive(): boolean[] {
    return [A, B].map((id) => this.s.instances.get(id)!.alive);
  }
  /** the leader's dispatch view at `ms`: the instances a request may go to, and why the others may not */
  view(ms: number): { ready: string[]; out: Record<string, string> } {
    const v = poolDispatchView(this.s, POOL, T0 + ms, this.c.suspectAfterMs);
    return { ready: v.ready, out: Object.fromEntries(v.out.map((o) => [o.id, o.why])) };
  }
}

const failures = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'event' && e.event === 'failure' ? [e.decision.instance] : []));

describe('pool machine: liveness and its own link', () => {
  it('the same silence with the link up is a death (the control)', () => {
    const d = Drive.leading();
    expect(failures(d.at(5000, { type: 'sweep' })).sort()).toEqual([A, B]);
    expect(d.alive()).toEqual([false, false]);
  });

  it('link down: no verdict from the silence; back up, every instance gets deadAfterMs from then to report', () => {
    const d = Drive.leading();
    d.at(200, { type: 'link', up: false });
    expect(d.at(5000, { type: 'sweep' })).toEqual([]);
    expect(d.alive()).toEqual([true, true]);
    d.at(6000, { type: 'link', up: true });
    d.status(7000, B);
    expect(d.at(9000, { type: 'sweep' })).toEqual([]); // 3000 ms since the link came back: not yet
    expect(failures(d.at(9001, { type: 'sweep' }))).toEqual([A]);
    expect(d.alive()).toEqual([false, true]);
  });

  it('a link that comes back without having gone down changes nothing', () => {
    const d = Drive.leading();
    d.at(2000, { type: 'link', up: true });
    expect(failures(d.at(3011, { type: 'sweep' })).sort()).toEqual([A, B]);
  });

  it('an instance that died while the link was down leaves dispatch once a peer is heard again, not suspectAfterMs after the link came back', () => {
    const d = Drive.leading(suspecting);
    // its NATS node dies: the link goes down; A's host died with it (no status from A again), B reconnects elsewhere
    d.at(200, { type: 'link', up: false });
    d.at(600, { type: 'link', up: true });
    // nobody heard since the link came back: the silence is everyone's (the all-silent fallback keeps both)
    expect(d.view(650).ready).toEqual([A, B].sort());
    d.status(700, B);
    d.status(1200, B);
    // A silent since 10 ms, past SUSPECT_MS while B is heard: out (counted from the link's return, it would still be in until 2100)
    expect(d.view(1600)).toEqual({ ready: [B], out: { [A]: 'suspect' } });
    // its death verdict still waits deadAfterMs from the link's return
    d.status(1700, B);
    d.status(2200, B);
    d.status(2700, B);
    d.status(3200, B);
    d.status(3500, B);
    expect(failures(d.at(3600, { type: 'sweep' }))).toEqual([]);
    expect(failures(d.at(3601, { type: 'sweep' }))).toEqual([A]);
  });

  it('a healthy instance is back in dispatch at its first status after the link came back', () => {
    const d = Drive.leading(suspecting);
    d.at(200, { type: 'link', up: false });
    d.at(2000, { type: 'link', up: true });
    d.status(2100, B);
    expect(d.view(2200)).toEqual({ ready: [B], out: { [A]: 'suspect' } });
    d.status(2400, A);
    expect(d.view(2400).ready).toEqual([A, B].sort());
  });
});

/**
 * A cut the replica's client has not noticed (a partition, a dead link whose pings have not timed out yet: no 'link'
 * event) shows only as the absence of the link's proofs (its lease's round trips answered, 'link_proven'): while the
 * last proof is older than linkProofGapMs no death verdict is reached, and the first proof after such a gap starts
 * every instance's death clock again from it, as the link's return does.
 */
describe('pool machine: liveness and the proofs of its own link', () => {
  const GAP_MS = 1500;
  const watched: PoolMachineConfig = { ...cfg, linkProofGapMs: GAP_MS };
  /** the lease's round trips answered every 1000 ms from `fromMs` to `toMs` (each `sentMs` at its send time). */
  const proofs = (d: Drive, fromMs: number, toMs: number) => {
    for (let t = fromMs; t <= toMs; t += 1000) d.at(t, { type: 'link_proven', sentMs: T0 + t });
  };
  /** both instances report every 250 ms in [fromMs, toMs] */
  const heard = (d: Drive, ids: string[], fromMs: number, toMs: number) => {
    for (let t = fromMs; t <= toMs; t += 250) for (const id of ids) d.status(t, id);
  };

  it('with its link proven, a silent instance is dead deadAfterMs after its last status (the control)', () => {
    const d = Drive.leading(watched);
    proofs(d, 0, 5000);
    heard(d, [B], 250, 5000);
    expect(failures(d.at(3010, { type: 'sweep' }))).toEqual([]);
    expect(failures(d.at(3011, { type: 'sweep' }))).toEqual([A]);
  });

  it('a cut not noticed: no death while its link is unproven; back, the clocks count from the first proof', () => {
    const d = Drive.leading(watched);
    proofs(d, 0, 1000);
    heard(d, [A, B], 250, 1200);
    // cut at 1200: no status, no proof, and no 'link' event (the client's pings have not timed out)
    for (let t = 1300; t <= 6000; t += 750) expect(failures(d.at(t, { type: 'sweep' }))).toEqual([]);
    expect(d.alive()).toEqual([true, true]);
    // healed at 6000 without a 'link' event: the proof comes first, B's status a little later, A's later still
    proofs(d, 6000, 10_000);
    d.status(6100, B);
    expect(failures(d.at(6200, { type: 'sweep' }))).toEqual([]);
    heard(d, [A, B], 6300, 8000);
    expect(failures(d.at(9000, { type: 'sweep' }))).toEqual([]);
    expect(d.alive()).toEqual([true, true]);
  });

  it('a leader cut off with one instance (a partition: its own host heard, its lease unanswered) takes no death from the others', () => {
    const d = Drive.leading(watched);
    proofs(d, 0, 1000);
    heard(d, [A, B], 250, 1200);
    // A is on the other side: silent; B shares the leader's side and keeps reporting; the lease gets no majority
    heard(d, [B], 1250, 8000);
    for (let t = 1300; t <= 8000; t += 750) expect(failures(d.at(t, { type: 'sweep' }))).toEqual([]);
    // A really is gone: once the link is proven again, A is dead deadAfterMs after the first proof
    proofs(d, 8000, 12_000);
    heard(d, [B], 8250, 12_000);
    expect(failures(d.at(11_000, { type: 'sweep' }))).toEqual([]);
    expect(failures(d.at(11_001, { type: 'sweep' }))).toEqual([A]);
  });

  it('a replica that never had its link proven reaches no verdict; an unwatched link (no linkProofGapMs) needs no proof', () => {
    const d = Drive.leading(watched);
    expect(failures(d.at(5000, { type: 'sweep' }))).toEqual([]);
    const u = Drive.leading();
    expect(failures(u.at(5000, { type: 'sweep' })).sort()).toEqual([A, B]);
  });
});
