/**
 * `dynamollm replay` (src/telemetry/replay.ts) reading the gateway's error answers, which are vLLM's bodies
 * (`{"error": {message, type, param, code: <status>}}`): the cause from the gateway's x-dynamollm-error-code header,
 * and a streamed error event judged by its status and `retryable` member. A retryable refusal counts as rejected,
 * anything else as failed. The endpoint is a local node:http server answering each request of a 3-row trace in turn.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { localEndpoint } from '../helpers/net.ts';
import { replayTrace } from '../../src/telemetry/replay.ts';

type Answer = (rs: ServerResponse) => void;
let answers: Answer[] = [];
let endpoint: Awaited<ReturnType<typeof localEndpoint>>;

const vllmError = (status: number, type: string) => JSON.stringify({ error: { message: 'm', type, param: null, code: status } });
const streamError = (status: number, retryable: boolean): Answer => (rs) => {
  rs.writeHead(200, { 'content-type': 'text/event-stream' });
  rs.end(`data: ${JSON.stringify({ error: { message: 'm', type: 'ServiceUnavailableError', param: null, code: status, retryable } })}\n\ndata: [DONE]\n\n`);
};

beforeAll(async () => {
  endpoint = await localEndpoint((rq: IncomingMessage, rs: ServerResponse) => {
    if (rq.url !== '/v1/completions') return void rs.writeHead(404).end();
    (answers.shift() ?? ((r: ServerResponse) => r.writeHead(500).end()))(rs);
  });
});

afterAll(() => endpoint.close());

const run = () => replayTrace({ trace: 'data/traces/AzureLLMInferenceTrace_conv.csv', url: endpoint.url, model: 'm', limit: 3, speed: 1e6 });

describe("replay reads the gateway's vLLM-shaped errors", () => {
  it('an HTTP refusal is named by its x-dynamollm-error-code header; 429/503 rejected, 400 failed', async () => {
    answers = [
      (rs) => rs.writeHead(429, { 'content-type': 'application/json', 'x-dynamollm-error-code': 'overloaded' }).end(vllmError(429, 'TooManyRequests')),
      (rs) => rs.writeHead(503, { 'content-type': 'application/json', 'x-dynamollm-error-code': 'unavailable' }).end(vllmError(503, 'ServiceUnavailableError')),
      (rs) => rs.writeHead(400, { 'content-type': 'application/json', 'x-dynamollm-error-code': 'context_length_exceeded' }).end(vllmError(400, 'BadRequestError')),
    ];
    const s = await run();
    expect([s.ok, s.rejected, s.failed]).toEqual([0, 2, 1]);
    expect(s.errors).toEqual({ http_429_overloaded: 1, http_503_unavailable: 1, http_400_context_length_exceeded: 1 });
  }, 20_000);

  it('a streamed error event: retryable (or 429/503) rejected, another failed', async () => {
    answers = [streamError(503, true), streamError(500, false), streamError(429, false)];
    const s = await run();
    expect([s.ok, s.rejected, s.failed]).toEqual([0, 2, 1]);
    expect(s.errors).toEqual({ stream_503: 1, stream_500: 1, stream_429: 1 });
  }, 20_000);
});
