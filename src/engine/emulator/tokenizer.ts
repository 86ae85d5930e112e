/**
 * The emulator's tokenizer: Llama's real SentencePiece BPE (llama-tokenizer-js ships the 32000-token vocabulary
 * and merges, so it runs offline), with a Llama-2 chat template for chat requests. Served as vLLM's /tokenize and
 * /detokenize, and used for usage.prompt_tokens, so both agree for the same prompt.
 *
 * Speed: the library's BPE is quadratic in the length of the text it merges, so text is cut where whitespace
 * follows a non-space character (SentencePiece never merges across such a boundary: every piece with '▁' has it
 * first) and each piece's ids are cached. The cut gives the same ids as encoding the whole text
 * (test/unit/emulator-tokenizer.test.ts checks it on prose, code and Unicode).
 */
import llama from 'llama-tokenizer-js';

export const BOS_ID = 1;
export const EOS_ID = 2;
export const VOCAB_SIZE = 32000;
const CACHE_MAX = 100_000;
const cache = new Map<string, number[]>();

function piece(text: string, first: boolean): number[] {
  const key = (first ? '0' : '1') + text;
  let ids = cache.get(key);
  if (!ids) {
    ids = llama.encode(text, false, first, false);
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(key, ids);
  }
  return ids;
}

/** Token ids of `text` (a leading space is added, as SentencePiece does; BOS first when addBos). */
export function encodeText(text: string, addBos = true): number[] {
  const out: number[] = addBos ? [BOS_ID] : [];
  if (text.length === 0) return out;
  const pieces = text.split(/(?<=\S)(?=\s)/);
  for (let i = 0; i < pieces.length; i++) for (const id of piece(pieces[i]!, i === 0)) out.push(id);
  return out;
}

export function decodeTokens(ids: readonly number[]): string {
  const bad = ids.find((t) => !(Number.isInteger(t) && t >= 0 && t < VOCAB_SIZE));
  if (bad !== undefined) throw new RangeError(`token id ${bad} is outside the vocabulary (0..${VOCAB_SIZE - 1})`);
  return llama.decode(ids.filter((t) => t !== BOS_ID && t !== EOS_ID), false, true);
}

/** The string form of each token id (vLLM's return_token_strs). */
export function tokenStrings(ids: readonly number[]): string[] {
  return ids.map((t) => llama.vocabById[t] ?? '');
}

export interface TemplateMessage {
  role: string;
  content?: unknown;
  tool_calls?: unknown;
}

/** The text of a message's content: a string, or its text parts (or plain-string parts) joined (RangeError for other part types). */
export function contentText(content: unknown, i = 0): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  if (Array.isArray(content)) {
    return content
      .map((p: unknown, j) => {
        if (typeof p === 'string') return p; // a plain-string part (vLLM: its text)
        const part = p as { type?: unknown; text?: unknown };
        if (part?.type !== 'text' || typeof part.text !== 'string') throw new RangeError(`messages[${i}].content[${j}]: the emulator takes text parts only`);
        return part.text;
      })
      .join('');
  }
  throw new RangeError(`messages[${i}].content must be a string, an array of parts, or null`);
}

/**
 * Token ids of a chat under Llama 2's chat template: `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]
 * {assistant} </s>` per turn. Tool definitions join the system text as JSON; tool results and an assistant's
 * tool calls are rendered as text in their turns, so they count as the model would see them.
 */
export function encodeChat(messages: readonly TemplateMessage[], opts: { tools?: unknown[]; continueFinalMessage?: boolean } = {}): number[] {
  let system = messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m, i) => contentText(m.content, i)).join('\n');
  if (opts.tools && opts.tools.length > 0) system = (system ? system + '\n\n' : '') + 'Tools: ' + JSON.stringify(opts.tools);
  const out: number[] = [];
  let user: string[] = [];
  let firstUser = true;
  const flushUser = () => {
    let text = user.join('\n').trim();
    if (firstUser && system) text = `<<SYS>>\n${system}\n<</SYS>>\n\n${text}`;
    firstUser = false;
    out.push(...encodeText(`[INST] ${text} [/INST]`, true));
    user = [];
  };
  messages.forEach((m, i) => {
    if (m.role === 'system' || m.role === 'developer') return;
    if (m.role === 'user') user.push(contentText(m.content, i));
    else if (m.role === 'tool') user.push(`[TOOL_RESULT] ${contentText(m.content, i)}`);
    else if (m.role === 'assistant') {
      if (user.length > 0 || firstUser) flushUser();
      let text = contentText(m.content, i);
      if (m.tool_calls !== undefined) text += (text ? ' ' : '') + JSON.stringify(m.tool_calls);
      const last = i === messages.length - 1;
      out.push(...encodeText(text.trim(), false));
      if (!(last && opts.continueFinalMessage)) out.push(EOS_ID);
    }
  });
  if (user.length > 0 || out.length === 0) flushUser();
  return out;
}
