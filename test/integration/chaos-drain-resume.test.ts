/**
 * The load generator of `dynamollm chaos` (src/cli/chaos-client.ts) against a gateway's drain (docs/DATAPATH.md
 * "Gateway drain", docs/PROTOCOL.md "Resumable streams"): two real `dynamollm actor gateway` processes on a real
 * nats-server (its JetStream holding the resume journal), in front of a scripted cluster (intake, tokenizer and status
 * on a Bus, as test/integration/gateway-drain.test.ts) whose streams send one token every TOKEN_MS, token i's text
 * ` t<i>` (a continuation's first token numbered after the text its prompt carries). Gateway A (drainDelayMs 0,
 * drainStreamsMs 500) gets its SIGTERM while the client's resumable stream has tokens to go: at the grace's end the
 * stream ends with a retryable error event without an id, as a draining replica cuts a resumable stream.
 *
 * Expected: the client resumes the stream on gateway B from its last event id (Last-Event-ID): the request is ok, its
 * max_tokens words whole and its event ids in order (no token lost or repeated), counted as resumed once, on an error
 * event, not as failed; gateway B's resume counter (dynamollm_gateway_resumed_total, what the chaos report's
 * gatewayResumed sums) counts it; the continuation B asked the cluster for starts at the token after the last one A
 * sent and asks for the rest of max_tokens; A exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { creds, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';
import { killTree } from '../helpers/procs.ts';
import { launchArgs } from '../../actors/common/launch-args.ts';
import { ensureResumeStream } from '../../actors/common/events.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { subjects, CLUSTER_INTAKE_QUEUE, TOKENIZER_QUEUE } from '../../protocols/subjects.ts';
import { Admission, ClusterStatus, InferenceRequest, StatusRequest, TokenChunk, TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';
import { localTokenizer } from '../../actors/gateway/tokens.ts';
import { firstReplica, oneRequest } from '../../src/cli/chaos-client.ts';
import { parseScrape } from '../../src/cli/chaos-counters.ts';

const MODEL = 'llama2-70b';
const MAX_TOKENS = 60;
/** the scripted engine's time per token, ms */
const TOKEN_MS = 50;
const DRAIN_STREAMS_MS = 500;

let nats: TestNats;
let cluster: Bus;
const spawned: ChildProcess[] = [];
const logs = new Map<ChildProcess, string>();
/** the scripted streams under way (a cancelled request's stream goes on: stopped before the cluster's connection closes). */
const streams = new Set<NodeJS.Timeout>();
/** every request the scripted intake admitted: its id, the tokens its prompt carries already, its max_tokens. */
const admitted: { id: string; from: number; maxTokens: number }[] = [];
/** called at each token the intake sends (the request's index in `admitted`, the token's number). */
let onToken: (i: number, n: number) => void = () => {};

/** The tokens ` t<i>` a prompt carries (a continuation's prompt is the request's prompt plus the text sent). */
const carried = (prompt: unknown) => (typeof prompt === 'string' ? (prompt.match(/ t\d+/g) ?? []).length : 0);

/** The scripted cluster: intake streaming the tokens after those its prompt carries, TOKEN_MS apart; the tokenizer; one ready instance. */
async function startCluster(url: string): Promise<Bus> {
  const bus = await Bus.connect({ servers: url, name: 'fake-cluster', ...creds('admin'), log: silentLogger() });
  await ensureResumeStream(bus);
  bus.serve(subjects.clusterIntake(), InferenceRequest, Admission, (req) => {
    const from = carried(req.prompt);
    const i = admitted.push({ id: req.id, from, maxTokens: req.maxTokens }) - 1;
    let seq = 0;
    const t = setInterval(() => {
      if (seq < req.maxTokens) {
        bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq, text: ` t${from + seq}`, tokens: 1, pool: 'pool-SS', type: 'SS' });
        onToken(i, from + seq);
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

/** A gateway process with these drain settings on a free port, once it answers /readyz 200: its process and URL. */
async function startGateway(id: string, drainStreamsMs: number): Promise<{ p: ChildProcess; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'dyn-chaos-drain-'));
  const cfg = join(dir, 'cluster.json');
  writeFileSync(cfg, JSON.stringify({ servers: [{ id: 'n0', gpus: 8 }], gateway: { port, drainDelayMs: 0, drainStreamsMs } }));
  const p = spawn(process.execPath, launchArgs('gateway', ['--id', id, '--config', cfg]), {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info', DYNAMOLLM_LOG_PRETTY: '0', NATS_URL: nats.url, NATS_USER: 'gateway', NATS_PASSWORD: creds('gateway').pass },
  });
  spawned.push(p);
  logs.set(p, '');
  p.stdout!.on('data', (d: Buffer) => logs.set(p, logs.get(p)! + d.toString()));
  for (const end = Date.now() + 60_000; ;) {
    const ready = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false);
    if (ready) return { p, url };
    if (Date.now() > end) throw new Error(`gateway ${id} was not ready within 60 s; its log:\n${logs.get(p)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let a: { p: ChildProcess; url: string };
let b: { p: ChildProcess; url: string };

beforeAll(async () => {
  nats = await startNatsServer();
  cluster = await startCluster(nats.url);
  [a, b] = await Promise.all([startGateway('gw-drain-a', DRAIN_STREAMS_MS), startGateway('gw-drain-b', 10_000)]);
}, 90_000);

afterAll(async () => {
  for (const p of spawned) if (p.pid && p.exitCode === null && p.signalCode === null) killTree([p.pid]);
  for (const t of streams) clearInterval(t);
  await cluster?.close();
  await nats?.stop();
});

describe('chaos client: a stream cut by a draining gateway', () => {
  it('is resumed on the other gateway from its last event id: ok, every token once, counted as resumed on an error event, not failed', async () => {
    // SIGTERM gateway A once the client's stream has sent its 5th token (A's drain cuts it DRAIN_STREAMS_MS later)
    const exited = new Promise<number | null>((r) => a.p.once('exit', (code) => r(code)));
    onToken = (i, n) => {
      if (i === 0 && n === 4 && a.p.exitCode === null) a.p.kill('SIGTERM');
    };
    // the replicas in turn: the next request starts on replica 0 (A)
    while (firstReplica(2) !== 1);
    const o = await oneRequest({ urls: [a.url, b.url], model: MODEL, maxTokens: MAX_TOKENS, deadlineMs: 30_000 });
    const diag = JSON.stringify({ o, admitted, logA: logs.get(a.p)!.split('\n').slice(-8) });

    expect(o, diag).toMatchObject({ ok: true, hung: false, replica: 1, retries: 0, resumed: 1, resumedOnError: 1, resent: 0, words: MAX_TOKENS, idsInOrder: true });
    expect(o.failure, diag).toBeUndefined();
    // two legs: A's, and B's continuation from the token after the last one the client got from A, for the rest of max_tokens
    expect(admitted.length, diag).toBe(2);
    const [first, cont] = admitted as [(typeof admitted)[0], (typeof admitted)[0]];
    expect(first, diag).toMatchObject({ from: 0, maxTokens: MAX_TOKENS });
    expect(cont.from, diag).toBeGreaterThanOrEqual(5);
    expect(cont.from, diag).toBeLessThan(MAX_TOKENS);
    expect(cont.maxTokens, diag).toBe(MAX_TOKENS - cont.from);
    // B counted the resume (the chaos report's gatewayResumed); A drained and exited 0
    const metrics = await (await fetch(`${b.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    expect(parseScrape(metrics).counters.resumed, diag).toBe(1);
    expect(await exited, diag).toBe(0);
  }, 60_000);
});
