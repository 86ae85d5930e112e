/**
 * The OpenAI wire format of the gateway: request validation (completions and chat completions), the
 * OpenAI-style JSON error body, and the response / SSE chunk shapes. Pure: no I/O, so every rule here is
 * unit-tested without a server.
 *
 * Extension: `usage` carries `energy_joules` (the request's GPU energy) and `energy_source`
 * ('measured' on a GPU counter, or 'modelled' for an emulated GPU).
 */
import type { ErrorCode } from '../../protocols/errors.ts';
import type { Usage } from '../../protocols/messages.ts';

/** An error the gateway answers with; `status` is the HTTP status, `type`/`code` go into the JSON body. */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly retryable: boolean;
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** seconds for the Retry-After header (429/503). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.retryable = status === 429 || status === 503;
  }
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new HttpError(400, message, 'invalid_request_error', code, param);

/**
 * Maps a wire error code (Admission refusal, stream error, runtime error) to the HTTP answer. Capacity
 * refusals are 429 (the cluster is up but full: back off), absent or unreachable services 503; both carry
 * Retry-After. The cluster's own retryAfterS wins over the defaults.
 */
export function httpErrorOfWire(code: ErrorCode | string, message: string, retryAfterS?: number): HttpError {
  switch (code) {
    case 'invalid_request':
    case 'protocol':
      return new HttpError(400, message, 'invalid_request_error', code);
    case 'not_found':
      return new HttpError(404, message, 'invalid_request_error', 'not_found');
    case 'overloaded':
    case 'rejected':
    case 'mailbox_full':
      return new HttpError(429, message, 'rate_limit_error', code, null, retryAfterS ?? 1);
    case 'unavailable':
    case 'no_responders':
    case 'timeout':
    case 'engine_crashed':
      return new HttpError(503, message, 'service_unavailable', code, null, retryAfterS ?? 2);
    case 'cancelled':
      return new HttpError(499, message, 'cancelled', code);
    default:
      return new HttpError(500, message, 'internal_error', typeof code === 'string' ? code : 'internal');
  }
}

export type ApiKind = 'completion' | 'chat';

export interface ChatMessageIn {
  role: 'system' | 'user' | 'assistant' | 'tool' | 'developer';
  content: string;
}

/** A validated OpenAI request, normalised. */
export interface ParsedRequest {
  kind: ApiKind;
  model: string;
  /** completions: the prompt text, or token ids. */
  prompt?: string | number[];
  messages?: ChatMessageIn[];
  maxTokens: number;
  minTokens?: number;
  ignoreEos?: boolean;
  temperature?: number;
  stream: boolean;
  includeUsage: boolean;
  user?: string;
}

export interface ValidationLimits {
  /** largest max_tokens accepted (tokens). Default 16384. */
  maxTokensLimit: number;
  /** max_tokens when the client gives none: completions (OpenAI default 16), chat (tokens). */
  defaultMaxTokensCompletion: number;
  defaultMaxTokensChat: number;
}

export const DEFAULT_LIMITS: ValidationLimits = {
  maxTokensLimit: 16384,
  defaultMaxTokensCompletion: 16,
  defaultMaxTokensChat: 256,
};

const ROLES = new Set(['system', 'user', 'assistant', 'tool', 'developer']);
const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);

function optInt(body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (!isInt(v)) throw badRequest(`'${name}' must be an integer`, name);
  if (v < min || v > max) throw badRequest(`'${name}' must be between ${min} and ${max}, got ${v}`, name);
  return v;
}

function optBool(body: Record<string, unknown>, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`'${name}' must be a boolean`, name);
  return v;
}

/** Flattens a chat message content (string, or an array of {type:'text', text} parts). */
function contentText(c: unknown, i: number): string {
  if (typeof c === 'string') return c;
  if (c === null || c === undefined) return '';
  if (Array.isArray(c)) {
    return c
      .map((part, j) => {
        if (!isObj(part) || part.type !== 'text' || typeof part.text !== 'string') {
          throw badRequest(`messages[${i}].content[${j}]: only {type:'text', text} parts are supported`, `messages[${i}].content`);
        }
        return part.text;
      })
      .join('');
  }
  throw badRequest(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`);
}

/** Validates the decoded JSON body of /v1/completions or /v1/chat/completions. Throws HttpError(400). */
export function parseOpenAiRequest(kind: ApiKind, body: unknown, limits: ValidationLimits = DEFAULT_LIMITS): ParsedRequest {
  if (!isObj(body)) throw badRequest('request body must be a JSON object');
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0) throw badRequest("'model' is required and must be a non-empty string", 'model');
  if (model.length > 256) throw badRequest("'model' is too long", 'model');
  const n = optInt(body, 'n', 1, 1_000_000);
  if (n !== undefined && n !== 1) throw badRequest("only n=1 is supported", 'n');
  const maxTokens =
    (kind === 'chat' ? optInt(body, 'max_completion_tokens', 1, limits.maxTokensLimit) : undefined) ??
    optInt(body, 'max_tokens', 1, limits.maxTokensLimit) ??
    (kind === 'chat' ? limits.defaultMaxTokensChat : limits.defaultMaxTokensCompletion);
  const minTokens = optInt(body, 'min_tokens', 0, limits.maxTokensLimit);
  if (minTokens !== undefined && minTokens > maxTokens) throw badRequest(`'min_tokens' (${minTokens}) exceeds max_tokens (${maxTokens})`, 'min_tokens');
  const t = body.temperature;
  if (t !== undefined && t !== null && (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 2)) {
    throw badRequest("'temperature' must be a number between 0 and 2", 'temperature');
  }
  const stream = optBool(body, 'stream') ?? false;
  let includeUsage = false;
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    if (!isObj(so)) throw badRequest("'stream_options' must be an object", 'stream_options');
    if (!stream) throw badRequest("'stream_options' is only allowed when 'stream' is true", 'stream_options');
    includeUsage = optBool(so, 'include_usage') ?? false;
  }
  const user = body.user;
  if (user !== undefined && typeof user !== 'string') throw badRequest("'user' must be a string", 'user');
  const out: ParsedRequest = {
    kind,
    model,
    maxTokens,
    stream,
    includeUsage,
    minTokens,
    ignoreEos: optBool(body, 'ignore_eos'),
    temperature: typeof t === 'number' ? t : undefined,
    user: typeof user === 'string' ? user.slice(0, 128) : undefined,
  };
  if (kind === 'completion') {
    const p = body.prompt;
    if (typeof p === 'string') out.prompt = p;
    else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') out.prompt = p[0];
    else if (Array.isArray(p) && p.length > 0 && p.every((x) => isInt(x) && x >= 0)) out.prompt = p as number[];
    else if (Array.isArray(p) && p.length === 1 && Array.isArray(p[0]) && (p[0] as unknown[]).every((x) => isInt(x) && x >= 0)) out.prompt = p[0] as number[];
    else if (Array.isArray(p) && p.length > 1) throw badRequest("batched prompts are not supported: send one prompt per request", 'prompt');
    else throw badRequest("'prompt' is required: a string or an array of token ids", 'prompt');
  } else {
    const m = body.messages;
    if (!Array.isArray(m) || m.length === 0) throw badRequest("'messages' is required and must be a non-empty array", 'messages');
    out.messages = m.map((msg, i) => {
      if (!isObj(msg)) throw badRequest(`messages[${i}] must be an object`, 'messages');
      if (typeof msg.role !== 'string' || !ROLES.has(msg.role)) {
        throw badRequest(`messages[${i}].role must be one of ${[...ROLES].join(', ')}`, `messages[${i}].role`);
      }
      return { role: msg.role as ChatMessageIn['role'], content: contentText(msg.content, i) };
    });
  }
  return out;
}

export type FinishReason = 'stop' | 'length' | 'error' | 'cancelled';

export interface UsageOut {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** GPU energy of this request, J. */
  energy_joules: number;
  /** where energy_joules came from: 'measured' (GPU counter) or 'modelled' (emulated GPU). */
  energy_source: 'measured' | 'modelled';
}

export function usageOut(u: Usage | undefined, promptTokens: number, completionTokens: number): UsageOut {
  const p = u?.promptTokens ?? promptTokens;
  const c = u?.completionTokens ?? completionTokens;
  return {
    prompt_tokens: p,
    completion_tokens: c,
    total_tokens: p + c,
    energy_joules: Math.round((u?.energyJ ?? 0) * 1000) / 1000,
    energy_source: u?.energySource ?? 'modelled',
  };
}

/** OpenAI only knows stop/length; an engine-side cancel or error never reaches a finished response. */
const finishOut = (f: FinishReason | undefined): 'stop' | 'length' => (f === 'length' ? 'length' : 'stop');

export function completionResponse(id: string, created: number, model: string, text: string, finish: FinishReason | undefined, usage: UsageOut) {
  return {
    id: `cmpl-${id}`,
    object: 'text_completion' as const,
    created,
    model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishOut(finish) }],
    usage,
  };
}

export function chatResponse(id: string, created: number, model: string, text: string, finish: FinishReason | undefined, usage: UsageOut) {
  return {
    id: `chatcmpl-${id}`,
    object: 'chat.completion' as const,
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant' as const, content: text, refusal: null }, logprobs: null, finish_reason: finishOut(finish) }],
    usage,
  };
}

/** One SSE data chunk. `text` undefined with `finish` set is the closing chunk; role is sent on the first chat chunk. */
/**
 * One SSE event. `tokens` > 1 (a coalesced chunk, engine.streamCoalesceMs) adds the non-OpenAI field
 * `dynamollm_tokens` (how many tokens `text` holds; OpenAI clients ignore unknown fields) so a client can
 * count per-token latency (src/telemetry/replay.ts).
 */
export function streamChunk(kind: ApiKind, id: string, created: number, model: string, part: { text?: string; finish?: FinishReason; first?: boolean; tokens?: number }) {
  const finish_reason = part.finish ? finishOut(part.finish) : null;
  const extra = part.tokens !== undefined && part.tokens > 1 ? { dynamollm_tokens: part.tokens } : {};
  if (kind === 'completion') {
    return {
      id: `cmpl-${id}`,
      object: 'text_completion' as const,
      created,
      model,
      choices: [{ index: 0, text: part.text ?? '', logprobs: null, finish_reason }],
      ...extra,
    };
  }
  const delta: Record<string, string> = {};
  if (part.first) delta.role = 'assistant';
  if (part.text !== undefined) delta.content = part.text;
  return {
    id: `chatcmpl-${id}`,
    object: 'chat.completion.chunk' as const,
    created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason }],
    ...extra,
  };
}

/** The trailing usage chunk of stream_options.include_usage: empty choices, usage set. */
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
