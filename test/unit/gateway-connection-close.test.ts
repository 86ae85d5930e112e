/**
 * A streamed response's connection follows the client's request (RFC 9112 §9.6, as uvicorn's h11 answers): a
 * `Connection: close` request gets `connection: close` and its socket closed after the terminating chunk; an HTTP/1.0
 * request without keep-alive is closed at the end of its response; an HTTP/1.1 request without the header keeps its
 * connection (`connection: keep-alive`). Over a real socket to the gateway's HTTP layer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import type { TokenSource } from '../../actors/gateway/choices.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';

/** three tokens, the last with the end. */
const backend: GatewayBackend = {
  submit(req: InferenceRequest): Promise<TokenSource> {
    const chunks: TokenChunk[] = [
      { v: 1, id: req.id, seq: 0, text: ' a', tokens: 1 },
      { v: 1, id: req.id, seq: 1, text: ' b', tokens: 1 },
      { v: 1, id: req.id, seq: 2, text: ' c', tokens: 1, done: true, finishReason: 'length', usage: { promptTokens: req.inputTokens, completionTokens: 3, energyJ: 1, energySource: 'modelled' } },
    ];
    return Promise.resolve({ async *[Symbol.asyncIterator]() { for (const c of chunks) yield c; } });
  },
};

const servers: GatewayServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(100);
});

const BODY = JSON.stringify({ model: 'm', prompt: 'x', max_tokens: 3, stream: true });

/**
 * One streamed request over a raw socket: the response's bytes, whether the gateway closed the socket (its 'end')
 * within `waitMs` of the terminating chunk, and the head.
 */
function exchange(port: number, version: '1.0' | '1.1', connection: string | undefined, waitMs = 1500): Promise<{ head: string; raw: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let raw = '';
    let timer: NodeJS.Timeout | undefined;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ head: raw.slice(0, raw.indexOf('\r\n\r\n')).toLowerCase(), raw, closed });
    };
    s.on('connect', () => s.write(`POST /v1/completions HTTP/${version}\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(BODY)}\r\n${connection ? `connection: ${connection}\r\n` : ''}\r\n${BODY}`));
    s.on('data', (d: Buffer) => {
      raw += d.toString();
      // the stream's last bytes: the terminating chunk (chunked) or [DONE] (HTTP/1.0, no framing)
      if ((raw.endsWith('0\r\n\r\n') || raw.endsWith('data: [DONE]\n\n')) && !timer) timer = setTimeout(() => done(false), waitMs);
    });
    s.on('end', () => done(true));
    s.on('error', reject);
  });
}

describe('a streamed response\'s connection', () => {
  it('closes after the last chunk when the client asked to close (or spoke HTTP/1.0 without keep-alive); keeps it otherwise', async () => {
    const gw = new GatewayServer({ backend, port: 0, host: '127.0.0.1', models: ['m'] });
    servers.push(gw);
    const port = await gw.listen();

    const close = await exchange(port, '1.1', 'close');
    expect(close.raw).toContain('data: [DONE]');
    expect(close.head).toMatch(/\r\nconnection: close(\r\n|$)/);
    expect(close.head).not.toContain('keep-alive');
    expect(close.closed).toBe(true);

    const old = await exchange(port, '1.0', undefined);
    expect(old.raw).toContain('data: [DONE]');
    expect(old.head).not.toContain('keep-alive');
    expect(old.closed).toBe(true);

    const kept = await exchange(port, '1.1', undefined, 300);
    expect(kept.raw).toContain('data: [DONE]');
    expect(kept.head).toMatch(/\r\nconnection: keep-alive(\r\n|$)/);
    expect(kept.closed).toBe(false);
  });
});
