/**
 * The gateway's HTTP layer against a scripted backend: the official `openai` client for completions and
 * chat (streaming and not, include_usage, energy in usage), OpenAI-style errors (400/401/404/413/429/503
 * with Retry-After), mid-stream errors, and client disconnect aborting the request downstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { DynError } from '../../protocols/errors.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { encodeChat, encodeText } from '../../src/engine/emulator/tokenizer.ts';

/** Scripted backend: the prompt text selects the behaviour; otherwise it streams maxTokens words. */
class ScriptedBackend implements GatewayBackend {
  seen: InferenceRequest[] = [];
  aborted: string[] = [];
  async submit(req: InferenceRequest, signal: AbortSignal): Promise<AsyncIterable<TokenChunk>> {
    this.seen.push(req);
    signal.addEventListener('abort', () => this.aborted.push(req.id), { once: true });
    const text = typeof req.prompt === 'string' ? req.prompt : (req.messages?.map((m) => (typeof m.content === 'string' ? m.content : JSON.stringify(m.content))).join(' ') ?? '');
    if (text.includes('OVERLOAD')) throw new DynError('overloaded', 'all pools are full', { retryable: true, retryAfterS: 3 });
    if (text.includes('NOBODY')) throw new DynError('no_responders', 'no cluster manager', { retryable: true });
    const slow = text.includes('SLOW');
    // CHOICE1ERR: the request's second choice (id suffix _1) fails mid-stream, CHOICE1REFUSED: it is refused
    const midError = text.includes('MIDERROR') || (text.includes('CHOICE1ERR') && req.id.endsWith('_1'));
    if (text.includes('CHOICE1REFUSED') && req.id.endsWith('_1')) throw new DynError('overloaded', 'all pools are full', { retryable: true, retryAfterS: 3 });
    // a seeded request's words carry its seed, so that choices (seed + i) differ
    const tag = req.params?.seed !== undefined ? `s${req.params.seed}` : '';
    async function* gen(): AsyncGenerator<TokenChunk> {
      let seq = 0;
      for (let i = 0; i < req.maxTokens; i++) {
        if (signal.aborted) return;
        if (midError && i === 2) {
          yield { v: 1, id: req.id, seq: seq++, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'engine_crashed', message: 'engine died', retryable: true } };
          return;
        }
        if (slow) await new Promise((r) => setTimeout(r, 20));
        yield { v: 1, id: req.id, seq: seq++, text: ` ${tag}w${i}`, tokens: 1 };
      }
      yield {
        v: 1, id: req.id, seq, text: '', tokens: 0, done: true, finishReason: 'length',
        usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 12.5 * req.maxTokens, energySource: 'modelled' },
      };
    }
    return gen();
  }
}

const backend = new ScriptedBackend();
const metrics = new TelemetryMetrics({ processMetrics: false });
let gw: GatewayServer;
let base: string;
const KEY = 'sk-test-123';
const PROBE_TOKEN = 'probe-token-0123456789abcdef';

beforeAll(async () => {
  gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', apiKeys: [KEY], bodyLimitBytes: 4096, models: ['m1'], metrics, probeToken: PROBE_TOKEN });
  const port = await gw.listen();
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await gw.close(100);
});

const client = () => new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0 });

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, body: (await r.json()) as { error?: { message: string; type: string; code: number; param: string | null } } };
}

describe('gateway OpenAI API (openai client)', () => {
  it('non-streaming completion carries text, finish reason and energy usage', async () => {
    const r = await client().completions.create({ model: 'm1', prompt: 'hello there world', max_tokens: 5 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]!.text).toBe(' w0 w1 w2 w3 w4');
    expect(r.choices[0]!.finish_reason).toBe('length');
    // a backend without a tokenizer: the gateway counts with the emulator's Llama BPE (BOS + 3 words)
    const n = encodeText('hello there world').length;
    expect(n).toBe(4);
    expect(r.usage).toMatchObject({ prompt_tokens: n, completion_tokens: 5, total_tokens: n + 5, energy_joules: 62.5, energy_source: 'modelled' });
    const seen = backend.seen.at(-1)!;
    expect(seen.inputTokens).toBe(n);
    expect(seen.giveUpAtMs).toBeGreaterThan(seen.arrivalMs);
  });

  it('streaming chat with include_usage: role first, content deltas, finish, usage chunk', async () => {
    const s = await client().chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of s) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(' w0 w1 w2 w3');
    const fin = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(fin?.choices[0]!.finish_reason).toBe('length');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 4, energy_joules: 50, energy_source: 'modelled' });
  });

  it('non-streaming chat and streaming completion', async () => {
    const c = await client().chat.completions.create({ model: 'm1', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'hi' }] }], max_tokens: 3 });
    expect(c.choices[0]!.message).toMatchObject({ role: 'assistant', content: ' w0 w1 w2' });
    expect(backend.seen.at(-1)!.inputTokens).toBe(encodeChat([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }]).length);
    const s = await client().completions.create({ model: 'm1', prompt: [1, 2, 3, 4, 5, 6, 7], max_tokens: 2, stream: true });
    let t = '';
    for await (const ch of s) t += ch.choices[0]?.text ?? '';
    expect(t).toBe(' w0 w1');
    expect(backend.seen.at(-1)!.inputTokens).toBe(7);
  });

  it('n choices: each is its own request (seed + i), every choice with its index, usage summed', async () => {
    const before = backend.seen.length;
    const r = await client().completions.create({ model: 'm1', prompt: 'hello', max_tokens: 3, n: 3, seed: 7 });
    const seen = backend.seen.slice(before);
    expect(seen.map((q) => q.params?.seed)).toEqual([7, 8, 9]);
    expect(new Set(seen.map((q) => q.id)).size).toBe(3);
    expect(r.choices.map((c) => [c.index, c.text, c.finish_reason])).toEqual([[0, ' s7w0 s7w1 s7w2', 'length'], [1, ' s8w0 s8w1 s8w2', 'length'], [2, ' s9w0 s9w1 s9w2', 'length']]);
    // vLLM's usage of n choices: the prompt once, the completion tokens of all choices
    expect(r.usage).toMatchObject({ prompt_tokens: seen[0]!.inputTokens, completion_tokens: 9, total_tokens: seen[0]!.inputTokens + 9, energy_joules: 3 * 37.5 });
    const c = await client().chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, n: 2 });
    expect(c.choices.map((x) => [x.index, x.message.content])).toEqual([[0, ' w0 w1'], [1, ' w0 w1']]);
    expect(c.usage?.completion_tokens).toBe(4);
  });

  it("n choices: each choice's engine request carries its own request_id (<i>_<id>, vLLM's child ids); n 1 keeps it", async () => {
    const before = backend.seen.length;
    await client().completions.create({ model: 'm1', prompt: 'hello', max_tokens: 2, n: 3, request_id: 'abc' } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(backend.seen.slice(before).map((q) => q.params?.request_id).sort()).toEqual(['0_abc', '1_abc', '2_abc']);
    await client().completions.create({ model: 'm1', prompt: 'hello', max_tokens: 2, request_id: 'abc' } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(backend.seen.at(-1)!.params?.request_id).toBe('abc');
    const long = await post('/v1/completions', { model: 'm1', prompt: 'hello', max_tokens: 2, request_id: 'x'.repeat(257) });
    expect(long.status).toBe(400);
    expect(long.body.error?.param).toBe('request_id');
  });

  it("max_tokens by default: a chat's is the context's rest (max_model_len - prompt tokens), a completion's 16, as vLLM", async () => {
    // refused at admission (OVERLOAD): the request as submitted is what matters
    expect((await post('/v1/chat/completions', { model: 'm1', messages: [{ role: 'user', content: 'OVERLOAD' }] })).status).toBe(429);
    const chat = backend.seen.at(-1)!;
    expect(chat.maxTokens).toBe(4096 - chat.inputTokens);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'OVERLOAD' })).status).toBe(429);
    expect(backend.seen.at(-1)!.maxTokens).toBe(16);
    expect((await post('/v1/chat/completions', { model: 'm1', messages: [{ role: 'user', content: 'OVERLOAD' }], max_tokens: 7 })).status).toBe(429);
    expect(backend.seen.at(-1)!.maxTokens).toBe(7);
    // min_tokens past the context's rest is a 400
    const m = await post('/v1/chat/completions', { model: 'm1', messages: [{ role: 'user', content: 'hi' }], min_tokens: 5000 });
    expect([m.status, m.body.error?.param]).toEqual([400, 'min_tokens']);
  });

  it('n choices streamed: a role chunk per choice first, chunks with their index, a finish per choice, usage after the last', async () => {
    const s = await client().chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, n: 2, seed: 1, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } as OpenAI.ChatCompletionStreamOptions });
    const chunks = [];
    for await (const c of s) chunks.push(c);
    expect(chunks.slice(0, 2).map((c) => [c.choices[0]!.index, c.choices[0]!.delta.role])).toEqual([[0, 'assistant'], [1, 'assistant']]);
    const body = chunks.slice(2, -1);
    for (const i of [0, 1]) {
      const mine = body.filter((c) => c.choices[0]!.index === i);
      expect(mine.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe(` s${1 + i}w0 s${1 + i}w1 s${1 + i}w2`);
      expect(mine.filter((c) => c.choices[0]!.finish_reason !== null).map((c) => c.choices[0]!.finish_reason)).toEqual(['length']);
      // continuous usage counts the chunk's own choice
      expect(mine.at(-1)!.usage?.completion_tokens).toBe(3);
    }
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 6 });
    // completions: every chunk names its choice
    const t = await client().completions.create({ model: 'm1', prompt: 'x', max_tokens: 2, n: 2, stream: true });
    const texts = ['', ''];
    for await (const ch of t) texts[ch.choices[0]!.index] += ch.choices[0]!.text;
    expect(texts).toEqual([' w0 w1', ' w0 w1']);
  });

  it('n choices: one failing choice fails the request and ends the others', async () => {
    const before = backend.aborted.length;
    const r = await post('/v1/completions', { model: 'm1', prompt: 'CHOICE1ERR SLOW', max_tokens: 50, n: 3 });
    expect(r.status).toBe(503);
    const until = Date.now() + 3000;
    while (backend.aborted.length < before + 2 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    expect(backend.aborted.slice(before).sort()).toEqual(expect.arrayContaining([expect.stringMatching(/_0$/), expect.stringMatching(/_2$/)]));
    const s = await client().completions.create({ model: 'm1', prompt: 'CHOICE1ERR', max_tokens: 10, n: 2, stream: true });
    await expect((async () => {
      for await (const ch of s) expect(ch.object).toBe('text_completion');
    })()).rejects.toThrow(/the engine serving this request failed/);
    // a refused choice refuses the request, with the cluster's status
    const q = await post('/v1/completions', { model: 'm1', prompt: 'CHOICE1REFUSED', max_tokens: 5, n: 2 });
    expect(q.status).toBe(429);
    expect(gw.inflightCount).toBe(0);
  });

  it('lists models', async () => {
    const m = await client().models.list();
    expect(m.data.map((x) => x.id)).toEqual(['m1']);
  });
});

describe('gateway errors', () => {
  it('401 without or with a wrong key (OpenAI error body)', async () => {
    const none = await post('/v1/completions', { model: 'm1', prompt: 'x' }, { authorization: '' });
    expect(none.status).toBe(401);
    expect([none.body.error?.code, none.headers.get('x-dynamollm-error-code')]).toEqual([401, 'invalid_api_key']);
    const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${base}/v1`, maxRetries: 0 });
    await expect(bad.completions.create({ model: 'm1', prompt: 'x' })).rejects.toMatchObject({ status: 401 });
  });

  it('400 for invalid bodies, naming the parameter', async () => {
    expect((await post('/v1/completions', '{not json')).status).toBe(400);
    const noPrompt = await post('/v1/completions', { model: 'm1' });
    expect(noPrompt.status).toBe(400);
    expect(noPrompt.body.error?.param).toBe('prompt');
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: -1 })).body.error?.param).toBe('max_tokens');
    expect((await post('/v1/chat/completions', { model: 'm1', messages: [] })).status).toBe(400);
    expect((await post('/v1/chat/completions', { model: 'm1', messages: [{ role: 7, content: 'x' }] })).status).toBe(400);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', stream_options: { include_usage: true } })).status).toBe(400);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', temperature: -1 })).body.error?.param).toBe('temperature');
    await expect(client().completions.create({ model: 'm1', prompt: 'x', max_tokens: 0 })).rejects.toMatchObject({ status: 400 });
  });

  it("a readiness probe (x-dynamollm-probe: the probe token, up's first request) is one token of one choice, marked for the cluster; from any other client 403, larger ones 400", async () => {
    const probe = { 'x-dynamollm-probe': PROBE_TOKEN };
    expect((await post('/v1/completions', { model: 'm1', prompt: 'ping', max_tokens: 1 }, probe)).status).toBe(200);
    expect(backend.seen.at(-1)!.probe).toBe(true);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'ping', max_tokens: 1 })).status).toBe(200);
    expect(backend.seen.at(-1)!.probe).toBeUndefined();
    // an API client (a valid key) cannot mark its request a probe: it would hide its load from the planner
    const before = backend.seen.length;
    for (const v of ['1', 'yes', PROBE_TOKEN.slice(0, -1), `${PROBE_TOKEN}x`]) {
      const r = await post('/v1/completions', { model: 'm1', prompt: 'x '.repeat(1000), max_tokens: 1 }, { 'x-dynamollm-probe': v });
      expect([r.status, r.body.error?.code, r.headers.get('x-dynamollm-error-code')], v).toEqual([403, 403, 'probe_not_allowed']);
    }
    expect(backend.seen.length).toBe(before);
    const big = await post('/v1/completions', { model: 'm1', prompt: 'ping', max_tokens: 50 }, probe);
    expect(big.status).toBe(400);
    expect(big.body.error?.message).toMatch(/x-dynamollm-probe.*max_tokens 1/);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'ping', max_tokens: 1, n: 2 }, probe)).status).toBe(400);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'ping' }, probe)).status).toBe(400);
  });
  it('404 for an unknown model and an unknown route', async () => {
    const r = await post('/v1/completions', { model: 'gpt-9', prompt: 'x' });
    expect(r.status).toBe(404);
    expect(r.body.error).toEqual({ message: 'The model `gpt-9` does not exist.', type: 'NotFoundError', param: 'model', code: 404 });
    expect((await fetch(base + '/v1/nope')).status).toBe(401); // auth is checked first under /v1
    expect((await fetch(base + '/nope')).status).toBe(404);
  });

  it('413 above the body limit', async () => {
    const r = await post('/v1/completions', { model: 'm1', prompt: 'x'.repeat(10_000) });
    expect(r.status).toBe(413);
    expect([r.body.error?.code, r.headers.get('x-dynamollm-error-code')]).toEqual([413, 'request_too_large']);
  });

  it('429 with Retry-After when the cluster is overloaded, 503 when nobody answers', async () => {
    const o = await post('/v1/completions', { model: 'm1', prompt: 'OVERLOAD' });
    expect(o.status).toBe(429);
    expect(o.headers.get('retry-after')).toBe('3');
    const n = await post('/v1/completions', { model: 'm1', prompt: 'NOBODY' });
    expect(n.status).toBe(503);
    expect(Number(n.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('a mid-stream engine failure ends the SSE stream with an error event (the client throws)', async () => {
    const s = await client().completions.create({ model: 'm1', prompt: 'MIDERROR', max_tokens: 10, stream: true });
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const c of s) got.push(c.choices[0]?.text ?? '');
      })(),
    ).rejects.toThrow(/the engine serving this request failed/);
    expect(got.join('')).toBe(' w0 w1');
    // non-streaming: the same failure is a 503 with Retry-After
    const r = await post('/v1/completions', { model: 'm1', prompt: 'MIDERROR', max_tokens: 10 });
    expect(r.status).toBe(503);
  });

  it("GET /health (vLLM's: 200, empty body) is open like /healthz; GET /version gives the package's version and needs a key", async () => {
    const h = await fetch(base + '/health');
    expect(h.status).toBe(200);
    expect(await h.text()).toBe('');
    expect((await fetch(base + '/version')).status).toBe(401);
    const v = await fetch(base + '/version', { headers: { authorization: `Bearer ${KEY}` } });
    expect(v.status).toBe(200);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(await v.json()).toEqual({ version: pkg.version });
  });

  it("a mid-stream failure is an error event, then data: [DONE], as vLLM's server ends a failed stream", async () => {
    const r = await fetch(base + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'm1', prompt: 'MIDERROR', max_tokens: 10, stream: true }),
    });
    expect(r.status).toBe(200);
    const events = (await r.text()).split('\n\n').filter((e) => e !== '');
    expect(events.map((e) => e.slice(0, 6))).toEqual(['data: ', 'data: ', 'data: ', 'data: ']);
    // vLLM's error body (code: the status), and `retryable`
    expect(JSON.parse(events[2]!.slice(6))).toEqual({ error: { message: 'the engine serving this request failed: retry', type: 'ServiceUnavailableError', param: null, code: 503, retryable: true } });
    expect(events[3]).toBe('data: [DONE]');
  });

  it('client disconnect aborts the request downstream', async () => {
    const before = backend.aborted.length;
    await new Promise<void>((resolve, reject) => {
      const u = new URL(base + '/v1/completions');
      const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ model: 'm1', prompt: 'SLOW', max_tokens: 200, stream: true }));
      setTimeout(() => reject(new Error('no data')), 5000);
    });
    const until = Date.now() + 3000;
    // the abort reaches the backend first; the request leaves the in-flight count when its handler unwinds
    while ((backend.aborted.length === before || gw.inflightCount > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(backend.aborted.length).toBe(before + 1);
    expect(gw.inflightCount).toBe(0);
  });

  it('healthz answers and metrics count HTTP outcomes', async () => {
    const h = await fetch(base + '/healthz');
    expect(h.status).toBe(200);
    const m = await (await fetch(base + '/metrics', { headers: { authorization: `Bearer ${KEY}` } })).text();
    expect(m).toMatch(/dynamollm_gateway_http_requests_total\{route="\/v1\/completions",code="401"\} [1-9]/);
    expect(m).toMatch(/dynamollm_gateway_rejections_total\{reason="overloaded"\} [1-9]/);
  });

  it("metrics label a request's route from the gateway's routes, every other path `other` (401, 404, preflight): made-up paths add no series", async () => {
    const read = async () => {
      const text = await (await fetch(base + '/metrics', { headers: { authorization: `Bearer ${KEY}` } })).text();
      const by = new Map<string, number>();
      for (const m of text.matchAll(/^dynamollm_gateway_http_requests_total\{route="([^"]*)",code="(\d+)"\} (\S+)$/gm)) by.set(`${m[1]} ${m[2]}`, Number(m[3]));
      return by;
    };
    const was = await read();
    for (let i = 0; i < 10; i++) expect((await fetch(`${base}/v1/scan-${i}`)).status).toBe(401);
    expect((await fetch(`${base}/v1/scan-keyed`, { headers: { authorization: `Bearer ${KEY}` } })).status).toBe(404);
    expect((await fetch(`${base}/scan-root`)).status).toBe(404);
    const pre = await fetch(`${base}/v1/scan-preflight`, { method: 'OPTIONS', headers: { origin: 'http://x.example', 'access-control-request-method': 'POST' } });
    await pre.text();
    expect((await fetch(`${base}/tokenize`, { headers: { authorization: `Bearer ${KEY}` } })).status).toBe(405);
    const now = await read();
    const labels = new Set([...now.keys()].map((k) => k.split(' ')[0]));
    expect([...labels].filter((r) => r.includes('scan'))).toEqual([]);
    const served = ['/v1/completions', '/v1/chat/completions', '/v1/models', '/tokenize', '/detokenize', '/health', '/healthz', '/livez', '/readyz', '/metrics', '/version', '/api/live', '/', '/index.html', '/dashboard.js', '/dashboard.css', 'other'];
    expect([...labels].filter((r) => !served.includes(r))).toEqual([]);
    const grew = (k: string) => (now.get(k) ?? 0) - (was.get(k) ?? 0);
    expect(grew('other 401')).toBe(10);
    expect(grew('other 404')).toBe(2);
    expect(grew(`other ${pre.status}`)).toBe(1);
    expect(grew('/tokenize 405')).toBe(1);
  });
});
