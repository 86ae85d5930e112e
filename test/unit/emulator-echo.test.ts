/**
 * The emulator's `echo` on /v1/completions, as vLLM's serving_completion.py: the prompt's text before the output, in
 * the first event of the stream and at the start of the full response's text (a token-id prompt decoded, as vLLM
 * detokenizes it); with max_tokens 0 the prompt alone, vLLM's one generated token counted in the usage; the usage
 * otherwise as without echo (the prompt's tokens, the tokens generated); through the gateway, the client gets the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { decodeTokens, encodeText } from '../../src/engine/emulator/tokenizer.ts';
import { grantedGateway } from '../helpers/granted-gateway.ts';

const MODEL = 'm';
let em: EmulatorServer;
let base = '';
beforeAll(async () => {
  em = new EmulatorServer({ perf: createPerfModel('llama3.1-8b', 'h100'), tp: 1, zeroDelay: true, servedModelName: MODEL, seed: 5 });
  base = `http://127.0.0.1:${await em.listen(0)}`;
});
const closers: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of closers.splice(0)) await c();
  await em.close();
});

type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };
type Body = { choices: { text: string; finish_reason: string | null }[]; usage?: Usage | null };
async function completion(body: Record<string, unknown>): Promise<{ status: number; whole?: Body; events?: Body[]; error?: { message: string } }> {
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, ignore_eos: true, seed: 9, ...body }) });
  const text = await r.text();
  if (r.status !== 200) return { status: r.status, error: (JSON.parse(text) as { error: { message: string } }).error };
  if (!body.stream) return { status: 200, whole: JSON.parse(text) as Body };
  return { status: 200, events: text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)) as Body) };
}

describe('emulator echo, as vLLM', () => {
  it('max_tokens > 0, not streamed: the prompt then the output; the usage as without echo', async () => {
    const plain = (await completion({ prompt: 'Once upon a time', max_tokens: 5 })).whole!;
    const echoed = (await completion({ prompt: 'Once upon a time', max_tokens: 5, echo: true })).whole!;
    expect(echoed.choices[0]!.text).toBe(`Once upon a time${plain.choices[0]!.text}`);
    expect(echoed.usage).toEqual(plain.usage);
    expect(echoed.usage!.completion_tokens).toBe(5);
  });

  it('max_tokens > 0, streamed: the prompt in the first event with the first token, the rest as without echo', async () => {
    const plain = (await completion({ prompt: 'Once upon a time', max_tokens: 5, stream: true, stream_options: { include_usage: true } })).events!;
    const echoed = (await completion({ prompt: 'Once upon a time', max_tokens: 5, stream: true, stream_options: { include_usage: true }, echo: true })).events!;
    const texts = (evs: Body[]) => evs.filter((e) => e.choices.length > 0).map((e) => e.choices[0]!.text);
    expect(texts(echoed)).toEqual(texts(plain).map((t, i) => (i === 0 ? `Once upon a time${t}` : t)));
    expect(echoed.at(-1)!.usage).toEqual(plain.at(-1)!.usage);
  });

  it("a token-id prompt is echoed as its ids decoded, streamed and not", async () => {
    const ids = encodeText(' The river bends');
    const text = decodeTokens(ids);
    expect(text).toContain('The river bends');
    const whole = (await completion({ prompt: ids, max_tokens: 3, echo: true })).whole!;
    const plain = (await completion({ prompt: ids, max_tokens: 3 })).whole!;
    expect(whole.choices[0]!.text).toBe(text + plain.choices[0]!.text);
    const events = (await completion({ prompt: ids, max_tokens: 3, echo: true, stream: true })).events!;
    expect(events[0]!.choices[0]!.text.startsWith(text)).toBe(true);
    expect(events.map((e) => e.choices[0]!.text).join('')).toBe(whole.choices[0]!.text);
  });

  it('max_tokens 0: the prompt alone, finish length; the usage counts the one token vLLM generates', async () => {
    const whole = (await completion({ prompt: 'Echo me', max_tokens: 0, echo: true })).whole!;
    expect(whole.choices[0]).toMatchObject({ text: 'Echo me', finish_reason: 'length' });
    expect(whole.usage).toMatchObject({ completion_tokens: 1 });
    expect(whole.usage!.total_tokens).toBe(whole.usage!.prompt_tokens + 1);
    const events = (await completion({ prompt: 'Echo me', max_tokens: 0, echo: true, stream: true, stream_options: { include_usage: true } })).events!;
    expect(events.filter((e) => e.choices.length > 0).map((e) => [e.choices[0]!.text, e.choices[0]!.finish_reason])).toEqual([['Echo me', 'length']]);
    expect(events.at(-1)!.usage).toMatchObject({ completion_tokens: 1, prompt_tokens: whole.usage!.prompt_tokens });
    // without echo, max_tokens 0 is still refused
    expect((await completion({ prompt: 'Echo me', max_tokens: 0 })).status).toBe(400);
  });

  it('n choices: each choice starts with the prompt', async () => {
    const whole = (await completion({ prompt: 'Twice', max_tokens: 2, n: 2, echo: true })).whole!;
    expect(whole.choices.map((c) => c.text.startsWith('Twice'))).toEqual([true, true]);
    expect(whole.choices.every((c) => c.text.length > 'Twice'.length)).toBe(true);
  });

  it('echo with logprobs (prompt logprobs) is a 400 that says the emulator does not produce them', async () => {
    const r = await completion({ prompt: 'x', max_tokens: 2, echo: true, logprobs: 1 });
    expect(r.status).toBe(400);
    expect(r.error!.message).toMatch(/prompt logprobs/);
  });
});

describe('echo through the gateway', () => {
  it("a client's echo with max_tokens > 0 reaches the engine, and the prompt comes back first, streamed and not", async () => {
    const { port } = await grantedGateway([base], { closers });
    const ask = (stream: boolean) => fetch(`http://127.0.0.1:${port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'Relay me', max_tokens: 4, ignore_eos: true, seed: 9, echo: true, stream }) });
    const direct = (await completion({ prompt: 'Relay me', max_tokens: 4, echo: true })).whole!.choices[0]!.text;
    expect(direct.startsWith('Relay me')).toBe(true);
    const whole = (await (await ask(false)).json()) as Body;
    expect(whole.choices[0]!.text).toBe(direct);
    const events = (await (await ask(true)).text()).split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)) as Body);
    expect(events[0]!.choices[0]!.text.startsWith('Relay me')).toBe(true);
    expect(events.map((e) => e.choices[0]?.text ?? '').join('')).toBe(direct);
  });
});
