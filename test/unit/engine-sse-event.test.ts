import { describe, expect, it } from 'vitest';
import { continuousUsage, parseEvent, TextEventScanner } from '../../src/engine/sse-event.ts';
import type { EngineChunk } from '../../src/engine/engine.ts';
import { streamChunk } from '../../actors/gateway/responses.ts';
import { textFrame } from '../../actors/gateway/sse-frames.ts';

/** What streamCompletionBatches makes of a stream's events: with the fast path (scan, else parse and learn) or the full parse only. */
function read(events: string[], chat: boolean, fast: boolean): { out: (EngineChunk | { error: string })[]; scanned: number } {
  const scanner = new TextEventScanner(chat);
  const out: (EngineChunk | { error: string })[] = [];
  let tokenIndex = 0;
  let scanned = 0;
  for (const data of events) {
    try {
      let chunk = fast ? scanner.scan(data, tokenIndex) : undefined;
      if (chunk !== undefined) scanned++;
      else {
        chunk = parseEvent(data, chat, tokenIndex);
        if (fast) scanner.learn(data, chunk);
      }
      if (!chunk) continue;
      tokenIndex += chunk.tokens ?? (chunk.text !== '' ? 1 : 0);
      out.push(chunk);
    } catch (err) {
      out.push({ error: `${(err as Error).name}: ${(err as Error).message}` });
    }
  }
  return { out, scanned };
}

/** the client's SSE bytes for the chunks, as the gateway frames a plain text token (template) or any other (full JSON). */
function frames(chunks: (EngineChunk | { error: string })[], chat: boolean): string {
  const kind = chat ? 'chat' : 'completion';
  const [a, b] = textFrame(kind, 'r1', 1700000000, 'm');
  return chunks.map((c) => ('error' in c ? `error ${c.error}\n` : !c.finishReason && !c.usage && c.text !== '' ? a + JSON.stringify(c.text) + b
    : `data: ${JSON.stringify(streamChunk(kind, 'r1', 1700000000, 'm', { text: c.text }, 0))}\n\n`)).join('');
}

/** The emulator's events (src/engine/emulator): vLLM's field order, its nulls, usage with energy. */
const emu = {
  text: (t: string) => JSON.stringify({ id: 'cmpl-00000001', object: 'text_completion', created: 1796409689, model: 'm', choices: [{ index: 0, text: t, logprobs: null, finish_reason: null, stop_reason: null }] }),
  chat: (t: string) => JSON.stringify({ id: 'chatcmpl-00000002', object: 'chat.completion.chunk', created: 1796409689, model: 'm', choices: [{ index: 0, delta: { content: t }, logprobs: null, finish_reason: null, stop_reason: null }] }),
  role: () => JSON.stringify({ id: 'chatcmpl-00000002', object: 'chat.completion.chunk', created: 1796409689, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }),
  finish: (t: string, chat: boolean) => chat
    ? JSON.stringify({ id: 'chatcmpl-00000002', object: 'chat.completion.chunk', created: 1796409689, model: 'm', choices: [{ index: 0, delta: { content: t }, logprobs: null, finish_reason: 'length', stop_reason: null }] })
    : JSON.stringify({ id: 'cmpl-00000001', object: 'text_completion', created: 1796409689, model: 'm', choices: [{ index: 0, text: t, logprobs: null, finish_reason: 'length', stop_reason: null }] }),
  usage: () => JSON.stringify({ id: 'cmpl-00000001', object: 'text_completion', created: 1796409689, model: 'm', choices: [], usage: { prompt_tokens: 2, total_tokens: 7, completion_tokens: 5, prompt_tokens_details: null, energy_joules: 22.5 } }),
};
/** vLLM 0.6-0.8 chunks: its own id form, `usage: null` on plain chunks with include_usage, no stop_reason on chat deltas. */
const vllm = {
  text: (t: string) => `{"id":"cmpl-5f0e8a","object":"text_completion","created":1733300000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"text":${JSON.stringify(t)},"logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`,
  chat: (t: string) => `{"id":"chatcmpl-5f0e8a","object":"chat.completion.chunk","created":1733300000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":${JSON.stringify(t)}},"logprobs":null,"finish_reason":null}]}`,
};

const TEXTS = [' the', ' power', 'q', 'z', ' é', ' 中文', ' 😀', ' a\nb', ' "quoted"', ' back\\slash', ' tab\t', '', ' \u2028', ' </script>', ' \u0001', ' x'];

/** the literal of `t` with every character escaped as \uXXXX (what another JSON encoder may send). */
const uEscaped = (t: string) => `"${Array.from({ length: t.length }, (_, i) => `\\u${t.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`;

describe('TextEventScanner: the fast path of plain text events', () => {
  it('gives what the full parse gives, event for event, and takes the plain text events of a stream without it', () => {
    for (const [chat, text] of [[false, emu.text], [true, emu.chat], [false, vllm.text], [true, vllm.chat]] as const) {
      const events = [...(chat ? [emu.role()] : []), ...TEXTS.map(text), emu.finish(' end', chat), emu.usage()];
      const slow = read(events, chat, false);
      const fast = read(events, chat, true);
      expect(fast.out).toEqual(slow.out);
      expect(frames(fast.out, chat)).toBe(frames(slow.out, chat));
      // the first plain event is learnt; the later ones without an escape, a quote or a control character are scanned
      const scannable = TEXTS.slice(1).filter((t) => !Array.from({ length: t.length }, (_, i) => t.charCodeAt(i)).some((c) => c === 34 || c === 92 || c < 32)).length;
      expect(fast.scanned).toBe(scannable);
    }
  });

  it('leaves escapes, raw control characters, finishes, usage, logprobs, tool calls and errors to the full parse', () => {
    const s = new TextEventScanner(false);
    s.learn(emu.text(' a'), parseEvent(emu.text(' a'), false, 0));
    expect(s.scan(emu.text(' b'), 1)).toEqual({ text: ' b', tokenIndex: 1 });
    expect(s.scan(emu.text(''), 1)).toBeNull();
    const notPlain = [
      emu.text(' a\nb'), emu.text(' "x"'), emu.text(' \\'), emu.text(' é').replace('é', '\\u00e9'),
      emu.text(' a').replace(' a', ' a\u0001'), emu.finish(' a', false), emu.usage(), '{"error":{"message":"boom"}}',
      emu.text(' a').replace('"logprobs":null', '"logprobs":{"tokens":[" a"]}'),
      `${emu.text(' a').slice(0, -1)},"dynamollm_token_offsets_ms":[0,20]}`,
      emu.text(' a').replace('"text":" a"', '"text":" a","text":" b"'),
    ];
    for (const e of notPlain) expect(s.scan(e, 1)).toBeUndefined();
    const c = new TextEventScanner(true);
    c.learn(emu.chat(' a'), parseEvent(emu.chat(' a'), true, 0));
    expect(c.scan(emu.chat(' b'), 1)).toEqual({ text: ' b', tokenIndex: 1 });
    expect(c.scan(emu.chat(' b').replace('{"content":" b"}', '{"content":" b","tool_calls":[{"index":0}]}'), 1)).toBeUndefined();
    expect(c.scan(emu.chat(' b').replace('{"content":" b"}', '{"content":" b","reasoning_content":"r"}'), 1)).toBeUndefined();
  });

  it('learns the text literal, not a look-alike in the id or model', () => {
    // the model name holds the key and a text (escaped quotes): the literal found must be the choice's
    const tricky = (t: string) => `{"id":"x","model":"\\"text\\":\\" a\\"","choices":[{"index":0,"text":${JSON.stringify(t)},"logprobs":null,"finish_reason":null}],"note":"\\"text\\":\\" a\\""}`;
    const events = [' a', ' b', ' a', 'q', ' c'].map(tricky);
    const fast = read(events, false, true);
    expect(fast.out).toEqual(read(events, false, false).out);
    expect(fast.scanned).toBe(4);
    // a key that ends in `"text` (escaped quote) before the real one: the probe catches a wrong literal
    // a key ending in `"text` (escaped quote) after the choice, with the same value: the first literal found is
    // that key's, and the probe refuses it (taken, it would read the key's value as the text of the next event)
    const keyTrick = (t: string, v: string) => `{"choices":[{"text":${JSON.stringify(t)}}],"a\\"text":${JSON.stringify(v)}}`;
    const ev2 = [keyTrick(' a', ' a'), keyTrick(' a', ' b'), keyTrick(' c', ' d'), keyTrick(' e', ' d')];
    const fast2 = read(ev2, false, true);
    expect(fast2.out).toEqual(read(ev2, false, false).out);
    expect(fast2.out.map((c) => ('text' in c ? c.text : c.error))).toEqual([' a', ' a', ' c', ' e']);
  });

  it('matches the full parse on random texts, sent plain or with every character escaped', () => {
    const alphabet = [' ', 'a', 'Z', '"', '\\', '/', '\n', '\r', '\t', '\u0000', '\u001f', '\u007f', 'é', '中', '😀', '\u2028', 'q', ',', '}', ']', ':'];
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
    for (let round = 0; round < 200; round++) {
      const chat = round % 2 === 1;
      const events: string[] = [];
      for (let i = 0; i < 12; i++) {
        let t = '';
        for (let k = rand(6); k > 0; k--) t += alphabet[rand(alphabet.length)];
        const e = (chat ? emu.chat : emu.text)('\u0002PH');
        const lit = rand(4) === 0 ? uEscaped(t) : rand(9) === 0 ? `"${t}"` : JSON.stringify(t);
        events.push(e.replace(JSON.stringify('\u0002PH'), () => lit));
      }
      const slow = read(events, chat, false);
      const fast = read(events, chat, true);
      expect(fast.out).toEqual(slow.out);
      expect(frames(fast.out, chat)).toBe(frames(slow.out, chat));
    }
  });

  it("continuous usage (vLLM's every event with the usage so far): the text scanned, the usage kept unparsed, the same counts", () => {
    const cu = (t: string, n: number, chat: boolean) => (chat ? vllm.chat(t).slice(0, -1) : vllm.text(t).replace(',"usage":null}', ''))
      + `,"usage":{"prompt_tokens":7,"total_tokens":${7 + n},"completion_tokens":${n},"prompt_tokens_details":null}}`;
    const asParsed = (c: EngineChunk | { error: string }) => {
      if ('error' in c || c.usageJson === undefined) return c;
      const { usageJson, ...rest } = c;
      return { ...rest, usage: continuousUsage(usageJson) };
    };
    for (const chat of [false, true]) {
      const events = TEXTS.map((t, i) => cu(t, 2 * i + 1, chat));
      const slow = read(events, chat, false);
      const fast = read(events, chat, true);
      expect(fast.out.map(asParsed)).toEqual(slow.out.map((c) => ('usage' in c && c.usage ? { ...c, usage: { promptTokens: 7, completionTokens: c.usage.completionTokens } } : c)));
      const scannable = TEXTS.slice(1).filter((t) => !Array.from({ length: t.length }, (_, i) => t.charCodeAt(i)).some((c) => c === 34 || c === 92 || c < 32)).length;
      expect(fast.scanned).toBe(scannable);
      expect(fast.out.filter((c) => 'usageJson' in c).length).toBe(scannable);
    }
    // a member after the usage (an error), or a usage that is not one flat object, goes to the full parse
    const s = new TextEventScanner(false);
    s.learn(cu(' a', 1, false), parseEvent(cu(' a', 1, false), false, 0));
    expect(s.scan(cu(' b', 2, false), 1)).toEqual({ text: ' b', tokenIndex: 1, usageJson: '{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2,"prompt_tokens_details":null}' });
    expect(s.scan(cu(' b', 2, false).replace('null}}', 'null},"error":{"message":"boom"}}'), 1)).toBeUndefined();
    expect(s.scan(cu(' b', 2, false).replace('"prompt_tokens_details":null', '"prompt_tokens_details":{"cached_tokens":0}'), 1)).toBeUndefined();
    expect(continuousUsage('{"prompt_tokens":7,"completion_tokens":-1}')).toBeUndefined();
    expect(continuousUsage('{"prompt_tokens":7,"completion_tokens":3')).toBeUndefined();
  });
});
