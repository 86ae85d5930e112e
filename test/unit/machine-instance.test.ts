/**
 * The instance machine (src/policy/machines/instance.ts), driven event by event on a virtual clock: every
 * decision of an instance manager (admission, the engine slots, the load EWMA, the clock and its sources,
 * the prefill floor, the emergency ladder, the moves) as the effects it asks for.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { chooseClock } from '../../src/policy/frequency.ts';
import { prefillClockFloor } from '../../src/policy/dispatch.ts';
import { riseRate } from '../../src/policy/arrival-rate.ts';
import {
  epochLoad,
  initialInstanceState, instanceStep, currentLoad, pendingPrefillTokens, clockSource,
  type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest,
} from '../../src/policy/machines/instance.ts';
import type { RequestType } from '../../protocols/request-types.ts';

const profile = profileFor('llama2-70b', 'h100');
const CLOCKS = profile.clocksMhz; // 800 .. 1980
const MAX = CLOCKS[CLOCKS.length - 1]!;
const T0 = 1_700_000_000_000;
const SLO: Record<string, number> = { S: 250, M: 400, L: 2000 };

const cfg = (o: Partial<InstanceMachineConfig> = {}): InstanceMachineConfig => ({
  tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 2, maxQueued: 8, timeScale: 1, deadAfterMs: 3000,
  moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16, ...o,
});

let n = 0;
/** a request that arrived at T0 + atMs, carrying its type's SLO and TTFT deadline. */
function req(type: RequestType, atMs: number, o: Partial<MachineRequest> = {}): MachineRequest {
  const ttftSloMs = o.ttftSloMs ?? SLO[type[0]!]!;
  const arrivalMs = T0 + atMs;
  return { id: `r${++n}`, type, inputTokens: type[0] === 'S' ? 150 : type[0] === 'M' ? 450 : 2000, arrivalMs, ttftDeadlineMs: arrivalMs + ttftSloMs, ttftSloMs, moves: 0, ...o };
}

/** A machine on a virtual clock: `at(ms, event)` steps it at T0 + ms and returns that step's effects. */
class Drive {
  s: InstanceMachineState = initialInstanceState(T0);
  log: InstanceEffect[] = [];
  constructor(readonly c: InstanceMachineConfig = cfg()) {}
  at(ms: number, ev: InstanceEvent): InstanceEffect[] {
    const before = this.s;
    const { state, effects } = instanceStep(this.s, ev, T0 + ms, this.c);
    expect(state).not.toBe(before); // the step works on a copy
    this.s = state;
    this.log.push(...effects);
    return effects;
  }
  /** start, GPU open, the start-up clock applied, ready. */
  ready(clockMhz = MAX): this {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'gpu_ready', supportedMhz: [...CLOCKS].reverse() });
    this.at(0, { type: 'clock_applied', requestedMhz: MAX, appliedMhz: clockMhz, why: 'start-up', inputs: {} });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
    return this;
  }
  /** apply every set_clock among the effects as the GPU would (the clock taken exactly). */
  applyClocks(ms: number, fx: InstanceEffect[]): void {
    for (const e of fx) if (e.kind === 'set_clock') this.at(ms, { type: 'clock_applied', requestedMhz: e.clockMhz, appliedMhz: e.clockMhz, why: e.why, inputs: e.inputs });
  }
}
const kinds = (fx: InstanceEffect[]) => fx.map((e) => e.kind);
const started = (fx: InstanceEffect[]) => fx.flatMap((e) => (e.kind === 'start' ? [e.id] : []));
const clocks = (fx: InstanceEffect[]) => fx.flatMap((e) => (e.kind === 'set_clock' ? [e.clockMhz] : []));

describe('instance machine: start-up and admission', () => {
  it("the epoch's load rule: a type's first epoch takes its rate; the clock follows a rise at once and a fall through the EWMA", () => {
    const first = epochLoad({}, { SS: 4 });
    expect(first).toEqual({ load: { SS: 4 }, forClock: { SS: 4 } });
    // a rise: the EWMA moves half way, the clock reads the new rate
    const rise = epochLoad(first.load, { SS: 8 });
    expect(rise).toEqual({ load: { SS: 6 }, forClock: { SS: 8 } });
    // a fall (no arrivals): the clock reads the EWMA, which halves
    const fall = epochLoad(rise.load, {});
    expect(fall).toEqual({ load: { SS: 3 }, forClock: { SS: 3 } });
    // under 1e-3 req/s a type is dropped
    expect(epochLoad({ SS: 0.0015 }, {})).toEqual({ load: {}, forClock: {} });
  });

  it('arms its timers, starts at the max clock, and reports the applied clock as a decision event', () => {
    const d = new Drive();
    expect(d.at(0, { type: 'start' })).toEqual([{ kind: 'arm_timer', timer: 'epoch', everyMs: 5000 }, { kind: 'arm_timer', timer: 'tick', everyMs: 100 }]);
    expect(clocks(d.at(0, { type: 'gpu_ready', supportedMhz: [1980, 800, 1400] }))).toEqual([1980]);
    const fx = d.at(10, { type: 'clock_applied', requestedMhz: 1980, appliedMhz: 1980, why: 'start-up', inputs: {} });
    expect(fx).toMatchObject([{ kind: 'event', event: 'clock', decision: { clockMhz: 1980, from: 0 } }]);
    expect(d.s.clockMhz).toBe(1980);
    // a failed change leaves the clock where it was, without an event
    d.at(20, { type: 'clock_applied', requestedMhz: 800, why: 'x', inputs: {} });
    expect(d.s.clockMhz).toBe(1980);
  });

  it('refuses while not ready, then fills the engine slots in arrival order and starts the next on each completion', () => {
    const d = new Drive();
    d.at(0, { type: 'start' });
    expect(d.at(0, { type: 'admit', req: req('MM', 0) })).toMatchObject([{ kind: 'refused', code: 'unavailable' }]);
    d.ready();
    const rs = [req('MM', 10), req('MM', 20), req('MM', 30), req('SS', 40)];
    expect(started(d.at(10, { type: 'admit', req: rs[0]! }))).toEqual([rs[0]!.id]);
    expect(started(d.at(20, { type: 'admit', req: rs[1]! }))).toEqual([rs[1]!.id]);
    const fx = d.at(30, { type: 'admit', req: rs[2]! });
    expect(kinds(fx)).toContain('admitted');
    expect(started(fx)).toEqual([]);
    d.at(40, { type: 'admit', req: rs[3]! });
    expect(d.s.queue.map((q) => q.id)).toEqual([rs[2]!.id, rs[3]!.id]);
    // admitting the same id twice is answered, not queued twice
    expect(d.at(41, { type: 'admit', req: rs[3]! })).toEqual([{ kind: 'admitted', id: rs[3]!.id }]);
    expect(started(d.at(500, { type: 'finished', id: rs[0]!.id, ok: true }))).toEqual([rs[2]!.id]);
    // the service-time EWMA: 0.8 x 1000 + 0.2 x 490
    expect(d.s.serviceMs).toBeCloseTo(898, 6);
    expect(started(d.at(600, { type: 'finished', id: rs[1]!.id, ok: false }))).toEqual([rs[3]!.id]);
    expect(d.s.serviceMs).toBeCloseTo(898, 6); // a failed request does not count
  });

  it('a draining instance serves what it holds and sends its status the moment it is empty (the pool stops it on that status)', () => {
    const d = new Drive().ready();
    const rs = [req('MM', 10), req('MM', 20), req('MM', 30)];
    for (const r of rs) d.at(10, { type: 'admit', req: r });
    expect(kinds(d.at(100, { type: 'lifecycle', state: 'draining', why: 're-shard: stop' }))).toContain('status');
    // the queued one still starts when a slot frees; no status while work is left
    const first = d.at(200, { type: 'finished', id: rs[0]!.id, ok: true });
    expect(started(first)).toEqual([rs[2]!.id]);
    expect(kinds(first)).not.toContain('status');
    expect(kinds(d.at(300, { type: 'finished', id: rs[1]!.id, ok: true }))).not.toContain('status');
    expect(kinds(d.at(400, { type: 'finished', id: rs[2]!.id, ok: true }))).toEqual(['status']);
    // empty and draining already: nothing more to say
    expect(kinds(d.at(500, { type: 'tick' }))).not.toContain('status');
  });

  it('refuses at the queue bound with a retryable overloaded error', () => {
    const d = new Drive(cfg({ maxInEngine: 1, maxQueued: 2 })).ready();
    for (let i = 0; i < 3; i++) d.at(i, { type: 'admit', req: req('SL', i) });
    expect(d.at(5, { type: 'admit', req: req('SL', 5) })).toMatchObject([{ kind: 'refused', code: 'overloaded', retryAfterS: 1 }]);
  });

  it('pushes back to the pool while a peer has room and the wait would eat half the TTFT SLO', () => {
    const d = new Drive(cfg({ maxInEngine: 1 })).ready();
    d.at(0, { type: 'admit', req: req('LL', 0) }); // in the engine; the service time is 1000 ms
    // without a peer with room: admitted (the wait, 1000 ms, is over half an SS SLO)
    expect(kinds(d.at(10, { type: 'admit', req: req('SS', 10) }))).toContain('admitted');
    d.at(20, { type: 'peer_status', id: 'peer', queued: 0, running: 0, state: 'ready' });
    expect(d.at(30, { type: 'admit', req: req('SS', 30) })).toMatchObject([{ kind: 'refused', code: 'overloaded' }]);
    // a moved request is never pushed back again
    expect(kinds(d.at(40, { type: 'admit', req: req('SS', 40, { moves: 1 }) }))).toContain('admitted');
    // a peer whose status is older than deadAfterMs has no room
    expect(kinds(d.at(20 + 3001, { type: 'admit', req: req('SS', 3021) }))).toContain('admitted');
  });

  it("counts each request it pushes back at the peer with room: a burst within one of the peer's statuses fills that room, then queues", () => {
    const d = new Drive(cfg({ maxInEngine: 2, maxQueued: 16 })).ready();
    d.at(0, { type: 'admit', req: req('LL', 0) });
    d.at(0, { type: 'admit', req: req('LL', 0) }); // the engine full; the service time is 1000 ms
    // the peer's last status: one free seat (it may have filled since; the next status says)
    d.at(10, { type: 'peer_status', id: 'peer', queued: 0, running: 1, state: 'ready' });
    const verdicts = Array.from({ length: 6 }, (_, i) => d.at(20 + i, { type: 'admit', req: req('SS', 20 + i) }).find((e) => e.kind === 'admitted' || e.kind === 'refused')!.kind);
    expect(verdicts).toEqual(['refused', 'admitted', 'admitted', 'admitted', 'admitted', 'admitted']);
    expect(d.s.queue.length).toBe(5);
    // the peer's next status is the truth again: room for two
    d.at(200, { type: 'peer_status', id: 'peer', queued: 0, running: 0, state: 'ready' });
    expect(kinds(d.at(210, { type: 'admit', req: req('SS', 210) }))).toEqual(['refused']);
    expect(kinds(d.at(211, { type: 'admit', req: req('SS', 211) }))).toEqual(['refused']);
    expect(kinds(d.at(212, { type: 'admit', req: req('SS', 212) }))).toContain('admitted');
  });

  it('cancels a queued request with an error chunk and aborts a running one', () => {
    const d = new Drive(cfg({ maxInEngine: 1 })).ready();
    const a = req('MM', 0), b = req('MM', 1);
    d.at(0, { type: 'admit', req: a });
    d.at(1, { type: 'admit', req: b });
    expect(d.at(2, { type: 'cancel', id: b.id, reason: 'client left' })).toEqual([{ kind: 'fail', id: b.id, outcome: 'cancelled', error: { code: 'cancelled', message: 'cancelled: client left', retryable: false } }]);
    expect(d.at(3, { type: 'cancel', id: a.id, reason: 'client left' })).toEqual([{ kind: 'abort', id: a.id, reason: 'cancelled: client left' }]);
  });
});

describe('instance machine: load and clock', () => {
  it('measures the load per epoch (EWMA of half weight) and sets the least-energy clock for max(EWMA, rate)', () => {
    const d = new Drive(cfg({ maxInEngine: 64, maxQueued: 64 })).ready();
    // 20 MM arrivals in the first 5-s epoch: 4 req/s
    for (let i = 0; i < 20; i++) {
      const r = req('MM', i * 250);
      d.at(i * 250, { type: 'admit', req: r });
      d.at(i * 250 + 1, { type: 'first_token', id: r.id });
      d.at(i * 250 + 2, { type: 'finished', id: r.id, ok: true });
    }
    const fx = d.at(5000, { type: 'epoch' });
    expect(d.s.load.MM).toBeCloseTo(4, 6);
    expect(clocks(fx)).toEqual([chooseClock({ profile, tp: 4, loadByType: { MM: 4 }, headroom: 0 }).clockMhz]);
    d.applyClocks(5000, fx);
    // an idle epoch: the EWMA halves (2 req/s), the clock follows it down, not to the idle clock
    const fx2 = d.at(10_000, { type: 'epoch' });
    expect(d.s.load.MM).toBeCloseTo(2, 6);
    expect(clocks(fx2)).toEqual([chooseClock({ profile, tp: 4, loadByType: { MM: 2 }, headroom: 0 }).clockMhz]);
    // the dispatcher's view blends the arrivals since the epoch once half a second has passed
    d.at(10_100, { type: 'admit', req: req('SS', 10_100) });
    expect(currentLoad(d.s, T0 + 10_200, d.c).SS).toBeUndefined();
    expect(currentLoad(d.s, T0 + 11_000, d.c).SS).toBeCloseTo(1, 6);
  });

  it('arbitrates the clock sources: a pool set_clock holds for one epoch, the emergency max clock over everything', () => {
    const d = new Drive(cfg({ maxInEngine: 64 })).ready(800);
    const fx = d.at(100, { type: 'pool_set_clock', clockMhz: 1400, reason: 'pool epoch' });
    expect(clocks(fx)).toEqual([1400]);
    d.applyClocks(100, fx);
    expect(clockSource(d.s, T0 + 200)).toBe('pool');
    expect(clocks(d.at(5000, { type: 'epoch' }))).toEqual([]); // the pool's clock holds
    // and no raise between epochs either
    for (let i = 0; i < 30; i++) d.at(5001 + i, { type: 'admit', req: req('SS', 5001 + i, { inputTokens: 10 }) });
    expect(clocks(d.at(5050, { type: 'tick' }))).toEqual([]);
    expect(clockSource(d.s, T0 + 5100)).toBe('instance');
    expect(clocks(d.at(10_000, { type: 'epoch' })).length).toBe(1);
  });

  it('raises the clock within the epoch when the load rises (only up, one raise in flight)', () => {
    const d = new Drive(cfg({ maxInEngine: 64, maxQueued: 64 })).ready(800);
    // 40 MS requests within 1 s: 40 req/s is far over what 800 MHz carries
    for (let i = 0; i < 40; i++) {
      const r = req('MS', 5000 + i * 25, { inputTokens: 10 });
      d.at(5000 + i * 25, { type: 'admit', req: r });
      d.at(5000 + i * 25, { type: 'first_token', id: r.id });
    }
    const fx = d.at(6000, { type: 'tick' });
    // the window ends at an arrival: 40 arrivals in 1 s read (40 - 1) / 1 s (riseRate)
    const want = chooseClock({ profile, tp: 4, loadByType: { MS: 39 }, headroom: 0 }).clockMhz;
    expect(want).toBeGreaterThan(800);
    expect(clocks(fx)).toEqual([want]);
    // the arrivals looked at, the queue empty: the tick pauses (machine-instance-tick.test.ts)
    expect(fx).toMatchObject([{ kind: 'set_clock', why: expect.stringMatching(/^load rose within the epoch/) }, { kind: 'pause_timer', timer: 'tick' }]);
    // while it is in flight no second raise
    d.at(6050, { type: 'admit', req: req('MS', 6050, { inputTokens: 10 }) });
    expect(clocks(d.at(6100, { type: 'tick' }))).toEqual([]);
    d.applyClocks(6150, fx);
    // nothing arrived since the last check: no raise, and never down between epochs
    expect(clocks(d.at(6200, { type: 'tick' }))).toEqual([]);
  });

  it('reads the rate within the epoch as (N - 1) / t: a lone arrival on a lightly loaded instance does not raise its clock, a second one soon after does', () => {
    const d = new Drive(cfg({ maxInEngine: 64, maxQueued: 64 })).ready(800);
    const lm = (ms: number) => {
      const r = req('LM', ms, { inputTokens: 10 });
      const fx = d.at(ms, { type: 'admit', req: r });
      d.at(ms, { type: 'first_token', id: r.id });
      return fx;
    };
    // one LM request in the first epoch (0.2 req/s), then a quiet epoch: the EWMA reads 0.1 req/s
    lm(1000);
    d.applyClocks(5000, d.at(5000, { type: 'epoch' }));
    d.applyClocks(10_000, d.at(10_000, { type: 'epoch' }));
    expect(d.s.load.LM).toBeCloseTo(0.1, 6);
    const low = chooseClock({ profile, tp: 4, loadByType: { LM: 0.1 }, headroom: 0 }).clockMhz;
    expect(d.s.clockMhz).toBe(low);
    // a lone arrival 1.5 s into the epoch: N / t would read 0.67 req/s, more than TP4 carries at any clock, and raise
    // the clock to the max; (N - 1) / t reads no rise
    expect(chooseClock({ profile, tp: 4, loadByType: { LM: 1 / 1.5 }, headroom: 0 }).clockMhz).toBe(MAX);
    expect(clocks(lm(11_500))).toEqual([]);
    expect(clocks(d.at(11_600, { type: 'tick' }))).toEqual([]);
    // a second one half a second later: 1 / 2.1 s, the rise is followed at once
    lm(12_000);
    const fx = d.at(12_100, { type: 'tick' });
    const want = chooseClock({ profile, tp: 4, loadByType: { LM: 1 / 2.1 }, headroom: 0 }).clockMhz;
    expect(want).toBeGreaterThan(low);
    expect(clocks(fx)).toEqual([want]);
    expect(fx).toMatchObject([{ kind: 'set_clock', why: expect.stringMatching(/^load rose within the epoch/) }, { kind: 'pause_timer', timer: 'tick' }]);
  });

  it('riseRate: (N - 1) / t of all arrivals, split by type; unbiased for a Poisson process read at its N-th arrival, where N / t is not', () => {
    expect(riseRate({ LM: 1 }, 1.5)).toEqual({});
    expect(riseRate({}, 2)).toEqual({});
    const r = riseRate({ SS: 3, MM: 1 }, 2);
    expect(r.SS).toBeCloseTo((3 / 4) * (3 / 2), 9);
    expect(r.MM).toBeCloseTo((1 / 4) * (3 / 2), 9);
    // Poisson arrivals at 0.5 req/s, read at the N-th arrival (N = 2..6) from the start of the window
    let seed = 12345;
    const u = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) + 0.5) / 2147483648;
    for (const N of [2, 3, 6]) {
      let sumUnbiased = 0, sumNaive = 0;
      const trials = 20_000;
      for (let k = 0; k < trials; k++) {
        let t = 0;
        for (let i = 0; i < N; i++) t += -Math.log(u()) / 0.5;
        sumUnbiased += riseRate({ LM: N }, t).LM!;
        sumNaive += N / t;
      }
      expect(sumUnbiased / trials).toBeGreaterThan(0.5 * 0.97);
      expect(sumUnbiased / trials).toBeLessThan(0.5 * 1.03);
      expect(sumNaive / trials).toBeGreaterThan(0.5 * (N / (N - 1)) * 0.97);
    }
  });

  it('raises the clock on admission when a long prompt needs it to meet its TTFT deadline, and the epoch keeps that floor', () => {
    const d = new Drive(cfg({ maxInEngine: 4 })).ready(800);
    // an SL request whose prompt is 8000 tokens (its type's cell has ~180), TTFT SLO 1.5 s: at 800 MHz its
    // prefill would miss the deadline
    const long = req('SL', 1000, { inputTokens: 8000, ttftSloMs: 1500 });
    expect(prefillClockFloor(profile, 4, [{ tokens: 8000, slackMs: 1500 }])).toBeGreaterThan(800);
    const fx = d.at(1000, { type: 'admit', req: long });
    expect(kinds(fx)).toEqual(['admitted', 'set_clock', 'start']); // the clock is asked for before the prompt starts
    expect(clocks(fx)).toEqual([prefillClockFloor(profile, 4, [{ tokens: 8000, slackMs: 1500 }])]);
    expect(clocks(fx)[0]).toBeGreaterThan(800);
    expect(pendingPrefillTokens(d.s)).toBe(8000);
    d.applyClocks(1010, fx);
    // at the epoch the load alone would choose a lower clock than the 1 s left need
    const floor = prefillClockFloor(profile, 4, [{ tokens: 8000, slackMs: 1000 }]);
    expect(chooseClock({ profile, tp: 4, loadByType: { SL: 1 / 1.5 }, headroom: 0 }).clockMhz).toBeLessThan(floor);
    const e = d.at(1500, { type: 'epoch' });
    expect(clocks(e)).toEqual([floor]);
    expect(e).toMatchObject([{ why: expect.stringMatching(/raised to \d+ MHz for the prefill backlog/) }]);
    d.applyClocks(1510, e);
    // once its first token came the floor is gone
    d.at(1600, { type: 'first_token', id: long.id });
    expect(pendingPrefillTokens(d.s)).toBe(0);
    expect(clocks(d.at(6500, { type: 'epoch' }))[0]).toBeLessThan(floor);
  });
});

describe('instance machine: emergency ladder', () => {
  /** one engine slot held by a long request, the service EWMA at 1 s: every queued request predicts a miss. */
  function overloaded(clockMhz = MAX): Drive {
    const d = new Drive(cfg({ maxInEngine: 1, maxQueued: 32 })).ready(clockMhz);
    d.at(0, { type: 'admit', req: req('LL', 0, { inputTokens: 100 }) });
    return d;
  }

  it('reorders by the TTFT deadline the request carries: short prompts arriving after a long one go first', () => {
    const d = overloaded();
    const long = req('LL', 10, { inputTokens: 100 }), medium = req('MS', 20), short = req('SS', 30);
    for (const r of [long, medium, short]) d.at(r.arrivalMs - T0, { type: 'admit', req: r });
    expect(d.s.queue.map((q) => q.id)).toEqual([long.id, medium.id, short.id]); // FIFO until the ladder acts
    const fx = d.at(100, { type: 'tick' });
    expect(fx).toMatchObject([{ kind: 'event', event: 'emergency', decision: { step: 'reorder', queued: 3 } }]);
    expect(d.s.queue.map((q) => q.id)).toEqual([short.id, medium.id, long.id]);
    // later arrivals go in by deadline; the engine slot goes to the earliest deadline
    const short2 = req('SS', 120);
    d.at(120, { type: 'admit', req: short2 });
    expect(d.s.queue.map((q) => q.id)).toEqual([short.id, short2.id, medium.id, long.id]);
    expect(started(d.at(130, { type: 'finished', id: d.s.running.keys().next().value!, ok: true }))).toEqual([short.id]);
  });

  it('holds the max clock from step 2 (the epoch does not lower it), moves from step 3, rejects the overdue at step 4, then steps down', () => {
    const d = overloaded(1400);
    for (let i = 0; i < 6; i++) d.at(10 + i, { type: 'admit', req: req('MM', 10 + i) });
    d.at(20, { type: 'peer_status', id: 'peer', queued: 0, running: 0, state: 'ready' });
    d.at(100, { type: 'tick' }); // step 1: reorder
    const s2 = d.at(1100, { type: 'tick' }); // step 2: max clock
    expect(clocks(s2)).toEqual([MAX]);
    expect(clockSource(d.s, T0 + 1100)).toBe('emergency');
    d.applyClocks(1150, s2);
    expect(clocks(d.at(1900, { type: 'epoch' }))).toEqual([]);
    // nor does a pool's set_clock (the emergency source is above the pool's)
    expect(clocks(d.at(1950, { type: 'pool_set_clock', clockMhz: CLOCKS[0]!, reason: 'test' }))).toEqual([]);
    // the simulator hands a pool's statuses over in one event: the same as one by one
    d.at(2000, { type: 'peer_statuses', peers: [{ id: 'peer', queued: 0, running: 0, state: 'ready' }, { id: 'full', queued: 20, running: 2, state: 'ready' }] });
    expect([...d.s.peers.keys()]).toEqual(['peer', 'full']);
    const s3 = d.at(2100, { type: 'tick' }); // step 3: move the back of the EDF order to peers
    const mv = s3.find((e) => e.kind === 'move');
    expect(mv).toMatchObject({ kind: 'move', why: 'emergency: backlog' });
    const ids = (mv as { ids: string[] }).ids;
    expect(ids.length).toBe(6);
    expect(d.s.queue.length).toBe(0);
    // one move at a time: no second move while this one is in flight
    expect(kinds(d.at(2150, { type: 'tick' }))).not.toContain('move');
    // the pool placed two; the others come back to the front, in order
    const back = d.at(2200, { type: 'moved', ids, placed: ids.slice(0, 2) });
    expect(back).toMatchObject([{ kind: 'event', event: 'emergency', decision: { step: 'move_to_peers', asked: 6, refused: 4 } }]);
    expect(d.s.queue.map((q) => q.id)).toEqual(ids.slice(2));
    // nobody to move to any more (the peer's status ages out after 3 s): the ladder goes on to step 4
    expect(kinds(d.at(5100, { type: 'tick' }))).not.toContain('move');
    expect(d.s.peers.size).toBe(0);
    expect(d.s.emergency.level).toBe(4);
    const rejected = d.at(10_100, { type: 'tick' }).filter((e) => e.kind === 'fail');
    expect(rejected.map((e) => (e as { id: string }).id)).toEqual(ids.slice(2));
    expect(rejected[0]).toMatchObject({ outcome: 'rejected', error: { code: 'rejected', retryable: true, retryAfterS: 1 } });
    // clear for 5 s at each level: step down one level at a time, the max clock released below step 2
    let t = 10_200;
    while (d.s.emergency.level > 0 && t < 60_000) {
      const fx = d.at((t += 100), { type: 'tick' });
      if (d.s.emergency.level < 2) expect(d.s.emergencyMaxClock).toBe(false);
      if (d.s.emergency.level === 0) expect(fx).toMatchObject([{ kind: 'event', decision: { step: 'clear' } }, { kind: 'pause_timer', timer: 'tick' }]);
    }
    expect(d.s.emergency.level).toBe(0);
    expect(d.s.edf).toBe(false);
    expect(d.s.emergencyStepName).toBeUndefined();
  });

  it('keeps one copy of a request a peer hands back while the move is still in flight', () => {
    const d = overloaded();
    const a = req('MM', 1), b = req('MM', 2);
    d.at(1, { type: 'admit', req: a });
    d.at(2, { type: 'admit', req: b });
    d.at(3, { type: 'lifecycle', state: 'restarting', why: 'engine exited' });
    d.at(4, { type: 'engine_crashed' });
    d.at(5, { type: 'lifecycle', state: 'ready', why: 'engine restarted' });
    // the peer took a, moved it back here (moves 1) before the pool answered; b found no peer
    expect(kinds(d.at(6, { type: 'admit', req: { ...a, moves: 1 } }))).toContain('admitted');
    d.at(7, { type: 'moved', ids: [a.id, b.id], placed: [a.id] });
    expect(d.s.queue.map((q) => q.id)).toEqual([b.id, a.id]);
    // and had it refused a, the queue still holds it once
    const d2 = overloaded();
    d2.at(1, { type: 'admit', req: a });
    d2.at(2, { type: 'engine_crashed' });
    d2.at(3, { type: 'admit', req: { ...a, moves: 1 } });
    d2.at(4, { type: 'moved', ids: [a.id], placed: [] });
    expect(d2.s.queue.map((q) => q.id)).toEqual([a.id]);
  });

  it('moves the whole queue to peers when the engine crashes, and fails the rest when it is gone', () => {
    const d = overloaded();
    const q = [req('MM', 1), req('MM', 2), req('MM', 3)];
    for (const r of q) d.at(r.arrivalMs - T0, { type: 'admit', req: r });
    d.at(10, { type: 'lifecycle', state: 'restarting', why: 'engine exited' });
    expect(started(d.at(11, { type: 'finished', id: d.s.running.keys().next().value!, ok: false }))).toEqual([]); // not serving
    const mv = d.at(12, { type: 'engine_crashed' });
    expect(mv).toEqual([{ kind: 'move', ids: q.map((r) => r.id), why: 'engine crashed' }]);
    d.at(50, { type: 'moved', ids: q.map((r) => r.id), placed: [q[0]!.id], error: undefined });
    expect(d.s.queue.map((x) => x.id)).toEqual([q[1]!.id, q[2]!.id]);
    const fx = d.at(60, { type: 'fail_queued', error: { code: 'engine_crashed', message: 'gone', retryable: true } });
    expect(fx.map((e) => (e as { id: string }).id)).toEqual([q[1]!.id, q[2]!.id]);
    expect(d.s.queue).toEqual([]);
  });
});
