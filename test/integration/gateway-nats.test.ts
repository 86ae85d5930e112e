/**
 * The gateway actor over a real nats-server, with the gateway role's permissions from nats.conf, against
 * a scripted cluster intake (a Bus serving subjects.clusterIntake and streaming TokenChunks like an
 * instance manager would): streaming and non-streaming via the openai client, admission refusal -> 429,
 * no responders -> 503, client disconnect -> Cancel on the wire, silent stream -> explicit error,
 * and telemetry on NATS -> /metrics and the /ws live stream. Failover: an intake that never answers (its
 * cluster manager died holding the request) is retried with the same id and completes; a terminal chunk
 * whose seq was already seen (a pool leader ending a dead instance's stream) ends the stream at once; a
 * request sent while NATS restarts is held until the connection is back and completes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, Cancel, InferenceRequest, InstanceTelemetry, DecisionEvent, TokenChunk, TokenizeReply, TokenizeRequest, type Admission as AdmissionT } from '../../protocols/messages.ts';
import { localTokenizer } from '../../actors/gateway/tokens.ts';
import { GatewayActor } from '../../actors/gateway/main.ts';
import { splitConfig } from '../../actors/gateway/config.ts';
import { parsePrometheusText } from '../../src/telemetry/prom-parse.ts';
import { RequestTally } from '../../src/telemetry/request-counts.ts';

let nats: TestNats;
let cluster: Bus;
let gw: GatewayActor;
let base: string;
const cancels: string[] = [];
let intakeOn = true;
/** request ids the intake received, in order (duplicates included). */
const intakeIds: string[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  const log = silentLogger();
  cluster = await Bus.connect({ servers: nats.url, name: 'fake-cluster', ...nats.creds('admin'), log });
  // scripted intake: prompt words select behaviour; otherwise stream maxTokens tokens, 5 ms apart
  cluster.serve(subjects.clusterIntake(), InferenceRequest, Admission, async (req): Promise<AdmissionT> => {
    if (!intakeOn) throw new Error('unreachable');
    intakeIds.push(req.id);
    const text = typeof req.prompt === 'string' ? req.prompt : '';
    // a cluster manager that dies holding the request: the first attempt is not answered in time (2 s, five
    // times the gateway's attempt deadline; its late answer reaches nobody)
    if (text.includes('DROP1') && intakeIds.filter((x) => x === req.id).length === 1) {
      await new Promise((r) => setTimeout(r, 2000));
      throw new Error('this cluster manager died');
    }
    const foreign = text.includes('FOREIGN');
    if (text.includes('FULL')) return { v: 1, id: req.id, ok: false, error: { code: 'overloaded', message: 'every pool is at its SLO cap', retryable: true, retryAfterS: 2 } };
    const silent = text.includes('SILENT');
    const slow = text.includes('SLOW');
    const play = async () => {
      if (silent) return;
      for (let i = 0; i < req.maxTokens; i++) {
        if (cancels.includes(req.id)) return;
        cluster.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: i, text: ` t${i}`, tokens: 1, pool: 'pool-SS', type: 'SS' });
        await new Promise((r) => setTimeout(r, slow ? 50 : 5));
      }
      if (foreign) {
        // the instance died: its pool leader ends the stream, numbered from the instance's last status
        cluster.publish(req.streamSubject, TokenChunk, {
          v: 1, id: req.id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'error', pool: 'pool-SS',
          error: { code: 'unavailable', message: 'instance i-0 died while serving the request', retryable: true, retryAfterS: 1 },
        });
        return;
      }
      cluster.publish(req.streamSubject, TokenChunk, {
        v: 1, id: req.id, seq: req.maxTokens, text: '', tokens: 0, done: true, finishReason: 'length',
        usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 3.25, energySource: 'modelled' },
      });
    };
    setTimeout(() => void play(), 5);
    return { v: 1, id: req.id, ok: true, type: 'SS', pool: 'pool-SS', instance: 'i-0' };
  }, { queue: CLUSTER_INTAKE_QUEUE });
  // an instance's tokenizer (the emulator's Llama BPE)
  const tokenize = localTokenizer(4096);
  cluster.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => tokenize(req), { queue: TOKENIZER_QUEUE });
  cluster.subscribe(subjects.cancel('x').replace(/x$/, '*') /* protocols has no cancelAll */, Cancel, (c) => {
    cancels.push(c.id);
  });
  const { cluster: cc, gateway } = splitConfig({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port: 0, host: '127.0.0.1', chunkTimeoutMs: 800, admitAttemptMs: 400, admitTimeoutMs: 4000 } });
  gw = new GatewayActor({ id: 'gw-test', cluster: cc, settings: gateway, servers: nats.url, ...nats.creds('gateway'), log });
  await gw.start();
  base = `http://127.0.0.1:${gw.port}`;
}, 30_000);

afterAll(async () => {
  await gw?.stop();
  await cluster?.close();
  await nats?.stop();
});

const client = () => new OpenAI({ apiKey: 'none', baseURL: `${base}/v1`, maxRetries: 0 });

describe('gateway over NATS', () => {
  it('non-streaming and streaming completions with energy usage', async () => {
    const r = await client().completions.create({ model: 'llama2-70b', prompt: 'hello', max_tokens: 4 });
    expect(r.choices[0]!.text).toBe(' t0 t1 t2 t3');
    expect(r.usage).toMatchObject({ completion_tokens: 4, energy_joules: 3.25, energy_source: 'modelled' });
    const s = await client().chat.completions.create({ model: 'llama2-70b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: unknown;
    for await (const c of s) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(' t0 t1 t2');
    expect(usage).toMatchObject({ energy_joules: 3.25 });
  });

  it('admission refusal is a 429 with Retry-After', async () => {
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama2-70b', prompt: 'FULL' }) });
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('2');
    expect(r.headers.get('x-dynamollm-error-code')).toBe('overloaded');
    expect(((await r.json()) as { error: { code: number; type: string } }).error).toMatchObject({ code: 429, type: 'Too Many Requests' });
  });

  it('a silent stream ends with an explicit retryable error (503)', async () => {
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama2-70b', prompt: 'SILENT', max_tokens: 3 }) });
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/no token for 800 ms/);
  });

  it('client disconnect publishes a Cancel downstream', async () => {
    const ac = new AbortController();
    const before = cancels.length;
    const s = await client().completions.create({ model: 'llama2-70b', prompt: 'SLOW', max_tokens: 100, stream: true }, { signal: ac.signal });
    let got = 0;
    try {
      for await (const _ of s) {
        got++;
        ac.abort();
      }
    } catch {
      // the client may surface the abort as an error or just end the iteration
    }
    expect(got).toBeGreaterThan(0);
    const until = Date.now() + 3000;
    while (cancels.length === before && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(cancels.length).toBe(before + 1);
  });

  it('telemetry from NATS reaches /metrics and the /ws live stream', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`);
    const snaps: { pools: { instances: { id: string; powerW: number }[] }[]; requests: { ok: number }; events: unknown[] }[] = [];
    ws.on('message', (d: Buffer) => snaps.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    const tel = (energyJ: number): InstanceTelemetry => ({
      v: 1, id: 'i-0', pool: 'pool-SS', tp: 8, gpus: [0, 1, 2, 3, 4, 5, 6, 7], clockMhz: 1400, maxClockMhz: 1980, powerW: 3200, energyJ,
      energySource: 'modelled', queued: 0, running: 1, loadByType: { SS: 2 }, state: 'running', sentMs: Date.now(),
    });
    // the instance's request counts (InstanceTelemetry.requests) after the record of one request: the gateway reads no record
    const tally = new RequestTally();
    tally.add({ v: 1, id: 'r1', type: 'SS', pool: 'pool-SS', outcome: 'ok', promptTokens: 10, completionTokens: 5, ttftMs: 80, tbtMeanMs: 20, energyJ: 3, energySource: 'modelled', sloMet: true, finishedMs: Date.now() });
    cluster.publish(subjects.telInstance('i-0'), InstanceTelemetry, tel(100));
    cluster.publish(subjects.telInstance('i-0'), InstanceTelemetry, { ...tel(400), requests: tally.counts(1) });
    cluster.publish(subjects.telInstance('i-0'), InstanceTelemetry, { ...tel(400), requests: tally.counts(1) });
    cluster.publish(subjects.event('clock', 'i-0'), DecisionEvent, { v: 1, kind: 'clock', actor: 'i-0', atMs: Date.now(), summary: 'clock 1980 -> 1400 MHz', decision: {}, inputs: {} });
    const until = Date.now() + 4000;
    while (Date.now() < until && !snaps.some((s) => s.requests.ok === 1 && s.pools.length === 1 && s.events.length === 1)) await new Promise((r) => setTimeout(r, 50));
    ws.close();
    expect(snaps.some((s) => s.requests.ok === 1 && s.pools[0]?.instances[0]?.powerW === 3200)).toBe(true);
    const fams = parsePrometheusText(await (await fetch(`${base}/metrics`)).text());
    expect(fams.get('dynamollm_energy_joules_total')!.samples[0]!.value).toBe(400);
    expect(fams.get('dynamollm_gpu_sm_clock_hertz')!.samples).toHaveLength(8);
    expect(fams.get('dynamollm_reconfigurations_total')!.samples[0]!.labels.kind).toBe('clock');
    expect(fams.get('dynamollm_requests_total')!.samples[0]!.value).toBe(1);
  });

  it('an intake attempt that is never answered is retried with the same request id, and the request completes', async () => {
    const before = intakeIds.length;
    const r = await client().completions.create({ model: 'llama2-70b', prompt: 'DROP1 hello', max_tokens: 3 });
    expect(r.choices[0]!.text).toBe(' t0 t1 t2');
    const ids = intakeIds.slice(before);
    expect(ids).toHaveLength(2);
    expect(ids[1]).toBe(ids[0]);
  });

  it('a terminal chunk whose seq was already seen ends the stream at once (whoever ends it)', async () => {
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama2-70b', prompt: 'FOREIGN', max_tokens: 3 }) });
    expect(r.status).toBe(503);
    // the pool leader's words, not the gateway's own silence timeout (800 ms)
    expect(((await r.json()) as { error: { message: string } }).error.message).not.toMatch(/no token for/);
  });

  it('a request sent while NATS restarts is held until the connection is back, then completes', async () => {
    const port = nats.port;
    await nats.stop();
    const sent = client().completions.create({ model: 'llama2-70b', prompt: 'hello again', max_tokens: 2 });
    await new Promise((r) => setTimeout(r, 1000));
    nats = await startNatsServer({ port });
    const r = await sent;
    expect(r.choices[0]!.text).toBe(' t0 t1');
  }, 20_000);

  it('no cluster manager: 503 with Retry-After', async () => {
    intakeOn = false;
    await cluster.drain().catch(() => {});
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama2-70b', prompt: 'x' }) });
    expect(r.status).toBe(503);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});
