/**
 * The pool's sleep-mode standby on a live instance: a real nats-server, the real InstanceManager and a real
 * emulated engine process (src/engine/emulator, sleep mode with the modelled times at time scale 10). A 'sleep'
 * command turns the instance 'sleeping' at once (its status says so; an admission is refused as unavailable), lets
 * the request it holds finish, then puts the engine to sleep (the emulated GPUs at their unloaded idle power); a
 * 'wake' wakes the engine after the level's modelled wake and the instance is ready and admits again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { InstanceManager } from '../../actors/instance-manager/instance-manager.ts';
import { Ack, Admission, InferenceRequest, InstanceCommand, InstanceStatus, controlSubjects, subjects } from '../../protocols/index.ts';
import { createEngine, type VllmEngine } from '../../src/engine/index.ts';
import { createGpuControl } from '../../src/gpu/index.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { wakeTimeS } from '../../src/model/sleep.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';

const MODEL = 'llama3.1-8b';
const SCALE = 10;
let nats: TestNats;
let bus: Bus;
let engine: VllmEngine;
let im: InstanceManager;
const statuses: InstanceStatus[] = [];
const perf = createPerfModel(MODEL, 'h100');

const until = async (ok: () => boolean | Promise<boolean>, ms = 10_000) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) if (await ok()) return;
  throw new Error('condition not met in time');
};
const command = (op: 'sleep' | 'wake', level?: 1 | 2) => bus.request(subjects.instanceControl('p-i0'), InstanceCommand, { v: 1, op, ...(level ? { level } : {}), reason: 'test' }, Ack, { timeoutMs: 5000 });
let n = 0;
let clockGate: Promise<void> = Promise.resolve();
const admit = (maxTokens = 2) => {
  const now = Date.now();
  const id = `r${++n}`;
  const req: InferenceRequest = { v: 1, id, model: MODEL, kind: 'completion', prompt: 'hello there', inputTokens: 3, maxTokens, ignoreEos: true, arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream(id) };
  return bus.request(subjects.instanceAdmit('p-i0'), InferenceRequest, req, Admission, { timeoutMs: 5000 });
};
const gpuPowerW = async () => ((await (await fetch(`${engine.baseUrl}/admin/gpu`)).json()) as { powerMw: number[] }).powerMw[0]! / 1000;

beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ servers: nats.url, ...as('admin'), name: 'instance-sleep', log: silentLogger() });
  const config = parseConfig({ model: MODEL, gpu: 'h100', servers: [{ id: 'n0', gpus: 1 }], pools: [{ id: 'p', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }], engine: { initialTp: 1 } });
  // served under the config's model name, as the instance manager's process starts it (actors/instance-manager/main.ts)
  engine = createEngine({ kind: 'emulator', model: MODEL, servedModelName: MODEL, gpu: 'h100', tp: 1, gpuIds: [0], port: 0, healthDeadlineMs: 20_000, timeScale: SCALE });
  bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.push(s), { capacity: 4096 });
  im = new InstanceManager({
    // the TP1 profile: the clock epoch lowers an idle instance's clock, and an admission raises it for its prefill
    id: 'p-i0', pool: 'p', tp: 1, gpuIds: [0], config, bus, log: silentLogger(), engine, profile: loadProfile('profiles/llama3.1-8b.h100.tp1.json'),
    // a clock change waits for `clockGate` (a test holds it to keep a start waiting for its clock)
    openGpu: async (url) => {
      const gpu = await createGpuControl({ backend: 'emulated', gpuIds: [0], emulatorUrl: url });
      const lock = gpu.lockClocks.bind(gpu);
      gpu.lockClocks = async (min, max) => {
        await clockGate;
        return lock(min, max);
      };
      return gpu;
    },
  });
  await im.start();
  await until(() => im.state === 'ready', 20_000);
}, 40_000);

afterAll(async () => {
  await im?.stop(0).catch(() => {});
  await bus?.close();
  await nats?.stop();
});

describe('instance manager: sleep and wake commands on the engine', () => {
  it('sleep: sleeping at once, the held request finishes, then the engine sleeps at unloaded idle power; wake: ready after the wake', async () => {
    expect((await admit(3000)).ok).toBe(true); // 3,000 tokens (~3 s of wall time at x10): still running when the sleep comes
    expect(im.running + im.queued).toBe(1);
    const ack = await command('sleep', 1);
    expect(ack.ok).toBe(true);
    expect(im.state).toBe('sleeping');
    await until(() => statuses.some((s) => s.id === 'p-i0' && s.state === 'sleeping'));
    const refused = await admit();
    expect(refused.ok).toBe(false);
    expect(refused.error?.code).toBe('unavailable');
    // the engine sleeps only once the request has finished
    expect(await engine.isSleeping()).toBe(false);
    await until(() => im.running + im.queued === 0, 20_000);
    // served to its end (ignore_eos: all 3,000 tokens), not ended by the sleep
    expect(im.metricsSnapshot().outcomes).toEqual({ ok: 1 });
    expect(im.metricsSnapshot().completionTokens).toBe(3000);
    await until(() => engine.isSleeping(), 5000);
    await until(async () => Math.abs((await gpuPowerW()) - perf.gpu.idlePowerW) < 0.5, 5000);

    const t0 = Date.now();
    expect((await command('wake')).ok).toBe(true);
    await until(() => im.state === 'ready', 10_000);
    const tookMs = Date.now() - t0;
    expect(tookMs).toBeGreaterThan((wakeTimeS(perf.model, 1, 1) * 1000) / SCALE * 0.9);
    expect(await engine.isSleeping()).toBe(false);
    await until(() => statuses.at(-1)?.state === 'ready');
    expect((await admit()).ok).toBe(true);
  }, 60_000);

  it('a wake before the engine sleeps only turns the instance ready again; a second sleep is acked as already', async () => {
    await until(() => im.running + im.queued === 0, 20_000);
    expect((await admit(3000)).ok).toBe(true);
    expect((await command('sleep', 2)).ok).toBe(true);
    expect((await command('sleep', 2)).detail).toMatchObject({ already: true });
    expect((await command('wake')).ok).toBe(true);
    await until(() => im.state === 'ready', 5000);
    expect(await engine.isSleeping()).toBe(false);
    // the request held through it all finishes, and the engine never slept
    await until(() => im.running + im.queued === 0, 20_000);
    expect(await engine.isSleeping()).toBe(false);
    expect(im.metricsSnapshot().outcomes).toEqual({ ok: 3 });
  }, 60_000);

  it('a request whose start waits for its clock counts as held: a sleep then waits for it, and it is served', async () => {
    await until(() => im.running + im.queued === 0, 20_000);
    // idle past its first epoch, the instance runs below its max clock: an admission raises it before the start
    await until(() => im.state === 'ready' && im.clockMhz < perf.gpu.maxClockMhz, 20_000);
    let release!: () => void;
    clockGate = new Promise((r) => (release = r));
    try {
      expect((await admit(3000)).ok).toBe(true);
      expect(im.running + im.queued).toBe(1);
      const ack = await command('sleep', 1);
      expect(ack.detail).toMatchObject({ held: 1 });
    } finally {
      release();
      clockGate = Promise.resolve();
    }
    // the engine sleeps once the request has run to its end
    await until(() => im.running + im.queued === 0, 20_000);
    expect(im.metricsSnapshot().outcomes).toEqual({ ok: 4 });
    await until(() => engine.isSleeping(), 5000);
    expect((await command('wake')).ok).toBe(true);
    await until(() => im.state === 'ready', 10_000);
  }, 60_000);
});
