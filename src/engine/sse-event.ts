/**
 * An engine's SSE event (vLLM's or the emulator's completion and chat chunks) as an EngineChunk: `parseEvent`
 * reads any event with JSON.parse; `TextEventScanner` is the fast path of a stream's plain text events.
 *
 * The fast path: a plain text event (one token's text and nothing else: no
 * finish, usage, logprobs, tool calls, reasoning or token offsets) taken without JSON.parse. Within one
 * stream vLLM's and the emulator's plain text events differ only in the text (same id, created, model,
 * choice index and trailing nulls), so the first plain text event the full parse (`parseEvent`) reads is
 * learnt as a skeleton: the bytes before its text literal and the bytes after it. A later event that is that
 * prefix, a string body without a quote, backslash or control character, and that suffix is, byte for byte,
 * the learnt event with another text: its parse is the learnt chunk with that text, which is what `scan`
 * returns. Anything else (an escape, a finish, an error, another shape) is left to the full parse.
 *
 * A stream asked with vLLM's `stream_options.continuous_usage_stats` has the usage so far as every event's last member
 * (`"usage":{"prompt_tokens":..,"total_tokens":..,"completion_tokens":..}`), which differs from event to event: such a
 * skeleton is the bytes before the text and those between the text and the usage's value (`mid`). The text of a
 * scanned event ends at its first quote; the usage is kept unparsed (EngineChunk.usageJson), for the reader that
 * needs the count (continuousUsage): the last one of a stream, at its break, not every one.
 */
import type { EngineChunk, EngineUsage } from './engine.ts';
import { EngineStreamError } from './errors.ts';

/** skeletons learnt per stream at most (a stream whose plain events keep changing shape stays on the full parse). */
const MAX_LEARN = 4;

export class TextEventScanner {
  private prefix: string | undefined;
  private suffix = '';
  /** a continuous-usage skeleton: the bytes from the text's closing quote to the usage's value. */
  private mid: string | undefined;
  private learnt = 0;

  constructor(private readonly chat: boolean) {}

  /**
   * The chunk of `data` when it is a plain text event of the learnt shape (null for an empty text, as
   * parseEvent gives); undefined when the event is not one (read it with parseEvent, then `learn`).
   */
  scan(data: string, tokenIndex: number): EngineChunk | null | undefined {
    const p = this.prefix;
    if (p === undefined) return undefined;
    if (this.mid !== undefined) return this.scanUsage(data, tokenIndex, p, this.mid);
    const end = data.length - this.suffix.length;
    // (slice and === compare flat strings at memcmp speed; startsWith goes character by character)
    if (end < p.length || data.slice(0, p.length) !== p || data.slice(end) !== this.suffix) return undefined;
    for (let i = p.length; i < end; i++) {
      const c = data.charCodeAt(i);
      // '"' would end the string early, '\' starts an escape, a raw control character is not JSON
      if (c === 34 || c === 92 || c < 32) return undefined;
    }
    if (end === p.length) return null;
    return { text: data.slice(p.length, end), tokenIndex };
  }

  private scanUsage(data: string, tokenIndex: number, p: string, mid: string): EngineChunk | undefined {
    if (data.length < p.length + mid.length + 1 || data.slice(0, p.length) !== p || data.charCodeAt(data.length - 1) !== 125) return undefined;
    let i = p.length;
    for (; i < data.length; i++) {
      const c = data.charCodeAt(i);
      if (c === 34) break;
      if (c === 92 || c < 32) return undefined;
    }
    const u = i + mid.length;
    // the usage is the event's last member, one flat object: its first '}' closes it, the next one the event
    if (data.slice(i, u) !== mid || data.charCodeAt(u) !== 123 || data.indexOf('}', u) !== data.length - 2) return undefined;
    return { text: data.slice(p.length, i), tokenIndex, usageJson: data.slice(u, data.length - 1) };
  }

  /** The learnt skeleton (the native data plane's: actors/gateway/data-plane.ts), undefined before one is learnt. */
  skeleton(): { prefix: string; suffix?: string; mid?: string } | undefined {
    if (this.prefix === undefined) return undefined;
    return this.mid !== undefined ? { prefix: this.prefix, mid: this.mid } : { prefix: this.prefix, suffix: this.suffix };
  }

  /**
   * After the full parse of `data` gave `chunk`: a plain text event becomes the skeleton, once a probe (the
   * same bytes with another text) parses to that other text and nothing else, so the literal found is the
   * choice's text and not a look-alike elsewhere in the event.
   */
  learn(data: string, chunk: EngineChunk | null): void {
    if (!chunk || chunk.text === '' || this.learnt >= MAX_LEARN) return;
    if (chunk.usage && plain(chunk, true) && chunk.usage.energyJoules === undefined) return this.learnUsage(data, chunk);
    if (!plain(chunk)) return;
    this.learnt++;
    const lit = JSON.stringify(chunk.text);
    const at = data.lastIndexOf((this.chat ? '"content":' : '"text":') + lit);
    if (at < 0) return;
    const from = data.indexOf(':', at) + 2;
    const prefix = data.slice(0, from);
    const suffix = data.slice(from + lit.length - 2);
    const probe = chunk.text === 'q' ? 'z' : 'q';
    let got: EngineChunk | null;
    try {
      got = parseEvent(prefix + probe + suffix, this.chat, chunk.tokenIndex);
    } catch {
      return;
    }
    if (!got || got.text !== probe || !plain(got)) return;
    this.prefix = prefix;
    this.suffix = suffix;
  }

  /** learn, for an event whose last member is its usage so far (continuous_usage_stats). */
  private learnUsage(data: string, chunk: EngineChunk): void {
    this.learnt++;
    const lit = JSON.stringify(chunk.text);
    const at = data.indexOf((this.chat ? '"content":' : '"text":') + lit);
    const u = data.lastIndexOf('"usage":');
    if (at < 0 || u < 0) return;
    const from = data.indexOf(':', at) + 2;
    const close = from + lit.length - 2;
    if (u < close || data.charCodeAt(data.length - 1) !== 125) return;
    const prefix = data.slice(0, from);
    const mid = data.slice(close, u + 8);
    const probe = chunk.text === 'q' ? 'z' : 'q';
    let got: EngineChunk | null;
    try {
      got = parseEvent(prefix + probe + data.slice(close), this.chat, chunk.tokenIndex);
    } catch {
      return;
    }
    const json = data.slice(u + 8, data.length - 1);
    const parsed = continuousUsage(json);
    if (!got || got.text !== probe || !plain(got, true) || !parsed || got.usage?.completionTokens !== parsed.completionTokens) return;
    this.prefix = prefix;
    this.mid = mid;
  }
}

/** a chunk with nothing but its text (and its usage so far, `usage`). */
function plain(c: EngineChunk, usage = false): boolean {
  for (const k in c) if (k !== 'text' && k !== 'tokenIndex' && !(usage && k === 'usage')) return false;
  return true;
}

/** The usage so far of a continuous-usage event (EngineChunk.usageJson), parsed; undefined when it is not one. */
export function continuousUsage(json: string): EngineUsage | undefined {
  let u: unknown;
  try {
    u = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isRecord(u)) return undefined;
  const { prompt_tokens: p, completion_tokens: c } = u;
  const count = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;
  return count(p) && count(c) ? { promptTokens: p, completionTokens: c } : undefined;
}

interface StreamChunkJson {
  choices?: {
    text?: string;
    delta?: { content?: string | null; tool_calls?: unknown; reasoning_content?: string | null };
    finish_reason?: string | null;
    stop_reason?: string | number | null;
    logprobs?: unknown;
  }[];
  usage?: { prompt_tokens: number; completion_tokens: number; energy_joules?: number } | null;
  error?: unknown;
  /** the emulator's non-standard per-token engine times of a multi-token event (see EngineChunk). */
  dynamollm_token_offsets_ms?: unknown;
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** One SSE event's JSON -> EngineChunk; null for an event that carries nothing (the chat role delta). */
export function parseEvent(data: string, chat: boolean, tokenIndex: number): EngineChunk | null {
  let obj: StreamChunkJson;
  try {
    obj = JSON.parse(data) as StreamChunkJson;
  } catch (cause) {
    throw new EngineStreamError(`engine sent a non-JSON SSE event: ${data.slice(0, 100)}`, { cause });
  }
  if (obj.error) throw new EngineStreamError(`engine reported an error mid-stream: ${JSON.stringify(obj.error).slice(0, 300)}`);
  const choice = obj.choices?.[0];
  const text = (chat ? choice?.delta?.content : choice?.text) ?? '';
  const finishReason = choice?.finish_reason ?? undefined;
  const logprobs = isRecord(choice?.logprobs) ? choice.logprobs : undefined;
  const tc = chat ? choice?.delta?.tool_calls : undefined;
  const toolCalls = Array.isArray(tc) && tc.length > 0 && tc.every(isRecord) ? (tc as Record<string, unknown>[]) : undefined;
  const reasoning = chat && typeof choice?.delta?.reasoning_content === 'string' ? choice.delta.reasoning_content : undefined;
  const u = obj.usage;
  if (text === '' && !finishReason && !u && !toolCalls && !logprobs && reasoning === undefined) return null;
  const chunk: EngineChunk = { text, tokenIndex };
  if (finishReason) {
    chunk.finishReason = finishReason;
    const sr = choice?.stop_reason;
    chunk.stopReason = typeof sr === 'string' || typeof sr === 'number' ? sr : null;
  }
  if (logprobs) chunk.logprobs = logprobs;
  if (toolCalls) chunk.toolCalls = toolCalls;
  if (reasoning !== undefined) chunk.reasoning = reasoning;
  if (u) {
    chunk.usage = { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
    if (typeof u.energy_joules === 'number') chunk.usage.energyJoules = u.energy_joules;
  }
  const offs = obj.dynamollm_token_offsets_ms;
  if ((text !== '' || toolCalls || reasoning) && Array.isArray(offs) && offs.length > 1 && offs.every((x) => typeof x === 'number' && x >= 0)) {
    chunk.tokens = offs.length;
    chunk.tokenOffsetsMs = offs as number[];
  }
  return chunk;
}
