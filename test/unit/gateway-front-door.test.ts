/**
 * The gateway's front door while a prompt is being counted (the tokenizer's round trip): a client that leaves is never
 * submitted, maxInflight holds across the count, close() waits for counted requests; /v1/models answers without waiting
 * on a tokenizer; max_tokens capped by the context length only, truncate_prompt_tokens counted as the engine keeps the
 * prompt, echo with max_tokens 0 the prompt alone; CORS as vLLM's (preflight without an API key, allow headers on answers, the settings validated).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { gatewaySchema, applyOverrides } from '../../actors/gateway/config.ts';
import { MODELS_WAIT_MS } from '../../actors/gateway/models-route.ts';
import type { InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';

/** A backend whose tokenizer answers only when told (release), and whose streams are one token. */
class HeldTokenizer implements GatewayBackend {
  asked: TokenizeRequest[] = [];
  submitted: InferenceRequest[] = [];
  /** answer at once. */
  instant = false;
  private waiting: (() => void)[] = [];
  async tokenize(r: TokenizeRequest): Promise<TokenizeReply> {
    this.asked.push(r);
    if (!this.instant) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return { v: 1, ok: true, count: 5, maxModelLen: 4096 };
  }
  release(): void {
    for (const f of this.waiting.splice(0)) f();
  }
  async submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
    this.submitted.push(req);
    return (async function* (): AsyncGenerator<TokenChunk> {
      yield { v: 1, id: req.id, seq: 0, text: 'x', tokens: 1, done: true, finishReason: 'length', usage: { promptTokens: 5, completionTokens: 1, energyJ: 1, energySource: 'modelled' } };
    })();
  }
}

const until = async (f: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

let gw: GatewayServer | undefined;
afterEach(async () => {
  await gw?.close(100);
  gw = undefined;
});

const completion = (port: number, prompt: string, signal?: AbortSignal) =>
  fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', prompt, max_tokens: 1 }) });

describe('while the prompt is counted', () => {
  it('a client that leaves is not submitted, and its slot is given back', async () => {
    const backend = new HeldTokenizer();
    gw = new GatewayServer({ backend, port: 0, models: ['m'] });
    const port = await gw.listen();
    const ac = new AbortController();
    const r = completion(port, 'leaving', ac.signal).catch(() => 'aborted');
    await until(() => backend.asked.length === 1);
    expect(gw.inflightCount).toBe(1);
    ac.abort();
    expect(await r).toBe('aborted');
    await until(() => gw!.inflightCount === 0);
    backend.release();
    await new Promise((res) => setTimeout(res, 100));
    expect(backend.submitted).toEqual([]);
  });

  it('maxInflight counts requests whose prompt is being counted', async () => {
    const backend = new HeldTokenizer();
    gw = new GatewayServer({ backend, port: 0, models: ['m'], maxInflight: 2 });
    const port = await gw.listen();
    const rs = Array.from({ length: 5 }, (_, i) => completion(port, `p${i}`).then((x) => x.status));
    await until(() => backend.asked.length === 2);
    // the three past the limit are refused while the first two are still being counted
    const early = await Promise.all(rs.map((p) => Promise.race([p, new Promise((r) => setTimeout(() => r('pending'), 300))])));
    expect(early.filter((s) => s === 429)).toHaveLength(3);
    expect(early.filter((s) => s === 'pending')).toHaveLength(2);
    backend.release();
    expect((await Promise.all(rs)).sort()).toEqual([200, 200, 429, 429, 429]);
    expect(backend.submitted).toHaveLength(2);
    expect(gw.inflightCount).toBe(0);
  });

  it('close() waits for a request being counted', async () => {
    const backend = new HeldTokenizer();
    gw = new GatewayServer({ backend, port: 0, models: ['m'] });
    const port = await gw.listen();
    const r = completion(port, 'counted').then((x) => x.status, () => 'broken');
    await until(() => backend.asked.length === 1);
    const closing = gw.close(5000);
    await new Promise((res) => setTimeout(res, 100));
    backend.release();
    expect(await r).toBe(200);
    await closing;
    gw = undefined;
  });
});

describe('/v1/models', () => {
  it('answers at once while the tokenizer does not, and names max_model_len once it is known', async () => {
    const backend = new HeldTokenizer();
    gw = new GatewayServer({ backend, port: 0, models: ['m'] });
    const port = await gw.listen();
    const list = async () => (await (await fetch(`http://127.0.0.1:${port}/v1/models`, { signal: AbortSignal.timeout(2000) })).json()) as { data: { id: string; max_model_len?: number }[] };
    const t0 = Date.now();
    const first = await list();
    // the listing waits for the context length at most MODELS_WAIT_MS, then answers without it
    expect(Date.now() - t0).toBeLessThan(MODELS_WAIT_MS + 1500);
    expect(first.data).toHaveLength(1);
    expect(first.data[0]!.id).toBe('m');
    expect(first.data[0]!.max_model_len).toBeUndefined();
    await list(); // a second listing asks no second question while the first is out
    expect(backend.asked).toHaveLength(1);
    backend.release();
    let known: number | undefined;
    for (let i = 0; i < 50 && known === undefined; i++) known = (await list()).data[0]!.max_model_len;
    expect(known).toBe(4096);
  });

  it("the first listing carries max_model_len when the tokenizer answers within the bound", async () => {
    const backend = new HeldTokenizer();
    backend.instant = true;
    gw = new GatewayServer({ backend, port: 0, models: ['m'] });
    const port = await gw.listen();
    const first = (await (await fetch(`http://127.0.0.1:${port}/v1/models`, { signal: AbortSignal.timeout(2000) })).json()) as { data: { id: string; max_model_len?: number }[] };
    expect(first.data).toMatchObject([{ id: 'm', max_model_len: 4096 }]);
    // a gateway counting with its own tokenizer (no backend tokenizer) knows it at once too
    await gw.close(100);
    const own: GatewayBackend = { submit: backend.submit.bind(backend) };
    gw = new GatewayServer({ backend: own, port: 0, models: ['m'], maxModelLen: 2048 });
    const p2 = await gw.listen();
    expect(((await (await fetch(`http://127.0.0.1:${p2}/v1/models`)).json()) as { data: { max_model_len?: number }[] }).data[0]!.max_model_len).toBe(2048);
  });
});

describe('max_tokens and truncate_prompt_tokens against the context length (vLLM)', () => {
  it('max_tokens is capped by max_model_len - prompt only; truncate_prompt_tokens (-1: max_model_len) counts the prompt the engine keeps', async () => {
    const backend = new HeldTokenizer();
    backend.instant = true; // every prompt counts 5, max_model_len 4096
    gw = new GatewayServer({ backend, port: 0, models: ['m'] });
    const port = await gw.listen();
    const post = async (body: Record<string, unknown>) => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', prompt: 'hello', ...body }) });
      return { status: r.status, cause: r.headers.get('x-dynamollm-error-code'), body: (await r.json()) as { error?: { param: string | null; code: number; message: string } } };
    };
    expect((await post({ max_tokens: 4091 })).status).toBe(200);
    expect(backend.submitted.at(-1)!.maxTokens).toBe(4091);
    const over = await post({ max_tokens: 4092 });
    expect([over.status, over.body.error?.code, over.cause]).toEqual([400, 400, 'context_length_exceeded']);
    expect((await post({ max_tokens: 3, truncate_prompt_tokens: -1 })).status).toBe(200);
    expect(backend.submitted.at(-1)!.params).toEqual({ truncate_prompt_tokens: -1 });
    expect(backend.submitted.at(-1)!.inputTokens).toBe(5);
    expect((await post({ max_tokens: 4094, truncate_prompt_tokens: 2 })).status).toBe(200);
    expect(backend.submitted.at(-1)!.inputTokens).toBe(2);
    const big = await post({ max_tokens: 3, truncate_prompt_tokens: 5000 });
    expect([big.status, big.body.error?.param]).toEqual([400, 'truncate_prompt_tokens']);
    expect(big.body.error?.message).toContain('greater than max_model_len (4096)');
  });
});

describe('echo without generation (/v1/completions, echo and max_tokens 0, as vLLM)', () => {
  it('each choice is the prompt alone, finish_reason length, streamed or not; nothing goes to the cluster', async () => {
    const backend = new HeldTokenizer();
    backend.instant = true; // every prompt counts 5
    gw = new GatewayServer({ backend, port: 0, models: ['m'] });
    const port = await gw.listen();
    const post = async (body: Record<string, unknown>) => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', echo: true, max_tokens: 0, ...body }) });
      return { status: r.status, text: await r.text() };
    };
    const one = await post({ prompt: 'Say it back', n: 2 });
    expect(one.status).toBe(200);
    const body = JSON.parse(one.text) as { choices: { index: number; text: string; finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(body.choices).toEqual([expect.objectContaining({ index: 0, text: 'Say it back', finish_reason: 'length' }), expect.objectContaining({ index: 1, text: 'Say it back', finish_reason: 'length' })]);
    expect(body.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 0 });
    const streamed = await post({ prompt: 'Say it back', stream: true, stream_options: { include_usage: true } });
    const events = streamed.text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: { text: string; finish_reason: string | null }[]; usage?: { completion_tokens: number } });
    expect(chunks.map((c) => c.choices[0]?.text).join('')).toBe('Say it back');
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage).toMatchObject({ completion_tokens: 0 });
    // a token-id prompt is echoed as its text (the built-in tokenizer's)
    const ids = JSON.parse((await post({ prompt: [15043, 3186] })).text) as { choices: { text: string }[] };
    expect(ids.choices[0]!.text.trim().length).toBeGreaterThan(0);
    expect(backend.submitted).toEqual([]);
    // max_tokens 0 needs echo; echo's logprobs at 0 tokens would be prompt logprobs (refused)
    expect((await post({ prompt: 'x', echo: false })).status).toBe(400);
    expect((await post({ prompt: 'x', logprobs: 1 })).status).toBe(400);
  });
});

/** A raw request (fetch would add its own CORS behaviour). */
function raw(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const q = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
    });
    q.on('error', reject);
    q.end(body);
  });
}

describe('CORS (vLLM defaults: any origin, method and header, no credentials)', () => {
  const KEY = 'sk-cors-test-1';
  const preflight = { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' };

  it('a preflight is answered without an API key; the request itself still needs one and carries the allow header', async () => {
    gw = new GatewayServer({ backend: new HeldTokenizer(), port: 0, models: ['m'], apiKeys: [KEY] });
    const port = await gw.listen();
    for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/models']) {
      const p = await raw(port, 'OPTIONS', path, preflight);
      expect(p.status, path).toBe(200);
      expect(p.body).toBe('OK');
      expect(p.headers['access-control-allow-origin']).toBe('*');
      expect(p.headers['access-control-allow-methods']).toBe('DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT');
      expect(p.headers['access-control-allow-headers']).toBe('authorization, content-type');
      expect(p.headers['access-control-allow-credentials']).toBeUndefined();
    }
    const denied = await raw(port, 'GET', '/v1/models', { origin: 'https://app.example' });
    expect(denied.status).toBe(401);
    const ok = await raw(port, 'GET', '/v1/models', { origin: 'https://app.example', authorization: `Bearer ${KEY}` });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('*');
    // without an Origin nothing changes: no CORS header, and an OPTIONS is no route
    expect((await raw(port, 'GET', '/v1/models', { authorization: `Bearer ${KEY}` })).headers['access-control-allow-origin']).toBeUndefined();
    expect((await raw(port, 'OPTIONS', '/v1/models', { authorization: `Bearer ${KEY}` })).status).toBe(405);
  });

  it('named origins, methods, headers and credentials: allowed ones named back, others a 400 saying which', async () => {
    gw = new GatewayServer({ backend: new HeldTokenizer(), port: 0, models: ['m'], cors: { allowedOrigins: ['https://app.example'], allowedMethods: ['GET', 'POST'], allowedHeaders: ['Authorization'], allowCredentials: true } });
    const port = await gw.listen();
    const p = await raw(port, 'OPTIONS', '/v1/completions', preflight);
    expect(p.status).toBe(200);
    expect(p.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(p.headers['access-control-allow-credentials']).toBe('true');
    expect(p.headers.vary).toBe('Origin');
    expect(p.headers['access-control-allow-headers']).toBe('Accept, Accept-Language, Authorization, Content-Language, Content-Type');
    const bad = await raw(port, 'OPTIONS', '/v1/completions', { origin: 'https://evil.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'x-other' });
    expect(bad.status).toBe(400);
    expect(bad.body).toBe('Disallowed CORS origin, method, headers');
    expect(bad.headers['access-control-allow-origin']).toBeUndefined();
    const ok = await raw(port, 'GET', '/v1/models', { origin: 'https://app.example' });
    expect(ok.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(ok.headers['access-control-allow-credentials']).toBe('true');
    expect((await raw(port, 'GET', '/v1/models', { origin: 'https://evil.example' })).headers['access-control-allow-origin']).toBeUndefined();
  });

  it('the settings: vLLM defaults, --set, and invalid values refused', () => {
    const g = gatewaySchema.parse({});
    expect([g.allowedOrigins, g.allowedMethods, g.allowedHeaders, g.allowCredentials]).toEqual([['*'], ['*'], ['*'], false]);
    const s = applyOverrides(g, { allowedOrigins: 'https://a.example, http://localhost:3000', allowCredentials: 'true', allowedMethods: 'GET,POST' }, {});
    expect([s.allowedOrigins, s.allowedMethods, s.allowCredentials]).toEqual([['https://a.example', 'http://localhost:3000'], ['GET', 'POST'], true]);
    expect(gatewaySchema.safeParse({ allowedOrigins: ['https://a.example/'] }).success).toBe(false);
    expect(gatewaySchema.safeParse({ allowedOrigins: ['a.example'] }).success).toBe(false);
    expect(gatewaySchema.safeParse({ allowedMethods: ['GET POST'] }).success).toBe(false);
    expect(gatewaySchema.safeParse({ allowedHeaders: ['x:y'] }).success).toBe(false);
    expect(gatewaySchema.safeParse({ allowCredentials: 'yes' }).success).toBe(false);
  });
});
