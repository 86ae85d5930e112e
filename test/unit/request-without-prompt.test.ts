/**
 * A direct request as the gateway sends it to an instance (its admission, its credited report): without its prompt,
 * which the gateway sends the engine itself, and with the prompt's form (InferenceRequest.promptForm;
 * docs/DATAPATH.md "What the instance keeps of a request"). The instance's drain migration reads that form
 * (policy continuable) as it reads the prompt itself: a text or chat prompt can be continued, a token-id one cannot.
 */
import { describe, expect, it } from 'vitest';
import { withoutPrompt } from '../../actors/gateway/router.ts';
import { InferenceRequest as InferenceRequestCodec, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { continuable } from '../../src/policy/drain-migration.ts';

const base: InferenceRequest = {
  v: 1, id: 'r1', model: 'm', kind: 'completion', inputTokens: 2000, maxTokens: 200, arrivalMs: 1, giveUpAtMs: 2,
  streamSubject: subjects.stream('r1'), direct: true, type: 'LS', slo: { ttftMs: 1000, tbtMs: 100 }, ttftDeadlineMs: 1001, pool: 'p',
};
const ids = { ...base, prompt: Array.from({ length: 2000 }, (_, i) => 100 + i) };
const text = { ...base, prompt: 'Tell me about energy efficient inference.' };
const chat = { ...base, kind: 'chat' as const, messages: [{ role: 'user' as const, content: 'hi' }] };

describe('a direct request sent without its prompt', () => {
  it('leaves the prompt out, names its form, keeps every other field', () => {
    for (const [req, form] of [[ids, 'ids'], [text, 'text'], [chat, 'chat']] as const) {
      const lean = withoutPrompt(req);
      expect(lean.prompt).toBeUndefined();
      expect(lean.messages).toBeUndefined();
      expect(lean.promptForm).toBe(form);
      const { prompt: _p, messages: _m, promptForm: _f, ...rest } = lean;
      const { prompt: _p2, messages: _m2, ...want } = req as InferenceRequest;
      expect(rest).toEqual(want);
      // a valid message, a fraction of the bytes for a 2,000-id prompt
      expect(InferenceRequestCodec.decode(InferenceRequestCodec.encode(lean))).toEqual(lean);
      // the same bytes as the request's other members in their order, then the form (the members copied one by one)
      const { prompt: _p3, messages: _m3, ...others } = req as InferenceRequest;
      expect(Object.keys(lean)).toEqual([...Object.keys(others), 'promptForm']);
      expect(Buffer.from(InferenceRequestCodec.encode(lean))).toEqual(Buffer.from(InferenceRequestCodec.encode({ ...others, promptForm: form })));
    }
    expect(InferenceRequestCodec.encode(withoutPrompt(ids)).length * 10).toBeLessThan(InferenceRequestCodec.encode(ids).length);
    // the request as the client sent it is left as it was
    expect(ids.prompt).toHaveLength(2000);
  });

  it('is continuable on a drain exactly when the whole request is', () => {
    for (const req of [ids, text, chat, { ...text, params: { echo: true } }, { ...ids, params: { echo: true } }] as InferenceRequest[]) {
      expect(continuable(withoutPrompt(req)), JSON.stringify(withoutPrompt(req)).slice(0, 200)).toBe(continuable(req));
    }
    expect(continuable(withoutPrompt(ids))).toBe(false);
    expect(continuable(withoutPrompt(text))).toBe(true);
    expect(continuable(withoutPrompt(chat))).toBe(true);
  });
});
