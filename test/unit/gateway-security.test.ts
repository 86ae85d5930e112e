/**
 * Issue 12, the HTTP front door: with API keys every endpoint but /healthz needs one (a read-only metrics
 * token works on /metrics only; the dashboard takes the key once through /?key=, then a cookie), the default
 * bind is loopback, slow-loris clients are cut within seconds, and a body above the limit (which sits below
 * NATS max_payload) gets a 413 that does not ask for a retry. /ws refuses a browser page of another origin (the
 * dashboard's cookie rides on any same-site upgrade, another port or subdomain included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { gatewaySchema } from '../../actors/gateway/config.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { LiveState } from '../../src/telemetry/live.ts';
import { NATS_MAX_PAYLOAD_BYTES } from '../../src/runtime/nats-server-config.ts';
import { wsOriginAllowed } from '../../actors/gateway/ws-origin.ts';

class EchoBackend implements GatewayBackend {
  async submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
    async function* gen(): AsyncGenerator<TokenChunk> {
      yield { v: 1, id: req.id, seq: 0, text: 'ok', tokens: 1 };
      yield { v: 1, id: req.id, seq: 1, text: '', tokens: 0, done: true, finishReason: 'stop', usage: { promptTokens: req.inputTokens, completionTokens: 1, energyJ: 1, energySource: 'modelled' } };
    }
    return gen();
  }
}

const KEY = 'sk-test-security-1';
const METRICS_TOKEN = 'metrics-token-0123456789';
let gw: GatewayServer;
let port: number;
let base: string;

beforeAll(async () => {
  gw = new GatewayServer({
    backend: new EchoBackend(), port: 0, apiKeys: [KEY], metricsToken: METRICS_TOKEN, models: ['m1'],
    metrics: new TelemetryMetrics({ processMetrics: false }), live: new LiveState(), headersTimeoutMs: 1000, bodyTimeoutMs: 2000,
  });
  port = await gw.listen();
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await gw.close(100);
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${base}${path}`, { headers, redirect: 'manual' });
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

describe('every endpoint but the health probe needs a key', () => {
  it('binds loopback by default', () => {
    expect((gw.server.address() as { address: string }).address).toBe('127.0.0.1');
    expect(gatewaySchema.parse({}).host).toBe('127.0.0.1');
  });

  it('/healthz answers without a key; /metrics, /api/live, the dashboard and its assets do not', async () => {
    expect((await get('/healthz')).status).toBe(200);
    for (const p of ['/metrics', '/api/live', '/', '/index.html', '/dashboard.js', '/dashboard.css', '/v1/models']) {
      const r = await get(p);
      expect(r.status, p).toBe(401);
      expect((await get(p, bearer('sk-wrong-key-000'))).status, `${p} wrong key`).toBe(401);
      expect((await get(p, bearer(KEY))).status, `${p} with key`).toBe(200);
    }
  });

  it('the metrics token reads /metrics and nothing else', async () => {
    expect((await get('/metrics', bearer(METRICS_TOKEN))).status).toBe(200);
    expect((await get('/api/live', bearer(METRICS_TOKEN))).status).toBe(401);
    expect((await get('/v1/models', bearer(METRICS_TOKEN))).status).toBe(401);
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { ...bearer(METRICS_TOKEN), 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm1', prompt: 'x' }) });
    expect(r.status).toBe(401);
  });

  it('the dashboard: /?key= with a valid key sets an HttpOnly cookie that opens /, /api/live and /ws', async () => {
    expect((await get('/?key=sk-wrong-key-000')).status).toBe(401);
    const login = await get(`/?key=${KEY}`);
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    const c = cookie.split(';')[0]!;
    expect((await get('/', { cookie: c })).status).toBe(200);
    expect((await get('/api/live', { cookie: c })).status).toBe(200);
    const wsStatus = (headers: Record<string, string>) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers });
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', () => resolve(-1));
      });
    expect(await wsStatus({})).toBe(401);
    expect(await wsStatus({ cookie: c })).toBe(101);
  });
});

/** Opens a raw TCP connection, runs `feed`, resolves with ms until the server closed it (or rejects at `capMs`). */
function closedAfter(feed: (s: Socket) => void, capMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = connect(port, '127.0.0.1', () => feed(s));
    const cap = setTimeout(() => {
      s.destroy();
      reject(new Error(`connection still open after ${capMs} ms`));
    }, capMs);
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(cap);
      resolve(Date.now() - t0);
    });
  });
}

describe('slow clients are cut within seconds', () => {
  it('a body sent a byte at a time is cut at the body timeout', async () => {
    let timer: NodeJS.Timeout | undefined;
    const ms = await closedAfter((s) => {
      s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`);
      timer = setInterval(() => s.writable && s.write('{'), 200);
    }, 10_000).finally(() => clearInterval(timer));
    expect(ms).toBeLessThan(5000);
  });

  it('headers sent a byte at a time are cut at the header timeout', async () => {
    let timer: NodeJS.Timeout | undefined;
    const ms = await closedAfter((s) => {
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      timer = setInterval(() => s.writable && s.write('X'), 200);
    }, 10_000).finally(() => clearInterval(timer));
    expect(ms).toBeLessThan(4000);
  });
});

describe('body limit below NATS max_payload', () => {
  it('the default limit and its maximum stay below max_payload', () => {
    expect(gatewaySchema.parse({}).bodyLimitBytes).toBeLessThan(NATS_MAX_PAYLOAD_BYTES);
    expect(gatewaySchema.safeParse({ bodyLimitBytes: NATS_MAX_PAYLOAD_BYTES }).success).toBe(false);
  });

  it('a body above the limit gets 413, with no Retry-After (retrying cannot help)', async () => {
    const r = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { ...bearer(KEY), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm1', prompt: 'x'.repeat(600 * 1024) }),
    });
    expect(r.status).toBe(413);
    expect(r.headers.get('retry-after')).toBeNull();
    expect(r.headers.get('x-dynamollm-error-code')).toBe('request_too_large');
    expect(((await r.json()) as { error: { code: number } }).error.code).toBe(413);
  });
});

describe('a request target the URL parser refuses', () => {
  /** Sends raw bytes, returns what came back before the server closed. */
  const raw = (text: string) =>
    new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('error', () => {});
      s.on('close', () => resolve(got));
      s.end(text);
    });

  it('gets 400 (not 500), also on a WebSocket upgrade (whose handler would otherwise throw and end the process)', async () => {
    // `//a|b` reads as a protocol-relative URL with an invalid host (found by npm run fuzz)
    expect(await raw('DELETE //n|-CO HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw('GET //n|-CO HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect((await get('/healthz')).status).toBe(200);
  });
});

/** The status an upgrade to /ws on `p` gets: 101 opened, else the refusal's. */
const wsAt = (p: number, headers: Record<string, string>) =>
  new Promise<number>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${p}/ws`, { headers });
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => resolve(-1));
  });

describe('/ws and the Origin of a browser page', () => {
  it("opens for the gateway's own origin; 403 for another port, a sibling host or an opaque origin, with the user's cookie; a key header without Origin opens", async () => {
    const c = (await get(`/?key=${KEY}`)).headers.get('set-cookie')!.split(';')[0]!;
    expect(await wsAt(port, { cookie: c, origin: `http://127.0.0.1:${port}` })).toBe(101);
    expect(await wsAt(port, { cookie: c, origin: `https://127.0.0.1:${port}` })).toBe(101); // a TLS proxy in front keeps the host
    for (const origin of [`http://127.0.0.1:${port + 1}`, `http://evil.127.0.0.1.nip.io:${port}`, 'http://127.0.0.1', 'null', 'not a url']) {
      expect(await wsAt(port, { cookie: c, origin }), origin).toBe(403);
    }
    expect(await wsAt(port, { ...bearer(KEY) })).toBe(101);
    expect(await wsAt(port, { origin: `http://127.0.0.1:${port}` })).toBe(401);
  });

  it("opens for an origin gateway.allowedOrigins names; '*' names none", async () => {
    const other = new GatewayServer({
      backend: new EchoBackend(), port: 0, apiKeys: [KEY], models: ['m1'], metrics: new TelemetryMetrics({ processMetrics: false }), live: new LiveState(),
      cors: { allowedOrigins: ['*', 'https://dash.example.com'], allowedMethods: ['*'], allowedHeaders: ['*'], allowCredentials: true },
    });
    const p = await other.listen();
    try {
      const c = `dynamollm_key=${KEY}`;
      expect(await wsAt(p, { cookie: c, origin: 'https://dash.example.com' })).toBe(101);
      expect(await wsAt(p, { cookie: c, origin: 'https://evil.example.com' })).toBe(403);
      expect(await wsAt(p, { cookie: c, origin: 'http://dash.example.com' })).toBe(403);
    } finally {
      await other.close(100);
    }
  });

  it('wsOriginAllowed: a default port written out or left off is the same origin; no Origin is no browser', () => {
    expect(wsOriginAllowed('http://gw.example', 'gw.example:80', [])).toBe(true);
    expect(wsOriginAllowed('https://gw.example:443', 'gw.example', [])).toBe(true);
    expect(wsOriginAllowed('http://gw.example:8000', 'gw.example', [])).toBe(false);
    expect(wsOriginAllowed('http://a.gw.example', 'gw.example', [])).toBe(false);
    expect(wsOriginAllowed('http://gw.example', undefined, [])).toBe(false);
    expect(wsOriginAllowed('chrome-extension://abc', 'abc', [])).toBe(false);
    expect(wsOriginAllowed(undefined, 'gw.example', [])).toBe(true);
    expect(wsOriginAllowed('null', 'gw.example', ['null'])).toBe(true);
  });
});
