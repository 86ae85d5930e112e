/**
 * vLLM's echo without generation (/v1/completions with echo and max_tokens 0): each choice is the prompt alone,
 * finish_reason length. The gateway answers it itself: there is nothing for an engine to generate, so no request goes to
 * the cluster (usage: the prompt's tokens, 0 completion tokens, 0 J; vLLM runs a one-token generation it does not
 * return and counts that token).
 */
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { httpErrorOfWire, HttpError, toHttp, type ParsedRequest } from './openai.ts';
import { localDetokenize } from './tokens.ts';
import type { TokenSource } from './choices.ts';
import type { Tokenizers } from './tokenize-routes.ts';

/** The prompt's text as vLLM echoes it: a text prompt as it is, token ids decoded by the engine's tokenizer. */
export async function echoedPrompt(t: Tokenizers, p: ParsedRequest): Promise<string> {
  if (typeof p.prompt === 'string') return p.prompt;
  const req = { v: 1 as const, model: p.model, tokens: p.prompt ?? [] };
  const r = t.backend.detokenize ? await t.backend.detokenize(req).catch((err: unknown) => { throw toHttp(err); }) : await localDetokenize(req);
  if (!r.ok) throw r.error ? httpErrorOfWire(r.error.code, r.error.message, r.error.retryAfterS) : new HttpError(503, 'the tokenizer did not answer', 'service_unavailable', 'unavailable');
  return r.prompt ?? '';
}

/** A choice's stream: the prompt's text in one last chunk, finish_reason length. */
export function echoSource(ir: InferenceRequest, text: string): TokenSource {
  const chunk: TokenChunk = {
    v: 1, id: ir.id, seq: 0, text, tokens: 0, done: true, finishReason: 'length', stopReason: null,
    usage: { promptTokens: ir.inputTokens, completionTokens: 0, energyJ: 0, energySource: 'modelled' },
  };
  return (async function* () {
    yield chunk;
  })();
}
