/**
 * `dynamollm replay` (src/telemetry/replay.ts) with a caller's onResult that throws: every request is still counted
 * done and none is left in flight, and the throw is counted in the summary's errors. The endpoint is a local
 * node:http server refusing every completion (429), so each request ends at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localEndpoint } from '../helpers/net.ts';
import { replayTrace, type ReplayProgress } from '../../src/telemetry/replay.ts';

let endpoint: Awaited<ReturnType<typeof localEndpoint>>;
let url: string;

beforeAll(async () => {
  endpoint = await localEndpoint((rq, rs) => {
    rs.writeHead(rq.url === '/v1/completions' ? 429 : 404, { 'content-type': 'application/json' });
    rs.end(JSON.stringify({ error: { code: 'overloaded' } }));
  });
  url = endpoint.url;
});

afterAll(() => endpoint.close());

describe('replay with an onResult that throws', () => {
  it('counts every request done, none in flight, and the callback errors', async () => {
    let calls = 0;
    let last: ReplayProgress | undefined;
    const s = await replayTrace({
      trace: 'data/traces/AzureLLMInferenceTrace_conv.csv', url, model: 'm', limit: 3, speed: 1e6,
      onResult: () => {
        calls++;
        throw new Error('callback bug');
      },
      onProgress: (p) => (last = p),
    });
    expect(calls).toBe(3);
    expect(s).toMatchObject({ sent: 3, rejected: 3 });
    expect(s.errors).toMatchObject({ on_result_callback: 3, http_429_overloaded: 3 });
    expect(last).toMatchObject({ sent: 3, done: 3, inflight: 0 });
  }, 20_000);
});

describe('replay\'s onResult: each request\'s send time and response id', () => {
  it('gives the send (wall, before the server\'s receipt) and the stream\'s id (twin.bench.ts gatewayInOf matches them)', async () => {
    const received: number[] = [];
    let k = 0;
    const sse = await localEndpoint((rq, rs) => {
      if (rq.url !== '/v1/completions') return void rs.writeHead(404).end();
      // its receipt: the body read (localEndpoint answers at its end)
      received.push(Date.now());
      rs.writeHead(200, { 'content-type': 'text/event-stream' });
      rs.end(`data: ${JSON.stringify({ id: `cmpl-r${k++}`, choices: [{ text: 'x' }], usage: { completion_tokens: 1 } })}\n\ndata: [DONE]\n\n`);
    });
    try {
      const before = Date.now();
      const got: { sentAtMs?: number; responseId?: string; outcome: string }[] = [];
      await replayTrace({ trace: 'data/traces/AzureLLMInferenceTrace_conv.csv', url: sse.url, model: 'm', limit: 2, speed: 1e6, onResult: (r) => void got.push(r) });
      expect(got.map((r) => r.outcome)).toEqual(['ok', 'ok']);
      expect(got.map((r) => r.responseId).sort()).toEqual(['cmpl-r0', 'cmpl-r1']);
      // sent after the replay began and no later than the server's receipt (same host, same wall clock; 1 ms for Date.now's resolution)
      for (const r of got) {
        expect(r.sentAtMs).toBeGreaterThanOrEqual(before - 1);
        expect(r.sentAtMs).toBeLessThanOrEqual(received[Number(r.responseId!.slice('cmpl-r'.length))]! + 1);
      }
    } finally {
      await sse.close();
    }
  }, 20_000);
});
