/**
 * The gateway's debug line per request ('request arrival': its request id, its receipt and its arrival stamp), which
 * the twin check matches with the replay's sends (test/bench/twin.bench.ts gatewayInOf): the stamp comes after the
 * prompt's count, the receipt before it; none at info level. Real HTTP on loopback; the server's clock a ManualClock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import type { InferenceRequest, TokenChunk, TokenizeReply } from '../../protocols/messages.ts';

/** A backend whose tokenizer answers when the test says so, and whose stream is one token. */
class CountHeld implements GatewayBackend {
  readonly ids: string[] = [];
  counting = false;
  release?: () => void;
  tokenize(): Promise<TokenizeReply> {
    this.counting = true;
    return new Promise((r) => (this.release = () => r({ v: 1, ok: true, count: 3, maxModelLen: 4096 })));
  }
  submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
    this.ids.push(req.id);
    async function* gen(): AsyncGenerator<TokenChunk> {
      yield { v: 1, id: req.id, seq: 0, text: ' x', tokens: 1, done: true, finishReason: 'stop' };
    }
    return Promise.resolve(gen());
  }
}

const servers: GatewayServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(0);
});

async function once(level: string): Promise<{ lines: Record<string, unknown>[]; backend: CountHeld; clock: ManualClock }> {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level, pretty: false, destination: new Writable({ write: (b: Buffer, _e, cb) => (lines.push(JSON.parse(b.toString()) as Record<string, unknown>), cb()) }) });
  const clock = new ManualClock();
  const backend = new CountHeld();
  const gw = new GatewayServer({ backend, clock, port: 0, host: '127.0.0.1', models: ['m1'], log });
  servers.push(gw);
  const url = `http://127.0.0.1:${await gw.listen()}`;
  const res = fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm1', prompt: 'hello there', max_tokens: 1 }) });
  const end = Date.now() + 5000;
  while (!backend.counting && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  expect(backend.counting).toBe(true);
  // the prompt's count takes 7 ms
  clock.advance(7);
  backend.release!();
  expect((await res).status).toBe(200);
  return { lines, backend, clock };
}

describe('gateway: the per-request arrival line (debug level)', () => {
  it('gives the request id, its receipt and its arrival stamp after the prompt\'s count', async () => {
    const { lines, backend, clock } = await once('debug');
    const arrival = lines.filter((l) => l.msg === 'request arrival');
    expect(arrival).toHaveLength(1);
    expect(arrival[0]).toMatchObject({ rid: backend.ids[0], arrivalMs: clock.now(), receivedMs: clock.now() - 7, inputTokens: 3 });
  }, 20_000);

  it('is not written at info level', async () => {
    const { lines, backend } = await once('info');
    expect(backend.ids).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'request arrival')).toHaveLength(0);
  }, 20_000);
});
