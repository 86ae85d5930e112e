/**
 * The next leg of a request whose engine or instance died (request migration, docs/DATAPATH.md): its request (the
 * prompt extended by the text sent), its prompt counted and its budget fitted to the context, and the error a stream
 * ends with when no next leg could start.
 */
import { subjects } from '../../protocols/subjects.ts';
import { DynError, RemoteError, type WireError } from '../../protocols/errors.ts';
import type { Admission, InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { StreamState } from './legs.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';
import { rerunnable } from '../../src/policy/drain-migration.ts';

const MAX_ID = 128;

/**
 * The next leg of a request whose engine died: its prompt extended by the text already sent (a chat's assistant turn
 * continued: the client's own final assistant message when it asked for continue_final_message, else a new one).
 */
export function continuation(req: InferenceRequest, st: StreamState): InferenceRequest {
  // nothing reached the client: the tokens an engine counted for a leg that broke (its text held back) are not the client's
  if (rerunnable(st)) st.sent = 0;
  const n = st.legs;
  const suffix = st.legTag ? `-${st.legTag}m${n}` : `-m${n}`;
  const id = req.id.slice(0, MAX_ID - suffix.length) + suffix;
  const next: InferenceRequest = {
    ...req,
    id,
    streamSubject: subjects.stream(id),
    maxTokens: req.maxTokens - st.sent,
    inputTokens: req.inputTokens + st.sent,
    migration: n,
    request: req.id,
  };
  if (req.minTokens !== undefined) next.minTokens = Math.max(0, req.minTokens - st.sent);
  // nothing sent yet: the same request again (a chat gets no empty assistant turn to continue)
  if (st.sent === 0 && st.text === '') return next;
  if (req.messages) {
    // the chat continues the assistant turn it was writing (vLLM's continue_final_message)
    const last = req.messages.at(-1);
    next.messages = req.params?.continue_final_message && last?.role === 'assistant' && typeof last.content === 'string'
      ? [...req.messages.slice(0, -1), { ...last, content: last.content + st.text }]
      : [...req.messages, { role: 'assistant', content: st.text }];
    next.params = { ...req.params, continue_final_message: true, add_generation_prompt: false };
  } else {
    next.prompt = (typeof req.prompt === 'string' ? req.prompt : '') + st.text;
  }
  return next;
}

/**
 * A continuation whose counted prompt (the request's prompt and the text sent) leaves no token of the model's context:
 * the request reached max_model_len, and its stream ends as vLLM ends one that does (finish_reason 'length'), not with
 * a leg the engine refuses. Not retryable: the same prompt and text fill the context again.
 */
export class ContextFull extends DynError {
  constructor(readonly promptTokens: number, readonly maxModelLen: number) {
    super('invalid_request', `the prompt and the text sent (${promptTokens} tokens) fill the model's context (${maxModelLen}): nothing more can be generated`, { retryable: false });
  }
}

/**
 * `req` (a continuation) with its prompt counted by an engine's tokenizer (its pool and prefill figures need it), and its
 * max_tokens (and min_tokens) at most the context length left after that prompt: the text sent may count more tokens
 * than were made (a retokenized text, a chat template's turn), and vLLM refuses a prompt plus max_tokens past it. No
 * answer: the estimate stands. No token of the context left: throws ContextFull.
 */
export async function countedBy(tokenize: (r: TokenizeRequest) => Promise<TokenizeReply>, req: InferenceRequest): Promise<InferenceRequest> {
  const tr: TokenizeRequest = { v: 1, model: req.model };
  if (req.messages) tr.messages = req.messages;
  else tr.prompt = req.prompt;
  if (req.params) tr.params = req.params;
  let r: TokenizeReply;
  try {
    r = await tokenize(tr);
  } catch {
    // no tokenizer answered: the estimate (the prompt's count plus the tokens sent) stands
    return req;
  }
  if (!r.ok || r.count === undefined) return req;
  if (r.maxModelLen !== undefined && r.maxModelLen - r.count < 1) throw new ContextFull(r.count, r.maxModelLen);
  const maxTokens = r.maxModelLen === undefined ? req.maxTokens : Math.min(req.maxTokens, r.maxModelLen - r.count);
  return { ...req, inputTokens: r.count, maxTokens, ...(req.minTokens !== undefined ? { minTokens: Math.min(req.minTokens, maxTokens) } : {}) };
}

/**
 * countedBy for a stream already begun, which does not wait for a tokenizer as a new request does (the estimate stands
 * without an answer): one attempt of `tokenize` within `attemptMs` and before the request's give-up time, ended by the
 * client's leaving (`signal`), after which it throws a non-retryable 'cancelled' instead of giving the next leg.
 */
export async function countedWithin(
  tokenize: (r: TokenizeRequest, timeoutMs: number) => Promise<TokenizeReply>, req: InferenceRequest, attemptMs: number, signal: AbortLike, clock: Pick<Clock, 'now'>,
): Promise<InferenceRequest> {
  const timeoutMs = Math.max(1, Math.min(attemptMs, req.giveUpAtMs - clock.now()));
  const next = await countedBy((r) => tokenize(r, timeoutMs), req);
  if (signal.aborted) throw new DynError('cancelled', 'client disconnected', { retryable: false });
  return next;
}

/**
 * The chunk a stream (chunk `seq`, `usage` its tokens so far) ends with when its next leg could not start: a
 * continuation that found the context full ends as vLLM's request at max_model_len (finish_reason 'length'), any other
 * failure with its error (continuationError).
 */
export function continuationEnd(err: unknown, id: string, seq: number, usage: NonNullable<TokenChunk['usage']>): TokenChunk {
  if (err instanceof ContextFull) return { v: 1, id, seq, text: '', tokens: 0, done: true, finishReason: 'length', stopReason: null, usage };
  return { v: 1, id, seq, text: '', tokens: 0, done: true, finishReason: 'error', error: continuationError(err) };
}

/** A stream over before any leg of its own: its one chunk (NatsBackend's AdmittedStream, admitted by nobody). */
export interface EndedStream {
  readonly admission: Admission;
  batches(): AsyncIterable<readonly TokenChunk[]>;
  [Symbol.asyncIterator](): AsyncIterator<TokenChunk>;
}

/**
 * A resumed stream whose counted prompt (the request's prompt and the journal's text) fills the context (`err` is
 * ContextFull): it ends as vLLM's request at max_model_len, with continuationEnd's chunk (finish_reason 'length', chunk
 * `seq`, `usage` its tokens so far), no leg admitted. Any other error is thrown.
 */
export function contextFullEnd(err: unknown, id: string, seq: () => number, usage: () => NonNullable<TokenChunk['usage']>): EndedStream {
  if (!(err instanceof ContextFull)) throw err;
  const end = continuationEnd(err, id, seq(), usage());
  return {
    admission: { v: 1, id, ok: true },
    batches: async function* () {
      yield [end];
    },
    [Symbol.asyncIterator]: async function* () {
      yield end;
    },
  };
}

/** The error a stream ends with when its next leg could not start: a refusal keeps its own class (overloaded, unavailable), not 'remote', in the gateway's words (the cluster's may name pools or instances). */
export function continuationError(err: unknown): WireError {
  const after = (e: { retryAfterS?: number }) => (e.retryAfterS !== undefined ? { retryAfterS: e.retryAfterS } : {});
  if (err instanceof RemoteError) return { code: err.remoteCode, message: `the request could not continue on another instance (${err.remoteCode})`, retryable: err.retryable, ...after(err) };
  if (err instanceof DynError) return { code: err.code as WireError['code'], message: err.message, retryable: err.retryable, ...after(err) };
  return { code: 'internal', message: 'the request could not continue', retryable: true };
}
