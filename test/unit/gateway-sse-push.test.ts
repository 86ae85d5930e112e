/**
 * The gateway's SSE stream fed through a backend's batch sink (`batches(sink)`, actors/gateway/server.ts): the
 * batches a backend reads from an engine mid-stream reach the HTTP layer from the read itself, the others are
 * iterated. The client's bytes are exactly those of the same chunks all iterated (every token once, in order,
 * each frame intact, usage and [DONE] after them), and a client that goes away stops the backend's sink.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { READER_DONE, type TokenSource } from '../../actors/gateway/choices.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';

const read = () => new Promise<void>((r) => setImmediate(r));
/** the middle tokens: escapes, multi-byte characters, JSON look-alikes; several in one batch */
const MIDDLE: string[][] = [[' a'], ['"q"', '\\'], [' é😀'], ['\n\t', '"text":"x"', ' b'], [' c']];

/**
 * A backend whose first and last batches are iterated and whose middle ones go to the reader's sink, each from
 * its own macrotask (as a socket read), when the reader gives one; all iterated when it does not (`sinks: false`).
 */
class PushBackend implements GatewayBackend {
  readonly seen = { pushed: 0, sinkThrew: [] as unknown[], aborted: false };
  constructor(private readonly sinks: boolean) {}
  async submit(req: InferenceRequest, signal: AbortSignal): Promise<TokenSource> {
    const seen = this.seen;
    signal.addEventListener('abort', () => (seen.aborted = true), { once: true });
    let seq = 0;
    const chunk = (text: string): TokenChunk => ({ v: 1, id: req.id, seq: seq++, text, tokens: 1 });
    const slowAfter = typeof req.prompt === 'string' && req.prompt.includes('SLOW') ? 1 : Infinity;
    const sinks = this.sinks;
    async function* batches(sink?: (b: readonly TokenChunk[]) => void): AsyncGenerator<TokenChunk[]> {
      yield [chunk(' first')];
      for (let g = 0; g < MIDDLE.length; g++) {
        await read();
        if (g >= slowAfter) await new Promise((r) => setTimeout(r, 30));
        const b = MIDDLE[g]!.map(chunk);
        if (!sink || !sinks) {
          yield b;
          continue;
        }
        try {
          sink(b);
          seen.pushed++;
        } catch (e) {
          seen.sinkThrew.push(e);
          throw e;
        }
      }
      await read();
      const n = seq;
      yield [{ v: 1, id: req.id, seq: seq++, text: ' last', tokens: 1, done: true, finishReason: 'length', usage: { promptTokens: req.inputTokens, completionTokens: n + 1, energyJ: 1.5, energySource: 'modelled' } }];
    }
    return { batches, [Symbol.asyncIterator]: () => { throw new Error('read in batches'); } };
  }
}

const servers: GatewayServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(100);
});

async function serve(backend: GatewayBackend): Promise<{ port: number; gw: GatewayServer }> {
  const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'] });
  servers.push(gw);
  return { port: await gw.listen(), gw };
}

const body = (kind: 'completion' | 'chat', prompt = 'x') => JSON.stringify({
  model: 'm', max_tokens: 16, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true },
  ...(kind === 'chat' ? { messages: [{ role: 'user', content: prompt }] } : { prompt }),
});

async function stream(port: number, kind: 'completion' | 'chat'): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(kind) });
  expect(r.status).toBe(200);
  return r.text();
}

/** the ids and created times differ per request: the same stream with them blanked. */
const blank = (s: string) => s.replace(/"id":"[^"]*"/g, '"id":"-"').replace(/"created":\d+/g, '"created":0');

describe('SSE through a batch sink', () => {
  it.each(['completion', 'chat'] as const)('%s: the same bytes as the chunks all iterated; every token once, in order, each frame valid', async (kind) => {
    const pushing = new PushBackend(true), iterated = new PushBackend(false);
    const a = await serve(pushing), b = await serve(iterated);
    const viaSink = await stream(a.port, kind);
    const viaYield = await stream(b.port, kind);
    expect(pushing.seen.pushed).toBe(MIDDLE.length);
    expect(blank(viaSink)).toBe(blank(viaYield));
    expect(viaSink.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = viaSink.split('\n\n').filter((e) => e !== '' && e !== 'data: [DONE]');
    const parsed = events.map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      return JSON.parse(e.slice(6)) as { choices: { text?: string; delta?: { content?: string } }[]; usage?: { completion_tokens: number } };
    });
    const texts = parsed.flatMap((p) => p.choices.map((c) => (kind === 'chat' ? c.delta?.content ?? '' : c.text ?? '')));
    expect(texts.join('')).toBe([' first', ...MIDDLE.flat(), ' last'].join(''));
    // continuous usage: the running count on every token's chunk, then the trailing usage chunk
    const counts = parsed.filter((p) => p.choices.length > 0 && (kind === 'completion' || p.choices[0]!.delta?.content)).map((p) => p.usage!.completion_tokens);
    expect(counts).toEqual(Array.from({ length: MIDDLE.flat().length + 2 }, (_, i) => i + 1));
    expect(parsed.at(-1)!.choices).toEqual([]);
  });

  it('a client that goes away mid-stream stops the sink: its next batch throws the reader-done signal, the request is aborted', async () => {
    const pushing = new PushBackend(true);
    const { port, gw } = await serve(pushing);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' } }, (res) => {
        // the first pushed token is in: go away while the rest is on its way
        res.on('data', (d: Buffer) => {
          if (d.toString().includes('" a"')) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', () => undefined);
      req.end(body('completion', 'SLOW'));
      setTimeout(() => reject(new Error('no pushed token came')), 5000);
    });
    for (let i = 0; i < 100 && (pushing.seen.sinkThrew.length === 0 || gw.inflightCount > 0); i++) await new Promise((r) => setTimeout(r, 20));
    expect(pushing.seen.aborted).toBe(true);
    expect(pushing.seen.sinkThrew).toEqual([READER_DONE]);
    expect(pushing.seen.pushed).toBeLessThan(MIDDLE.length);
    expect(gw.inflightCount).toBe(0);
  });
});
