/**
 * The emulator's truncate_prompt_tokens, as vLLM: the prompt's last k tokens are what the engine takes (usage counts
 * them), -1 the last max_model_len, a k over max_model_len or below -1 a 400.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';

const MODEL = 'llama2-70b';
let em: EmulatorServer;
let base: string;

beforeAll(async () => {
  em = new EmulatorServer({ perf: createPerfModel(MODEL, 'h100'), tp: 4, zeroDelay: true, servedModelName: MODEL });
  base = `http://127.0.0.1:${await em.listen(0)}`;
});
afterAll(async () => {
  await em.close();
});

const complete = async (body: Record<string, unknown>) => {
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, max_tokens: 1, ...body }) });
  return { status: r.status, body: (await r.json()) as { usage?: { prompt_tokens: number }; error?: { message: string } } };
};

describe('emulator truncate_prompt_tokens', () => {
  it('keeps the last k tokens; -1 keeps max_model_len; beyond max_model_len or below -1 is a 400', async () => {
    const maxLen = createPerfModel(MODEL, 'h100').model.maxContext;
    const ids = Array.from({ length: maxLen + 50 }, (_, i) => 100 + (i % 1000));
    expect((await complete({ prompt: ids.slice(0, 40) })).body.usage?.prompt_tokens).toBe(40);
    expect((await complete({ prompt: ids.slice(0, 40), truncate_prompt_tokens: 7 })).body.usage?.prompt_tokens).toBe(7);
    expect((await complete({ prompt: ids.slice(0, 40), truncate_prompt_tokens: -1 })).body.usage?.prompt_tokens).toBe(40);
    // a prompt over the context, truncated to it, leaves no room for a token: the context-length 400 (vLLM's answer)
    const full = await complete({ prompt: ids, truncate_prompt_tokens: -1 });
    expect(full.status).toBe(400);
    expect(full.body.error?.message).toContain(`maximum context length is ${maxLen}`);
    expect((await complete({ prompt: ids, truncate_prompt_tokens: maxLen - 1 })).body.usage?.prompt_tokens).toBe(maxLen - 1);
    const big = await complete({ prompt: ids.slice(0, 40), truncate_prompt_tokens: maxLen + 1 });
    expect(big.status).toBe(400);
    expect(big.body.error?.message).toContain('greater than max_model_len');
    expect((await complete({ prompt: ids.slice(0, 40), truncate_prompt_tokens: -2 })).status).toBe(400);
  });
});
