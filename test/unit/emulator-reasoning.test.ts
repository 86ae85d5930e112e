/**
 * The emulator's reasoning (vLLM's --reasoning-parser, src/engine/emulator/generate.ts): a chat's plain-text output
 * opens with reasoning, streamed as delta.reasoning_content (message.reasoning_content when not streamed), then
 * content; an event that spans the boundary carries both. Through the gateway's NatsBackend (direct leg, an in-memory
 * Bus) the client gets every reasoning delta, and usage.completion_tokens counts the reasoning tokens too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { TokenChunk, subjects, type InferenceRequest } from '../../protocols/index.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { VirtualBus } from '../helpers/virtual-bus.ts';

const MODEL = 'llama2-70b';
const servers: EmulatorServer[] = [];
const bases: string[] = [];

beforeAll(async () => {
  for (const o of [{ reasoningParser: 'deepseek_r1' }, { reasoningParser: 'deepseek_r1', streamInterval: 3 }, {}]) {
    const em = new EmulatorServer({ perf: createPerfModel('llama2-70b', 'h100'), tp: 4, zeroDelay: true, servedModelName: MODEL, ...o });
    servers.push(em);
    bases.push(`http://127.0.0.1:${await em.listen(0)}`);
  }
});
afterAll(async () => {
  for (const em of servers) await em.close();
});

type Delta = { content?: string; reasoning_content?: string };
async function streamed(base: string, body: Record<string, unknown>): Promise<Delta[]> {
  const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  const events = (await r.text()).split('\n\n').filter((e) => e !== '' && e !== 'data: [DONE]');
  return events.map((e) => (JSON.parse(e.slice('data: '.length)) as { choices: { delta: Delta }[] }).choices[0]?.delta).filter((d): d is Delta => d !== undefined);
}

const body = { model: MODEL, messages: [{ role: 'user', content: 'Why is the sky blue?' }], max_tokens: 10, ignore_eos: true, seed: 5 };

describe('emulator reasoning, as vLLM with a reasoning parser', () => {
  it('the first half of the tokens stream as reasoning_content, the rest as content; the whole answer says the same', async () => {
    const deltas = (await streamed(bases[0]!, body)).slice(1); // the role chunk first
    expect(deltas.map((d) => (d.reasoning_content !== undefined ? 'r' : 'c')).join('')).toBe('rrrrrccccc');
    const r = await fetch(`${bases[0]}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const whole = (await r.json()) as { choices: { message: Delta }[] };
    expect(whole.choices[0]!.message.reasoning_content).toBe(deltas.map((d) => d.reasoning_content ?? '').join(''));
    expect(whole.choices[0]!.message.content).toBe(deltas.map((d) => d.content ?? '').join(''));
  });

  it('an event of several tokens that spans the boundary carries both; no parser: content only', async () => {
    const deltas = (await streamed(bases[1]!, body)).slice(1);
    expect(deltas.some((d) => d.reasoning_content !== undefined && d.content !== undefined)).toBe(true);
    const plain = (await streamed(bases[2]!, body)).slice(1);
    expect(plain.every((d) => d.reasoning_content === undefined && d.content !== undefined)).toBe(true);
  });

  it('through the gateway: every reasoning delta reaches the client, and usage counts the reasoning tokens', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const bus = new VirtualBus(clock);
    const backend = new NatsBackend(bus as unknown as Bus, { direct: true, clock });
    bus.responders.set(subjects.clusterIntake(), (m, reply) => {
      const leg = m as InferenceRequest;
      bus.publish(subjects.stream(leg.id), TokenChunk, { v: 1, id: leg.id, seq: 0, text: '', tokens: 0, pool: 'pool-all', grant: { url: bases[0]!, apiKey: 'k'.repeat(16) } });
      reply({ v: 1, id: leg.id, ok: true, pool: 'pool-all' });
    });
    const now = clock.now();
    const req: InferenceRequest = {
      v: 1, id: 'rs1', model: MODEL, kind: 'chat', messages: [{ role: 'user', content: 'Why is the sky blue?' }], inputTokens: 8, maxTokens: 10, ignoreEos: true,
      arrivalMs: now, giveUpAtMs: now + 60_000, streamSubject: subjects.stream('rs1'), params: { seed: 5 },
    };
    const chunks: TokenChunk[] = [];
    for await (const c of await backend.submit(req, new AbortController().signal)) chunks.push(c);
    backend.close();
    expect(chunks.filter((c) => c.reasoning !== undefined).length).toBe(5);
    expect(chunks.at(-1)).toMatchObject({ done: true, finishReason: 'length', usage: { completionTokens: 10 } });
    expect(chunks.reduce((a, c) => a + c.tokens, 0)).toBe(10);
  });
});
