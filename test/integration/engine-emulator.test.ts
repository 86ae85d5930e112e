/**
 * The emulator process (`node bin/dynamollm.js engine-emulator`, managed by the same VllmEngine as vLLM)
 * against the official `openai` client, and its timing and power against the performance model.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import OpenAI from 'openai';
import { createEngine, type EngineChunk, type EngineConfig, type VllmEngine } from '../../src/engine/index.ts';
import { createPerfModel } from '../../src/model/index.ts';
import type { ChatMessage } from '../../src/engine/engine.ts';
import type { GpuState } from '../../src/engine/emulator/driver.ts';

const MODEL = 'llama2-70b';
const SERVED = 'meta-llama/Llama-2-70b-hf';
const TP = 4;
/** API behaviour runs 10x faster than real time; timing is measured in real time (1x), where client, HTTP
 * and timer overheads (a few wall ms, tens on this shared 2-core machine under load) stay small against the
 * modelled latencies. */
const API_TIME_SCALE = 10;
const TIME_SCALE = 1;
const perf = createPerfModel(MODEL, 'h100');
let engine: VllmEngine;
let client: OpenAI;
let apiEngine: VllmEngine;
let timingEngine: VllmEngine;
function use(e: VllmEngine): void {
  engine = e;
  client = new OpenAI({ baseURL: `${e.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
}

// vLLM-only request fields the openai client passes through untouched
type Extra = { ignore_eos?: boolean; min_tokens?: number };
const ids = (n: number) => Array.from({ length: n }, (_, i) => 100 + (i % 30000));

async function admin(path: string, body?: unknown): Promise<GpuState> {
  const post = path !== '/admin/gpu';
  const res = await fetch(`${engine.baseUrl}${path}`, post ? { method: 'POST', body: JSON.stringify(body ?? {}), headers: { 'content-type': 'application/json' } } : {});
  expect(res.status).toBe(200);
  return (await res.json()) as GpuState;
}

/** Stream a completion and return the wall time (ms) each text chunk arrived, relative to the call. */
async function timedStream(prompt: number[], maxTokens: number, onChunk?: (i: number) => void): Promise<number[]> {
  const t0 = performance.now();
  const stream = await client.completions.create({ model: SERVED, prompt, max_tokens: maxTokens, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming & Extra);
  const at: number[] = [];
  for await (const c of stream) {
    if (c.choices[0]?.text) {
      at.push(performance.now() - t0);
      onChunk?.(at.length);
    }
  }
  return at;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

beforeAll(async () => {
  const cfg: EngineConfig = { kind: 'emulator', model: MODEL, gpu: 'h100', tp: TP, gpuIds: [0, 1, 2, 3], port: 0, healthDeadlineMs: 20_000 };
  apiEngine = createEngine({ ...cfg, timeScale: API_TIME_SCALE, startupDelayMs: 8000 });
  timingEngine = createEngine({ ...cfg, timeScale: TIME_SCALE });
  const t0 = Date.now();
  await Promise.all([apiEngine.start(), timingEngine.start()]);
  // 8 s of modelled weight loading at 10x: /health stays 503 for at least 800 ms of wall time
  expect(Date.now() - t0).toBeGreaterThanOrEqual(800);
});

afterAll(async () => {
  await Promise.all([apiEngine?.stop(2_000), timingEngine?.stop(2_000)]);
});

describe('engine emulator with the openai client', () => {
  beforeAll(() => use(apiEngine));
  it('lists its model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([SERVED]);
  });

  it('answers non-streaming and streaming completions with usage', async () => {
    const prompt = 'Hello world, this is a test of the emulator.';
    // usage counts with the engine's tokenizer: what /tokenize says for the same prompt (Llama's BPE: 12 with BOS)
    const counted = await engine.tokenize({ model: SERVED, prompt });
    expect(counted.count).toBe(12);
    expect(counted.maxModelLen).toBe(perf.model.maxContext);
    expect(await engine.detokenize(counted.tokens)).toBe(prompt);
    const r = await client.completions.create({ model: SERVED, prompt, max_tokens: 8, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming & Extra);
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.choices[0].text.trim().split(/\s+/)).toHaveLength(8);
    expect(r.usage).toMatchObject({ prompt_tokens: counted.count, completion_tokens: 8, total_tokens: counted.count + 8 });
    expect((r.usage as unknown as { energy_joules: number }).energy_joules).toBeGreaterThan(0);

    const s = await client.completions.create({ model: SERVED, prompt: ids(100), max_tokens: 6, stream: true, stream_options: { include_usage: true }, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming & Extra);
    const texts: string[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null | undefined;
    for await (const c of s) {
      if (c.choices.length > 0) {
        texts.push(c.choices[0].text);
        finish = c.choices[0].finish_reason ?? finish;
      }
      if (c.usage) usage = c.usage;
    }
    expect(texts).toHaveLength(6);
    expect(finish).toBe('length');
    expect(usage).toMatchObject({ prompt_tokens: 100, completion_tokens: 6, total_tokens: 106 });
  });

  it('answers chat completions, streaming and not, and stops at EOS without ignore_eos', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is DynamoLLM?' }];
    const expectedPrompt = (await engine.tokenize({ model: SERVED, chat: messages as ChatMessage[] })).count;
    expect(expectedPrompt).toBeGreaterThan(10); // the chat template's tokens count too
    const r = await client.chat.completions.create({ model: SERVED, messages, max_tokens: 5, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming & Extra);
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0].message.role).toBe('assistant');
    expect(r.choices[0].message.content!.trim().split(/\s+/)).toHaveLength(5);
    expect(r.usage).toMatchObject({ prompt_tokens: expectedPrompt, completion_tokens: 5 });

    const s = await client.chat.completions.create({ model: SERVED, messages, max_tokens: 7, stream: true, stream_options: { include_usage: true }, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsStreaming & Extra);
    let content = '';
    let role: string | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of s) {
      expect(c.object).toBe('chat.completion.chunk');
      role ??= c.choices[0]?.delta.role;
      content += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(role).toBe('assistant');
    expect(content.trim().split(/\s+/)).toHaveLength(7);
    expect(usage).toMatchObject({ prompt_tokens: expectedPrompt, completion_tokens: 7, total_tokens: expectedPrompt + 7 });

    // Without ignore_eos the stand-in model may stop early (mean 256 tokens), never before min_tokens.
    const runs = await Promise.all(Array.from({ length: 4 }, () =>
      client.completions.create({ model: SERVED, prompt: 'x', max_tokens: 300, min_tokens: 3, temperature: 0 } as OpenAI.CompletionCreateParamsNonStreaming & Extra)));
    const lens = runs.map((x) => x.usage!.completion_tokens);
    runs.forEach((x, i) => expect(x.choices[0].finish_reason).toBe(lens[i] < 300 ? 'stop' : 'length'));
    expect(Math.min(...lens)).toBeGreaterThanOrEqual(3);
    expect(lens.some((n) => n < 300)).toBe(true);
  }, 30_000);

  it('rejects bad requests with OpenAI-style errors', async () => {
    await expect(client.completions.create({ model: 'nope', prompt: 'x', max_tokens: 2 })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.completions.create({ model: SERVED, prompt: 'x', max_tokens: 5000 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(client.completions.create({ model: SERVED, prompt: 'x', max_tokens: -1 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('serves the same stream to VllmEngine.completion and exposes vLLM metrics', async () => {
    const chunks = [];
    for await (const c of engine.completion({ model: SERVED, prompt: ids(40), maxTokens: 4, ignoreEos: true })) chunks.push(c);
    expect(chunks.filter((c) => c.text).length).toBe(4);
    const last = chunks.at(-1)!;
    expect(last.usage?.promptTokens).toBe(40);
    expect(last.usage?.completionTokens).toBe(4);
    expect(last.usage?.energyJoules).toBeGreaterThan(0);
    const m = await engine.metrics();
    expect(m.numRequestsRunning).toBe(0);
    expect(m.numRequestsWaiting).toBe(0);
    expect(m.requestSuccessTotal).toBeGreaterThanOrEqual(9);
    expect(m.ttft?.count).toBe(m.requestSuccessTotal);
    expect(m.generationTokensTotal).toBeGreaterThan(40);
    expect(m.itl?.count).toBe(m.generationTokensTotal - m.requestSuccessTotal);
  });
  it('frees the engine when the caller aborts a stream', async () => {
    const ac = new AbortController();
    let n = 0;
    const err = await (async () => {
      for await (const c of engine.completion({ model: SERVED, prompt: ids(20), maxTokens: 500, ignoreEos: true }, ac.signal)) {
        if (c.text && ++n === 3) ac.abort(new Error('client went away'));
      }
    })().then(() => null, (x: unknown) => x);
    expect((err as Error).message).toBe('client went away');
    await new Promise((r) => setTimeout(r, 100));
    const m = await engine.metrics();
    expect(m.numRequestsRunning + m.numRequestsWaiting).toBe(0);
    expect(engine.state).toBe('ready');
  });
});

describe('emulator stream interval (vLLM --stream-interval)', () => {
  it('sends the first token at once, then events of N tokens with their engine times, and the same text', async () => {
    const cfg: EngineConfig = { kind: 'emulator', model: MODEL, gpu: 'h100', tp: TP, gpuIds: [0, 1, 2, 3], port: 0, healthDeadlineMs: 20_000, timeScale: 10 };
    const one = createEngine(cfg);
    const four = createEngine({ ...cfg, streamInterval: 4 });
    try {
      await Promise.all([one.start(), four.start()]);
      const run = async (e: VllmEngine) => {
        const out: EngineChunk[] = [];
        for await (const c of e.completion({ model: SERVED, prompt: ids(40), maxTokens: 10, ignoreEos: true })) out.push(c);
        return out;
      };
      const [a, b] = await Promise.all([run(one), run(four)]);
      const text = (cs: EngineChunk[]) => cs.map((c) => c.text).join('');
      expect(text(b)).toBe(text(a));
      const tok = b.filter((c) => c.text);
      expect(tok.map((c) => c.tokens ?? 1)).toEqual([1, 4, 4, 1]);
      expect(tok.map((c) => c.tokenIndex)).toEqual([0, 1, 5, 9]);
      expect(tok.at(-1)!.finishReason).toBe('length');
      expect(b.at(-1)!.usage?.completionTokens).toBe(10);
      for (const c of tok.filter((x) => (x.tokens ?? 1) > 1)) {
        const o = c.tokenOffsetsMs!;
        expect(o[0]).toBe(0);
        // one decode step apart (modelled, at time-scale 10): positive and non-decreasing
        for (let i = 1; i < o.length; i++) expect(o[i]!).toBeGreaterThan(o[i - 1]!);
      }
      // the raw events are canonical JSON (what JSON.stringify gives for the parsed object)
      const res = await fetch(`${four.baseUrl}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: SERVED, messages: [{ role: 'user', content: 'hi "there"' }], max_tokens: 6, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
      });
      const lines = (await res.text()).split('\n\n').filter(Boolean).map((l) => l.slice('data: '.length));
      expect(lines.at(-1)).toBe('[DONE]');
      for (const l of lines.slice(0, -1)) expect(JSON.stringify(JSON.parse(l))).toBe(l);
      expect(lines.length).toBe(1 + 3 + 1 + 1); // role delta, token events 1+4+1, usage, [DONE]
    } finally {
      await Promise.all([one.stop(2_000), four.stop(2_000)]);
    }
  });
});

describe('engine emulator timing and power against the performance model', () => {
  beforeAll(() => use(timingEngine));
  it('measured TBT and TTFT under a steady load are within 10% of the model', async () => {
    await admin('/admin/gpu/reset-clocks');
    const C = 8, P = 256, O = 200, PROBE = 3000, W0 = 20, W1 = 100;
    // steady load: C concurrent decoding streams; probes start once every stream is past the TBT window
    let pastWindow = 0;
    let release!: () => void;
    const windowDone = new Promise<void>((r) => (release = r));
    const bg = Array.from({ length: C }, () => timedStream(ids(P), O, (i) => {
      if (i === W1 + 2 && ++pastWindow === C) release();
    }));
    await windowDone;
    // probes arrive at varied phases of the decode steps
    const ttft: number[] = [];
    for (let i = 0; i < 7; i++) {
      const at = await timedStream(ids(PROBE), 1);
      ttft.push(at[0] * TIME_SCALE);
      await new Promise((r) => setTimeout(r, 3 + ((i * 7) % 11)));
    }
    const streams = await Promise.all(bg);
    // mean gap over the window of each stream (timer jitter cancels out), then the median over streams
    const tbt = median(streams.map((at) => ((at[W1] - at[W0]) / (W1 - W0)) * TIME_SCALE));
    const ctxAt = (k: number) => P + k;
    const decodeStep = mean(Array.from({ length: W1 - W0 }, (_, j) => perf.stepTimeMs({ prefillTokens: 0, decodeSeqs: C, decodeContextTokens: C * ctxAt(W0 + j) }, TP, 1980)));
    // A probe waits for the step in flight (a uniform share of a decode step), then its prefill runs alongside
    // the C decodes. Client, HTTP and timer overheads, and other load on this shared machine, only ever add
    // wall time, so the best probe is compared with the model's expected minimum over N probes
    // (residual step/(N+1)); the median is reported against the model's mean (residual step/2).
    const ctxProbe = ctxAt(W1 + 40);
    const probeDecode = perf.stepTimeMs({ prefillTokens: 0, decodeSeqs: C, decodeContextTokens: C * ctxProbe }, TP, 1980);
    const mixed = perf.stepTimeMs({ prefillTokens: PROBE, prefillContextTokens: 0, decodeSeqs: C, decodeContextTokens: C * ctxProbe }, TP, 1980);
    const ttftModelMin = mixed + probeDecode / (ttft.length + 1);
    const ttftModelMean = mixed + probeDecode / 2;
    const ttftMin = Math.min(...ttft);
    console.log(`TBT measured ${tbt.toFixed(2)} ms vs model ${decodeStep.toFixed(2)} ms; TTFT of ${PROBE}-token probes under load: ` +
      `best ${ttftMin.toFixed(1)} ms vs model ${ttftModelMin.toFixed(1)} ms, p50 ${median(ttft).toFixed(1)} ms vs model mean ${ttftModelMean.toFixed(1)} ms ` +
      `(all: ${ttft.map((x) => x.toFixed(0)).join(' ')}; x${TIME_SCALE} time scale)`);
    expect(Math.abs(tbt / decodeStep - 1)).toBeLessThan(0.1);
    expect(Math.abs(ttftMin / ttftModelMin - 1)).toBeLessThan(0.1);
  }, 40_000);

  it('a locked lower clock lowers power and lengthens prefill as the model says', async () => {
    const P = 3000;
    const measure = async (mhz: number) => {
      // client, HTTP and timer overheads (and other load on the machine) only ever add time: keep the best of 5
      const trials: number[] = [];
      for (let i = 0; i < 5; i++) trials.push((await timedStream(ids(P), 1))[0] * TIME_SCALE);
      const ttft = Math.min(...trials);
      let powerW = 0;
      // decode power, read from the emulated GPU while a stream is decoding
      await timedStream(ids(64), 30, (i) => {
        if (i === 15) void admin('/admin/gpu').then((g) => (powerW = g.powerMw.reduce((s, x) => s + x, 0) / 1000));
      });
      const g = await admin('/admin/gpu');
      expect(g.clockMhz).toBe(mhz);
      return { ttft, powerW };
    };
    const reset = await admin('/admin/gpu/reset-clocks');
    await timedStream(ids(P), 1); // warm-up (JIT of the request path)
    expect(reset).toMatchObject({ clockMhz: 1980, lockedMinMhz: null, lockedMaxMhz: null, maxClockMhz: 1980, gpuCount: TP });
    const fast = await measure(1980);
    // clamped to the supported list: highest supported <= 1207 is 1200, lowest >= 100 is 345
    const locked = await admin('/admin/gpu/lock-clocks', { minMhz: 100, maxMhz: 1207 });
    expect(locked).toMatchObject({ clockMhz: 1200, lockedMinMhz: 345, lockedMaxMhz: 1200 });
    const slow = await measure(1200);
    const ttftRatioModel = perf.ttftMs(P, TP, 1200) / perf.ttftMs(P, TP, 1980);
    const decode1 = (f: number) => perf.stepPowerW({ prefillTokens: 0, decodeSeqs: 1, decodeContextTokens: 64 + 15 }, TP, f) * TP;
    console.log(`prefill ${P} tokens: ${fast.ttft.toFixed(1)} ms at 1980 MHz, ${slow.ttft.toFixed(1)} ms at 1200 MHz (model ${perf.ttftMs(P, TP, 1980).toFixed(1)}, ${perf.ttftMs(P, TP, 1200).toFixed(1)}; ratio ${ttftRatioModel.toFixed(3)}); decode power ${fast.powerW.toFixed(0)} W -> ${slow.powerW.toFixed(0)} W (model ${decode1(1980).toFixed(0)} -> ${decode1(1200).toFixed(0)} W)`);
    expect(slow.ttft).toBeGreaterThan(fast.ttft);
    expect(Math.abs(slow.ttft / fast.ttft / ttftRatioModel - 1)).toBeLessThan(0.1);
    expect(Math.abs(fast.ttft / perf.ttftMs(P, TP, 1980) - 1)).toBeLessThan(0.1);
    expect(Math.abs(slow.ttft / perf.ttftMs(P, TP, 1200) - 1)).toBeLessThan(0.1);
    expect(slow.powerW).toBeLessThan(fast.powerW);
    expect(Math.abs(fast.powerW / decode1(1980) - 1)).toBeLessThan(0.05);
    expect(Math.abs(slow.powerW / decode1(1200) - 1)).toBeLessThan(0.05);
    // energy counter is cumulative and idle power is the model's loaded idle power
    const a = await admin('/admin/gpu/reset-clocks');
    await new Promise((r) => setTimeout(r, 250));
    const b = await admin('/admin/gpu');
    expect(b.energyMj[0]).toBeGreaterThan(a.energyMj[0]);
    expect(b.powerMw[0]).toBe(Math.round(perf.idlePowerW(TP, 1980, true) * 1000));
  }, 30_000);

  it('sleep mode drops power to unloaded idle and refuses work until woken', async () => {
    await engine.sleep();
    expect(await engine.isSleeping()).toBe(true);
    const g = await admin('/admin/gpu');
    expect(g.powerMw[0]).toBe(Math.round(perf.idlePowerW(TP, 1980, false) * 1000));
    const res = await fetch(`${engine.baseUrl}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: SERVED, prompt: 'x', max_tokens: 1 }) });
    expect(res.status).toBe(503);
    await engine.wakeUp();
    expect(await engine.isSleeping()).toBe(false);
    const r = await client.completions.create({ model: SERVED, prompt: 'x', max_tokens: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming & Extra);
    expect(r.usage?.completion_tokens).toBe(2);
  });
});
