/**
 * The load the pool machine's re-shard epoch reads from its instances' statuses, the instance and pool machines driven
 * event by event on a virtual clock:
 * - the same load wherever in the instances' epochs the pool's epoch falls (the live pool reads the statuses at any
 *   point of them; the simulator's pool epoch falls right at their close);
 * - each request once: a request moved to a peer (emergency step 3) is not a second arrival at the pool.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import {
  currentLoad, initialInstanceState, instanceStep, projectedLoad, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest,
} from '../../src/policy/machines/instance.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-MM';
const profile = profileFor('llama2-70b', 'h100');
const icfg: InstanceMachineConfig = {
  tp: 4, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 64, maxQueued: 64, timeScale: 1, deadAfterMs: 3000, moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1,
};
const pcfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', profile, headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic', burstWindowMs: 90_000,
};

/** An instance machine on the virtual clock, ready, and the status its live instance manager would send. */
class Instance {
  s: InstanceMachineState = initialInstanceState(T0);
  seq = 0;
  constructor(readonly id: string, readonly gpuIds: number[]) {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'gpu_ready', supportedMhz: [1980] });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
  }
  at(ms: number, ev: InstanceEvent): void {
    this.s = instanceStep(this.s, ev, T0 + ms, icfg).state;
  }
  status(ms: number): InstanceStatus {
    const now = T0 + ms;
    return {
      v: 1, id: this.id, pool: POOL, node: 'node-0', tp: 4, gpuIds: this.gpuIds, state: 'ready', startedMs: T0, seq: ++this.seq, sentMs: now, clockMhz: 1980, maxClockMhz: 1980,
      queued: this.s.queue.length, running: this.s.running.size, queuedIds: [], runningIds: [],
      loadByType: currentLoad(this.s, now, icfg), epochLoadByType: projectedLoad(this.s, now, icfg), admittedByType: { ...this.s.admitted },
    };
  }
}

let n = 0;
const req = (atMs: number, o: Partial<MachineRequest> = {}): MachineRequest => ({
  id: `r${++n}`, type: 'MM', inputTokens: 450, arrivalMs: T0 + atMs, ttftDeadlineMs: T0 + atMs + 400, ttftSloMs: 400, moves: 0, ...o,
});
/** the pool's GPUs: those its instances hold (no GPU free for reconciliation to start an instance on). */
const assignment = (gpuIds: number[]): PoolAssignment => ({ v: 1, pool: POOL, types: ['MM'], grants: [{ node: 'node-0', gpuIds }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 });

/** A pool leader that has heard these statuses; returns its state after them. */
function pool(statuses: InstanceStatus[], ms: number): { s: PoolMachineState; step: (ev: PoolEvent) => ReturnType<typeof poolStep>['effects'] } {
  let s = initialPoolState(['MM']);
  const step = (ev: PoolEvent) => {
    const r = poolStep(s, ev, T0 + ms, pcfg);
    s = r.state;
    return r.effects;
  };
  for (const st of statuses) step({ type: 'status', status: st });
  step({ type: 'lead', stored: assignment(statuses.flatMap((st) => st.gpuIds)) });
  return { get s() { return s; }, step };
}

describe("the pool's re-shard epoch reads its instances' load the same wherever in their epochs it falls", () => {
  it('a steady 5 req/s arriving in a clump at the start of each second reads 5 req/s (+-10%) at every point of the instance epoch', () => {
    const inst = new Instance(`${POOL}-node-0-g0x4`, [0, 1, 2, 3]);
    let t = 0;
    /** the instance's events up to `until` ms: 5 MM at each whole second (each done 10 ms later), its epoch every 5 s (before that instant's arrivals). */
    const runTo = (until: number) => {
      for (; t < until; t += 1000) {
        if (t > 0 && t % 5000 === 0) inst.at(t, { type: 'epoch' });
        for (let k = 0; k < 5; k++) {
          const r = req(t);
          inst.at(t, { type: 'admit', req: r });
          inst.at(t + 10, { type: 'first_token', id: r.id });
          inst.at(t + 10, { type: 'finished', id: r.id, ok: true });
        }
      }
    };
    runTo(15_001);
    expect(inst.s.load.MM).toBeCloseTo(5, 6);
    const read: number[] = [];
    for (const phase of [0, 600, 1100, 2600, 4100, 4900]) {
      runTo(15_000 + phase + 1);
      const st = inst.status(15_000 + phase);
      const fx = pool([st], 15_000 + phase).step({ type: 'reshard_epoch' });
      const ev = fx.flatMap((e) => (e.kind === 'event' && e.event === 'reshard' && e.inputs.loadByType ? [e.inputs.loadByType as { MM: number }] : []));
      expect(ev).toHaveLength(1);
      read.push(ev[0]!.MM);
    }
    for (const x of read) {
      expect(x).toBeGreaterThan(4.5);
      expect(x).toBeLessThan(5.5);
    }
    // the dispatcher's view (status loadByType) still shows the clump at once: 5 arrivals 0.6 s into the epoch
    runTo(20_001);
    expect(currentLoad(inst.s, T0 + 20_600, icfg).MM).toBeGreaterThan(8);
  });
});

describe("a moved request is not a second arrival at the pool", () => {
  it("the instance it moves to serves it but counts it in neither its load nor its admission counter, so the pool's window holds it once", () => {
    const a = new Instance(`${POOL}-node-0-g0x4`, [0, 1, 2, 3]);
    const b = new Instance(`${POOL}-node-0-g4x4`, [4, 5, 6, 7]);
    const p = pool([a.status(0), b.status(0)], 0);
    const r = req(1000);
    a.at(1000, { type: 'admit', req: r });
    // a's emergency step 3 moves it: the pool places it on b, one move more
    b.at(1200, { type: 'admit', req: { ...r, moves: 1 } });
    expect(b.s.queue.some((q) => q.id === r.id) || b.s.running.has(r.id)).toBe(true);
    expect(b.s.admitted.MM ?? 0).toBe(0);
    expect(b.s.arrivals.MM ?? 0).toBe(0);
    p.step({ type: 'statuses', statuses: [a.status(1500), b.status(1500)] });
    const held = p.s.recentLoad.reduce((sum, m) => sum + (m.counts.MM ?? 0), 0);
    expect(held).toBe(1);
  });
});
