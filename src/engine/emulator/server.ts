/**
 * The emulator's HTTP surface, the subset of vLLM's OpenAI-compatible server the control plane uses:
 * /v1/completions and /v1/chat/completions (stream, stream_options.include_usage), /v1/models, /health,
 * /metrics (vllm: names; `name[]` keeps only those samples' families, as prometheus_client does), /sleep?level=1|2, /wake_up, /is_sleeping; plus the emulated GPU's admin endpoints
 * (/admin/gpu, /admin/gpu/lock-clocks, /admin/gpu/reset-clocks). Latencies and energy are modelled.
 * Sleep mode (./sleep-mode.ts) takes the times src/model/sleep.ts models; asleep the GPUs draw their unloaded idle
 * power, the prefix cache is dropped, and completions are refused (503) from the sleep call until the wake is over.
 *
 * The final usage object carries a non-standard `energy_joules`: the request's modelled energy (its
 * token share of every step it took part in), next to the standard fields.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { PerfModel } from '../../model/types.ts';
import { EmulatedSleepMode, SleepCallError } from './sleep-mode.ts';
import { QueueFullError } from '../errors.ts';
import { RealtimeDriver } from './driver.ts';
import { emulatorMetricsText } from './metrics-text.ts';
import { hash3 } from './text.ts';
import { chatDelta, chatMessage, logprobsOf, plan, type Plan } from './generate.ts';
import { decodeTokens, encodeChat, encodeText, tokenStrings, type TemplateMessage } from './tokenizer.ts';
import { echoOf, echoedText, type Echo } from './echo.ts';
import { promptBlockHashes } from '../prefix-cache.ts';
import { MAX_LOGPROBS, samplingError } from '../../../protocols/sampling-limits.ts';

export interface EmulatorOptions {
  perf: PerfModel;
  tp: number;
  /** name clients must send as `model`; default perf.model.name. */
  servedModelName?: string;
  /** wall-time speed-up; default 1. */
  timeScale?: number;
  /** PRNG seed of output lengths and text; default 1. */
  seed?: number;
  /** modelled weight-loading time before /health turns 200, ms (divided by timeScale); default 0. */
  startupDelayMs?: number;
  /** vLLM max_num_seqs; default 256. */
  maxNumSeqs?: number;
  /** vLLM max_num_batched_tokens; default 8192. */
  maxNumBatchedTokens?: number;
  /** vLLM long_prefill_token_threshold (0 = off, the default). */
  longPrefillTokenThreshold?: number;
  /** vLLM's --max-logprobs: most alternatives per token a request may ask for (more: vLLM's 400); default 20 (vLLM's -1, the whole vocabulary, is not modelled). */
  maxLogprobs?: number;
  /** bound of the waiting queue; default 4096. */
  maxWaiting?: number;
  zeroDelay?: boolean;
  /** largest accepted request body, bytes; default 8 MiB. */
  maxBodyBytes?: number;
  /** as vLLM's --api-key (VLLM_API_KEY): /v1 calls without `Authorization: Bearer <key>` get 401. */
  apiKey?: string;
  /**
   * vLLM's --stream-interval: tokens gathered per streamed event after the first (which goes at once);
   * default 1 (an event per token). Events of several tokens say when each was produced
   * (`dynamollm_token_offsets_ms`).
   */
  streamInterval?: number;
  /**
   * events of several tokens say when each was produced (`dynamollm_token_offsets_ms`); default true. False: they say
   * nothing of it, as vLLM's events, whose token count only the usage tells (stream_options.continuous_usage_stats).
   */
  tokenOffsets?: boolean;
  /** vLLM's --reasoning-parser: a chat's plain-text output opens with reasoning, streamed as delta.reasoning_content (generate.ts). */
  reasoningParser?: string;
  /**
   * vLLM's automatic prefix caching (--enable-prefix-caching): the KV of a prompt's full blocks stays cached
   * (an LRU of block hashes sized from the KV capacity, src/engine/prefix-cache.ts), and a later prompt with the
   * same leading blocks prefills only the rest; /metrics counts vllm:prefix_cache_queries / _hits (tokens).
   * Default false.
   */
  enablePrefixCaching?: boolean;
  /** tokens per KV block (vLLM --block-size; the prefix cache's granularity); default 16. */
  blockSize?: number;
  /**
   * Called with each streamed one-choice completion's first token: the client's `x-request-id` (absent: none), when
   * the server took the request and when it wrote the first token, wall ms (performance.timeOrigin + now(): sub-ms,
   * on the host's clock, comparable with other processes' Date.now()). `dynamollm engine-emulator` logs it at debug
   * level; the twin check (test/bench/twin.bench.ts) reads the data path's hop to and from the engine off it.
   */
  onFirstToken?: (t: { requestId: string | undefined; receivedMs: number; firstTokenMs: number }) => void;
}

/** The host's wall clock, ms, to a fraction of one (Date.now() is whole ms). */
const wallMs = () => performance.timeOrigin + performance.now();

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly type = 'BadRequestError', readonly param: string | null = null) {
    super(message);
  }
}

interface ParsedRequest {
  chat: boolean;
  promptTokens: number;
  /** a hash of the prompt's token ids (greedy output depends on the prompt only). */
  promptHash: number;
  maxTokens: number;
  minTokens: number;
  ignoreEos: boolean;
  stream: boolean;
  includeUsage: boolean;
  /** stream_options.continuous_usage_stats with include_usage (as vLLM): every event carries the usage so far. */
  continuousUsage: boolean;
  /** choices (vLLM's parallel sampling). */
  n: number;
  /** the prompt's full-block hashes (prefix caching on). */
  prefixHashes?: number[];
  /** completions' echo (./echo.ts). */
  echo?: Echo;
}

export class EmulatorServer {
  readonly driver: RealtimeDriver;
  readonly server: Server;
  readonly servedModelName: string;
  private readonly seed: number;
  private ready = false;
  private reqNo = 0;
  private readonly successByReason = new Map<string, number>();
  private readonly created = Math.floor(Date.now() / 1000);
  private loadTimer: NodeJS.Timeout | null = null;
  private readonly streamInterval: number;
  private readonly maxLogprobs: number;
  private readonly sleepMode: EmulatedSleepMode;

  constructor(readonly opts: EmulatorOptions) {
    const blockSize = opts.blockSize ?? 16;
    if (!(Number.isInteger(blockSize) && blockSize >= 1)) throw new RangeError(`blockSize must be an integer >= 1, got ${blockSize}`);
    this.driver = new RealtimeDriver({
      ...(opts.enablePrefixCaching ? { prefixCacheBlockTokens: blockSize } : {}),
      perf: opts.perf, tp: opts.tp, maxModelLen: opts.perf.model.maxContext, timeScale: opts.timeScale, zeroDelay: opts.zeroDelay,
      maxNumSeqs: opts.maxNumSeqs, maxNumBatchedTokens: opts.maxNumBatchedTokens, longPrefillTokenThreshold: opts.longPrefillTokenThreshold, maxWaiting: opts.maxWaiting,
    });
    this.sleepMode = new EmulatedSleepMode(this.driver, opts.perf.model, opts.tp, opts.zeroDelay === true);
    this.servedModelName = opts.servedModelName ?? opts.perf.model.name;
    this.seed = opts.seed ?? 1;
    this.streamInterval = opts.streamInterval ?? 1;
    this.maxLogprobs = opts.maxLogprobs ?? MAX_LOGPROBS;
    if (!(Number.isInteger(this.maxLogprobs) && this.maxLogprobs >= 0)) throw new RangeError(`maxLogprobs must be an integer >= 0, got ${this.maxLogprobs}`);
    if (!(Number.isInteger(this.streamInterval) && this.streamInterval >= 1)) throw new RangeError(`streamInterval must be an integer >= 1, got ${this.streamInterval}`);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
  }

  /** Listen, then "load weights" for startupDelayMs / timeScale before turning healthy. */
  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    const delay = (this.opts.startupDelayMs ?? 0) / this.driver.timeScale;
    if (delay > 0) this.loadTimer = setTimeout(() => (this.ready = true), delay);
    else this.ready = true;
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    if (this.loadTimer) clearTimeout(this.loadTimer);
    this.driver.close();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private fail(res: ServerResponse, err: unknown): void {
    const status = err instanceof HttpError ? err.status : err instanceof QueueFullError ? 503 : 500;
    const type = err instanceof HttpError ? err.type : err instanceof QueueFullError ? 'ServiceUnavailableError' : 'InternalServerError';
    const message = (err as Error)?.message ?? String(err);
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    this.json(res, status, { error: { message, type, param: err instanceof HttpError ? err.param : null, code: status } });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = `${req.method} ${url.pathname}`;
    if (this.opts.apiKey !== undefined && url.pathname.startsWith('/v1') && !bearerMatches(req.headers.authorization, this.opts.apiKey)) {
      return this.json(res, 401, { error: 'Unauthorized' });
    }
    switch (route) {
      case 'GET /health':
        res.writeHead(this.ready ? 200 : 503).end();
        return;
      case 'GET /v1/models':
        return this.json(res, 200, {
          object: 'list',
          data: [{ id: this.servedModelName, object: 'model', created: this.created, owned_by: 'dynamollm', root: this.opts.perf.model.name, parent: null, max_model_len: this.opts.perf.model.maxContext }],
        });
      case 'GET /metrics':
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(this.metricsText(url.searchParams.getAll('name[]')));
        return;
      case 'POST /tokenize':
        return this.tokenize(req, res);
      case 'POST /detokenize':
        return this.detokenize(req, res);
      case 'POST /v1/completions':
      case 'POST /v1/chat/completions':
        return this.completion(req, res, url.pathname === '/v1/chat/completions');
      case 'POST /sleep':
        await this.readBody(req);
        this.requireReady();
        try {
          await this.sleepMode.sleep(url.searchParams.get('level'));
        } catch (e) {
          if (e instanceof SleepCallError) throw new HttpError(e.status, e.message, e.status === 409 ? 'ConflictError' : 'BadRequestError');
          throw e;
        }
        res.writeHead(200).end();
        return;
      case 'POST /wake_up':
        await this.readBody(req);
        await this.sleepMode.wakeUp();
        res.writeHead(200).end();
        return;
      case 'GET /is_sleeping':
        return this.json(res, 200, { is_sleeping: this.driver.isSleeping() });
      case 'GET /admin/gpu':
        return this.json(res, 200, this.driver.gpuState());
      case 'POST /admin/gpu/lock-clocks': {
        const body = await this.readJson(req);
        const { minMhz, maxMhz } = body as { minMhz?: unknown; maxMhz?: unknown };
        if (typeof minMhz !== 'number' || typeof maxMhz !== 'number') throw new HttpError(400, 'body must be {"minMhz": number, "maxMhz": number}');
        try {
          return this.json(res, 200, this.driver.lockClocks(minMhz, maxMhz));
        } catch (e) {
          throw new HttpError(400, (e as Error).message);
        }
      }
      case 'POST /admin/gpu/reset-clocks':
        await this.readBody(req);
        return this.json(res, 200, this.driver.resetClocks());
      default:
        throw new HttpError(404, `no route ${route}`, 'NotFoundError');
    }
  }

  private requireReady(): void {
    if (!this.ready) throw new HttpError(503, 'engine is loading', 'ServiceUnavailableError');
  }

  private async readBody(req: IncomingMessage): Promise<string> {
    const limit = this.opts.maxBodyBytes ?? 8 * 1024 * 1024;
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of req) {
      n += (c as Buffer).length;
      if (n > limit) throw new HttpError(413, `request body over ${limit} bytes`);
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts).toString('utf8');
  }

  private async readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const text = await this.readBody(req);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
    return body as Record<string, unknown>;
  }

  /** Token ids of a /tokenize-shaped body (prompt, or messages with the chat template), as vLLM counts them. */
  private promptIds(body: Record<string, unknown>, chat: boolean): number[] {
    try {
      if (chat) {
        const msgs = body.messages;
        if (!Array.isArray(msgs) || msgs.length === 0) throw new HttpError(400, "'messages' must be a non-empty array");
        msgs.forEach((m: unknown, i) => {
          if (typeof (m as { role?: unknown })?.role !== 'string') throw new HttpError(400, `messages[${i}].role must be a string`);
        });
        return encodeChat(msgs as TemplateMessage[], { tools: Array.isArray(body.tools) ? body.tools : undefined, continueFinalMessage: body.continue_final_message === true });
      }
      const p = body.prompt;
      if (typeof p === 'string') return encodeText(p, body.add_special_tokens !== false);
      if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0)) return p as number[];
      throw new HttpError(400, "'prompt' must be a string or a non-empty array of token ids (batched prompts are not supported)");
    } catch (e) {
      if (e instanceof RangeError) throw new HttpError(400, e.message);
      throw e;
    }
  }

  private parse(body: Record<string, unknown>, chat: boolean): ParsedRequest {
    if (body.model !== this.servedModelName) {
      throw new HttpError(404, `The model \`${String(body.model)}\` does not exist.`, 'NotFoundError');
    }
    // vLLM's sampling ranges (protocols/sampling-limits.ts): out of range is a 400 naming the parameter
    const bad = samplingError(chat ? 'chat' : 'completion', body, this.maxLogprobs);
    if (bad) throw new HttpError(400, bad.message, 'BadRequestError', bad.param);
    const maxLen = this.opts.perf.model.maxContext;
    const ids = truncatedIds(this.promptIds(body, chat), body.truncate_prompt_tokens, maxLen);
    const promptTokens = ids.length;
    const intField = (name: string, dflt: number, min: number): number => {
      const v = body[name];
      if (v === undefined || v === null) return dflt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new HttpError(400, `'${name}' must be an integer >= ${min}`);
      return v;
    };
    const echo = echoOf(body, chat, ids);
    if (typeof echo === 'string') throw new HttpError(400, echo, 'BadRequestError', 'logprobs');
    const maxTokens = body.max_completion_tokens !== undefined ? intField('max_completion_tokens', 16, 1) : intField('max_tokens', 16, echo ? 0 : 1);
    const minTokens = intField('min_tokens', 0, 0);
    if (minTokens > maxTokens) throw new HttpError(400, `min_tokens (${minTokens}) must be <= max_tokens (${maxTokens})`);
    const n = intField('n', 1, 1);
    if (promptTokens + maxTokens > maxLen) {
      throw new HttpError(400, `This model's maximum context length is ${maxLen} tokens. However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`);
    }
    const so = body.stream_options as { include_usage?: unknown; continuous_usage_stats?: unknown } | undefined | null;
    let promptHash = 0x811c9dc5;
    for (const t of ids) promptHash = Math.imul(promptHash ^ t, 0x01000193) >>> 0;
    return {
      chat,
      promptTokens,
      promptHash,
      maxTokens,
      minTokens,
      ignoreEos: body.ignore_eos === true,
      stream: body.stream === true,
      // vLLM's StreamOptions: include_usage true unless set otherwise
      includeUsage: so !== undefined && so !== null && (so.include_usage === undefined || so.include_usage === true),
      continuousUsage: so !== undefined && so !== null && (so.include_usage === undefined || so.include_usage === true) && so.continuous_usage_stats === true,
      n,
      ...(this.opts.enablePrefixCaching ? { prefixHashes: promptBlockHashes(ids, this.opts.blockSize ?? 16) } : {}),
      ...(echo ? { echo } : {}),
    };
  }

  /** vLLM's POST /tokenize: {prompt} or {messages} -> {count, max_model_len, tokens[, token_strs]}. */
  private async tokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.readJson(req);
    const ids = this.promptIds(body, body.messages !== undefined);
    const out: Record<string, unknown> = { count: ids.length, max_model_len: this.opts.perf.model.maxContext, tokens: ids };
    out.token_strs = body.return_token_strs === true ? tokenStrings(ids) : null;
    this.json(res, 200, out);
  }

  /** vLLM's POST /detokenize: {tokens} -> {prompt}. */
  private async detokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.readJson(req);
    const t = body.tokens;
    if (!Array.isArray(t) || !t.every((x) => Number.isInteger(x))) throw new HttpError(400, "'tokens' must be an array of token ids");
    try {
      this.json(res, 200, { prompt: decodeTokens(t as number[]) });
    } catch (e) {
      if (e instanceof RangeError) throw new HttpError(400, e.message);
      throw e;
    }
  }

  private async completion(req: IncomingMessage, res: ServerResponse, chat: boolean): Promise<void> {
    const receivedMs = this.opts.onFirstToken ? wallMs() : 0;
    const body = await this.readJson(req);
    this.requireReady();
    if (this.driver.isSleeping()) throw new HttpError(503, 'engine is sleeping', 'ServiceUnavailableError');
    const p = this.parse(body, chat);
    if (p.n > 1) return this.completionN(body, p, res);
    const reqNo = ++this.reqNo;
    let pl: Plan;
    try {
      pl = plan({ chat, serverSeed: this.seed, reqNo, promptHash: p.promptHash, maxTokens: Math.max(1, p.maxTokens), minTokens: p.minTokens, ignoreEos: p.ignoreEos, params: body, reasoning: this.opts.reasoningParser !== undefined, maxLogprobs: this.maxLogprobs });
    } catch (e) {
      if (e instanceof RangeError || e instanceof SyntaxError) throw new HttpError(400, e.message);
      throw e;
    }
    const outputTokens = pl.pieces.length;
    const finishReason = pl.finishReason;
    const stopReason = pl.stopReason;
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${reqNo.toString(16).padStart(8, '0')}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.servedModelName;
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const lpKey = hash3(this.seed, reqNo, 0x1a9);
    /** the plain path: no logprobs, no tool call (an event's bytes are built from a head and a tail) */
    const plain = pl.topLogprobs === null && !pl.toolCall && !pl.reasoning;
    let finished = false;

    const sse = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    // A token event is the bytes JSON.stringify would give for vLLM's chunk object, built from a per-request
    // head and tail instead of an object per token (the per-token cost of this server is most of its CPU).
    const head = `data: {"id":${JSON.stringify(id)},"object":"${object}","created":${created},"model":${JSON.stringify(model)},"choices":[{"index":0,` + (chat ? '"delta":{"content":' : '"text":');
    const tailOf = (fr: string | null) =>
      (chat ? '},"logprobs":null,"finish_reason":' : ',"logprobs":null,"finish_reason":') + (fr === null ? 'null' : JSON.stringify(fr)) +
      ',"stop_reason":' + (fr === null || stopReason === null ? 'null' : JSON.stringify(stopReason)) + '}]';
    const tailMid = tailOf(null);
    /** the event of output tokens [from, to) */
    // continuous usage (vLLM's UsageInfo, its field order): the event's last member, the tokens made through it
    const usageSoFar = (n: number) => p.continuousUsage ? `,"usage":{"prompt_tokens":${p.promptTokens},"total_tokens":${p.promptTokens + n},"completion_tokens":${n},"prompt_tokens_details":null}` : '';
    const tokenEvent = (from: number, to: number, fr: string | null, offsetsMs: number[] | null) => {
      const text = echoedText(pl.pieces, from, to, p.echo);
      const offs = (offsetsMs && this.opts.tokenOffsets !== false ? `,"dynamollm_token_offsets_ms":[${offsetsMs.join(',')}]` : '') + usageSoFar(to);
      if (plain) return head + JSON.stringify(text) + (fr === null ? tailMid : tailOf(fr)) + offs + '}\n\n';
      const logprobs = logprobsOf(pl, chat, lpKey, from, to, textOffset(from));
      let choice: Record<string, unknown>;
      if (chat) choice = { index: 0, delta: chatDelta(pl, from, to), logprobs, finish_reason: fr, stop_reason: fr === null ? null : stopReason };
      else choice = { index: 0, text, logprobs, finish_reason: fr, stop_reason: fr === null ? null : stopReason };
      return `data: ${JSON.stringify({ id, object, created, model, choices: [choice] })}`.slice(0, -1) + offs + '}\n\n';
    };
    const offsets: number[] = [0];
    const textOffset = (i: number) => {
      while (offsets.length <= i) offsets.push(offsets[offsets.length - 1]! + pl.pieces[offsets.length - 1]!.length);
      return offsets[i]!;
    };
    const usageOf = (energyJ: number) => ({
      prompt_tokens: p.promptTokens,
      total_tokens: p.promptTokens + outputTokens,
      completion_tokens: outputTokens,
      prompt_tokens_details: null,
      energy_joules: Math.round(energyJ * 1e6) / 1e6,
    });

    // --stream-interval N (vLLM's flag): an event goes out with the first token, then once N tokens have
    // gathered, and with the last one; an event of several tokens carries when the engine produced each
    // (non-standard `dynamollm_token_offsets_ms`, wall ms after the event's first token).
    const interval = this.streamInterval;
    let sent = 0;
    let pendFrom = 0;
    let pendAt: number[] = [];
    /** the last token's event, written together with the usage event and [DONE] */
    let last = '';
    const onToken = (index: number, atMs: number) => {
      if (!p.stream) return;
      const isLast = index + 1 >= outputTokens;
      let ev: string;
      if (interval <= 1) ev = tokenEvent(index, index + 1, isLast ? finishReason : null, null);
      else {
        pendAt.push(atMs);
        if (!(sent === 0 || isLast || pendAt.length >= interval)) return;
        const t0 = pendAt[0]!;
        const offs = pendAt.length > 1 ? pendAt.map((t) => Math.round(((t - t0) / this.driver.timeScale) * 1000) / 1000) : null;
        ev = tokenEvent(pendFrom, index + 1, isLast ? finishReason : null, offs);
        pendFrom = index + 1;
        pendAt = [];
      }
      sent++;
      if (isLast) last = ev;
      else res.write(ev);
    };

    try {
      const timed = p.stream ? this.opts.onFirstToken : undefined;
      const rid = req.headers['x-request-id'];
      this.driver.submit({ id, promptTokens: p.promptTokens, outputTokens, ...(p.prefixHashes ? { prefixHashes: p.prefixHashes } : {}) }, (ev) => {
        if (ev.kind === 'first_token') {
          onToken(0, ev.atMs);
          timed?.({ requestId: typeof rid === 'string' ? rid : undefined, receivedMs, firstTokenMs: wallMs() });
        }
        else if (ev.kind === 'token') onToken(ev.index, ev.atMs);
        else if (ev.kind === 'finished') {
          finished = true;
          const reason = finishReason === 'length' ? 'length' : 'stop'; // vLLM's FinishReason: stop (also a tool call), length, abort
          this.successByReason.set(reason, (this.successByReason.get(reason) ?? 0) + 1);
          const usage = usageOf(ev.energyJ);
          if (p.stream) {
            // one write: the last token, the usage and [DONE]
            res.end(last + (p.includeUsage ? `data: ${JSON.stringify({ id, object, created, model, choices: [], usage })}\n\n` : '') + 'data: [DONE]\n\n');
          } else {
            const text = echoedText(pl.pieces, 0, outputTokens, p.echo);
            const logprobs = logprobsOf(pl, chat, lpKey, 0, outputTokens, 0);
            this.json(res, 200, chat
              ? { id, object: 'chat.completion', created, model, choices: [{ index: 0, message: chatMessage(pl), logprobs, finish_reason: finishReason, stop_reason: stopReason }], usage }
              : { id, object: 'text_completion', created, model, choices: [{ index: 0, text, logprobs, finish_reason: finishReason, stop_reason: stopReason }], usage });
          }
        }
      });
    } catch (e) {
      if (e instanceof RangeError) throw new HttpError(400, e.message);
      throw e;
    }
    // the client went away: free the engine's work (vLLM aborts the request the same way)
    res.on('close', () => {
      if (!finished) this.driver.cancel(id);
    });
    if (p.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      if (chat) sse({ id, object, created, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...(p.continuousUsage ? { usage: { prompt_tokens: p.promptTokens, total_tokens: p.promptTokens, completion_tokens: 0, prompt_tokens_details: null } } : {}) });
    }
  }

  /**
   * n > 1, as vLLM's parallel sampling: n child requests, each its own engine request (seed + i when seeded),
   * every event naming its choice's index, each choice's last token with its finish_reason, a chat stream
   * opening with one role chunk per choice, the usage (completion tokens summed) after the last choice ends.
   * One event per token (--stream-interval applies to n = 1 only).
   */
  private completionN(body: Record<string, unknown>, p: ParsedRequest, res: ServerResponse): void {
    const chat = p.chat;
    const seed = typeof body.seed === 'number' ? body.seed : undefined;
    const first = this.reqNo + 1;
    const plans: Plan[] = [];
    try {
      for (let i = 0; i < p.n; i++) {
        const params = seed === undefined ? body : { ...body, seed: seed + i };
        plans.push(plan({ chat, serverSeed: this.seed, reqNo: ++this.reqNo, promptHash: p.promptHash, maxTokens: Math.max(1, p.maxTokens), minTokens: p.minTokens, ignoreEos: p.ignoreEos, params, reasoning: this.opts.reasoningParser !== undefined, maxLogprobs: this.maxLogprobs }));
      }
    } catch (e) {
      if (e instanceof RangeError || e instanceof SyntaxError) throw new HttpError(400, e.message);
      throw e;
    }
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${first.toString(16).padStart(8, '0')}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.servedModelName;
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const sse = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    /** choice i's output tokens [from, to): text, logprobs, tool call pieces */
    const part = (i: number, from: number, to: number) => {
      const pl = plans[i]!;
      const text = echoedText(pl.pieces, from, to, p.echo);
      return { pl, text, logprobs: logprobsOf(pl, chat, hash3(this.seed, first + i, 0x1a9), from, to, pl.pieces.slice(0, from).join('').length) };
    };
    const choiceEvent = (i: number, index: number, fr: string | null) => {
      const { pl, text, logprobs } = part(i, index, index + 1);
      const stop = fr === null ? null : pl.stopReason;
      if (!chat) return { index: i, text, logprobs, finish_reason: fr, stop_reason: stop };
      return { index: i, delta: chatDelta(pl, index, index + 1), logprobs, finish_reason: fr, stop_reason: stop };
    };
    const done = new Array<boolean>(p.n).fill(false);
    let ended = 0;
    let energyJ = 0;
    const subIds = plans.map((_, i) => `${id}-${i}`);
    res.on('close', () => {
      for (let i = 0; i < p.n; i++) if (!done[i]) this.driver.cancel(subIds[i]!);
    });
    if (p.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      if (chat) for (let i = 0; i < p.n; i++) sse({ id, object, created, model, choices: [{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
    }
    const finish = () => {
      const completion = plans.reduce((a, pl) => a + pl.pieces.length, 0);
      const usage = { prompt_tokens: p.promptTokens, total_tokens: p.promptTokens + completion, completion_tokens: completion, prompt_tokens_details: null, energy_joules: Math.round(energyJ * 1e6) / 1e6 };
      if (p.stream) {
        res.end((p.includeUsage ? `data: ${JSON.stringify({ id, object, created, model, choices: [], usage })}\n\n` : '') + 'data: [DONE]\n\n');
        return;
      }
      const choices = plans.map((pl, i) => {
        const { text, logprobs } = part(i, 0, pl.pieces.length);
        if (!chat) return { index: i, text, logprobs, finish_reason: pl.finishReason, stop_reason: pl.stopReason };
        return { index: i, message: chatMessage(pl), logprobs, finish_reason: pl.finishReason, stop_reason: pl.stopReason };
      });
      this.json(res, 200, { id, object: chat ? 'chat.completion' : 'text_completion', created, model, choices, usage });
    };
    try {
      plans.forEach((pl, i) => {
        const n = pl.pieces.length;
        this.driver.submit({ id: subIds[i]!, promptTokens: p.promptTokens, outputTokens: n, ...(p.prefixHashes ? { prefixHashes: p.prefixHashes } : {}) }, (ev) => {
          if (ev.kind === 'first_token' || ev.kind === 'token') {
            const index = ev.kind === 'first_token' ? 0 : ev.index;
            if (p.stream) sse({ id, object, created, model, choices: [choiceEvent(i, index, index + 1 >= n ? pl.finishReason : null)] });
          } else if (ev.kind === 'finished') {
            done[i] = true;
            energyJ += ev.energyJ;
            const reason = pl.finishReason === 'length' ? 'length' : 'stop';
            this.successByReason.set(reason, (this.successByReason.get(reason) ?? 0) + 1);
            if (++ended === p.n) finish();
          }
        });
      });
    } catch (e) {
      for (let i = 0; i < p.n; i++) if (!done[i]) this.driver.cancel(subIds[i]!);
      if (e instanceof RangeError) throw new HttpError(400, e.message);
      throw e;
    }
  }

  /** The /metrics text (./metrics-text.ts); `names`: only those samples' families (the `name[]` parameters). */
  metricsText(names?: readonly string[]): string {
    return emulatorMetricsText(this.driver, this.servedModelName, this.successByReason, names);
  }
}

/** `Authorization: Bearer <key>` equals the key (compared in constant time). */
function bearerMatches(header: string | undefined, key: string): boolean {
  const want = Buffer.from(`Bearer ${key}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

/**
 * vLLM's truncate_prompt_tokens: the prompt's last k tokens (-1: the last max_model_len; absent: all of them); an
 * integer below -1 or above max_model_len is a 400, as vLLM answers.
 */
function truncatedIds(ids: number[], k: unknown, maxModelLen: number): number[] {
  if (k === undefined || k === null) return ids;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < -1) throw new HttpError(400, "'truncate_prompt_tokens' must be an integer >= -1");
  const keep = k === -1 ? maxModelLen : k;
  if (keep > maxModelLen) throw new HttpError(400, `truncate_prompt_tokens value (${keep}) is greater than max_model_len (${maxModelLen}). Please, select a smaller truncation size.`);
  return keep < ids.length ? ids.slice(ids.length - keep) : ids;
}
