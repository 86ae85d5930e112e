/**
 * The simulated instance managers start as the live ones do: the GPU opens at its max clock and the machine knows it
 * before the instance admits anything, and (SimOptions.instanceEpochPhaseMs) the instances keep that clock until their
 * first clock epoch, which falls at the phase given, as a live instance's first epoch falls one epoch after its start.
 * The twin check runs the simulator at the live instances' phases: on its clock window the phase alone moves the
 * simulated energy by about 10% and the clock decisions by a third (docs/SIMULATION.md, twin check).
 */
import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import { InstanceBrain } from '../../src/sim/instance-brain.ts';
import { parseProfile } from '../../src/model/index.ts';
import type { InstanceMachineConfig } from '../../src/policy/machines/instance.ts';

const profile = parseProfile(JSON.parse(readFileSync('profiles/llama3.1-8b.h100.tp1.json', 'utf8')));
const MAX = profile.clocksMhz[profile.clocksMhz.length - 1]!;

/** the twin check's clock window (test/bench/twin.bench.ts: deploy/replay-ci.yaml, 2 TP1 instances), its first 12 s. */
const clockWindow = (phase?: number | number[]): SimOptions => ({
  policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1,
  profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1,
  knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
  instanceLimits: { maxInEngine: 96, maxQueued: 512 }, dispatch: 'policy', predictor: 'online',
  trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 12_000, speed: 1 },
  ...(phase !== undefined ? { instanceEpochPhaseMs: phase } : {}),
});

/** The simulated instances' clock changes: when, to what, why. */
async function clockEvents(o: SimOptions) {
  const out: { t: number; instance: string; from: number; to: number; summary: string; load?: unknown }[] = [];
  await simulate(o, undefined, {
    onInstanceStep: (instance, _cfg, _ev, t, fx) => {
      for (const e of fx) if (e.kind === 'event' && e.event === 'clock') out.push({ t, instance, from: e.decision.from as number, to: e.decision.clockMhz as number, summary: e.summary, load: e.inputs.loadByType });
    },
  });
  return out;
}

describe('simulator: the instances start as the live ones do', () => {
  it('an admission at the instant an instance is made finds the start-up max clock, and does not lower it', () => {
    const cfg: InstanceMachineConfig = { tp: 1, profile, epochMs: 5000, tickMs: 100, maxInEngine: 96, maxQueued: 512, timeScale: 1, deadAfterMs: 3000, moveQueueAbove: 16, rejectAfterMs: 5000, retryAfterS: 1 };
    const asked: { mhz: number; why: string }[] = [];
    const b = new InstanceBrain(cfg, { start: () => {}, fail: () => {}, setClock: (mhz, why) => asked.push({ mhz, why }), move: () => [], event: () => {} }, 0, profile.clocksMhz);
    expect(b.s.clockMhz).toBe(MAX);
    // the trace's first request, arriving as the simulation starts (an MS prompt of 374 tokens)
    b.step({ type: 'admit', req: { id: 'r1', type: 'MS', inputTokens: 374, arrivalMs: 0, ttftDeadlineMs: 400, ttftSloMs: 400, moves: 0 } }, 0);
    expect(b.s.clockMhz).toBe(MAX);
    // the prefill raise only raises: the prompt needs far less than the max clock, so no change is asked for
    expect(asked.filter((a) => a.mhz < MAX)).toEqual([]);
  });

  it('with a phase the instances hold the max clock until their first epoch there, then every epoch after it', async () => {
    const ev = await clockEvents(clockWindow(2500));
    const changes = ev.filter((e) => e.from !== 0);
    // nothing moves the clock before the first epoch: the start-up clock only
    expect(ev.filter((e) => e.t < 2500).map((e) => e.from)).toEqual([0, 0]);
    // both instances' first epoch lowers the max clock at the phase (the change applied 65 ms on)
    for (const i of ['pool-all-server-0-g0x1', 'pool-all-server-0-g1x1']) {
      const first = changes.find((e) => e.instance === i)!;
      expect(first.from).toBe(MAX);
      expect(first.t).toBeGreaterThanOrEqual(2500);
      expect(first.t).toBeLessThan(2500 + 100);
      expect(first.summary).toMatch(/least power/);
    }
    // the first epoch reads its arrivals over a whole epoch, as a live instance up before the trace does (its window
    // open since its previous epoch): the trace's first request (MS, at t = 0) is 0.2 req/s, not 1 in 2.5 s
    const firstLoads = changes.filter((e) => e.from === MAX).map((e) => e.load);
    expect(firstLoads).toContainEqual({ MS: 0.2 });
    // every epoch decision (not a rise within an epoch) falls on the phase's grid, 2.5 s + k x 5 s
    const epochs = changes.filter((e) => /least power|no clock meets/.test(e.summary) && !/rose within/.test(e.summary));
    expect(epochs.length).toBeGreaterThan(2);
    for (const e of epochs) expect((e.t - 2500) % 5000).toBeLessThan(100);

    // one phase per instance, in the order they are made: each its own grid
    const own = (await clockEvents(clockWindow([1500, 3500]))).filter((e) => e.from === MAX);
    expect(own.find((e) => e.instance === 'pool-all-server-0-g0x1')!.t - 1500).toBeLessThan(100);
    expect(own.find((e) => e.instance === 'pool-all-server-0-g1x1')!.t - 3500).toBeLessThan(100);
    expect(Math.min(...own.map((e) => e.t))).toBeGreaterThanOrEqual(1500);

    // without a phase: an epoch at t = 0, so the clocks leave the max at once
    const atZero = (await clockEvents(clockWindow())).filter((e) => e.from === MAX);
    expect(Math.min(...atZero.map((e) => e.t))).toBeLessThan(100);
  }, 60_000);

  it('an instance up longer than an epoch before the trace serves it at the clock its last epoch chose on no load', async () => {
    // the live instances of a twin run at 17:52 UTC had their first epochs 1.9 s and 0.2 s before the replay's start,
    // each lowering the start-up max clock to the least power at no load, and served the trace's first requests there
    const out: { t: number; instance: string; from: number; to: number }[] = [];
    const admittedAt: Record<string, number> = {};
    const r = await simulate({ ...clockWindow([2500, 2500]), instanceEpochBeforeTrace: [true, false] }, undefined, {
      onInstanceStep: (instance, _cfg, ev, t, fx) => {
        for (const e of fx) if (e.kind === 'event' && e.event === 'clock') out.push({ t, instance, from: e.decision.from as number, to: e.decision.clockMhz as number });
        if (ev.type === 'admit' && !(instance in admittedAt)) admittedAt[instance] = t;
      },
    });
    const MIN = profile.clocksMhz[0]!;
    // i0: started one epoch before its last epoch before the trace (at -2.5 s), which chose the least power at no load
    expect(out.filter((e) => e.instance === 'pool-all-server-0-g0x1' && e.t < 0).map((e) => [e.from, e.to])).toEqual([[0, MAX], [MAX, MIN]]);
    // at that clock from its first request (at 0) on, never at the
    // max clock, while i1 holds the start-up max clock until its first epoch, at 2.5 s
    expect(admittedAt['pool-all-server-0-g0x1']).toBe(0);
    expect(out.filter((e) => e.instance === 'pool-all-server-0-g0x1' && e.t >= 0 && e.from === MAX)).toEqual([]);
    const i1 = out.find((e) => e.instance === 'pool-all-server-0-g1x1' && e.t >= 0 && e.from !== 0)!;
    expect([i1.from, i1.to]).toEqual([MAX, MIN]);
    expect(i1.t).toBeGreaterThanOrEqual(2500);
    // the decisions before the trace are not the trace's: the run counts the changes within it
    expect(r.reconfigurations.clock).toBe(out.filter((e) => e.t >= 0 && e.from !== 0).length);
  }, 60_000);

  it('a phase is a time after the start, and needs the instance machines (step fidelity, not the oracle)', async () => {
    await expect(simulate({ ...clockWindow(), instanceEpochBeforeTrace: true })).rejects.toThrow(/instanceEpochBeforeTrace/);
    await expect(simulate(clockWindow(0))).rejects.toThrow(/instanceEpochPhaseMs/);
    await expect(simulate(clockWindow([1000, -1]))).rejects.toThrow(/instanceEpochPhaseMs/);
    await expect(simulate(clockWindow([1000, Number.NaN]))).rejects.toThrow(/instanceEpochPhaseMs/);
    await expect(simulate({ ...clockWindow(1000), fidelity: 'fluid', predictor: undefined })).rejects.toThrow(/instanceEpochPhaseMs/);
    await expect(simulate({ ...clockWindow(1000), policy: 'oracle' })).rejects.toThrow(/instanceEpochPhaseMs/);
  });
});
