/**
 * The emulator's first-token timing (EmulatorOptions.onFirstToken; `dynamollm engine-emulator` logs it at debug level,
 * the twin check reads the data path's time to and from the engine off it): once per streamed request, with the
 * client's x-request-id, when the server took the request and when it wrote the first token, on the host's clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorServer } from '../../src/engine/emulator/server.ts';
import { createPerfModel } from '../../src/model/index.ts';

const seen: { requestId: string | undefined; receivedMs: number; firstTokenMs: number }[] = [];
let em: EmulatorServer;
let base = '';

beforeAll(async () => {
  em = new EmulatorServer({ perf: createPerfModel('llama3.1-8b', 'h100'), tp: 1, onFirstToken: (t) => seen.push(t) });
  base = `http://127.0.0.1:${await em.listen(0)}`;
  // the modelled weight loading (0 ms) turns /health 200 on the next turn
  while ((await fetch(`${base}/health`)).status !== 200) await new Promise((r) => setTimeout(r, 5));
});
afterAll(async () => {
  await em.close();
});

const completion = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ model: 'meta-llama/Llama-3.1-8B-Instruct', prompt: 'hello there', max_tokens: 4, ignore_eos: true, ...body }) }).then((r) => r.text());

describe('emulator first-token timing', () => {
  it('a streamed request: its x-request-id, taken before its first token was written, both on the host clock', async () => {
    seen.length = 0;
    const before = Date.now();
    const text = await completion({ stream: true }, { 'x-request-id': 'req-1' });
    const after = Date.now();
    expect(text).toContain('[DONE]');
    expect(seen).toHaveLength(1);
    const t = seen[0]!;
    expect(t.requestId).toBe('req-1');
    // the prefill of a few tokens on a modelled H100 takes wall time (no zeroDelay): the first token comes after the receipt
    expect(t.firstTokenMs).toBeGreaterThan(t.receivedMs);
    expect(t.receivedMs).toBeGreaterThanOrEqual(before - 1);
    expect(t.firstTokenMs).toBeLessThanOrEqual(after + 1);
  });

  it('once per streamed request only: none for a JSON answer; no id without the header', async () => {
    seen.length = 0;
    await completion({ stream: false }, { 'x-request-id': 'req-2' });
    expect(seen).toHaveLength(0);
    await completion({ stream: true, max_tokens: 6 });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.requestId).toBeUndefined();
  });
});
