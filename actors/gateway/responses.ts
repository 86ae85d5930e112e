/**
 * The gateway's answers as vLLM v0.11's OpenAI server writes them (pydantic's model_dump of its response classes,
 * vllm/entrypoints/openai/protocol.py): the non-streamed bodies, the SSE chunks, a chat's role. Pure: no I/O.
 */
import { finishOut, type ApiKind, type ChoiceOut, type FinishReason, type ParsedRequest, type UsageOut } from './openai.ts';

/** The usage of a non-streamed body: vLLM's UsageInfo as its model_dump writes it (prompt_tokens_details null), then the extension. */
const bodyUsage = ({ prompt_tokens, total_tokens, completion_tokens, ...ext }: UsageOut) => ({ prompt_tokens, total_tokens, completion_tokens, prompt_tokens_details: null, ...ext });

/**
 * The response of one or several choices (`n`), each with its index, as vLLM v0.11's server gives it: its
 * CompletionResponse through pydantic's model_dump, every member it declares, in its order (null: one this cluster never sets).
 */
export function completionResponse(id: string, created: number, model: string, c: ChoiceOut | readonly ChoiceOut[], usage: UsageOut) {
  const cs = Array.isArray(c) ? (c as readonly ChoiceOut[]) : [c as ChoiceOut];
  return {
    id: `cmpl-${id}`,
    object: 'text_completion' as const,
    created,
    model,
    choices: cs.map((x, index) => ({
      index, text: x.text, logprobs: x.logprobs ?? null, finish_reason: finishOut(x.finish), stop_reason: x.stopReason ?? null,
      token_ids: null, prompt_logprobs: null, prompt_token_ids: null,
    })),
    service_tier: null,
    system_fingerprint: null,
    usage: bodyUsage(usage),
    kv_transfer_params: null,
  };
}

/** A chat answer's role, as vLLM's get_chat_request_role: the last message's with add_generation_prompt false, else the assistant's. */
export function chatRole(p: Pick<ParsedRequest, 'messages' | 'params'>): string {
  return p.params?.add_generation_prompt === false ? (p.messages?.at(-1)?.role ?? 'assistant') : 'assistant';
}

/** The chat response of the choices: vLLM v0.11's ChatCompletionResponse through model_dump (as completionResponse). */
export function chatResponse(id: string, created: number, model: string, c: ChoiceOut | readonly ChoiceOut[], usage: UsageOut, role = 'assistant') {
  const cs = Array.isArray(c) ? (c as readonly ChoiceOut[]) : [c as ChoiceOut];
  const choice = (x: ChoiceOut, index: number) => {
    const calls = x.toolCalls?.filter(Boolean) ?? [];
    const message = {
      role,
      content: calls.length > 0 && x.text === '' ? null : x.text,
      refusal: null, annotations: null, audio: null, function_call: null,
      tool_calls: calls,
      reasoning_content: x.reasoning ?? null,
    };
    return { index, message, logprobs: x.logprobs ?? null, finish_reason: finishOut(x.finish), stop_reason: x.stopReason ?? null, token_ids: null };
  };
  return {
    id: `chatcmpl-${id}`,
    object: 'chat.completion' as const,
    created,
    model,
    choices: cs.map(choice),
    service_tier: null,
    system_fingerprint: null,
    usage: bodyUsage(usage),
    prompt_logprobs: null,
    prompt_token_ids: null,
    kv_transfer_params: null,
  };
}

/** What one SSE event carries: a piece of the answer, and (with `finish`) the end of it. */
export interface StreamPart {
  text?: string;
  finish?: FinishReason;
  stopReason?: string | number | null;
  logprobs?: Record<string, unknown>;
  toolCalls?: Record<string, unknown>[];
  reasoning?: string;
  /** stream_options.continuous_usage_stats: the usage so far (vLLM's three counts, no extension). */
  usage?: ContinuousUsage;
}

/** vLLM's UsageInfo counts in its order. */
export interface ContinuousUsage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
}

export const continuousUsage = (promptTokens: number, completionTokens: number): ContinuousUsage => ({
  prompt_tokens: promptTokens,
  total_tokens: promptTokens + completionTokens,
  completion_tokens: completionTokens,
});

/**
 * One SSE event, shaped as vLLM v0.11's OpenAI server shapes it. Completions: the chunk through model_dump_json with
 * exclude_unset False, so every member (stop_reason, prompt_token_ids and token_ids on every choice, null until set;
 * `usage` on every chunk, null but with continuous usage, whose prompt_tokens_details is null). Chat: exclude_unset, so
 * only what vLLM sets (token_ids null on every choice; stop_reason on the closing one). The closing chunk holds the
 * last piece of text (if any) together with finish_reason. No field vLLM does not send.
 */
export function streamChunk(kind: ApiKind, id: string, created: number, model: string, part: StreamPart, index = 0) {
  const finish_reason = part.finish ? finishOut(part.finish) : null;
  if (kind === 'completion') {
    return {
      id: `cmpl-${id}`,
      object: 'text_completion' as const,
      created,
      model,
      choices: [{
        index, text: part.text ?? '', logprobs: part.logprobs ?? null, finish_reason, stop_reason: part.finish ? (part.stopReason ?? null) : null,
        prompt_token_ids: null, token_ids: null,
      }],
      usage: part.usage ? { ...part.usage, prompt_tokens_details: null } : null,
    };
  }
  const delta: Record<string, unknown> = {};
  if (part.text !== undefined && (part.text !== '' || !part.toolCalls)) delta.content = part.text;
  if (part.reasoning !== undefined) delta.reasoning_content = part.reasoning;
  if (part.toolCalls) delta.tool_calls = part.toolCalls;
  const stop = part.finish ? { stop_reason: part.stopReason ?? null } : {};
  return {
    id: `chatcmpl-${id}`,
    object: 'chat.completion.chunk' as const,
    created,
    model,
    choices: [{ index, delta, logprobs: part.logprobs ?? null, finish_reason, ...stop, token_ids: null }],
    ...(part.usage ? { usage: part.usage } : {}),
  };
}

/** vLLM's first chat chunk of each choice: the answer's role (chatRole) with empty content, before any token; prompt_token_ids null. */
export function roleChunk(id: string, created: number, model: string, usage?: ContinuousUsage, index = 0, role = 'assistant') {
  return {
    id: `chatcmpl-${id}`,
    object: 'chat.completion.chunk' as const,
    created,
    model,
    choices: [{ index, delta: { role, content: '' }, logprobs: null, finish_reason: null }],
    ...(usage ? { usage } : {}),
    prompt_token_ids: null,
  };
}

/** The trailing usage chunk of stream_options.include_usage: empty choices, usage set (vLLM's exclude_none: no prompt_tokens_details). */
export function usageChunk(kind: ApiKind, id: string, created: number, model: string, usage: UsageOut) {
  return {
    id: kind === 'chat' ? `chatcmpl-${id}` : `cmpl-${id}`,
    object: kind === 'chat' ? ('chat.completion.chunk' as const) : ('text_completion' as const),
    created,
    model,
    choices: [],
    usage,
  };
}
