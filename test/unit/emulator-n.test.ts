/**
 * The emulator's `n` (vLLM's parallel sampling): n choices, choice i the answer of seed + i, each with its
 * index; streamed, a chat opens with one role chunk per choice, each choice's last token carries its
 * finish_reason, and the usage chunk (completion tokens summed) comes after the last choice, then [DONE].
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';

const MODEL = 'llama2-70b';
let em: EmulatorServer;
let client: OpenAI;
let base: string;
type Vllm = { ignore_eos?: boolean };

beforeAll(async () => {
  em = new EmulatorServer({ perf: createPerfModel('llama2-70b', 'h100'), tp: 4, zeroDelay: true, servedModelName: MODEL });
  const port = await em.listen(0);
  base = `http://127.0.0.1:${port}`;
  client = new OpenAI({ apiKey: 'none', baseURL: `${base}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await em.close();
});

describe('emulator n choices, as vLLM', () => {
  it('choice i is the answer of seed + i; usage counts the prompt once and every choice\'s tokens', async () => {
    const body = { model: MODEL, prompt: 'Tell me about energy', max_tokens: 10, ignore_eos: true };
    const one = await Promise.all([0, 1, 2].map((i) => client.completions.create({ ...body, seed: 40 + i } as OpenAI.CompletionCreateParamsNonStreaming & Vllm)));
    const r = await client.completions.create({ ...body, seed: 40, n: 3 } as OpenAI.CompletionCreateParamsNonStreaming & Vllm);
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.choices.map((c) => c.text)).toEqual(one.map((o) => o.choices[0]!.text));
    expect(new Set(r.choices.map((c) => c.text)).size).toBe(3);
    expect(r.usage).toMatchObject({ prompt_tokens: one[0]!.usage!.prompt_tokens, completion_tokens: 30 });
  });

  it('streamed chat: a role chunk per choice, chunks naming their choice, the finish on each choice\'s last text chunk, usage last', async () => {
    const body = { model: MODEL, messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 6, ignore_eos: true, seed: 3, n: 2 };
    const whole = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming & Vllm);
    const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
    const events = (await r.text()).split('\n\n').filter((e) => e !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    type Chunk = { choices: { index: number; delta: { role?: string; content?: string }; finish_reason: string | null }[]; usage?: { completion_tokens: number } };
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as Chunk);
    expect(chunks.slice(0, 2).map((c) => [c.choices[0]!.index, c.choices[0]!.delta.role])).toEqual([[0, 'assistant'], [1, 'assistant']]);
    for (const i of [0, 1]) {
      const mine = chunks.slice(2, -1).filter((c) => c.choices[0]!.index === i);
      expect(mine.map((c) => c.choices[0]!.delta.content).join('')).toBe(whole.choices[i]!.message.content);
      expect(mine.map((c) => c.choices[0]!.finish_reason)).toEqual([...new Array<null>(mine.length - 1).fill(null), 'length']);
      expect(mine.at(-1)!.choices[0]!.delta.content!.length).toBeGreaterThan(0);
    }
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(12);
  });
});
