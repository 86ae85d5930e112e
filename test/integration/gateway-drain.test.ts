/**
 * A gateway's drain on SIGTERM as a load balancer sees it (Kubernetes: a pod deleted in a rolling update, a scale-down,
 * a node drain): a real `dynamollm actor gateway` process on a real nats-server, in front of a scripted cluster (intake,
 * tokenizer and status on a Bus, as test/integration/gateway-start-nats-down.test.ts) whose streams send one token
 * every 100 ms. With gateway.drainDelayMs 3 s, after its SIGTERM:
 * - /readyz answers 503 (reason draining) at once, so the load balancer takes the replica out;
 * - during the delay a new connection is still accepted and its request served, its answer closing its connection;
 * - the listener closes once the delay has passed, not before (a new connection is refused from then on);
 * - a stream in flight at the SIGTERM streams on past the listener's close and ends whole;
 * - the process exits 0 once that stream has ended, within the delay and gateway.drainStreamsMs.
 * Another gateway process, drainDelayMs 0 and drainStreamsMs 1 s, gets its SIGTERM while a stream and a non-streamed
 * request each have 200 tokens to go: at the grace's end the stream ends with a retryable error event, `[DONE]` and
 * its chunked body's end, the other request gets a 503 with Retry-After, and the process exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { creds, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { killTree } from '../helpers/procs.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, ClusterStatus, InferenceRequest, StatusRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import { localTokenizer } from '../../actors/gateway/tokens.ts';

const DRAIN_DELAY_MS = 3000;
const DRAIN_STREAMS_MS = 20_000;
/** the scripted engine's time per token, ms */
const TOKEN_MS = 100;

let nats: TestNats;
let cluster: Bus;
let gw: ChildProcess;
/** the port of the gateway under test (call, accepts). */
let port: number;
let out = '';
const spawned: ChildProcess[] = [];
/** the scripted streams under way (a cancelled request's stream goes on: stopped before the cluster's connection closes). */
const streams = new Set<NodeJS.Timeout>();

/** The scripted cluster: intake streaming `maxTokens` tokens TOKEN_MS apart, the tokenizer, and a status with one ready instance. */
async function startCluster(url: string): Promise<Bus> {
  const bus = await Bus.connect({ servers: url, name: 'fake-cluster', ...creds('admin'), log: silentLogger() });
  bus.serve(subjects.clusterIntake(), InferenceRequest, Admission, (req) => {
    let seq = 0;
    const t = setInterval(() => {
      if (seq < req.maxTokens) {
        bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq, text: ` t${seq}`, tokens: 1, pool: 'pool-SS', type: 'SS' });
        seq++;
        return;
      }
      clearInterval(t);
      streams.delete(t);
      bus.publish(req.streamSubject, TokenChunk, {
        v: 1, id: req.id, seq, text: '', tokens: 0, done: true, finishReason: 'length',
        usage: { promptTokens: req.inputTokens, completionTokens: req.maxTokens, energyJ: 1.5, energySource: 'modelled' },
      });
    }, TOKEN_MS);
    streams.add(t);
    return Promise.resolve({ v: 1 as const, id: req.id, ok: true, type: 'SS' as const, pool: 'pool-SS', instance: 'i-0' });
  }, { queue: CLUSTER_INTAKE_QUEUE });
  const tokenize = localTokenizer(4096);
  bus.serve(subjects.tokenize(), TokenizeRequest, TokenizeReply, (req) => tokenize(req), { queue: TOKENIZER_QUEUE });
  bus.serve(subjects.clusterStatus(), StatusRequest, ClusterStatus, () => Promise.resolve({
    v: 1 as const, leader: 'cm-test', atMs: Date.now(),
    pools: [{ id: 'pool-SS', types: ['SS' as const], gpus: 1, instances: [{ id: 'i-0', tp: 1, gpus: [0], clockMhz: 1980, powerW: 300, energyJ: 0, queued: 0, running: 0, state: 'ready' }] }],
    freeGpus: 7, powerW: 300, energyJ: 0,
  }));
  return bus;
}

interface Answer { status: number; headers: IncomingHttpHeaders; body: string; endMs: number }

/**
 * An HTTP request on a fresh connection (no agent: no connection reused); `onData` sees the body as it arrives.
 * Rejects when the connection is refused or cut.
 */
function call(method: 'GET' | 'POST', path: string, body?: unknown, onData?: (soFar: string) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ host: '127.0.0.1', port, path, method, agent: false, timeout: 30_000, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
        onData?.(text);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, endMs: Date.now() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(data);
  });
}

/** Whether a TCP connection to the port is accepted (false: refused). */
function accepts(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The text of a completion's SSE events, and whether it ended with [DONE]. */
function sseText(body: string): { text: string; done: boolean } {
  let text = '';
  let done = false;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const d = line.slice('data: '.length);
    if (d === '[DONE]') done = true;
    else text += ((JSON.parse(d) as { choices?: { text?: string }[] }).choices ?? []).map((c) => c.text ?? '').join('');
  }
  return { text, done };
}

const tokens = (n: number) => Array.from({ length: n }, (_, i) => ` t${i}`).join('');

/** A gateway process with these drain settings, once it answers /readyz 200; `port` becomes its port. */
async function startGateway(drainDelayMs: number, drainStreamsMs: number): Promise<ChildProcess> {
  port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'dyn-gw-drain-'));
  const cfg = join(dir, 'cluster.json');
  writeFileSync(cfg, JSON.stringify({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port, drainDelayMs, drainStreamsMs } }));
  const p = spawn(process.execPath, launchArgs('gateway', ['--id', 'gw-drain', '--config', cfg]), {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info', DYNAMOLLM_LOG_PRETTY: '0', NATS_URL: nats.url, NATS_USER: 'gateway', NATS_PASSWORD: creds('gateway').pass },
  });
  spawned.push(p);
  out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (const end = Date.now() + 60_000; ;) {
    const ready = await call('GET', '/readyz').then((r) => r.status === 200, () => false);
    if (ready) return p;
    if (Date.now() > end) throw new Error(`the gateway was not ready within 60 s; its log:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  nats = await startNatsServer();
  cluster = await startCluster(nats.url);
  gw = await startGateway(DRAIN_DELAY_MS, DRAIN_STREAMS_MS);
}, 90_000);

afterAll(async () => {
  for (const p of spawned) if (p.pid && p.exitCode === null && p.signalCode === null) killTree([p.pid]);
  for (const t of streams) clearInterval(t);
  await cluster?.close();
  await nats?.stop();
});

describe('gateway drain on SIGTERM (gateway.drainDelayMs)', () => {
  it('not ready at once, serves new connections for the delay, closes its port after it, and lets the stream in flight end whole', async () => {
    const STREAM_TOKENS = 70;
    // a stream in flight: SIGTERM once its first tokens have arrived
    let started!: () => void;
    const firstTokens = new Promise<void>((r) => (started = r));
    const stream = call('POST', '/v1/completions', { model: 'llama2-70b', prompt: 'a long answer', max_tokens: STREAM_TOKENS, stream: true }, (soFar) => {
      if (sseText(soFar.slice(0, soFar.lastIndexOf('\n\n') + 1)).text.length >= tokens(3).length) started();
    });
    await firstTokens;
    const exited = new Promise<{ code: number | null; atMs: number }>((r) => gw.once('exit', (code) => r({ code, atMs: Date.now() })));
    const killAt = Date.now();
    gw.kill('SIGTERM');

    // the port's answers from the SIGTERM on: every 100 ms a new connection, until one is refused
    const refused = (async () => {
      let lastAccepted = 0;
      for (;;) {
        const t = Date.now();
        if (!(await accepts())) return { firstRefusedMs: t - killAt, lastAcceptedMs: lastAccepted - killAt };
        lastAccepted = t;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    // not ready at once: the load balancer takes it out
    await new Promise((r) => setTimeout(r, 100));
    const ready = await call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.endMs - killAt).toBeLessThan(DRAIN_DELAY_MS);
    expect((JSON.parse(ready.body) as { reason?: string }).reason).toBe('draining');
    expect((await call('GET', '/healthz')).status).toBe(503);

    // a new connection during the delay (a proxy that has not heard of the endpoint's removal yet): served, and its
    // answer closes its connection
    await new Promise((r) => setTimeout(r, Math.max(0, killAt + 1000 - Date.now())));
    const sentMs = Date.now() - killAt;
    const late = await call('POST', '/v1/completions', { model: 'llama2-70b', prompt: 'a request during the drain delay', max_tokens: 3 });
    expect(sentMs).toBeLessThan(DRAIN_DELAY_MS);
    expect(late.status, late.body).toBe(200);
    expect((JSON.parse(late.body) as { choices: { text: string }[] }).choices[0]!.text).toBe(tokens(3));
    expect(late.headers.connection).toBe('close');

    // the port closes once the delay has passed, not before; the stream in flight goes on past it and ends whole
    const port = await refused;
    console.log(`after the SIGTERM (drainDelayMs ${DRAIN_DELAY_MS}): last connection accepted at ${port.lastAcceptedMs} ms, first refused at ${port.firstRefusedMs} ms`);
    expect(port.firstRefusedMs).toBeGreaterThanOrEqual(DRAIN_DELAY_MS);
    expect(port.firstRefusedMs).toBeLessThan(DRAIN_DELAY_MS + DRAIN_STREAMS_MS);
    const s = await stream;
    expect(s.status).toBe(200);
    expect(sseText(s.body)).toEqual({ text: tokens(STREAM_TOKENS), done: true });
    console.log(`the stream in flight ended whole ${s.endMs - killAt} ms after the SIGTERM`);
    expect(s.endMs - killAt).toBeGreaterThan(port.firstRefusedMs);

    // the process exits 0 once the stream has ended, within its drain bounds
    const exit = await exited;
    expect(exit.code).toBe(0);
    expect(exit.atMs).toBeGreaterThanOrEqual(s.endMs);
    expect(exit.atMs - killAt).toBeLessThan(DRAIN_DELAY_MS + DRAIN_STREAMS_MS);
    expect(out).toMatch(/not ready, serving on until the load balancer has let go of this replica/);
  }, 90_000);

  it('past gateway.drainStreamsMs: a stream under way ends with a retryable error event, [DONE] and its chunked end; a JSON request gets a 503 with Retry-After', async () => {
    const CUT_STREAMS_MS = 1000;
    const p = await startGateway(0, CUT_STREAMS_MS);
    let started!: () => void;
    const firstTokens = new Promise<void>((r) => (started = r));
    // (call rejects on a connection cut before the body's end: it resolves only on a whole chunked body)
    const stream = call('POST', '/v1/completions', { model: 'llama2-70b', prompt: 'a long answer', max_tokens: 200, stream: true }, (soFar) => {
      if (sseText(soFar.slice(0, soFar.lastIndexOf('\n\n') + 1)).text.length >= tokens(3).length) started();
    });
    const plain = call('POST', '/v1/completions', { model: 'llama2-70b', prompt: 'a long answer, not streamed', max_tokens: 200 });
    await firstTokens;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    const killAt = Date.now();
    p.kill('SIGTERM');

    const s = await stream;
    expect(s.status).toBe(200);
    const data = s.body.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice('data: '.length));
    expect(data.at(-1)).toBe('[DONE]');
    expect((JSON.parse(data.at(-2)!) as { error: unknown }).error).toMatchObject({ code: 503, type: 'ServiceUnavailableError', retryable: true });
    const text = sseText(data.slice(0, -2).map((d) => `data: ${d}\n`).join('')).text;
    expect(text.length).toBeGreaterThanOrEqual(tokens(3).length);
    expect(tokens(200).startsWith(text)).toBe(true);
    const j = await plain;
    expect(j.status, j.body).toBe(503);
    expect(j.headers['retry-after']).toBe('1');
    expect([(JSON.parse(j.body) as { error: { code: number } }).error.code, j.headers['x-dynamollm-error-code']]).toEqual([503, 'unavailable']);
    console.log(`drainStreamsMs ${CUT_STREAMS_MS}: the stream's error event and end came ${s.endMs - killAt} ms after the SIGTERM, the 503 ${j.endMs - killAt} ms`);
    expect(s.endMs - killAt).toBeGreaterThanOrEqual(CUT_STREAMS_MS);
    expect(await exited).toBe(0);
  }, 90_000);
});
