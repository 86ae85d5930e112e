/**
 * simulate's `unusedServers`: servers that hold no pool's grant and no instance draw unloaded idle power
 * ('powered', the default) or nothing ('off', the paper's servers in use, each power-on charged a boot).
 */
import { describe, it, expect } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';

// a quiet night on 10 servers: the cluster plan grants a few, the others hold nothing
const base = (policy: SimOptions['policy'], unusedServers?: 'powered' | 'off'): SimOptions => ({
  model: 'llama2-70b', gpu: 'h100', servers: 10, policy, fidelity: 'fluid', ...(unusedServers ? { unusedServers } : {}),
  trace: { kind: 'synth', shape: 'poisson', durationS: 2 * 3600, meanRps: 1, seed: 2 },
});

describe('simulate: servers that hold nothing', () => {
  it('powered by default; off, they draw nothing and only the servers holding grants or instances are charged', async () => {
    const [on, dflt, off] = await Promise.all([simulate(base('dynamollm', 'powered')), simulate(base('dynamollm')), simulate(base('dynamollm', 'off'))]);
    expect(dflt.energyKWh).toBeCloseTo(on.energyKWh, 9);
    // the same decisions: only the energy of GPUs in no instance differs
    expect(off.gpuHours).toBeCloseTo(on.gpuHours, 9);
    expect(off.energyBreakdown!.instanceBusyKWh).toBeCloseTo(on.energyBreakdown!.instanceBusyKWh, 9);
    const idleGpuKWh = (gpus: number) => (gpus * 2 * 550) / 8 / 1000; // 8 idle H100s draw 550 W
    // powered: every GPU outside an instance draws idle power
    expect(on.energyBreakdown!.unallocatedKWh).toBeCloseTo(idleGpuKWh(80) - (on.gpuHours * 550) / 8 / 1000, 1);
    // off: less than the GPUs of the servers the run used at its most, and well below powered
    expect(off.energyBreakdown!.unallocatedKWh).toBeLessThan(on.energyBreakdown!.unallocatedKWh / 2);
    expect(off.energyKWh).toBeLessThan(on.energyKWh - on.energyBreakdown!.unallocatedKWh / 2);
    // single-pool holds every server: nothing is off
    const [sOn, sOff] = await Promise.all([simulate(base('single-pool', 'powered')), simulate(base('single-pool', 'off'))]);
    expect(sOff.energyKWh).toBeCloseTo(sOn.energyKWh, 9);
  }, 120_000);
});
