/**
 * The gateway's SSE chunks have vLLM v0.11's OpenAI-server shape, field for field (vLLM serializes its chat chunks
 * with exclude_unset, so a field it does not set is absent, and one it sets to None is null; its completion chunks
 * with exclude_unset False, every field):
 * - chat: a first chunk with the assistant role, empty content and prompt_token_ids null, then deltas without role
 *   and without stop_reason, then a closing chunk with finish_reason and stop_reason; token_ids null on every delta;
 * - completions: stop_reason, prompt_token_ids and token_ids on every chunk (null until set), usage null on every chunk;
 * - ids `cmpl-` / `chatcmpl-`, the same on every chunk of a request; no field vLLM does not send;
 * - stream_options.include_usage: a trailing chunk with empty choices and the usage; continuous_usage_stats
 *   (only with include_usage, as vLLM) puts the running usage on every chunk.
 */
import { describe, expect, it } from 'vitest';
import { parseOpenAiRequest, usageOut } from '../../actors/gateway/openai.ts';
import { continuousUsage, roleChunk, streamChunk, usageChunk } from '../../actors/gateway/responses.ts';
import { finishTextFrame, plainTextFrame, textFrame, textUsageFrame } from '../../actors/gateway/sse-frames.ts';

const keys = (o: object) => Object.keys(o).sort();

describe('SSE chunks shaped like vLLM', () => {
  it('completion chunks: stop_reason on every chunk, finish_reason and stop_reason set on the closing one', () => {
    const mid = streamChunk('completion', 'r1', 7, 'm', { text: ' hello' });
    expect(keys(mid)).toEqual(['choices', 'created', 'id', 'model', 'object', 'usage']);
    expect(mid).toMatchObject({ id: 'cmpl-r1', object: 'text_completion', created: 7, model: 'm', usage: null });
    expect(mid.choices).toEqual([{ index: 0, text: ' hello', logprobs: null, finish_reason: null, stop_reason: null, prompt_token_ids: null, token_ids: null }]);
    const end = streamChunk('completion', 'r1', 7, 'm', { text: ' world', finish: 'stop', stopReason: '\n' });
    expect(end.choices).toEqual([{ index: 0, text: ' world', logprobs: null, finish_reason: 'stop', stop_reason: '\n', prompt_token_ids: null, token_ids: null }]);
    expect(end.id).toBe(mid.id);
  });

  it('chat: role chunk first, deltas without role or stop_reason, the closing chunk with both reasons', () => {
    const role = roleChunk('r2', 7, 'm');
    expect(keys(role)).toEqual(['choices', 'created', 'id', 'model', 'object', 'prompt_token_ids']);
    expect(role).toMatchObject({ id: 'chatcmpl-r2', object: 'chat.completion.chunk', prompt_token_ids: null });
    expect(role.choices).toEqual([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
    expect(roleChunk('r2', 7, 'm', undefined, 1, 'user').choices).toEqual([{ index: 1, delta: { role: 'user', content: '' }, logprobs: null, finish_reason: null }]);
    const mid = streamChunk('chat', 'r2', 7, 'm', { text: 'Hi' });
    expect(mid.choices).toEqual([{ index: 0, delta: { content: 'Hi' }, logprobs: null, finish_reason: null, token_ids: null }]);
    const end = streamChunk('chat', 'r2', 7, 'm', { text: '!', finish: 'length' });
    expect(end.choices).toEqual([{ index: 0, delta: { content: '!' }, logprobs: null, finish_reason: 'length', stop_reason: null, token_ids: null }]);
    for (const c of [role, mid, end]) expect(c.id).toBe('chatcmpl-r2');
  });

  it('no field vLLM does not send, whatever a chunk carries', () => {
    const allowedTop = new Set(['id', 'object', 'created', 'model', 'choices', 'usage']);
    const allowedChoice = new Set(['index', 'text', 'delta', 'logprobs', 'finish_reason', 'stop_reason', 'prompt_token_ids', 'token_ids']);
    for (const kind of ['chat', 'completion'] as const) {
      for (const part of [{ text: 'a' }, { text: '', finish: 'stop' as const }, { text: 'b', usage: continuousUsage(3, 1) }, { text: '', toolCalls: [{ index: 0, id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }] }]) {
        const c = streamChunk(kind, 'x', 1, 'm', part) as { choices: object[] };
        for (const k of Object.keys(c)) expect(allowedTop.has(k), `${kind} ${k}`).toBe(true);
        for (const k of Object.keys(c.choices[0]!)) expect(allowedChoice.has(k), `${kind} choice ${k}`).toBe(true);
      }
    }
  });

  it('include_usage: a trailing chunk with no choices; continuous_usage_stats: the running usage on every chunk', () => {
    const u = usageChunk('chat', 'r3', 7, 'm', usageOut(undefined, 5, 3));
    expect(u.choices).toEqual([]);
    expect(JSON.stringify(u.usage)).toBe('{"prompt_tokens":5,"total_tokens":8,"completion_tokens":3,"energy_joules":0,"energy_source":"modelled"}');
    expect(u.object).toBe('chat.completion.chunk');
    const c = streamChunk('completion', 'r3', 7, 'm', { text: 'x', usage: continuousUsage(5, 2) });
    expect(JSON.stringify((c as { usage?: unknown }).usage)).toBe('{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2,"prompt_tokens_details":null}');
    expect(JSON.stringify(streamChunk('chat', 'r3', 7, 'm', { text: 'x', usage: continuousUsage(5, 2) }).usage)).toBe('{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}');
    expect(JSON.stringify(roleChunk('r3', 7, 'm', continuousUsage(5, 0)).usage)).toBe('{"prompt_tokens":5,"total_tokens":5,"completion_tokens":0}');
    const body = (so: Record<string, unknown>) => parseOpenAiRequest('completion', { model: 'm', prompt: 'x', stream: true, stream_options: so });
    expect(body({ include_usage: true, continuous_usage_stats: true }).continuousUsage).toBe(true);
    // vLLM: continuous usage only together with include_usage, which is true unless set otherwise
    expect(body({ continuous_usage_stats: true }).continuousUsage).toBe(true);
    expect(body({ include_usage: false, continuous_usage_stats: true }).continuousUsage).toBe(false);
    expect(body({ include_usage: true }).continuousUsage).toBe(false);
  });
});

describe('plain text token frames', () => {
  it('are the exact bytes JSON.stringify gives for the chunk, whatever the text, id, model and choice', () => {
    const texts = [' hello', '', '"', '\\', '\n\t', '\u0001', 'é😀', '</script>', '"text":"x"'];
    for (const kind of ['completion', 'chat'] as const) {
      for (const [id, model] of [['r1', 'm'], ['a"b\u0001', 'mo\u0001del"']]) {
        for (const index of [0, 3]) {
          const [pre, post] = textFrame(kind, id!, 1700000000, model!, index);
          for (const text of texts) {
            expect(pre + JSON.stringify(text) + post).toBe(`data: ${JSON.stringify(streamChunk(kind, id!, 1700000000, model!, { text }, index))}\n\n`);
          }
        }
      }
    }
  });

  it("a choice's plain last event: the exact bytes JSON.stringify gives for the chunk with its finish and stop reason", () => {
    const texts = [' hello', '', '"', '\\', '\n\t', '\u0001', 'é😀', '"finish_reason":"x"'];
    for (const kind of ['completion', 'chat'] as const) {
      for (const [id, model] of [['r1', 'm'], ['a"b\u0001', 'mo\u0001del"']]) {
        for (const index of [0, 3]) {
          for (const finish of ['stop', 'length', 'tool_calls', 'cancelled', 'error'] as const) {
            for (const stopReason of [undefined, null, 'END"\n', 128001]) {
              for (const text of texts) {
                expect(finishTextFrame(kind, id!, 1700000000, model!, index, text, finish, stopReason))
                  .toBe(`data: ${JSON.stringify(streamChunk(kind, id!, 1700000000, model!, { text, finish, stopReason }, index))}\n\n`);
              }
            }
          }
        }
      }
    }
  });

  it('with continuous usage: the exact bytes JSON.stringify gives for the chunk with the usage so far', () => {
    const texts = [' hello', '', '"', '\\', '\n\t', '\u0001', '\u0002', 'é😀', '"usage":{"x":1}', '"text":"x"'];
    for (const kind of ['completion', 'chat'] as const) {
      for (const [id, model] of [['r1', 'm'], ['a"b\u0001\u0002', 'mo\u0002del"\u0001']]) {
        for (const index of [0, 3]) {
          for (const prompt of [0, 1, 4096, 123456789]) {
            const frame = textUsageFrame(kind, id!, 1700000000, model!, prompt, index);
            for (const text of texts) {
              for (const done of [0, 1, 17, 100000]) {
                expect(frame(text, done)).toBe(`data: ${JSON.stringify(streamChunk(kind, id!, 1700000000, model!, { text, usage: continuousUsage(prompt, done) }, index))}\n\n`);
                expect(plainTextFrame(kind, id!, 1700000000, model!, index, prompt)(text, done)).toBe(frame(text, done));
                expect(plainTextFrame(kind, id!, 1700000000, model!, index)(text, done)).toBe(`data: ${JSON.stringify(streamChunk(kind, id!, 1700000000, model!, { text }, index))}\n\n`);
              }
            }
          }
        }
      }
    }
  });
});
