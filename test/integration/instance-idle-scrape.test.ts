/**
 * What an idle instance manager asks of its engine: the prefix-cache counters (/metrics) move only with the
 * requests the engine runs, so an instance whose engine ran nothing since its last scrape does not scrape again
 * (a 13-KB text to fetch and parse every second, on both sides); a request started or ended, or an engine
 * restart, is read at the next telemetry period, and the status reports the counts. A real nats-server and the
 * real InstanceManager; the engine and the GPU are stand-ins that count the calls, time is a ManualClock.
 */
import { EventEmitter } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { InstanceManager } from '../../actors/instance-manager/instance-manager.ts';
import { Admission, InferenceRequest, InstanceStatus, controlSubjects, subjects } from '../../protocols/index.ts';
import type { EngineChunk, EngineEvents } from '../../src/engine/index.ts';
import type { GpuControl } from '../../src/gpu/index.ts';

/** An engine that is up, streams two tokens per completion and counts the /metrics scrapes. */
class CountingEngine extends EventEmitter<EngineEvents> {
  state = 'ready' as const;
  baseUrl = 'http://127.0.0.1:9';
  scrapes = 0;
  queries = 0;
  async start(): Promise<void> {}
  async waitHealthy(): Promise<void> {}
  async *completion(): AsyncIterable<EngineChunk> {
    this.queries += 100; // its prefill looks 100 tokens up in the prefix cache
    yield { text: 'a', tokenIndex: 0 };
    yield { text: 'b', tokenIndex: 1, finishReason: 'length' };
  }
  async tokenize(): Promise<never> {
    throw new Error('not used');
  }
  async detokenize(): Promise<never> {
    throw new Error('not used');
  }
  async metrics(): Promise<never> {
    throw new Error('not used');
  }
  async prefixCache(): Promise<{ queries: number; hits: number }> {
    this.scrapes++;
    return { queries: this.queries, hits: 0 };
  }
  async sleep(): Promise<void> {}
  async wakeUp(): Promise<void> {}
  async isSleeping(): Promise<boolean> {
    return false;
  }
  async probeHealth(): Promise<boolean> {
    return true;
  }
  killHung(): void {}
  async stop(): Promise<void> {}
  logs(): readonly string[] {
    return [];
  }
}

const gpu: GpuControl = {
  kind: 'emulated', gpuIds: [0],
  supportedClocksMhz: async () => [1000, 1980],
  lockClocks: async (minMhz, maxMhz) => ({ minMhz, maxMhz }),
  resetClocks: async () => {},
  readPowerMw: async () => [100_000],
  readEnergyMj: async () => [0],
  readClocksMhz: async () => [{ sm: 1980, mem: 0 }],
  close: async () => {},
};

let nats: TestNats;
let bus: Bus;
let clock: ManualClock;
let engine: CountingEngine;
let im: InstanceManager;
const statuses: InstanceStatus[] = [];

/** telemetry periods of the manual clock, each followed by real time for the NATS round trips. */
async function seconds(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await clock.advanceAsync(1000);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ servers: nats.url, ...as('admin'), name: 'idle-scrape', log: silentLogger() });
  clock = new ManualClock(Date.now());
  engine = new CountingEngine();
  const config = parseConfig({ model: 'llama3.1-8b', gpu: 'h100', servers: [{ id: 'n0', gpus: 1 }], pools: [{ id: 'p', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }], engine: { initialTp: 1 } });
  bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => void statuses.push(s), { capacity: 1024 });
  im = new InstanceManager({ id: 'p-i0', pool: 'p', tp: 1, gpuIds: [0], config, bus, log: silentLogger(), engine: engine as never, openGpu: async () => gpu, clock });
  await im.start();
}, 30_000);

afterAll(async () => {
  // stop() waits on the manual clock: move it along until it is done
  let stopped = false;
  void im?.stop(0).catch(() => {}).finally(() => (stopped = true));
  for (let i = 0; i < 100 && im && !stopped; i++) await clock.advanceAsync(100);
  await bus?.close();
  await nats?.stop();
});

describe('instance manager: the engine scrape of an idle instance', () => {
  it('scrapes once at start, then not while the engine runs nothing; a request is read at the next period; a restart once more', async () => {
    await seconds(6);
    // the first period reads the counters; nothing ran since, so the five after it do not scrape
    expect(engine.scrapes).toBe(1);

    const now = clock.now();
    const req: InferenceRequest = {
      v: 1, id: 'r1', model: 'llama3.1-8b', kind: 'completion', prompt: 'hello', inputTokens: 100, maxTokens: 2,
      arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream('r1'),
    };
    const a = await bus.request(subjects.instanceAdmit('p-i0'), InferenceRequest, req, Admission, { timeoutMs: 5000 });
    expect(a.ok).toBe(true);
    for (const until = Date.now() + 5000; im.running > 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
    expect(im.running).toBe(0);
    await seconds(3);
    // the request's prefill moved the counters: one scrape reads them, and the status reports them
    expect(engine.scrapes).toBe(2);
    await seconds(1);
    expect(statuses.at(-1)?.prefixCacheTokens).toEqual({ lookup: 100, hit: 0 });

    engine.emit('restarted', { attempt: 1 });
    await seconds(3);
    expect(engine.scrapes).toBe(3);
  }, 60_000);

  it('an instance without an engine key refuses a direct request sent without its prompt: it would stream it itself', async () => {
    const now = clock.now();
    const req: InferenceRequest = {
      v: 1, id: 'r-lean', model: 'llama3.1-8b', kind: 'completion', promptForm: 'ids', inputTokens: 100, maxTokens: 2, direct: true,
      arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream('r-lean'),
    };
    const queries = engine.queries;
    const a = await bus.request(subjects.instanceAdmit('p-i0'), InferenceRequest, req, Admission, { timeoutMs: 5000 });
    expect(a.ok).toBe(false);
    expect(a.error?.code).toBe('unavailable');
    expect(a.error?.retryable).toBe(true);
    // nothing went to the engine, nothing is held
    await new Promise((r) => setTimeout(r, 100));
    expect(engine.queries).toBe(queries);
    expect(im.running).toBe(0);
  }, 30_000);
});
