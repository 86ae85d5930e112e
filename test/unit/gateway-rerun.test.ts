/**
 * A request of which nothing reached the client is sent again as it came, under a new leg id, whether or not its
 * stream could be continued (guided decoding, echo, a token-id prompt): an engine that dies before its first token, a
 * queued leg the pool leader ends. A leg ended by someone else than its instance (the pool leader judging the instance
 * dead) is cancelled when the request moves on, so a live instance frees its seat. On a virtual clock over the
 * in-memory Bus stand-in (test/helpers/virtual-bus.ts), with real HTTP engines for the direct path.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { Cancel, TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';
import { runFor as run } from '../helpers/relay-backend.ts';

const START = 1_700_000_000_000;
async function until(ok: () => boolean, ms = 8000): Promise<void> {
  for (let t = 0; !ok() && t < ms; t += 5) await new Promise((r) => setTimeout(r, 5));
}
const delta = (d: Record<string, unknown>, finish: string | null = null, usage?: unknown) => ({ choices: [{ index: 0, delta: d, finish_reason: finish }], ...(usage ? { usage } : {}) });

/** An engine: each call's events (`everyMs` apart), then the end, or its connection cut (`dies`). */
async function engine(script: (i: number) => { events: unknown[]; dies: boolean; everyMs?: number }) {
  const bodies: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (b: Buffer) => (raw += b.toString()));
    req.on('end', () => void (async () => {
      bodies.push(JSON.parse(raw) as Record<string, unknown>);
      const { events, dies, everyMs } = script(bodies.length - 1);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const e of events) {
        if (res.destroyed) return;
        res.write(`data: ${JSON.stringify(e)}\n\n`);
        if (everyMs) await new Promise((r) => setTimeout(r, everyMs));
      }
      if (dies) setTimeout(() => res.socket?.destroy(), 20);
      else res.end('data: [DONE]\n\n');
    })());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, close: () => server.close() };
}

/** A direct backend whose intake admits leg k on instance i<k>, granting `grantOf(k)` (none: the leg stays queued). */
function setup(grantOf: (k: number) => string | undefined) {
  const clock = new ManualClock(START);
  const bus = new VirtualBus(clock);
  const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, clock });
  const legs: InferenceRequest[] = [];
  bus.responders.set(subjects.clusterIntake(), (m, reply) => {
    const leg = m as InferenceRequest;
    if (!legs.some((l) => l.id === leg.id)) legs.push(leg);
    const k = legs.findIndex((l) => l.id === leg.id);
    const url = grantOf(k);
    if (url) bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: `i${k}`, pool: 'p', type: 'SS', grant: { url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
    reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: `i${k}`, type: 'SS' });
  });
  bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 12 }));
  const cancels: string[] = [];
  bus.subscribe(subjects.cancelAll(), Cancel, (c) => cancels.push(c.id));
  return { clock, bus, backend, legs, cancels };
}

async function read(clock: ManualClock, backend: NatsBackend, req: InferenceRequest) {
  const out: { chunks: TokenChunk[]; err?: unknown; done?: boolean } = { chunks: [] };
  const s = backend.submit(req, new AbortController().signal);
  await run(clock, 10);
  void (async () => {
    for await (const c of await s) out.chunks.push(c);
  })().then(() => (out.done = true), (e: unknown) => ((out.err = e), (out.done = true)));
  return out;
}

const chat = (id: string, params?: Record<string, unknown>): InferenceRequest => ({
  v: 1, id, model: 'm', kind: 'chat', messages: [{ role: 'user', content: 'json please' }], inputTokens: 5, maxTokens: 100, arrivalMs: START, giveUpAtMs: START + 60_000, streamSubject: subjects.stream(id), ...(params ? { params } : {}),
});

describe('a request with nothing sent to its client', () => {
  for (const [name, params] of [['guided json_object', { response_format: { type: 'json_object' } }], ['echo', { echo: true }]] as const) {
    it(`${name}: an engine that dies before its first token; the request runs again, as it came, on a peer`, async () => {
      const dead = await engine(() => ({ events: [delta({ role: 'assistant', content: '' })], dies: true }));
      const peer = await engine(() => ({ events: [delta({ role: 'assistant', content: '' }), delta({ content: '{}' }, 'stop', { prompt_tokens: 5, completion_tokens: 1 })], dies: false }));
      const { clock, backend, legs } = setup((k) => (k === 0 ? dead.url : peer.url));
      const req = chat(`rr-${name.split(' ')[0]}`, params);
      const out = await read(clock, backend, req);
      await until(() => out.done === true);
      dead.close();
      peer.close();
      expect(out.err).toBeUndefined();
      expect(legs.map((l) => l.id)).toEqual([req.id, `${req.id}-m1`]);
      expect(peer.bodies).toHaveLength(1);
      // the same request: its messages without an assistant turn, its params as they came, its whole budget
      expect(legs[1]).toMatchObject({ messages: req.messages, params: req.params, maxTokens: 100 });
      expect(peer.bodies[0]!.messages).toEqual(req.messages);
      expect(out.chunks.map((c) => c.text).join('')).toBe('{}');
      expect(out.chunks.at(-1)).toMatchObject({ done: true, finishReason: 'stop' });
      expect(out.chunks.at(-1)!.error).toBeUndefined();
    });
  }

  it('guided_choice: a queued leg the pool leader ends (its instance judged dead) runs again, and the old leg id is cancelled', async () => {
    const peer = await engine(() => ({ events: [delta({ role: 'assistant', content: '' }), delta({ content: 'yes' }, 'stop', { prompt_tokens: 5, completion_tokens: 1 })], dies: false }));
    const { clock, bus, backend, legs, cancels } = setup((k) => (k === 0 ? undefined : peer.url));
    const req = chat('rr-choice', { guided_choice: ['yes', 'no'] });
    const out = await read(clock, backend, req);
    await run(clock, 20);
    bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 0, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'unavailable', message: 'instance i0 died holding the request', retryable: true }, instance: 'i0', pool: 'p' });
    await run(clock, 50);
    await until(() => out.done === true);
    peer.close();
    expect(out.err).toBeUndefined();
    expect(legs.map((l) => l.id)).toEqual([req.id, `${req.id}-m1`]);
    expect(legs[1]!.params).toEqual(req.params);
    expect(out.chunks.map((c) => c.text).join('')).toBe('yes');
    expect(cancels).toContain(req.id);
  });
});

describe('a leg ended by the control plane mid-stream', () => {
  it('is cancelled at its instance when the request continues on a peer', async () => {
    const a = await engine(() => ({ events: Array.from({ length: 400 }, (_, i) => delta({ content: `a${i} ` })), dies: false, everyMs: 10 }));
    const b = await engine(() => ({ events: [delta({ content: 'b ' }, 'stop', { prompt_tokens: 20, completion_tokens: 1 })], dies: false }));
    const { clock, bus, backend, legs, cancels } = setup((k) => (k === 0 ? a.url : b.url));
    const req = chat('rr-ended');
    const out = await read(clock, backend, req);
    await until(() => out.chunks.length >= 3);
    // the pool leader judged i0 dead (its link was silent) and ends its stream; i0 still serves the leg
    bus.publish(req.streamSubject, TokenChunk, { v: 1, id: req.id, seq: 4, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'unavailable', message: 'instance i0 died while serving the request', retryable: true }, instance: 'i0', pool: 'p' });
    await until(() => legs.length === 2);
    await run(clock, 50);
    await until(() => out.done === true);
    a.close();
    b.close();
    expect(out.err).toBeUndefined();
    expect(legs[1]!.id).toBe(`${req.id}-m1`);
    expect(out.chunks.at(-1)).toMatchObject({ done: true, finishReason: 'stop' });
    expect(cancels).toContain(req.id);
  });
});
