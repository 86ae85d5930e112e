/**
 * The pool machine's re-shard epoch timer, event by event on a virtual clock: the leader re-arms it when it first
 * sees its instances admit requests (a status with admissions since the instance's previous one), so that its first
 * epoch decides on a whole epoch of load, as the simulator's epochs count from the first arrival. A readiness probe
 * (`up`'s first request) is not such an admission.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus } from '../../protocols/control.ts';
import { initialInstanceState, instanceStep, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState } from '../../src/policy/machines/instance.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const A = `${POOL}-node-0-g0x4`;
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 10_000,
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
  status(admitted: InstanceStatus['admittedByType']): InstanceStatus {
    return {
      v: 1, id: A, pool: POOL, node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state: 'ready', startedMs: T0, seq: ++this.seq, sentMs: T0,
      clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, admittedByType: admitted,
    };
  }
}
const timers = (fx: PoolEffect[]) => fx.flatMap((e) => (e.kind === 'arm_timer' && e.timer === 'reshard' ? [e.everyMs] : []));

describe('pool machine: the re-shard epoch counts from the first requests its instances admit', () => {
  it('re-arms the epoch timer once, when a status first shows admissions; again after it lost and took the lead', () => {
    const d = new Drive();
    d.at(0, { type: 'status', status: d.status({}) });
    expect(timers(d.at(100, { type: 'lead', term: 1 }))).toEqual([30_000]); // armed at the lead
    // statuses without an admission since the previous one: no traffic yet, the timer keeps its phase
    expect(timers(d.at(500, { type: 'status', status: d.status({}) }))).toEqual([]);
    expect(timers(d.at(25_000, { type: 'status', status: d.status({ SS: 3 }) }))).toEqual([30_000]);
    expect(d.s.trafficAtMs).toBe(T0 + 25_000);
    expect(timers(d.at(25_500, { type: 'status', status: d.status({ SS: 9 }) }))).toEqual([]);
    d.at(26_000, { type: 'lost' });
    expect(d.s.trafficAtMs).toBeUndefined();
    d.at(27_000, { type: 'lead', term: 2 });
    expect(timers(d.at(27_500, { type: 'statuses', statuses: [d.status({ SS: 10 })] }))).toEqual([30_000]);
    expect(d.s.trafficAtMs).toBe(T0 + 27_500);
  });

  it('a standby does not anchor: its statuses only keep the view', () => {
    const d = new Drive();
    d.at(0, { type: 'status', status: d.status({}) });
    expect(timers(d.at(500, { type: 'status', status: d.status({ SS: 4 }) }))).toEqual([]);
    expect(d.s.trafficAtMs).toBeUndefined();
  });
});

describe("a readiness probe is not the pool's traffic", () => {
  const icfg: InstanceMachineConfig = {
    tp: 4, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 8, maxQueued: 8, timeScale: 1, deadAfterMs: 3000, moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1,
  };
  it("the instance serves it but leaves it out of its load and admission counter, so the pool's epochs start with the first real request", () => {
    let inst: InstanceMachineState = initialInstanceState(T0);
    const step = (ms: number, ev: InstanceEvent) => {
      const r = instanceStep(inst, ev, T0 + ms, icfg);
      inst = r.state;
      return r.effects;
    };
    step(0, { type: 'start' });
    step(0, { type: 'gpu_ready', supportedMhz: [1980] });
    step(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
    const probe = { id: 'ping', type: 'SS' as const, inputTokens: 1, arrivalMs: T0 + 1000, ttftDeadlineMs: T0 + 1250, ttftSloMs: 250, moves: 0, probe: true };
    const fx = step(1000, { type: 'admit', req: probe });
    expect(fx.map((e) => e.kind)).toEqual(expect.arrayContaining(['admitted', 'start'])); // served
    step(1010, { type: 'finished', id: 'ping', ok: true });
    step(5000, { type: 'epoch' });
    expect(inst.admitted).toEqual({});
    expect(inst.load).toEqual({});

    const d = new Drive();
    d.at(0, { type: 'status', status: d.status({}) });
    d.at(100, { type: 'lead', term: 1 });
    // the instance's statuses after the probe: its admission counter unchanged, the epoch timer keeps its phase
    expect(timers(d.at(1500, { type: 'status', status: d.status({ ...inst.admitted }) }))).toEqual([]);
    expect(d.s.trafficAtMs).toBeUndefined();
    step(3000, { type: 'admit', req: { ...probe, id: 'r1', probe: false, arrivalMs: T0 + 3000, ttftDeadlineMs: T0 + 3250 } });
    expect(inst.admitted).toEqual({ SS: 1 });
    expect(timers(d.at(3500, { type: 'status', status: d.status({ ...inst.admitted }) }))).toEqual([30_000]);
    expect(d.s.trafficAtMs).toBe(T0 + 3500);
  });
});
