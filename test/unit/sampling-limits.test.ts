/**
 * vLLM's ranges of the sampling parameters (protocols/sampling-limits.ts): the gateway refuses a value outside them
 * with vLLM's 400 naming the parameter before the request is classified or dispatched, the emulator answers the
 * same 400, and the wire schema refuses it too (the logprobs bound, each engine's own --max-logprobs, once the prompt is
 * counted: gateway-max-logprobs.test.ts); the bounds themselves (top_k -1 and 0, top_p 1, penalties +-2, int64 seeds,
 * 20 logprobs) pass.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpError, parseOpenAiRequest } from '../../actors/gateway/openai.ts';
import { engineLimitsError } from '../../actors/gateway/tokenize-routes.ts';
import { PromptCounter, localTokenizer } from '../../actors/gateway/tokens.ts';
import { InferenceRequest } from '../../protocols/messages.ts';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';

type Kind = 'chat' | 'completion';
const MODEL = 'llama2-70b';
const baseOf = (kind: Kind) => (kind === 'chat' ? { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 } : { model: MODEL, prompt: 'x', max_tokens: 2 });

/** out of vLLM's range: [api, extra fields, the parameter the 400 names, a piece of vLLM's message] */
const REFUSED: [Kind, Record<string, unknown>, string, string][] = [
  ['completion', { top_p: 5 }, 'top_p', 'top_p must be in (0, 1], got 5.'],
  ['chat', { top_p: 0 }, 'top_p', 'top_p must be in (0, 1]'],
  ['completion', { top_k: -7 }, 'top_k', 'top_k must be 0 (disable), or at least 1, got -7.'],
  ['chat', { top_k: 2.5 }, 'top_k', 'top_k must be 0 (disable), or at least 1'],
  ['chat', { presence_penalty: 99 }, 'presence_penalty', 'presence_penalty must be in [-2, 2], got 99.'],
  ['completion', { frequency_penalty: -2.5 }, 'frequency_penalty', 'frequency_penalty must be in [-2, 2]'],
  ['completion', { min_p: 3 }, 'min_p', 'min_p must be in [0, 1], got 3.'],
  ['chat', { repetition_penalty: -1 }, 'repetition_penalty', 'repetition_penalty must be greater than zero, got -1.'],
  ['completion', { repetition_penalty: 0 }, 'repetition_penalty', 'repetition_penalty must be greater than zero'],
  ['chat', { temperature: -0.5 }, 'temperature', 'temperature must be non-negative, got -0.5.'],
  ['completion', { seed: 1e30 }, 'seed', 'seed must be a signed 64-bit integer'],
  ['chat', { seed: -1e19 }, 'seed', 'seed must be a signed 64-bit integer'],
  ['completion', { logprobs: 999 }, 'logprobs', 'Requested sample logprobs of 999, which is greater than max allowed: 20'],
  ['completion', { logprobs: -1 }, 'logprobs', '`logprobs` must be a positive value.'],
  ['chat', { logprobs: true, top_logprobs: 500 }, 'top_logprobs', 'Requested sample logprobs of 500, which is greater than max allowed: 20'],
  ['chat', { logprobs: true, top_logprobs: -2 }, 'top_logprobs', '`top_logprobs` must be a positive value or -1.'],
  ['chat', { logprobs: true, top_logprobs: -1 }, 'top_logprobs', 'greater than max allowed: 20'],
  ['chat', { top_logprobs: 3 }, 'top_logprobs', 'when using `top_logprobs`, `logprobs` must be set to true.'],
  ['completion', { stop: ['END', ''] }, 'stop', 'stop cannot contain an empty string.'],
  ['chat', { stop: '' }, 'stop', 'stop cannot contain an empty string.'],
];
/** the bounds themselves: vLLM serves them */
const ACCEPTED: [Kind, Record<string, unknown>][] = [
  ['completion', { top_p: 1, top_k: -1, min_p: 0, presence_penalty: -2, frequency_penalty: 2, repetition_penalty: 0.01, seed: -(2 ** 63), logprobs: 20 }],
  ['chat', { top_p: 1e-9, top_k: 0, min_p: 1, presence_penalty: 2, frequency_penalty: -2, repetition_penalty: 5, seed: 2 ** 62, logprobs: true, top_logprobs: 20, temperature: 0 }],
  ['chat', { top_k: 1, top_logprobs: 0, stop: ['\n'] }],
];

/** the gateway's checks before dispatch: the body's, then (the prompt counted) the engine's limits, vLLM's default logprobs bound */
const counter = new PromptCounter(localTokenizer(4096));
const gatewayChecks = (kind: Kind, body: Record<string, unknown>) => {
  const p = parseOpenAiRequest(kind, body);
  const beyond = engineLimitsError(counter, p, { count: 1, maxModelLen: 4096 });
  if (beyond) throw beyond;
  return p;
};

const refusal = (f: () => unknown): HttpError => {
  try {
    f();
  } catch (e) {
    if (e instanceof HttpError) return e;
    throw e;
  }
  throw new Error('no error');
};

describe('sampling parameter ranges', () => {
  it("the gateway refuses a value out of vLLM's range with a 400 naming it, and carries the bounds", () => {
    for (const [kind, extra, param, says] of REFUSED) {
      const e = refusal(() => gatewayChecks(kind, { ...baseOf(kind), ...extra }));
      expect(e.status, param).toBe(400);
      expect(e.param, JSON.stringify(extra)).toBe(param);
      expect(e.message, JSON.stringify(extra)).toContain(says);
    }
    for (const [kind, extra] of ACCEPTED) {
      const { temperature, ...params } = extra;
      const p = gatewayChecks(kind, { ...baseOf(kind), ...extra });
      expect(p.params).toEqual(params);
      expect(p.temperature).toBe(temperature);
    }
  });

  it('the wire schema of the parameters holds the same bounds', () => {
    const wire = (params: Record<string, unknown>) => ({ v: 1 as const, id: 'r1', model: 'm', kind: 'completion' as const, prompt: 'x', inputTokens: 1, maxTokens: 2, arrivalMs: 1, giveUpAtMs: 2, streamSubject: 'dyn.v1.stream.r1', params });
    for (const params of [{ top_p: 5 }, { top_k: -7 }, { presence_penalty: 99 }, { min_p: 3 }, { repetition_penalty: -1 }, { logprobs: -1 }, { top_logprobs: -2 }, { logprobs: 2.5 }, { seed: 1e30 }, { stop: '' }]) {
      expect(() => InferenceRequest.encode(wire(params) as never), JSON.stringify(params)).toThrow();
    }
    const ok = wire(ACCEPTED[0]![1]);
    expect(InferenceRequest.decode(InferenceRequest.encode(ok as never), 's').params).toEqual(ok.params);
  });

  describe('the emulator', () => {
    let em: EmulatorServer;
    let base: string;
    beforeAll(async () => {
      em = new EmulatorServer({ perf: createPerfModel(MODEL, 'h100'), tp: 4, zeroDelay: true, servedModelName: MODEL });
      base = `http://127.0.0.1:${await em.listen(0)}`;
    });
    afterAll(async () => {
      await em.close();
    });
    const post = async (kind: Kind, extra: Record<string, unknown>) => {
      const r = await fetch(`${base}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...baseOf(kind), ...extra }) });
      return { status: r.status, body: (await r.json()) as { error?: { message: string; type: string; param: string | null; code: number } } };
    };

    it("answers vLLM's 400 naming the parameter, and serves the bounds", async () => {
      for (const [kind, extra, param, says] of REFUSED) {
        const r = await post(kind, extra);
        expect(r.status, JSON.stringify(extra)).toBe(400);
        expect(r.body.error).toMatchObject({ type: 'BadRequestError', param, code: 400 });
        expect(r.body.error?.message, JSON.stringify(extra)).toContain(says);
      }
      for (const [kind, extra] of ACCEPTED) expect((await post(kind, extra)).status, JSON.stringify(extra)).toBe(200);
    });
  });
});
