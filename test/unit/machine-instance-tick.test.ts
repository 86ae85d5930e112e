/**
 * The instance machine's ladder tick runs only while it may act (src/policy/machines/instance.ts, tickWanted):
 * an idle instance pauses its 100-ms timer (pause_timer) and the step that gives the tick something again re-arms
 * it (arm_timer). Driven event by event on a virtual clock, with the timer as the live shell runs it: ticks come
 * every tickMs while armed, none while paused. The same scenario with a tick every tickMs throughout asks for
 * the same decisions at the same times.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import {
  initialInstanceState, instanceStep, tickWanted,
  type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest,
} from '../../src/policy/machines/instance.ts';

const profile = profileFor('llama2-70b', 'h100');
const CLOCKS = profile.clocksMhz;
const MAX = CLOCKS[CLOCKS.length - 1]!;
const T0 = 1_700_000_000_000;
const TICK = 100;
const cfg: InstanceMachineConfig = {
  tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: TICK, maxInEngine: 2, maxQueued: 16, timeScale: 1, deadAfterMs: 3000,
  moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16,
};

let n = 0;
function req(atMs: number, ttftSloMs = 250): MachineRequest {
  const arrivalMs = T0 + atMs;
  return { id: `r${++n}`, type: 'SS', inputTokens: 150, arrivalMs, ttftDeadlineMs: arrivalMs + ttftSloMs, ttftSloMs, moves: 0 };
}

/**
 * A machine and its tick timer on a virtual clock. `paused`: the timer as the shell runs it (stopped by pause_timer,
 * started again by arm_timer); otherwise a tick every TICK ms whatever the machine asks. Ticks fall on the TICK grid
 * (the live interval's phase is its arming time; the grid keeps both drivers' ticks at the same times), a tick at an
 * event's own time after the event.
 */
class Drive {
  s: InstanceMachineState = initialInstanceState(T0);
  log: { ms: number; e: InstanceEffect }[] = [];
  ticks = 0;
  armed = false;
  #now = 0;
  constructor(readonly paused: boolean) {}
  #step(ms: number, ev: InstanceEvent): InstanceEffect[] {
    const { state, effects } = instanceStep(this.s, ev, T0 + ms, cfg);
    this.s = state;
    for (const e of effects) {
      if (e.kind === 'arm_timer' && e.timer === 'tick') this.armed = true;
      if (e.kind === 'pause_timer') this.armed = false;
      this.log.push({ ms, e });
    }
    return effects;
  }
  /** the ticks due up to `ms` (exclusive), then the event at `ms`. */
  at(ms: number, ev?: InstanceEvent): InstanceEffect[] {
    for (let t = Math.ceil(this.#now / TICK) * TICK; t < ms; t += TICK) {
      if (t === 0 || (this.paused && !this.armed)) continue;
      this.ticks++;
      this.#step(t, { type: 'tick' });
    }
    this.#now = ms;
    return ev ? this.#step(ms, ev) : [];
  }
  ready(): this {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'gpu_ready', supportedMhz: [...CLOCKS].reverse() });
    this.at(0, { type: 'clock_applied', requestedMhz: MAX, appliedMhz: MAX, why: 'start-up', inputs: {} });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
    return this;
  }
  /** every effect but the tick timer's own, with its time. */
  decisions(): string[] {
    return this.log.filter(({ e }) => !(e.kind === 'pause_timer' || (e.kind === 'arm_timer' && e.timer === 'tick'))).map(({ ms, e }) => `${ms} ${JSON.stringify(e)}`);
  }
}

const timerFx = (fx: InstanceEffect[]) => fx.filter((e) => e.kind === 'pause_timer' || (e.kind === 'arm_timer' && e.timer === 'tick'));

describe('instance machine: the ladder tick runs only while it may act', () => {
  it('an idle instance pauses its tick; an admission arms it again and the next idle tick pauses it', () => {
    const d = new Drive(true).ready();
    expect(d.at(0, { type: 'start' }).find((e) => e.kind === 'arm_timer' && e.timer === 'tick')).toBeTruthy();
    d.armed = true;
    expect(tickWanted(d.s)).toBe(false);
    // the first tick finds nothing to act on: the timer stops
    expect(timerFx(d.at(150))).toEqual([]);
    expect(d.log.filter(({ e }) => e.kind === 'pause_timer').map(({ ms }) => ms)).toEqual([100]);
    expect(d.armed).toBe(false);
    // 10 s idle: no tick at all
    d.at(10_000);
    expect(d.ticks).toBe(1);
    // an admission (started at once: a load rise to look at) arms it again at once
    const r = req(10_000);
    expect(timerFx(d.at(10_000, { type: 'admit', req: r }))).toEqual([{ kind: 'arm_timer', timer: 'tick', everyMs: TICK }]);
    // the tick after it looks at the arrivals, then nothing is left: paused again
    expect(timerFx(d.at(10_150))).toEqual([]);
    expect(d.ticks).toBe(2);
    expect(d.log.filter(({ e }) => e.kind === 'pause_timer').map(({ ms }) => ms)).toEqual([100, 10_000]);
    // a finished request asks for no tick
    expect(timerFx(d.at(11_000, { type: 'finished', id: r.id, ok: true }))).toEqual([]);
    d.at(20_000);
    expect(d.ticks).toBe(2);
  });

  it('a queue keeps it ticking, and the emergency ladder until it clears; then it pauses', () => {
    const d = new Drive(true).ready();
    d.at(1000);
    // 6 requests on 2 engine slots with tight deadlines: 4 queued, misses predicted, the ladder climbs
    const rs = [0, 1, 2, 3, 4, 5].map(() => req(1000, 60));
    for (const r of rs) d.at(1000, { type: 'admit', req: r });
    expect(d.s.queue.length).toBe(4);
    d.at(3000);
    expect(d.s.emergency.level).toBeGreaterThan(0);
    const ticksBefore = d.ticks;
    // the requests end: the queue empties, the ladder stays above 0 until its clearing time has passed
    let t = 3000;
    for (const r of rs) d.at((t += 10), { type: 'finished', id: r.id, ok: true });
    expect(d.s.queue.length).toBe(0);
    d.at(4000);
    expect(d.ticks).toBeGreaterThan(ticksBefore);
    expect(d.armed).toBe(true);
    // cleared within its 5-s steps per level, then paused
    d.at(40_000);
    expect(d.s.emergency.level).toBe(0);
    expect(d.armed).toBe(false);
    const pausedAt = d.log.filter(({ e }) => e.kind === 'pause_timer').map(({ ms }) => ms).at(-1)!;
    expect(pausedAt).toBeGreaterThan(4000);
    const ticks = d.ticks;
    d.at(60_000);
    expect(d.ticks).toBe(ticks);
  });

  it('the paused tick changes no decision: the same effects at the same times as a tick every 100 ms throughout', () => {
    const scenario = (d: Drive) => {
      d.ready();
      d.at(500, { type: 'peer_status', id: 'peer', queued: 0, running: 0, state: 'ready' });
      n = 100;
      const rs = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => req(2000 + i, i % 2 ? 60 : 400));
      rs.forEach((r, i) => d.at(2000 + i, { type: 'admit', req: r }));
      d.at(2600, { type: 'peer_status', id: 'peer', queued: 0, running: 0, state: 'ready' });
      let t = 4000;
      for (const r of rs) d.at((t += 250), { type: 'finished', id: r.id, ok: true });
      d.at(9000, { type: 'epoch' });
      d.at(30_000, { type: 'admit', req: req(30_000) });
      d.at(30_500, { type: 'epoch' });
      d.at(45_000);
    };
    const always = new Drive(false), paused = new Drive(true);
    scenario(always);
    scenario(paused);
    expect(paused.decisions()).toEqual(always.decisions());
    expect(always.decisions().some((x) => x.includes('"emergency"'))).toBe(true);
    // and far fewer ticks
    expect(paused.ticks).toBeLessThan(always.ticks / 2);
  });

  it('a sleep waiting for its requests keeps the tick, for its give-up time', () => {
    const d = new Drive(true).ready();
    const r = req(1000);
    d.at(1000, { type: 'admit', req: r });
    d.at(1300);
    expect(d.armed).toBe(false); // started at once; the arrivals looked at
    d.at(1300, { type: 'sleep', level: 1, why: 'pool standby' });
    expect(d.s.sleep?.phase).toBe('to-sleep');
    expect(tickWanted(d.s)).toBe(true);
    expect(d.armed).toBe(true);
  });
});
