/**
 * Issue 13, the resume journal across a NATS node's death (docs/PROTOCOL.md "Resumable streams"): real processes
 * throughout (a 3-node nats-server cluster with JetStream R3 and the project's permissions, cluster, pool and node
 * managers, two instance managers with emulated engines, two gateway actor processes).
 *
 * The NATS node leading the journal's stream (DYN_V1_RESUME) is SIGKILLed; a client at once opts in to a resumable
 * stream on gateway A; once it has 20 events, A is SIGKILLed; the client resumes on gateway B with Last-Event-ID.
 * While the stream has no leader (its replicas elect one within their election timeout, seconds) nothing is appended
 * to it: a journal entry published without JetStream's acknowledgement is lost, and B finds no head (404) or a
 * journal behind its client. Expected: the resume answers 200 and the client has one stream, every event id once
 * and in order, exactly max_tokens words (the emulator makes one word per token: a lost token shows as fewer, a
 * duplicated one as more), usage counting every token.
 *
 * Then every NATS node is stopped, and a resume of that stream is answered by a retryable 503 with Retry-After.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { harnessOver, type Harness } from '../integration/control-harness.ts';
import { freePort } from '../helpers/net.ts';
import { creds, startNatsCluster, as } from '../helpers/nats.ts';
import { bucketsWhenReady } from '../helpers/planner-fixture.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ensureResumeStream } from '../../actors/common/events.ts';
import { jetstream } from '../../protocols/index.ts';

const MODEL = 'llama3.1-8b';
const MAX_TOKENS = 120;
let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
let h: Harness;
let admin: Bus;
let urlA: string;
let urlB: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (...a: unknown[]) => process.env.DYN_TEST_DEBUG && console.log('[journal]', ...a);

async function healthy(url: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return;
    await sleep(250);
  }
  throw new Error(`${url} not healthy within ${ms} ms`);
}

/** the server (index) leading the journal's stream, from its info. */
async function journalLeader(): Promise<number> {
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(admin.nc);
  const leader = (await jsm.streams.info(jetstream.resumeStream)).cluster?.leader;
  const i = cluster.servers.findIndex((_, j) => leader?.endsWith(`-${j}`));
  if (i < 0) throw new Error(`no leader of ${jetstream.resumeStream}: ${String(leader)}`);
  return i;
}

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  admin = await Bus.connect({ servers: cluster.urls, name: 'test-admin', ...as('admin'), log: silentLogger() });
  admin.jetstreamReplicas = 3;
  // the journal's stream, R3, made once the cluster's meta leader answers
  await bucketsWhenReady(admin, () => ensureResumeStream(admin));
  const config = {
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    timeouts: { resumeGraceMs: 2000 },
    // a quarter of real time: ~30 ms per token, so the answer takes seconds and the kill lands mid-stream
    engine: { kind: 'emulator', timeScale: 0.25, healthDeadlineMs: 30_000, initialTp: 1, maxInEngine: 16, maxQueued: 64 },
  };
  const roles: Record<string, { user: string; pass: string }> = {};
  for (const r of ['cluster', 'pool', 'instance', 'node', 'gateway'] as const) roles[r] = creds(r);
  const cfgPath = join(mkdtempSync(join(tmpdir(), 'dyn-journal-')), 'cluster.json');
  writeFileSync(cfgPath, JSON.stringify({ ...config, nats: { url: cluster.urls.join(','), roles, jetstreamReplicas: 3 } }));
  const bus = await Bus.connect({ servers: cluster.urls, name: 'test-gateway', ...as('admin'), log: silentLogger() });
  h = harnessOver({ nats: { url: cluster.urls[0]!, port: 0, pid: cluster.servers[0]!.pid, creds, as, stop: () => cluster.stop() }, bus, cfgPath, config });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  await h.waitReady(2, 120_000);
  const [pa, pb] = [await freePort(), await freePort()];
  urlA = `http://127.0.0.1:${pa}`;
  urlB = `http://127.0.0.1:${pb}`;
  h.startActor('gateway', 'gw-a', ['--port', String(pa)]);
  h.startActor('gateway', 'gw-b', ['--port', String(pb)]);
  await Promise.all([healthy(urlA, 60_000), healthy(urlB, 60_000)]);
}, 240_000);

afterAll(async () => {
  await admin?.close().catch(() => {});
  await h?.stop();
}, 60_000);

interface Ev { id?: string; data: string }

/** The whole SSE events in `text` (a cut one at the end is left out). */
function events(text: string): Ev[] {
  const out: Ev[] = [];
  for (const block of text.split('\n\n').slice(0, -1)) {
    const id = /^id: (.*)$/m.exec(block)?.[1];
    out.push({ ...(id !== undefined ? { id } : {}), data: /^data: (.*)$/m.exec(block)?.[1] ?? '' });
  }
  return out;
}

const body = JSON.stringify({ model: MODEL, prompt: 'Tell me about energy efficient inference in large clusters.', max_tokens: MAX_TOKENS, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
const headers = { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' };

describe('the journal\'s NATS node killed, then the gateway carrying a resumable stream', () => {
  let streamId = '';
  let lastId = '';

  it('the stream resumes on another gateway: every token once, every event id once and in order', async () => {
    const leader = await journalLeader();
    const killedAt = Date.now();
    process.kill(cluster.servers[leader]!.pid, 'SIGKILL');
    log('killed nats', leader);

    const r1 = await fetch(`${urlA}/v1/completions`, { method: 'POST', headers, body });
    const firstByteMs = Date.now() - killedAt;
    expect(r1.status).toBe(200);
    streamId = r1.headers.get('x-request-id')!;
    const dec = new TextDecoder();
    let got = '';
    let gwKilledAt = 0;
    const reader = r1.body!.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        got += dec.decode(value, { stream: true });
        if (events(got).length >= 20 && !gwKilledAt) {
          gwKilledAt = Date.now();
          h.procs.get('gw-a')!.kill('SIGKILL');
        }
      }
    } catch {
      // the connection died with gateway A
    }
    log('first byte', firstByteMs, 'ms after the nats kill; gateway killed', gwKilledAt - killedAt, 'ms after it');
    const first = events(got);
    expect(gwKilledAt).toBeGreaterThan(0);
    expect(first.at(-1)?.data, 'gateway A was killed before the stream ended').not.toBe('[DONE]');
    expect(first.map((e) => e.id)).toEqual(first.map((_, i) => `${streamId}:${i}`));

    // on B, from the last whole event (a 503 is sent again, as a client does after Retry-After)
    let r2: Response | undefined;
    let refusal = '';
    for (let t = 0; t < 10; t++) {
      r2 = await fetch(`${urlB}/v1/completions`, { method: 'POST', headers: { ...headers, 'last-event-id': first.at(-1)!.id! }, body });
      if (r2.status !== 503) break;
      refusal = await r2.text();
      log('resume 503', refusal);
      await sleep(1000);
    }
    const rest = await r2!.text();
    expect(r2!.status, `${rest.slice(0, 500)} ${refusal}`).toBe(200);
    const second = events(rest);
    expect(second.at(-1)?.data).toBe('[DONE]');
    const all = [...first, ...second.slice(0, -1)];
    expect(all.map((e) => e.id)).toEqual(all.map((_, i) => `${streamId}:${i}`));
    const chunks = all.map((e) => JSON.parse(e.data) as { choices: { text?: string; finish_reason?: string | null }[]; usage?: { completion_tokens: number } });
    const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
    expect(text.trim().split(/\s+/).length).toBe(MAX_TOKENS);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(MAX_TOKENS);
    lastId = all.at(-3)!.id!;
    // the response said the stream was resumable (its head held by the journal)
    expect(r1.headers.get('x-dynamollm-resumable')).toBe('1');
  }, 120_000);

  it('a resume while NATS is down: a retryable 503 with Retry-After', async () => {
    expect(streamId).not.toBe('');
    for (const s of cluster.servers) {
      try {
        process.kill(s.pid, 'SIGKILL');
      } catch {
        // already dead (the journal's leader)
      }
    }
    await sleep(500);
    const r = await fetch(`${urlB}/v1/completions`, { method: 'POST', headers: { ...headers, 'last-event-id': lastId || `${streamId}:0` }, body, signal: AbortSignal.timeout(20_000) });
    const text = await r.text();
    log('resume with nats down', r.status, text.slice(0, 300));
    expect(r.status, text).toBe(503);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(text)).toMatchObject({ error: { type: 'service_unavailable' } });
  }, 60_000);
});
