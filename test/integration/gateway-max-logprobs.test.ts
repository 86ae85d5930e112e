/**
 * engine.maxLogprobs over NATS: an instance's engine runs with the config's `--max-logprobs` (engineConfigOf), and
 * the instance reports that bound with each prompt count (engineTokenize: TokenizeReply.maxLogprobs), which the
 * gateway checks a request against before dispatching it. Here over a real nats-server with the project's
 * permissions: the real gateway actor, a real emulated engine made from the same config as an instance manager makes
 * it, its tokenizer served on the tokenize subject as the instance manager serves it, and a scripted intake that
 * streams two tokens. Configured 5: a chat asking top_logprobs 6 gets vLLM's 400 with the engine's own words, before
 * the intake sees it; 5 is served; the counts came from the instance, not the gateway's own tokenizer. A vLLM engine
 * made from the same config (the fake `vllm`, test/fixtures/fake-vllm) gets `--max-logprobs 5` and refuses 6 alike.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, InferenceRequest, TokenChunk, TokenizeReply, TokenizeRequest, type Admission as AdmissionT } from '../../protocols/messages.ts';
import { GatewayActor } from '../../actors/gateway/main.ts';
import { splitConfig } from '../../actors/gateway/config.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { maxLogprobsOf } from '../../actors/common/engine-limits.ts';
import { engineConfigOf } from '../../actors/instance-manager/engine-config.ts';
import { engineTokenize } from '../../actors/instance-manager/machine-io.ts';
import { createEngine, type VllmEngine } from '../../src/engine/index.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';

const MODEL = 'llama3.1-8b';
const ENGINE_KEY = 'sk-engine-test';
let nats: TestNats;
let cluster: Bus;
let gw: GatewayActor;
let engine: VllmEngine;
let base: string;
/** the top_logprobs of each request the intake admitted. */
const admitted: (number | undefined)[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  const log = silentLogger();
  const { cluster: cc, gateway } = splitConfig({
    model: MODEL, servers: [{ id: 'n0', gpus: 8 }], engine: { kind: 'emulator', maxLogprobs: 5 },
    gateway: { port: 0, host: '127.0.0.1', admitAttemptMs: 500, admitTimeoutMs: 4000 },
  });
  // the instance's engine, as the instance manager makes it from the config (--max-logprobs 5 on its command line)
  engine = createEngine({ ...engineConfigOf(cc, { tp: 1, gpuIds: [0], apiKey: ENGINE_KEY, profile: undefined }), healthDeadlineMs: 60_000 });
  cluster = await Bus.connect({ servers: nats.url, name: 'fake-instance', ...nats.creds('admin'), log });
  // the instance manager's tokenizer service: its engine's /tokenize, with the bound the engine runs with
  cluster.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => engineTokenize(engine, req, maxLogprobsOf(cc.engine)), { queue: TOKENIZER_QUEUE });
  cluster.serve(subjects.clusterIntake(), InferenceRequest, Admission, async (req): Promise<AdmissionT> => {
    admitted.push(req.params?.top_logprobs);
    setTimeout(() => {
      cluster.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: ' a', tokens: 1 });
      cluster.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 1, text: ' b', tokens: 1, done: true, finishReason: 'length', usage: { promptTokens: req.inputTokens, completionTokens: 2, energyJ: 1, energySource: 'modelled' } });
    }, 5);
    return { v: 1, id: req.id, ok: true, type: 'SS', pool: 'pool-all', instance: 'i-0' };
  }, { queue: CLUSTER_INTAKE_QUEUE });
  gw = new GatewayActor({ id: 'gw-lp', cluster: cc, settings: gateway, servers: nats.url, ...nats.creds('gateway'), log });
  await Promise.all([gw.start(), engine.start()]);
  base = `http://127.0.0.1:${gw.port}`;
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await cluster?.close();
  await engine?.stop(2000);
  await nats?.stop();
});

const post = (url: string, body: unknown, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const chat = (top: number) => ({ model: MODEL, messages: [{ role: 'user', content: 'What is a GPU clock?' }], max_tokens: 2, logprobs: true, top_logprobs: top });
const localCount = async () => parsePrometheusText(await (await fetch(`${base}/metrics`)).text()).get('dynamollm_gateway_local_tokenize_total')?.samples[0]?.value ?? 0;

describe("the gateway bounds logprobs by the --max-logprobs its instances report over NATS", () => {
  it("configured 5: top_logprobs 6 is the engine's own 400, before dispatch; 5 is served", async () => {
    const local = await localCount();
    const r = await post(`${base}/v1/chat/completions`, chat(6));
    const body = (await r.json()) as { error: { message: string; param: string } };
    expect(r.status, JSON.stringify(body)).toBe(400);
    // the engine's own answer to the same request: the same words
    const e = await post(`${engine.baseUrl}/v1/chat/completions`, chat(6), { authorization: `Bearer ${ENGINE_KEY}` });
    expect(e.status).toBe(400);
    const own = ((await e.json()) as { error: { message: string } }).error.message;
    expect(own).toBe('Requested sample logprobs of 6, which is greater than max allowed: 5');
    expect(body.error).toMatchObject({ message: own, param: 'top_logprobs' });
    expect(admitted).toEqual([]);

    const ok = await post(`${base}/v1/chat/completions`, chat(5));
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(admitted).toEqual([5]);
    // counted by the instance over NATS (its reply carried the bound), not by the gateway's own tokenizer
    expect(await localCount()).toBe(local);
  }, 60_000);
});

describe('a vLLM engine made from the same config', () => {
  it('gets --max-logprobs 5 on its command line and refuses 6 with the same words', async () => {
    const FAKE = fileURLToPath(new URL('../fixtures/fake-vllm', import.meta.url));
    const cc = parseConfig({ model: MODEL, servers: [{ id: 'n0', gpus: 8 }], engine: { kind: 'vllm', command: FAKE, maxLogprobs: 5 } });
    const vllm = createEngine({ ...engineConfigOf(cc, { tp: 1, gpuIds: [0], apiKey: ENGINE_KEY, profile: undefined }), healthDeadlineMs: 10_000 });
    try {
      await vllm.start();
      const auth = { authorization: `Bearer ${ENGINE_KEY}` };
      const r = await post(`${vllm.baseUrl}/v1/chat/completions`, chat(6), auth);
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { message: string } }).error.message).toBe('Requested sample logprobs of 6, which is greater than max allowed: 5');
      const ok = await post(`${vllm.baseUrl}/v1/chat/completions`, { ...chat(5), stream: true }, auth);
      expect(ok.status).toBe(200);
      await ok.text();
    } finally {
      await vllm.stop(2000);
    }
  }, 30_000);
});
