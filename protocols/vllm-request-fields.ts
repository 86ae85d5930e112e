/**
 * The request fields vLLM's OpenAI server defines, per request model, as the pinned release
 * (src/engine/vllm-version.ts) spells them in vllm/entrypoints/openai/protocol.py. vLLM's request models allow
 * extra fields (OpenAIBaseModel, extra="allow"): a field outside its model is accepted, logged as "present in the
 * request but ignored", and has no effect. The gateway does the same with a name outside these lists (and says so:
 * actors/gateway/ignored-fields.ts); a name inside them is either honoured or refused with a 400 naming it.
 */

/** the fields of both CompletionRequest and ChatCompletionRequest. */
const COMMON = [
  'model', 'frequency_penalty', 'logit_bias', 'logprobs', 'max_tokens', 'n', 'presence_penalty', 'seed', 'stop',
  'stream', 'stream_options', 'temperature', 'top_p', 'user', 'echo', 'response_format', 'best_of',
  // sampling extras
  'use_beam_search', 'top_k', 'min_p', 'repetition_penalty', 'length_penalty', 'stop_token_ids',
  'include_stop_str_in_output', 'ignore_eos', 'min_tokens', 'skip_special_tokens', 'spaces_between_special_tokens',
  'truncate_prompt_tokens', 'allowed_token_ids', 'prompt_logprobs',
  // extras
  'add_special_tokens', 'structured_outputs', 'guided_json', 'guided_regex', 'guided_choice', 'guided_grammar',
  'guided_decoding_backend', 'guided_whitespace_pattern', 'priority', 'request_id', 'logits_processors',
  'return_tokens_as_token_ids', 'return_token_ids', 'cache_salt', 'kv_transfer_params', 'vllm_xargs',
] as const;

/** vLLM's CompletionRequest (/v1/completions). */
export const COMPLETION_FIELDS: ReadonlySet<string> = new Set([...COMMON, 'prompt', 'prompt_embeds', 'suffix']);

/** vLLM's ChatCompletionRequest (/v1/chat/completions). */
export const CHAT_FIELDS: ReadonlySet<string> = new Set([
  ...COMMON, 'messages', 'top_logprobs', 'max_completion_tokens', 'tools', 'tool_choice', 'reasoning_effort',
  'include_reasoning', 'parallel_tool_calls', 'bad_words', 'add_generation_prompt', 'continue_final_message',
  'documents', 'chat_template', 'chat_template_kwargs', 'mm_processor_kwargs', 'structural_tag',
]);

/** vLLM's StreamOptions (`stream_options`). */
export const STREAM_OPTIONS_FIELDS: ReadonlySet<string> = new Set(['include_usage', 'continuous_usage_stats']);

/** vLLM's TokenizeCompletionRequest (/tokenize with `prompt`). */
export const TOKENIZE_COMPLETION_FIELDS: ReadonlySet<string> = new Set(['model', 'prompt', 'add_special_tokens', 'return_token_strs']);

/** vLLM's TokenizeChatRequest (/tokenize with `messages`). */
export const TOKENIZE_CHAT_FIELDS: ReadonlySet<string> = new Set([
  'model', 'messages', 'add_generation_prompt', 'return_token_strs', 'continue_final_message', 'add_special_tokens',
  'chat_template', 'chat_template_kwargs', 'mm_processor_kwargs', 'tools',
]);

/** vLLM's DetokenizeRequest (/detokenize). */
export const DETOKENIZE_FIELDS: ReadonlySet<string> = new Set(['model', 'tokens']);

/**
 * The boolean fields of the request models: pydantic reads them in lax mode (true/false, 0/1, and the strings
 * "true"/"false", "yes"/"no", "on"/"off", "t"/"f", "y"/"n", "1"/"0", any case), and so does the gateway (laxBool).
 */
export const BOOL_FIELDS: ReadonlySet<string> = new Set([
  'stream', 'echo', 'use_beam_search', 'include_stop_str_in_output', 'ignore_eos', 'skip_special_tokens',
  'spaces_between_special_tokens', 'add_special_tokens', 'return_tokens_as_token_ids', 'return_token_ids',
  'include_reasoning', 'parallel_tool_calls', 'add_generation_prompt', 'continue_final_message', 'return_token_strs',
]);

const TRUE = new Set(['true', 't', 'yes', 'y', 'on', '1']);
const FALSE = new Set(['false', 'f', 'no', 'n', 'off', '0']);

/** A value as pydantic's lax bool reads it; undefined when it is not one ("Input should be a valid boolean"). */
export function laxBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  if (typeof v === 'string') {
    const s = v.toLowerCase();
    if (TRUE.has(s)) return true;
    if (FALSE.has(s)) return false;
  }
  return undefined;
}
