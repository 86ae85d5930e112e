/**
 * The nvidia-smi backend against a fake `nvidia-smi` (test/fixtures/fake-nvml/nvidia-smi) put first on PATH:
 * the real spawn/parse path for lock (clamped), reset, reads, energy (counter and integrated fallback) and
 * error paths (permission, missing binary, bad index, deadline).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAKE_NVML_DIR } from '../fixtures/fake-nvml/build.ts';
import { createGpuControl, GpuLibraryError, GpuPermissionError, GpuRequestError, GpuTransportError, type GpuControl } from '../../src/gpu/index.ts';

let dir = '';
let logPath = '';
const PATH0 = process.env.PATH;
const open: GpuControl[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fake-smi-'));
  logPath = join(dir, 'smi.log');
});
afterEach(async () => {
  for (const c of open.splice(0)) await c.close().catch(() => {});
  for (const k of ['FAKE_SMI_LOG', 'FAKE_SMI_STATE', 'FAKE_SMI_NO_PERMISSION', 'FAKE_SMI_ENERGY', 'FAKE_SMI_HANG']) delete process.env[k];
  process.env.PATH = PATH0;
  rmSync(logPath, { force: true });
});

function usePath(): void {
  process.env.PATH = `${FAKE_NVML_DIR}:${PATH0}`;
  process.env.FAKE_SMI_LOG = logPath;
  process.env.FAKE_SMI_STATE = join(dir, 'state.json');
}
async function smi(gpuIds: number[], extra: Record<string, unknown> = {}): Promise<GpuControl> {
  const c = await createGpuControl({ backend: 'smi', gpuIds, ...extra });
  open.push(c);
  return c;
}
const calls = () => readFileSync(logPath, 'utf8').trim().split('\n');

describe('nvidia-smi backend against a fake nvidia-smi on PATH', () => {
  it('resets on start-up, clamps and applies locks, reads power and clocks', async () => {
    usePath();
    const c = await smi([0, 2]);
    expect(calls()).toContain('-i 0,2 -rgc');
    const sup = await c.supportedClocksMhz();
    expect([sup.length, sup[0], sup.at(-1)]).toEqual([119, 210, 1980]);
    expect(await c.lockClocks(1000, 1400)).toEqual({ minMhz: 1005, maxMhz: 1395 });
    expect(calls()).toContain('-i 0,2 -lgc 1005,1395');
    expect(await c.readClocksMhz()).toEqual([{ sm: 1395, mem: 2619 }, { sm: 1395, mem: 2619 }]);
    expect((await c.readPowerMw())[1]).toBe(Math.round((100 + 600 * (1395 / 1980) ** 2) * 100) * 10);
    await c.resetClocks();
    expect((await c.readClocksMhz())[0].sm).toBe(1980);
  });

  it('integrates power when nvidia-smi has no energy counter, and uses the counter when it has one', async () => {
    usePath();
    const c = await smi([1]);
    expect(await c.readEnergyMj()).toEqual([0]);
    await new Promise((r) => setTimeout(r, 300));
    const [e] = await c.readEnergyMj();
    // 700 W for >= 0.3 s (plus spawn time) by the trapezoid rule
    expect(e).toBeGreaterThan(700 * 300 * 0.95);
    expect(e).toBeLessThan(700 * 2000);
    await c.close();

    process.env.FAKE_SMI_ENERGY = '1';
    const d = await smi([1]);
    const [a] = await d.readEnergyMj();
    expect(a).toBeGreaterThan(1e11); // the fake's counter (0.5 mJ per ms since the epoch), not an integral from 0
  });

  it('maps failures to typed errors', async () => {
    usePath();
    process.env.FAKE_SMI_NO_PERMISSION = '1';
    const err = await createGpuControl({ backend: 'smi', gpuIds: [0] }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(GpuPermissionError);
    expect((err as GpuPermissionError).retryable).toBe(false);
    const ro = await smi([0], { resetOnStart: false });
    await expect(ro.lockClocks(900, 900)).rejects.toBeInstanceOf(GpuPermissionError);
    delete process.env.FAKE_SMI_NO_PERMISSION;

    await expect(createGpuControl({ backend: 'smi', gpuIds: [9] })).rejects.toBeInstanceOf(GpuRequestError);
    await expect(createGpuControl({ backend: 'smi', gpuIds: [0], smiPath: join(dir, 'no-such-smi') })).rejects.toBeInstanceOf(GpuLibraryError);
    process.env.FAKE_SMI_HANG = '1';
    const t = Date.now();
    const hang = await createGpuControl({ backend: 'smi', gpuIds: [0], timeoutMs: 400 }).then(() => null, (e: unknown) => e);
    expect(hang).toBeInstanceOf(GpuTransportError);
    expect((hang as GpuTransportError).retryable).toBe(true);
    expect(Date.now() - t).toBeLessThan(3000);
  });
});
