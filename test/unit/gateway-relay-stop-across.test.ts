/**
 * A stop string that completes across a leg boundary on the relay data path (`direct: false`: the instance publishes
 * its engine's output on the leg's stream subject), on a virtual clock over an in-memory stand-in for the Bus
 * (test/helpers/virtual-bus.ts). The first leg sends "a0 E" and its instance dies; the continuation writes "N", "D b1 ",
 * ...: no engine saw "END" whole, and the stream ends as one vLLM request ends at it (finish_reason stop, stop_reason
 * the string, the continuation's part of it not sent unless include_stop_str_in_output), the continuation cancelled at
 * its instance (docs/DATAPATH.md "Request migration").
 */
import { describe, expect, it } from 'vitest';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { relayBackend as setup, runFor as run } from '../helpers/relay-backend.ts';

const chunk = (leg: InferenceRequest, seq: number, text: string, last = false): TokenChunk => ({
  v: 1, id: leg.id, seq, text, tokens: 1, ...(last ? { done: true, finishReason: 'length', usage: { promptTokens: leg.inputTokens, completionTokens: 4, energyJ: 1, energySource: 'modelled' as const } } : {}),
});

/** The first leg relays "a0 ", "E" and its instance dies; the continuation relays `next`. The client's chunks, the legs, the cancels. */
async function split(id: string, params: InferenceRequest['params'], next: string[]) {
  const { clock, bus, backend, legs, cancels } = setup();
  const now = clock.now();
  const req: InferenceRequest = { v: 1, id, model: 'llama3.1-8b', kind: 'completion', prompt: 'hello ', inputTokens: 2, maxTokens: 16, arrivalMs: now, giveUpAtMs: now + 600_000, streamSubject: subjects.stream(id), params };
  const out: { chunks: TokenChunk[]; error?: Error; done: boolean } = { chunks: [], done: false };
  const submitted = backend.submit(req, new AbortController().signal);
  await run(clock, 10);
  const stream = await submitted;
  void (async () => {
    for await (const c of stream) out.chunks.push(c);
  })().then(() => (out.done = true), (e: unknown) => (out.error = e as Error));
  const first = legs[0]!;
  bus.publish(first.streamSubject, TokenChunk, chunk(first, 0, 'a0 '));
  bus.publish(first.streamSubject, TokenChunk, chunk(first, 1, 'E'));
  bus.publish(first.streamSubject, TokenChunk, {
    v: 1, id: first.id, seq: 2, text: '', tokens: 0, done: true, finishReason: 'error', error: { code: 'unavailable', message: 'instance i0 died', retryable: true },
  });
  await run(clock, 50);
  expect(legs).toHaveLength(2);
  const cont = legs[1]!;
  expect(cont).toMatchObject({ prompt: 'hello a0 E', migration: 1 });
  next.forEach((t, i) => bus.publish(cont.streamSubject, TokenChunk, chunk(cont, i, t, i === next.length - 1)));
  await run(clock, 50);
  expect(out.error).toBeUndefined();
  expect(out.done).toBe(true);
  expect(backend.counters.migrated).toBe(1);
  return { chunks: out.chunks, cancels, cont };
}

describe('relay data path: a stop string split across legs', () => {
  it('ends the stream at the stop string, as one vLLM request: finish_reason stop, stop_reason, the string not sent, the leg cancelled', async () => {
    const { chunks, cancels, cont } = await split('rs1', { stop: ['zz', 'END'] }, ['N', 'D b1 ', 'b2 ', 'b3 ']);
    expect(chunks.map((c) => c.text).join('')).toBe('a0 E');
    const last = chunks.at(-1)!;
    expect(last).toMatchObject({ done: true, finishReason: 'stop', stopReason: 'END' });
    // the tokens the continuation wrote up to the stop string count (vLLM counts a stop string's tokens)
    expect(last.usage).toMatchObject({ promptTokens: 2, completionTokens: 4 });
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
    expect(chunks.filter((c) => c.done)).toHaveLength(1);
    expect(cancels).toContain(cont.id);
  });

  it('with include_stop_str_in_output the stop string is sent, and nothing after it', async () => {
    const { chunks } = await split('rs2', { stop: 'END', include_stop_str_in_output: true }, ['N', 'D b1 ', 'b2 ', 'b3 ']);
    expect(chunks.map((c) => c.text).join('')).toBe('a0 END');
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'stop', stopReason: 'END' });
  });

  it('a continuation that does not complete it streams on to its own end, the text held while it might have sent', async () => {
    const { chunks, cancels, cont } = await split('rs3', { stop: ['END'] }, ['N', 'X b1 ', 'b2 ', 'b3 ']);
    expect(chunks.map((c) => c.text).join('')).toBe('a0 ENX b1 b2 b3 ');
    // "N" (which may start the rest of "END") went out with the next text, as one chunk of 2 tokens
    expect(chunks.find((c) => c.text.startsWith('N'))).toMatchObject({ text: 'NX b1 ', tokens: 2 });
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { completionTokens: 6 } });
    expect(cancels).not.toContain(cont.id);
  });
});
