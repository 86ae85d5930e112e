/**
 * The simulator runs the live managers' machines: every decision of a simulated instance is a transition of
 * the instance machine (src/policy/machines/instance.ts, what actors/instance-manager steps), and the
 * simulator performs what the machine asked for. A run's recorded events, replayed through instanceStep
 * alone, give the very effects the simulator got; the requests the machines started are the ones served.
 */
import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import { initialInstanceState, instanceStep, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig } from '../../src/policy/machines/instance.ts';

interface Step { ev: InstanceEvent; now: number; effects: InstanceEffect[] }

describe('simulator: the instance machines decide', () => {
  it('replaying each simulated instance\'s events through instanceStep gives the same effects; started requests are the served ones', async () => {
    const log = new Map<string, { cfg: InstanceMachineConfig; steps: Step[] }>();
    const r = await simulate({
      model: 'llama2-70b', gpu: 'h100', servers: 4, policy: 'dynamollm', fidelity: 'step', rateScale: 2,
      trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 4 * 60_000 },
    }, undefined, {
      onInstanceStep: (id, cfg, ev, now, effects) => {
        let e = log.get(id);
        if (!e) log.set(id, (e = { cfg, steps: [] }));
        e.steps.push({ ev: structuredClone(ev), now, effects: structuredClone(effects) });
      },
    });
    expect(log.size).toBeGreaterThan(1);
    let starts = 0, finished = 0, clocks = 0, ticks = 0;
    for (const { cfg, steps } of log.values()) {
      // a fresh machine on the recorded events: the same effects, step by step
      let s = initialInstanceState(steps[0]!.now);
      for (const st of steps) {
        const out = instanceStep(s, st.ev, st.now, cfg);
        expect(out.effects).toEqual(st.effects);
        s = out.state;
      }
      const started = new Set(steps.flatMap((st) => st.effects.flatMap((e) => (e.kind === 'start' ? [e.id] : []))));
      const done = steps.flatMap((st) => (st.ev.type === 'finished' && st.ev.ok ? [st.ev.id] : []));
      // the engine finished only what its machine started
      for (const id of done) expect(started.has(id)).toBe(true);
      starts += started.size;
      finished += done.length;
      clocks += steps.filter((st) => st.ev.type === 'clock_applied').length;
      ticks += steps.filter((st) => st.ev.type === 'tick').length;
    }
    const served = Object.values(r.latency.byType).reduce((n, x) => n + (x?.requests ?? 0), 0);
    expect(finished).toBe(served);
    expect(starts).toBeGreaterThanOrEqual(served);
    // the clock moved (dynamollm) and every change was answered to its machine
    expect(r.reconfigurations.clock).toBeGreaterThan(0);
    expect(clocks).toBeGreaterThanOrEqual(r.reconfigurations.clock);
    expect(ticks).toBeGreaterThan(0);
  }, 120_000);
});
