/**
 * Issue 12, the HTTP front door: with API keys every endpoint but /healthz needs one (a read-only metrics
 * token works on /metrics only; the dashboard takes the key once through POST /login, then a cookie), the default
 * bind is loopback, slow-loris clients are cut within seconds, and a body above the limit (which sits below
 * NATS max_payload) gets a 413 that does not ask for a retry. /ws refuses a browser page of another origin (the
 * dashboard's cookie rides on any same-site upgrade, another port or subdomain included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { applyOverrides, gatewaySchema } from '../../actors/gateway/config.ts';
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
/** POST /login with `key` as the dashboard's form sends it, or as JSON. */
const login = (key: string, as: 'form' | 'json' = 'form', headers: Record<string, string> = {}, at = base) =>
  fetch(`${at}/login`, {
    method: 'POST',
    headers: { 'content-type': as === 'form' ? 'application/x-www-form-urlencoded' : 'application/json', ...headers },
    body: as === 'form' ? new URLSearchParams({ key }).toString() : JSON.stringify({ key }),
    redirect: 'manual',
  });

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

  it('the dashboard: GET / without a key answers the login form; POST /login (form or JSON) with a valid key sets an HttpOnly cookie that opens /, /api/live and /ws; a key in the URL is refused', async () => {
    const page = await get('/');
    expect(page.status).toBe(401);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toMatch(/<form method="post" action="\/login">[\s\S]*name="key"/);
    // under a no-referrer policy a browser posts the form with Origin: null, which the origin check refuses
    expect(html).not.toMatch(/no-referrer/);
    // a key in the URL: 400 and no cookie, even a valid one
    for (const k of [KEY, 'sk-wrong-key-000']) {
      const r = await get(`/?key=${k}`);
      expect(r.status, k).toBe(400);
      expect(r.headers.get('set-cookie'), k).toBeNull();
      expect(((await r.json()) as { error: { message: string } }).error.message, k).toMatch(/API key in the URL is refused.*POST \/login/);
    }
    // a wrong key: the form again (401), no cookie
    const wrong = await login('sk-wrong-key-000');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    expect(await wrong.text()).toContain('invalid API key');
    expect((await login('sk-wrong-key-000', 'json')).status).toBe(401);
    const form = await login(KEY);
    expect(form.status).toBe(303);
    expect(form.headers.get('location')).toBe('/');
    const json = await login(KEY, 'json');
    expect(json.status).toBe(204);
    for (const r of [form, json]) {
      const cookie = r.headers.get('set-cookie')!;
      expect(cookie).toMatch(/^dynamollm_key=[^;]+; HttpOnly; SameSite=Strict; Path=\/$/); // plain http from a peer no proxy list names: no Secure
    }
    // not a form or JSON, no key, or a GET with the key: refused without a cookie
    const text = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: `key=${KEY}`, redirect: 'manual' });
    expect(text.status).toBe(415);
    expect((await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', redirect: 'manual' })).status).toBe(400);
    expect((await fetch(`${base}/login`, { method: 'PUT', redirect: 'manual' })).status).toBe(405);
    // a login posted from a page of another origin: 403
    const cross = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' }, body: `key=${KEY}`, redirect: 'manual' });
    expect(cross.status).toBe(403);
    expect(cross.headers.get('set-cookie')).toBeNull();
    expect((await login(KEY, 'form', { origin: `http://127.0.0.1:${port}` })).status).toBe(303);
    const c = form.headers.get('set-cookie')!.split(';')[0]!;
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
    const c = (await login(KEY)).headers.get('set-cookie')!.split(';')[0]!;
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

describe("the dashboard cookie's Secure flag (gateway.cookieSecure, gateway.trustedProxies)", () => {
  const serve = async (opts: { cookieSecure?: 'auto' | boolean; trustedProxies?: string[] }) => {
    const s = new GatewayServer({ backend: new EchoBackend(), port: 0, apiKeys: [KEY], models: ['m1'], ...opts });
    return { s, at: `http://127.0.0.1:${await s.listen()}` };
  };
  const cookieOf = async (at: string, headers: Record<string, string> = {}) => (await login(KEY, 'form', headers, at)).headers.get('set-cookie') ?? '';

  it('auto: Secure when a trusted proxy says X-Forwarded-Proto: https; not from an untrusted peer, nor for http', async () => {
    const trusted = await serve({ trustedProxies: ['127.0.0.0/8'] });
    const untrusted = await serve({ trustedProxies: ['10.0.0.0/8', 'fd00::/8'] });
    try {
      expect(await cookieOf(trusted.at, { 'x-forwarded-proto': 'https' })).toMatch(/; Secure$/);
      expect(await cookieOf(trusted.at, { 'x-forwarded-proto': 'https, http' })).toMatch(/; Secure$/);
      expect(await cookieOf(trusted.at, { 'x-forwarded-proto': 'http' })).not.toMatch(/Secure/);
      expect(await cookieOf(trusted.at)).not.toMatch(/Secure/);
      // the header from a peer the list does not name is the client's own word: ignored
      expect(await cookieOf(untrusted.at, { 'x-forwarded-proto': 'https' })).not.toMatch(/Secure/);
      expect(await cookieOf(base, { 'x-forwarded-proto': 'https' })).not.toMatch(/Secure/); // default: no proxy trusted
    } finally {
      await trusted.s.close(100);
      await untrusted.s.close(100);
    }
  });

  it('true sets Secure on every login, false on none', async () => {
    const on = await serve({ cookieSecure: true });
    const off = await serve({ cookieSecure: false, trustedProxies: ['127.0.0.1'] });
    try {
      expect(await cookieOf(on.at)).toMatch(/^dynamollm_key=[^;]+; HttpOnly; SameSite=Strict; Path=\/; Secure$/);
      expect(await cookieOf(off.at, { 'x-forwarded-proto': 'https' })).not.toMatch(/Secure/);
    } finally {
      await on.s.close(100);
      await off.s.close(100);
    }
  });

  it('the config: cookieSecure auto by default, true/false/auto through --set; trustedProxies addresses or CIDRs only', () => {
    const d = gatewaySchema.parse({});
    expect(d.cookieSecure).toBe('auto');
    expect(d.trustedProxies).toEqual([]);
    expect(applyOverrides(d, { cookieSecure: 'true', trustedProxies: '10.0.0.0/8, fd00::/8,192.168.1.7' }, {})).toMatchObject({ cookieSecure: true, trustedProxies: ['10.0.0.0/8', 'fd00::/8', '192.168.1.7'] });
    expect(applyOverrides(d, { cookieSecure: 'false' }, {}).cookieSecure).toBe(false);
    expect(applyOverrides(d, { cookieSecure: 'auto' }, {}).cookieSecure).toBe('auto');
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'proxy.local', '10.0.0.1/8/1', '']) {
      expect(() => gatewaySchema.parse({ trustedProxies: [bad] }), bad).toThrow(/IP address or CIDR/);
    }
    expect(() => gatewaySchema.parse({ cookieSecure: 'yes' })).toThrow();
  });
});
