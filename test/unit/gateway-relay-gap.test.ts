/**
 * The relay data path (`direct: false`: the instance publishes the tokens on the leg's stream subject) against a
 * missing chunk, on a virtual clock over an in-memory stand-in for the Bus (test/helpers/virtual-bus.ts). A leg
 * whose chunk `k` never arrives while a later one does ends at `k` (legs.ts relayGapChunk, retryable): the request
 * continues on a new leg with its prompt and the text before the gap, and the client's stream has every token once,
 * in order. A relayed leg the control plane ends retryably mid-stream (its instance died) continues the same way.
 */
import { describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/runtime/clock.ts';
import type { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { relayBackend as setup, runFor as run } from '../helpers/relay-backend.ts';

/** A client reading the stream of `req` to its end: the chunks it got, and how the read ended. */
async function client(clock: ManualClock, backend: NatsBackend, req: InferenceRequest) {
  const out: { chunks: TokenChunk[]; error?: Error; done: boolean } = { chunks: [], done: false };
  const submitted = backend.submit(req, new AbortController().signal);
  await run(clock, 10);
  const stream = await submitted;
  void (async () => {
    for await (const c of stream) out.chunks.push(c);
  })().then(() => (out.done = true), (e: unknown) => (out.error = e as Error));
  return out;
}

const word = (leg: InferenceRequest, seq: number, text: string, last = false): TokenChunk => ({
  v: 1, id: leg.id, seq, text, tokens: 1, ...(last ? { done: true, finishReason: 'length', usage: { promptTokens: leg.inputTokens, completionTokens: 2, energyJ: 1, energySource: 'modelled' as const } } : {}),
});

function request(clock: ManualClock): InferenceRequest {
  const id = 'gap1';
  const now = clock.now();
  return { v: 1, id, model: 'llama3.1-8b', kind: 'completion', prompt: 'hello ', inputTokens: 2, maxTokens: 4, arrivalMs: now, giveUpAtMs: now + 600_000, streamSubject: subjects.stream(id) };
}

describe('relay data path: a missing chunk', () => {
  it('a chunk that never arrives ends the leg there; the request continues from the text before it, no token missing or repeated', async () => {
    const { clock, bus, backend, legs, cancels } = setup();
    const req = request(clock);
    const out = await client(clock, backend, req);
    const first = legs[0]!;
    bus.publish(first.streamSubject, TokenChunk, word(first, 0, 'a '));
    bus.publish(first.streamSubject, TokenChunk, word(first, 1, 'b '));
    // chunk 2 ('c ') is lost; chunk 3 and the end come
    bus.publish(first.streamSubject, TokenChunk, word(first, 3, 'd '));
    await run(clock, 50);
    expect(legs).toHaveLength(2);
    const next = legs[1]!;
    // the new leg continues after 'a b ': its prompt holds them, and 2 tokens are left to make
    expect(next).toMatchObject({ prompt: 'hello a b ', maxTokens: 2, migration: 1, request: req.id });
    // the gapped leg is cancelled at its instance; what it still sends is not the client's
    expect(cancels).toContain(first.id);
    bus.publish(first.streamSubject, TokenChunk, word(first, 4, 'e ', true));
    bus.publish(next.streamSubject, TokenChunk, word(next, 0, 'c '));
    bus.publish(next.streamSubject, TokenChunk, word(next, 1, 'd ', true));
    await run(clock, 50);
    expect(out.error).toBeUndefined();
    expect(out.done).toBe(true);
    expect(out.chunks.map((c) => c.text).join('')).toBe('a b c d ');
    expect(out.chunks.map((c) => c.seq)).toEqual([0, 1, 2, 3]);
    expect(out.chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { promptTokens: 2, completionTokens: 4 } });
    expect(backend.counters).toMatchObject({ relayGaps: 1, migrated: 1 });
  });

  it('an end numbered past the chunks the gateway has (a sender ahead of the stream) is a gap too: the stream continues from what arrived', async () => {
    const { clock, bus, backend, legs } = setup();
    const req = request(clock);
    const out = await client(clock, backend, req);
    const first = legs[0]!;
    bus.publish(first.streamSubject, TokenChunk, word(first, 0, 'a '));
    // chunk 1 lost; the instance's success end (seq 2) arrives
    bus.publish(first.streamSubject, TokenChunk, { ...word(first, 2, 'c ', true) });
    await run(clock, 50);
    const next = legs[1]!;
    expect(next).toMatchObject({ prompt: 'hello a ', maxTokens: 3 });
    for (const [i, w] of ['b ', 'c ', 'd '].entries()) bus.publish(next.streamSubject, TokenChunk, word(next, i, w, i === 2));
    await run(clock, 50);
    expect(out.done).toBe(true);
    expect(out.chunks.map((c) => c.text).join('')).toBe('a b c d ');
  });

  it('a relayed leg ended retryably mid-stream by the control plane (its instance died) continues on a new leg', async () => {
    const { clock, bus, backend, legs } = setup();
    const req = request(clock);
    const out = await client(clock, backend, req);
    const first = legs[0]!;
    bus.publish(first.streamSubject, TokenChunk, word(first, 0, 'a '));
    // the pool leader ends it at the seq the instance reported next
    bus.publish(first.streamSubject, TokenChunk, {
      v: 1, id: first.id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'unavailable', message: 'instance i0 died', retryable: true },
    });
    await run(clock, 50);
    const next = legs[1]!;
    expect(next).toMatchObject({ prompt: 'hello a ', maxTokens: 3 });
    for (const [i, w] of ['b ', 'c ', 'd '].entries()) bus.publish(next.streamSubject, TokenChunk, word(next, i, w, i === 2));
    await run(clock, 50);
    expect(out.done).toBe(true);
    expect(out.chunks.map((c) => c.text).join('')).toBe('a b c d ');
    expect(out.chunks.some((c) => c.error)).toBe(false);
  });

  it("a refusal of the emergency ladder mid-stream ('rejected', retryable) goes to the client: no new leg", async () => {
    const { clock, bus, backend, legs } = setup();
    const req = request(clock);
    const out = await client(clock, backend, req);
    const first = legs[0]!;
    bus.publish(first.streamSubject, TokenChunk, word(first, 0, 'a '));
    bus.publish(first.streamSubject, TokenChunk, {
      v: 1, id: first.id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'rejected', message: 'overloaded: retry later', retryable: true, retryAfterS: 1 },
    });
    await run(clock, 50);
    expect(legs).toHaveLength(1);
    expect(out.done).toBe(true);
    expect(out.chunks.at(-1)).toMatchObject({ error: { code: 'rejected', retryable: true } });
  });
});
