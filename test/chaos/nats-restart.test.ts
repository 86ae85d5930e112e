/**
 * Issue 13, "retries, not timeouts": the suite's nats-server crashes and restarts (same port, same JetStream
 * store) while SSE streams are in flight through the gateway (its HTTP layer over the NatsBackend), with real
 * actor processes and emulated engines. Every stream completes with every token exactly once and one finish,
 * from the engine it started on (no migration: the pool leader elected again after the outage does not take
 * the instances that kept serving for dead), and a request sent while NATS is down is held and completes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startHarness, type Harness } from '../integration/control-harness.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer } from '../../actors/gateway/server.ts';

const MODEL = 'llama3.1-8b';
let h: Harness;
let gw: Bus;
let backend: NatsBackend;
let server: GatewayServer;
let port = 0;

beforeAll(async () => {
  h = await startHarness({
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: 2 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
    // ~30 ms per token: a 200-token answer streams for ~6 s, across the restart
    engine: { kind: 'emulator', timeScale: 0.25, healthDeadlineMs: 30_000, initialTp: 1, maxInEngine: 16, maxQueued: 64 },
  });
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  await h.waitReady(2, 60_000);
  gw = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-restart'), name: 'gw-restart', log: silentLogger() });
  backend = new NatsBackend(gw, { chunkTimeoutMs: 30_000, admitTimeoutMs: 15_000 });
  server = new GatewayServer({ backend, port: 0, models: [MODEL] });
  port = await server.listen();
}, 90_000);

afterAll(async () => {
  await server?.close(100);
  backend?.close();
  await gw?.close();
  await h?.stop();
}, 30_000);

/** One SSE completion through the gateway: its text, finishes and usage as the client saw them. */
async function stream(max: number, onText?: (words: number) => void): Promise<{ text: string; finishes: (string | null)[]; usage?: OpenAI.CompletionUsage; error?: string }> {
  const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 90_000 });
  let text = '';
  const finishes: (string | null)[] = [];
  let usage: OpenAI.CompletionUsage | undefined;
  try {
    const s = await client.completions.create({ model: MODEL, prompt: 'Tell me about energy efficient inference.', max_tokens: max, stream: true, stream_options: { include_usage: true }, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming);
    for await (const ch of s) {
      if (ch.usage) usage = ch.usage;
      const c = ch.choices[0];
      if (!c) continue;
      text += c.text;
      if (c.finish_reason) finishes.push(c.finish_reason);
      onText?.(text.trim().split(/\s+/).filter(Boolean).length);
    }
  } catch (err) {
    return { text, finishes, ...(usage ? { usage } : {}), error: (err as Error).message };
  }
  return { text, finishes, ...(usage ? { usage } : {}) };
}

describe('NATS restarts under in-flight streams', () => {
  it('streams in flight through the gateway complete with every token once; a request sent while NATS is down is held and completes', async () => {
    await h.waitReady(2, 60_000);
    const max = 200;
    const t0 = Date.now();
    let started = 0;
    let restart: Promise<void> | undefined;
    const streams = Array.from({ length: 4 }, () => stream(max, (words) => {
      // restart once every stream has tokens: they are all mid-generation
      if (words === 20 && ++started === 4) restart = h.nats.restart!(3000);
    }));
    for (const until = Date.now() + 30_000; !restart && Date.now() < until;) await new Promise((r) => setTimeout(r, 50));
    expect(restart, 'the four streams started').toBeDefined();
    // while NATS is down: a new request, held by the gateway until the connection is back
    await new Promise((r) => setTimeout(r, 1000));
    const during = stream(20);
    await restart;
    const outs = await Promise.all([...streams, during]);
    for (const [i, o] of outs.entries()) {
      const n = i < 4 ? max : 20;
      expect(o.error, `stream ${i}`).toBeUndefined();
      // the emulator's tokens are one word each: every token reached the client once, none twice
      expect(o.text.trim().split(/\s+/).length, `stream ${i}`).toBe(n);
      expect(o.finishes, `stream ${i}`).toEqual(['length']);
      expect(o.usage?.completion_tokens, `stream ${i}`).toBe(n);
    }
    // the streams went on from their engines: no leg was ended and sent again (the pool leader, elected again
    // after the outage, did not count the instances that kept serving as dead)
    expect(backend.counters.migrated).toBe(0);
    if (process.env.DYN_TEST_DEBUG) for (const e of await h.streamEvents()) if (e.atMs > t0) console.log(`${e.atMs - t0} ms ${e.actor} ${e.kind}: ${e.summary} ${JSON.stringify(e.decision).slice(0, 200)}`);
    console.log(`NATS restart (down 3 s): ${outs.length} streams complete; gateway counters ${JSON.stringify(backend.counters)}`);
  }, 120_000);
});
