/**
 * Prompt token counting at the gateway (InferenceRequest.inputTokens, used for classification into the
 * request types). It must agree with the engine's count, so it reuses the emulator's tokenizer stand-in
 * (src/engine/emulator/text.ts: ceil(chars/4); chat: content + 4 per message + 3). A prompt given as
 * token ids counts exactly its length. With a real vLLM engine the engine's usage.prompt_tokens is
 * authoritative; this count only steers the choice of pool.
 */
import { countChatTokens, countTextTokens } from '../../src/engine/emulator/text.ts';
import type { ChatMessageIn } from './openai.ts';

export function countPromptTokens(prompt: string | number[] | undefined, messages?: readonly ChatMessageIn[]): number {
  if (messages) return countChatTokens(messages.map((m) => ({ content: typeof m.content === 'string' ? m.content : Array.isArray(m.content) ? m.content.map((x) => (typeof x.text === 'string' ? x.text : '')).join('') : '' })));
  if (Array.isArray(prompt)) return prompt.length;
  return countTextTokens(prompt ?? '');
}
