/**
 * Issue 13, a gateway replica's death (docs/PROTOCOL.md "Resumable streams"): real processes throughout (a
 * nats-server with the project's permissions, cluster, pool and node managers, two instance managers with emulated
 * engines, two gateway actor processes). A client opts in to a resumable stream on gateway A; A is SIGKILLed
 * mid-stream, which cuts the client's connection and A's engine call. The client reconnects to gateway B with
 * Last-Event-ID, the id of its last whole event. B reads A's journal, sends the events the client missed, ends
 * A's leg on its instance (which records it once, with its energy) and continues the generation as a new leg.
 *
 * Expected: one stream to the client, every event id once and in order, exactly max_tokens words (the emulator
 * makes one word per token: a lost token shows as fewer, a duplicated one as more), usage counting every token
 * and the energy of both legs, each leg recorded once by its instance (A's leg at once, not at its deadline).
 *
 * A gateway C SIGKILLed mid-stream whose client never resumes: the instance ends C's leg and frees its seat once C's
 * heartbeats have lapsed (3 s) plus the resume grace (timeouts.resumeGraceMs, 2 s here), not at the request's
 * give-up time (10 min).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { startHarness, type Harness } from '../integration/control-harness.ts';
import { freePort } from '../helpers/net.ts';
import { RequestRecord, subjects, type RequestRecord as Rec } from '../../protocols/index.ts';

const MODEL = 'llama3.1-8b';
const MAX_TOKENS = 150;
let h: Harness;
let urlA: string;
let urlB: string;
const records: Rec[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function healthy(url: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return;
    await sleep(250);
  }
  throw new Error(`${url} not healthy within ${ms} ms`);
}

beforeAll(async () => {
  h = await startHarness({
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    timeouts: { resumeGraceMs: 2000 },
    // a quarter of real time: ~30 ms per token, so a 150-token answer takes seconds and the kill lands mid-stream
    engine: { kind: 'emulator', timeScale: 0.25, healthDeadlineMs: 30_000, initialTp: 1, maxInEngine: 16, maxQueued: 64 },
  });
  // the gateways connect as the gateway role
  const cfg = JSON.parse(readFileSync(h.cfgPath, 'utf8')) as { nats: { roles: Record<string, unknown> } };
  cfg.nats.roles.gateway = h.nats.creds('gateway');
  writeFileSync(h.cfgPath, JSON.stringify(cfg));
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.push(r), { capacity: 4096 });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  await h.waitReady(2, 90_000);
  const [pa, pb] = [await freePort(), await freePort()];
  urlA = `http://127.0.0.1:${pa}`;
  urlB = `http://127.0.0.1:${pb}`;
  h.startActor('gateway', 'gw-a', ['--port', String(pa)]);
  h.startActor('gateway', 'gw-b', ['--port', String(pb)]);
  await Promise.all([healthy(urlA, 60_000), healthy(urlB, 60_000)]);
}, 180_000);

afterAll(async () => {
  await h?.stop();
}, 30_000);

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

describe('a gateway replica SIGKILLed mid-stream: the client resumes on another replica', () => {
  it('the stream continues on gateway B from Last-Event-ID: every token once, usage and energy over both legs, each leg recorded once', async () => {
    // on A: read until ~30 tokens arrived, then kill A
    const r1 = await fetch(`${urlA}/v1/completions`, { method: 'POST', headers, body });
    expect(r1.status).toBe(200);
    const id = r1.headers.get('x-request-id')!;
    const dec = new TextDecoder();
    let got = '';
    let broke = false;
    const reader = r1.body!.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        got += dec.decode(value, { stream: true });
        if (events(got).length >= 30 && h.procs.get('gw-a')!.exitCode === null && !h.procs.get('gw-a')!.killed) h.procs.get('gw-a')!.kill('SIGKILL');
      }
    } catch {
      broke = true;
    }
    const first = events(got);
    expect(first.at(-1)?.data, 'gateway A was killed before the stream ended').not.toBe('[DONE]');
    expect(broke || first.at(-1)?.data !== '[DONE]').toBe(true);
    expect(first.length).toBeGreaterThanOrEqual(30);
    expect(first.map((e) => e.id)).toEqual(first.map((_, i) => `${id}:${i}`));

    // on B, from the last whole event
    const r2 = await fetch(`${urlB}/v1/completions`, { method: 'POST', headers: { ...headers, 'last-event-id': first.at(-1)!.id! }, body });
    const rest = await r2.text();
    expect(r2.status, rest.slice(0, 500)).toBe(200);
    const second = events(rest);
    expect(second.at(-1)?.data).toBe('[DONE]');
    const all = [...first, ...second.slice(0, -1)];
    expect(all.map((e) => e.id)).toEqual(all.map((_, i) => `${id}:${i}`));
    const chunks = all.map((e) => JSON.parse(e.data) as { choices: { text?: string; finish_reason?: string | null }[]; usage?: { completion_tokens: number; energy_joules: number } });
    const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
    expect(text.trim().split(/\s+/).length).toBe(MAX_TOKENS);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
    const usage = chunks.at(-1)!.usage!;
    expect(usage.completion_tokens).toBe(MAX_TOKENS);

    // each leg recorded once by its instance: A's leg (ended by B's report on A's behalf, at once) and B's continuation
    let legs: Rec[] = [];
    for (let t = 0; t < 100; t++) {
      legs = records.filter((r) => r.id === id || r.id.startsWith(`${id}-`));
      if (legs.length >= 2) break;
      await sleep(100);
    }
    await sleep(500);
    legs = records.filter((r) => r.id === id || r.id.startsWith(`${id}-`));
    expect(legs.map((r) => r.outcome).sort(), JSON.stringify(legs)).toEqual(['failed', 'ok']);
    expect(new Set(legs.map((r) => r.id)).size).toBe(2);
    expect(legs.reduce((n, r) => n + r.completionTokens, 0)).toBe(MAX_TOKENS);
    expect(usage.energy_joules).toBeCloseTo(legs.reduce((n, r) => n + r.energyJ, 0), 2);
  }, 120_000);

  it('gateway C killed mid-stream and its client never resumes: the instance ends the leg within the heartbeat lapse plus the grace, not at the give-up time', async () => {
    const pc = await freePort();
    const urlC = `http://127.0.0.1:${pc}`;
    h.startActor('gateway', 'gw-c', ['--port', String(pc)]);
    await healthy(urlC, 60_000);
    const r = await fetch(`${urlC}/v1/completions`, { method: 'POST', headers, body });
    expect(r.status).toBe(200);
    const id = r.headers.get('x-request-id')!;
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let got = '';
    let killedAt = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        got += dec.decode(value, { stream: true });
        if (events(got).length >= 20 && !killedAt) {
          killedAt = Date.now();
          h.procs.get('gw-c')!.kill('SIGKILL');
        }
      }
    } catch {
      // the connection died with gateway C
    }
    expect(killedAt).toBeGreaterThan(0);
    // the leg recorded failed, not before the grace, and within a twentieth of the give-up time (the time it would be
    // held if nothing ended it; the lapse plus the grace take 5 s)
    let rec: Rec | undefined;
    while (!rec && Date.now() < killedAt + 30_000) {
      rec = records.find((x) => x.id === id);
      if (!rec) await sleep(100);
    }
    const tookMs = Date.now() - killedAt;
    console.log(`gateway C killed: its leg recorded ${rec?.outcome ?? 'never'} after ${tookMs} ms (heartbeat lapse 3 s + resume grace 2 s)`);
    expect(rec, 'no record of the leg within 30 s of its gateway\'s death').toBeDefined();
    expect(rec!.outcome).toBe('failed');
    expect(tookMs).toBeGreaterThanOrEqual(2000);
  }, 120_000);
});
