/**
 * A relayed leg (the instance publishes the tokens on the leg's stream subject) that goes silent mid-stream for
 * chunkTimeoutMs (its instance frozen, its NATS node silent) is lost, not the end of the client's stream: it is
 * cancelled and the request continues on a new leg from the text sent, every token once. On a virtual clock over the
 * in-memory Bus stand-in (test/helpers/relay-backend.ts).
 */
import { describe, expect, it } from 'vitest';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { relayBackend, runFor as run } from '../helpers/relay-backend.ts';

const word = (leg: InferenceRequest, seq: number, text: string, last = false): TokenChunk => ({
  v: 1, id: leg.id, seq, text, tokens: 1, ...(last ? { done: true, finishReason: 'length', usage: { promptTokens: leg.inputTokens, completionTokens: 2, energyJ: 1, energySource: 'modelled' as const } } : {}),
});

describe('relay data path: a leg silent mid-stream', () => {
  it('is cancelled and continued on a new leg after chunkTimeoutMs', async () => {
    const { clock, bus, backend, legs, cancels } = relayBackend();
    const id = 'silent1';
    const req: InferenceRequest = { v: 1, id, model: 'm', kind: 'completion', prompt: 'hello ', inputTokens: 2, maxTokens: 4, arrivalMs: clock.now(), giveUpAtMs: clock.now() + 600_000, streamSubject: subjects.stream(id) };
    const out: { chunks: TokenChunk[]; err?: unknown; done?: boolean } = { chunks: [] };
    const s = backend.submit(req, new AbortController().signal);
    await run(clock, 10);
    void (async () => {
      for await (const c of await s) out.chunks.push(c);
    })().then(() => (out.done = true), (e: unknown) => ((out.err = e), (out.done = true)));
    const first = legs[0]!;
    bus.publish(first.streamSubject, TokenChunk, word(first, 0, 'a '));
    bus.publish(first.streamSubject, TokenChunk, word(first, 1, 'b '));
    await run(clock, 50);
    // silent past chunkTimeoutMs (30 s here)
    await run(clock, 31_000, 100);
    expect(legs).toHaveLength(2);
    expect(cancels).toContain(first.id);
    const next = legs[1]!;
    expect(next).toMatchObject({ prompt: 'hello a b ', maxTokens: 2, migration: 1, request: id });
    bus.publish(next.streamSubject, TokenChunk, word(next, 0, 'c '));
    bus.publish(next.streamSubject, TokenChunk, word(next, 1, 'd ', true));
    await run(clock, 50);
    expect(out.err).toBeUndefined();
    expect(out.done).toBe(true);
    expect(out.chunks.map((c) => c.text).join('')).toBe('a b c d ');
    expect(out.chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length' });
  });
});
