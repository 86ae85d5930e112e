/**
 * The OpenAI wire format of the gateway: request validation (completions and chat completions), the
 * OpenAI-style JSON error body and the usage (the response / SSE chunk shapes: ./responses.ts). Pure: no I/O, so every rule here is
 * unit-tested without a server.
 *
 * Extension: `usage` carries `energy_joules` (the request's GPU energy) and `energy_source`
 * ('measured' on a GPU counter, or 'modelled' for an emulated GPU), and `energy_estimated_joules` when part of
 * it is the gateway's estimate for a leg whose instance died before reporting its energy.
 */
import { DynError } from '../../protocols/errors.ts';
import { HttpError, badRequest, invalidRequest } from './http-error.ts';
import { compileFastCheck } from '../../protocols/fast-check.ts';
import type { ZodIssue } from 'zod';
import { SAMPLING_RANGES, inRange, samplingError } from '../../protocols/sampling-limits.ts';
import { crossFieldError, fieldsOf, laxBools, streamOptionsOf, unknownFields, type CheckRefusal, type StreamOptionsRead } from './request-checks.ts';
import { REQUEST_ID_MAX, chatMessage, engineParams, type ChatMessageT, type EngineParams, type FinishReasonT, type Usage } from '../../protocols/messages.ts';

export { ERROR_CODE_HEADER, HttpError, VALIDATION_ERROR_TYPE, badRequest, invalidRequest, type ErrorBody } from './http-error.ts';

/** Any error as the HTTP answer the client gets: a DynError by its (remote) code, anything else a 500. */
export function toHttp(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof DynError) {
    const remote = (err as DynError & { remoteCode?: string }).remoteCode;
    return httpErrorOfWire(remote ?? err.code, err.message, err.retryAfterS, remote === undefined, err.retryable);
  }
  return new HttpError(500, (err as Error)?.message ?? 'internal error', 'internal_error', 'internal');
}

/**
 * Maps a wire error code (Admission refusal, stream error, runtime error) to the HTTP answer. Capacity
 * refusals are 429 (the cluster is up but full: back off), absent or unreachable services 503; both carry
 * Retry-After; a request past its own time limit (`retryable` false: legs.ts DEADLINE_ERROR) is a 504 without it.
 * The cluster's own retryAfterS wins over the defaults. Only a refused request (400/404) keeps
 * the cluster's message (the engine's or the validator's words about the request); every other answer says
 * what happened in fixed words, so no internal name (instance, pool, URL) reaches the client.
 */
// `code` is a wire ErrorCode or any other string (a peer's newer code): `ErrorCode | string` would read as string
export function httpErrorOfWire(code: string, message: string, retryAfterS?: number, own = false, retryable?: boolean): HttpError {
  // the gateway's own errors (not a remote's) keep their words: they name nothing internal
  if (own && code !== 'invalid_request' && code !== 'protocol' && code !== 'not_found') {
    const e = httpErrorOfWire(code, message, retryAfterS, false, retryable);
    return new HttpError(e.status, message, e.type, e.code, e.param, e.retryAfterS);
  }
  switch (code) {
    case 'invalid_request':
    case 'protocol':
      return new HttpError(400, message, 'invalid_request_error', code);
    case 'not_found':
      return new HttpError(404, message, 'invalid_request_error', 'not_found');
    case 'overloaded':
    case 'rejected':
    case 'mailbox_full':
      return new HttpError(429, 'the cluster is at capacity: retry later', 'rate_limit_error', code, null, retryAfterS ?? 1);
    case 'unavailable':
    case 'no_responders':
      return new HttpError(503, 'no instance is available to serve this request: retry later', 'service_unavailable', code, null, retryAfterS ?? 2);
    case 'timeout':
      // the request's own time limit (requestTimeoutS) ran out: 504, not retryable (it would take as long again)
      if (retryable === false) return new HttpError(504, 'the request did not finish within its time limit', 'timeout_error', code);
      return new HttpError(503, 'the cluster did not answer in time: retry later', 'service_unavailable', code, null, retryAfterS ?? 2);
    case 'engine_crashed':
      return new HttpError(503, 'the engine serving this request failed: retry', 'service_unavailable', code, null, retryAfterS ?? 2);
    case 'cancelled':
      return new HttpError(499, 'the request was cancelled', 'cancelled', code);
    default:
      return new HttpError(500, 'internal error', 'internal_error', typeof code === 'string' ? code : 'internal');
  }
}

export type ApiKind = 'completion' | 'chat';

export type ChatMessageIn = ChatMessageT;

/** A validated OpenAI request, normalised. */
export interface ParsedRequest {
  kind: ApiKind;
  model: string;
  /** completions: the prompt text, or token ids. */
  prompt?: string | number[];
  messages?: ChatMessageIn[];
  /**
   * 0: echo without generation (completions with echo; echo.ts). A chat without max_tokens: CONTEXT_REST until its
   * prompt is counted, then the context's rest (max_model_len - prompt tokens), as vLLM.
   */
  maxTokens: number;
  /** choices to return (OpenAI's `n`); each is its own request to the cluster, as vLLM makes each its own child request. */
  n: number;
  /** false: the client gave no max_tokens (the default applies, shortened to fit the context). */
  maxTokensGiven: boolean;
  /** a readiness probe (header x-dynamollm-probe: probeOf): InferenceRequest.probe. */
  probe?: boolean;
  minTokens?: number;
  ignoreEos?: boolean;
  temperature?: number;
  /** every other parameter, for the engine unchanged (vLLM's names). */
  params?: EngineParams;
  stream: boolean;
  includeUsage: boolean;
  /** stream_options.continuous_usage_stats (with include_usage, as vLLM): every chunk carries the usage so far. */
  continuousUsage: boolean;
  user?: string;
  /** the body's fields vLLM's request model does not define, which vLLM ignores and so does the gateway (ignored-fields.ts). */
  ignored: string[];
}

export interface ValidationLimits {
  /**
   * largest max_tokens accepted (tokens). Default none: as in vLLM, the engine's context length caps it (prompt +
   * max_tokens over max_model_len is the context-length 400, checked once the prompt is counted).
   */
  maxTokensLimit?: number;
  /**
   * largest `n` accepted (choices per request; each is a request to the cluster, and takes a slot of the in-flight
   * limit). vLLM has no bound; the gateway's is its in-flight limit (GatewayServerOptions.maxInflight, default 1024).
   */
  maxN: number;
  /** max_tokens when a completion gives none (tokens). Default 16 (vLLM's and OpenAI's). */
  defaultMaxTokensCompletion: number;
  /**
   * max_tokens when a chat gives none (tokens), shortened to fit the context. Default none: as vLLM, the context's
   * rest (max_model_len - prompt tokens).
   */
  defaultMaxTokensChat?: number;
}

/** A chat's max_tokens without a default until its prompt is counted: then the context's rest (server.ts). */
export const CONTEXT_REST = Number.MAX_SAFE_INTEGER;

export const DEFAULT_LIMITS: ValidationLimits = {
  maxN: 1024,
  defaultMaxTokensCompletion: 16,
};

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);

function optInt(body: Record<string, unknown>, name: string, min: number, max?: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (!isInt(v)) throw badRequest(`'${name}' must be an integer`, name);
  if (v < min || (max !== undefined && v > max)) throw badRequest(max !== undefined ? `'${name}' must be between ${min} and ${max}, got ${v}` : `'${name}' must be at least ${min}, got ${v}`, name);
  return v;
}

function optBool(body: Record<string, unknown>, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`'${name}' must be a boolean`, name);
  return v;
}

/** Fields the gateway reads itself, per request model; every other field vLLM's model defines is an engine parameter (engineParams). */
const STRUCTURAL = {
  completion: new Set(['model', 'prompt', 'max_tokens', 'stream', 'stream_options', 'n', 'min_tokens', 'ignore_eos', 'temperature']),
  chat: new Set(['model', 'messages', 'max_tokens', 'max_completion_tokens', 'stream', 'stream_options', 'n', 'min_tokens', 'ignore_eos', 'temperature']),
};

/**
 * Parameters vLLM accepts that this cluster cannot honour, with the reason the 400 gives: the cluster streams
 * each choice from the engine and relays it (no beam search, no best-of selection, no prompt logprobs, which
 * vLLM only returns without streaming, no disaggregated-prefill hand-over, no token ids in the answer).
 */
const REFUSED: Record<string, (v: unknown) => string | null> = {
  best_of: (v) => (v === 1 ? null : 'best_of other than 1 is not supported: the cluster streams every choice it samples (no best-of selection)'),
  use_beam_search: (v) => (v === false ? null : 'use_beam_search is not supported: the cluster samples each choice on its own'),
  prompt_logprobs: () => 'prompt_logprobs is not supported: the cluster streams from the engine, and vLLM returns prompt logprobs only without streaming',
  prompt_embeds: () => 'prompt_embeds is not supported: send the prompt as text or token ids',
  suffix: () => 'suffix is not supported (vLLM does not support it either)',
  kv_transfer_params: () => 'kv_transfer_params is not supported: the cluster does not run disaggregated prefill',
  return_token_ids: (v) => (v === false ? null : 'return_token_ids is not supported: the gateway relays the engine\'s text, not its token ids'),
};

const fastEngineParams = compileFastCheck(engineParams);

const refusal = (r: CheckRefusal | undefined): void => {
  if (r) throw invalidRequest(r.message, r.param);
};

/**
 * Validates the decoded JSON body of /v1/completions or /v1/chat/completions. Throws HttpError(400). As vLLM: a field
 * its request model does not define is ignored (ParsedRequest.ignored); `model` may be absent (`''`: the served
 * model answers, server.ts). `body` is changed: lax booleans are written back as booleans.
 */
export function parseOpenAiRequest(kind: ApiKind, body: unknown, limits: ValidationLimits = DEFAULT_LIMITS): ParsedRequest {
  if (!isObj(body)) throw badRequest('request body must be a JSON object');
  refusal(crossFieldError(kind, body));
  refusal(laxBools(kind, body));
  const ignored = unknownFields(kind, body);
  const model = body.model ?? '';
  if (typeof model !== 'string') throw invalidRequest("'model': Input should be a valid string", 'model');
  const n = optInt(body, 'n', 1) ?? 1;
  if (n > limits.maxN) throw badRequest(`n must be at most ${limits.maxN} (the gateway's in-flight limit), got ${n}.`, 'n');
  // vLLM: best_of, when given, must be at least n (and this cluster supports only best_of 1)
  if (n > 1 && body.best_of === 1) throw badRequest(`best_of must be greater than or equal to n, got n=${n} and best_of=1`, 'best_of');
  // vLLM: /v1/completions with echo takes max_tokens 0 (the prompt alone: echo.ts)
  const echo = kind === 'completion' && body.echo === true;
  const given = (kind === 'chat' ? optInt(body, 'max_completion_tokens', 1, limits.maxTokensLimit) : undefined) ?? optInt(body, 'max_tokens', echo ? 0 : 1, limits.maxTokensLimit);
  if (given === 0 && body.logprobs !== undefined && body.logprobs !== null) {
    throw badRequest('logprobs with echo and max_tokens 0 are prompt logprobs, which are not supported: the cluster streams from the engine, and vLLM returns prompt logprobs only without streaming', 'logprobs');
  }
  const maxTokens = given ?? (kind === 'chat' ? (limits.defaultMaxTokensChat ?? CONTEXT_REST) : limits.defaultMaxTokensCompletion);
  const minTokens = optInt(body, 'min_tokens', 0, limits.maxTokensLimit);
  if (minTokens !== undefined && minTokens > maxTokens) throw badRequest(`'min_tokens' (${minTokens}) exceeds max_tokens (${maxTokens})`, 'min_tokens');
  const t = body.temperature;
  // vLLM (SamplingParams): any non-negative temperature
  if (t !== undefined && t !== null && (typeof t !== 'number' || !inRange(SAMPLING_RANGES.temperature, t))) {
    throw badRequest(`${SAMPLING_RANGES.temperature.says}, got ${JSON.stringify(t)}.`, 'temperature');
  }
  const stream = optBool(body, 'stream') ?? false;
  const so = streamOptionsOf(body.stream_options, stream);
  if ('message' in so) refusal(so);
  const { includeUsage, continuousUsage } = so as StreamOptionsRead;
  ignored.push(...(so as StreamOptionsRead).ignored);
  const params = parseEngineParams(kind, body);
  const user = params?.user;
  const out: ParsedRequest = {
    kind,
    model,
    maxTokens,
    n,
    maxTokensGiven: given !== undefined,
    stream,
    includeUsage,
    continuousUsage,
    minTokens,
    ignoreEos: optBool(body, 'ignore_eos'),
    temperature: typeof t === 'number' ? t : undefined,
    user: user !== undefined ? user.slice(0, 128) : undefined,
    ignored,
  };
  if (params) out.params = params;
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
      const r = chatMessage.safeParse(msg);
      if (!r.success) {
        const issue = r.error.issues[0]!;
        const where = [`messages[${i}]`, ...issue.path.map(String)].join('.');
        throw badRequest(`${where}: ${issue.message}`, where.startsWith(`messages[${i}].`) ? where : `messages[${i}]`);
      }
      return r.data;
    });
  }
  return out;
}

/**
 * The engine parameters of a request body: the fields of vLLM's request model that the gateway does not read itself,
 * checked against vLLM's types and ranges (fields vLLM's model does not define are left out: ParsedRequest.ignored).
 */
function parseEngineParams(kind: ApiKind, body: Record<string, unknown>): EngineParams | undefined {
  const rest: Record<string, unknown> = {};
  let any = false;
  const known = fieldsOf(kind);
  for (const [k, v] of Object.entries(body)) {
    if (STRUCTURAL[kind].has(k) || !known.has(k) || v === null || v === undefined) continue;
    const refused = REFUSED[k]?.(v);
    if (refused) throw badRequest(refused, k);
    if (REFUSED[k]) continue; // the default value of a refused parameter: nothing to carry
    rest[k] = v;
    any = true;
  }
  if (!any) return undefined;
  return checkedParams(kind, engineParamsOf(kind, rest));
}

/**
 * Engine parameters checked as every route checks them: vLLM's ranges with vLLM's messages (protocols/sampling-limits.ts;
 * the logprobs bound, the engine's `--max-logprobs`, once the prompt is counted: tokenize-routes.ts engineLimitsError),
 * then the schema's names and types in the gateway's words (engineParamsIssue).
 */
export function engineParamsOf(kind: ApiKind, rest: Record<string, unknown>): EngineParams {
  const bad = samplingError(kind, rest);
  if (bad) throw badRequest(bad.message, bad.param);
  // the compiled check vouches for the common body; zod decides for any other
  if (fastEngineParams(rest)) return rest as EngineParams;
  const r = engineParams.safeParse(rest);
  if (!r.success) throw engineParamsIssue(r.error.issues[0]!);
  return r.data;
}

const TYPE_WORDS: Record<string, string> = { boolean: 'a boolean', string: 'a string', number: 'a number', integer: 'an integer', array: 'an array', object: 'a JSON object' };

/** A schema issue of the engine parameters as the 400 words it: the parameter, and what it must be. */
export function engineParamsIssue(issue: ZodIssue): HttpError {
  if (issue.code === 'unrecognized_keys') {
    const where = [...issue.path.map(String), issue.keys[0]!].join('.');
    return badRequest(`unsupported ${issue.path.length > 0 ? 'field' : 'parameter'} '${where}': this gateway does not support it, and refuses it rather than dropping it silently`, where);
  }
  const where = issue.path.map(String).join('.');
  if (issue.code === 'invalid_type' && issue.received !== 'undefined') {
    return badRequest(`'${where}' must be ${TYPE_WORDS[issue.expected] ?? issue.expected}, got ${issue.received}`, where);
  }
  if (issue.code === 'too_big' || issue.code === 'too_small') {
    const most = issue.code === 'too_big';
    const bound = Number(issue.code === 'too_big' ? issue.maximum : issue.minimum);
    const incl = issue.inclusive ? '' : ' (exclusive)';
    const what = issue.type === 'string' ? ' characters' : issue.type === 'array' ? ' items' : '';
    return badRequest(`'${where}' must be ${most ? 'at most' : 'at least'} ${bound}${what}${incl}`, where);
  }
  return badRequest(`'${where}': ${issue.message}`, where);
}

/** The checks of engine parameters that the schema does not make (the API's logprobs type, request_id's length). */
function checkedParams(kind: ApiKind, p: EngineParams): EngineParams {
  if (p.request_id !== undefined && p.request_id.length > REQUEST_ID_MAX) throw badRequest(`'request_id' must be at most ${REQUEST_ID_MAX} characters`, 'request_id');
  if (kind === 'completion' && typeof p.logprobs === 'boolean') throw badRequest("'logprobs' must be an integer on /v1/completions", 'logprobs');
  if (kind === 'chat' && typeof p.logprobs === 'number') throw badRequest("'logprobs' must be a boolean on /v1/chat/completions (with top_logprobs)", 'logprobs');
  return p;
}

export type FinishReason = FinishReasonT;

/** vLLM's UsageInfo members in its order (prompt, total, completion), then the energy extension. */
export interface UsageOut {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  /** GPU energy of this request, J. */
  energy_joules: number;
  /** where energy_joules came from: 'measured' (GPU counter) or 'modelled' (emulated GPU). */
  energy_source: 'measured' | 'modelled';
  /**
   * of energy_joules, the part estimated (modelled) by the gateway for legs whose instance died before reporting
   * their energy (its share of that instance's telemetry while it ran); absent: none.
   */
  energy_estimated_joules?: number;
}

export function usageOut(u: Usage | undefined, promptTokens: number, completionTokens: number): UsageOut {
  const p = u?.promptTokens ?? promptTokens;
  const c = u?.completionTokens ?? completionTokens;
  return {
    prompt_tokens: p,
    total_tokens: p + c,
    completion_tokens: c,
    energy_joules: Math.round((u?.energyJ ?? 0) * 1000) / 1000,
    energy_source: u?.energySource ?? 'modelled',
    ...(u?.energyEstimatedJ ? { energy_estimated_joules: Math.round(u.energyEstimatedJ * 1000) / 1000 } : {}),
  };
}

/**
 * The usage of a request of several choices (`n`), as vLLM counts it: the prompt once, the completion tokens
 * of every choice summed. The energy of every choice is summed; it is 'measured' only when every choice's is.
 */
export function usageOfChoices(us: readonly (Usage | undefined)[], promptTokens: number, completionTokens: readonly number[]): UsageOut {
  const each = us.map((u, i) => usageOut(u, promptTokens, completionTokens[i] ?? 0));
  const p = each[0]?.prompt_tokens ?? promptTokens;
  const c = each.reduce((a, u) => a + u.completion_tokens, 0);
  const estimated = us.reduce((a, u) => a + (u?.energyEstimatedJ ?? 0), 0);
  return {
    prompt_tokens: p,
    total_tokens: p + c,
    completion_tokens: c,
    energy_joules: Math.round(us.reduce((a, u) => a + (u?.energyJ ?? 0), 0) * 1000) / 1000,
    energy_source: each.length > 0 && each.every((u) => u.energy_source === 'measured') ? 'measured' : 'modelled',
    ...(estimated > 0 ? { energy_estimated_joules: Math.round(estimated * 1000) / 1000 } : {}),
  };
}

/** What the engine answered, gathered from the token stream (everything but usage). */
export interface ChoiceOut {
  text: string;
  finish?: FinishReason;
  /** vLLM's stop_reason: the stop string / token id that ended the output, or null. */
  stopReason?: string | number | null;
  logprobs?: Record<string, unknown>;
  toolCalls?: Record<string, unknown>[];
  reasoning?: string;
}

/** An engine-side cancel or error never reaches a finished response. */
export const finishOut = (f: FinishReason | undefined): 'stop' | 'length' | 'tool_calls' => (f === 'length' || f === 'tool_calls' ? f : 'stop');

/**
 * Concatenates the logprobs of consecutive chunks: completions ({tokens, token_logprobs, top_logprobs,
 * text_offset}: each list appended) or chat ({content: [...]}: appended).
 */
export function mergeLogprobs(acc: Record<string, unknown> | undefined, next: Record<string, unknown>): Record<string, unknown> {
  if (!acc) return { ...next, ...Object.fromEntries(Object.entries(next).filter(([, v]) => Array.isArray(v)).map(([k, v]) => [k, [...(v as unknown[])]])) };
  for (const [k, v] of Object.entries(next)) {
    if (Array.isArray(v) && Array.isArray(acc[k])) (acc[k] as unknown[]).push(...(v as unknown[]));
    else if (!(k in acc)) acc[k] = v;
  }
  return acc;
}

/**
 * A completion's logprobs with their `text_offset`s moved by `base` characters: a continuation leg's engine counts them
 * from the start of its own output, the client from the start of the whole answer (`base`: the characters sent before
 * that leg, as vLLM counts them, code points). Anything else (a chat's logprobs have no offsets) is returned as it is.
 */
export function shiftTextOffsets(logprobs: Record<string, unknown>, base: number): Record<string, unknown> {
  const to = logprobs.text_offset;
  if (base === 0 || !Array.isArray(to)) return logprobs;
  return { ...logprobs, text_offset: to.map((o: unknown) => (typeof o === 'number' ? o + base : o)) };
}

/** A text's length as vLLM counts text offsets (Python's len: code points). */
export function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff || i === 0 || s.charCodeAt(i - 1) < 0xd800 || s.charCodeAt(i - 1) > 0xdbff) n++;
  }
  return n;
}

/** Folds tool call deltas (OpenAI streaming: by `index`; id/type/name once, arguments in pieces) into whole calls. */
export function mergeToolCalls(acc: Record<string, unknown>[], deltas: readonly Record<string, unknown>[]): void {
  for (const d of deltas) {
    const i = typeof d.index === 'number' ? d.index : acc.length;
    const cur = (acc[i] ??= { id: undefined, type: 'function', function: { name: '', arguments: '' } });
    if (typeof d.id === 'string') cur.id = d.id;
    if (typeof d.type === 'string') cur.type = d.type;
    const f = d.function as { name?: unknown; arguments?: unknown } | undefined;
    const cf = cur.function as { name: string; arguments: string };
    if (typeof f?.name === 'string') cf.name += f.name;
    if (typeof f?.arguments === 'string') cf.arguments += f.arguments;
  }
}


/** The header that marks a readiness probe (`dynamollm up`'s first request): InferenceRequest.probe. */
export const PROBE_HEADER = 'x-dynamollm-probe';

/**
 * Whether the request is a readiness probe: header x-dynamollm-probe carrying the gateway's probe token
 * (GatewayServerOptions.probeToken, env DYNAMOLLM_PROBE_TOKEN: `up` makes one per run and gives it to its gateways
 * alone) on a request for one token (max_tokens 1) and one choice. A probe is served, but not counted as the
 * cluster's traffic (arrivals, the output predictor), so the mark is honoured only from the holder of that token
 * (403 from anyone else, whatever their API key) and only on the smallest request (400 on anything larger): a tenant
 * cannot hide its load behind it. `matches` compares the header with the token (in constant time: auth.ts).
 */
export function probeOf(header: string | string[] | undefined, parsed: Pick<ParsedRequest, 'maxTokens' | 'maxTokensGiven' | 'n'>, matches: (given: string) => boolean): boolean {
  if (header === undefined) return false;
  if (typeof header !== 'string' || !matches(header)) {
    throw new HttpError(403, `${PROBE_HEADER} is reserved for the cluster's own readiness probe (dynamollm up): send the request without it`, 'permission_error', 'probe_not_allowed');
  }
  if (!parsed.maxTokensGiven || parsed.maxTokens !== 1 || parsed.n !== 1) throw badRequest(`${PROBE_HEADER} marks a readiness probe: one token (max_tokens 1) and one choice (n 1)`);
  return true;
}
