/**
 * The instance manager's stream of a request it serves itself (not direct): the engine's completion, its tokens on
 * the request's own stream subject (the first at once, the later ones coalesced within engine.streamCoalesceMs),
 * TTFT and TBT measured, the done chunk with the usage and energy, or an error chunk. The manager holds the request
 * (actors/instance-manager/instance-manager.ts #run); its end goes back to the manager's bookkeeping (LegHost.ended).
 */
import { appendFileSync } from 'node:fs';
import { TokenChunk, toWireError, type WireError } from '../../protocols/index.ts';
import { chunkExtras } from '../../src/engine/engine.ts';
import { EngineHttpError, EngineTimeoutError } from '../../src/engine/errors.ts';
import { deadlineEnd } from '../../src/policy/deadline.ts';
import { engineIdleBounds } from '../../src/policy/engine-liveness.ts';
import { TTFT_TRACE, type Held, type LegHost, type Running } from './running.ts';
import { pastCredit, relayPaced, whileNoCredit } from './relay-pause.ts';
import { heldBytesOf, RELAY_TURN_CHUNKS } from '../../src/policy/relay-flow.ts';

/** Streams request `q` (running as `r`) from the engine to its stream subject; at its end, the manager's bookkeeping (LegHost.ended). */
export async function streamFromEngine(h: LegHost, q: Held, r: Running): Promise<void> {
  const req = q.req;
  const clock = h.clock;
  let ok = false;
  const type = req.type;
  const base = { v: 1 as const, id: req.id, instance: h.id, pool: h.pool, type: req.type };
  let finishReason: string | undefined;
  let stopReason: string | number | null | undefined;
  let usage: { promptTokens: number; completionTokens: number; energyJoules?: number } | undefined;
  let completion = 0;
  /** the engine's events read, for a turn every RELAY_TURN_CHUNKS of them; the bytes published against the gateway's credit */
  let events = 0, sent = 0;
  /** the leg is paced by its gateway's grants (relay-pause.ts): its first chunk says so, the gateway then grants and bounds it */
  let mark = relayPaced(r);
  const publish = (chunk: TokenChunk) => {
    sent += heldBytesOf(chunk);
    h.bus.publish(req.streamSubject, TokenChunk, mark ? { ...chunk, relayCredit: true } : chunk);
    mark = false;
  };
  /** the engine's last text event (it carries finish_reason): sent as the done chunk itself */
  let tail: TokenChunk | undefined;
  const remainingMs = Math.max(1000, req.giveUpAtMs - clock.now());
  // token coalescing (engine.streamCoalesceMs): tokens after the first gather in `pend` for at most the
  // window, then travel as one chunk with each token's arrival offset (see docs/REPLAY.md)
  const coalesceMs = h.config.engine.streamCoalesceMs;
  let pend: { text: string; n: number; t0: number; offsets: number[]; timer?: unknown } | null = null;
  const flush = () => {
    const p = pend;
    if (!p) return;
    pend = null;
    if (p.timer !== undefined) clock.clearTimeout(p.timer);
    const chunk: TokenChunk = { ...base, seq: r.seq++, text: p.text, tokens: p.n };
    if (p.n > 1) chunk.tokenOffsetsMs = p.offsets;
    try {
      publish(chunk);
    } catch (err) {
      h.log.debug({ id: req.id, err: (err as Error).message }, 'token chunk not published');
    }
  };
  try {
    const it = h.engine.completion(
      {
        model: req.model,
        prompt: req.prompt ?? (req.messages ? undefined : ''),
        chat: req.messages,
        maxTokens: req.maxTokens,
        minTokens: req.minTokens,
        ignoreEos: req.ignoreEos,
        temperature: req.temperature,
        params: req.params,
        requestId: req.id,
        timeoutMs: remainingMs,
        // silent past it (a frozen engine), the stream ends as an engine failure (retryable), as after a crash
        idle: engineIdleBounds(req.slo, req.slo, h.config.timeouts.engineIdle),
      },
      r.ac.signal,
    );
    for await (const ch of it) {
      if (ch.usage) usage = ch.usage;
      if (ch.finishReason) {
        finishReason = ch.finishReason;
        stopReason = ch.stopReason;
      }
      // what the client sees besides text (logprobs, tool calls, reasoning) travels with the chunk, uncoalesced
      const extra = chunkExtras(ch);
      if (ch.text === '' && !extra) {
        if (!ch.finishReason || ch.usage) continue;
      }
      // an engine event may hold k tokens (the engine's stream interval); `offs` says when the engine made
      // each, ms after the first of them, and the last of them arrived now
      const k = ch.tokens ?? 1;
      const offs = ch.tokenOffsetsMs && ch.tokenOffsetsMs.length === k ? ch.tokenOffsetsMs : undefined;
      const span = offs ? offs[k - 1]! - offs[0]! : 0;
      const now = clock.now();
      // token intervals (TBT) on the monotonic high-resolution timer: sub-ms gaps of a time-scaled engine
      const t = performance.now();
      // (never before the previous token: arrival lags differ between events)
      const floor = r.lastTokenMs ?? -Infinity;
      const at = (i: number) => (offs ? Math.max(floor, t - (offs[k - 1]! - offs[i]!)) : t);
      for (let i = 0; i < k; i++) {
        if (r.firstTokenMs === undefined) r.firstTokenMs = now - span;
        else if (r.lastTokenMs !== undefined) {
          const d = at(i) - r.lastTokenMs;
          r.tbtSum += d;
          r.tbtN++;
          r.tbtMax = Math.max(r.tbtMax, d);
          h.sampleTbt(d);
        }
        r.lastTokenMs = at(i);
      }
      completion += k;
      if (r.seq === 0 && TTFT_TRACE) {
        const st = h.admitState.get(req.id);
        h.admitState.delete(req.id);
        appendFileSync(TTFT_TRACE, JSON.stringify({
          id: req.id, type, inst: h.id, arrivalMs: req.arrivalMs, admitMs: q.admittedMs, startMs: r.startedMs, firstMs: r.firstTokenMs,
          running: st?.[0], queued: st?.[1], clock: h.clockMhz(), moves: req.moves ?? 0,
        }) + '\n');
      }
      if (r.seq === 0 && !pend) {
        h.step({ type: 'first_token', id: req.id });
        // the first token goes at once: coalescing never delays TTFT
        const chunk: TokenChunk = { ...base, seq: r.seq++, text: ch.text, tokens: k, ttftMs: Math.max(0, r.firstTokenMs! - req.arrivalMs), ...extra };
        if (offs && k > 1) chunk.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
        h.sampleTtft(chunk.ttftMs!);
        // the engine's last text goes out with the end (finish_reason on the last text chunk, as vLLM's)
        if (ch.finishReason) tail = chunk;
        else publish(chunk);
      } else if (coalesceMs <= 0 || extra || ch.finishReason) {
        flush();
        const chunk: TokenChunk = { ...base, seq: r.seq++, text: ch.text, tokens: k, ...extra };
        if (offs && k > 1) chunk.tokenOffsetsMs = offs.map((o) => o - offs[0]!);
        if (ch.finishReason) tail = chunk;
        else publish(chunk);
      } else {
        if (!pend) {
          pend = { text: '', n: 0, t0: at(0), offsets: [] };
          pend.timer = clock.setTimeout(flush, Math.max(0, coalesceMs - (t - pend.t0)));
        }
        pend.text += ch.text;
        pend.n += k;
        for (let i = 0; i < k; i++) pend.offsets.push(Math.round((at(i) - pend.t0) * 1000) / 1000);
        if (t - pend.t0 >= coalesceMs) flush();
      }
      // the gateway's credit window (relay-pause.ts): past its grant, the engine is not read until a larger one;
      // its grants are read between turns, one at least every RELAY_TURN_CHUNKS events
      if (++events % RELAY_TURN_CHUNKS === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      if (pastCredit(r, sent)) {
        flush();
        await whileNoCredit(h, r, sent);
      }
    }
    flush();
    if (r.ac.signal.aborted) throw r.ac.signal.reason;
    const energyJ = usage?.energyJoules ?? r.energyJ;
    const energySource = usage?.energyJoules !== undefined || h.gpuKind() === 'emulated' ? 'modelled' : 'measured';
    h.bus.publish(req.streamSubject, TokenChunk, {
      ...base,
      ...(tail ?? { seq: r.seq++, text: '', tokens: 0 }),
      done: true,
      finishReason: finishReason === 'length' || finishReason === 'tool_calls' ? finishReason : 'stop',
      stopReason: stopReason ?? null,
      usage: { promptTokens: usage?.promptTokens ?? req.inputTokens, completionTokens: usage?.completionTokens ?? completion, energyJ, energySource },
    });
    h.record(req, type, 'ok', r, usage?.completionTokens ?? completion, energyJ, energySource);
    ok = true;
  } catch (err) {
    flush(); // tokens already produced reach the client before the error chunk, in order
    if (tail) h.bus.publish(req.streamSubject, TokenChunk, tail);
    const aborted = r.ac.signal.aborted;
    // the wire message reaches the client: the engine's own words for a refused request, nothing internal
    // (instance ids, URLs) otherwise; the details go to this log
    if (!aborted) h.log.warn({ id: req.id, err: (err as Error)?.message ?? String(err) }, 'engine call failed');
    const ended: WireError = aborted
      ? toWireError(r.ac.signal.reason)
      : err instanceof EngineHttpError && !err.retryable
        ? { code: 'invalid_request', message: err.engineMessage, retryable: false }
        : { code: 'engine_crashed', message: 'the engine serving this request failed; retry', retryable: true, retryAfterS: h.config.emergency.retryAfterS };
    // a retryable end at or past the request's give-up time (the engine call's deadline fired) is the request's
    // timeout, not retryable, and its record 'timed_out', as the gateway ends a direct leg (src/policy/deadline.ts)
    const { w, outcome } = deadlineEnd(ended, !aborted && err instanceof EngineTimeoutError, req, clock.now());
    h.running.delete(req.id);
    h.finishWithError(req, r.seq, w, w.code === 'cancelled' ? 'cancelled' : outcome, r);
    return;
  } finally {
    const timer = (pend as { timer?: unknown } | null)?.timer;
    if (timer !== undefined) clock.clearTimeout(timer);
    h.ended(req.id, ok);
  }
}
