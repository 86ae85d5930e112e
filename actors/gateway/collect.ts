/**
 * The gateway's non-streamed answer (stream: false): each choice gathered from its token stream, and the one JSON
 * response of every choice with its usage.
 */
import type { TokenChunk, Usage } from '../../protocols/messages.ts';
import { HttpError, httpErrorOfWire, mergeLogprobs, mergeToolCalls, usageOfChoices, type ChoiceOut } from './openai.ts';
import { chatResponse, completionResponse } from './responses.ts';
import type { Framing } from './sse-stream.ts';
import type { StreamTimer } from './stream-timer.ts';
import type { HoldLimit } from './hold-limit.ts';

/** One choice's answer gathered from its token stream; throws the HttpError the client gets when it fails. */
export async function collectChoice(stream: AsyncIterable<readonly TokenChunk[]>, timer: StreamTimer, hold: HoldLimit): Promise<{ out: ChoiceOut; tokens: number; usage?: Usage }> {
  const out: ChoiceOut = { text: '' };
  let tokens = 0;
  let last: TokenChunk | undefined;
  read: for await (const batch of stream) {
    for (const c of batch) {
      if (c.error) throw httpErrorOfWire(c.error.code, c.error.message, c.error.retryAfterS, false, c.error.retryable);
      hold.begin(); // its answer is being made: no longer held
      timer.onChunk(c);
      out.text += c.text;
      if (c.logprobs) out.logprobs = mergeLogprobs(out.logprobs, c.logprobs);
      if (c.toolCalls) mergeToolCalls((out.toolCalls ??= []), c.toolCalls);
      if (c.reasoning !== undefined) out.reasoning = (out.reasoning ?? '') + c.reasoning;
      tokens += c.tokens;
      last = c;
      if (c.done) break read;
    }
  }
  if (!last?.done) throw new HttpError(502, 'token stream ended without a final chunk', 'internal_error', 'incomplete_stream');
  if (last.finishReason === 'error' || last.finishReason === 'cancelled') {
    throw new HttpError(503, `request ended early (${last.finishReason})`, 'service_unavailable', last.finishReason, null, 1);
  }
  out.finish = last.finishReason;
  out.stopReason = last.stopReason;
  return { out, tokens, usage: last.usage };
}


/** The response body of the gathered choices (`got`, in choice order) of request `id`, named by its response id. */
export function collectedBody(p: Framing, id: string, created: number, inputTokens: number, got: { out: ChoiceOut; tokens: number; usage?: Usage }[]): unknown {
  const usage = usageOfChoices(got.map((g) => g.usage), inputTokens, got.map((g) => g.tokens));
  const outs = got.map((g) => g.out);
  const rid = p.responseId ?? id;
  return p.kind === 'chat' ? chatResponse(rid, created, p.model, outs, usage, p.role) : completionResponse(rid, created, p.model, outs, usage);
}
