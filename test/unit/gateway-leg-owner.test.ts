/**
 * A leg belongs to the instance of its first grant or token (relay-order.ts LegOrder.own). A second admission of the
 * same leg id on another instance (a pool leader that died between an admit and its stored entry, an instance declared
 * dead that still serves) publishes on the same stream subject: its chunks, terminal or not, are ignored. On a virtual
 * clock over the in-memory Bus stand-in (test/helpers/virtual-bus.ts), with a real HTTP engine for the direct path.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { LegOrder } from '../../actors/gateway/relay-order.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';
import { relayBackend, runFor as run } from '../helpers/relay-backend.ts';

const START = 1_700_000_000_000;
async function until(ok: () => boolean, ms = 8000): Promise<void> {
  for (let t = 0; !ok() && t < ms; t += 5) await new Promise((r) => setTimeout(r, 5));
}
const delta = (d: Record<string, unknown>, finish: string | null = null, usage?: unknown) => ({ choices: [{ index: 0, delta: d, finish_reason: finish }], ...(usage ? { usage } : {}) });

/** An engine that streams `n` tokens, one every `everyMs` (wall clock), then stops. */
async function slowEngine(n: number, everyMs: number) {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => void (async () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < n; i++) {
        if (res.destroyed) return;
        res.write(`data: ${JSON.stringify(delta({ content: `t${i} ` }))}\n\n`);
        await new Promise((r) => setTimeout(r, everyMs));
      }
      res.write(`data: ${JSON.stringify(delta({}, 'stop', { prompt_tokens: 5, completion_tokens: n }))}\n\n`);
      res.end('data: [DONE]\n\n');
    })());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

describe('a leg tied to its instance', () => {
  it('direct: another instance\'s error on the leg\'s subject (its unused grant timing out) does not end the healthy stream', async () => {
    const a = await slowEngine(40, 10);
    const clock = new ManualClock(START);
    const bus = new VirtualBus(clock);
    const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, clock });
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: 'iA', pool: 'p', type: 'SS', grant: { url: a.url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
      reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: 'iA', type: 'SS' });
    });
    const id = 'dup1';
    const req: InferenceRequest = { v: 1, id, model: 'm', kind: 'chat', messages: [{ role: 'user', content: 'hi' }], inputTokens: 5, maxTokens: 100, arrivalMs: START, giveUpAtMs: START + 60_000, streamSubject: subjects.stream(id), params: { response_format: { type: 'json_object' } } };
    const chunks: TokenChunk[] = [];
    const out: { done?: boolean; err?: unknown } = {};
    const s = backend.submit(req, new AbortController().signal);
    await run(clock, 5);
    void (async () => {
      for await (const c of await s) chunks.push(c);
    })().then(() => (out.done = true), (e: unknown) => ((out.err = e), (out.done = true)));
    await until(() => chunks.length >= 5);
    // instance B holds a second admission of the same id: its grant, then its give-up on that grant
    bus.publish(subjects.stream(id), TokenChunk, { v: 1, id, seq: 0, text: '', tokens: 0, instance: 'iB', pool: 'p', type: 'SS', grant: { url: 'http://127.0.0.1:9', apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
    bus.publish(subjects.stream(id), TokenChunk, { v: 1, id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'timeout', message: 'no gateway took the grant of this request', retryable: true }, instance: 'iB', pool: 'p', type: 'SS' });
    await until(() => out.done === true);
    a.close();
    expect(out.err).toBeUndefined();
    const last = chunks.at(-1)!;
    expect(last.error).toBeUndefined();
    expect(last.finishReason).toBe('stop');
    expect(chunks.reduce((n, c) => n + c.tokens, 0)).toBe(40);
    expect(backend.counters.otherCopies).toBe(2);
  });

  it('direct: the pool leader\'s end of the leg, in its instance\'s name, still ends it', async () => {
    const a = await slowEngine(400, 10);
    const clock = new ManualClock(START);
    const bus = new VirtualBus(clock);
    const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, migrationLimit: 0, clock });
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: 'iA', pool: 'p', type: 'SS', grant: { url: a.url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
      reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: 'iA', type: 'SS' });
    });
    const id = 'end1';
    const req: InferenceRequest = { v: 1, id, model: 'm', kind: 'chat', messages: [{ role: 'user', content: 'hi' }], inputTokens: 5, maxTokens: 1000, arrivalMs: START, giveUpAtMs: START + 60_000, streamSubject: subjects.stream(id) };
    const chunks: TokenChunk[] = [];
    const out: { done?: boolean } = {};
    const s = backend.submit(req, new AbortController().signal);
    await run(clock, 5);
    void (async () => {
      for await (const c of await s) chunks.push(c);
    })().finally(() => (out.done = true));
    await until(() => chunks.length >= 3);
    bus.publish(subjects.stream(id), TokenChunk, { v: 1, id, seq: 4, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'unavailable', message: 'instance iA died', retryable: true }, instance: 'iA', pool: 'p' });
    await until(() => out.done === true);
    a.close();
    expect(chunks.at(-1)!.error?.code).toBe('unavailable');
    expect(chunks.reduce((n, c) => n + c.tokens, 0)).toBeLessThan(400);
  });

  it('relay: a second admission\'s chunks of the same seqs never mix into the stream', async () => {
    const { clock, bus, backend, legs } = relayBackend();
    const id = 'mix1';
    const req: InferenceRequest = { v: 1, id, model: 'm', kind: 'completion', prompt: 'hello ', inputTokens: 2, maxTokens: 4, arrivalMs: clock.now(), giveUpAtMs: clock.now() + 600_000, streamSubject: subjects.stream(id) };
    const chunks: TokenChunk[] = [];
    const out: { done?: boolean; err?: unknown } = {};
    const s = backend.submit(req, new AbortController().signal);
    await run(clock, 10);
    void (async () => {
      for await (const c of await s) chunks.push(c);
    })().then(() => (out.done = true), (e: unknown) => ((out.err = e), (out.done = true)));
    const w = (instance: string, seq: number, text: string, last = false): TokenChunk => ({
      v: 1, id, seq, text, tokens: 1, instance, pool: 'p', ...(last ? { done: true, finishReason: 'length', usage: { promptTokens: 2, completionTokens: 4, energyJ: 1, energySource: 'modelled' as const } } : {}),
    });
    bus.publish(subjects.stream(id), TokenChunk, w('iA', 0, 'a '));
    bus.publish(subjects.stream(id), TokenChunk, w('iA', 1, 'b '));
    // B's copy runs ahead of A's: its seq 2 comes first, then its error end
    bus.publish(subjects.stream(id), TokenChunk, w('iB', 2, 'X '));
    bus.publish(subjects.stream(id), TokenChunk, { v: 1, id, seq: 3, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'timeout', message: 'queue timeout', retryable: true }, instance: 'iB' });
    bus.publish(subjects.stream(id), TokenChunk, w('iA', 2, 'c '));
    bus.publish(subjects.stream(id), TokenChunk, w('iA', 3, 'd ', true));
    await run(clock, 50);
    await until(() => out.done === true, 2000);
    expect(out.err).toBeUndefined();
    expect(legs).toHaveLength(1);
    expect(chunks.map((c) => c.text).join('')).toBe('a b c d ');
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length' });
  });

  it('LegOrder: the owner is the first grant\'s or token\'s instance; a terminal chunk names none', () => {
    const o = new LegOrder();
    const c = (instance: string | undefined, seq: number, end = false): TokenChunk => ({ v: 1, id: 'x', seq, text: end ? '' : 't', tokens: end ? 0 : 1, ...(instance ? { instance } : {}), ...(end ? { done: true, finishReason: 'error', error: { code: 'unavailable', message: 'm', retryable: true } } : {}) });
    expect(o.own(c('iB', 5, true))).toBe(true);
    expect(o.owner).toBeUndefined();
    expect(o.take(c('iA', 0))).toBe('take');
    expect(o.owner).toBe('iA');
    expect(o.take(c('iB', 1))).toBe('other');
    expect(o.take(c(undefined, 1))).toBe('take');
    expect(o.take(c('iA', 1, true))).toBe('foreign');
  });
});
