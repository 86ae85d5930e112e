/**
 * An engine's token count across legs when an event holds several tokens and does not say how many (vLLM's
 * --stream-interval; its detokenizer holding text back): the emulator streams so with `tokenOffsets: false`, and says
 * the count only in the usage so far that stream_options.continuous_usage_stats puts on every event, as vLLM. The
 * gateway asks its engines for it (legs.ts engineRequestOf), keeps the last event's usage unparsed
 * (sse-event.ts TextEventScanner) and counts the tokens by it when a leg breaks: the continuation's max_tokens is what
 * the engine had left, not max_tokens less the events sent. The engine that dies is the emulator behind a relay that
 * cuts the connection after a number of its events; the NatsBackend runs on a ManualClock over an in-memory Bus.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

const START = 1_700_000_000_000;
let emu: EmulatorServer;
let emuBase = '';
const servers: Server[] = [];

beforeAll(async () => {
  emu = new EmulatorServer({ perf: createPerfModel('llama2-70b', 'h100'), tp: 4, zeroDelay: true, servedModelName: 'm', streamInterval: 4, tokenOffsets: false });
  emuBase = `http://127.0.0.1:${await emu.listen(0)}`;
});
afterAll(async () => {
  for (const s of servers) s.close();
  await emu.close();
});

/** An HTTP server on a real socket: `handle` answers each completion, whose body is recorded. */
async function engine(handle: (body: Record<string, unknown>, res: import('node:http').ServerResponse) => Promise<void> | void) {
  const bodies: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (b: Buffer) => (raw += b.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      bodies.push(body);
      void handle(body, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

/** The emulator's events for `body` (its SSE data lines, [DONE] left out). */
async function emulated(body: Record<string, unknown>): Promise<string[]> {
  const r = await fetch(`${emuBase}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await r.text()).split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').map((e) => e.slice(6));
}

describe("the emulator's multi-token events, as vLLM's", () => {
  it('say their token count only in the continuous usage: no token offsets, completion_tokens through each event', async () => {
    const events = (await emulated({ model: 'm', prompt: 'hello', max_tokens: 14, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }))
      .map((e) => JSON.parse(e) as { choices: { text: string }[]; usage?: { completion_tokens: number; prompt_tokens: number; total_tokens: number }; dynamollm_token_offsets_ms?: unknown });
    expect(events.every((e) => e.dynamollm_token_offsets_ms === undefined)).toBe(true);
    // the first token at once, then events of 4, the last with the rest; then the final usage event
    expect(events.map((e) => e.usage?.completion_tokens)).toEqual([1, 5, 9, 13, 14, 14]);
    expect(events.at(-1)!.choices).toEqual([]);
    expect(events[1]!.usage!.total_tokens).toBe(events[1]!.usage!.prompt_tokens + 5);
    // without continuous_usage_stats the text events carry no usage
    const plain = await emulated({ model: 'm', prompt: 'hello', max_tokens: 14, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
    expect(plain.filter((e) => e.includes('"usage"')).length).toBe(1);
  });
});

describe('a migration after multi-token events (NatsBackend, direct engine)', () => {
  it("the continuation's max_tokens is what the engine had left, and usage counts every token", async () => {
    // leg 1: the emulator's events relayed until its 3rd text event (1 + 4 + 4 = 9 tokens), then the connection cut
    const dying = await engine(async (body, res) => {
      const events = await emulated(body);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const e of events.slice(0, 3)) res.write(`data: ${e}\n\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const peer = await engine(async (body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end((await emulated(body)).map((e) => `data: ${e}\n\n`).join('') + 'data: [DONE]\n\n');
    });
    const clock = new ManualClock(START);
    const bus = new VirtualBus(clock);
    const backend = new NatsBackend(bus as unknown as Bus, { direct: true, admitTimeoutMs: 10_000, admitAttemptMs: 3000, chunkTimeoutMs: 30_000, clock });
    const legs: string[] = [];
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      if (!legs.includes(leg.id)) legs.push(leg.id);
      const k = legs.indexOf(leg.id);
      bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, instance: `i${k}`, pool: 'p', type: 'SS', grant: { url: k === 0 ? dying.url : peer.url, apiKey: 'k'.repeat(16), reportWithinMs: 5000 } });
      reply({ v: 1, id: leg.id, ok: true, pool: 'p', instance: `i${k}`, type: 'SS' });
    });
    bus.responders.set(subjects.tokenize(), (_m, reply) => reply({ v: 1, ok: true, count: 12 }));
    const req: InferenceRequest = { v: 1, id: 'mt1', model: 'm', kind: 'completion', prompt: 'hello', inputTokens: 2, maxTokens: 40, ignoreEos: true, arrivalMs: START, giveUpAtMs: START + 600_000, streamSubject: subjects.stream('mt1') };
    const s = backend.submit(req, new AbortController().signal);
    const chunks: TokenChunk[] = [];
    const out: { done?: boolean; error?: unknown } = {};
    void (async () => {
      for await (const c of await s) chunks.push(c);
    })().then(() => (out.done = true), (e: unknown) => Object.assign(out, { done: true, error: e }));
    for (let i = 0; i < 400 && !out.done; i++) {
      clock.advance(20);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(out.error).toBeUndefined();
    expect(backend.counters.migrated).toBe(1);
    expect(peer.bodies[0]!.max_tokens).toBe(31);
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { completionTokens: 40 } });
    backend.close();
  });
});
