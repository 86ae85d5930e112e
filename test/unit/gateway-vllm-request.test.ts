/**
 * The gateway reads a request as vLLM v0.11.2's OpenAI server does (vllm/entrypoints/openai/protocol.py): a field its
 * request model does not define is ignored (and named: header, counter, warning), a missing model is the served
 * model, any chat role, vLLM's stream_options defaults, its cross-field checks and lax booleans, its Content-Type
 * check, and its error body ({message, type, param, code: the status}).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { IgnoredFields, ignoredHeader, FIELD_LABELS_MAX } from '../../actors/gateway/ignored-fields.ts';
import { HttpError, parseOpenAiRequest } from '../../actors/gateway/openai.ts';
import type { Logger } from '../../src/runtime/logger.ts';

class WordsBackend implements GatewayBackend {
  seen: InferenceRequest[] = [];
  async submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
    this.seen.push(req);
    async function* gen(): AsyncGenerator<TokenChunk> {
      for (let i = 0; i < req.maxTokens; i++) yield { v: 1, id: req.id, seq: i, text: ` w${i}`, tokens: 1 };
      yield { v: 1, id: req.id, seq: req.maxTokens, text: '', tokens: 0, done: true, finishReason: 'length', usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 1, energySource: 'modelled' } };
    }
    return gen();
  }
}

const backend = new WordsBackend();
const metrics = new TelemetryMetrics({ processMetrics: false });
const warned: { obj: Record<string, unknown>; msg: string }[] = [];
const log = { warn: (obj: Record<string, unknown>, msg: string) => warned.push({ obj, msg }), info: () => undefined, error: () => undefined, debug: () => undefined, isLevelEnabled: () => false } as unknown as Logger;
let gw: GatewayServer;
let base: string;

beforeAll(async () => {
  gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m1', 'm2'], metrics, log, maxInflight: 64 });
  base = `http://127.0.0.1:${await gw.listen()}`;
});
afterAll(async () => {
  await gw.close(100);
});

type ErrorBody = { error: { message: string; type: string; param: string | null; code: number } };
async function post(path: string, body: unknown, contentType = 'application/json') {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, ignored: r.headers.get('x-dynamollm-ignored-fields'), text, json: () => JSON.parse(text) as Record<string, unknown> & Partial<ErrorBody> };
}
const chat = (extra: Record<string, unknown> = {}) => ({ model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const sseEvents = (text: string) => text.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)) as { choices: unknown[]; usage?: { completion_tokens: number } });

describe('fields vLLM does not define: accepted, ignored, named', () => {
  it('store: false on a chat is a 200 naming `store` in x-dynamollm-ignored-fields, counted and logged', async () => {
    const r = await post('/v1/chat/completions', chat({ store: false, metadata: { a: 'b' } }));
    expect(r.status).toBe(200);
    expect(r.ignored).toBe('store, metadata');
    expect(backend.seen.at(-1)!.params).toBeUndefined();
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/dynamollm_gateway_ignored_request_fields_total\{field="store"\} 1/);
    expect(text).toMatch(/dynamollm_gateway_ignored_request_fields_total\{field="metadata"\} 1/);
    expect(warned.at(-1)).toMatchObject({ obj: { route: '/v1/chat/completions', fields: ['store', 'metadata'] } });
    expect(warned.at(-1)!.msg).toMatch(/present in the request but ignored/);
    // a request with none: no header
    expect((await post('/v1/chat/completions', chat())).ignored).toBeNull();
  });

  it("max_completion_tokens on /v1/completions is ignored (vLLM's default 16 tokens); stream_options' unknown keys too", async () => {
    const r = await post('/v1/completions', { model: 'm1', prompt: 'x', max_completion_tokens: 3 });
    expect(r.status).toBe(200);
    expect(r.ignored).toBe('max_completion_tokens');
    expect(backend.seen.at(-1)!.maxTokens).toBe(16);
    const s = await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 2, stream: true, stream_options: { frob: 1 } });
    expect([s.status, s.ignored]).toEqual([200, 'stream_options.frob']);
  });

  it('/tokenize and /detokenize ignore a field their vLLM model does not define', async () => {
    const t = await post('/tokenize', { model: 'm1', prompt: 'hello', foo: 1 });
    expect([t.status, t.ignored]).toEqual([200, 'foo']);
    expect((t.json() as { count: number }).count).toBeGreaterThan(0);
    const d = await post('/detokenize', { model: 'm1', tokens: [1, 22172], bar: true });
    expect([d.status, d.ignored]).toEqual([200, 'bar']);
  });

  it('a field vLLM defines that the cluster cannot honour stays a 400 naming it', async () => {
    const r = await post('/v1/completions', { model: 'm1', prompt: 'x', return_token_ids: true });
    expect(r.status).toBe(400);
    expect(r.json().error).toMatchObject({ param: 'return_token_ids', code: 400, type: 'BadRequestError' });
    expect(r.json().error!.message).toContain('return_token_ids');
  });

  it('the metric label and the header are bounded', () => {
    const ig = new IgnoredFields();
    expect(ig.label('x'.repeat(65))).toBe('other');
    expect(ig.label('a b')).toBe('other');
    for (let i = 0; i < FIELD_LABELS_MAX; i++) expect(ig.label(`f${i}`)).toBe(`f${i}`);
    expect(ig.label('one_more')).toBe('other');
    expect(ig.label('f0')).toBe('f0');
    expect(ignoredHeader(['ok', 'a b', 'é'])).toBe('ok, a%20b, %C3%A9');
    expect(ignoredHeader(Array.from({ length: 20 }, (_, i) => `f${i}`)).endsWith('f15, ...')).toBe(true);
  });
});

describe("vLLM's request model", () => {
  it('a request without a model is served by the first served model', async () => {
    const r = await post('/v1/completions', { prompt: 'x', max_tokens: 1 });
    expect(r.status).toBe(200);
    expect(r.json().model).toBe('m1');
    expect(backend.seen.at(-1)!.model).toBe('m1');
    expect((await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1, model: null })).status).toBe(200);
  });

  it("any chat role (vLLM's custom message: ipython, function) and plain-string content parts", async () => {
    const r = await post('/v1/chat/completions', chat({ messages: [{ role: 'user', content: ['Hi', { type: 'text', text: ' there' }] }, { role: 'ipython', content: '42' }, { role: 'function', name: 'f', content: '{}' }] }));
    expect(r.status).toBe(200);
    expect(backend.seen.at(-1)!.messages!.map((m) => m.role)).toEqual(['user', 'ipython', 'function']);
  });

  it('stream_options: {} and {continuous_usage_stats: true} get the usage chunk (include_usage defaults to true)', async () => {
    const a = sseEvents((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 2, stream: true, stream_options: {} })).text);
    expect(a.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 2 } });
    const b = sseEvents((await post('/v1/chat/completions', chat({ stream: true, stream_options: { continuous_usage_stats: true } }))).text);
    expect(b.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 2 } });
    expect(b.filter((e) => e.usage != null).length).toBeGreaterThan(1);
    // an explicit include_usage: false: none
    const c = sseEvents((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 2, stream: true, stream_options: { include_usage: false } })).text);
    expect(c.some((e) => e.usage != null)).toBe(false);
    // vLLM tests the dict's truthiness: an empty stream_options without stream is accepted, a non-empty one is not
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 1, stream_options: {} })).status).toBe(200);
    const bad = await post('/v1/completions', { model: 'm1', prompt: 'x', stream_options: { include_usage: true } });
    expect([bad.status, bad.json().error!.message]).toEqual([400, 'Stream options can only be defined when `stream=True`.']);
  });

  it("vLLM's cross-field checks, with vLLM's words", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ tool_choice: 'auto' }, 'When using `tool_choice`, `tools` must be set.'],
      [{ tool_choice: 'sometimes', tools: [] }, 'Invalid value for `tool_choice`: sometimes! Only named tools, "none", "auto" or "required" are supported.'],
      [{ tool_choice: { type: 'function', function: { name: 'g' } }, tools: [{ type: 'function', function: { name: 'f' } }] }, 'The tool specified in `tool_choice` does not match any of the specified `tools`'],
      [{ continue_final_message: true, add_generation_prompt: true }, 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.'],
      [{ guided_json: { type: 'object' }, guided_regex: 'a+' }, "You can only use one kind of guided decoding ('guided_json', 'guided_regex' or 'guided_choice')."],
    ];
    for (const [extra, message] of cases) {
      const r = await post('/v1/chat/completions', chat(extra));
      expect([r.status, r.json().error], message).toEqual([400, { message, type: 'Bad Request', param: expect.any(String), code: 400 }]);
    }
    // tool_choice "required" with an empty tools list is "none" (vLLM, as OpenAI)
    expect((await post('/v1/chat/completions', chat({ tool_choice: 'required', tools: [] }))).status).toBe(200);
    expect(backend.seen.at(-1)!.params).toMatchObject({ tool_choice: 'none' });
    expect(backend.seen.at(-1)!.params?.tools).toBeUndefined();
    const tok = await post('/tokenize', { model: 'm1', messages: [{ role: 'user', content: 'x' }], continue_final_message: true, add_generation_prompt: true });
    expect(tok.status).toBe(400);
  });

  it('a Content-Type other than application/json is a 400, as vLLM', async () => {
    for (const path of ['/v1/completions', '/v1/chat/completions', '/tokenize']) {
      for (const ct of ['text/plain', 'application/json-seq', '']) {
        const r = await post(path, { model: 'm1', prompt: 'x' }, ct);
        expect([r.status, r.json().error], `${path} ${ct}`).toEqual([400, { message: "Unsupported Media Type: Only 'application/json' is allowed", type: 'Bad Request', param: null, code: 400 }]);
      }
    }
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 1 }, 'Application/JSON; charset=utf-8')).status).toBe(200);
  });

  it("vLLM's lax types and limits: logprobs 1 on a chat, a long user, n past 16, more than 64 stop strings", async () => {
    expect((await post('/v1/chat/completions', chat({ logprobs: 1, stream: 'true', echo: 0 }))).status).toBe(200);
    expect(backend.seen.at(-1)!.params).toMatchObject({ logprobs: true, echo: false });
    expect((await post('/v1/chat/completions', chat({ logprobs: 'maybe' }))).json().error).toMatchObject({ param: 'logprobs', code: 400, type: 'Bad Request' });
    expect((await post('/v1/chat/completions', chat({ user: 'u'.repeat(300) }))).status).toBe(200);
    expect(backend.seen.at(-1)!.tenant).toBe('u'.repeat(128));
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 1, n: 20 })).status).toBe(200);
    expect((await post('/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 1, stop: Array.from({ length: 65 }, (_, i) => `s${i}`) })).status).toBe(200);
    // the bound that protects the cluster: n within the gateway's in-flight limit (64 here), worded as vLLM words n
    const over = await post('/v1/completions', { model: 'm1', prompt: 'x', n: 65 });
    expect([over.status, over.json().error!.message]).toEqual([400, "n must be at most 64 (the gateway's in-flight limit), got 65."]);
  });

  it("error bodies are vLLM's: {message, type, param, code: the HTTP status}", async () => {
    const nf = await post('/v1/completions', { model: 'nope', prompt: 'x' });
    expect([nf.status, nf.json()]).toEqual([404, { error: { message: 'The model `nope` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } }]);
    const bad = await post('/v1/completions', { model: 'm1', prompt: 'x', temperature: -1 });
    expect(bad.json()).toEqual({ error: { message: 'temperature must be non-negative, got -1.', type: 'BadRequestError', param: 'temperature', code: 400 } });
    expect(new HttpError(503, 'x', 'service_unavailable', 'unavailable').body()).toEqual({ error: { message: 'x', type: 'ServiceUnavailableError', param: null, code: 503 } });
    // the official client reads them
    const client = new OpenAI({ apiKey: 'k', baseURL: `${base}/v1`, maxRetries: 0 });
    await expect(client.completions.create({ model: 'nope', prompt: 'x' })).rejects.toMatchObject({ status: 404, type: 'NotFoundError', code: 404 });
    // the parser alone: an unknown field is not an error
    expect(parseOpenAiRequest('completion', { prompt: 'x', foo: 1 }).ignored).toEqual(['foo']);
  });
});
