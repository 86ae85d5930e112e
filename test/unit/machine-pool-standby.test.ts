/**
 * The pool leader's sleep-mode standby (src/policy/machines/pool-standby.ts), status period by status period: the
 * pool's arrivals are the increments of its instances' admission counters; a quiet pool tells the instances it does
 * not need to sleep (once each: one told to sleep that still reports ready is on its way), a burst wakes them, and a
 * wake it sent to an instance still reporting 'sleeping' reads as waking (not woken twice) until its bound, past which
 * (the wake lost) the instance is woken again while the load needs it.
 */
import { describe, expect, it } from 'vitest';
import { initialPoolStandby, poolStandbyStep, wakeBoundMs, type PoolStandbyConfig, type PoolStandbyState } from '../../src/policy/machines/pool-standby.ts';
import type { InstanceStatus } from '../../protocols/control.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { getModelSpec } from '../../src/model/catalog.ts';

const profile = loadProfile('profiles/llama2-70b.h100.json');
const cfg: PoolStandbyConfig = { profile, model: getModelSpec('llama2-70b'), headroom: 0.2, periodMs: 500 };

const status = (id: string, state: InstanceStatus['state'], admitted: number, seq: number): InstanceStatus => ({
  v: 1, id, pool: 'p', node: 'n0', tp: 8, gpuIds: [0, 1, 2, 3, 4, 5, 6, 7], state, startedMs: 0, seq, sentMs: 0, clockMhz: 1980, maxClockMhz: 1980,
  queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {}, admittedByType: { SS: admitted },
});

describe('pool standby step', () => {
  it('quiet: sleeps all but one, once; a burst of admissions wakes them; a wake sent reads as waking', () => {
    let s: PoolStandbyState = initialPoolStandby(0);
    const ids = ['a', 'b', 'c'];
    let seq = 0;
    const adm: Record<string, number> = { a: 0, b: 0, c: 0 };
    const states: Record<string, InstanceStatus['state']> = { a: 'ready', b: 'ready', c: 'ready' };
    const tick = (now: number) => {
      seq++;
      const r = poolStandbyStep(s, ids.map((id) => status(id, states[id]!, adm[id]!, seq)), now, cfg);
      s = r.state;
      // a sleep is reported from the instance's next status; a wake once its engine is up (later, below)
      for (const c of r.commands) if (c.op === 'sleep') states[c.instance] = 'sleeping';
      return r.commands;
    };
    // a minute of a trickle (1 request every 10 s, on a): past the 30-s dwell, two of three sleep
    let cmds: ReturnType<typeof tick> = [];
    for (let t = 0; t <= 60_000; t += 500) {
      if (t % 10_000 === 0) adm.a!++;
      cmds.push(...tick(t));
    }
    const sleeps = cmds.filter((c) => c.op === 'sleep');
    expect(sleeps.length).toBe(2);
    expect(new Set(sleeps.map((c) => c.instance)).size).toBe(2);
    expect(sleeps.every((c) => c.level === 1)).toBe(true);
    const slept = sleeps.map((c) => c.instance).sort();
    // asleep: no command repeats
    cmds = [];
    for (let t = 60_500; t <= 70_000; t += 500) cmds.push(...tick(t));
    expect(cmds).toEqual([]);
    // a burst: 400 admissions in 2 s (200 req/s, above three TP8s' SS capacity)
    cmds = [];
    for (let t = 70_500; t <= 72_000; t += 500) {
      adm.c! += 100;
      cmds.push(...tick(t));
    }
    expect(cmds.filter((c) => c.op === 'wake').map((c) => c.instance).sort()).toEqual(slept);
    // still 'sleeping' (waking): not woken again
    cmds = [];
    for (let t = 72_500; t <= 73_000; t += 500) {
      adm.c! += 100;
      cmds.push(...tick(t));
    }
    expect(cmds).toEqual([]);
  });

  it('a wake unanswered past its bound (lost, or failed on the engine) is sent again while the burst lasts', () => {
    let s: PoolStandbyState = initialPoolStandby(0);
    const ids = ['a', 'b', 'c'];
    const states: Record<string, InstanceStatus['state']> = { a: 'ready', b: 'ready', c: 'ready' };
    let seq = 0, admitted = 0;
    const tick = (now: number) => {
      seq++;
      const r = poolStandbyStep(s, ids.map((id) => status(id, states[id]!, id === 'a' ? admitted : 0, seq)), now, cfg);
      s = r.state;
      for (const c of r.commands) if (c.op === 'sleep') states[c.instance] = 'sleeping';
      return r.commands.map((c) => `${c.op} ${c.instance}`);
    };
    // quiet past the dwell: two of the three sleep
    for (let t = 0; t <= 60_000; t += 500) tick(t);
    const slept = ids.filter((id) => states[id] === 'sleeping').sort();
    expect(slept.length).toBe(2);
    // a burst on the awake one (200 req/s): both sleepers are woken at once, and neither wake is ever answered
    const woken: { t: number; cmd: string }[] = [];
    const bound = wakeBoundMs(cfg, 8, 1);
    for (let t = 60_500; t <= 61_000 + 2 * bound; t += 500) {
      admitted += 100;
      for (const cmd of tick(t)) woken.push({ t, cmd });
    }
    const first = woken[0]!.t;
    expect(woken.filter((w) => w.t === first).map((w) => w.cmd).sort()).toEqual(slept.map((id) => `wake ${id}`));
    // no repeat within the bound; each sent again once past it
    const again = woken.filter((w) => w.t > first);
    expect(again.length).toBeGreaterThanOrEqual(2);
    expect(again[0]!.t - first).toBeGreaterThan(bound);
    expect(again[0]!.t - first).toBeLessThanOrEqual(bound + cfg.periodMs);
    expect(again.filter((w) => w.t === again[0]!.t).map((w) => w.cmd).sort()).toEqual(slept.map((id) => `wake ${id}`));
    // answered (ready): awake, not woken again
    for (const id of slept) states[id] = 'ready';
    const after: string[] = [];
    for (let t = 62_000 + 2 * bound; t <= 62_000 + 3 * bound; t += 500) {
      admitted += 100;
      after.push(...tick(t).filter((c) => c.startsWith('wake')));
    }
    expect(after).toEqual([]);
  });

  it('40 MS req/s wakes what two TP2 8B instances lack: one sleeper at the 0.2 headroom (49.5 for two), two at 0.45 (34.0)', () => {
    // test/integration/control-sleep-standby.test.ts's pool: 4 TP2 Llama-3.1-8B instances, statuses every 250 ms; the
    // leader counts from 0, the instances are ready at 10 s, 3 sleep after the dwell, a burst begins at 165 s (a long
    // idle history: the walk of the rate is small) and its step runs 200 ms after the statuses (a filling bucket's
    // first read, 1.2 s into it, counts 1.25 s of arrivals: 4% over, where a step on the statuses' beat reads 25% over);
    // a wake is answered 1 s after it is sent
    const woken = (rate: number, headroom: number) => {
      const tp2: PoolStandbyConfig = { profile: loadProfile('profiles/llama3.1-8b.h100.json'), model: getModelSpec('llama3.1-8b'), headroom, periodMs: 250 };
      let s = initialPoolStandby(0);
      const ids = ['a', 'b', 'c', 'd'];
      const states: Record<string, InstanceStatus['state']> = { a: 'ready', b: 'ready', c: 'ready', d: 'ready' };
      const readyAt = new Map<string, number>();
      const wakes: string[] = [];
      let seq = 0;
      for (let t = 10_000; t <= 165_000 + 45_000; t += 250) {
        for (const [id, at] of readyAt) {
          if (t < at) continue;
          states[id] = 'ready';
          readyAt.delete(id);
        }
        const admitted = t >= 165_000 ? Math.floor(((t - 165_000) / 1000) * rate) : 0;
        seq++;
        const sts = ids.map((id) => ({ ...status(id, states[id]!, id === 'a' ? admitted : 0, seq), tp: 2 as const, gpuIds: [0, 1], admittedByType: { MS: id === 'a' ? admitted : 0 } }));
        const r = poolStandbyStep(s, sts, t + 200, tp2);
        s = r.state;
        for (const c of r.commands) {
          if (c.op === 'sleep') states[c.instance] = 'sleeping';
          else if (!readyAt.has(c.instance)) {
            readyAt.set(c.instance, t + 1000);
            wakes.push(c.instance);
          }
        }
      }
      return new Set(wakes).size;
    };
    expect(woken(40, 0.2)).toBe(1);
    expect(woken(40, 0.45)).toBeGreaterThanOrEqual(2);
  });

  it('an instance told to sleep that keeps reporting ready is not told again within the dwell', () => {
    let s = initialPoolStandby(0);
    const cmds: string[] = [];
    for (let t = 30_000, seq = 1; t <= 50_000; t += 500, seq++) {
      const r = poolStandbyStep(s, [status('a', 'ready', 0, seq), status('b', 'ready', 0, seq)], t, cfg);
      s = r.state;
      cmds.push(...r.commands.map((c) => `${c.op} ${c.instance}`));
    }
    // a is told at 30 s (dwell from its start); still ready after two periods it is awake again, and b is told; neither again within the 30-s dwell
    expect(cmds).toEqual(['sleep a', 'sleep b']);
  });

  it('an instance in another state (starting, draining) is not the standby\'s; an instance gone is forgotten', () => {
    const r = poolStandbyStep(initialPoolStandby(0), [status('a', 'starting', 0, 1), status('b', 'draining', 0, 1)], 60_000, cfg);
    expect(r.commands).toEqual([]);
    const r2 = poolStandbyStep(r.state, [], 61_000, cfg);
    expect(r2.state.seen.size).toBe(0);
  });
});
