/**
 * vLLM sleep mode as the model prices it (src/model/sleep.ts) and as the emulator serves it: POST /sleep?level=1|2
 * answers once the modelled fall into sleep is over, asleep the GPUs draw their unloaded idle power and completions
 * are refused, POST /wake_up answers after the level's modelled wake (level 2 longer: the weights are reloaded), in
 * wall time divided by the time scale (10 here).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel, getGpuSpec, getModelSpec } from '../../src/model/index.ts';
import { asleepPowerW, level1SlotsPerServer, sleepTimeS, wakeTimeS } from '../../src/model/sleep.ts';

const MODEL = 'llama2-70b';
const TP = 4;
const SCALE = 10;
let em: EmulatorServer | undefined;
afterEach(async () => {
  await em?.close();
  em = undefined;
});

const perf = createPerfModel(MODEL, 'h100');
async function start(): Promise<string> {
  em = new EmulatorServer({ perf, tp: TP, timeScale: SCALE, servedModelName: MODEL });
  return `http://127.0.0.1:${await em.listen(0)}`;
}
const post = (base: string, path: string) => fetch(`${base}${path}`, { method: 'POST' });
const gpuPowerW = async (base: string) => ((await (await fetch(`${base}/admin/gpu`)).json()) as { powerMw: number[] }).powerMw[0]! / 1000;
const sleeping = async (base: string) => ((await (await fetch(`${base}/is_sleeping`)).json()) as { is_sleeping: boolean }).is_sleeping;
const complete = (base: string) => fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 2, ignore_eos: true }) });
async function timed(p: () => Promise<Response>): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  const r = await p();
  await r.text();
  return { status: r.status, ms: performance.now() - t0 };
}

describe('sleep mode model', () => {
  const m = getModelSpec(MODEL);
  it('Llama2-70B (138 GB bf16): level 1 wakes in seconds, faster with more GPUs; level 2 (reload) longer', () => {
    expect(wakeTimeS(m, 8, 1)).toBeCloseTo(0.5 + 137.96 / 8 / 25, 6);
    expect(wakeTimeS(m, 2, 1)).toBeCloseTo(3.26, 2);
    expect(wakeTimeS(m, 2, 2)).toBeCloseTo(10.12, 2);
    for (const tp of [2, 4, 8]) expect(wakeTimeS(m, tp, 2)).toBeGreaterThan(wakeTimeS(m, tp, 1));
    expect(wakeTimeS(m, 8, 1)).toBeLessThan(wakeTimeS(m, 4, 1));
    expect(sleepTimeS(m, 8, 2)).toBeLessThan(sleepTimeS(m, 8, 1));
  });
  it('asleep a GPU draws its unloaded idle power: H100 69 W (the paper), H200 81 W (measured idle)', () => {
    expect(asleepPowerW(getGpuSpec('h100'))).toBe(69);
    expect(asleepPowerW(getGpuSpec('h200'))).toBe(81);
  });
  it('a 2 TB host keeps 7 Llama2-70B copies in half its memory (level 1), one 123B model 4', () => {
    expect(level1SlotsPerServer(m)).toBe(7);
    expect(level1SlotsPerServer(getModelSpec('mistral-large-123b'))).toBe(4);
  });
});

describe('emulator sleep mode', () => {
  it('level 1: unloaded idle power asleep, 503 on completions, wake after the modelled time, then serves', async () => {
    const base = await start();
    const loaded = await gpuPowerW(base);
    expect(loaded).toBeCloseTo(perf.idlePowerW(TP, 1980, true), 1);
    const s = await timed(() => post(base, '/sleep?level=1'));
    expect(s.status).toBe(200);
    expect(s.ms).toBeGreaterThan((sleepTimeS(perf.model, TP, 1) * 1000 / SCALE) * 0.9);
    expect(await sleeping(base)).toBe(true);
    expect(await gpuPowerW(base)).toBeCloseTo(perf.gpu.idlePowerW, 1);
    expect((await complete(base)).status).toBe(503);
    const w = await timed(() => post(base, '/wake_up'));
    expect(w.status).toBe(200);
    const wakeMs = (wakeTimeS(perf.model, TP, 1) * 1000) / SCALE;
    expect(w.ms).toBeGreaterThan(wakeMs * 0.9);
    expect(w.ms).toBeLessThan(wakeMs + 400);
    expect(await sleeping(base)).toBe(false);
    expect((await complete(base)).status).toBe(200);
  });

  it('level 2 wakes later than level 1 by the reload; a bad level is refused; a second wake_up joins the first', async () => {
    const base = await start();
    expect((await post(base, '/sleep?level=3')).status).toBe(400);
    expect((await post(base, '/sleep?level=2')).status).toBe(200);
    const [a, b] = await Promise.all([timed(() => post(base, '/wake_up')), timed(() => post(base, '/wake_up'))]);
    const wake2Ms = (wakeTimeS(perf.model, TP, 2) * 1000) / SCALE;
    expect(a.ms).toBeGreaterThan(wake2Ms * 0.9);
    expect(b.ms).toBeGreaterThan(wake2Ms * 0.9);
    expect(b.ms).toBeLessThan(wake2Ms + 400);
    expect(await sleeping(base)).toBe(false);
    // awake: a wake_up answers at once
    expect((await timed(() => post(base, '/wake_up'))).ms).toBeLessThan(wake2Ms / 2);
  });
});
