/**
 * Request migration never gives the client a corrupt answer (actors/gateway/legs.ts, nats-backend.ts,
 * src/policy/drain-migration.ts; docs/DATAPATH.md "Request migration"):
 * - a tool-call or reasoning delta counts its tokens and makes the stream opaque: it is not continued with a
 *   text-only prompt (the model would write the call or the reasoning again); a broken leg ends it with an explicit
 *   retryable error; a finished leg's usage is the engine's count;
 * - guided decoding (response_format json, guided_*, structural_tag) is not continuable, nor moved by a drain, nor
 *   is a request that may call a tool;
 * - a continuation of a chat the client sent with continue_final_message extends the client's own final message;
 * - two resumes from the same journal never ask for the same leg id;
 * - a client that goes away while a later leg waits for its grant cancels that leg at once;
 * - a continuation's completion logprobs have their text offsets counted from the start of the whole answer.
 * The NatsBackend cases run on a ManualClock over an in-memory Bus (test/helpers/virtual-bus.ts) with engines on real
 * sockets.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { Cancel, TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend, type NatsBackendOptions } from '../../actors/gateway/nats-backend.ts';
import { MigrationText, canMigrate, continuation, resumedState, sentEvent, type StreamState } from '../../actors/gateway/legs.ts';
import { continuable, guided, mayCallTools } from '../../src/policy/drain-migration.ts';
import { legOf } from '../../actors/instance-manager/drain-migrate.ts';
import { parseEvent } from '../../src/engine/sse-event.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';
import { crossStopEvent, crossStopOf } from '../../actors/gateway/stop-across.ts';
import { codePointLength } from '../../actors/gateway/openai.ts';

const START = 1_700_000_000_000;
const fresh = (): StreamState => ({ out: 0, sent: 0, text: '', textBytes: 0, keepText: true, energyJ: 0, legs: 0 });
const kept = () => new MigrationText({ maxBytes: 1 << 20, maxTotalBytes: 1 << 24 });
const chatReq = (params?: InferenceRequest['params']): InferenceRequest => ({
  v: 1, id: 'c1', model: 'm', kind: 'chat', messages: [{ role: 'user', content: 'weather?' }], inputTokens: 5, maxTokens: 100,
  arrivalMs: START, giveUpAtMs: START + 60_000, streamSubject: subjects.stream('c1'), ...(params ? { params } : {}),
});
const call0 = { index: 0, id: 'chatcmpl-tool-1', type: 'function', function: { name: 'get_weather', arguments: '' } };

describe('sentEvent: tool-call and reasoning deltas', () => {
  it('a tool-call delta counts its token and makes the stream opaque: it cannot migrate', () => {
    const mt = kept();
    const st = fresh();
    expect(sentEvent(st, { text: 'Let me check. ' }, mt)).toBe(1);
    expect(canMigrate(chatReq(), st, 3, START)).toBe(true);
    expect(sentEvent(st, { text: '', toolCalls: [call0] }, mt)).toBe(1);
    expect(sentEvent(st, { text: '', toolCalls: [{ index: 0, function: { arguments: '{"ci' } }], tokens: 3 }, mt)).toBe(3);
    expect(st.sent).toBe(5);
    expect(st.opaque).toBe(true);
    expect(canMigrate(chatReq(), st, 3, START)).toBe(false);
    // the text it kept left the gateway's total at once
    expect(mt.totalBytes).toBe(0);
  });

  it('a reasoning delta (alone: nothing else sent) makes it opaque too; an empty one does not', () => {
    const st = fresh();
    const mt = kept();
    expect(sentEvent(st, { text: '', reasoning: '' }, mt)).toBe(0);
    expect(canMigrate(chatReq(), st, 3, START)).toBe(true);
    expect(sentEvent(st, { text: '', reasoning: 'The user asks' }, mt)).toBe(1);
    expect(st.sent).toBe(1);
    expect(canMigrate(chatReq(), st, 3, START)).toBe(false);
  });

  it("an engine event of several tool-call tokens carries their count (the emulator's token offsets)", () => {
    const data = JSON.stringify({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city": "Par' } }] }, finish_reason: null }], dynamollm_token_offsets_ms: [0, 1, 2] });
    expect(parseEvent(data, true, 0)).toMatchObject({ tokens: 3 });
  });
});

describe('guided decoding and tools', () => {
  const structured: InferenceRequest['params'][] = [
    { response_format: { type: 'json_object' } },
    { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } } },
    { guided_json: { type: 'object' } }, { guided_regex: '[a-z]+' }, { guided_choice: ['a', 'b'] }, { guided_grammar: 'root ::= "a"' }, { structural_tag: '{}' },
  ];
  it('a request with guided decoding is not continuable: it migrates only while nothing reached its client', () => {
    for (const params of structured) {
      expect(guided(params), JSON.stringify(params)).toBe(true);
      expect(continuable(chatReq(params)), JSON.stringify(params)).toBe(false);
      // text sent: no continuation; nothing sent yet: the request runs again as it came (rerunnable)
      expect(canMigrate(chatReq(params), { ...fresh(), out: 1, sent: 1, text: '{' }, 3, START), JSON.stringify(params)).toBe(false);
      expect(canMigrate(chatReq(params), fresh(), 3, START), JSON.stringify(params)).toBe(true);
      expect(continuable({ prompt: 'x', params }), JSON.stringify(params)).toBe(false);
    }
    expect(continuable(chatReq({ response_format: { type: 'text' } }))).toBe(true);
    expect(continuable(chatReq({ temperature: 0 } as InferenceRequest['params']))).toBe(true);
  });

  it('a drain moves neither a guided request nor one that may call a tool', () => {
    const view = (params?: InferenceRequest['params']) => legOf({ req: { ...chatReq(params), direct: true }, firstTokenMs: 1, tbtSum: 10, tbtN: 1 }).movable;
    expect(view()).toBe(true);
    expect(view({ guided_json: { type: 'object' } })).toBe(false);
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    expect(mayCallTools({ tools })).toBe(true);
    expect(view({ tools })).toBe(false);
    expect(view({ tools, tool_choice: 'none' })).toBe(true);
  });
});

describe('continuation ids and messages', () => {
  it("a chat sent with continue_final_message continues the client's own final assistant message", () => {
    const req: InferenceRequest = { ...chatReq({ continue_final_message: true, add_generation_prompt: false }), messages: [{ role: 'user', content: 'Say hi' }, { role: 'assistant', content: 'Hi the' }] };
    const st = { ...fresh(), sent: 2, text: 're, friend', legs: 1 };
    expect(continuation(req, st).messages).toEqual([{ role: 'user', content: 'Say hi' }, { role: 'assistant', content: 'Hi there, friend' }]);
    // without it, the assistant turn being written is a new message
    expect(continuation(chatReq(), st).messages).toEqual([{ role: 'user', content: 'weather?' }, { role: 'assistant', content: 're, friend' }]);
  });

  it('two resumes from the same journal (the first died before it journaled its leg) ask for different leg ids', () => {
    const req = { ...chatReq(), kind: 'completion' as const, messages: undefined, prompt: 'Hi' };
    const from = { sent: 3, text: 'a b c', leg: { id: 'c1', legs: 0, sentBefore: 0, energyJ: 0 }, resumes: 0 };
    const a = continuation(req, resumedState(req, from, 1 << 20));
    const b = continuation(req, resumedState(req, from, 1 << 20));
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^c1-/);
    expect(a.id.length).toBeLessThanOrEqual(128);
  });
});

/** An engine on a real socket: the `i`th completion it is asked for streams `script(i)`'s events; `dies`: then its socket is destroyed. */
async function engine(script: (i: number) => { events: unknown[]; dies: boolean }) {
  const bodies: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (b: Buffer) => (raw += b.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(raw) as Record<string, unknown>);
      const { events, dies } = script(bodies.length - 1);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
      if (dies) setTimeout(() => res.socket?.destroy(), 20);
      else res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, close: () => server.close() };
}

const delta = (d: Record<string, unknown>, finish: string | null = null, usage?: unknown) => ({ choices: [{ index: 0, delta: d, finish_reason: finish }], ...(usage ? { usage } : {}) });
const toolEvents = [delta({ role: 'assistant', content: '' }), delta({ tool_calls: [{ ...call0, function: { name: 'get_weather', arguments: '' } }] }), delta({ tool_calls: [{ index: 0, function: { arguments: '{"city": ' } }] }), delta({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] })];

async function until(ok: () => boolean): Promise<void> {
  for (let t = 0; !ok() && t < 5000; t += 5) await new Promise((r) => setTimeout(r, 5));
}
async function run(clock: ManualClock, ms: number, stepMs = 5): Promise<void> {
  for (let left = ms; left > 0; left -= stepMs) {
    clock.advance(Math.min(stepMs, left));
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** A NatsBackend (direct) on a virtual clock whose intake grants the `k`th leg `grantOf(k)`'s engine (none: admitted, never granted). */
function setup(grantOf: (k: number) => string | undefined, opts: NatsBackendOptions = {}) {
  const clock = new ManualClock(START);
  const bus = new VirtualBus(clock);
  const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, ...opts, clock });
  const legs: string[] = [];
  bus.responders.set(subjects.clusterIntake(), (m, reply) => {
    const leg = m as InferenceRequest;
    if (!legs.includes(leg.id)) legs.push(leg.id);
    const k = legs.indexOf(leg.id);
    const url = grantOf(k);
    if (url) bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: `i${k}`, pool: 'pool-all', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
    reply({ v: 1, id: leg.id, ok: true, pool: 'pool-all', instance: `i${k}`, type: 'SS' });
  });
  bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 12 }));
  const cancels: string[] = [];
  bus.subscribe(subjects.cancelAll(), Cancel, (c) => cancels.push(c.id));
  return { clock, bus, backend, legs, cancels };
}

/** Reads `req`'s stream through `backend` on `clock` until it ends; the chunks, and the error it threw. */
async function read(clock: ManualClock, backend: NatsBackend, req: InferenceRequest, signal = new AbortController().signal) {
  const chunks: TokenChunk[] = [];
  const out: { error?: unknown; done?: boolean } = {};
  const s = backend.submit(req, signal);
  await run(clock, 5);
  (async () => {
    for await (const c of await s) chunks.push(c);
  })().then(() => (out.done = true), (e: unknown) => Object.assign(out, { error: e, done: true }));
  return { chunks, out };
}

describe('a stream that sent a tool call (NatsBackend, direct engine)', () => {
  it('its engine dies mid tool call: an explicit retryable error, no continuation leg, no tool call written twice', async () => {
    const dead = await engine(() => ({ events: toolEvents, dies: true }));
    const peer = await engine(() => ({ events: [...toolEvents, delta({}, 'tool_calls', { prompt_tokens: 5, completion_tokens: 3 })], dies: false }));
    const { clock, backend, legs } = setup((k) => (k === 0 ? dead.url : peer.url));
    try {
      const req = { ...chatReq({ tools: [{ type: 'function', function: { name: 'get_weather' } }], tool_choice: 'required' }), id: 'tc1', streamSubject: subjects.stream('tc1') };
      const { chunks, out } = await read(clock, backend, req);
      await until(() => out.done === true);
      await run(clock, 1000, 50);
      expect(out.error).toBeUndefined();
      const names = chunks.flatMap((c) => c.toolCalls ?? []).map((t) => (t.function as { name?: string } | undefined)?.name).filter((n) => n !== undefined);
      expect(names).toEqual(['get_weather']);
      expect(legs).toEqual(['tc1']);
      expect(backend.counters.migrated).toBe(0);
      expect(peer.bodies).toEqual([]);
      const last = chunks.at(-1)!;
      expect(last).toMatchObject({ done: true, finishReason: 'error', error: { code: 'engine_crashed', retryable: true } });
      expect(last.error!.message).toMatch(/tool call or reasoning/);
      // the three tool-call deltas the client got were counted
      expect(chunks.reduce((a, c) => a + c.tokens, 0)).toBe(3);
      expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
    } finally {
      dead.close();
      peer.close();
    }
  });

  it("a tool call that completes: usage counts its tokens, the engine's count", async () => {
    const eng = await engine(() => ({ events: [...toolEvents, delta({}, 'tool_calls', { prompt_tokens: 5, completion_tokens: 7 })], dies: false }));
    const { clock, backend } = setup(() => eng.url);
    try {
      const req = { ...chatReq({ tools: [{ type: 'function', function: { name: 'get_weather' } }], tool_choice: 'required' }), id: 'tc2', streamSubject: subjects.stream('tc2') };
      const { chunks, out } = await read(clock, backend, req);
      await until(() => out.done === true);
      expect(out.error).toBeUndefined();
      expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'tool_calls', usage: { completionTokens: 7 } });
    } finally {
      eng.close();
    }
  });
});

describe('a client that goes away after a migration', () => {
  it('cancels the leg that waits for its grant at once, and the stream ends', async () => {
    const dead = await engine(() => ({ events: [{ choices: [{ index: 0, text: 'a0 ', finish_reason: null }] }, { choices: [{ index: 0, text: 'a1 ', finish_reason: null }] }], dies: true }));
    // the continuation is admitted by an instance that never grants it (its grant still on its way)
    const { clock, backend, legs, cancels } = setup((k) => (k === 0 ? dead.url : undefined));
    try {
      const req: InferenceRequest = { v: 1, id: 'ab1', model: 'm', kind: 'completion', prompt: 'hello', inputTokens: 2, maxTokens: 8, arrivalMs: START, giveUpAtMs: START + 600_000, streamSubject: subjects.stream('ab1') };
      const ac = new AbortController();
      const { chunks, out } = await read(clock, backend, req, ac.signal);
      await until(() => legs.length === 2 && backend.counters.migrated === 1);
      await run(clock, 1000, 50);
      expect(chunks.map((c) => c.text).join('')).toBe('a0 a1 ');
      expect(out.done).toBeUndefined();
      ac.abort();
      await run(clock, 100, 5);
      await until(() => out.done === true);
      // the waiting leg heard of it at once (not at its chunkTimeoutMs), and was cancelled at its instance
      expect(out.done).toBe(true);
      expect(cancels).toContain(legs[1]);
    } finally {
      dead.close();
    }
  });
});

describe('logprobs across legs', () => {
  it("a continuation's text_offset continues from the text sent before it, not from 0", async () => {
    const lp = (name: string, i: number) => ({ tokens: [`${name}${i} `], token_logprobs: [-0.5], top_logprobs: [{}], text_offset: [i * 3] });
    const ev = (name: string, i: number, finish: string | null = null, usage?: unknown) => ({ choices: [{ index: 0, text: `${name}${i} `, logprobs: lp(name, i), finish_reason: finish }], ...(usage ? { usage } : {}) });
    const dead = await engine(() => ({ events: [ev('a', 0), ev('a', 1)], dies: true }));
    const peer = await engine(() => ({ events: [ev('b', 0), ev('b', 1, 'length', { prompt_tokens: 4, completion_tokens: 2 })], dies: false }));
    const { clock, backend } = setup((k) => (k === 0 ? dead.url : peer.url));
    try {
      const req: InferenceRequest = { v: 1, id: 'lp1', model: 'm', kind: 'completion', prompt: 'hello', inputTokens: 2, maxTokens: 4, arrivalMs: START, giveUpAtMs: START + 600_000, streamSubject: subjects.stream('lp1'), params: { logprobs: 0 } };
      const { chunks, out } = await read(clock, backend, req);
      await until(() => out.done === true);
      expect(out.error).toBeUndefined();
      expect(chunks.map((c) => c.text).join('')).toBe('a0 a1 b0 b1 ');
      expect(chunks.flatMap((c) => (c.logprobs?.text_offset as number[] | undefined) ?? [])).toEqual([0, 3, 6, 9]);
      // offsets count code points, as vLLM (Python's len)
      expect(codePointLength('a\u{1F600}b')).toBe(3);
    } finally {
      dead.close();
      peer.close();
    }
  });
});

describe('a stop string split across legs', () => {
  const ev = (text: string, finish: string | null = null, usage?: unknown) => ({ choices: [{ index: 0, text, finish_reason: finish, stop_reason: null }], ...(usage ? { usage } : {}) });
  const stopReq = (id: string, params: InferenceRequest['params']): InferenceRequest => ({
    v: 1, id, model: 'm', kind: 'completion', prompt: 'hello', inputTokens: 2, maxTokens: 16, arrivalMs: START, giveUpAtMs: START + 600_000, streamSubject: subjects.stream(id), params,
  });
  /** leg 1 sends "a0 E" and dies; its continuation writes "ND b1 " and more: "END" completes across the boundary. */
  async function split(id: string, params: InferenceRequest['params'], peerEvents = [ev('N'), ev('D b1 '), ev('b2 '), ev('b3 ', 'length', { prompt_tokens: 6, completion_tokens: 4 })]) {
    const dead = await engine(() => ({ events: [ev('a0 '), ev('E')], dies: true }));
    const peer = await engine(() => ({ events: peerEvents, dies: false }));
    const { clock, backend, cancels, legs } = setup((k) => (k === 0 ? dead.url : peer.url));
    try {
      const { chunks, out } = await read(clock, backend, stopReq(id, params));
      await until(() => out.done === true);
      await run(clock, 200, 50);
      expect(out.error).toBeUndefined();
      expect(backend.counters.migrated).toBe(1);
      return { chunks, cancels, legs, peer };
    } finally {
      dead.close();
      peer.close();
    }
  }

  it('ends the stream at the stop string, as one vLLM request: finish_reason stop, stop_reason, the string not sent', async () => {
    const { chunks } = await split('st1', { stop: ['zz', 'END'] });
    expect(chunks.map((c) => c.text).join('')).toBe('a0 E');
    const last = chunks.at(-1)!;
    expect(last).toMatchObject({ done: true, finishReason: 'stop', stopReason: 'END' });
    // the tokens the continuation wrote up to the stop string count (vLLM counts a stop string's tokens)
    expect(last.usage?.completionTokens).toBe(4);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
  });

  it('with include_stop_str_in_output the stop string is sent, and nothing after it', async () => {
    const { chunks } = await split('st2', { stop: 'END', include_stop_str_in_output: true });
    expect(chunks.map((c) => c.text).join('')).toBe('a0 END');
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'stop', stopReason: 'END' });
  });

  it('read pushed (the HTTP layer reads batches into a sink): the same end', async () => {
    const dead = await engine(() => ({ events: [ev('a0 '), ev('E')], dies: true }));
    const peer = await engine(() => ({ events: [ev('N'), ev('D b1 '), ev('b2 ', 'length', { prompt_tokens: 6, completion_tokens: 3 })], dies: false }));
    const { clock, backend } = setup((k) => (k === 0 ? dead.url : peer.url));
    try {
      const s = backend.submit(stopReq('st4', { stop: ['END'] }), new AbortController().signal);
      await run(clock, 5);
      const chunks: TokenChunk[] = [];
      const out: { done?: boolean; error?: unknown } = {};
      void (async () => {
        for await (const b of (await s).batches((b) => chunks.push(...b))) chunks.push(...b);
      })().then(() => (out.done = true), (e: unknown) => Object.assign(out, { done: true, error: e }));
      for (let i = 0; i < 200 && !out.done; i++) await run(clock, 20, 20).then(() => new Promise((r) => setTimeout(r, 20)));
      expect(out.error).toBeUndefined();
      expect(chunks.map((c) => c.text).join('')).toBe('a0 E');
      expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'stop', stopReason: 'END' });
    } finally {
      dead.close();
      peer.close();
    }
  });

  it('the watch: the first stop string to complete wins, text that may start one is held, min_tokens defers it', () => {
    const req = (params: InferenceRequest['params'], minTokens?: number) => ({ ...stopReq('w', params), ...(minTokens !== undefined ? { minTokens } : {}) });
    const w = crossStopOf(req({ stop: ['CDEF', 'CD'] }), 3, 'xxABC')!;
    expect(crossStopEvent(w, { text: 'D tail' })).toMatchObject({ ch: { text: '', finishReason: 'stop', stopReason: 'CD' }, stopped: true });
    const h = crossStopOf(req({ stop: ['ABCD'] }), 3, 'xxAB')!;
    expect(crossStopEvent(h, { text: 'C' })).toBe('hold');
    expect(crossStopEvent(h, { text: 'x y' })).toEqual({ ch: { text: 'Cx y', tokens: 2 }, stopped: false, ended: true });
    const m = crossStopOf(req({ stop: ['ABCD'] }, 6), 3, 'xxAB')!;
    expect(crossStopEvent(m, { text: 'CD z' })).toMatchObject({ ch: { text: 'CD z' }, stopped: false, ended: true });
    expect(crossStopOf(req({ stop: ['X'] }), 3, 'abX')).toBeUndefined();
  });

  it('a continuation that does not complete it streams on to its own end', async () => {
    const { chunks } = await split('st3', { stop: ['END'] }, [ev('NX b1 '), ev('b2 ', 'length', { prompt_tokens: 6, completion_tokens: 2 })]);
    expect(chunks.map((c) => c.text).join('')).toBe('a0 ENX b1 b2 ');
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length' });
  });
});

describe("an engine's token count across legs (vLLM's continuous usage)", () => {
  // vLLM's bytes: an event may hold several tokens (--stream-interval, text held back) and says so only in its usage so far
  const vev = (text: string, n: number, finish: string | null = null) => ({
    id: 'cmpl-1', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null }],
    usage: { prompt_tokens: 2, total_tokens: 2 + n, completion_tokens: n },
  });
  it('the continuation asks for max_tokens less the tokens the engine made, and usage counts them all', async () => {
    const dead = await engine(() => ({ events: [vev('a b c ', 3), vev('d e ', 5), vev('f ', 6)], dies: true }));
    const peer = await engine(() => ({ events: [vev('g h ', 2), vev('i ', 3, 'length'), { choices: [], usage: { prompt_tokens: 9, completion_tokens: 3 } }], dies: false }));
    const { clock, backend } = setup((k) => (k === 0 ? dead.url : peer.url));
    try {
      const req: InferenceRequest = { v: 1, id: 'cu1', model: 'm', kind: 'completion', prompt: 'hello', inputTokens: 2, maxTokens: 16, arrivalMs: START, giveUpAtMs: START + 600_000, streamSubject: subjects.stream('cu1') };
      const { chunks, out } = await read(clock, backend, req);
      await until(() => out.done === true);
      expect(out.error).toBeUndefined();
      expect(chunks.map((c) => c.text).join('')).toBe('a b c d e f g h i ');
      expect(peer.bodies[0]!.max_tokens).toBe(10);
      expect(peer.bodies[0]!.prompt).toBe('helloa b c d e f ');
      expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { completionTokens: 9 } });
      expect(dead.bodies[0]!.stream_options).toEqual({ include_usage: true, continuous_usage_stats: true });
    } finally {
      dead.close();
      peer.close();
    }
  });
});

describe("the count of a continuation's prompt", () => {
  const ev = (text: string, finish: string | null = null, usage?: unknown) => ({ choices: [{ index: 0, text, finish_reason: finish }], ...(usage ? { usage } : {}) });
  const longReq = (id: string, inputTokens: number, maxTokens: number): InferenceRequest => ({
    v: 1, id, model: 'm', kind: 'completion', prompt: 'hello', inputTokens, maxTokens, arrivalMs: START, giveUpAtMs: START + 600_000, streamSubject: subjects.stream(id),
  });

  it("a continuation whose counted prompt leaves less room in the context than max_tokens asks for what fits (vLLM refuses more)", async () => {
    const dead = await engine(() => ({ events: [ev('a0 '), ev('a1 ')], dies: true }));
    const peer = await engine(() => ({ events: [ev('b0 ', 'length', { prompt_tokens: 4000, completion_tokens: 1 })], dies: false }));
    const { clock, bus, backend } = setup((k) => (k === 0 ? dead.url : peer.url));
    // the prompt and the text sent count 4,000 tokens (2 more than the request's 3,996 and its 2 tokens: a retokenized text)
    bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 4000, maxModelLen: 4096 }));
    try {
      const { out } = await read(clock, backend, longReq('cl1', 3996, 100));
      await until(() => out.done === true);
      expect(out.error).toBeUndefined();
      expect(peer.bodies[0]!.max_tokens).toBe(96);
    } finally {
      dead.close();
      peer.close();
    }
  });

  it("a continuation whose counted prompt fills the context ends the stream as vLLM at max_model_len: finish_reason length, usage of the tokens made, no leg", async () => {
    const dead = await engine(() => ({ events: [ev('a0 '), ev('a1 ')], dies: true }));
    const { clock, bus, backend, legs } = setup(() => dead.url);
    // the prompt (4,094 tokens) and the 2 tokens sent count the whole context: vLLM would stop this request with 'length'
    bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 4096, maxModelLen: 4096 }));
    try {
      const { chunks, out } = await read(clock, backend, longReq('cl4', 4094, 100));
      await until(() => out.done === true);
      expect(out.error).toBeUndefined();
      expect(chunks.map((c) => c.text).join('')).toBe('a0 a1 ');
      expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { promptTokens: 4094, completionTokens: 2 } });
      expect(chunks.at(-1)!.error).toBeUndefined();
      expect(legs).toEqual(['cl4']);
    } finally {
      dead.close();
    }
  });

  it("a resumed stream whose counted prompt and journaled text fill the context ends as vLLM at max_model_len: finish_reason length, no leg, no error", async () => {
    const { clock, bus, backend, legs } = setup(() => undefined);
    // the prompt (4,094 tokens) and the 2 tokens the journal holds count the whole context
    bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 4096, maxModelLen: 4096 }));
    const out: { chunks: TokenChunk[]; error?: unknown; done?: boolean } = { chunks: [] };
    void (async () => {
      for await (const c of await backend.resume(longReq('cl5', 4094, 100), { sent: 2, text: 'a0 a1 ', resumes: 0 }, new AbortController().signal)) out.chunks.push(c);
    })().then(() => (out.done = true), (e: unknown) => Object.assign(out, { error: e, done: true }));
    for (let i = 0; i < 100 && !out.done; i++) await run(clock, 10);
    expect(out.error).toBeUndefined();
    expect(out.chunks).toHaveLength(1);
    expect(out.chunks[0]).toMatchObject({ seq: 0, text: '', done: true, finishReason: 'length', usage: { promptTokens: 4094, completionTokens: 2 } });
    expect(out.chunks[0]!.error).toBeUndefined();
    expect(legs).toEqual([]);
    expect(backend.counters.resumed).toBe(1);
  });

  it("a client that leaves while the continuation's prompt is counted ends the stream at once, and no leg is admitted", async () => {
    const dead = await engine(() => ({ events: [ev('a0 '), ev('a1 ')], dies: true }));
    const { clock, bus, backend, legs } = setup(() => dead.url);
    // no instance's tokenizer answers
    bus.responders.set(subjects.tokenize(), () => undefined);
    try {
      const ac = new AbortController();
      const { out } = await read(clock, backend, longReq('cl2', 2, 100), ac.signal);
      await until(() => bus.sent.some((s) => s.subject === subjects.tokenize()));
      ac.abort();
      await run(clock, 200, 20);
      await until(() => out.done === true);
      expect(out.done).toBe(true);
      expect(legs).toEqual(['cl2']);
    } finally {
      dead.close();
    }
  });

  it('the count waits no longer than an admission attempt (tokenizeTimeoutMs 60 s here): then the estimate stands', async () => {
    const dead = await engine(() => ({ events: [ev('a0 '), ev('a1 ')], dies: true }));
    const peer = await engine(() => ({ events: [ev('b0 ', 'length', { prompt_tokens: 4, completion_tokens: 1 })], dies: false }));
    const { clock, bus, backend, legs } = setup((k) => (k === 0 ? dead.url : peer.url), { tokenizeTimeoutMs: 60_000, admitAttemptMs: 2000 });
    bus.responders.set(subjects.tokenize(), () => undefined);
    try {
      const { out } = await read(clock, backend, longReq('cl3', 2, 100));
      await until(() => bus.sent.some((s) => s.subject === subjects.tokenize()));
      const asked = clock.now();
      for (let i = 0; i < 100 && legs.length < 2; i++) await run(clock, 100, 20);
      expect(legs.length).toBe(2);
      expect(bus.sent.find((s) => s.id === legs[1])!.atMs - asked).toBeLessThanOrEqual(2000);
      await until(() => out.done === true);
      expect(peer.bodies[0]!.max_tokens).toBe(98);
    } finally {
      dead.close();
      peer.close();
    }
  });
});
