/**
 * VllmEngine against a fake `vllm` executable (test/fixtures/fake-vllm): the real process-management code
 * path (spawn, logs, /health, SSE, /metrics, exit, restart) with a process we can make misbehave.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createEngine, EngineCrashedError, EngineStartError, MetricsParseError, type EngineChunk, type EngineConfig, type EngineExitInfo, type VllmEngine,
} from '../../src/engine/index.ts';

const FAKE = fileURLToPath(new URL('../fixtures/fake-vllm', import.meta.url));
const engines: VllmEngine[] = [];

function fake(env: Record<string, string>, over: Partial<EngineConfig> = {}): VllmEngine {
  const e = createEngine({
    kind: 'vllm', model: 'fake/model', tp: 2, gpuIds: [2, 3], port: 0, command: FAKE,
    healthDeadlineMs: 10_000, env, restart: { initialBackoffMs: 100 }, ...over,
  });
  engines.push(e);
  return e;
}

async function collect(it: AsyncIterable<EngineChunk>): Promise<EngineChunk[]> {
  const out: EngineChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.stop(1_000)));
});

describe('VllmEngine with a fake vllm', () => {
  it('waits out a slow start, passes TP and CUDA_VISIBLE_DEVICES, streams, scrapes metrics and stops', async () => {
    const e = fake({ FAKE_VLLM_START_DELAY_MS: '1200' });
    const t0 = Date.now();
    await e.start();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1200);
    expect(e.state).toBe('ready');
    expect(e.logs().join('\n')).toContain('CUDA_VISIBLE_DEVICES=2,3 tensor_parallel_size=2');
    const chunks = await collect(e.completion({ model: 'fake/model', prompt: [1, 2, 3, 4], maxTokens: 5 }));
    expect(chunks.filter((c) => c.text).map((c) => c.text).join('')).toBe(' tok0 tok1 tok2 tok3 tok4');
    expect(chunks.map((c) => c.tokenIndex).slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
    expect(chunks[4].finishReason).toBe('length');
    expect(chunks.at(-1)!.usage).toEqual({ promptTokens: 4, completionTokens: 5 });
    const chat = await collect(e.completion({ model: 'fake/model', chat: [{ role: 'user', content: 'hi' }], maxTokens: 2 }));
    expect(chat.map((c) => c.text).join('')).toBe(' tok0 tok1');
    const m = await e.metrics();
    expect(m.requestSuccessTotal).toBe(2);
    expect(m.generationTokensTotal).toBe(7);
    expect(m.numRequestsRunning).toBe(0);
    expect(m.ttft?.count).toBe(2);
    const exits: EngineExitInfo[] = [];
    e.on('exit', (x) => exits.push(x));
    await e.stop(2_000);
    expect(e.state).toBe('stopped');
    expect(exits).toEqual([{ code: 0, signal: null, expected: true }]);
  });

  it('gives up on a start that misses the health deadline', async () => {
    const e = fake({ FAKE_VLLM_START_DELAY_MS: '5000' }, { healthDeadlineMs: 600 });
    const err = await e.start().then(() => null, (x: unknown) => x);
    expect(err).toBeInstanceOf(EngineStartError);
    expect((err as Error).message).toMatch(/did not report its port|not healthy/);
    expect(e.state).toBe('failed');
  });

  it('reports a refusal to start with the process output', async () => {
    const e = fake({ FAKE_VLLM_REFUSE: '1' });
    const exits: EngineExitInfo[] = [];
    e.on('exit', (x) => exits.push(x));
    const err = await e.start().then(() => null, (x: unknown) => x);
    expect(err).toBeInstanceOf(EngineStartError);
    expect((err as EngineStartError).retryable).toBe(false);
    expect((err as Error).message).toContain('exit code 1');
    expect((err as EngineStartError).lastLogLines.join('\n')).toContain('not enough GPU memory');
    expect(exits).toEqual([{ code: 1, signal: null, expected: false }]);
    expect(e.state).toBe('failed');
  });

  it('ends a stream with EngineCrashedError when the process dies, reports the exit and restarts', async () => {
    const once = join(mkdtempSync(join(tmpdir(), 'fake-vllm-')), 'crashed');
    const e = fake({ FAKE_VLLM_CRASH_AFTER_TOKENS: '3', FAKE_VLLM_CRASH_ONCE_FILE: once });
    await e.start();
    const exits: EngineExitInfo[] = [];
    const crashes: EngineExitInfo[] = [];
    e.on('exit', (x) => exits.push(x));
    e.on('crash', (x) => crashes.push(x));
    const restarted = new Promise<{ attempt: number }>((r) => e.once('restarted', r));
    const got: EngineChunk[] = [];
    let err: unknown = null;
    try {
      for await (const c of e.completion({ model: 'fake/model', prompt: 'hello', maxTokens: 10 })) got.push(c);
    } catch (x) {
      err = x;
    }
    expect(got.map((c) => c.text)).toEqual([' tok0', ' tok1', ' tok2']);
    expect(err).toBeInstanceOf(EngineCrashedError);
    expect((err as EngineCrashedError).retryable).toBe(true);
    expect((err as EngineCrashedError).signal).toBe('SIGKILL');
    expect(existsSync(once)).toBe(true);
    expect(exits).toEqual([{ code: null, signal: 'SIGKILL', expected: false }]);
    expect(crashes).toHaveLength(1);
    expect(['restarting', 'ready']).toContain(e.state);
    expect(await restarted).toEqual({ attempt: 1 });
    expect(e.state).toBe('ready');
    expect(e.logs().join('\n')).toContain('illegal memory access');
    // the restarted process serves normally
    const after = await collect(e.completion({ model: 'fake/model', prompt: 'hello', maxTokens: 4 }));
    expect(after.filter((c) => c.text).length).toBe(4);
  });

  it('turns a malformed /metrics into MetricsParseError without harming the engine', async () => {
    const e = fake({ FAKE_VLLM_BAD_METRICS: '1' });
    await e.start();
    const err = await e.metrics().then(() => null, (x: unknown) => x);
    expect(err).toBeInstanceOf(MetricsParseError);
    expect((err as Error).message).toMatch(/line \d+/);
    expect(e.state).toBe('ready');
    expect((await collect(e.completion({ model: 'fake/model', prompt: 'x', maxTokens: 2 }))).length).toBeGreaterThan(0);
  });

  it('spends the restart budget and then fails', async () => {
    // crashes on every stream (no once-file); budget of 1 restart
    const e = fake({ FAKE_VLLM_CRASH_AFTER_TOKENS: '0' }, { restart: { maxRestarts: 1, initialBackoffMs: 50 } });
    await e.start();
    const failed = new Promise<Error>((r) => e.once('failed', r));
    await expect(collect(e.completion({ model: 'fake/model', prompt: 'x', maxTokens: 2 }))).rejects.toBeInstanceOf(EngineCrashedError);
    await new Promise<void>((r) => e.once('restarted', () => r()));
    await expect(collect(e.completion({ model: 'fake/model', prompt: 'x', maxTokens: 2 }))).rejects.toBeInstanceOf(EngineCrashedError);
    expect((await failed).message).toContain('restart budget');
    expect(e.state).toBe('failed');
  });

  it('drives sleep mode through /sleep, /is_sleeping and /wake_up', async () => {
    const e = fake({}, { enableSleep: true });
    await e.start();
    expect(e.spec.args).toContain('--enable-sleep-mode');
    expect(await e.isSleeping()).toBe(false);
    await e.sleep();
    expect(e.state).toBe('sleeping');
    expect(await e.isSleeping()).toBe(true);
    await e.wakeUp();
    expect(e.state).toBe('ready');
    expect(await e.isSleeping()).toBe(false);
  });
});
