/**
 * The pool machine's liveness verdicts against its own link to the bus, event by event on a virtual clock: the
 * silence a replica hears while its own connection is down (a NATS restart) is not its instances'; once the link
 * is back, each live instance gets deadAfterMs from then to report before it is declared dead.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const A = `${POOL}-node-0-g0x4`, B = `${POOL}-node-0-g4x4`;
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};

class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  seq = 0;
  at(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
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
  static leading(): Drive {
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(0, { type: 'lead', term: 1 });
    d.status(10, A);
    d.status(10, B);
    return d;
  }
  alive(): boolean[] {
    return [A, B].map((id) => this.s.instances.get(id)!.alive);
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
});
