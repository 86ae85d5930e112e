/**
 * Prompt token counting at the gateway with the engine's own tokenizer: the count that classifies a request
 * (InferenceRequest.inputTokens: request type, output-length predictor, pending prefill), checks it against
 * the context length before dispatch, and is the usage's prompt_tokens when the engine reports none. It asks
 * an instance (vLLM's /tokenize, chat template applied) over NATS and caches the answer per prompt (a bounded
 * LRU keyed by a hash of what the template sees), so a repeated prompt costs no round trip.
 */
import { createHash } from 'node:crypto';
import type { DetokenizeReply, DetokenizeRequest, EngineParams, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import type { ChatMessageIn } from './openai.ts';

/**
 * The emulator's tokenizer, loaded on first use only: a gateway over NATS counts with its instances' tokenizers
 * and never needs it, and loading it (the 32000-token vocabulary, ~0.2 s of CPU) before listening would delay every
 * gateway start, a replica restarted on a loaded host most (test/unit/gateway-start-imports.test.ts).
 */
let emulatorTokenizer: Promise<typeof import('../../src/engine/emulator/tokenizer.ts')> | undefined;
const loadTokenizer = () => (emulatorTokenizer ??= import('../../src/engine/emulator/tokenizer.ts'));

/** What a tokenizer answers: the count and the engine's context length. */
export interface TokenCount {
  count: number;
  maxModelLen: number;
}

export type TokenizeFn = (req: TokenizeRequest) => Promise<TokenizeReply>;

/** A tokenizer in the gateway's process that gives what the engines' /tokenize and /detokenize give. */
export interface LocalTokenizer {
  tokenize: TokenizeFn;
  detokenize(req: DetokenizeRequest): Promise<DetokenizeReply>;
}

/** The request parameters that change what the chat template renders, so they are part of the cache key. */
const TEMPLATE_PARAMS = ['tools', 'add_generation_prompt', 'continue_final_message', 'add_special_tokens', 'chat_template', 'chat_template_kwargs', 'documents'] as const;

export function templateParams(p: EngineParams | undefined): EngineParams | undefined {
  if (!p) return undefined;
  const out: Record<string, unknown> = {};
  let any = false;
  for (const k of TEMPLATE_PARAMS) {
    if (p[k] !== undefined) {
      out[k] = p[k];
      any = true;
    }
  }
  return any ? (out as EngineParams) : undefined;
}

export class PromptCounter {
  private readonly cache = new Map<string, TokenCount>();
  /** the context length each model's engine reported (for /v1/models). */
  readonly maxModelLen = new Map<string, number>();
  /** the logprobs bound (`--max-logprobs`) each model's instances reported with their counts (engine-limits.ts). */
  readonly maxLogprobs = new Map<string, number>();

  constructor(
    private readonly tokenize: TokenizeFn,
    private readonly capacity = 8192,
  ) {}

  /**
   * The count known without asking a tokenizer: token ids once the model's context length is known, or a cached
   * prompt; undefined when `count` must ask. (A request's count is taken here synchronously when it can be: no
   * promise, nor a wait raced against the request's abort.)
   */
  known(model: string, prompt: string | number[] | undefined, messages: readonly ChatMessageIn[] | undefined, params?: EngineParams): TokenCount | undefined {
    // token ids need no tokenizer, but the context length does: ask once per model
    const len = this.maxModelLen.get(model);
    if (Array.isArray(prompt) && !messages && len !== undefined) return { count: prompt.length, maxModelLen: len };
    return this.cached(this.keyOf(model, prompt, messages, templateParams(params)));
  }

  private keyOf(model: string, prompt: string | number[] | undefined, messages: readonly ChatMessageIn[] | undefined, tp: EngineParams | undefined): string {
    return createHash('sha256').update(JSON.stringify(messages ? [model, undefined, messages, tp] : [model, prompt ?? '', undefined, tp])).digest('base64');
  }

  private cached(key: string): TokenCount | undefined {
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit); // most recently used last
    }
    return hit;
  }

  /** Count a prompt (text or token ids) or a chat; throws what the tokenizer throws (a DynError / RemoteError). */
  async count(model: string, prompt: string | number[] | undefined, messages: readonly ChatMessageIn[] | undefined, params?: EngineParams): Promise<TokenCount> {
    const tp = templateParams(params);
    const len = this.maxModelLen.get(model);
    if (Array.isArray(prompt) && !messages && len !== undefined) return { count: prompt.length, maxModelLen: len };
    const req: TokenizeRequest = { v: 1, model };
    if (messages) req.messages = [...messages];
    else req.prompt = prompt ?? '';
    if (tp) req.params = tp;
    const key = this.keyOf(model, prompt, messages, tp);
    const hit = this.cached(key);
    if (hit) return hit;
    const r = await this.tokenize(req);
    if (!r.ok || r.count === undefined || r.maxModelLen === undefined) throw new TokenizeRefused(r.error?.message ?? 'the tokenizer refused the prompt', r.error?.code);
    const out = { count: r.count, maxModelLen: r.maxModelLen };
    this.learn(model, r);
    if (this.cache.size >= this.capacity) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, out);
    return out;
  }

  /** The engine limits a tokenizer's answer reports, kept per model: its context length and its logprobs bound. */
  learn(model: string, r: Pick<TokenizeReply, 'maxModelLen' | 'maxLogprobs'>): void {
    if (r.maxModelLen !== undefined) this.maxModelLen.set(model, r.maxModelLen);
    if (r.maxLogprobs !== undefined) this.maxLogprobs.set(model, r.maxLogprobs);
  }
}

/** The engine's tokenizer refused the prompt (e.g. a message its chat template rejects). */
export class TokenizeRefused extends Error {
  override name = 'TokenizeRefused';
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * The emulator's tokenizer (Llama's BPE, Llama-2 chat template) in-process, for a gateway whose backend has no
 * tokenizer (tests with a scripted backend): the same counts an emulated engine's /tokenize gives, and the limits
 * its instances report (`maxLogprobs`: engine.maxLogprobs; absent: the engine's default).
 */
export function localTokenizer(maxModelLen: number, maxLogprobs?: number): TokenizeFn {
  return async (req) => {
    const { encodeChat, encodeText, tokenStrings } = await loadTokenizer();
    try {
      const ids = req.messages
        ? encodeChat(req.messages, { tools: req.params?.tools, continueFinalMessage: req.params?.continue_final_message })
        : Array.isArray(req.prompt)
          ? req.prompt
          : encodeText(req.prompt ?? '', req.params?.add_special_tokens !== false);
      const out: TokenizeReply = { v: 1, ok: true, count: ids.length, maxModelLen, ...(maxLogprobs !== undefined ? { maxLogprobs } : {}) };
      if (req.returnTokens) out.tokens = ids;
      if (req.returnTokenStrs) out.tokenStrs = tokenStrings(ids);
      return out;
    } catch (err) {
      return { v: 1, ok: false, error: { code: 'invalid_request', message: (err as Error).message, retryable: false } };
    }
  };
}

export async function localDetokenize(req: DetokenizeRequest): Promise<DetokenizeReply> {
  const { decodeTokens } = await loadTokenizer();
  try {
    return { v: 1, ok: true, prompt: decodeTokens(req.tokens) };
  } catch (err) {
    return { v: 1, ok: false, error: { code: 'invalid_request', message: (err as Error).message, retryable: false } };
  }
}
