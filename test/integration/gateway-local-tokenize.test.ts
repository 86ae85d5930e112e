/**
 * A prompt no instance counts in time is counted by the gateway itself when the engines are emulated (issue 13):
 * the gateway counts each prompt with an engine's tokenizer over NATS before admission. Under chaos on a loaded
 * host no instance answered it for tens of seconds (none ready after a node agent's kill, or a starved one that
 * does not answer within the attempt's deadline) and the client got a 503 `tokenize` although the gateway has the
 * emulated engines' tokenizer in its own code. Here, over a real nats-server with the gateway role's permissions,
 * the real gateway actor (emulated engines, the default), and a real emulated engine to compare with:
 * - a tokenizer that takes the request and never answers (a starved instance), then none at all (no instance):
 *   `/tokenize` answers at once with exactly what the engine's own `/tokenize` answers (count, max_model_len,
 *   tokens, token_strs), and a completion is counted, admitted and streamed;
 * - an instance that answers is still the one asked first (its answer is used).
 * Without the fallback each of these is a 503 after the 5-s tokenize deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus, type SubscribeHandle } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest, type Admission as AdmissionT } from '../../protocols/messages.ts';
import { GatewayActor } from '../../actors/gateway/main.ts';
import { splitConfig } from '../../actors/gateway/config.ts';
import { createEngine, type VllmEngine } from '../../src/engine/index.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';

const MODEL = 'llama3.1-8b';
let nats: TestNats;
let cluster: Bus;
let gw: GatewayActor;
let engine: VllmEngine;
let base: string;
/** the prompts the scripted intake admitted, with the count the gateway gave each. */
const admitted: { prompt: string; inputTokens: number }[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  const log = silentLogger();
  // the engine the instances would run (emulated, as the cluster config says), to compare the answers with
  engine = createEngine({ kind: 'emulator', model: MODEL, servedModelName: MODEL, gpu: 'h100', tp: 2, gpuIds: [0, 1], port: 0, healthDeadlineMs: 60_000 });
  cluster = await Bus.connect({ servers: nats.url, name: 'fake-cluster', ...nats.creds('admin'), log });
  // a scripted intake that admits every request and streams 2 tokens (the instance's part is not what is tested)
  cluster.serve(subjects.clusterIntake(), InferenceRequest, Admission, async (req): Promise<AdmissionT> => {
    admitted.push({ prompt: typeof req.prompt === 'string' ? req.prompt : '', inputTokens: req.inputTokens });
    setTimeout(() => {
      cluster.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: ' a', tokens: 1 });
      cluster.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 1, text: ' b', tokens: 1, done: true, finishReason: 'length', usage: { promptTokens: req.inputTokens, completionTokens: 2, energyJ: 1, energySource: 'modelled' } });
    }, 5);
    return { v: 1, id: req.id, ok: true, type: 'SS', pool: 'pool-all', instance: 'i-0' };
  }, { queue: CLUSTER_INTAKE_QUEUE });
  const { cluster: cc, gateway } = splitConfig({ model: MODEL, servers: [{ id: 'n0', gpus: 8 }], gateway: { port: 0, host: '127.0.0.1', admitAttemptMs: 500, admitTimeoutMs: 4000 } });
  gw = new GatewayActor({ id: 'gw-tok', cluster: cc, settings: gateway, servers: nats.url, ...nats.creds('gateway'), log });
  await Promise.all([gw.start(), engine.start()]);
  base = `http://127.0.0.1:${gw.port}`;
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await cluster?.close();
  await engine?.stop(2000);
  await nats?.stop();
});

const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** The gateway's /tokenize and the emulated engine's own, for the same body; and how long the gateway took. */
async function both(body: Record<string, unknown>): Promise<{ status: number; gateway: unknown; engine: unknown; tookMs: number }> {
  const t0 = Date.now();
  const r = await post(`${base}/tokenize`, { model: MODEL, ...body });
  const tookMs = Date.now() - t0;
  const e = await post(`${engine.baseUrl}/tokenize`, { model: MODEL, ...body });
  expect(e.status).toBe(200);
  return { status: r.status, gateway: await r.json(), engine: await e.json(), tookMs };
}

const localCount = async () => {
  const fams = parsePrometheusText(await (await fetch(`${base}/metrics`)).text());
  return fams.get('dynamollm_gateway_local_tokenize_total')?.samples[0]?.value ?? 0;
};

describe('a gateway in front of emulated engines counts a prompt itself when no instance does', () => {
  it('a tokenizer that never answers (a starved instance): the engines\' answer, at once, and the completion is served', async () => {
    const stalled: SubscribeHandle = cluster.subscribe(subjects.tokenize(), TokenizeRequest, () => { /* takes it, never answers */ }, { queue: TOKENIZER_QUEUE });
    try {
      const before = await localCount();
      const a = await both({ prompt: 'Tell me about energy-efficient inference on a starved host.', return_token_strs: true });
      expect(a.status, JSON.stringify(a.gateway)).toBe(200);
      expect(a.gateway).toEqual(a.engine);
      expect((a.gateway as { max_model_len: number }).max_model_len).toBe(131072);
      // one attempt's deadline (500 ms) and the tokenizer's first load, not the 5-s tokenize deadline (the bound)
      console.log(`tokenize with a starved tokenizer: answered in ${a.tookMs} ms`);
      expect(a.tookMs).toBeLessThan(5000);
      const chat = await both({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is a GPU clock?' }] });
      expect(chat.status).toBe(200);
      expect(chat.gateway).toEqual(chat.engine);

      const prompt = 'A completion counted while the only tokenizer is starved.';
      const r = await post(`${base}/v1/completions`, { model: MODEL, prompt, max_tokens: 2 });
      expect(r.status, await r.clone().text()).toBe(200);
      expect(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(' a b');
      const counted = (await (await post(`${engine.baseUrl}/tokenize`, { model: MODEL, prompt })).json()) as { count: number };
      expect(admitted.find((x) => x.prompt === prompt)?.inputTokens).toBe(counted.count);
      expect(await localCount()).toBe(before + 3);
    } finally {
      stalled.unsubscribe();
    }
  }, 60_000);

  it('no instance at all (no responders): the same', async () => {
    const a = await both({ prompt: 'Counted with no instance alive.' });
    expect(a.status, JSON.stringify(a.gateway)).toBe(200);
    expect(a.gateway).toEqual(a.engine);
    // at once, not at the 5-s tokenize deadline (the bound)
    console.log(`tokenize with no instance: answered in ${a.tookMs} ms`);
    expect(a.tookMs).toBeLessThan(5000);
    const tokens = (a.engine as { tokens: number[] }).tokens;
    const d = await post(`${base}/detokenize`, { model: MODEL, tokens });
    expect(d.status).toBe(200);
    expect(await d.json()).toEqual(await (await post(`${engine.baseUrl}/detokenize`, { model: MODEL, tokens })).json());
  }, 30_000);

  it('an instance that answers is asked first: its count is the one used', async () => {
    // a scripted instance whose tokenizer answers 7 for everything (not the emulator's count, so the source shows)
    const live = cluster.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, async () => ({ v: 1 as const, ok: true, count: 7, maxModelLen: 131072 }), { queue: TOKENIZER_QUEUE });
    try {
      const before = await localCount();
      const r = await post(`${base}/tokenize`, { model: MODEL, prompt: 'Counted by the instance that answered.' });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { count: number }).count).toBe(7);
      expect(await localCount()).toBe(before);
    } finally {
      live.unsubscribe();
    }
  }, 30_000);
});
