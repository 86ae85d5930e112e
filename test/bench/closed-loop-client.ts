/**
 * One closed-loop client's request of the datapath bench (test/bench/datapath.bench.ts): a streaming completion read
 * to its end, `[DONE]` checked, an HTTP 429/503 (the cluster at capacity) counted as refused and waited out for 50 ms,
 * anything else thrown. Three clients to send it with, for the load generator's CPU per request
 * (test/bench/closed-loop.ts): `fetch` (undici), `http` (node:http with a keep-alive Agent) and `http1` (the project's
 * lean client, src/engine/http1.ts, over its own pool of kept-alive connections).
 */
import http from 'node:http';
import { Http1Pool, http1Request } from '../../src/engine/http1.ts';

export type ClientKind = 'fetch' | 'http' | 'http1';
export const CLIENT_KINDS: readonly ClientKind[] = ['fetch', 'http', 'http1'];

/** The closed loop's request body: an 8-token prompt, `maxTokens` output tokens, streamed. */
export const completionBody = (model: string, maxTokens: number): string =>
  JSON.stringify({ model, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: maxTokens, ignore_eos: true, stream: true });

/** Whether a response's status is a refusal (the cluster at capacity), counted and retried after 50 ms. */
export const isRefusal = (status: number): boolean => status === 429 || status === 503;

/** The last bytes of a stream: enough to find `[DONE]` split across reads. */
const TAIL = 64;

/** Sends one request and resolves true when served to its `[DONE]`, false when refused (after 50 ms); throws otherwise. */
export type Requester = (() => Promise<boolean>) & { close(): void };

const refusedPause = () => new Promise((r) => setTimeout(r, 50));

function checkDone(status: number, tail: string): void {
  if (status !== 200) throw new Error(`HTTP ${status}: ${tail.slice(-400)}`);
  if (!tail.includes('[DONE]')) throw new Error(`stream ended without [DONE]: ${tail}`);
}

/** A requester of `kind` that posts `body` to `${base}/v1/completions`, with `extra()`'s headers on each request (scripts/emulator-shapes.ts). */
export function requester(kind: ClientKind, base: string, body: string, extra?: () => Record<string, string>): Requester {
  const u = new URL('/v1/completions', base);
  const host = u.hostname, port = Number(u.port);
  if (kind === 'fetch') {
    const send = async (): Promise<boolean> => {
      const r = await fetch(u, { method: 'POST', headers: { 'content-type': 'application/json', ...extra?.() }, body });
      const text = await r.text();
      if (isRefusal(r.status)) return refusedPause().then(() => false);
      checkDone(r.status, text.slice(-TAIL));
      return true;
    };
    return Object.assign(send, { close: () => {} });
  }
  if (kind === 'http') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
    const headers = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    const send = () => new Promise<boolean>((resolve, reject) => {
      const req = http.request({ host, port, method: 'POST', path: u.pathname, headers: extra ? { ...headers, ...extra() } : headers, agent }, (res) => {
        let tail = '';
        res.setEncoding('latin1');
        res.on('data', (s: string) => (tail = (tail + s).slice(-TAIL)));
        res.on('end', () => {
          if (isRefusal(res.statusCode ?? 0)) return void refusedPause().then(() => resolve(false));
          try {
            checkDone(res.statusCode ?? 0, tail);
            resolve(true);
          } catch (e) {
            reject(e as Error);
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
    return Object.assign(send, { close: () => agent.destroy() });
  }
  const pool = new Http1Pool();
  const headers = { 'content-type': 'application/json' };
  const send = async (): Promise<boolean> => {
    const r = await http1Request(pool, { host, port, method: 'POST', path: u.pathname, headers: extra ? { ...headers, ...extra() } : headers, body });
    let tail = '';
    await r.pipe((b) => (tail = (tail + b.toString('latin1')).slice(-TAIL)));
    r.close();
    if (isRefusal(r.status)) return refusedPause().then(() => false);
    checkDone(r.status, tail);
    return true;
  };
  return Object.assign(send, { close: () => pool.destroy() });
}
