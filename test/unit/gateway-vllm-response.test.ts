/**
 * The gateway's answers as vLLM v0.11's OpenAI server writes them, byte for byte, through the HTTP layer:
 * - the response id `cmpl-` / `chatcmpl-` + the client's X-Request-Id header, else the body's request_id, else the
 *   gateway's own id, on every chunk, in the non-streamed body and in the x-request-id header; the cluster keeps its own
 *   id (two clients that send the same X-Request-Id are two requests to it);
 * - completion chunks through pydantic's model_dump_json(exclude_unset=False): prompt_token_ids and token_ids null on
 *   every choice, `usage` null on every chunk but a continuous-usage one (whose prompt_tokens_details is null); chat
 *   chunks through exclude_unset: token_ids null on every choice, prompt_token_ids null on the role chunk; the usage
 *   chunk's counts in vLLM's order (prompt, total, completion) with no prompt_tokens_details;
 * - non-streamed bodies through model_dump: service_tier, system_fingerprint, kv_transfer_params, token_ids,
 *   prompt_logprobs, prompt_token_ids, the message's refusal/annotations/audio/function_call/reasoning_content null;
 * - a chat's role: the last message's when add_generation_prompt is false (vLLM's get_chat_request_role).
 * The usage's energy members are this cluster's extension, after vLLM's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';

/** Streams max_tokens words ` <prompt's first word><i>`, then the end with a modelled energy of 5 J. */
class WordsBackend implements GatewayBackend {
  seen: InferenceRequest[] = [];
  async submit(req: InferenceRequest, signal: AbortSignal): Promise<AsyncIterable<TokenChunk>> {
    this.seen.push(req);
    const first = req.messages?.[0]?.content;
    const word = (typeof req.prompt === 'string' ? req.prompt : typeof first === 'string' ? first : '').split(' ')[0];
    return (async function* () {
      for (let i = 0; i < req.maxTokens; i++) {
        await new Promise((r) => setTimeout(r, 2));
        if (signal.aborted) return;
        yield { v: 1 as const, id: req.id, seq: i, text: ` ${word}${i}`, tokens: 1 };
      }
      yield { v: 1 as const, id: req.id, seq: req.maxTokens, text: '', tokens: 0, done: true, finishReason: 'length' as const, usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 5, energySource: 'modelled' as const } };
    })();
  }
}

const backend = new WordsBackend();
let gw: GatewayServer;
let base = '';
beforeAll(async () => {
  gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'], maxModelLen: 4096 });
  base = `http://127.0.0.1:${await gw.listen()}`;
});
afterAll(async () => {
  await gw.close(100);
});

async function post(path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: r.status, header: r.headers.get('x-request-id'), text: await r.text() };
}
/** the prompt's token count and `created` as the gateway wrote them (the bytes' only parts that are not fixed here) */
const counts = (text: string) => ({ p: Number(/"prompt_tokens":(\d+)/.exec(text)![1]), c: Number(/"created":(\d+)/.exec(text)![1]) });

describe("vLLM v0.11's bytes", () => {
  it('a streamed completion: every choice with prompt_token_ids and token_ids null, usage null on every chunk, the usage chunk in vLLM order', async () => {
    const r = await post('/v1/completions', { model: 'm', prompt: 'hello there', max_tokens: 2, stream: true, stream_options: { include_usage: true } }, { 'x-request-id': 'abc' });
    const { p, c } = counts(r.text);
    const head = `data: {"id":"cmpl-abc","object":"text_completion","created":${c},"model":"m","choices":`;
    expect(r.text).toBe(
      `${head}[{"index":0,"text":" hello0","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n` +
      `${head}[{"index":0,"text":" hello1","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n` +
      `${head}[{"index":0,"text":"","logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n` +
      `${head}[],"usage":{"prompt_tokens":${p},"total_tokens":${p + 2},"completion_tokens":2,"energy_joules":5,"energy_source":"modelled"}}\n\n` +
      'data: [DONE]\n\n');
    expect(r.header).toBe('abc');
  });

  it('continuous usage: the counts in vLLM order on every chunk, prompt_tokens_details null on a completion, absent on a chat', async () => {
    const so = { include_usage: true, continuous_usage_stats: true };
    const cmpl = await post('/v1/completions', { model: 'm', prompt: 'hi', max_tokens: 1, stream: true, stream_options: so }, { 'x-request-id': 'u1' });
    const { p, c } = counts(cmpl.text);
    expect(cmpl.text.split('\n\n')[0]).toBe(`data: {"id":"cmpl-u1","object":"text_completion","created":${c},"model":"m","choices":[{"index":0,"text":" hi0","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":{"prompt_tokens":${p},"total_tokens":${p + 1},"completion_tokens":1,"prompt_tokens_details":null}}`);
    const chat = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'yo' }], max_tokens: 1, stream: true, stream_options: so }, { 'x-request-id': 'u2' });
    const k = counts(chat.text);
    const head = `data: {"id":"chatcmpl-u2","object":"chat.completion.chunk","created":${k.c},"model":"m","choices":`;
    expect(chat.text.split('\n\n').slice(0, 2)).toEqual([
      `${head}[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":${k.p},"total_tokens":${k.p},"completion_tokens":0},"prompt_token_ids":null}`,
      `${head}[{"index":0,"delta":{"content":" yo0"},"logprobs":null,"finish_reason":null,"token_ids":null}],"usage":{"prompt_tokens":${k.p},"total_tokens":${k.p + 1},"completion_tokens":1}}`,
    ]);
  });

  it('a streamed chat: the role chunk with prompt_token_ids null, token_ids null on every choice, stop_reason on the closing one', async () => {
    const r = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'hey' }], max_tokens: 1, stream: true, stream_options: { include_usage: true }, request_id: 'body-1' });
    const { p, c } = counts(r.text);
    const head = `data: {"id":"chatcmpl-body-1","object":"chat.completion.chunk","created":${c},"model":"m","choices":`;
    expect(r.text).toBe(
      `${head}[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n` +
      `${head}[{"index":0,"delta":{"content":" hey0"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n` +
      `${head}[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null}]}\n\n` +
      `${head}[],"usage":{"prompt_tokens":${p},"total_tokens":${p + 1},"completion_tokens":1,"energy_joules":5,"energy_source":"modelled"}}\n\n` +
      'data: [DONE]\n\n');
    expect(r.header).toBe('body-1');
  });

  it('non-streamed bodies: every member model_dump writes, in its order', async () => {
    const cmpl = await post('/v1/completions', { model: 'm', prompt: 'so', max_tokens: 2 }, { 'x-request-id': 'n1' });
    const k = counts(cmpl.text);
    expect(cmpl.text).toBe(`{"id":"cmpl-n1","object":"text_completion","created":${k.c},"model":"m","choices":[{"index":0,"text":" so0 so1","logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null,"prompt_logprobs":null,"prompt_token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":${k.p},"total_tokens":${k.p + 2},"completion_tokens":2,"prompt_tokens_details":null,"energy_joules":5,"energy_source":"modelled"},"kv_transfer_params":null}`);
    expect(cmpl.header).toBe('n1');
    const chat = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'ok' }], max_tokens: 1 }, { 'x-request-id': 'n2' });
    const c = counts(chat.text);
    expect(chat.text).toBe(`{"id":"chatcmpl-n2","object":"chat.completion","created":${c.c},"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":" ok0","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning_content":null},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":${c.p},"total_tokens":${c.p + 1},"completion_tokens":1,"prompt_tokens_details":null,"energy_joules":5,"energy_source":"modelled"},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`);
  });

  it("a chat with add_generation_prompt false answers in its last message's role, streamed and not", async () => {
    const msgs = [{ role: 'system', content: 'sys' }, { role: 'user', content: 'go on' }];
    const full = JSON.parse((await post('/v1/chat/completions', { model: 'm', messages: msgs, max_tokens: 1, add_generation_prompt: false })).text) as { choices: { message: { role: string } }[] };
    expect(full.choices[0]!.message.role).toBe('user');
    const s = await post('/v1/chat/completions', { model: 'm', messages: msgs, max_tokens: 1, n: 2, stream: true, add_generation_prompt: false });
    const roles = s.text.split('\n\n').filter((e) => e.includes('"role"')).map((e) => (JSON.parse(e.slice(6)) as { choices: { delta: { role: string } }[] }).choices[0]!.delta.role);
    expect(roles).toEqual(['user', 'user']);
    const dflt = JSON.parse((await post('/v1/chat/completions', { model: 'm', messages: msgs, max_tokens: 1 })).text) as { choices: { message: { role: string } }[] };
    expect(dflt.choices[0]!.message.role).toBe('assistant');
  });
});

describe('the response id', () => {
  const ids = (text: string) => [...new Set(text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => (JSON.parse(e.slice(6)) as { id: string }).id))];

  it('X-Request-Id wins over the body request_id, which wins over the gateway id; the header says the same', async () => {
    const both = await post('/v1/completions', { model: 'm', prompt: 'a', max_tokens: 2, stream: true, request_id: 'from-body' }, { 'x-request-id': 'from-header' });
    expect(ids(both.text)).toEqual(['cmpl-from-header']);
    expect(both.header).toBe('from-header');
    const body = await post('/v1/completions', { model: 'm', prompt: 'a', max_tokens: 2, request_id: 'from-body' });
    expect((JSON.parse(body.text) as { id: string }).id).toBe('cmpl-from-body');
    expect(body.header).toBe('from-body');
    const none = await post('/v1/completions', { model: 'm', prompt: 'a', max_tokens: 2, stream: true });
    // the gateway's own id: the one its cluster knows the request by
    expect(ids(none.text)).toEqual([`cmpl-${backend.seen.at(-1)!.id}`]);
    expect(none.header).toBe(backend.seen.at(-1)!.id);
    // a request_id that is no header value names the body; the header carries the gateway's id
    const odd = await post('/v1/completions', { model: 'm', prompt: 'a', max_tokens: 1, request_id: 'line\nbreak ✓' });
    expect((JSON.parse(odd.text) as { id: string }).id).toBe('cmpl-line\nbreak ✓');
    expect(odd.header).toBe(backend.seen.at(-1)!.id);
  });

  it('two clients that send the same X-Request-Id at once are two requests inside the cluster, each answered its own text', async () => {
    const before = backend.seen.length;
    const [a, b] = await Promise.all([
      post('/v1/completions', { model: 'm', prompt: 'alpha', max_tokens: 6, stream: true }, { 'x-request-id': 'same' }),
      post('/v1/completions', { model: 'm', prompt: 'beta', max_tokens: 6, stream: true }, { 'x-request-id': 'same' }),
    ]);
    const seen = backend.seen.slice(before);
    expect(seen).toHaveLength(2);
    expect(seen[0]!.id).not.toBe(seen[1]!.id);
    for (const r of seen) expect(r.id).not.toBe('same');
    expect(ids(a.text)).toEqual(['cmpl-same']);
    expect(ids(b.text)).toEqual(['cmpl-same']);
    expect(a.text).toContain(' alpha5');
    expect(a.text).not.toContain('beta');
    expect(b.text).toContain(' beta5');
    expect(b.text).not.toContain('alpha');
  });
});
