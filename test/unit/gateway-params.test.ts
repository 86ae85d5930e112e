/**
 * The gateway's OpenAI request parser: every parameter vLLM's OpenAI server accepts is carried to the engine
 * unchanged (InferenceRequest.params, validated by protocols/), one the cluster cannot honour is a 400 that names it,
 * and one vLLM's request model does not define is ignored as vLLM ignores it (ParsedRequest.ignored). Response helpers fold logprobs and tool call deltas as OpenAI does.
 */
import { describe, expect, it } from 'vitest';
import { HttpError, mergeLogprobs, mergeToolCalls, parseOpenAiRequest } from '../../actors/gateway/openai.ts';
import { InferenceRequest } from '../../protocols/messages.ts';

const refusal = (f: () => unknown): { status: number; param: string | null; message: string } => {
  try {
    f();
  } catch (e) {
    if (e instanceof HttpError) return { status: e.status, param: e.param, message: e.message };
    throw e;
  }
  throw new Error('no error');
};

describe('gateway request parameters', () => {
  it('carries sampling, stop, seed, logprobs, tools, response_format and vLLM extras unchanged through the wire codec', () => {
    const chat = {
      model: 'm', messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 'c1', content: '42' }],
      top_p: 0.9, top_k: 40, min_p: 0.05, frequency_penalty: 0.1, presence_penalty: 0.2, repetition_penalty: 1.1, seed: 7,
      stop: ['\n', 'END'], logprobs: true, top_logprobs: 3, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
      tool_choice: 'required', response_format: { type: 'json_object' }, priority: 2, include_stop_str_in_output: true,
      logit_bias: { '50256': -100 }, stop_token_ids: [2], skip_special_tokens: false, chat_template_kwargs: { enable_thinking: false },
      user: 'u1', min_tokens: 3, ignore_eos: false, temperature: 0.7, max_completion_tokens: 50,
    };
    const p = parseOpenAiRequest('chat', chat);
    const { model: _m, messages, min_tokens: _a, ignore_eos: _b, temperature: _c, max_completion_tokens: _d, ...rest } = chat;
    expect(p.params).toEqual(rest);
    expect(p).toMatchObject({ minTokens: 3, ignoreEos: false, temperature: 0.7, maxTokens: 50, user: 'u1' });
    expect(p.messages).toEqual(messages);
    // the wire message carries them as they are
    const wire = { v: 1 as const, id: 'r1', model: 'm', kind: 'chat' as const, messages: p.messages, inputTokens: 5, maxTokens: 50, arrivalMs: 1, giveUpAtMs: 2, streamSubject: 'dyn.v1.stream.r1', params: p.params };
    expect(InferenceRequest.decode(InferenceRequest.encode(wire), 's').params).toEqual(rest);

    const c = parseOpenAiRequest('completion', { model: 'm', prompt: 'x', logprobs: 2, echo: true, seed: 1, stop: 'x', guided_choice: ['a', 'b'], truncate_prompt_tokens: 10 });
    expect(c.params).toEqual({ logprobs: 2, echo: true, seed: 1, stop: 'x', guided_choice: ['a', 'b'], truncate_prompt_tokens: 10 });
    // null means the default: nothing to carry
    expect(parseOpenAiRequest('completion', { model: 'm', prompt: 'x', seed: null, stop: null }).params).toBeUndefined();
  });

  it('refuses what the cluster cannot honour with a 400 naming it', () => {
    const cases: [kind: 'chat' | 'completion', extra: Record<string, unknown>, param: string][] = [
      ['chat', { n: 1025 }, 'n'],
      ['completion', { n: 2, best_of: 1 }, 'best_of'],
      ['completion', { best_of: 3 }, 'best_of'],
      ['chat', { use_beam_search: true }, 'use_beam_search'],
      ['completion', { prompt_logprobs: 1 }, 'prompt_logprobs'],
      ['completion', { suffix: 'x' }, 'suffix'],
      ['completion', { return_token_ids: true }, 'return_token_ids'],
      ['chat', { return_token_ids: true }, 'return_token_ids'],
      ['chat', { seed: 'seven' }, 'seed'],
      ['chat', { logprobs: 2 }, 'logprobs'],
      ['completion', { logprobs: true }, 'logprobs'],
    ];
    for (const [kind, extra, param] of cases) {
      const base = kind === 'chat' ? { model: 'm', messages: [{ role: 'user', content: 'x' }] } : { model: 'm', prompt: 'x' };
      const e = refusal(() => parseOpenAiRequest(kind, { ...base, ...extra }));
      expect(e.status, param).toBe(400);
      expect(e.param, param).toBe(param);
      expect(e.message, param).toContain(param.split('.').pop()!);
    }
    // the default value of a refused parameter is no request for it
    expect(parseOpenAiRequest('chat', { model: 'm', messages: [{ role: 'user', content: 'x' }], n: 1, best_of: 1, use_beam_search: false }).params).toBeUndefined();
  });

  it("validates as vLLM: any temperature >= 0, truncate_prompt_tokens >= -1, no max_tokens cap but the context's, max_completion_tokens only on chat", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    expect(parseOpenAiRequest('chat', { ...chat, temperature: 3 }).temperature).toBe(3);
    expect(refusal(() => parseOpenAiRequest('chat', { ...chat, temperature: -0.5 })).param).toBe('temperature');
    const t = parseOpenAiRequest('completion', { model: 'm', prompt: 'x', truncate_prompt_tokens: -1 });
    expect(t.params).toEqual({ truncate_prompt_tokens: -1 });
    // -1 travels to the engine unchanged
    const wire = { v: 1 as const, id: 'r1', model: 'm', kind: 'completion' as const, prompt: 'x', inputTokens: 5, maxTokens: 5, arrivalMs: 1, giveUpAtMs: 2, streamSubject: 'dyn.v1.stream.r1', params: t.params };
    expect(InferenceRequest.decode(InferenceRequest.encode(wire), 's').params).toEqual({ truncate_prompt_tokens: -1 });
    expect(refusal(() => parseOpenAiRequest('completion', { model: 'm', prompt: 'x', truncate_prompt_tokens: -2 })).param).toBe('truncate_prompt_tokens');
    expect(parseOpenAiRequest('completion', { model: 'm', prompt: 'x', max_tokens: 100_000 }).maxTokens).toBe(100_000);
    expect(parseOpenAiRequest('chat', { ...chat, max_completion_tokens: 50_000 }).maxTokens).toBe(50_000);
    expect(refusal(() => parseOpenAiRequest('completion', { model: 'm', prompt: 'x', max_tokens: 0 })).param).toBe('max_tokens');
    // max_completion_tokens is not a field of vLLM's CompletionRequest: ignored, the default 16 applies
    const mct = parseOpenAiRequest('completion', { model: 'm', prompt: 'x', max_completion_tokens: 5 });
    expect([mct.maxTokens, mct.maxTokensGiven, mct.ignored, mct.params]).toEqual([16, false, ['max_completion_tokens'], undefined]);
  });

  it("accepts vLLM's structured_outputs (one constraint, its documented fields) and carries it through the wire codec", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    for (const so of [{ json: { type: 'object' }, disable_any_whitespace: true }, { regex: '[a-z]+' }, { choice: ['yes', 'no'] }, { grammar: 'root ::= "a"' }, { json_object: true }, { structural_tag: '{}' }, { json: '{"type":"string"}', whitespace_pattern: ' ?' }]) {
      const p = parseOpenAiRequest('chat', { ...chat, structured_outputs: so });
      expect(p.params).toEqual({ structured_outputs: so });
      const wire = { v: 1 as const, id: 'r1', model: 'm', kind: 'chat' as const, messages: p.messages, inputTokens: 5, maxTokens: 5, arrivalMs: 1, giveUpAtMs: 2, streamSubject: 'dyn.v1.stream.r1', params: p.params };
      expect(InferenceRequest.decode(InferenceRequest.encode(wire), 's').params).toEqual({ structured_outputs: so });
    }
    expect(parseOpenAiRequest('completion', { model: 'm', prompt: 'x', structured_outputs: { choice: ['a'] } }).params).toEqual({ structured_outputs: { choice: ['a'] } });
    // none or two constraints, a wrong type, an unknown field: 400 naming it
    for (const [so, param] of [[{}, 'structured_outputs'], [{ regex: 'a', choice: ['a'] }, 'structured_outputs'], [{ choice: 'a' }, 'structured_outputs.choice'], [{ regex: 'a', frob: 1 }, 'structured_outputs.frob']] as const) {
      const e = refusal(() => parseOpenAiRequest('chat', { ...chat, structured_outputs: so }));
      expect([e.status, e.param], JSON.stringify(so)).toEqual([400, param]);
    }
  });

  it("ignores a field vLLM's request model does not define, as vLLM does, and names it (ParsedRequest.ignored)", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    const p = parseOpenAiRequest('chat', { ...chat, store: false, metadata: { a: 'b' }, service_tier: 'auto', prompt: 'p', suffix: 's', seed: 3 });
    expect(p.ignored).toEqual(['store', 'metadata', 'service_tier', 'prompt', 'suffix']);
    expect(p.params).toEqual({ seed: 3 });
    // a chat-only field on /v1/completions, and stream_options' unknown keys
    const c = parseOpenAiRequest('completion', { model: 'm', prompt: 'x', tools: [], top_logprobs: 2, messages: [], stream: true, stream_options: { include_usage: true, frobnicate: true } });
    expect(c.ignored).toEqual(['tools', 'top_logprobs', 'messages', 'stream_options.frobnicate']);
    expect([c.params, c.includeUsage]).toEqual([undefined, true]);
    expect(parseOpenAiRequest('chat', chat).ignored).toEqual([]);
  });

  it('folds streamed logprobs and tool call deltas into one answer', () => {
    let lp = mergeLogprobs(undefined, { tokens: [' a'], token_logprobs: [-1], top_logprobs: [{ ' a': -1 }], text_offset: [0] });
    lp = mergeLogprobs(lp, { tokens: [' b'], token_logprobs: [-2], top_logprobs: [{ ' b': -2 }], text_offset: [2] });
    expect(lp).toEqual({ tokens: [' a', ' b'], token_logprobs: [-1, -2], top_logprobs: [{ ' a': -1 }, { ' b': -2 }], text_offset: [0, 2] });
    const calls: Record<string, unknown>[] = [];
    mergeToolCalls(calls, [{ index: 0, id: 't1', type: 'function', function: { name: 'get', arguments: '{"a"' } }]);
    mergeToolCalls(calls, [{ index: 0, function: { arguments: ':1}' } }]);
    expect(calls).toEqual([{ id: 't1', type: 'function', function: { name: 'get', arguments: '{"a":1}' } }]);
  });
});
