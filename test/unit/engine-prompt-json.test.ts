/**
 * A token-id prompt's JSON text kept from the client's body for the engine's request (src/engine/prompt-json.ts,
 * actors/gateway/body.ts parseJsonBody, src/engine/client.ts completionPayload): the engine's bytes are
 * JSON.stringify(completionBody(req)) whichever path writes them; the client's text is kept only when it is what
 * JSON.stringify writes for the ids (a canonical array that is the body's own `prompt`), and the body's value is
 * JSON.parse's.
 */
import { describe, expect, it } from 'vitest';
import { KEEP_MIN_IDS, parseJsonBody } from '../../actors/gateway/body.ts';
import { completionBody, completionPayload } from '../../src/engine/client.ts';
import { idsJson } from '../../src/engine/prompt-json.ts';
import type { EngineCompletionRequest } from '../../src/engine/engine.ts';

const ids = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 50_000);
const replay = JSON.stringify({ model: 'm', prompt: ids, max_tokens: 200, min_tokens: 200, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });

/** the body's prompt, parsed, and the text kept with it (undefined: none). */
function kept(text: string): { body: Record<string, unknown>; json: string | undefined } {
  const body = parseJsonBody(text) as Record<string, unknown>;
  return { body, json: Array.isArray(body.prompt) ? idsJson(body.prompt as number[]) : undefined };
}

describe('parseJsonBody', () => {
  it("keeps a canonical id prompt's text, and gives JSON.parse's value", () => {
    const { body, json } = kept(replay);
    expect(body).toEqual(JSON.parse(replay));
    expect(json).toBe(JSON.stringify(ids));
    const pad = Array.from({ length: KEEP_MIN_IDS }, (_, i) => i).join(',');
    for (const t of [`{"prompt":[0,${pad}],"model":"m"}`, `{"model":"m","prompt":[5,0,10,9007199254740991,${pad}]}`, `{"prompt":[${pad}]}`]) {
      const k = kept(t);
      expect(k.body).toEqual(JSON.parse(t));
      expect(k.json).toBe(JSON.stringify(k.body.prompt));
    }
  });

  it('keeps no text of a prompt shorter than KEEP_MIN_IDS ids (JSON.stringify writes it for less)', () => {
    for (const n of [1, 8, KEEP_MIN_IDS - 1]) {
      const { body, json } = kept(JSON.stringify({ model: 'm', prompt: Array.from({ length: n }, (_, i) => i + 100) }));
      expect(Array.isArray(body.prompt)).toBe(true);
      expect(json, String(n)).toBeUndefined();
    }
    expect(kept(JSON.stringify({ prompt: Array.from({ length: KEEP_MIN_IDS }, (_, i) => i) })).json).toBeDefined();
  });

  it('keeps no text that JSON.stringify would not write for the body’s own prompt', () => {
    const cases = [
      '{"prompt": [1,2]}', // whitespace before the array
      '{"prompt":[1, 2]}',
      '{"prompt":[1,\n2]}',
      '{"prompt":[1e2,2]}',
      '{"prompt":[1.0,2]}',
      '{"prompt":[-0,2]}',
      '{"prompt":[12345678901234567890]}', // past 2^53: JSON.parse rounds it
      '{"prompt":[[1,2]]}',
      '{"prompt":[]}',
      '{"prompt":"text"}',
      '{"x":{"prompt":[3,4]},"prompt":[1,2]}', // the nested key spelled first
      '{"x":{"prompt":[3,4]},"\\u0070rompt":[1,2]}', // the body's key escaped: the literal one is nested
      '{"x":{"prompt":[1,2]},"\\u0070rompt":[1,2]}',
      '{"prompt":[3,4],"prompt":[1,2]}', // JSON.parse keeps the last
      '{"a\\"prompt":[3,4],"prompt":[1,2]}', // "prompt" inside another key
      '{"s":"\\"prompt\\":[3]","prompt":[1,2]}',
      '[{"prompt":[1,2]}]',
    ];
    // each array's ids after KEEP_MIN_IDS canonical ones: long enough to be kept, were it not for what each case tests
    const long = (t: string) => t.replace(/\[(?=[\d-])/g, `[${Array.from({ length: KEEP_MIN_IDS }, (_, i) => i).join(',')},`);
    for (const c of cases) {
      const t = long(c);
      const { body, json } = kept(t);
      expect(body, t).toEqual(JSON.parse(t));
      if (json !== undefined) expect(json, t).toBe(JSON.stringify(body.prompt));
    }
    // each of these has the one canonical spelling elsewhere than the body's own prompt, or none
    for (const t of cases.slice(0, 13)) expect(kept(long(t)).json, t).toBeUndefined();
  });

  it("throws JSON.parse's error for a body that is not JSON", () => {
    const bad = '{"prompt":[1,2],';
    let want = '';
    try {
      JSON.parse(bad);
    } catch (e) {
      want = (e as Error).message;
    }
    expect(() => parseJsonBody(bad)).toThrow(want);
  });
});

describe('completionPayload', () => {
  const base = (prompt: EngineCompletionRequest['prompt']): EngineCompletionRequest => ({ model: 'm', prompt, maxTokens: 200, requestId: 'r' });
  const same = (req: EngineCompletionRequest) => expect(completionPayload(req)).toBe(JSON.stringify(completionBody(req)));

  it('writes the bytes of JSON.stringify(completionBody(req)) with a kept prompt, in every member layout', () => {
    const prompt = (parseJsonBody(replay) as { prompt: number[] }).prompt;
    expect(idsJson(prompt)).toBeDefined();
    const variants: Partial<EngineCompletionRequest>[] = [
      {},
      { minTokens: 200, ignoreEos: true, continuousUsage: true },
      { temperature: 0.5 },
      { minTokens: 0, temperature: 0, ignoreEos: false },
      { params: { seed: 3, stop: ['x'], logprobs: 2 } },
      { params: { stream: false, model: 'other', 0: 'numeric key' }, continuousUsage: true, minTokens: 1 },
      { params: { min_tokens: 5 }, minTokens: 7 }, // a member after the prompt named by params: its place is params'
      { params: { temperature: 1 }, temperature: 0.2 },
      { params: { prompt: 'p', seed: 1 } },
      { params: { response_format: { type: 'json_object' } }, ignoreEos: true },
    ];
    for (const v of variants) same({ ...base(prompt), ...v });
  });

  it("writes a prompt with no kept text, a changed one, a text prompt and a chat as JSON.stringify does", () => {
    same(base([1, 2, 3]));
    same(base('hello'));
    same({ ...base(undefined), chat: [{ role: 'user', content: 'hi' }] });
    const prompt = (parseJsonBody(JSON.stringify({ prompt: Array.from({ length: KEEP_MIN_IDS }, () => 1).concat([2, 3]) })) as { prompt: number[] }).prompt;
    expect(idsJson(prompt)).toBeDefined();
    prompt.push(4);
    expect(idsJson(prompt)).toBeUndefined();
    expect(completionPayload(base(prompt))).toContain(',1,2,3,4]');
    same(base(prompt));
  });
});
