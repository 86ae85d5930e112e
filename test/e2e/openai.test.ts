/**
 * The OpenAI front door end to end, faithful to vLLM: `dynamollm up` (real nats-server, managers, instance
 * managers, emulated engines, gateway; test/e2e/openai.e2e.yaml: Llama-2-70B, 4096-token context) driven by the
 * official `openai` client, streaming and not. The emulator honours the parameters, so each one is checked on
 * what comes back through the gateway: stop strings (finish_reason, stop_reason), seed, logprobs in vLLM's
 * shapes, response_format JSON, tools with tool_choice 'required'; usage.prompt_tokens equals /tokenize for
 * the same prompt; /v1/models reports max_model_len; over-long requests are a 400 before dispatch (also when
 * streamed), in vLLM's error body; a parameter the cluster cannot honour a 400 naming it, a field vLLM does not define
 * ignored as vLLM ignores it, and named in x-dynamollm-ignored-fields.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startUpCluster, type UpCluster } from '../helpers/cluster.ts';
import { promtoolProblems } from '../helpers/promtool.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';

const KEY = 'sk-e2e-openai';
let cluster: UpCluster;
let model: string;
const client = () => new OpenAI({ apiKey: KEY, baseURL: `${cluster.base}/v1`, maxRetries: 0, timeout: 30_000 });
// vLLM's extra request fields and response fields, which the openai client passes through untouched
type Vllm = { ignore_eos?: boolean; stop_reason?: string | number | null };
const post = async (path: string, body: unknown) => {
  const r = await fetch(`${cluster.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
  return { status: r.status, type: r.headers.get('content-type'), ignored: r.headers.get('x-dynamollm-ignored-fields'), cause: r.headers.get('x-dynamollm-error-code'), text: await r.text() };
};
const postJson = async (path: string, body: unknown) => {
  const r = await post(path, body);
  return { ...r, body: JSON.parse(r.text) as Record<string, unknown> };
};

beforeAll(async () => {
  cluster = await startUpCluster({ config: 'test/e2e/openai.e2e.yaml', readyTimeoutS: 80, runDirPrefix: 'dyn-e2e-openai-' });
  model = (await client().models.list()).data[0]!.id;
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 40_000);

/** A streamed completion's text, finish_reason and stop_reason. */
async function streamCompletion(params: Record<string, unknown>) {
  const s = await client().completions.create({ model, stream: true, ...params } as unknown as OpenAI.CompletionCreateParamsStreaming);
  let text = '';
  let finish: string | null = null;
  let stopReason: unknown;
  const logprobs: OpenAI.Completions.Completion['choices'][number]['logprobs'][] = [];
  for await (const c of s) {
    const ch = c.choices[0];
    if (!ch) continue;
    text += ch.text;
    if (ch.logprobs) logprobs.push(ch.logprobs);
    if (ch.finish_reason) {
      finish = ch.finish_reason;
      stopReason = (ch as Vllm).stop_reason;
    }
  }
  return { text, finish, stopReason, logprobs };
}

describe('OpenAI parameters reach the engine and its answer comes back', () => {
  it('seed: the same seed gives the same text, another seed other text (streaming and not)', async () => {
    const c = client();
    const ask = (seed: number) => c.completions.create({ model, prompt: 'Tell me about energy', max_tokens: 16, seed, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming & Vllm);
    const [a, b, other] = await Promise.all([ask(11), ask(11), ask(12)]);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    expect(other.choices[0]!.text).not.toBe(a.choices[0]!.text);
    const s = await streamCompletion({ prompt: 'Tell me about energy', max_tokens: 16, seed: 11, ignore_eos: true });
    expect(s.text).toBe(a.choices[0]!.text);
  });

  it('stop strings cut the text: finish_reason stop, stop_reason the string (streaming and not)', async () => {
    const c = client();
    const full = (await c.completions.create({ model, prompt: 'x', max_tokens: 40, seed: 5, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming & Vllm)).choices[0]!.text;
    const words = full.split(' ').slice(1).map((w) => ` ${w}`);
    const stop = words[6]!; // the 7th word: the text stops at its first occurrence
    const expected = full.slice(0, full.indexOf(stop));
    const r = await c.completions.create({ model, prompt: 'x', max_tokens: 40, seed: 5, ignore_eos: true, stop: [stop, 'never-there'] } as OpenAI.CompletionCreateParamsNonStreaming & Vllm);
    expect(r.choices[0]!.text).toBe(expected);
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect((r.choices[0] as Vllm).stop_reason).toBe(stop);
    const s = await streamCompletion({ prompt: 'x', max_tokens: 40, seed: 5, ignore_eos: true, stop: [stop] });
    expect(s).toMatchObject({ text: expected, finish: 'stop', stopReason: stop });
    // chat, streamed
    const cs = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 40, seed: 5, stop: stop, stream: true, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsStreaming & Vllm);
    let finish: string | null = null;
    let stopReason: unknown;
    for await (const ch of cs) {
      if (ch.choices[0]?.finish_reason) {
        finish = ch.choices[0].finish_reason;
        stopReason = (ch.choices[0] as Vllm).stop_reason;
      }
    }
    expect(finish).toBe('stop');
    expect(stopReason).toBe(stop);
  });

  it('logprobs come back in vLLM\'s shapes (completions and chat, streaming and not)', async () => {
    const c = client();
    const r = await c.completions.create({ model, prompt: 'x', max_tokens: 5, logprobs: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming & Vllm);
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.tokens!.join('')).toBe(r.choices[0]!.text);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.text_offset).toEqual(lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length));
    for (const [i, top] of lp.top_logprobs!.entries()) {
      expect(Object.keys(top!).length).toBe(3); // the sampled token and its 2 best alternatives
      expect(top![lp.tokens![i]!]).toBe(lp.token_logprobs![i]);
    }
    const s = await streamCompletion({ prompt: 'x', max_tokens: 5, logprobs: 2, ignore_eos: true });
    expect(s.logprobs.flatMap((l) => l!.tokens!).join('')).toBe(s.text);

    const chat = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, logprobs: true, top_logprobs: 3, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming & Vllm);
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.map((t) => t.token).join('')).toBe(chat.choices[0]!.message.content);
    for (const t of content) {
      expect(t.bytes).toEqual([...Buffer.from(t.token, 'utf8')]);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeLessThanOrEqual(0);
    }
    const cs = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, logprobs: true, top_logprobs: 1, stream: true, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsStreaming & Vllm);
    let n = 0;
    for await (const ch of cs) n += ch.choices[0]?.logprobs?.content?.length ?? 0;
    expect(n).toBe(4);
  });

  it('response_format JSON yields valid JSON (json_object and json_schema, streaming and not)', async () => {
    const c = client();
    const obj = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'JSON please' }], max_tokens: 200, response_format: { type: 'json_object' } });
    expect(typeof JSON.parse(obj.choices[0]!.message.content!)).toBe('object');
    const schema = { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1, maximum: 7 }, sunny: { type: 'boolean' } }, required: ['city', 'days', 'sunny'] };
    const s = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'weather' }], max_tokens: 200, stream: true, response_format: { type: 'json_schema', json_schema: { name: 'w', schema } } });
    let text = '';
    for await (const ch of s) text += ch.choices[0]?.delta.content ?? '';
    const v = JSON.parse(text) as { city: unknown; days: number; sunny: unknown };
    expect(typeof v.city).toBe('string');
    expect(Number.isInteger(v.days) && v.days >= 1 && v.days <= 7).toBe(true);
    expect(typeof v.sunny).toBe('boolean');
  });

  it('tools with tool_choice "required" yield a tool call (streaming and not)', async () => {
    const c = client();
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
    const r = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'weather in Paris?' }], max_tokens: 100, tools, tool_choice: 'required' });
    const call = r.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(r.choices[0]!.finish_reason).toBe('tool_calls');
    expect(call.type).toBe('function');
    expect(call.function.name).toBe('get_weather');
    expect(typeof (JSON.parse(call.function.arguments) as { city: unknown }).city).toBe('string');
    expect(call.id).toMatch(/^chatcmpl-tool-/);
    const s = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'weather in Paris?' }], max_tokens: 100, tools, tool_choice: 'required', stream: true });
    let name = '';
    let args = '';
    let finish: string | null = null;
    for await (const ch of s) {
      for (const d of ch.choices[0]?.delta.tool_calls ?? []) {
        name += d.function?.name ?? '';
        args += d.function?.arguments ?? '';
      }
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    expect(name).toBe('get_weather');
    expect(JSON.parse(args)).toHaveProperty('city');
    expect(finish).toBe('tool_calls');
    // the tool's answer goes back as a tool message, and the conversation continues
    const follow = await c.chat.completions.create({ model, max_tokens: 5, messages: [{ role: 'user', content: 'weather in Paris?' }, r.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '{"temp": 21}' }] });
    expect(follow.choices[0]!.message.content!.length).toBeGreaterThan(0);
  });
});

describe('n choices and the end of a stream, as vLLM sends them', () => {
  it('n choices: choice i is the answer of seed + i (vLLM\'s child requests), streaming and not, usage summed', async () => {
    const c = client();
    const base = { model, prompt: 'Tell me about energy', max_tokens: 12, ignore_eos: true };
    const one = await Promise.all([0, 1, 2].map((i) => c.completions.create({ ...base, seed: 40 + i } as OpenAI.CompletionCreateParamsNonStreaming & Vllm)));
    const r = await c.completions.create({ ...base, seed: 40, n: 3 } as OpenAI.CompletionCreateParamsNonStreaming & Vllm);
    expect(r.choices.map((x) => x.index)).toEqual([0, 1, 2]);
    expect(r.choices.map((x) => x.text)).toEqual(one.map((x) => x.choices[0]!.text));
    expect(new Set(r.choices.map((x) => x.text)).size).toBe(3);
    expect(r.choices.every((x) => x.finish_reason === 'length')).toBe(true);
    expect(r.usage).toMatchObject({ prompt_tokens: one[0]!.usage!.prompt_tokens, completion_tokens: 36 });
    // streamed chat: a role chunk per choice, then chunks naming their choice, one finish per choice, usage last
    const chatBase = { model, messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 6, ignore_eos: true, seed: 3 };
    const whole = await c.chat.completions.create({ ...chatBase, n: 2 } as OpenAI.ChatCompletionCreateParamsNonStreaming & Vllm);
    const s = await c.chat.completions.create({ ...chatBase, n: 2, stream: true, stream_options: { include_usage: true } } as OpenAI.ChatCompletionCreateParamsStreaming & Vllm);
    const chunks = [];
    for await (const ch of s) chunks.push(ch);
    expect(chunks.slice(0, 2).map((ch) => [ch.choices[0]!.index, ch.choices[0]!.delta.role])).toEqual([[0, 'assistant'], [1, 'assistant']]);
    for (const i of [0, 1]) {
      const mine = chunks.slice(2).filter((ch) => ch.choices[0]?.index === i);
      expect(mine.map((ch) => ch.choices[0]!.delta.content ?? '').join('')).toBe(whole.choices[i]!.message.content);
      expect(mine.map((ch) => ch.choices[0]!.finish_reason).filter((f) => f !== null)).toEqual(['length']);
    }
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toMatchObject({ completion_tokens: 12 });
  });

  it('finish_reason arrives on the last text chunk, then the usage chunk, then [DONE] (completions and chat)', async () => {
    for (const path of ['/v1/completions', '/v1/chat/completions']) {
      const body = path === '/v1/completions' ? { model, prompt: 'x', max_tokens: 7, ignore_eos: true, stream: true, stream_options: { include_usage: true } } : { model, messages: [{ role: 'user', content: 'x' }], max_tokens: 7, ignore_eos: true, stream: true, stream_options: { include_usage: true } };
      const r = await fetch(`${cluster.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
      const events = (await r.text()).split('\n\n').filter((e) => e !== '');
      expect(events.at(-1)).toBe('data: [DONE]');
      const objs = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as { choices: { text?: string; delta?: { content?: string }; finish_reason: string | null }[]; usage?: { completion_tokens: number } });
      const usage = objs.at(-1)!;
      expect(usage.choices).toEqual([]);
      expect(usage.usage!.completion_tokens).toBe(7);
      const fin = objs.at(-2)!.choices[0]!;
      expect(fin.finish_reason, path).toBe('length');
      expect((fin.text ?? fin.delta?.content ?? '').length, path).toBeGreaterThan(0);
      expect(objs.slice(0, -2).every((o) => o.choices[0]!.finish_reason === null), path).toBe(true);
    }
  });
});

describe('real token counts and honest errors', () => {
  it('usage.prompt_tokens equals /tokenize for the same prompt; /v1/models reports max_model_len; /detokenize round-trips', async () => {
    const c = client();
    const prompt = 'The quick brown fox jumps over the lazy dog.';
    const t = await postJson('/tokenize', { model, prompt });
    expect(t.status).toBe(200);
    expect(t.body.count).toBe((t.body.tokens as number[]).length);
    const r = await c.completions.create({ model, prompt, max_tokens: 3 });
    expect(r.usage!.prompt_tokens).toBe(t.body.count);
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is DynamoLLM?' }];
    const tc = await postJson('/tokenize', { model, messages });
    const chat = await c.chat.completions.create({ model, messages, max_tokens: 3 });
    expect(chat.usage!.prompt_tokens).toBe(tc.body.count);
    const models = await c.models.list();
    expect((models.data[0] as unknown as { max_model_len: number }).max_model_len).toBe(4096);
    expect(t.body.max_model_len).toBe(4096);
    expect((await postJson('/detokenize', { model, tokens: t.body.tokens })).body.prompt).toBe(prompt);
  });

  it('prompt + max_tokens over max_model_len is a 400 before dispatch, in vLLM\'s error body, streamed or not', async () => {
    const prompt = 'energy '.repeat(3000); // ~3000 tokens
    for (const stream of [false, true]) {
      const r = await postJson('/v1/completions', { model, prompt, max_tokens: 2000, stream });
      expect(r.status).toBe(400);
      expect(r.type).toMatch(/application\/json/);
      expect(r.cause).toBe('context_length_exceeded');
      const e = r.body.error as { message: string; type: string; param: string | null; code: number };
      expect(e).toMatchObject({ type: 'BadRequestError', param: 'prompt', code: 400 });
      expect(e.message).toMatch(/maximum context length is 4096 tokens/);
      expect(e.message).not.toMatch(/pool-|inst|node|n0|http:/);
    }
    await expect(client().chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 2000 })).rejects.toMatchObject({ status: 400, code: 400, type: 'BadRequestError' });
  });

  it('a streamed request the engine refuses before its first token is an HTTP 400 with the engine\'s words, no internal id', async () => {
    // dispatched to an instance, whose engine (the emulator) refuses guided_regex
    for (const stream of [true, false]) {
      const r = await postJson('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], guided_regex: '[a-z]+', stream });
      expect(r.status).toBe(400);
      expect(r.type).toMatch(/application\/json/);
      const e = r.body.error as { message: string; type: string; code: number };
      expect(e.message).toBe("'guided_regex' is not supported by the emulator");
      expect(e.message).not.toMatch(/pool-|inst|n0-g|http:/);
    }
  });

  it('a parameter the cluster cannot honour is a 400 naming it; a field vLLM does not define is ignored, and named', async () => {
    const n = await postJson('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], use_beam_search: true });
    expect(n.status).toBe(400);
    expect((n.body.error as { param: string }).param).toBe('use_beam_search');
    const u = await post('/v1/completions', { model, prompt: 'x', max_tokens: 2, frobnicate: true, stream: true });
    expect([u.status, u.ignored]).toEqual([200, 'frobnicate']);
    expect(u.text.endsWith('data: [DONE]\n\n')).toBe(true);
    // the official client: a chat with store: false (OpenAI's field, not vLLM's) and no model is answered
    const c = await client().chat.completions.create({ messages: [{ role: 'user', content: 'x' }], max_tokens: 2, store: false } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(c.model).toBe(model);
  });
});

describe('metrics of the front door', () => {
  it('the gateway /metrics passes promtool and counts TBT per token, with model_name', async () => {
    const c = client();
    await c.completions.create({ model, prompt: 'count my tokens', max_tokens: 8, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming & Vllm);
    const text = await (await fetch(`${cluster.base}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    expect(promtoolProblems(text)).toEqual([]);
    const fams = parsePrometheusText(text);
    const tbt = fams.get('dynamollm_gateway_tbt_seconds')!.samples.filter((s) => s.name.endsWith('_count') && s.labels.model_name === model);
    const ttft = fams.get('dynamollm_gateway_ttft_seconds')!.samples.filter((s) => s.name.endsWith('_count') && s.labels.model_name === model);
    const requests = ttft.reduce((a, s) => a + s.value, 0);
    // one TTFT per request that produced a token, and more TBT gaps than requests (one per token after the first)
    expect(requests).toBeGreaterThan(5);
    expect(tbt.reduce((a, s) => a + s.value, 0)).toBeGreaterThan(requests);
  });
});
