/**
 * The NVML backend for real, through koffi, against a fake libnvidia-ml.so.1 compiled from
 * test/fixtures/fake-nvml/fake_nvml.c: lock (clamped), reset, reads, error paths and the start-up reset that
 * undoes a crashed manager's lock.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildFakeNvml } from '../fixtures/fake-nvml/build.ts';
import { createGpuControl, GpuLibraryError, GpuPermissionError, GpuReadOnlyError, GpuRequestError, type GpuControl } from '../../src/gpu/index.ts';

let dir = '';
let libPath = '';
let logPath = '';
const open: GpuControl[] = [];
const KNOBS = ['FAKE_NVML_LOG', 'FAKE_NVML_STATE', 'FAKE_NVML_NO_PERMISSION', 'FAKE_NVML_INIT_FAIL', 'FAKE_NVML_DEVICE_COUNT'];

beforeAll(() => {
  ({ dir, libPath } = buildFakeNvml());
  logPath = join(dir, 'calls.log');
});

afterEach(async () => {
  for (const c of open.splice(0)) await c.close().catch(() => {});
  for (const k of KNOBS) delete process.env[k];
  rmSync(logPath, { force: true });
});

async function nvml(gpuIds: number[], extra: Record<string, unknown> = {}): Promise<GpuControl> {
  const c = await createGpuControl({ backend: 'nvml', gpuIds, libPath, ...extra });
  open.push(c);
  return c;
}
const calls = () => readFileSync(logPath, 'utf8').trim().split('\n');

describe('NVML backend (koffi) against a fake libnvidia-ml', () => {
  it('resets locked clocks on start-up and reads supported clocks, power, energy and clocks', async () => {
    process.env.FAKE_NVML_LOG = logPath;
    const c = await nvml([0, 3]);
    expect(c.kind).toBe('nvml');
    expect(calls()).toEqual(expect.arrayContaining(['nvmlInit_v2', 'nvmlDeviceGetHandleByIndex_v2 3', 'nvmlDeviceResetGpuLockedClocks 0', 'nvmlDeviceResetGpuLockedClocks 3']));
    const sup = await c.supportedClocksMhz();
    expect(sup.length).toBe(119);
    expect(sup[0]).toBe(210);
    expect(sup.at(-1)).toBe(1980);
    expect([...sup].sort((a, b) => a - b)).toEqual(sup);
    // the two-call list protocol: size query first, then the fetch with the returned size
    expect(calls().filter((l) => l.startsWith('nvmlDeviceGetSupportedGraphicsClocks'))).toEqual(['nvmlDeviceGetSupportedGraphicsClocks 2619 0', 'nvmlDeviceGetSupportedGraphicsClocks 2619 119']);
    expect(await c.readPowerMw()).toEqual([700000, 700000]);
    expect(await c.readClocksMhz()).toEqual([{ sm: 1980, mem: 2619 }, { sm: 1980, mem: 2619 }]);
    const e0 = await c.readEnergyMj();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 250));
    const e1 = await c.readEnergyMj();
    const dt = (Date.now() - t0) / 1000;
    expect(e1[1] - e0[1]).toBeGreaterThan(700000 * dt * 0.8);
    expect(e1[1] - e0[1]).toBeLessThan(700000 * dt * 1.3);
    expect(e0[1] - e0[0]).toBeGreaterThan(900000); // per GPU, not one value copied
  });

  it('locks clocks clamped to supported values, lowers power, and resets', async () => {
    process.env.FAKE_NVML_LOG = logPath;
    const c = await nvml([0, 1]);
    expect(await c.lockClocks(1000, 1400)).toEqual({ minMhz: 1005, maxMhz: 1395 });
    expect(calls()).toEqual(expect.arrayContaining(['nvmlDeviceSetGpuLockedClocks 0 1005 1395', 'nvmlDeviceSetGpuLockedClocks 1 1005 1395']));
    expect((await c.readClocksMhz()).map((x) => x.sm)).toEqual([1395, 1395]);
    const p = await c.readPowerMw();
    expect(p[0]).toBeLessThan(700000);
    expect(p[0]).toBe(Math.floor(100000 + 600000 * (1395 / 1980) ** 2));
    expect(await c.lockClocks(0, 99999)).toEqual({ minMhz: 210, maxMhz: 1980 });
    await c.lockClocks(800, 800);
    await c.resetClocks();
    expect((await c.readClocksMhz()).map((x) => x.sm)).toEqual([1980, 1980]);
    expect(calls().filter((l) => l === 'nvmlDeviceResetGpuLockedClocks 1').length).toBe(2); // start-up + explicit
    await expect(c.lockClocks(1500, 900)).rejects.toBeInstanceOf(GpuRequestError);
  });

  it('close() resets the clocks it locked; read-only never touches them', async () => {
    process.env.FAKE_NVML_LOG = logPath;
    const c = await createGpuControl({ backend: 'nvml', gpuIds: [2], libPath });
    await c.lockClocks(900, 900);
    await c.close();
    await c.close(); // idempotent
    expect(calls().at(-2)).toBe('nvmlDeviceResetGpuLockedClocks 2');
    expect(calls().at(-1)).toBe('nvmlShutdown');
    await expect(c.readPowerMw()).rejects.toBeInstanceOf(GpuRequestError);

    rmSync(logPath);
    const ro = await nvml([2], { readOnly: true });
    await expect(ro.lockClocks(900, 900)).rejects.toBeInstanceOf(GpuReadOnlyError);
    await expect(ro.resetClocks()).rejects.toBeInstanceOf(GpuReadOnlyError);
    await ro.readPowerMw();
    await ro.close();
    expect(calls().some((l) => l.includes('Locked'))).toBe(false);
  });

  it('a permission error is a typed, non-retryable GpuPermissionError naming the privilege', async () => {
    process.env.FAKE_NVML_NO_PERMISSION = '1';
    await expect(createGpuControl({ backend: 'nvml', gpuIds: [0], libPath })).rejects.toBeInstanceOf(GpuPermissionError);
    const c = await nvml([0], { resetOnStart: false });
    expect(await c.readPowerMw()).toEqual([700000]); // reads still work unprivileged
    const err = await c.lockClocks(1200, 1200).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(GpuPermissionError);
    expect((err as GpuPermissionError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/CAP_SYS_ADMIN|root/);
    expect(((err as Error).cause as Error).message).toContain('Insufficient Permissions');
  });

  it('bad index, init failure and a missing library are clear typed errors', async () => {
    process.env.FAKE_NVML_DEVICE_COUNT = '2';
    await expect(createGpuControl({ backend: 'nvml', gpuIds: [5], libPath })).rejects.toThrow(/GPU index 5 out of range: NVML sees 2/);
    delete process.env.FAKE_NVML_DEVICE_COUNT;
    process.env.FAKE_NVML_INIT_FAIL = '1';
    const e = await createGpuControl({ backend: 'nvml', gpuIds: [0], libPath }).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(GpuLibraryError);
    expect((e as Error).message).toMatch(/nvmlInit_v2 failed: Driver Not Loaded \(nvmlReturn_t 9\)/);
    delete process.env.FAKE_NVML_INIT_FAIL;
    await expect(createGpuControl({ backend: 'nvml', gpuIds: [0], libPath: join(dir, 'nope', 'libnvidia-ml.so.1') })).rejects.toBeInstanceOf(GpuLibraryError);
    // the library still works after failures (no leaked init count)
    const c = await nvml([1]);
    expect((await c.readClocksMhz())[0].sm).toBe(1980);
  });

  it('a manager that crashed with clocks locked low is undone by the next start-up', async () => {
    const statePath = join(dir, 'gpu-state');
    writeFileSync(statePath, '');
    const child = join(dir, 'crash.mts');
    writeFileSync(
      child,
      `import { createGpuControl } from ${JSON.stringify(resolve('src/gpu/index.ts'))};\n` +
        `const c = await createGpuControl({ backend: 'nvml', gpuIds: [0, 1], libPath: ${JSON.stringify(libPath)} });\n` +
        `await c.lockClocks(600, 600);\nprocess.exit(0); // dies without close()\n`,
    );
    execFileSync(resolve('node_modules/.bin/tsx'), [child], { env: { ...process.env, FAKE_NVML_STATE: statePath }, stdio: 'pipe' });
    expect(readFileSync(statePath, 'utf8')).toMatch(/^0 600 600\n1 600 600/);

    process.env.FAKE_NVML_STATE = statePath;
    const ro = await createGpuControl({ backend: 'nvml', gpuIds: [0, 1], libPath, readOnly: true });
    expect((await ro.readClocksMhz()).map((x) => x.sm)).toEqual([600, 600]); // the GPU is still slow
    await ro.close();
    const c = await nvml([0, 1]);
    expect((await c.readClocksMhz()).map((x) => x.sm)).toEqual([1980, 1980]);
    expect(readFileSync(statePath, 'utf8')).toMatch(/^0 0 0\n1 0 0/);
  });
});
