/**
 * The client half of an engine's OpenAI-compatible streaming API (vLLM, or the emulator): one streamed
 * completion over node:http with a keep-alive agent, SSE parsed into EngineChunks. The engine manager
 * (VllmEngine) streams through it, and so does the gateway when it reads an engine directly after the
 * instance manager's grant (docs/DATAPATH.md). Pure transport: what a broken stream means (a crash, a stream
 * error) is the caller's `classify`.
 */
import { request as httpRequest, type Agent, type ClientRequest, type IncomingMessage } from 'node:http';
import type { EngineChunk, EngineCompletionRequest } from './engine.ts';
import { EngineError, EngineHttpError, EngineStalledError, EngineStreamError, EngineTimeoutError } from './errors.ts';
import { idleLeftMs } from '../policy/engine-liveness.ts';
import { creditStall, timerStallMs } from '../policy/timer-stall.ts';
import { spanWorthOffering } from '../policy/span-offer.ts';
import { SseParser } from './sse.ts';
import { parseEvent, TextEventScanner } from './sse-event.ts';
import { http1Request, type Http1Pool, type Http1Response } from './http1.ts';
import { LeanAbort, type AbortLike } from './abort.ts';
import type { EngineSide } from './native-span.ts';
import { idsJson } from './prompt-json.ts';

export { parseEvent } from './sse-event.ts';

export interface EngineTarget {
  host: string;
  port: number;
  /** node:http's keep-alive agent (the instance manager's engine client), unless `pool` is given. */
  agent?: Agent;
  /** the lean HTTP/1.1 client's connections (src/engine/http1.ts; the gateway's direct data path): used instead of node:http. */
  pool?: Http1Pool;
  /** the engine's API key (vLLM --api-key / VLLM_API_KEY): sent as `Authorization: Bearer`. */
  apiKey?: string;
  /** deadline of a completion without its own timeoutMs, ms. */
  defaultTimeoutMs: number;
}

/** The JSON body vLLM's /v1/completions or /v1/chat/completions takes for `req` (streamed, with usage). */
export function completionBody(req: EngineCompletionRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    ...req.params,
    model: req.model,
    max_tokens: req.maxTokens,
    stream: true,
    stream_options: req.continuousUsage ? { include_usage: true, continuous_usage_stats: true } : { include_usage: true },
  };
  if (req.chat !== undefined) body.messages = req.chat;
  else if (req.prompt !== undefined) body.prompt = req.prompt;
  else throw new RangeError('completion needs prompt or chat');
  if (req.minTokens !== undefined) body.min_tokens = req.minTokens;
  if (req.ignoreEos !== undefined) body.ignore_eos = req.ignoreEos;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  return body;
}

/** The prompt's place in completionBody's JSON, replaced there by the kept text of a token-id prompt. */
const PROMPT_SLOT = '\u0000dynamollm-prompt\u0000';
const PROMPT_SLOT_JSON = JSON.stringify(PROMPT_SLOT);

/**
 * JSON.stringify(completionBody(req)), the engine call's bytes. A token-id prompt whose JSON text the gateway kept
 * from the client's body (prompt-json.ts idsJson) is written as that text at the prompt's place in completionBody's
 * JSON (its 2,000 ids not stringified again); any other request is completionBody's stringified.
 */
export function completionPayload(req: EngineCompletionRequest): string {
  const ids = req.chat === undefined && Array.isArray(req.prompt) ? idsJson(req.prompt) : undefined;
  if (ids === undefined) return JSON.stringify(completionBody(req));
  const json = JSON.stringify(completionBody({ ...req, prompt: PROMPT_SLOT }));
  const at = json.indexOf(PROMPT_SLOT_JSON);
  // the slot once only (a parameter could spell it too): else the ids are stringified as any prompt
  if (at < 0 || json.indexOf(PROMPT_SLOT_JSON, at + 1) >= 0) return JSON.stringify(completionBody(req));
  // one flat string (join), not a rope of the pieces that its byte count and its write would each flatten
  return [json.slice(0, at), ids, json.slice(at + PROMPT_SLOT_JSON.length)].join('');
}

/**
 * Streams one completion. Errors: EngineHttpError (the engine answered non-2xx), EngineStreamError (an error
 * event), EngineTimeoutError (the deadline), EngineStalledError (silent past `req.idle`), the signal's reason when
 * aborted, and whatever `classify` makes of a broken connection or a stream that ended without [DONE].
 */
export async function* streamCompletion(
  t: EngineTarget,
  req: EngineCompletionRequest,
  signal: AbortLike | undefined,
  classify: (cause: unknown) => Promise<EngineError> | EngineError,
): AsyncGenerator<EngineChunk> {
  for await (const batch of streamCompletionBatches(t, req, signal, classify)) yield* batch;
}

/**
 * streamCompletion, one batch per read from the socket: the events that arrived together (the gateway's data
 * path forwards them with one await and one write, docs/DATAPATH.md). Never yields an empty batch.
 */
export async function* streamCompletionBatches(
  t: EngineTarget,
  req: EngineCompletionRequest,
  signal: AbortLike | undefined,
  classify: (cause: unknown) => Promise<EngineError> | EngineError,
): AsyncGenerator<EngineChunk[]> {
  const { chat, payload, ac, disarm, idle } = armCompletion(t, req, signal);
  let http: ClientRequest | undefined;
  const onAc = () => http?.destroy(ac.signal.reason instanceof Error ? ac.signal.reason : new Error('aborted'));
  if (!t.pool) ac.signal.addEventListener('abort', onAc, { once: true });
  let res: IncomingMessage | undefined;
  let lean: Http1Response | undefined;
  let done = false;
  try {
    try {
      const path = chat ? '/v1/chat/completions' : '/v1/completions';
      let bytes: { next(): Promise<Buffer | null>; take(): Buffer | undefined };
      if (t.pool) {
        lean = await leanCompletion(t as EngineTarget & { pool: Http1Pool }, req, path, payload, ac);
        bytes = lean;
      } else {
        const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
        if (req.requestId) headers['x-request-id'] = req.requestId;
        if (t.apiKey) headers.authorization = `Bearer ${t.apiKey}`;
        const send = () => new Promise<IncomingMessage>((resolve, reject) => {
          http = httpRequest({ host: t.host, port: t.port, method: 'POST', path, headers, agent: t.agent }, resolve);
          http.on('error', reject);
          if (ac.signal.aborted) onAc();
          http.end(payload);
        });
        for (let attempt = 0; ; attempt++) {
          try {
            res = await send();
            break;
          } catch (err) {
            // a kept-alive connection the server closed just as we sent on it: nothing reached the engine, so
            // send again on a fresh connection (Node's documented pattern, request.reusedSocket)
            const code = (err as NodeJS.ErrnoException)?.code;
            if (attempt < 2 && !ac.signal.aborted && http!.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')) continue;
            throw err;
          }
        }
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) throw new EngineHttpError(status, await readText(res), 'completion');
        bytes = new ByteQueue(res);
      }
      const ev = new EngineEvents(chat);
      for (let buf = await bytes.next(); buf !== null && !ev.done; buf = await bytes.next()) {
        ev.push(buf);
        // what else has already arrived goes into the same batch
        for (let more = bytes.take(); more; more = bytes.take()) ev.push(more);
        const batch = ev.take();
        idle?.touch(batch !== undefined);
        done = ev.done;
        if (!batch) continue;
        // the time the consumer takes over a batch (a slow client) is not the engine's silence
        idle?.hold();
        yield batch;
        idle?.release();
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      const reason = ac.signal.reason as unknown;
      if (ac.signal.aborted && reason instanceof EngineError) throw reason;
      if (err instanceof EngineHttpError || err instanceof EngineStreamError) throw err;
      throw await classify(err);
    }
    if (!done) throw await classify(new Error('stream ended without [DONE]'));
  } finally {
    disarm();
    if (!t.pool) ac.signal.removeEventListener('abort', onAc);
    // a response read to its [DONE] leaves its connection to the keep-alive pool once the rest of the message
    // (its chunked terminator, often not read yet when a whole batch ended in [DONE]) is in, within 1 s;
    // anything else (the consumer stopped early, an error) closes it
    if (lean) lean.close(done ? 1000 : undefined);
    else if (res && done) {
      if (!res.complete) {
        const r = res, h = http;
        const cut = setTimeout(() => r.complete || h?.destroy(), 1000);
        cut.unref();
        r.once('end', () => clearTimeout(cut));
      }
      res.resume();
    } else if (http && !http.destroyed) http.destroy();
  }
}

/**
 * The events of one engine stream read from its bytes, as EngineChunks: a plain text event through the skeleton
 * scan (sse-event.ts), any other through JSON.parse; `done` once `[DONE]` was read (bytes after it are ignored).
 */
class EngineEvents {
  private readonly parser = new SseParser();
  private events: string[] = [];
  private readonly scanner: TextEventScanner;
  private tokenIndex = 0;
  done = false;
  /** the choice's finish was read: the usage and [DONE] may follow, no text event. */
  private finished = false;

  constructor(private readonly chat: boolean) {
    this.scanner = new TextEventScanner(chat);
  }

  push(buf: Buffer): void {
    if (!this.done) this.parser.push(buf, this.events);
  }

  /**
   * between events, nothing pending, before the choice's finish: where the native data plane may take the stream (its
   * skeleton learnt; after the finish it would only hand back the usage event).
   */
  get clean(): boolean {
    return !this.done && !this.finished && this.events.length === 0 && this.parser.clean;
  }

  skeleton(): ReturnType<TextEventScanner['skeleton']> {
    return this.scanner.skeleton();
  }

  /** tokens read so far (the events' and the native data plane's). */
  get tokens(): number {
    return this.tokenIndex;
  }

  /** plain text events of one token each that the native data plane carried. */
  carried(events: number): void {
    this.tokenIndex += events;
  }

  /** The chunks of the events pushed since the last take (undefined: none); throws EngineStreamError for a bad event. */
  take(): EngineChunk[] | undefined {
    const events = this.events;
    if (events.length === 0) return undefined;
    // a new array rather than `length = 0` (a runtime call per read)
    this.events = [];
    let batch: EngineChunk[] | undefined;
    for (let i = 0; i < events.length; i++) {
      const data = events[i]!;
      if (data === '[DONE]') {
        this.done = true;
        break;
      }
      let chunk = this.scanner.scan(data, this.tokenIndex);
      if (chunk === undefined) this.scanner.learn(data, (chunk = parseEvent(data, this.chat, this.tokenIndex)));
      if (!chunk) continue; // e.g. the chat role-only first delta
      if (chunk.finishReason !== undefined) this.finished = true;
      this.tokenIndex += chunk.tokens ?? (chunk.text !== '' ? 1 : 0);
      (batch ??= []).push(chunk);
    }
    return batch;
  }
}

/**
 * streamCompletionBatches pushed rather than pulled, over the lean HTTP/1.1 client only (`t.pool`): the events of
 * each socket read go to `onBatch` synchronously from the socket's read (no promise, generator or queue per read:
 * the gateway's direct data path, docs/DATAPATH.md). Resolves once `[DONE]` was read; rejects as
 * streamCompletionBatches' iteration would. An exception thrown by `onBatch` ends the engine call (its connection
 * closed) and is what the promise rejects with, unclassified.
 */
export async function streamCompletionPush(
  t: EngineTarget & { pool: Http1Pool },
  req: EngineCompletionRequest,
  signal: AbortLike | undefined,
  classify: (cause: unknown) => Promise<EngineError> | EngineError,
  onBatch: (batch: EngineChunk[]) => void,
  native?: NativeHook,
  flow?: ReaderFlow,
): Promise<void> {
  const { chat, payload, ac, arm } = prepareCompletion(req, signal);
  const ev = new EngineEvents(chat);
  // the request written first (leanCompletion writes it before its first await), then its deadlines and abort link
  const sent = leanCompletion(t, req, chat ? '/v1/chat/completions' : '/v1/completions', payload, ac);
  const { disarm, idle } = arm(t);
  let side: EngineSide | undefined;
  let lean: Http1Response | undefined;
  let sinkFailed = false;
  let sinkErr: unknown;
  try {
    try {
      const l = (lean = await sent);
      await new Promise<void>((resolve, reject) => {
        l.pipe((buf) => {
          ev.push(buf);
          const batch = ev.take();
          idle?.touch(batch !== undefined);
          if (ev.done) resolve();
          if (!batch) return;
          try {
            onBatch(batch);
          } catch (e) {
            sinkFailed = true;
            sinkErr = e;
            throw e;
          }
          if (flow?.blocked()) holdFor(l, flow, idle);
          // a stream with only a few tokens left stays on JavaScript (src/policy/span-offer.ts)
          if (native && ev.clean && spanWorthOffering(req.maxTokens, ev.tokens)) native.ready((side ??= engineSide(l, ev, idle, native)));
        }).then(resolve, reject);
      });
    } catch (err) {
      if (sinkFailed) throw sinkErr;
      if (signal?.aborted) throw signal.reason ?? err;
      const reason = ac.signal.reason as unknown;
      if (ac.signal.aborted && reason instanceof EngineError) throw reason;
      if (err instanceof EngineHttpError || err instanceof EngineStreamError) throw err;
      throw await classify(err);
    }
    if (!ev.done) throw await classify(new Error('stream ended without [DONE]'));
  } finally {
    disarm();
    // read to its [DONE]: the connection goes to the keep-alive pool once the rest of the message is in (within 1 s)
    if (lean) lean.close(ev.done && !sinkFailed ? 1000 : undefined);
  }
}

/**
 * A pushed stream's reader as the engine client sees it (the gateway's client socket, actors/gateway/client-flow.ts):
 * `blocked()` after a batch says the reader holds more unsent than it takes, and `onDrain` calls once it takes more.
 */
export interface ReaderFlow {
  blocked(): boolean;
  onDrain(fn: () => void): void;
}

/**
 * The engine's reads stopped until the reader drains: its bytes wait in the kernel (TCP flow control slows the
 * engine's writes), and the idle watch counts the wait as activity, not as the engine's silence.
 */
function holdFor(l: Http1Response, flow: ReaderFlow, idle: IdleWatch | undefined): void {
  l.pause();
  idle?.hold();
  flow.onDrain(() => {
    idle?.release();
    l.resume();
  });
}

/** The native data plane's offer (actors/gateway/data-plane.ts NativeOffer), as the engine client sees it. */
export interface NativeHook {
  ready(side: EngineSide): void;
  activity(): number | undefined;
}

/** A pushed stream's engine side for the native data plane. */
function engineSide(l: Http1Response, ev: EngineEvents, idle: IdleWatch | undefined, native: NativeHook): EngineSide {
  if (idle) idle.activity = () => native.activity();
  return {
    skeleton: () => ev.skeleton(),
    detach: (reclaim) => (ev.clean ? l.detach(reclaim) : undefined),
    account: (e) => {
      ev.carried(e.events);
      idle?.touch(e.events > 0);
    },
    attach: (rest, cancelled) => l.attach(rest, cancelled),
  };
}

/**
 * What both completion calls set up: the request's checks and body's bytes, and the engine call's own cancellation (the
 * caller's signal, its deadline, or its idle deadline; a LeanAbort, no EventTarget: abort.ts). `disarm` ends the
 * deadlines and the link.
 */
function armCompletion(t: EngineTarget, req: EngineCompletionRequest, signal: AbortLike | undefined) {
  const c = prepareCompletion(req, signal);
  return { ...c, ...c.arm(t) };
}

/**
 * armCompletion in two steps, for a caller that writes the engine request in between (streamCompletionPush): the checks,
 * the body and the call's cancellation (already aborted when the caller's signal is), then `arm`: the deadlines and
 * the link to the caller's signal, set once the request is on its socket, in the same turn (no abort comes between).
 */
function prepareCompletion(req: EngineCompletionRequest, signal: AbortLike | undefined) {
  if (!(req.maxTokens >= 1)) throw new RangeError('maxTokens must be >= 1');
  const ac = new LeanAbort();
  if (signal?.aborted) ac.abort(signal.reason);
  const arm = (t: EngineTarget) => {
    const timeoutMs = req.timeoutMs ?? t.defaultTimeoutMs;
    // the error (and its stack) is made when the deadline passes, not for every request
    const timer = setTimeout(() => ac.abort(new EngineTimeoutError(`completion exceeded its ${timeoutMs} ms deadline`)), timeoutMs);
    const onAbort = () => ac.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    const idle = req.idle ? new IdleWatch(req.idle, ac) : undefined;
    const disarm = () => {
      clearTimeout(timer);
      idle?.stop();
      signal?.removeEventListener('abort', onAbort);
    };
    return { disarm, idle };
  };
  return { chat: req.chat !== undefined, payload: completionPayload(req), ac, arm };
}

/**
 * A stream's idle deadline (EngineCompletionRequest.idle; src/policy engine-liveness.ts idleLeftMs): one timer,
 * re-armed only when it fires early (a read moves the last byte's time, nothing else), and once at the first token
 * (the shorter bound then). Past the bound the call is aborted with EngineStalledError.
 */
class IdleWatch {
  private lastMs = performance.now();
  private tokens = false;
  /** the last event's time where another reader has the stream (the native data plane), checked when the timer fires. */
  activity: (() => number | undefined) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** the reader holds the stream (hold/release): the wait is not the engine's silence. */
  private held = false;
  /** a check ran while held: the release restarts the silence. */
  private heldChecked = false;
  /** when the armed check is due (performance.now()). */
  private dueMs = 0;
  constructor(private readonly b: { firstMs: number; nextMs: number }, private readonly ac: LeanAbort) {
    this.arm(b.firstMs);
  }

  /** bytes came from the engine (`tokens`: a batch of events with them). */
  touch(tokens: boolean): void {
    this.lastMs = performance.now();
    if (tokens && !this.tokens) {
      this.tokens = true;
      clearTimeout(this.timer);
      this.arm(this.b.nextMs);
    }
  }

  /** the reader stopped taking the stream's bytes (a slow client): until release, the silence does not count. */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    if (this.heldChecked) {
      this.heldChecked = false;
      this.lastMs = performance.now();
    }
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    this.dueMs = performance.now() + ms;
    this.timer = setTimeout(this.check, ms);
  }

  private readonly check = (): void => {
    this.timer = undefined;
    const now = performance.now();
    if (this.held) {
      this.heldChecked = true;
      this.lastMs = now;
    }
    // a check that runs late ran after this process was stopped (src/policy/timer-stall.ts): the engine's bytes of
    // the stall wait unread in the socket, so the stall is not the engine's silence
    this.lastMs = creditStall(Math.max(this.lastMs, this.activity?.() ?? 0), timerStallMs(this.dueMs, now));
    const left = idleLeftMs(this.b, this.lastMs, this.tokens, now);
    if (left > 0) return this.arm(left);
    const ms = this.tokens ? this.b.nextMs : this.b.firstMs;
    this.ac.abort(new EngineStalledError(`the engine sent nothing for ${ms} ms ${this.tokens ? 'between two tokens' : 'before the first token'}`));
  };
}

/** The completion POST over the lean HTTP/1.1 client: its response once the status is 2xx, else EngineHttpError with the body. */
async function leanCompletion(t: EngineTarget & { pool: Http1Pool }, req: EngineCompletionRequest, path: string, payload: string, ac: LeanAbort): Promise<Http1Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (req.requestId) headers['x-request-id'] = req.requestId;
  if (t.apiKey) headers.authorization = `Bearer ${t.apiKey}`;
  const r = await http1Request(t.pool, { host: t.host, port: t.port, method: 'POST', path, headers, body: payload }, ac.signal);
  if (r.status >= 200 && r.status < 300) return r;
  let text: string;
  try {
    text = await readLean(r);
  } finally {
    // read to its end: the connection goes back to the pool; cut or aborted: it is closed
    r.close();
  }
  throw new EngineHttpError(r.status, text, 'completion');
}

/** A lean response's body as text (an error answer), at most 64 KiB kept. */
async function readLean(r: Http1Response): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for (let b = await r.next(); b !== null; b = await r.next()) {
    if (n < 65_536) parts.push(Buffer.from(b));
    n += b.length;
  }
  return Buffer.concat(parts).toString('utf8');
}

async function readText(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of res) {
    if (n < 65_536) parts.push(b as Buffer);
    n += (b as Buffer).length;
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Pull interface over a response body: next() gives the next chunk, null at the end, and rejects when the
 * body is cut (socket reset, destroyed by a deadline or a cancel). Pauses the socket while 64 chunks wait.
 */
class ByteQueue {
  private readonly q: Buffer[] = [];
  private ended = false;
  private err: Error | null = null;
  private wake: (() => void) | null = null;
  constructor(private readonly res: IncomingMessage) {
    res.on('data', (b: Buffer) => {
      this.q.push(b);
      if (this.q.length >= 64) res.pause();
      this.poke();
    });
    res.on('end', () => {
      this.ended = true;
      this.poke();
    });
    res.on('error', (e) => {
      this.err ??= e;
      this.poke();
    });
    res.on('close', () => {
      if (!this.ended) this.err ??= new Error('response closed before its end');
      this.poke();
    });
  }
  private poke(): void {
    const w = this.wake;
    if (w) {
      this.wake = null;
      w();
    }
  }
  /** the next chunk already here, without waiting. */
  take(): Buffer | undefined {
    const b = this.q.shift();
    if (b && this.q.length === 0 && this.res.isPaused()) this.res.resume();
    return b;
  }
  async next(): Promise<Buffer | null> {
    for (;;) {
      const b = this.take();
      if (b) return b;
      if (this.err) throw this.err;
      if (this.ended) return null;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}
