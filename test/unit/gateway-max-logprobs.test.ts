/**
 * vLLM's logprobs bound at the gateway, and /tokenize checked as the completions routes are:
 * - the bound is the engine's `--max-logprobs` as the model's instances report it with each prompt count
 *   (TokenizeReply.maxLogprobs, the config's engine.maxLogprobs): configured 5, top_logprobs 6 is vLLM's 400 naming 5
 *   and 5 is served; an instance that reports none leaves vLLM's default, 20; one that reports 30 serves 25;
 * - the engine gets the same bound on its command line (`--max-logprobs`, both kinds), and the emulator refuses with
 *   the words the gateway uses;
 * - /tokenize answers an out-of-range or wrongly typed parameter with the body /v1/completions gives for it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { localTokenizer } from '../../actors/gateway/tokens.ts';
import type { InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { maxLogprobsOf } from '../../actors/common/engine-limits.ts';
import { engineConfigOf } from '../../actors/instance-manager/engine-config.ts';
import { engineTokenize } from '../../actors/instance-manager/machine-io.ts';
import { engineSpec, type Engine } from '../../src/engine/index.ts';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';

const MODEL = 'm1';

/** Streams maxTokens words; `tokenize`: the instances' tokenizer as the gateway reaches it (absent: the gateway's own). */
function backendOf(tokenize?: (req: TokenizeRequest) => Promise<TokenizeReply>): GatewayBackend & { seen: InferenceRequest[] } {
  const seen: InferenceRequest[] = [];
  return {
    seen,
    ...(tokenize ? { tokenize } : {}),
    async submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
      seen.push(req);
      async function* gen(): AsyncGenerator<TokenChunk> {
        for (let i = 0; i < req.maxTokens; i++) yield { v: 1, id: req.id, seq: i, text: ` w${i}`, tokens: 1 };
        yield { v: 1, id: req.id, seq: req.maxTokens, text: '', tokens: 0, done: true, finishReason: 'length', usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 1, energySource: 'modelled' } };
      }
      return gen();
    },
  };
}

type ErrorBody = { error?: { message: string; type: string; param: string | null; code: number } };
const servers: GatewayServer[] = [];
async function start(backend: GatewayBackend): Promise<string> {
  const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: [MODEL] });
  servers.push(gw);
  return `http://127.0.0.1:${await gw.listen()}`;
}
async function post(base: string, path: string, body: Record<string, unknown>): Promise<{ status: number; body: ErrorBody & Record<string, unknown> }> {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as ErrorBody & Record<string, unknown> };
}
const chat = (extra: Record<string, unknown>) => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const completion = (extra: Record<string, unknown>) => ({ model: MODEL, prompt: 'hi there', max_tokens: 2, ...extra });

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close(100)));
});

describe("the gateway bounds logprobs by the model's instances' --max-logprobs", () => {
  let five: string;
  let five$: ReturnType<typeof backendOf>;
  let unsaid: string;
  let thirty: string;
  beforeAll(async () => {
    // an instance's tokenizer answer with engine.maxLogprobs 5 (engineTokenize reports it the same way: below)
    five$ = backendOf(localTokenizer(4096, 5));
    five = await start(five$);
    unsaid = await start(backendOf(localTokenizer(4096)));
    thirty = await start(backendOf(localTokenizer(4096, 30)));
  });

  it("configured 5: top_logprobs 6 is vLLM's 400 naming the limit, 5 is served", async () => {
    const r = await post(five, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 6 }));
    expect(r.status).toBe(400);
    expect(r.body.error).toEqual({ message: 'Requested sample logprobs of 6, which is greater than max allowed: 5', type: 'BadRequestError', param: 'top_logprobs', code: 400 });
    const sent = five$.seen.length;
    expect((await post(five, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 5 }))).status).toBe(200);
    expect(five$.seen.length).toBe(sent + 1);
    expect(five$.seen.at(-1)!.params).toMatchObject({ logprobs: true, top_logprobs: 5 });
    // completions: logprobs is the number of alternatives
    const c = await post(five, '/v1/completions', completion({ logprobs: 6 }));
    expect(c.status).toBe(400);
    expect(c.body.error).toMatchObject({ message: 'Requested sample logprobs of 6, which is greater than max allowed: 5', param: 'logprobs' });
    expect((await post(five, '/v1/completions', completion({ logprobs: 5 }))).status).toBe(200);
    // nothing refused reached the backend
    expect(five$.seen.length).toBe(sent + 2);
  });

  it("an instance that reports no bound leaves vLLM's default, 20; one that reports 30 serves 25", async () => {
    expect((await post(unsaid, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 20 }))).status).toBe(200);
    const r = await post(unsaid, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 21 }));
    expect(r.status).toBe(400);
    expect(r.body.error?.message).toBe('Requested sample logprobs of 21, which is greater than max allowed: 20');
    expect((await post(thirty, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 25 }))).status).toBe(200);
    expect((await post(thirty, '/v1/completions', completion({ logprobs: 31 }))).body.error?.message).toBe('Requested sample logprobs of 31, which is greater than max allowed: 30');
  });
});

describe('engine.maxLogprobs reaches the engine and the instance\'s reports', () => {
  const cluster = (engine: Record<string, unknown>) => parseConfig({ model: 'llama3.1-8b', servers: [{ id: 'n0', gpus: 8 }], engine });

  it('the engine command line carries --max-logprobs (both kinds), absent without the key', () => {
    for (const kind of ['emulator', 'vllm'] as const) {
      const cfg = engineConfigOf(cluster({ kind, maxLogprobs: 5 }), { tp: 1, gpuIds: [0], apiKey: 'k', profile: undefined }, {});
      expect(cfg.maxLogprobs).toBe(5);
      const args = engineSpec({ ...cfg, port: 8001 }).args;
      expect(args[args.indexOf('--max-logprobs') + 1], kind).toBe('5');
      expect(engineSpec({ ...engineConfigOf(cluster({ kind }), { tp: 1, gpuIds: [0], apiKey: 'k', profile: undefined }, {}), port: 8001 }).args).not.toContain('--max-logprobs');
    }
    expect(() => cluster({ maxLogprobs: 2000 })).toThrow(/maxLogprobs/);
  });

  it("the instance reports the bound its engine runs with: the key, or engine.args' own flag, which comes last", async () => {
    expect(maxLogprobsOf(cluster({ maxLogprobs: 5 }).engine)).toBe(5);
    expect(maxLogprobsOf(cluster({}).engine)).toBe(20);
    expect(maxLogprobsOf(cluster({ kind: 'vllm', maxLogprobs: 5, args: ['--max-logprobs', '50'] }).engine)).toBe(50);
    expect(maxLogprobsOf(cluster({ kind: 'vllm', args: ['--max-logprobs=-1'] }).engine)).toBe(1024);
    const engine = { tokenize: async () => ({ count: 3, maxModelLen: 4096, tokens: [1, 2, 3] }) } as unknown as Engine;
    const reply = await engineTokenize(engine, { v: 1, model: MODEL, prompt: 'a b' }, maxLogprobsOf(cluster({ maxLogprobs: 5 }).engine));
    expect(reply).toMatchObject({ ok: true, count: 3, maxModelLen: 4096, maxLogprobs: 5 });
  });

  it("the emulator started with --max-logprobs 5 refuses 6 with the gateway's words and serves 5", async () => {
    const em = new EmulatorServer({ perf: createPerfModel('llama3.1-8b', 'h100'), tp: 1, zeroDelay: true, servedModelName: MODEL, maxLogprobs: 5 });
    const base = `http://127.0.0.1:${await em.listen(0)}`;
    try {
      const r = await post(base, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 6 }));
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ message: 'Requested sample logprobs of 6, which is greater than max allowed: 5', type: 'BadRequestError', param: 'top_logprobs', code: 400 });
      expect((await post(base, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 5 }))).status).toBe(200);
    } finally {
      await em.close();
    }
  });
});

describe('/tokenize checks its parameters as the completions routes do', () => {
  let base: string;
  beforeAll(async () => {
    base = await start(backendOf());
  });

  it('a wrongly typed parameter gets the body /v1/completions gives for it; one vLLM\'s /tokenize does not define is ignored', async () => {
    for (const extra of [{ add_special_tokens: 'maybe' }, { add_special_tokens: 3 }]) {
      const t = await post(base, '/tokenize', { model: MODEL, prompt: 'hi there', ...extra });
      const c = await post(base, '/v1/completions', completion(extra));
      expect(t.status, JSON.stringify(extra)).toBe(400);
      expect(t.body, JSON.stringify(extra)).toEqual(c.body);
    }
    expect((await post(base, '/tokenize', { model: MODEL, prompt: 'x', add_special_tokens: 'maybe' })).body.error).toEqual({ message: "'add_special_tokens': Input should be a valid boolean", type: 'Bad Request', param: 'add_special_tokens', code: 400 });
    // pydantic's lax bool: 1 and "yes" are true
    expect((await post(base, '/tokenize', { model: MODEL, prompt: 'x', return_token_strs: 1, add_special_tokens: 'yes' })).status).toBe(200);
    // sampling parameters are no fields of vLLM's TokenizeCompletionRequest: ignored, as vLLM ignores them
    for (const extra of [{ top_p: 5 }, { temperature: -1 }, { stop: [''] }, { seed: 1.5 }]) {
      const r = await fetch(base + '/tokenize', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'x', ...extra }) });
      expect([r.status, r.headers.get('x-dynamollm-ignored-fields')], JSON.stringify(extra)).toEqual([200, Object.keys(extra)[0]]);
    }
  });

  it("a chat: vLLM's TokenizeChatRequest rules, and its fields served", async () => {
    const messages = [{ role: 'user', content: 'hi' }];
    const both = { continue_final_message: true, add_generation_prompt: true };
    const t = await post(base, '/tokenize', { model: MODEL, messages, ...both });
    expect(t.status).toBe(400);
    expect(t.body.error).toMatchObject({ message: 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.', param: 'continue_final_message' });
    expect((await post(base, '/v1/chat/completions', chat(both))).body).toEqual(t.body);
    expect((await post(base, '/tokenize', { model: MODEL, messages, chat_template_kwargs: 'x' })).body.error).toMatchObject({ message: "'chat_template_kwargs' must be a JSON object, got string", param: 'chat_template_kwargs' });
    const ok = await post(base, '/tokenize', { model: MODEL, messages, add_generation_prompt: false, add_special_tokens: false, return_token_strs: true });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ count: expect.any(Number) as number, max_model_len: 4096 });
    expect((ok.body.token_strs as string[]).length).toBe(ok.body.count);
  });
});
