/**
 * vLLM's `echo` on /v1/completions (vllm/entrypoints/openai/serving_completion.py): the prompt's text before the output,
 * in the first event of each choice streamed and at the start of each choice's text in the full response; a token-id
 * prompt is echoed as its ids decoded (vLLM detokenizes it), a text prompt as it came. With max_tokens 0 the prompt
 * alone: vLLM generates one token it does not return, and counts it in the usage (completion_tokens 1). Prompt logprobs
 * (echo with logprobs) are not emulated: a 400 that says so.
 */
import { decodeTokens } from './tokenizer.ts';

/** The prompt's text a completion echoes, and whether it is all it returns (max_tokens 0). */
export interface Echo {
  text: string;
  only: boolean;
}

/** The echo a request asks for (undefined: none, or a chat, whose echo is another thing), or why it is refused. */
export function echoOf(body: Record<string, unknown>, chat: boolean, ids: readonly number[]): Echo | string | undefined {
  if (chat || body.echo !== true) return undefined;
  if (body.logprobs !== undefined && body.logprobs !== null) return 'echo with logprobs asks for prompt logprobs, which this emulator does not produce';
  return { text: typeof body.prompt === 'string' ? body.prompt : decodeTokens(ids), only: body.max_tokens === 0 };
}

/** The text of output tokens [from, to) of a choice whose tokens are `pieces`: the echo before its first. */
export function echoedText(pieces: readonly string[], from: number, to: number, echo: Echo | undefined): string {
  if (!echo) return pieces.slice(from, to).join('');
  return (from === 0 ? echo.text : '') + (echo.only ? '' : pieces.slice(from, to).join(''));
}
