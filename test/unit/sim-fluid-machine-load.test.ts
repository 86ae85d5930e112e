/**
 * Fluid fidelity keeps each instance's load estimate by the instance machine's own rule: the load the simulated cluster
 * observes of a fluid instance is the one the instance machine (src/policy/machines/instance.ts) reports for the same
 * arrivals. One TP8 instance (single-pool, one 8-GPU server), its share of its pool's arrivals all of them.
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { Simulation } from '../../src/sim/engine.ts';
import { perfModelOfProfile } from '../../src/model/index.ts';
import { initialInstanceState, instanceStep, currentLoad, type InstanceMachineConfig, type InstanceMachineState } from '../../src/policy/machines/instance.ts';
import type { LoadByType } from '../../src/policy/types.ts';
import type { TraceRecord } from '../../src/sim/trace.ts';

const profile = profileFor('llama2-70b', 'h100');
const EPOCH_MS = 5000;

/** The simulation, recording the load its cluster observes right after each instance epoch. */
class Probe extends Simulation {
  seen: { now: number; load: LoadByType }[] = [];
  protected override instanceEpoch(now: number): void {
    super.instanceEpoch(now);
    this.seen.push({ now, load: this.observedLoad(now) });
  }
}

/** SS requests (short prompt, short output): 2 req/s for 20 s, 6 req/s for 20 s, none for 20 s, 1 req/s for 20 s. */
function arrivals(): TraceRecord[] {
  const out: TraceRecord[] = [];
  const phase = (fromMs: number, perS: number) => {
    for (let t = fromMs; t < fromMs + 20_000; t += 1000 / perS) out.push({ tMs: Math.round(t) + 7, inputTokens: 120, outputTokens: 60 });
  };
  phase(0, 2);
  phase(20_000, 6);
  phase(60_000, 1);
  return out;
}

describe('fluid: an instance load estimate is its instance machine\'s', () => {
  it('the cluster observes, after each instance epoch, what the machine reports for the same arrivals', async () => {
    const recs = arrivals();
    const sim = new Probe({
      opts: { policy: 'single-pool', fidelity: 'fluid', model: 'llama2-70b', gpu: 'h100', servers: 1, rateScale: 1, predictorAccuracy: 1, trace: { kind: 'file', path: '-' }, epochs: { instanceS: EPOCH_MS / 1000 } },
      profile, perf: perfModelOfProfile(profile), records: () => recs, carbonAt: () => 0,
    });
    await sim.run();
    // the instance machine on the same arrivals (each admitted at its arrival) and the same epochs
    const cfg: InstanceMachineConfig = { tp: 8, headroom: 0.2, epochMs: EPOCH_MS, tickMs: 100, maxInEngine: 1 << 20, maxQueued: 1 << 20, timeScale: 1, deadAfterMs: 3000, moveQueueAbove: 1 << 20, rejectAfterMs: 1e9, retryAfterS: 1 };
    let s: InstanceMachineState = initialInstanceState(0);
    const step = (ev: Parameters<typeof instanceStep>[1], now: number) => (s = instanceStep(s, ev, now, cfg).state);
    step({ type: 'start' }, 0);
    step({ type: 'lifecycle', state: 'ready', why: 'engine ready' }, 0);
    let k = 0;
    const expected: { now: number; load: LoadByType }[] = [];
    for (const { now } of sim.seen) {
      for (; k < recs.length && recs[k]!.tMs < now; k++) {
        const r = recs[k]!;
        step({ type: 'admit', req: { id: `r${k}`, type: 'SS', inputTokens: r.inputTokens, arrivalMs: r.tMs, ttftDeadlineMs: r.tMs + 250, ttftSloMs: 250, moves: 0 } }, r.tMs);
      }
      if (now > 0) step({ type: 'epoch' }, now);
      expected.push({ now, load: currentLoad(s, now, cfg) });
    }
    expect(sim.seen.length).toBeGreaterThan(15); // an epoch every 5 s over the 80-s trace
    // the rise, the plateau and the fall all read as the machine reads them
    expect(expected.some((e) => (e.load.SS ?? 0) > 5)).toBe(true);
    expect(expected.some((e) => e.now > 45_000 && e.now < 60_000 && (e.load.SS ?? 0) < 1)).toBe(true);
    for (const [i, e] of expected.entries()) {
      const got = sim.seen[i]!;
      expect(got.now).toBe(e.now);
      expect(Object.keys(got.load).sort()).toEqual(Object.keys(e.load).sort());
      for (const [t, v] of Object.entries(e.load)) expect(got.load[t as keyof LoadByType]).toBeCloseTo(v, 9);
    }
  });
});
