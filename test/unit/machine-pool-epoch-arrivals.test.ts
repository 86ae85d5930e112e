/**
 * The pool's re-shard epoch reads the pool's own arrivals since its last epoch (policy epochArrivalLoad, from the
 * increments of its instances' admission counters), the instance and pool machines driven event by event on a
 * virtual clock (the simulator's pool level runs the same machine, test/unit/sim-pool-level.test.ts):
 * - an instance stopped within the epoch keeps its arrivals in the count (a sum of the instances' EWMAs loses them:
 *   the kept instance's EWMA takes their share over its next epochs);
 * - a forced epoch right after one reads the last epoch's arrivals too, not a few seconds' clump;
 * - the count's span ends at the last status counted: a leader whose event loop stalled reads the stall's statuses
 *   after its epoch timer, and they count in the next epoch;
 * - the rate is per modelled second (an emulator at timeScale k runs k times faster), as the instances' loads.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import {
  currentLoad, initialInstanceState, instanceStep, projectedLoad, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState,
} from '../../src/policy/machines/instance.ts';
import type { RequestType } from '../../protocols/request-types.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-MM';
const profile = profileFor('llama2-70b', 'h100');
const icfg: InstanceMachineConfig = {
  tp: 4, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 64, maxQueued: 64, timeScale: 1, deadAfterMs: 3000, moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1,
};
// planner 'milp': the epoch's input is the solve's, answered with no plan (the layout stays, every epoch plans)
const pcfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', profile, headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 30_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'milp', burstWindowMs: 90_000,
};

/** An instance machine on the virtual clock, ready, and the statuses its live instance manager sends. */
class Instance {
  s: InstanceMachineState = initialInstanceState(T0);
  seq = 0;
  stopped = false;
  constructor(readonly id: string, readonly gpuIds: number[]) {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'gpu_ready', supportedMhz: [1980] });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
  }
  at(ms: number, ev: InstanceEvent): void {
    this.s = instanceStep(this.s, ev, T0 + ms, icfg).state;
  }
  status(ms: number, state: InstanceStatus['state'] = 'ready'): InstanceStatus {
    const now = T0 + ms;
    return {
      v: 1, id: this.id, pool: POOL, node: 'node-0', tp: 4, gpuIds: this.gpuIds, state, startedMs: T0, seq: ++this.seq, sentMs: now, clockMhz: 1980, maxClockMhz: 1980,
      queued: this.s.queue.length, running: this.s.running.size, queuedIds: [], runningIds: [],
      loadByType: currentLoad(this.s, now, icfg), epochLoadByType: projectedLoad(this.s, now, icfg), admittedByType: { ...this.s.admitted },
    };
  }
}

/** The pool leader of two TP4 instances on node-0's 8 GPUs, and the load each of its epochs planned for. */
class Pool {
  s: PoolMachineState = initialPoolState(['MM']);
  planned: Partial<Record<RequestType, number>>[] = [];
  /** the burst guard's peak each epoch planned for (undefined: unguarded). */
  peaks: (Partial<Record<RequestType, number>> | undefined)[] = [];
  constructor(readonly cfg: PoolMachineConfig) {}
  step(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, this.cfg);
    this.s = r.state;
    for (const e of r.effects) {
      // the epoch's input: the solve's (held by the machine while it waits), or, with no load to solve, the heuristic's decision's
      if (e.kind === 'solve') {
        this.planned.push(this.s.planning!.input.load);
        this.peaks.push(this.s.planning!.input.peak);
        this.s = poolStep(this.s, { type: 'planned' }, T0 + ms, this.cfg).state;
      } else if (e.kind === 'event' && e.event === 'reshard' && e.inputs.milpFallback === 'no load') {
        this.planned.push(e.inputs.loadByType as Partial<Record<RequestType, number>>);
        this.peaks.push(e.inputs.peakLoadByType as Partial<Record<RequestType, number>> | undefined);
      }
    }
    return r.effects;
  }
}

const assignment: PoolAssignment = { v: 1, pool: POOL, types: ['MM'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3, 4, 5, 6, 7] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0 };

let n = 0;
/**
 * `perS` MM requests a second, evenly spaced, from `fromMs` to `toMs`, each admitted straight on an instance (the
 * gateway's own dispatch; the pool learns of it from the instance's admission counter), alternately on the instances
 * not stopped, each done 10 ms later; the instances' 5-s epochs, a status of each every 500 ms, and the pool's epoch
 * at `epochsAt`; `stopB`: b drains at that time and reports 'stopped' 200 ms later.
 */
function drive(p: Pool, a: Instance, b: Instance, o: { fromMs: number; toMs: number; perS: number; epochsAt: number[]; stopB?: number; forcedAt?: number; clumpAt?: { ms: number; count: number }; stall?: [number, number] }): void {
  const gap = 1000 / o.perS;
  let next = o.fromMs;
  let k = 0;
  for (let t = o.fromMs; t <= o.toMs; t += 10) {
    const live = [a, b].filter((x) => !x.stopped);
    if (t > 0 && t % 5000 === 0) for (const x of live) x.at(t, { type: 'epoch' });
    const arrivals: number[] = [];
    for (; next <= t; next += gap) arrivals.push(next);
    if (o.clumpAt?.ms === t) for (let c = 0; c < o.clumpAt.count; c++) arrivals.push(t);
    for (const at of arrivals) {
      const x = live[k++ % live.length]!;
      const id = `r${++n}`;
      x.at(t, { type: 'admit', req: { id, type: 'MM', inputTokens: 450, arrivalMs: T0 + at, ttftDeadlineMs: T0 + at + 400, ttftSloMs: 400, moves: 0 } });
      x.at(t + 10, { type: 'first_token', id });
      x.at(t + 10, { type: 'finished', id, ok: true });
    }
    if (o.stopB === t) b.at(t, { type: 'lifecycle', state: 'draining', why: 'drained by the pool' });
    if (o.stopB !== undefined && t === o.stopB + 200) {
      p.step(t, { type: 'status', status: b.status(t, 'stopped') });
      b.stopped = true;
    }
    const stalled = o.stall && t >= o.stall[0] && t < o.stall[1];
    if (t % 500 === 0 && !stalled) p.step(t, { type: 'statuses', statuses: live.filter((x) => !x.stopped).map((x) => x.status(t)) });
    if (o.epochsAt.includes(t)) p.step(t, { type: 'reshard_epoch' });
    if (o.forcedAt === t) p.step(t, { type: 'reshard_now', ref: 1 });
  }
}

function setUp(cfg: PoolMachineConfig = pcfg): { p: Pool; a: Instance; b: Instance } {
  const a = new Instance(`${POOL}-node-0-g0x4`, [0, 1, 2, 3]);
  const b = new Instance(`${POOL}-node-0-g4x4`, [4, 5, 6, 7]);
  const p = new Pool(cfg);
  p.step(0, { type: 'statuses', statuses: [a.status(0), b.status(0)] });
  p.step(0, { type: 'lead', stored: assignment });
  return { p, a, b };
}

describe("the pool's re-shard epoch reads the pool's arrivals since its last epoch", () => {
  it('an instance stopped 3 s before the epoch keeps its arrivals in the epoch\'s load: a steady 6 req/s reads 6 (+-5%) at both epochs', () => {
    const { p, a, b } = setUp();
    // the pool's epochs fall 30 s after its first traffic (the status at 500 ms shows the first admissions)
    drive(p, a, b, { fromMs: 100, toMs: 60_500, perS: 6, epochsAt: [30_500, 60_500], stopB: 57_500 });
    expect(p.s.trafficAtMs).toBe(T0 + 500);
    expect(p.s.instances.has(b.id)).toBe(false);
    expect(p.planned).toHaveLength(2);
    for (const load of p.planned) {
      expect(load.MM).toBeGreaterThan(6 * 0.95);
      expect(load.MM).toBeLessThan(6 * 1.05);
    }
    // the kept instance's own estimate has not taken b's share yet: what a sum of the instances' EWMAs would read
    expect(projectedLoad(a.s, T0 + 60_500, icfg).MM).toBeLessThan(6 * 0.8);
  });

  it('a forced epoch 2 s after an epoch reads the last epoch\'s arrivals with the clump since, not the clump over 2 s', () => {
    const { p, a, b } = setUp();
    drive(p, a, b, { fromMs: 100, toMs: 32_500, perS: 6, epochsAt: [30_500], forcedAt: 32_500, clumpAt: { ms: 31_000, count: 30 } });
    expect(p.planned).toHaveLength(2);
    // (30 s x 6 + 2 s x 6 + 30) / 32 s = 6.9 req/s; the 2 s alone read (12 + 30) / 2 = 21
    expect(p.planned[1]!.MM).toBeGreaterThan(6.5);
    expect(p.planned[1]!.MM).toBeLessThan(7.5);
  });

  it('an epoch timer that fires after 5.5 s without statuses (a stalled event loop) reads the rate to the last status, and the next epoch the rest', () => {
    const { p, a, b } = setUp();
    // no status is handled from 25 s until after the epoch at 30.5 s; the status at 31 s carries the stall's admissions
    drive(p, a, b, { fromMs: 100, toMs: 60_500, perS: 6, epochsAt: [30_500, 60_500], stall: [25_000, 31_000] });
    expect(p.planned).toHaveLength(2);
    for (const load of p.planned) {
      expect(load.MM).toBeGreaterThan(6 * 0.95);
      expect(load.MM).toBeLessThan(6 * 1.05);
    }
  });

  it('reads the rate per modelled second: engines at timeScale 2 (twice real time) halve the wall rate', () => {
    const { p, a, b } = setUp({ ...pcfg, timeScale: 2 });
    drive(p, a, b, { fromMs: 100, toMs: 30_500, perS: 6, epochsAt: [30_500] });
    expect(p.planned[0]!.MM).toBeGreaterThan(3 * 0.95);
    expect(p.planned[0]!.MM).toBeLessThan(3 * 1.05);
  });

  it("reads the burst window's highest minute per modelled second too: at timeScale 2 a minute of 6 wall req/s floors the next epoch at 3", () => {
    for (const timeScale of [1, 2]) {
      const { p, a, b } = setUp({ ...pcfg, timeScale });
      // a minute at 6 wall req/s (the pool's first minute, from its first status with traffic at 500 ms), then 1 req/s
      drive(p, a, b, { fromMs: 100, toMs: 60_499, perS: 6, epochsAt: [30_500] });
      drive(p, a, b, { fromMs: 60_500, toMs: 90_500, perS: 1, epochsAt: [60_500, 90_500] });
      expect(p.planned).toHaveLength(3);
      // the third epoch measures its own 1 wall req/s and is floored by the first minute's 6 wall req/s, both per modelled s
      expect(p.planned[2]!.MM).toBeGreaterThan((1 / timeScale) * 0.95);
      expect(p.planned[2]!.MM).toBeLessThan((1 / timeScale) * 1.05);
      expect(p.peaks[2]!.MM).toBeGreaterThan((6 / timeScale) * 0.95);
      expect(p.peaks[2]!.MM).toBeLessThan((6 / timeScale) * 1.05);
    }
  });
});
