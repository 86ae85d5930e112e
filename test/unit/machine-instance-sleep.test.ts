/**
 * The instance machine's sleep mode (src/policy/machines/instance-sleep.ts), event by event on a virtual clock: when a
 * told-to-sleep instance stops admitting, when its engine sleeps, when the sleep gives up, when it serves again after a
 * wake. The live instance manager and the simulator only carry out its engine_sleep / engine_wake.
 */
import { describe, expect, it } from 'vitest';
import { initialInstanceState, instanceStep, SLEEP_DRAIN_DEADLINE_MS, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest } from '../../src/policy/machines/instance.ts';

const T0 = 1_700_000_000_000;
const cfg: InstanceMachineConfig = { tp: 2, epochMs: 5000, tickMs: 100, maxInEngine: 4, maxQueued: 8, timeScale: 1, deadAfterMs: 3000, moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1 };

class Drive {
  s: InstanceMachineState = initialInstanceState(T0);
  constructor(readonly c: InstanceMachineConfig = cfg) {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
  }
  at(ms: number, ev: InstanceEvent): InstanceEffect[] {
    const r = instanceStep(this.s, ev, T0 + ms, this.c);
    this.s = r.state;
    return r.effects;
  }
}

const req = (id: string, atMs: number): MachineRequest => ({ id, type: 'SS', inputTokens: 100, arrivalMs: T0 + atMs, ttftDeadlineMs: T0 + atMs + 250, ttftSloMs: 250, moves: 0 });
const engineCalls = (fx: InstanceEffect[]) => fx.filter((e) => e.kind === 'engine_sleep' || e.kind === 'engine_wake');

describe('instance machine: sleep mode', () => {
  it('an engine that crashed while falling asleep or asleep restarts awake: once ready the instance can sleep again', () => {
    for (const asleep of [false, true]) {
      const d = new Drive();
      d.at(1000, { type: 'sleep', level: 1, why: 'standby' });
      expect(d.s.sleep?.phase).toBe('falling');
      if (asleep) d.at(1200, { type: 'engine_slept', ok: true });
      // the engine process dies; the instance manager restarts it (as actors/instance-manager does)
      d.at(2000, { type: 'lifecycle', state: 'restarting', why: 'engine exited (code 1, signal null)' });
      d.at(2000, { type: 'engine_crashed' });
      d.at(9000, { type: 'engine_restarted' });
      expect(d.s.lifecycle).toBe('ready');
      expect(d.s.sleep).toBeUndefined();
      // a late answer of the dead engine's sleep call changes nothing
      d.at(9100, { type: 'engine_slept', ok: true });
      expect(d.s.sleep).toBeUndefined();
      const fx = d.at(10_000, { type: 'sleep', level: 2, why: 'standby' });
      expect(d.s.lifecycle).toBe('sleeping');
      expect(engineCalls(fx)).toEqual([{ kind: 'engine_sleep', level: 2 }]);
    }
  });

  it('an idle instance: sleeping at once, its engine told to sleep; asleep once the call answers; a wake wakes the engine, then it serves', () => {
    const d = new Drive();
    const fx = d.at(1000, { type: 'sleep', level: 2, why: 'standby' });
    expect(d.s.lifecycle).toBe('sleeping');
    expect(engineCalls(fx)).toEqual([{ kind: 'engine_sleep', level: 2 }]);
    expect(fx).toContainEqual({ kind: 'status' });
    expect(d.s.sleep?.phase).toBe('falling');
    d.at(1200, { type: 'engine_slept', ok: true });
    expect(d.s.sleep?.phase).toBe('asleep');
    // nothing admitted while sleeping
    expect(d.at(1300, { type: 'admit', req: req('a', 1300) }).find((e) => e.kind === 'refused')).toBeDefined();
    expect(engineCalls(d.at(2000, { type: 'wake', why: 'load rises' }))).toEqual([{ kind: 'engine_wake' }]);
    expect(d.s.lifecycle).toBe('sleeping'); // until the engine has woken
    d.at(4000, { type: 'engine_woke', ok: true });
    expect(d.s.lifecycle).toBe('ready');
    expect(d.s.sleep).toBeUndefined();
  });

  it('an instance holding requests finishes them first: the engine sleeps when the last one ends', () => {
    const d = new Drive();
    d.at(0, { type: 'admit', req: req('a', 0) });
    expect(d.s.running.has('a')).toBe(true);
    expect(engineCalls(d.at(100, { type: 'sleep', level: 1, why: 'standby' }))).toEqual([]);
    expect(d.s.sleep?.phase).toBe('to-sleep');
    expect(engineCalls(d.at(200, { type: 'tick' }))).toEqual([]);
    expect(engineCalls(d.at(5000, { type: 'finished', id: 'a', ok: true }))).toEqual([{ kind: 'engine_sleep', level: 1 }]);
  });

  it('requests still held at the deadline: the sleep gives up and the instance serves again', () => {
    const d = new Drive({ ...cfg, sleepDrainDeadlineMs: 30_000 });
    d.at(0, { type: 'admit', req: req('a', 0) });
    d.at(100, { type: 'sleep', level: 1, why: 'standby' });
    d.at(30_000, { type: 'tick' });
    expect(d.s.lifecycle).toBe('sleeping');
    const fx = d.at(30_100, { type: 'tick' });
    expect(d.s.lifecycle).toBe('ready');
    expect(d.s.sleep).toBeUndefined();
    expect(fx.find((e) => e.kind === 'event' && /sleep gave up/.test(e.summary))).toBeDefined();
    expect(engineCalls(d.at(40_000, { type: 'finished', id: 'a', ok: true }))).toEqual([]);
    expect(SLEEP_DRAIN_DEADLINE_MS).toBe(600_000); // the default
  });

  it('a wake before the fall: it serves again at once, no engine call', () => {
    const d = new Drive();
    d.at(0, { type: 'admit', req: req('a', 0) });
    d.at(100, { type: 'sleep', level: 1, why: 'standby' });
    expect(engineCalls(d.at(200, { type: 'wake', why: 'load rises' }))).toEqual([]);
    expect(d.s.lifecycle).toBe('ready');
    expect(engineCalls(d.at(300, { type: 'finished', id: 'a', ok: true }))).toEqual([]);
  });

  it('a wake during the fall: the engine wakes once its sleep call answers', () => {
    const d = new Drive();
    d.at(0, { type: 'sleep', level: 1, why: 'standby' });
    expect(engineCalls(d.at(100, { type: 'wake', why: 'load rises' }))).toEqual([]);
    expect(engineCalls(d.at(500, { type: 'engine_slept', ok: true }))).toEqual([{ kind: 'engine_wake' }]);
    d.at(900, { type: 'engine_woke', ok: true });
    expect(d.s.lifecycle).toBe('ready');
  });

  it('a failed sleep serves again; a failed wake stays sleeping', () => {
    const d = new Drive();
    d.at(0, { type: 'sleep', level: 1, why: 'standby' });
    d.at(100, { type: 'engine_slept', ok: false, error: 'HTTP 500' });
    expect(d.s.lifecycle).toBe('ready');
    d.at(200, { type: 'sleep', level: 1, why: 'standby' });
    d.at(300, { type: 'engine_slept', ok: true });
    d.at(400, { type: 'wake', why: 'w' });
    d.at(500, { type: 'engine_woke', ok: false, error: 'HTTP 500' });
    expect(d.s.lifecycle).toBe('sleeping');
    expect(d.s.sleep?.phase).toBe('asleep');
    expect(engineCalls(d.at(600, { type: 'wake', why: 'again' }))).toEqual([{ kind: 'engine_wake' }]);
  });

  it('a drain ends the wait to sleep: the engine is not put to sleep when the requests end', () => {
    const d = new Drive();
    d.at(0, { type: 'admit', req: req('a', 0) });
    d.at(100, { type: 'sleep', level: 1, why: 'standby' });
    d.at(200, { type: 'lifecycle', state: 'draining', why: 're-shard' });
    expect(d.s.sleep).toBeUndefined();
    expect(engineCalls(d.at(300, { type: 'finished', id: 'a', ok: true }))).toEqual([]);
    // a sleep or wake of an instance not ready / not sleeping does nothing
    expect(d.at(400, { type: 'sleep', level: 1, why: 'x' })).toEqual([]);
    expect(d.at(500, { type: 'wake', why: 'x' })).toEqual([]);
    expect(d.s.lifecycle).toBe('draining');
  });

  it('a resume of a drained instance whose engine sleeps wakes the engine first: sleeping (out of dispatch) until it is awake, then ready', () => {
    const d = new Drive();
    d.at(1000, { type: 'sleep', level: 1, why: 'standby' });
    d.at(1200, { type: 'engine_slept', ok: true });
    d.at(2000, { type: 'lifecycle', state: 'draining', why: 're-shard (old leader)' });
    expect(d.s.sleep?.phase).toBe('asleep');
    // the new leader resumes the orphan drain
    const fx = d.at(3000, { type: 'lifecycle', state: 'ready', why: 'new leader resumes' });
    expect(engineCalls(fx)).toEqual([{ kind: 'engine_wake' }]);
    expect(fx).toContainEqual({ kind: 'status' });
    expect(d.s.lifecycle).toBe('sleeping');
    expect(d.at(3100, { type: 'admit', req: req('a', 3100) }).find((e) => e.kind === 'refused')).toBeDefined();
    // the pool's wake meanwhile asks nothing more of the engine
    expect(engineCalls(d.at(3200, { type: 'wake', why: 'pool wake' }))).toEqual([]);
    d.at(4000, { type: 'engine_woke', ok: true });
    expect(d.s.lifecycle).toBe('ready');
    expect(d.s.sleep).toBeUndefined();
    expect(d.at(4100, { type: 'admit', req: req('b', 4100) }).find((e) => e.kind === 'start')).toBeDefined();
  });

  it('a resume while the engine falls asleep or wakes: ready only once the engine is awake; a failed wake leaves it sleeping for the pool to wake', () => {
    // falling: drained during the fall, resumed before the sleep call answers
    const f = new Drive();
    f.at(1000, { type: 'sleep', level: 1, why: 'standby' });
    f.at(1100, { type: 'lifecycle', state: 'draining', why: 're-shard' });
    expect(engineCalls(f.at(1200, { type: 'lifecycle', state: 'ready', why: 'resume' }))).toEqual([]);
    expect(f.s.lifecycle).toBe('sleeping');
    expect(engineCalls(f.at(1500, { type: 'engine_slept', ok: true }))).toEqual([{ kind: 'engine_wake' }]);
    f.at(2000, { type: 'engine_woke', ok: true });
    expect(f.s.lifecycle).toBe('ready');
    // waking: drained while a wake is under way, resumed before it answers
    const w = new Drive();
    w.at(1000, { type: 'sleep', level: 1, why: 'standby' });
    w.at(1100, { type: 'engine_slept', ok: true });
    w.at(1200, { type: 'wake', why: 'load rises' });
    w.at(1300, { type: 'lifecycle', state: 'draining', why: 're-shard' });
    expect(engineCalls(w.at(1400, { type: 'lifecycle', state: 'ready', why: 'resume' }))).toEqual([]);
    expect(w.s.lifecycle).toBe('sleeping');
    w.at(2000, { type: 'engine_woke', ok: true });
    expect(w.s.lifecycle).toBe('ready');
    // a failed wake of a resume: sleeping, asleep; the pool's wake wakes it
    const x = new Drive();
    x.at(1000, { type: 'sleep', level: 1, why: 'standby' });
    x.at(1100, { type: 'engine_slept', ok: true });
    x.at(1200, { type: 'lifecycle', state: 'draining', why: 're-shard' });
    x.at(1300, { type: 'lifecycle', state: 'ready', why: 'resume' });
    x.at(1400, { type: 'engine_woke', ok: false, error: 'HTTP 500' });
    expect([x.s.lifecycle, x.s.sleep?.phase]).toEqual(['sleeping', 'asleep']);
    expect(engineCalls(x.at(1500, { type: 'wake', why: 'pool wake' }))).toEqual([{ kind: 'engine_wake' }]);
    x.at(1600, { type: 'engine_woke', ok: true });
    expect(x.s.lifecycle).toBe('ready');
  });
});
