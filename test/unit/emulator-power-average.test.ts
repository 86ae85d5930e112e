/**
 * The emulated GPU's power reading is the power averaged over the last second of its timeline, as
 * nvmlDeviceGetPowerUsage reads it on an H100 (src/engine/emulator/driver.ts): a reader that comes once a second
 * between requests sees the steps it fell between, where the instantaneous draw it reads is idle; and the emulated
 * GPU backend (src/gpu/emulated.ts) reads that average. Time scale 1: the window is 1 s of wall time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { POWER_AVERAGE_MS, RealtimeDriver } from '../../src/engine/emulator/driver.ts';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { EmulatedGpuControl } from '../../src/gpu/emulated.ts';
import { createPerfModel } from '../../src/model/index.ts';
import type { CoreEvent } from '../../src/engine/core-types.ts';

const MODEL = 'llama3.1-8b';
const TP = 2;
const SCALE = 1;
const perf = createPerfModel(MODEL, 'h100');
const idleW = perf.idlePowerW(TP, 1980, true) * TP;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let d: RealtimeDriver | undefined;
let em: EmulatorServer | undefined;
afterEach(async () => {
  d?.close();
  d = undefined;
  await em?.close();
  em = undefined;
});

/** One request of `prompt` tokens generating `out`, run alone to its end: its energy (J), arrival and span (virtual ms). */
function runAlone(drv: RealtimeDriver, prompt: number, out: number): Promise<{ energyJ: number; arrivalMs: number; busyMs: number }> {
  return new Promise((resolve) => {
    const arrivalMs = drv.submit({ id: 'r1', promptTokens: prompt, outputTokens: out }, (ev: CoreEvent) => {
      if (ev.kind === 'finished') resolve({ energyJ: ev.energyJ, arrivalMs, busyMs: ev.atMs - arrivalMs });
    });
  });
}

describe('emulated GPU power: the average over the last second', () => {
  it('a read after a request, inside the window, counts its steps; once the window is past, idle', async () => {
    d = new RealtimeDriver({ perf, tp: TP, timeScale: SCALE });
    // a full window of idle first
    await sleep((2 * POWER_AVERAGE_MS) / SCALE);
    expect(d.averagePowerW()).toBeCloseTo(idleW, 6);
    const r = await runAlone(d, 100, 40);
    expect(r.busyMs).toBeGreaterThan(0);
    expect(r.busyMs).toBeLessThan(POWER_AVERAGE_MS / 2);
    await sleep(5);
    // between requests the instantaneous draw is idle; the average holds the request's steps and idle for the rest
    const avg = d.averagePowerW();
    expect(d.now() - POWER_AVERAGE_MS).toBeLessThan(r.arrivalMs); // the window holds the whole request
    expect(d.powerW()).toBeCloseTo(idleW, 6);
    expect(avg).toBeGreaterThan(idleW * 1.2);
    // (the request's span is its steps', but for the microseconds before its first step and any wait of a late
    // timer between steps: 2%)
    const expected = (r.energyJ + (idleW * (POWER_AVERAGE_MS - r.busyMs)) / 1000) / (POWER_AVERAGE_MS / 1000);
    expect(Math.abs(avg / expected - 1)).toBeLessThan(0.02);
    await sleep((1.5 * POWER_AVERAGE_MS) / SCALE);
    expect(d.averagePowerW()).toBeCloseTo(idleW, 6);
  });

  it('the emulated GPU backend reads the average: a read just after a request is above idle', async () => {
    em = new EmulatorServer({ perf, tp: TP, timeScale: SCALE, servedModelName: MODEL });
    const url = `http://127.0.0.1:${await em.listen(0)}`;
    const gpu = await EmulatedGpuControl.open({ backend: 'emulated', gpuIds: [0, 1], emulatorUrl: url });
    await sleep((2 * POWER_AVERAGE_MS) / SCALE);
    const sum = async () => (await gpu.readPowerMw()).reduce((a, b) => a + b, 0) / 1000;
    expect(await sum()).toBeCloseTo(idleW, 2);
    const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'hello '.repeat(50), max_tokens: 40, ignore_eos: true }) });
    expect(res.status).toBe(200);
    await res.text();
    const st = await gpu.state();
    // the request is over: the instantaneous draw is idle, the reading is not
    expect(st.powerMw.reduce((a, b) => a + b, 0) / 1000).toBeCloseTo(idleW, 2);
    expect(await sum()).toBeGreaterThan(idleW + 1);
    await gpu.close();
  });
});
