/**
 * What the emulated model "writes" for one request, decided before the first step: the output as a list of
 * token pieces, why it ends (finish_reason, stop_reason), and per token its logprobs and tool call delta. Pure
 * and deterministic, so the emulator honours the OpenAI/vLLM parameters tests rely on:
 * - `seed`: the same seed gives the same text, another seed other text (no seed: the server's seed and the
 *   request's number; temperature 0: greedy, the same text for the same prompt);
 * - `stop`: the text is cut at the first stop string (kept with include_stop_str_in_output), finish_reason
 *   'stop' and stop_reason the string; not before min_tokens, as vLLM;
 * - `logprobs` / `top_logprobs`: vLLM's shapes (completions: tokens, token_logprobs, top_logprobs,
 *   text_offset; chat: content[] of {token, logprob, bytes, top_logprobs[]});
 * - `response_format` json_object / json_schema, `guided_json`, `guided_choice`, `structured_outputs` (json, json_object,
 *   choice): valid JSON (the schema's
 *   properties filled by type) or one of the choices;
 * - `tools` with tool_choice 'required' or a named function: one tool call whose arguments follow the tool's
 *   parameter schema (finish_reason 'tool_calls'; 'stop' for a named function, as vLLM);
 * - a server started with a reasoning parser (vLLM's --reasoning-parser): a chat's plain-text output opens with its
 *   reasoning, the first half of its tokens, streamed as `delta.reasoning_content` (`message.reasoning_content`
 *   when not streamed) and the rest as content. `include_reasoning` is not modelled.
 */
import { hash3, outputLength, tokenText, uniform } from './text.ts';
import { MAX_LOGPROBS, tooManyLogprobs } from '../../../protocols/sampling-limits.ts';

export interface GenRequest {
  chat: boolean;
  /** the server's PRNG seed and the request's number (used when the request has no seed). */
  serverSeed: number;
  reqNo: number;
  /** a hash of the prompt (used at temperature 0). */
  promptHash: number;
  maxTokens: number;
  minTokens: number;
  ignoreEos: boolean;
  params: Record<string, unknown>;
  /** the server runs a reasoning parser: a chat's plain-text output opens with reasoning. */
  reasoning?: boolean;
  /** the server's --max-logprobs; default MAX_LOGPROBS, vLLM's 20. */
  maxLogprobs?: number;
}

export interface ToolCallPlan {
  id: string;
  name: string;
}

export interface Plan {
  /** text of each output token. */
  pieces: string[];
  finishReason: 'stop' | 'length' | 'tool_calls';
  stopReason: string | number | null;
  /** the output is the arguments of this tool call (chat). */
  toolCall?: ToolCallPlan;
  /** top alternatives per token when logprobs were asked (0: only the sampled token's); null: none. */
  topLogprobs: number | null;
  /** the leading tokens that are reasoning (delta.reasoning_content), the rest content; none when absent. */
  reasoning?: number;
}

const ALT_WORDS = [' the', ' of', ' and', ' to', ' a', ' in', ' is', ' that', ' for', ' it', ' on', ' with', ' as', ' was', ' at', ' by', ' an', ' be', ' this', ' from'];

export class GenerationError extends RangeError {}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Splits text into token-sized pieces (about 4 characters, as BPE does for JSON). */
function chop(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 4) out.push(text.slice(i, i + 4));
  return out.length ? out : [''];
}

/** A JSON value for a JSON schema, filled from the PRNG (type-correct; enum/const honoured). */
export function valueFor(schema: unknown, rnd: (k: number) => number, depth = 0, k = 1): unknown {
  const s = isObj(schema) ? schema : {};
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[Math.floor(rnd(k) * s.enum.length) % s.enum.length];
  if ('const' in s) return s.const;
  const anyOf = (s.anyOf ?? s.oneOf) as unknown;
  if (Array.isArray(anyOf) && anyOf.length > 0) return valueFor(anyOf[0], rnd, depth + 1, k + 1);
  let type = s.type;
  if (Array.isArray(type)) type = type.find((t) => t !== 'null') ?? 'null';
  if (type === undefined) type = isObj(s.properties) ? 'object' : 'string';
  switch (type) {
    case 'object': {
      const o: Record<string, unknown> = {};
      if (depth > 6) return o;
      const props = isObj(s.properties) ? s.properties : {};
      let j = 0;
      for (const [name, sub] of Object.entries(props)) o[name] = valueFor(sub, rnd, depth + 1, k * 31 + ++j);
      if (Object.keys(props).length === 0 && depth === 0) o.text = valueFor({ type: 'string' }, rnd, depth + 1, k + 7);
      return o;
    }
    case 'array': {
      const min = typeof s.minItems === 'number' ? s.minItems : 1;
      const n = Math.min(Math.max(min, 1), 3);
      return Array.from({ length: n }, (_, i) => valueFor(s.items, rnd, depth + 1, k * 17 + i));
    }
    case 'integer': {
      const lo = typeof s.minimum === 'number' ? Math.ceil(s.minimum) : 0;
      const hi = typeof s.maximum === 'number' ? Math.floor(s.maximum) : lo + 100;
      return lo + Math.floor(rnd(k) * (hi - lo + 1));
    }
    case 'number': {
      const lo = typeof s.minimum === 'number' ? s.minimum : 0;
      const hi = typeof s.maximum === 'number' ? s.maximum : lo + 100;
      return Math.round((lo + rnd(k) * (hi - lo)) * 100) / 100;
    }
    case 'boolean':
      return rnd(k) < 0.5;
    case 'null':
      return null;
    default: {
      const words = 1 + Math.floor(rnd(k) * 4);
      return Array.from({ length: words }, (_, i) => tokenText(k, 7, i).trim()).join(' ');
    }
  }
}

/** Decides the output of one request. Throws GenerationError for a parameter the emulator refuses (as vLLM would). */
export function plan(g: GenRequest): Plan {
  const p = g.params;
  // the stream of draws: the request's seed, else greedy (temperature 0) per prompt, else per request
  const seed = typeof p.seed === 'number' ? p.seed : undefined;
  const greedy = p.temperature === 0 && seed === undefined;
  const a = seed !== undefined ? (seed ^ 0x5bd1e995) >>> 0 : greedy ? g.promptHash : g.serverSeed;
  const b = seed !== undefined ? 0x2545f491 : greedy ? 0x68e31da4 : g.reqNo;
  const rnd = (k: number) => uniform(a, b, k);
  const words = (n: number) => Array.from({ length: n }, (_, i) => tokenText(a, b, i));

  let topLogprobs: number | null = null;
  if (g.chat) {
    if (p.logprobs === true) topLogprobs = typeof p.top_logprobs === 'number' ? p.top_logprobs : 0;
  } else if (typeof p.logprobs === 'number') topLogprobs = p.logprobs;
  const maxLogprobs = g.maxLogprobs ?? MAX_LOGPROBS;
  if (topLogprobs !== null && topLogprobs > maxLogprobs) throw new GenerationError(tooManyLogprobs(topLogprobs, maxLogprobs));

  // tool calls
  const tools = Array.isArray(p.tools) ? (p.tools as unknown[]).filter(isObj) : [];
  const tc = p.tool_choice;
  if (g.chat && tools.length > 0 && (tc === 'required' || isObj(tc))) {
    const fn = (t: Record<string, unknown>) => (isObj(t.function) ? t.function : {});
    let tool: Record<string, unknown> | undefined;
    if (isObj(tc)) {
      const want = isObj(tc.function) ? tc.function.name : undefined;
      tool = tools.find((t) => fn(t).name === want);
      if (!tool) throw new GenerationError(`Tool '${String(want)}' has not been passed in \`tools\`.`);
    } else tool = tools[Math.floor(rnd(3) * tools.length) % tools.length];
    const declared = fn(tool!).name;
    const name = typeof declared === 'string' ? declared : 'function';
    const args = JSON.stringify(valueFor(fn(tool!).parameters ?? { type: 'object', properties: {} }, rnd, 1));
    return finish(chop(args), g, { toolCall: { id: `chatcmpl-tool-${hash3(a, b, 99).toString(16).padStart(8, '0')}`, name }, topLogprobs, done: isObj(tc) ? 'stop' : 'tool_calls' });
  }

  // structured output
  const rf = isObj(p.response_format) ? p.response_format : undefined;
  let schema: unknown;
  if (rf?.type === 'json_object') schema = { type: 'object', properties: {} };
  else if (rf?.type === 'json_schema') {
    const js = isObj(rf.json_schema) ? rf.json_schema : {};
    schema = js.schema ?? js.json_schema ?? { type: 'object', properties: {} };
  } else if (rf !== undefined && rf.type !== 'text') throw new GenerationError(`response_format type '${String(rf.type)}' is not supported by the emulator`);
  // vLLM's structured_outputs, read as the guided_* fields it replaces
  const so = isObj(p.structured_outputs) ? p.structured_outputs : {};
  const json = so.json ?? p.guided_json;
  if (so.json_object === true) schema = { type: 'object', properties: {} };
  if (json !== undefined) schema = typeof json === 'string' ? JSON.parse(json) : json;
  if (schema !== undefined) return finish(chop(JSON.stringify(valueFor(schema, rnd))), g, { topLogprobs, done: 'stop' });
  const choice = so.choice ?? p.guided_choice;
  if (Array.isArray(choice) && choice.length > 0) {
    const c = String(choice[Math.floor(rnd(5) * choice.length) % choice.length]);
    return finish(chop(c), g, { topLogprobs, done: 'stop' });
  }
  for (const k of ['guided_regex', 'guided_grammar', 'structural_tag']) {
    if (p[k] !== undefined) throw new GenerationError(`'${k}' is not supported by the emulator`);
  }
  for (const k of ['regex', 'grammar', 'structural_tag']) {
    if (so[k] !== undefined) throw new GenerationError(`'structured_outputs.${k}' is not supported by the emulator`);
  }

  // plain text: EOS after a geometric number of tokens (or exactly max_tokens with ignore_eos), then stop strings
  const n = outputLength(a, b, g.maxTokens, g.minTokens, g.ignoreEos);
  const pieces = words(n);
  let finishReason: Plan['finishReason'] = n >= g.maxTokens ? 'length' : 'stop';
  let stopReason: string | null = null;
  const stops = typeof p.stop === 'string' ? [p.stop] : Array.isArray(p.stop) ? (p.stop as string[]).filter((s) => s.length > 0) : [];
  if (stops.length > 0) {
    let text = '';
    for (let i = 0; i < pieces.length; i++) {
      text += pieces[i];
      if (i + 1 < g.minTokens) continue;
      let best: { at: number; s: string } | null = null;
      for (const s of stops) {
        const at = text.indexOf(s);
        if (at >= 0 && (!best || at < best.at)) best = { at, s };
      }
      if (best) {
        // the output ends with this token; its text (and that of earlier tokens the stop string began in) is
        // cut where the stop string starts (or ends, with include_stop_str_in_output)
        const keep = best.at + (p.include_stop_str_in_output === true ? best.s.length : 0);
        pieces.length = i + 1;
        let start = 0;
        for (let j = 0; j <= i; j++) {
          const end = start + pieces[j]!.length;
          pieces[j] = pieces[j]!.slice(0, Math.max(0, Math.min(end, keep) - start));
          start = end;
        }
        finishReason = 'stop';
        stopReason = best.s;
        break;
      }
    }
  }
  const reasoning = g.chat && g.reasoning ? Math.floor(pieces.length / 2) : 0;
  return { pieces, finishReason, stopReason, topLogprobs, ...(reasoning > 0 ? { reasoning } : {}) };
}

/** The chat delta of output tokens [from, to) as vLLM streams it: a piece of the tool call, reasoning, content. */
export function chatDelta(pl: Plan, from: number, to: number): Record<string, unknown> {
  const text = pl.pieces.slice(from, to).join('');
  if (pl.toolCall) {
    const call: Record<string, unknown> = { index: 0 };
    if (from === 0) Object.assign(call, { id: pl.toolCall.id, type: 'function', function: { name: pl.toolCall.name, arguments: text } });
    else call.function = { arguments: text };
    return { tool_calls: [call] };
  }
  const r = pl.reasoning ?? 0;
  if (from >= r) return { content: text };
  const d: Record<string, unknown> = { reasoning_content: pl.pieces.slice(from, Math.min(to, r)).join('') };
  if (to > r) d.content = pl.pieces.slice(r, to).join('');
  return d;
}

/** The assistant message of a whole chat output (not streamed), as vLLM answers it. */
export function chatMessage(pl: Plan): Record<string, unknown> {
  const text = pl.pieces.join('');
  if (pl.toolCall) return { role: 'assistant', content: null, tool_calls: [{ id: pl.toolCall.id, type: 'function', function: { name: pl.toolCall.name, arguments: text } }] };
  const r = pl.reasoning ?? 0;
  if (r === 0) return { role: 'assistant', content: text, tool_calls: [] };
  return { role: 'assistant', reasoning_content: pl.pieces.slice(0, r).join(''), content: pl.pieces.slice(r).join(''), tool_calls: [] };
}

function finish(pieces: string[], g: GenRequest, o: { toolCall?: ToolCallPlan; topLogprobs: number | null; done: Plan['finishReason'] }): Plan {
  if (pieces.length > g.maxTokens) return { pieces: pieces.slice(0, g.maxTokens), finishReason: 'length', stopReason: null, toolCall: o.toolCall, topLogprobs: o.topLogprobs };
  return { pieces, finishReason: o.done, stopReason: null, toolCall: o.toolCall, topLogprobs: o.topLogprobs };
}

/** The logprob of output token `i` and its top alternatives (deterministic; the sampled token ranks first). */
function draws(a: number, i: number, piece: string, k: number): { lp: number; alts: { token: string; logprob: number }[] } {
  const lp = -Math.round(uniform(a, i, 11) * 2000) / 1000;
  const alts: { token: string; logprob: number }[] = [];
  let prev = lp;
  for (let j = 0; alts.length < k && j < ALT_WORDS.length * 2; j++) {
    const w = ALT_WORDS[(hash3(a, i, j) + j) % ALT_WORDS.length]!;
    if (w === piece || alts.some((x) => x.token === w)) continue;
    prev = Math.round((prev - 0.1 - uniform(a, i, 20 + j) * 1.5) * 1000) / 1000;
    alts.push({ token: w, logprob: prev });
  }
  return { lp, alts };
}

/** Logprobs of output tokens [from, to) in vLLM's shape. `offset` is the text offset of token `from`. */
export function logprobsOf(plan: Plan, chat: boolean, key: number, from: number, to: number, offset: number): Record<string, unknown> | null {
  const k = plan.topLogprobs;
  if (k === null) return null;
  if (chat) {
    const content = [];
    for (let i = from; i < to; i++) {
      const piece = plan.pieces[i]!;
      const d = draws(key, i, piece, k);
      const bytes = (t: string) => [...Buffer.from(t, 'utf8')];
      content.push({ token: piece, logprob: d.lp, bytes: bytes(piece), top_logprobs: [{ token: piece, logprob: d.lp, bytes: bytes(piece) }, ...d.alts.map((x) => ({ ...x, bytes: bytes(x.token) }))].slice(0, k) });
    }
    return { content };
  }
  const tokens: string[] = [];
  const tokenLogprobs: number[] = [];
  const top: Record<string, number>[] = [];
  const textOffset: number[] = [];
  let off = offset;
  for (let i = from; i < to; i++) {
    const piece = plan.pieces[i]!;
    const d = draws(key, i, piece, k);
    tokens.push(piece);
    tokenLogprobs.push(d.lp);
    top.push(Object.fromEntries([[piece, d.lp], ...d.alts.slice(0, k).map((x) => [x.token, x.logprob] as const)]));
    textOffset.push(off);
    off += piece.length;
  }
  return { text_offset: textOffset, token_logprobs: tokenLogprobs, tokens, top_logprobs: top };
}
