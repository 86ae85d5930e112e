/**
 * Issue 13, the resume journal across a NATS node's death (docs/PROTOCOL.md "Resumable streams"): real processes
 * throughout (a 3-node nats-server cluster with JetStream R3 and the project's permissions, cluster, pool and node
 * managers, two instance managers with emulated engines, two gateway actor processes).
 *
 * A resumable stream is under way on gateway A when the NATS node leading the journal's stream (DYN_V1_RESUME) is
 * SIGKILLed, and a client at once opts in to another. While the stream has no leader (its replicas elect one within
 * their election timeout, 4-9 s) nothing is appended to it, and a client is never sent what the journal does not
 * hold while its stream is declared resumable. Each wait is bounded by a share of the request's SLO
 * (gateway.journal.sloShare, 0.5): the stream started during the election gets its first byte within its head bound
 * (half its TTFT SLO) past a stream's usual first byte, served without resumption (`x-dynamollm-resumable: 0`); the
 * stream under way (long enough to outlast the election) is held half its TBT SLO, then goes on without event ids
 * (its last event id reset, the reason in an SSE comment), its tokens never stalled for the election, and once the
 * journal has a leader again and holds every event the client was sent, its events carry ids again (each its
 * event's index). A resume of it from an id before the reset is refused (410: the unresumable range its gateway
 * marked); one from its first id after the catch-up gets exactly the events the client had after it. Both streams
 * give every token once; gateway A counts both timeouts in dynamollm_gateway_journal_timeouts_total.
 *
 * Once the journal has its new leader, two more gateways start, C and D, their journal waits bounded only by its caps
 * (`--set journal.sloShare=0`: a write slowed by a loaded host is waited for, not given up at half a TBT SLO, so
 * every event of their streams carries an id). A resumable stream starts on gateway C; once it has 20 events, C is
 * SIGKILLed; the client resumes on gateway D with Last-Event-ID. Expected: the resume answers 200 and the client has
 * one stream, every event id once and in order, exactly max_tokens words (the emulator makes one word per token: a
 * lost token shows as fewer, a duplicated one as more), usage counting every token.
 *
 * Then every NATS node is stopped, and a resume of that stream (on D) is answered by a retryable 503 with
 * Retry-After.
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
/** the stream under way at the kill: ~30 ms per token, so it outlasts the election (4-9 s) and the journal's catch-up. */
const LONG_TOKENS = 500;
let cluster: Awaited<ReturnType<typeof startNatsCluster>>;
let h: Harness;
let admin: Bus;
let urlA: string;
let urlB: string;
/** gateway D (started by the second test), its journal waits bounded by the journal's caps only */
let urlD = '';
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
    // the waits bounded by half the request's SLO (the default, 0, waits for the journal's new leader)
    gateway: { journal: { sloShare: 0.5 } },
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
const longBody = JSON.stringify({ ...(JSON.parse(body) as object), max_tokens: LONG_TOKENS });
const headers = { 'content-type': 'application/json', 'x-dynamollm-resumable': '1' };

/**
 * A client reading one stream: the text so far, the longest pause between two reads once it had its first event
 * (ms), and when each whole event arrived (epoch ms, by index).
 */
function reading(r: Response): { text: () => string; maxGapMs: () => number; arrivedAt: (i: number) => number; done: Promise<void>; read: (n: number) => Promise<void> } {
  const dec = new TextDecoder();
  let text = '';
  let last = 0;
  let gap = 0;
  const arrived: number[] = [];
  const waiters: { n: number; ok: () => void }[] = [];
  const reader = r.body!.getReader();
  const done = (async () => {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      const now = Date.now();
      if (last) gap = Math.max(gap, now - last);
      last = now;
      text += dec.decode(value, { stream: true });
      const n = events(text).length;
      while (arrived.length < n) arrived.push(now);
      for (const w of waiters.splice(0)) if (n >= w.n) w.ok(); else waiters.push(w);
    }
    for (const w of waiters.splice(0)) w.ok();
  })();
  return {
    text: () => text,
    maxGapMs: () => gap,
    arrivedAt: (i) => arrived[i] ?? NaN,
    done,
    read: (n) => (events(text).length >= n ? Promise.resolve() : new Promise<void>((ok) => waiters.push({ n, ok }))),
  };
}

/** one stream's events as parsed chunks, and its text's words. */
function wordsOf(evs: Ev[]): number {
  const chunks = evs.filter((e) => e.data.startsWith('{')).map((e) => JSON.parse(e.data) as { choices: { text?: string }[] });
  return chunks.map((c) => c.choices[0]?.text ?? '').join('').trim().split(/\s+/).length;
}

/** a gateway's count of journal timeouts by wait, from its /metrics. */
async function journalTimeouts(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^dynamollm_gateway_journal_timeouts_total\{wait="(\w+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * nats-server's least Raft election timeout (4 s; a replica campaigns 4-9 s after it last heard from its leader): no
 * replica of the journal's stream leads earlier than this after the leader's SIGKILL, so a stream that waited for the
 * journal (gateway.journal.sloShare 0, or the SLO bound missing) has its first byte, and a stream under way its next
 * event, no earlier. The bounds below are that, not a latency target; the figures are printed.
 */
const ELECTION_MIN_MS = 4000;

describe('the journal\'s NATS node killed, then the gateway carrying a resumable stream', () => {
  let streamId = '';
  let lastId = '';

  it('streams under way and started while the journal elects a leader: first byte and tokens within their SLO bounds, every token once', async () => {
    // a stream's usual first byte and length here (the journal healthy): the second of two
    let usualFirstByteMs = 0;
    let usualMs = 0;
    let t = 0;
    for (let i = 0; i < 2; i++) {
      t = Date.now();
      const warm = await fetch(`${urlA}/v1/completions`, { method: 'POST', headers, body });
      usualFirstByteMs = Date.now() - t;
      expect(warm.headers.get('x-dynamollm-resumable')).toBe('1');
      await warm.text();
      usualMs = Date.now() - t;
    }

    const r0 = await fetch(`${urlA}/v1/completions`, { method: 'POST', headers, body: longBody });
    expect(r0.headers.get('x-dynamollm-resumable')).toBe('1');
    const before = reading(r0);
    await before.read(10);
    const leader = await journalLeader();
    const killedAt = Date.now();
    process.kill(cluster.servers[leader]!.pid, 'SIGKILL');
    log('killed nats', leader);

    t = Date.now();
    const r1 = await fetch(`${urlA}/v1/completions`, { method: 'POST', headers, body });
    const firstByteAt = Date.now();
    const during = reading(r1);
    await Promise.all([before.done, during.done]);
    console.log(`journal leader killed: usual first byte ${usualFirstByteMs} ms (whole stream ${usualMs} ms); a stream sent at +${t - killedAt} ms ` +
      `had its first byte after ${firstByteAt - t} ms (+${firstByteAt - killedAt} ms), its longest pause ${during.maxGapMs()} ms; ` +
      `the stream under way: longest pause ${before.maxGapMs()} ms; both done ${Date.now() - killedAt} ms after the kill`);

    // started during the election: served without resumption (the head wait's timeout counted below), its first
    // byte before any new leader of the journal could be elected
    expect(r1.status).toBe(200);
    expect(r1.headers.get('x-dynamollm-resumable')).toBe('0');
    expect(firstByteAt - killedAt, 'first byte before the journal could have a new leader').toBeLessThan(ELECTION_MIN_MS);
    const evDuring = events(during.text());
    expect(evDuring.at(-1)?.data).toBe('[DONE]');
    expect(evDuring.every((e) => e.id === undefined)).toBe(true);
    expect(wordsOf(evDuring)).toBe(MAX_TOKENS);

    // under way: never stalled for the election (no pause of half the least election); ids on the events the
    // journal held, then the reset and events without ids, then (the journal caught up) ids again; every id its
    // event's index
    expect(before.maxGapMs(), 'the stream under way paused for the election').toBeLessThan(ELECTION_MIN_MS / 2);
    const evBefore = events(before.text());
    expect(evBefore.at(-1)?.data).toBe('[DONE]');
    expect(wordsOf(evBefore)).toBe(LONG_TOKENS);
    const idOf = r0.headers.get('x-request-id')!;
    const withId = evBefore.flatMap((e, i) => (e.id !== undefined ? [i] : []));
    for (const i of withId) expect(evBefore[i]!.id).toBe(`${idOf}:${i}`);
    const firstReset = before.text().search(/^: not resumable: the journal did not hold an entry within 50 ms\nid:\n/m);
    expect(firstReset).toBeGreaterThan(0);
    const reset = events(before.text().slice(0, firstReset)).length;
    expect(reset).toBeGreaterThan(0);
    expect(withId.slice(0, reset)).toEqual(Array.from({ length: reset }, (_, i) => i));
    const resets = before.text().match(/^: not resumable: [^\n]*\nid:\n/gm)!.length;
    // the ids came back: the last range (there may be more than one on a loaded VM) closed before the end
    let back = evBefore.length - 1;
    while (back > 0 && evBefore[back - 1]!.id !== undefined) back--;
    log('stream under way: reset at event', reset, 'ids again from event', back, 'of', evBefore.length, '; resets', resets, '; ids again at +', before.arrivedAt(back) - killedAt, 'ms');
    expect(back).toBeGreaterThan(reset);
    expect(back).toBeLessThan(evBefore.length - 3);
    // the stream went on while the journal had no leader: events were sent without ids during the least election
    const sentWithoutIds = evBefore.filter((e, i) => i >= reset && e.id === undefined && before.arrivedAt(i) - killedAt < ELECTION_MIN_MS).length;
    expect(sentWithoutIds, 'events sent while the journal could have no leader').toBeGreaterThan(10);

    // gateway A counted both (a write of the streams before the kill may have passed its 50 ms on a loaded VM too)
    const timeouts = await journalTimeouts(urlA);
    log('journal timeouts at gateway A', timeouts);
    expect(timeouts.head).toBe(1);
    expect(timeouts.write).toBeGreaterThanOrEqual(1);

    // a resume from the last id before the reset is refused (the client has the events after it); one from the
    // first id after the catch-up gets exactly the events the client had after it
    const resume = async (last: number): Promise<Response> => {
      let r: Response | undefined;
      for (let i = 0; i < 30; i++) {
        r = await fetch(`${urlB}/v1/completions`, { method: 'POST', headers: { ...headers, 'last-event-id': `${idOf}:${last}` }, body: longBody });
        if (r.status !== 503) break;
        await r.text();
        await sleep(1000);
      }
      return r!;
    };
    const gone = await resume(reset - 1);
    const goneText = await gone.text();
    expect(gone.status, goneText).toBe(410);
    expect(goneText).toMatch(/sent without ids/);
    const again = await resume(back);
    const againText = await again.text();
    expect(again.status, againText.slice(0, 500)).toBe(200);
    const replayed = events(againText);
    expect(replayed.map((e) => e.id ?? e.data)).toEqual(evBefore.slice(back + 1).map((e) => e.id ?? e.data));
    const textOf = (evs: Ev[]) => evs.filter((e) => e.data.startsWith('{')).map((e) => (JSON.parse(e.data) as { choices: { text?: string }[] }).choices[0]?.text ?? '').join('');
    expect(textOf(replayed)).toBe(textOf(evBefore.slice(back + 1)));
    log('resume of the stream under way: before the reset', gone.status, '; after the catch-up', again.status, replayed.length, 'events,', Date.now() - killedAt, 'ms after the kill');
  }, 120_000);

  it('the stream resumes on another gateway: every token once, every event id once and in order', async () => {
    // the journal has its new leader (the reads above); C and D wait for each journal write up to its caps (10 s)
    const [pc, pd] = [await freePort(), await freePort()];
    const urlC = `http://127.0.0.1:${pc}`;
    urlD = `http://127.0.0.1:${pd}`;
    h.startActor('gateway', 'gw-c', ['--port', String(pc), '--set', 'journal.sloShare=0']);
    h.startActor('gateway', 'gw-d', ['--port', String(pd), '--set', 'journal.sloShare=0']);
    await Promise.all([healthy(urlC, 60_000), healthy(urlD, 60_000)]);
    const r1 = await fetch(`${urlC}/v1/completions`, { method: 'POST', headers, body });
    expect(r1.status).toBe(200);
    expect(r1.headers.get('x-dynamollm-resumable')).toBe('1');
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
          h.procs.get('gw-c')!.kill('SIGKILL');
        }
      }
    } catch {
      // the connection died with gateway C
    }
    const first = events(got);
    expect(gwKilledAt).toBeGreaterThan(0);
    expect(first.at(-1)?.data, 'gateway C was killed before the stream ended').not.toBe('[DONE]');
    expect(first.map((e) => e.id)).toEqual(first.map((_, i) => `${streamId}:${i}`));

    // on D, from the last whole event (a 503 is sent again, as a client does after Retry-After)
    let r2: Response | undefined;
    let refusal = '';
    for (let t = 0; t < 10; t++) {
      r2 = await fetch(`${urlD}/v1/completions`, { method: 'POST', headers: { ...headers, 'last-event-id': first.at(-1)!.id! }, body });
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
  }, 180_000);

  it('a resume while NATS is down: a retryable 503 with Retry-After', async () => {
    expect(streamId).not.toBe('');
    expect(urlD).not.toBe('');
    for (const s of cluster.servers) {
      try {
        process.kill(s.pid, 'SIGKILL');
      } catch {
        // already dead (the journal's leader)
      }
    }
    await sleep(500);
    const r = await fetch(`${urlD}/v1/completions`, { method: 'POST', headers: { ...headers, 'last-event-id': lastId || `${streamId}:0` }, body, signal: AbortSignal.timeout(20_000) });
    const text = await r.text();
    log('resume with nats down', r.status, text.slice(0, 300));
    expect(r.status, text).toBe(503);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(text)).toMatchObject({ error: { type: 'ServiceUnavailableError', code: 503 } });
  }, 60_000);
});
