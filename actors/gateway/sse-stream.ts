/**
 * A request's token streams relayed to its client as SSE (the gateway's HTTP layer, server.ts), and the events a
 * resumed stream sends again from its journal (resume.ts).
 */
import type { ServerResponse } from 'node:http';
import type { TokenChunk, Usage } from '../../protocols/messages.ts';
import { HttpError, httpErrorOfWire, toHttp, usageOfChoices, type ParsedRequest } from './openai.ts';
import { chatRole, continuousUsage, roleChunk, streamChunk, usageChunk } from './responses.ts';
import { requestIdHeader, responseIdOf } from './request-id.ts';
import { finishTextFrame, plainTextFrame, textFrame, textUsageParts } from './sse-frames.ts';
import { nativeOffer, type ClientFrame, type NativeDataPlane } from './data-plane.ts';
import type { BatchSink } from './legs.ts';
import { inBatches, mergeStreams, READER_DONE, type TokenSource } from './choices.ts';
import { SseWriter } from './sse-writer.ts';
import { ClientFlow } from './client-flow.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { StreamTimer } from './stream-timer.ts';
import { RESUMABLE_HEADER, eventId, foldJournal, replayAfter, type JournalHead, type JournalState } from './resume.ts';
import type { JournalWriter } from './journal-writer.ts';
import type { ResumeEntry } from '../../protocols/journal.ts';
import { MARK, firstTokenTrace } from '../../src/runtime/first-token-trace.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

/** How a request's answer is framed. */
export type Framing = Pick<ParsedRequest, 'kind' | 'model' | 'continuousUsage' | 'includeUsage'> & {
  /** the id its events and body name after `cmpl-` / `chatcmpl-` (request-id.ts responseIdOf); absent: the request's id. */
  responseId?: string;
  /** a chat answer's role (responses.ts chatRole); absent: assistant. */
  role?: string;
};

/** The framing of request `id`: the client's id (its X-Request-Id header `header`, else its request_id) and a chat's role. */
export function framingOf(p: ParsedRequest, header: string | string[] | undefined, id: string): Framing {
  const f: Framing = { kind: p.kind, model: p.model, includeUsage: p.includeUsage, continuousUsage: p.continuousUsage, responseId: responseIdOf(header, p.params?.request_id, id) };
  if (p.kind === 'chat') f.role = chatRole(p);
  return f;
}

/** The journal head of a request framed as `f` (the response id and role kept where they are not the defaults). */
export function journalHeadOf(req: JournalHead['req'], created: number, f: Framing): JournalHead {
  const head: JournalHead = { req, created, includeUsage: f.includeUsage, continuousUsage: f.continuousUsage };
  if (f.responseId !== undefined && f.responseId !== req.id) head.responseId = f.responseId;
  if (f.role !== undefined && f.role !== 'assistant') head.role = f.role;
  return head;
}

/** A resumed stream's framing, from its journal head. */
export function headFraming(head: JournalHead): Framing {
  return { kind: head.req.kind, model: head.req.model, includeUsage: head.includeUsage, continuousUsage: head.continuousUsage, responseId: head.responseId ?? head.req.id, ...(head.role ? { role: head.role } : {}) };
}

/** A resumable stream's state in relaySse: its journal writer, the next event's index, the tokens sent before, events to send first. */
export interface Resumable {
  journal: JournalWriter;
  next: number;
  sent: number;
  prelude: string;
}

/** What relaySse needs of the HTTP layer: the response, a hook at its status line (metrics), the answer to an error before it. */
export interface SseContext {
  res: ServerResponse;
  started(): void;
  fail(e: HttpError): void;
  /** the answer a request aborted for `reason` still gets (the gateway's drain: a retryable error); undefined: none (the client left, or it was answered). */
  aborted?(reason: unknown): HttpError | undefined;
  /** the native data plane (gateway.dataPlane), when loaded: an eligible stream's plain text events go through it. */
  plane?: NativeDataPlane;
  /** a client that reads nothing of what it holds for this long is disconnected, ms (client-flow.ts). */
  clientStallMs?: number;
  /** the stall watch's timers. */
  clock?: Clock;
}

/**
 * Relays the token streams as SSE, framed as vLLM does (`data: <json>\n\n`, `data: [DONE]\n\n` at the end):
 * every chunk names its choice's index; a chat stream opens with one role chunk per choice; each choice's
 * last text chunk carries its finish_reason; the usage chunk (stream_options.include_usage) follows the
 * last choice's end, its completion tokens summed over the choices. The status line waits for the first
 * chunk: a request that fails before its first token gets an HTTP error status and an error body, not a 200
 * stream. A failure after it is an error event, then `data: [DONE]`, as vLLM's server ends a stream that failed.
 * Resolves true when the stream ended whole (every choice's end, then [DONE]); false when it failed or the client left.
 * A batch (the chunks that arrived together) is one write, and the batches of one turn after the first too
 * (SseWriter); a plain text token is framed from a template. One choice: the batches read from an engine come
 * to the sink from the socket's read (no await).
 *
 * A resumable stream (`r`, one choice) also gets `id: <request id>:<event index>` before each event, and its
 * text events are journaled per batch (journal-writer.ts); a batch's write waits until the journal holds its events
 * (SseWriter's gate); an event the journal does not keep (logprobs, tool calls, reasoning, an error) ends its
 * resumability. A resumed stream sends `r.prelude`
 * (the events the client missed) with its status line, and numbers its events from `r.next`.
 *
 * A request aborted (ac) ends without a word, unless ctx.aborted gives its answer (a gateway's drain): that error, as
 * any failure's; a resumable stream's error event then has no id and its journal is kept, so its client resumes it
 * (Last-Event-ID: its last event's id) on another replica.
 */
export async function relaySse(ctx: SseContext, p: Framing, id: string, created: number, inputTokens: number, sources: TokenSource[], ac: { readonly signal: AbortLike }, timers: StreamTimer[], r?: Resumable): Promise<boolean> {
  const res = ctx.res;
  const rid = p.responseId ?? id; // the events' id (the client's); `id` names the request inside the cluster and the SSE ids
  let started = false;
  const w = new SseWriter(res, undefined, r?.journal);
  // past CLIENT_HOLD_BYTES unsent to the client, the stream's engine reads wait for the client's drain
  const flow = new ClientFlow(res, ctx.clientStallMs, ctx.clock);
  const start = () => {
    if (started) return;
    started = true;
    // Connection is Node's (as uvicorn's h11 answers): keep-alive unless the client asked to close (or HTTP/1.0
    // without keep-alive), or a draining gateway set `connection: close` (GatewayServer.leave)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': requestIdHeader(rid, id) });
    if (r?.prelude) w.add(r.prelude);
  };
  /** an event: `obj` as JSON, or `framed` (a whole event already framed). */
  const send = (obj: unknown, framed?: string): void => {
    start();
    const ev = framed ?? `data: ${JSON.stringify(obj)}\n\n`;
    w.add(r ? `id: ${eventId(id, r.next++)}\n${ev}` : ev);
  };
  /**
   * before the first byte: an HTTP error; after: an error event, then [DONE] (vLLM's end of a failed stream): vLLM's
   * error body, and `retryable` (whether the same request may succeed if sent again: docs/PROTOCOL.md). `resume`
   * (the drain's error): a resumable stream stays resumable from the client's last event (its error event without id).
   */
  const fail = (e: HttpError, resume = false): false => {
    const kept = resume && started && r !== undefined;
    if (!kept) r?.journal.stop('the stream ended with an error');
    if (!started) {
      ctx.fail(e);
      return false;
    }
    const error = { ...e.body().error, retryable: e.retryable };
    if (kept) w.add(`data: ${JSON.stringify({ error: { ...error, message: `${e.message}: resume the stream on another replica (Last-Event-ID)` } })}\n\n`);
    else send({ error });
    w.end('data: [DONE]\n\n');
    return false;
  };
  /** the request was aborted: ctx.aborted's answer, if any, while the client's connection is open. */
  const onAbort = (): false => {
    const e = ctx.aborted?.(ac.signal.reason);
    return e && !res.destroyed ? fail(e, true) : false;
  };
  const n = sources.length;
  const tokens = new Array<number>(n).fill(0);
  if (r) tokens[0] = r.sent;
  const usages = new Array<Usage | undefined>(n);
  // each choice's plain text event template, made at its first text event (not before the engine call)
  const plain: ReturnType<typeof plainTextFrame>[] = [];
  const plainOf = (i: number) => (plain[i] ??= plainTextFrame(p.kind, rid, created, p.model, i, p.continuousUsage ? inputTokens : undefined));
  let ended = 0;
  // a resumed chat stream had its role chunk (event 0)
  let first = !(r && r.next > 0);
  const signal = ac.signal; // read once per batch: no listener of its own
  /** chunks of the batch given to the client so far (relayBatch), timed once it is written (relayed). */
  let timed = 0;
  /**
   * The chunks of choice i that came together; a boolean (the result) once the client's stream is over. The batch's
   * bytes go to the client first; then the bookkeeping of its status line (ctx.started: the hold limit's end, the
   * response's count) and its chunks' times (the TTFT and TBT histograms, from the time of the write).
   */
  const relayed = (i: number, batch: readonly TokenChunk[]): boolean | undefined => {
    const before = started;
    timed = 0;
    try {
      return relayBatch(i, batch);
    } finally {
      if (firstTokenTrace.on) firstTokenTrace.mark(id, MARK.firstWrite);
      if (started && !before) ctx.started();
      for (let k = 0; k < timed; k++) timers[i]!.onChunk(batch[k]!);
    }
  };
  const relayBatch = (i: number, batch: readonly TokenChunk[]): boolean | undefined => {
    if (signal.aborted) return onAbort();
    for (const c of batch) {
      if (c.error) return fail(httpErrorOfWire(c.error.code, c.error.message, c.error.retryAfterS, false, c.error.retryable));
      if (c.done && (c.finishReason === 'error' || c.finishReason === 'cancelled')) {
        return fail(new HttpError(503, `request ended early (${c.finishReason})`, 'service_unavailable', c.finishReason, null, 1));
      }
      if (first && p.kind === 'chat') {
        for (let j = 0; j < n; j++) send(roleChunk(rid, created, p.model, p.continuousUsage ? continuousUsage(inputTokens, 0) : undefined, j, p.role));
      }
      first = false;
      tokens[i]! += c.tokens;
      timed++;
      const extras = !!c.toolCalls || !!c.logprobs || c.reasoning !== undefined;
      if (!c.done && c.text.length > 0 && !extras) {
        if (r) r.journal.text(r.next, c.text, c.tokens);
        send(undefined, plainOf(i)(c.text, tokens[i]!));
        continue;
      }
      if (r && extras) r.journal.stop('an event the journal does not keep (logprobs, tool calls or reasoning)');
      const usage = p.continuousUsage ? continuousUsage(inputTokens, tokens[i]!) : undefined;
      if (c.done) {
        // the choice's last chunk: its last text (the instance sends it with the end) and finish_reason, as vLLM's
        const finish = c.finishReason ?? 'stop';
        r?.journal.end({ at: r.next, text: c.text, tokens: c.tokens, finish, stopReason: c.stopReason ?? null, ...(c.usage ? { usage: c.usage } : {}) });
        // plain text alone: written member by member (finishTextFrame), else the chunk stringified
        if (!extras && !usage) send(undefined, finishTextFrame(p.kind, rid, created, p.model, i, c.text, finish, c.stopReason));
        else send(streamChunk(p.kind, rid, created, p.model, { text: c.text, logprobs: c.logprobs, toolCalls: c.toolCalls, reasoning: c.reasoning, usage, finish, stopReason: c.stopReason }, i));
        usages[i] = c.usage;
        if (++ended < n) continue;
        if (p.includeUsage) send(usageChunk(p.kind, rid, created, p.model, usageOfChoices(usages, inputTokens, tokens)));
        w.end('data: [DONE]\n\n');
        return true;
      }
      if (c.text.length > 0 || c.toolCalls || c.logprobs || c.reasoning !== undefined) send(streamChunk(p.kind, rid, created, p.model, { text: c.text, logprobs: c.logprobs, toolCalls: c.toolCalls, reasoning: c.reasoning, usage }, i));
    }
    r?.journal.flush();
    w.flush();
    return undefined;
  };
  // the first token's path (src/runtime/first-token-trace.ts): the first batch's arrival, and its write to the client
  const onBatch = !firstTokenTrace.on ? relayed : (i: number, batch: readonly TokenChunk[]): boolean | undefined => {
    firstTokenTrace.mark(id, MARK.event);
    return relayed(i, batch); // (which marks the first write)
  };
  let result: boolean | undefined; // one choice: the batches read from an engine come to `sink` from the socket's read (no await)
  const sink: BatchSink = (batch: readonly TokenChunk[]): void => {
    result ??= onBatch(0, batch);
    if (result !== undefined) throw READER_DONE;
  };
  // one choice, not journaled, on a plain socket: its plain text events may go native (data-plane.ts)
  const native = n === 1 && !r && ctx.plane ? nativeOffer(ctx.plane, res, w, () => clientFrame(p, rid, created, inputTokens, () => tokens[0]!), (e) => {
    tokens[0]! += e.events;
    timers[0]!.onSpan(e);
  }, ctx.clientStallMs, ctx.clock) : undefined;
  if (native) sink.native = native;
  sink.flow = flow;
  try {
    if (n === 1) {
      for await (const batch of inBatches(sources[0]!, sink)) {
        if ((result = onBatch(0, batch)) !== undefined) return result;
        if (flow.blocked()) await flow.drained();
      }
    } else {
      for await (const { i, c } of mergeStreams(sources.map((s) => inBatches(s)))) {
        if ((result = onBatch(i, c)) !== undefined) return result;
        if (flow.blocked()) await flow.drained();
      }
    }
    return ac.signal.aborted ? onAbort() : fail(new HttpError(502, 'token stream ended without a final chunk', 'internal_error', 'incomplete_stream'));
  } catch (err) {
    if (err === READER_DONE) return result!;
    if (ac.signal.aborted) return onAbort();
    return fail(toHttp(err));
  } finally {
    native?.close();
    flow.close();
    w.drop();
    if (firstTokenTrace.on) firstTokenTrace.ended();
  }
}

/** The client's plain text event for the native data plane: plainTextFrame's bytes, in parts. */
function clientFrame(p: Framing, id: string, created: number, inputTokens: number, count: () => number): ClientFrame {
  if (!p.continuousUsage) {
    const [prefix, suffix] = textFrame(p.kind, id, created, p.model, 0);
    return { prefix, suffix };
  }
  const [prefix, mid, suffix] = textUsageParts(p.kind, id, created, p.model, inputTokens, 0);
  return { prefix, suffix, usage: { mid, promptTokens: inputTokens, count } };
}

/**
 * The events a resumed stream sends again (replayAfter's plan), framed as they were the first time: the text events
 * after the client's last, and for an ended stream its last event and usage event (the caller adds [DONE]).
 */
export function replayPrelude(id: string, head: JournalHead, plan: Extract<ReturnType<typeof replayAfter>, { ok: true }>): string {
  const kind = head.req.kind;
  const model = head.req.model;
  const inputTokens = head.req.inputTokens;
  const rid = head.responseId ?? id; // the events' id: the client's, as the first time
  const frame = plainTextFrame(kind, rid, head.created, model, 0, head.continuousUsage ? inputTokens : undefined);
  let out = '';
  for (const e of plan.events) out += `id: ${eventId(id, e.index)}\n${frame(e.text, e.upTo)}`;
  const end = plan.end;
  if (!end) return out;
  const total = plan.sent + end.tokens;
  if (plan.endEvents.includes(end.at)) {
    const usage = head.continuousUsage ? continuousUsage(inputTokens, total) : undefined;
    out += `id: ${eventId(id, end.at)}\ndata: ${JSON.stringify(streamChunk(kind, rid, head.created, model, { text: end.text, finish: end.finish, stopReason: end.stopReason, usage }))}\n\n`;
  }
  if (plan.endEvents.includes(end.at + 1)) out += `id: ${eventId(id, end.at + 1)}\ndata: ${JSON.stringify(usageChunk(kind, rid, head.created, model, usageOfChoices([end.usage], inputTokens, [total])))}\n\n`;
  return out;
}

/**
 * A resume of stream `last.id` after event `last.index` (docs/PROTOCOL.md "Resumable streams"), from its journal's
 * entries: the state and what to send, or the refusal: 404 `stream_not_found` for a stream the journal does not have
 * (unknown, expired, not opted in, or another API key's: the same answer), 400 `wrong_endpoint`, 410
 * `stream_not_resumable` for one that stopped being resumable, or whose client's last event is before the end of an
 * unresumable range (events sent without ids: the client has events after it), 503 `journal_behind` (retryable, Retry-After) for one
 * whose journal as read lacks entries or ends before the client's last event: a client is sent only events its journal
 * held, so what was read is a JetStream replica still catching up, or the journal not answering whole; a later read
 * may find them.
 */
export function resumePlan(entries: readonly ResumeEntry[], last: { id: string; index: number }, kind: ParsedRequest['kind'], apiKeyId: string | undefined):
  | { id: string; state: JournalState; plan: Extract<ReturnType<typeof replayAfter>, { ok: true }> }
  | { error: HttpError } {
  const s = foldJournal(entries);
  const gone = (why: string) => ({ error: new HttpError(410, `stream '${last.id}' can no longer be resumed: ${why}`, 'invalid_request_error', 'stream_not_resumable') });
  if (!s || s.head.req.apiKeyId !== apiKeyId) return { error: new HttpError(404, `no resumable stream '${last.id}': unknown, expired, or not opted in (${RESUMABLE_HEADER}: 1)`, 'invalid_request_error', 'stream_not_found') };
  if (s.head.req.kind !== kind) return { error: new HttpError(400, `stream '${last.id}' is a ${s.head.req.kind === 'chat' ? 'chat completion' : 'completion'}: resume it on its own endpoint`, 'invalid_request_error', 'wrong_endpoint') };
  if (s.stop !== undefined) return gone(s.stop);
  const u = s.unresumable;
  if (u && u.until === undefined) return gone(`its events from ${u.from} on were sent without ids (${u.why ?? 'the journal did not hold them in time'})`);
  if (u?.until !== undefined && last.index < u.until) return gone(`its events from ${u.from} to ${u.until - 1} were sent without ids: resume from event ${u.until} or later`);
  const behind = (why: string) => ({ error: new HttpError(503, `the journal of stream '${last.id}' as read ${why}: retry the resume`, 'service_unavailable', 'journal_behind', null, 1) });
  if (s.gap) return behind('lacks entries');
  const plan = replayAfter(s, last.index);
  return plan.ok ? { id: last.id, state: s, plan } : behind(plan.reason.replace(/^the journal of this stream /, ''));
}
