/**
 * The instance's GPU readings (actors/instance-manager/gpu-reads.ts) over a GPU whose reads fail for a while (as an
 * emulated GPU's do while its engine restarts): a failed read keeps the last figures and says how old they are, is
 * counted, logged at warn once when the reads start failing and at info when they read again; the energy since the
 * last good reading counts on the next one.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { GpuReads } from '../../actors/instance-manager/gpu-reads.ts';
import type { GpuControl } from '../../src/gpu/index.ts';
import { GpuTransportError } from '../../src/gpu/errors.ts';

/** Two GPUs whose power and energy the test sets, and whose reads fail while `down`. */
function gpu() {
  const g = { powerMw: [100_000, 150_000], energyMj: [5_000, 5_000], down: false };
  const read = async (v: () => number[]) => {
    if (g.down) throw new GpuTransportError('emulator GET http://127.0.0.1:1/admin/gpu: connect ECONNREFUSED');
    return v();
  };
  const ctl: GpuControl = {
    kind: 'emulated', gpuIds: [0, 1],
    supportedClocksMhz: async () => [1980], lockClocks: async () => ({ minMhz: 1980, maxMhz: 1980 }), resetClocks: async () => {},
    readPowerMw: () => read(() => [...g.powerMw]), readEnergyMj: () => read(() => [...g.energyMj]),
    readClocksMhz: async () => [{ sm: 1980, mem: 0 }, { sm: 1980, mem: 0 }], close: async () => {},
  };
  return { g, ctl };
}

describe('GpuReads', () => {
  it('a failed read keeps the last figures, marked with their age, counted and logged once; the next good one counts the energy since', async () => {
    const lines: { level: number; msg: string }[] = [];
    const log = pino({ level: 'debug' }, new Writable({
      write(c: Buffer, _e, cb) {
        lines.push(JSON.parse(c.toString()) as { level: number; msg: string });
        cb();
      },
    }));
    let now = 1_000;
    const { g, ctl } = gpu();
    const r = new GpuReads(log, () => now);
    r.origin(await ctl.readEnergyMj());
    now = 2_000;
    g.energyMj = [6_000, 6_000];
    expect(await r.read(ctl)).toEqual({ deltaJ: 2 });
    expect([r.powerW, r.energyJ, r.failures]).toEqual([250, 2, 0]);
    g.down = true;
    for (const t of [3_000, 4_000, 5_000]) {
      now = t;
      expect(await r.read(ctl)).toEqual({ deltaJ: 0, staleMs: t - 2_000 });
      expect([r.powerW, r.energyJ]).toEqual([250, 2]);
    }
    expect(r.failures).toBe(3);
    g.down = false;
    g.powerMw = [300_000, 300_000];
    g.energyMj = [9_000, 9_000];
    now = 6_000;
    expect(await r.read(ctl)).toEqual({ deltaJ: 6 });
    expect([r.powerW, r.energyJ, r.failures]).toEqual([600, 8, 3]);
    const said = lines.filter((l) => l.msg.startsWith('gpu read'));
    expect(said.map((l) => [l.level, l.msg])).toEqual([
      [40, 'gpu read failed: telemetry reports the last reading, marked stale'],
      [20, 'gpu read failed'],
      [20, 'gpu read failed'],
      [30, 'gpu read again'],
    ]);
    expect(said.at(-1)).toMatchObject({ failed: 3, staleMs: 4_000 });
  });

  it('a GPU counter below its last reading restarted: its reading counts as the energy since, and the instance energy never decreases', async () => {
    const { g, ctl } = gpu();
    const r = new GpuReads(pino({ level: 'silent' }), () => 0);
    r.origin(await ctl.readEnergyMj());
    g.energyMj = [6_000, 6_000];
    expect(await r.read(ctl)).toEqual({ deltaJ: 2 });
    // GPU 1's counter starts again from 0 (a driver reload): 0.5 J since, GPU 0's 1 J since the last reading
    g.energyMj = [7_000, 500];
    expect(await r.read(ctl)).toEqual({ deltaJ: 1.5 });
    expect(r.energyJ).toBe(3.5);
    g.energyMj = [7_000, 1_500];
    expect(await r.read(ctl)).toEqual({ deltaJ: 1 });
    expect(r.energyJ).toBe(4.5);
  });
});
