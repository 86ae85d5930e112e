/**
 * The gateway's tokenizer routes, vLLM's POST /tokenize and /detokenize, and the prompt count every request gets
 * before it is dispatched (the engine's tokenizer through the backend, else the emulator's: tokens.ts).
 */
import type { IncomingMessage } from 'node:http';
import { type DetokenizeReply, type DetokenizeRequest, type TokenizeReply, type TokenizeRequest } from '../../protocols/messages.ts';
import { HttpError, badRequest, engineParamsOf, httpErrorOfWire, invalidRequest, parseOpenAiRequest, toHttp, type ParsedRequest } from './openai.ts';
import { generationPrompt } from './request-checks.ts';
import { BOOL_FIELDS, DETOKENIZE_FIELDS, TOKENIZE_CHAT_FIELDS, TOKENIZE_COMPLETION_FIELDS, laxBool } from '../../protocols/vllm-request-fields.ts';
import { readBody, requireJsonContentType } from './body.ts';
import { MAX_LOGPROBS, MAX_LOGPROBS_CEILING, logprobsLimitError } from '../../protocols/sampling-limits.ts';
import { TokenizeRefused, localDetokenize, type PromptCounter, type TokenCount } from './tokens.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

/** What the tokenizer routes use: the served models, the tokenizer, the backend (its detokenizer; absent: the emulator's), the prompt counter. */
export interface Tokenizers {
  models: string[];
  tokenize: (req: TokenizeRequest) => Promise<TokenizeReply>;
  backend: { detokenize?(req: DetokenizeRequest): Promise<DetokenizeReply> };
  counter: PromptCounter;
}

/**
 * Counts with the engine's tokenizer; its refusal is a 400, an unreachable tokenizer a 503. An abort of `signal` (the
 * client left, the hold limit passed) ends the wait at once with the signal's reason (the count, under its own deadline,
 * still fills the cache when it comes).
 */
export async function countTokens(counter: PromptCounter, model: string, prompt: string | number[] | undefined, messages: ParsedRequest['messages'], params?: ParsedRequest['params'], signal?: AbortLike): Promise<TokenCount> {
  return knownCount(counter, model, prompt, messages, params) ?? countAsked(counter, model, prompt, messages, params, signal);
}

/**
 * The count when the counter knows it without a tokenizer (token ids, a cached prompt), taken synchronously: the
 * request's handler awaits nothing for it. Throws countTokens's 400 for a truncation past the context length.
 */
export function knownCount(counter: PromptCounter, model: string, prompt: string | number[] | undefined, messages: ParsedRequest['messages'], params?: ParsedRequest['params']): TokenCount | undefined {
  const known = counter.known(model, prompt, messages, params);
  return known && truncated(known, params?.truncate_prompt_tokens);
}

async function countAsked(counter: PromptCounter, model: string, prompt: string | number[] | undefined, messages: ParsedRequest['messages'], params?: ParsedRequest['params'], signal?: AbortLike): Promise<TokenCount> {
  try {
    const counting = counter.count(model, prompt, messages, params);
    return truncated(await (signal ? untilAborted(counting, signal) : counting), params?.truncate_prompt_tokens);
  } catch (err) {
    if (err instanceof TokenizeRefused) {
      if (err.code === 'invalid_request') throw badRequest(err.message, messages ? 'messages' : 'prompt');
      throw new HttpError(503, 'no instance could count the prompt\'s tokens: retry later', 'service_unavailable', 'unavailable', null, 1);
    }
    throw toHttp(err);
  }
}

/**
 * The count the engine sees with vLLM's truncate_prompt_tokens `k`: the prompt's last k tokens (-1: the last
 * max_model_len); a k over max_model_len is vLLM's 400.
 */
function truncated(c: TokenCount, k: number | undefined): TokenCount {
  if (k === undefined) return c;
  const keep = k === -1 ? c.maxModelLen : k;
  if (keep > c.maxModelLen) throw badRequest(`truncate_prompt_tokens value (${keep}) is greater than max_model_len (${c.maxModelLen}). Please, select a smaller truncation size.`, 'truncate_prompt_tokens');
  return keep < c.count ? { count: keep, maxModelLen: c.maxModelLen } : c;
}

/**
 * The request against its engine's limits once its prompt is counted, in vLLM's order: the context length (prompt and
 * max_tokens within max_model_len), then the logprobs bound, `--max-logprobs` as the model's instances report it with
 * their counts (TokenizeReply.maxLogprobs; none reported: vLLM's default, 20), at most MAX_LOGPROBS_CEILING.
 * vLLM's 400 for the first one broken, or undefined.
 */
export function engineLimitsError(counter: PromptCounter, parsed: ParsedRequest, counted: TokenCount): HttpError | undefined {
  const chat = parsed.kind === 'chat';
  const asked = counted.count + parsed.maxTokens;
  if (asked > counted.maxModelLen) {
    return new HttpError(
      400,
      `This model's maximum context length is ${counted.maxModelLen} tokens. However, you requested ${asked} tokens ` +
        `(${counted.count} in the ${chat ? 'messages' : 'prompt'}, ${parsed.maxTokens} in the completion). Please reduce the length of the ${chat ? 'messages' : 'prompt'} or completion.`,
      'invalid_request_error', 'context_length_exceeded', chat ? 'messages' : 'prompt',
    );
  }
  const lp = logprobsLimitError(parsed.params, Math.min(counter.maxLogprobs.get(parsed.model) ?? MAX_LOGPROBS, MAX_LOGPROBS_CEILING));
  return lp && badRequest(lp.message, lp.param);
}

/** `p`, or a rejection with the signal's reason once `signal` aborts, whichever comes first. */
function untilAborted<T>(p: Promise<T>, signal: AbortLike): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** The request body as a JSON object, within bodyLimitBytes (400 without a JSON content type, as vLLM, or for anything but an object). */
export async function readJson(req: IncomingMessage, bodyLimitBytes: number): Promise<Record<string, unknown>> {
  requireJsonContentType(req.headers['content-type']);
  const raw = await readBody(req, bodyLimitBytes);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw badRequest(`request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** The model a tokenizer route names (default the first served); 404 for one not served. */
function servedModel(models: string[], body: Record<string, unknown>): string {
  const model = body.model === undefined || body.model === null || body.model === '' ? models[0] : body.model;
  if (typeof model !== 'string' || !models.includes(model)) {
    throw new HttpError(404, `The model \`${typeof model === 'string' ? model : JSON.stringify(model)}\` does not exist.`, 'invalid_request_error', 'model_not_found', 'model');
  }
  return model;
}

/**
 * Checks `body` as vLLM's request model of the route (`known`: its fields) does: a field outside it goes to `ignored`
 * (vLLM ignores it), and is left out; booleans are read as pydantic's lax bool reads them. The fields kept.
 */
function knownFields(body: Record<string, unknown>, known: ReadonlySet<string>, ignored: string[]): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    if (!known.has(k)) ignored.push(k);
    else if (BOOL_FIELDS.has(k) && v !== null && v !== undefined) {
      const b = laxBool(v);
      if (b === undefined) throw invalidRequest(`'${k}': Input should be a valid boolean`, k);
      kept[k] = b;
    } else kept[k] = v;
  }
  return kept;
}

/**
 * vLLM's POST /tokenize: {model, prompt} or {model, messages, add_generation_prompt, tools...} -> {count, max_model_len,
 * tokens, token_strs}. The fields vLLM's TokenizeCompletionRequest / TokenizeChatRequest do not define are added to
 * `ignored` (vLLM ignores them).
 */
export async function tokenizeRoute(t: Tokenizers, raw: Record<string, unknown>, ignored: string[] = []): Promise<unknown> {
  const chat = raw.messages !== undefined;
  if (chat) {
    const r = generationPrompt(raw);
    if (r) throw invalidRequest(r.message, r.param);
  }
  const body = knownFields(raw, chat ? TOKENIZE_CHAT_FIELDS : TOKENIZE_COMPLETION_FIELDS, ignored);
  const model = servedModel(t.models, body);
  const req: TokenizeRequest = { v: 1, model, returnTokens: true };
  const { model: _m, prompt, messages, return_token_strs, ...rest } = body;
  const kind = messages !== undefined ? 'chat' : 'completion';
  if (messages !== undefined) {
    const p = parseOpenAiRequest('chat', { model, messages });
    req.messages = p.messages;
  } else if (typeof prompt === 'string' || Array.isArray(prompt)) {
    req.prompt = parseOpenAiRequest('completion', { model, prompt }).prompt;
  } else throw badRequest("'prompt' or 'messages' is required", 'prompt');
  if (return_token_strs !== undefined && return_token_strs !== null && typeof return_token_strs !== 'boolean') {
    throw badRequest(`'return_token_strs' must be a boolean, got ${Array.isArray(return_token_strs) ? 'array' : typeof return_token_strs}`, 'return_token_strs');
  }
  if (return_token_strs === true) req.returnTokenStrs = true;
  const params = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== null && v !== undefined));
  if (Object.keys(params).length > 0) req.params = engineParamsOf(kind, params);
  const r = await t.tokenize(req).catch((err: unknown) => {
    throw toHttp(err);
  });
  if (!r.ok) throw r.error ? httpErrorOfWire(r.error.code, r.error.message, r.error.retryAfterS) : new HttpError(503, 'the tokenizer did not answer', 'service_unavailable', 'unavailable');
  t.counter.learn(model, r);
  return { count: r.count, max_model_len: r.maxModelLen, tokens: r.tokens ?? [], token_strs: r.tokenStrs ?? null };
}

/** vLLM's POST /detokenize: {model, tokens} -> {prompt}; the fields vLLM's DetokenizeRequest does not define are added to `ignored`. */
export async function detokenizeRoute(t: Tokenizers, raw: Record<string, unknown>, ignored: string[] = []): Promise<unknown> {
  const body = knownFields(raw, DETOKENIZE_FIELDS, ignored);
  const model = servedModel(t.models, body);
  const tokens = body.tokens;
  if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0)) throw badRequest("'tokens' must be an array of token ids", 'tokens');
  const req: DetokenizeRequest = { v: 1, model, tokens: tokens as number[] };
  const backend = t.backend;
  const r = backend.detokenize ? await backend.detokenize(req).catch((err: unknown) => { throw toHttp(err); }) : await localDetokenize(req);
  if (!r.ok) throw r.error ? httpErrorOfWire(r.error.code, r.error.message, r.error.retryAfterS) : new HttpError(503, 'the tokenizer did not answer', 'service_unavailable', 'unavailable');
  return { prompt: r.prompt };
}

