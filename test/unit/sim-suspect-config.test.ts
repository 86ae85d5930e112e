/**
 * The simulator's pool machines suspect a silent instance as the live pool leaders do (policy suspect.ts): after the
 * config's liveness.suspectAfterMs where SimOptions gives it (`dynamollm simulate --config` passes it), else after
 * SUSPECT_INTERVALS of the instances' status interval. They, and the instance machines, call a silent instance dead
 * after the config's liveness.deadAfterMs where SimOptions gives it, else the live default (3000 ms).
 */
import { describe, expect, it } from 'vitest';
import { profileFor } from '../../src/sim/index.ts';
import { Simulation } from '../../src/sim/engine.ts';
import { perfModelOfProfile } from '../../src/model/index.ts';
import type { PoolMachineConfig } from '../../src/policy/machines/pool.ts';
import type { InstanceMachineConfig } from '../../src/policy/machines/instance-types.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import type { TraceRecord } from '../../src/sim/trace.ts';

const profile = profileFor('llama2-70b', 'h100');

/** The simulation, keeping the configuration of each pool machine and instance machine it makes. */
class Probe extends Simulation {
  made: PoolMachineConfig[] = [];
  brains: InstanceMachineConfig[] = [];
  protected override poolMachineConfig(pool: Parameters<Simulation['poolMachineConfig']>[0]): PoolMachineConfig {
    const c = super.poolMachineConfig(pool);
    this.made.push(c);
    return c;
  }
  protected override newBrain(...a: Parameters<Simulation['newBrain']>): ReturnType<Simulation['newBrain']> {
    const b = super.newBrain(...a);
    this.brains.push(b.config);
    return b;
  }
}

/** The machines' configurations a 20-s step run with `o` makes. */
async function machines(o: Partial<SimOptions>): Promise<Probe> {
  const recs: TraceRecord[] = [];
  for (let t = 0; t < 20_000; t += 500) recs.push({ tMs: t + 7, inputTokens: 120, outputTokens: 60 });
  const sim = new Probe({
    opts: { policy: 'dynamollm', fidelity: 'step', model: 'llama2-70b', gpu: 'h100', servers: 1, rateScale: 1, predictorAccuracy: 1, trace: { kind: 'file', path: '-' }, ...o },
    profile, perf: perfModelOfProfile(profile), records: () => recs, carbonAt: () => 0,
  });
  await sim.run();
  return sim;
}

/** The suspicions of the pool machines a 20-s step run with `o` makes. */
async function suspicions(o: Partial<SimOptions>): Promise<(number | undefined)[]> {
  return [...new Set((await machines(o)).made.map((c) => c.suspectAfterMs))];
}

/** The death verdicts of the pool machines and of the instance machines a 20-s step run with `o` makes. */
async function deaths(o: Partial<SimOptions>): Promise<{ pools: number[]; instances: number[] }> {
  const sim = await machines(o);
  return { pools: [...new Set(sim.made.map((c) => c.deadAfterMs))], instances: [...new Set(sim.brains.map((c) => c.deadAfterMs))] };
}

describe("the simulator's pool machines: the suspicion of a silent instance", () => {
  it("is SimOptions.suspectAfterMs (the config's liveness.suspectAfterMs) where given, else 3 status intervals", async () => {
    expect(await suspicions({ instanceStatusIntervalMs: 250, suspectAfterMs: 1200 })).toEqual([1200]);
    expect(await suspicions({ instanceStatusIntervalMs: 250 })).toEqual([750]);
    expect(await suspicions({ instanceStatusIntervalMs: 400 })).toEqual([1200]);
    await expect(suspicions({ suspectAfterMs: 0 })).rejects.toThrow(/suspectAfterMs must be a finite number > 0 ms, got 0/);
  });
});

describe("the simulator's pool and instance machines: the death of a silent instance", () => {
  it("is SimOptions.deadAfterMs (the config's liveness.deadAfterMs) where given, else the live default, 3000 ms", async () => {
    expect(await deaths({ deadAfterMs: 4500 })).toEqual({ pools: [4500], instances: [4500] });
    expect(await deaths({})).toEqual({ pools: [3000], instances: [3000] });
    await expect(deaths({ deadAfterMs: Number.NaN })).rejects.toThrow(/deadAfterMs must be a finite number > 0 ms, got NaN/);
  });
});
