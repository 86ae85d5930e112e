/**
 * A relayed leg at its give-up time (gateway.dataPath `nats`: the instance manager reads the engine and relays its
 * tokens on the request's stream subject): the instance's engine call has the give-up time as its deadline, and when it
 * fires the request ends as the gateway ends a direct leg there (src/policy/deadline.ts; docs/DATAPATH.md "Request
 * migration"): the last chunk carries the non-retryable `timeout`, the request's record and the instance's counters
 * say 'timed_out', not 'failed'. A real nats-server, the real InstanceManager and a real emulated engine process
 * (time scale 1: 3,000 tokens take far longer than the 2-s limit).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { InstanceManager } from '../../actors/instance-manager/instance-manager.ts';
import { Admission, InferenceRequest, RequestRecord, TokenChunk, subjects } from '../../protocols/index.ts';
import { createEngine, type VllmEngine } from '../../src/engine/index.ts';
import { createGpuControl } from '../../src/gpu/index.ts';

const MODEL = 'llama3.1-8b';
const LIMIT_MS = 2000;
let nats: TestNats;
let bus: Bus;
let engine: VllmEngine;
let im: InstanceManager;

const until = async (ok: () => boolean, ms: number, what: string) => {
  for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 20))) if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
};

beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ servers: nats.url, ...as('admin'), name: 'instance-deadline', log: silentLogger() });
  const config = parseConfig({ model: MODEL, gpu: 'h100', servers: [{ id: 'n0', gpus: 1 }], pools: [{ id: 'p', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }], engine: { initialTp: 1 } });
  engine = createEngine({ kind: 'emulator', model: MODEL, servedModelName: MODEL, gpu: 'h100', tp: 1, gpuIds: [0], port: 0, healthDeadlineMs: 20_000, timeScale: 1 });
  im = new InstanceManager({
    id: 'p-i0', pool: 'p', tp: 1, gpuIds: [0], config, bus, log: silentLogger(), engine,
    openGpu: async (url) => createGpuControl({ backend: 'emulated', gpuIds: [0], emulatorUrl: url }),
  });
  await im.start();
  await until(() => im.state === 'ready', 20_000, 'the instance ready');
}, 40_000);

afterAll(async () => {
  await im?.stop(0).catch(() => {});
  await bus?.close();
  await nats?.stop();
});

describe('instance manager: a relayed leg at its give-up time', () => {
  it("ends with the non-retryable timeout and records 'timed_out'", async () => {
    const chunks: TokenChunk[] = [];
    const records: RequestRecord[] = [];
    const id = `deadline-${Date.now()}`;
    bus.subscribe(subjects.stream(id), TokenChunk, (c) => void chunks.push(c), { capacity: 65_536 });
    bus.subscribe(subjects.telRequest('p'), RequestRecord, (r) => {
      if (r.id === id) records.push(r);
    }, { capacity: 64 });
    await new Promise((r) => setTimeout(r, 50));
    const now = Date.now();
    const req: InferenceRequest = {
      v: 1, id, model: MODEL, kind: 'completion', prompt: 'hello there', inputTokens: 3, maxTokens: 3000, ignoreEos: true,
      arrivalMs: now, giveUpAtMs: now + LIMIT_MS, streamSubject: subjects.stream(id),
    };
    const a = await bus.request(subjects.instanceAdmit('p-i0'), InferenceRequest, req, Admission, { timeoutMs: 5000 });
    expect(a.ok).toBe(true);
    await until(() => chunks.some((c) => c.done) && records.length > 0, LIMIT_MS + 10_000, 'the stream end and its record');
    const endedMs = Date.now() - now;

    const last = chunks.find((c) => c.done)!;
    expect(last.finishReason).toBe('error');
    expect(last.error).toMatchObject({ code: 'timeout', retryable: false });
    expect(last.error!.message).toMatch(/time limit/);
    expect(last.error!.retryAfterS).toBeUndefined();
    // tokens streamed until the give-up time, then the end
    expect(chunks.reduce((n, c) => n + c.tokens, 0)).toBeGreaterThan(10);
    expect(endedMs).toBeGreaterThanOrEqual(LIMIT_MS - 100);
    expect(endedMs).toBeLessThan(LIMIT_MS + 5000);

    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ id, outcome: 'timed_out', instance: 'p-i0' });
    expect(records[0]!.completionTokens).toBeGreaterThan(10);
    expect(im.metricsSnapshot().outcomes).toMatchObject({ timed_out: 1 });
    expect(im.metricsSnapshot().outcomes.failed).toBeUndefined();
    await until(() => im.running === 0, 5000, 'the request released');
  }, 60_000);
});
