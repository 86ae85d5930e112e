/**
 * The instance machine prices its clock at the prompt work its prefix cache leaves (src/policy/machines/instance.ts):
 * the engine's prefix-cache counters (event prefix_cache: vLLM's prefix_cache_queries / _hits, which the live
 * instance manager scrapes and the simulator reads from its core) scale the load the epoch's and the load rise's
 * clock read to the uncached share (uncachedLoad).
 */
import { describe, it, expect } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { chooseClock } from '../../src/policy/frequency.ts';
import { initialInstanceState, instanceStep, uncachedLoad, type InstanceEffect, type InstanceEvent, type InstanceMachineConfig, type InstanceMachineState, type MachineRequest } from '../../src/policy/machines/instance.ts';

const profile = profileFor('llama2-70b', 'h100');
const CLOCKS = profile.clocksMhz;
const MAX = CLOCKS[CLOCKS.length - 1]!;
const T0 = 1_700_000_000_000;
const cfg: InstanceMachineConfig = {
  tp: 4, profile, headroom: 0, epochMs: 5000, tickMs: 100, maxInEngine: 64, maxQueued: 64, timeScale: 1, deadAfterMs: 3000,
  moveQueueAbove: 4, rejectAfterMs: 10_000, retryAfterS: 1, maxMovePerStep: 16,
};
let n = 0;
const req = (atMs: number, o: Partial<MachineRequest> = {}): MachineRequest => ({ id: `q${++n}`, type: 'LM', inputTokens: 6000, arrivalMs: T0 + atMs, ttftDeadlineMs: T0 + atMs + 2000, ttftSloMs: 2000, moves: 0, ...o });

class Drive {
  s: InstanceMachineState = initialInstanceState(T0);
  at(ms: number, ev: InstanceEvent): InstanceEffect[] {
    const r = instanceStep(this.s, ev, T0 + ms, cfg);
    this.s = r.state;
    return r.effects;
  }
  ready(clockMhz = MAX): this {
    this.at(0, { type: 'start' });
    this.at(0, { type: 'gpu_ready', supportedMhz: [...CLOCKS].reverse() });
    this.at(0, { type: 'clock_applied', requestedMhz: MAX, appliedMhz: clockMhz, why: 'start-up', inputs: {} });
    this.at(0, { type: 'lifecycle', state: 'ready', why: 'engine healthy' });
    return this;
  }
}
const clocks = (fx: InstanceEffect[]) => fx.flatMap((e) => (e.kind === 'set_clock' ? [e.clockMhz] : []));

describe('clock priced at the uncached prompt work', () => {
  it('scales the load to the uncached share of the admitted prompt tokens; without cache counts the load stands', () => {
    expect(uncachedLoad({ promptTokens: 1000, cachedTokens: 600 }, { LM: 2, LS: 1 })).toEqual({ LM: 0.8, LS: 0.4 });
    const load = { LM: 2 };
    expect(uncachedLoad({}, load)).toBe(load);
    expect(uncachedLoad({ promptTokens: 1000, cachedTokens: 0 }, load)).toBe(load);
  });

  it("the epoch's clock for 60%-cached prompts is the clock of 40% of the load, below the uncached one", () => {
    const run = (cached: number | undefined): number[] => {
      const d = new Drive().ready();
      for (let i = 0; i < 2; i++) {
        const r = req(i * 2500);
        d.at(i * 2500, { type: 'admit', req: r });
        if (cached !== undefined) d.at(i * 2500 + 1, { type: 'prefix_cache', lookup: 6000 * (i + 1), hit: cached * (i + 1) });
        d.at(i * 2500 + 1, { type: 'first_token', id: r.id });
        d.at(i * 2500 + 2, { type: 'finished', id: r.id, ok: true });
      }
      return clocks(d.at(5000, { type: 'epoch' }));
    };
    const plain = run(undefined), cached = run(3600);
    expect(plain).toEqual([chooseClock({ profile, tp: 4, loadByType: { LM: 0.4 }, headroom: 0 }).clockMhz]);
    expect(cached).toEqual([chooseClock({ profile, tp: 4, loadByType: { LM: 0.4 * 0.4 }, headroom: 0 }).clockMhz]);
    expect(cached[0]!).toBeLessThan(plain[0]!);
    // no hit counts as no reuse: the clock of the whole load
    expect(run(0)).toEqual(plain);
  });
});
