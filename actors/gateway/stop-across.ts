/**
 * A stop string that completes across a migration's leg boundary (docs/DATAPATH.md "Request migration"). vLLM matches
 * the request's stop strings in the detokenized output of one request (its StopChecker over the incremental
 * detokenizer's text): a continuation leg's engine sees only its own output, so a stop string whose start the client
 * was sent by an earlier leg ("...EN") and whose end the continuation writes ("D...") is matched by no engine. The
 * gateway watches for it: the end of the text sent before the leg (the longest stop string's length less one
 * characters, all a stop string ending in the leg can start in) joined with the leg's first characters. A match ends
 * the stream there, as vLLM ends a request at a stop string: finish_reason 'stop', stop_reason the string, the output cut
 * where the stop string starts (where it ends with include_stop_str_in_output). The part of it an earlier leg sent is
 * the client's already; the leg's part and everything after it are not sent. vLLM holds back the last characters of a
 * stream that could start a stop string (its stop_buffer_length) while excluding them from the output, so a real
 * engine's earlier leg sent less of one than the emulator's; the rule is the same. A relayed leg's chunks (the instance
 * publishes its engine's output over NATS) are watched so too (RelayedCrossStop), its leg then cancelled at its instance.
 */
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';

/** The watch of one continuation leg: what it has read of the leg's text while a stop string may start in `tail`. */
export interface CrossStop {
  /** the end of the text sent before this leg that a stop string completing in the leg may start in. */
  readonly tail: string;
  /** the leg's text read so far (at most the longest stop string's length less one characters are needed). */
  seen: string;
  readonly stops: readonly string[];
  readonly include: boolean;
  /** tokens the leg must write before a stop string counts (the request's min_tokens less the tokens sent before it). */
  readonly minLeft: number;
  /** the leg's text (and its tokens) held back while it may be the start of a stop string the client must not get. */
  held: string;
  heldTokens: number;
  tokens: number;
}

/** The request's stop strings (vLLM's `stop`, a string or a list; empty ones ignored). */
export function stopStrings(params: InferenceRequest['params']): string[] {
  const s = params?.stop;
  if (typeof s === 'string') return s.length > 0 ? [s] : [];
  return Array.isArray(s) ? s.filter((x) => x.length > 0) : [];
}

/** The watch of a leg whose stream has sent `sent` tokens and `text` before it; undefined when no stop string can cross into it. */
export function crossStopOf(req: InferenceRequest, sent: number, text: string): CrossStop | undefined {
  if (text === '') return undefined;
  const stops = stopStrings(req.params);
  let reach = 0;
  for (const s of stops) reach = Math.max(reach, s.length - 1);
  if (reach === 0) return undefined;
  return { tail: text.slice(-reach), seen: '', stops, include: req.params?.include_stop_str_in_output === true, minLeft: (req.minTokens ?? 0) - sent, held: '', heldTokens: 0, tokens: 0 };
}

/**
 * The leg's next text `piece` read by watch `w`: a stop string that starts in the tail and completes in it gives how
 * many characters of the text not yet given to the client (held, then the piece) the client gets (`keep`) and the
 * string (the one that completes first; in the request's order on a tie, as vLLM checks them); 'open' while the text
 * read ends in the start of such a stop string; 'past' once none can complete any more (the watch ends).
 */
export function crossStopIn(w: CrossStop, piece: string): { keep: number; stop: string } | 'open' | 'past' {
  const before = w.seen.length - w.held.length;
  w.seen += piece;
  const hay = w.tail + w.seen;
  const t = w.tail.length;
  const from = t + w.seen.length - piece.length;
  let best: { at: number; s: string } | undefined;
  let open = false;
  for (const s of w.stops) {
    // the first occurrence that ends in this piece (earlier ones ended before it) and starts in the tail
    const at = hay.indexOf(s, Math.max(0, from - s.length + 1));
    if (at >= 0 && at < t && (!best || at + s.length < best.at + best.s.length)) best = { at, s };
    for (let i = Math.max(0, hay.length - s.length + 1); i < t && !open; i++) open = s.startsWith(hay.slice(i));
  }
  if (best) return { keep: Math.max(0, best.at + (w.include ? best.s.length : 0) - t - before), stop: best.s };
  return open ? 'open' : 'past';
}

/** An engine event, as the watch reads it. */
interface Piece { text: string; tokens?: number; finishReason?: string; stopReason?: string | number | null }

/**
 * What the client gets of the leg's event `ch` under watch `w`: 'hold' (nothing yet: its text may start a stop string
 * the client must not get, as vLLM holds back such text unless include_stop_str_in_output); else the event, with the
 * text held before it, cut at a stop string that completed (`stopped`: the stream ends with it, finish_reason 'stop'),
 * and whether the watch ended. A stop string that completes before min_tokens does not count, as in vLLM.
 */
export function crossStopEvent<C extends Piece>(w: CrossStop, ch: C): { ch: C; stopped: boolean; ended: boolean } | 'hold' {
  const k = ch.tokens ?? (ch.text !== '' ? 1 : 0);
  w.tokens += k;
  const m = crossStopIn(w, ch.text);
  if (m === 'open' && !ch.finishReason) {
    if (w.include) return { ch, stopped: false, ended: false };
    w.held += ch.text;
    w.heldTokens += k;
    return 'hold';
  }
  const text = w.held + ch.text, tokens = w.heldTokens + k;
  const release = { ...ch, text, ...(tokens !== k ? { tokens } : {}) };
  if (typeof m === 'string' || w.tokens < w.minLeft) return { ch: w.held === '' ? ch : release, stopped: false, ended: true };
  return { ch: { ...release, text: text.slice(0, m.keep), tokens: Math.max(1, tokens), finishReason: 'stop', stopReason: m.stop }, stopped: true, ended: true };
}

/**
 * The watch over a stream's relayed legs (each instance publishes its engine's output on the leg's stream subject): on
 * a continuation's first chunk a watch begins (crossStopOf), and each chunk is read by it (crossStopEvent).
 */
export class RelayedCrossStop {
  #w: CrossStop | undefined;
  /** `st`: the stream's tokens and text sent so far and its legs before the current one; `usage`: the stream's usage. */
  constructor(private readonly req: InferenceRequest, private readonly st: { readonly sent: number; readonly text: string; readonly legs: number }, private readonly usage: () => NonNullable<TokenChunk['usage']>) {}

  /**
   * What the client gets of the leg's chunk `c` (`first`: the leg's first): 'hold', or the chunk (`stopped`: a stop
   * string ended the stream at it, so it is the stream's last, done with finish_reason 'stop' and the stream's usage).
   */
  take(c: TokenChunk, first: boolean): 'hold' | { c: TokenChunk; stopped: boolean } {
    if (first) this.#w = this.st.legs > 0 ? crossStopOf(this.req, this.st.sent, this.st.text) : undefined;
    const x = this.#w && !c.error && (c.text !== '' || c.finishReason) ? crossStopEvent(this.#w, c) : undefined;
    if (x === 'hold') return x;
    if (!x) return { c, stopped: false };
    if (x.ended) this.#w = undefined;
    return { c: x.stopped ? { ...x.ch, done: true, usage: this.usage() } : x.ch, stopped: x.stopped };
  }
}
