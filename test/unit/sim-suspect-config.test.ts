/**
 * The simulator's pool machines suspect a silent instance as the live pool leaders do (policy suspect.ts): after the
 * config's liveness.suspectAfterMs where SimOptions gives it (`dynamollm simulate --config` passes it), else after
 * SUSPECT_INTERVALS of the instances' status interval.
 */
import { describe, expect, it } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { Simulation } from '../../src/sim/engine.ts';
import { perfModelOfProfile } from '../../src/model/index.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import type { TraceRecord } from '../../src/sim/trace.ts';

const profile = profileFor('llama2-70b', 'h100');

/** The simulation, keeping the configuration of each pool machine it makes. */
class Probe extends Simulation {
  made: PoolMachineConfig[] = [];
  protected override poolMachineConfig(pool: Parameters<Simulation['poolMachineConfig']>[0]): PoolMachineConfig {
    const c = super.poolMachineConfig(pool);
    this.made.push(c);
    return c;
  }
}

/** The suspicions of the pool machines a 20-s step run with `o` makes. */
async function suspicions(o: Partial<SimOptions>): Promise<(number | undefined)[]> {
  const recs: TraceRecord[] = [];
  for (let t = 0; t < 20_000; t += 500) recs.push({ tMs: t + 7, inputTokens: 120, outputTokens: 60 });
  const sim = new Probe({
    opts: { policy: 'dynamollm', fidelity: 'step', model: 'llama2-70b', gpu: 'h100', servers: 1, rateScale: 1, predictorAccuracy: 1, trace: { kind: 'file', path: '-' }, ...o },
    profile, perf: perfModelOfProfile(profile), records: () => recs, carbonAt: () => 0,
  });
  await sim.run();
  return [...new Set(sim.made.map((c) => c.suspectAfterMs))];
}

describe("the simulator's pool machines: the suspicion of a silent instance", () => {
  it("is SimOptions.suspectAfterMs (the config's liveness.suspectAfterMs) where given, else 3 status intervals", async () => {
    expect(await suspicions({ instanceStatusIntervalMs: 250, suspectAfterMs: 1200 })).toEqual([1200]);
    expect(await suspicions({ instanceStatusIntervalMs: 250 })).toEqual([750]);
    expect(await suspicions({ instanceStatusIntervalMs: 400 })).toEqual([1200]);
    await expect(suspicions({ suspectAfterMs: 0 })).rejects.toThrow(/suspectAfterMs must be a finite number > 0 ms, got 0/);
  });
});
