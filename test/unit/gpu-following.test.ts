/**
 * The emulated GPUs of a restarting engine (src/gpu/following.ts): after the engine restarted on another port, the
 * control opens the new process's GPUs, locks the clocks last locked again, and its energy counter goes on from
 * where the old process's stopped; while the engine restarts (no URL) it stays where it is.
 */
import { describe, expect, it } from 'vitest';
import { FollowingGpuControl } from '../../src/gpu/following.ts';
import type { GpuControl } from '../../src/gpu/types.ts';

/** A process's emulated GPUs: energy counts from 0, calls fail once the process is gone. */
function fakeGpu(url: string, log: string[]): GpuControl & { energy: number[]; gone: boolean } {
  const g = {
    kind: 'emulated' as const, gpuIds: [0, 1], energy: [0, 0], gone: false,
    check() {
      if (g.gone) throw new Error(`${url}: connect ECONNREFUSED`);
    },
    async supportedClocksMhz() { g.check(); return [795, 1980]; },
    async lockClocks(min: number, max: number) { g.check(); log.push(`${url} lock ${min}-${max}`); return { minMhz: min, maxMhz: max }; },
    async resetClocks() { g.check(); log.push(`${url} reset`); },
    async readPowerMw() { g.check(); return [100_000, 100_000]; },
    async readEnergyMj() { g.check(); return [...g.energy]; },
    async readClocksMhz() { g.check(); return [{ sm: 1980, mem: 2619 }, { sm: 1980, mem: 2619 }]; },
    async close() { log.push(`${url} close`); },
  };
  return g;
}

describe('a GPU control that follows its restarting engine', () => {
  it('opens the new process, locks the clock again, and keeps the energy counter rising', async () => {
    const log: string[] = [];
    const gpus = new Map<string, ReturnType<typeof fakeGpu>>();
    let engineUrl: string | undefined = 'http://127.0.0.1:40001';
    const g = await FollowingGpuControl.create(engineUrl, () => engineUrl, async (u) => {
      const x = fakeGpu(u, log);
      gpus.set(u, x);
      return x;
    });
    await g.lockClocks(795, 795);
    gpus.get('http://127.0.0.1:40001')!.energy = [5000, 7000];
    expect(await g.readEnergyMj()).toEqual([5000, 7000]);

    // the engine dies: its GPUs with it; while it restarts there is no URL to follow yet
    gpus.get('http://127.0.0.1:40001')!.gone = true;
    engineUrl = undefined;
    await expect(g.readPowerMw()).rejects.toThrow(/ECONNREFUSED/);

    // back on another port: the next call goes there, with the clock locked again and the energy carried over
    engineUrl = 'http://127.0.0.1:40002';
    gpus.set('http://127.0.0.1:40002', fakeGpu('http://127.0.0.1:40002', log));
    expect(await g.readPowerMw()).toEqual([100_000, 100_000]);
    expect(log).toEqual(['http://127.0.0.1:40001 lock 795-795', 'http://127.0.0.1:40001 close', 'http://127.0.0.1:40002 lock 795-795']);
    gpus.get('http://127.0.0.1:40002')!.energy = [300, 400];
    expect(await g.readEnergyMj()).toEqual([5300, 7400]);
    await g.lockClocks(1980, 1980);
    expect(log.at(-1)).toBe('http://127.0.0.1:40002 lock 1980-1980');
  });
});
