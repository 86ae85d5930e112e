/**
 * The pool leader's 100-ms tick runs only while it may act (src/policy/machines/pool.ts, poolTickWanted): with no
 * dispatch held and no re-shard under way a tick pauses the timer (pause_timer), and the step that holds a request
 * re-arms it (arm_timer). Event by event on a virtual clock, the timer run as the live shell runs it.
 */
import { describe, it, expect } from 'vitest';
import { initialPoolState, poolStep, poolTickWanted, POOL_TICK_MS, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import type { InstanceStatus, PoolAssignment } from '../../protocols/control.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const INST = `${POOL}-node-0-g0x4`;
const cfg: PoolMachineConfig = {
  pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 3000, statusIntervalMs: 500, epochMs: 300_000, healthDeadlineMs: 10_000,
  initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic',
};
const assignment: PoolAssignment = {
  v: 1, pool: POOL, types: ['SS'], grants: [{ node: 'node-0', gpuIds: [0, 1, 2, 3] }], epoch: 1, state: 'active', issuedBy: 'cm-1', atMs: T0,
};
const req = (id: string): InferenceRequest => ({
  v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS',
});

/** The machine with its tick timer: a tick every POOL_TICK_MS (on that grid) while armed, none while paused. */
class Drive {
  s: PoolMachineState = initialPoolState(['SS']);
  armed = false;
  ticks = 0;
  pauses: number[] = [];
  seq = 0;
  #now = 0;
  at(ms: number, ev?: PoolEvent): PoolEffect[] {
    for (let t = Math.ceil(this.#now / POOL_TICK_MS) * POOL_TICK_MS; t < ms; t += POOL_TICK_MS) {
      if (!this.armed || t === 0) continue;
      this.ticks++;
      this.#step(t, { type: 'tick' });
    }
    this.#now = ms;
    return ev ? this.#step(ms, ev) : [];
  }
  #step(ms: number, ev: PoolEvent): PoolEffect[] {
    const r = poolStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    for (const e of r.effects) {
      if (e.kind === 'arm_timer' && e.timer === 'tick') this.armed = true;
      if (e.kind === 'pause_timer') {
        this.armed = false;
        this.pauses.push(ms);
      }
      if (e.kind === 'disarm_leader_timers') this.armed = false;
    }
    return r.effects;
  }
  status(ms: number, state: InstanceStatus['state']): PoolEffect[] {
    return this.at(ms, {
      type: 'status',
      status: {
        v: 1, id: INST, pool: POOL, node: 'node-0', tp: 4, gpuIds: [0, 1, 2, 3], state, startedMs: T0, seq: ++this.seq, sentMs: T0 + ms,
        clockMhz: 1980, maxClockMhz: 1980, queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
      },
    });
  }
}
const tickFx = (fx: PoolEffect[]) => fx.filter((e) => e.kind === 'pause_timer' || (e.kind === 'arm_timer' && e.timer === 'tick'));

describe('pool machine: the leader tick runs only while a dispatch is held or a re-shard is under way', () => {
  it('idle, the first tick pauses it; a held dispatch arms it again, and the tick that finds nothing held pauses it', () => {
    const d = new Drive();
    d.at(0, { type: 'start' });
    expect(tickFx(d.at(0, { type: 'lead', term: 1 }))).toEqual([{ kind: 'arm_timer', timer: 'tick', everyMs: POOL_TICK_MS }]);
    for (const e of d.at(0, { type: 'assign', ref: 1, assignment })) if (e.kind === 'node') d.at(10, { type: 'node_result', cmd: e.cmd, ok: true, purpose: 'reconcile' });
    d.status(50, 'ready');
    d.at(150);
    expect(d.pauses).toEqual([100]);
    expect(poolTickWanted(d.s)).toBe(false);
    // 20 s of statuses and nothing held: no tick
    for (let t = 500; t < 20_000; t += 250) d.status(t, 'ready');
    expect(d.ticks).toBe(1);
    // the engine restarts; a request is held for it: the tick runs again from the dispatch
    d.status(20_000, 'restarting');
    const fx = d.at(20_010, { type: 'dispatch', ref: 2, req: req('r1') });
    expect(fx.some((e) => e.kind === 'held')).toBe(true);
    expect(tickFx(fx)).toEqual([{ kind: 'arm_timer', timer: 'tick', everyMs: POOL_TICK_MS }]);
    d.at(20_500);
    expect(d.ticks).toBe(5);
    // ready again: the held request is admitted, its job ends with the answer; the next tick pauses
    const admit = d.status(20_500, 'ready').find((e) => e.kind === 'admit');
    expect(admit).toBeTruthy();
    if (admit?.kind !== 'admit') return;
    d.at(20_520, { type: 'admit_result', job: admit.job, admission: { v: 1, id: 'r1', ok: true, instance: INST } });
    expect(d.s.jobs.size).toBe(0);
    d.at(21_000);
    expect(d.pauses).toEqual([100, 20_600]);
    const ticks = d.ticks;
    d.at(40_000);
    expect(d.ticks).toBe(ticks);
  });

  it('a lead lost and taken again arms the tick afresh; a standby never pauses what it does not run', () => {
    const d = new Drive();
    d.at(0, { type: 'start' });
    d.at(0, { type: 'lead', term: 1 });
    d.at(250);
    expect(d.pauses).toEqual([100]);
    expect(tickFx(d.at(300, { type: 'lost' }))).toEqual([]);
    expect(d.s.tickPaused).toBeUndefined();
    d.at(1000, { type: 'tick' }); // a tick that raced the disarm: not leading, nothing to pause
    expect(d.pauses).toEqual([100]);
    expect(tickFx(d.at(2000, { type: 'lead', term: 2 }))).toEqual([{ kind: 'arm_timer', timer: 'tick', everyMs: POOL_TICK_MS }]);
    d.at(2150);
    expect(d.pauses).toEqual([100, 2000]); // the grid tick at the lead's own time, after it
  });
});
